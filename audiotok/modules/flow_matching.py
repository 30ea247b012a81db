"""Conditional flow matching with an in-context prompt (TaDiCodec's decoder; Lipman et al.
2023, "Flow Matching for Generative Modeling"; the prompt masking of Voicebox, Le et al.
2023).

Training (the authors' `forward_diffusion`): for data x [B, F, M], noise n ~ N(0, I) and a
time t ~ U(0, 1] per item,
    x_t = (1 - (1 - sigma) t) n + t x,    v* = x - (1 - sigma) n,
except on a prompt (a prefix of each item, of random length; none with probability
`context_drop_p`), where x_t = x: the model sees those frames clean and is not scored on them.
Sampling integrates dx/dt = v(x_t, t) from noise at t = 0 to t = 1 with Euler steps taken at
the interval midpoints t = (i + 0.5) / steps, as the authors' `reverse_diffusion`, the prompt
frames held at their clean values throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def prompt_lengths(batch: int, frames: int, drop_p: float, low: float, high: float,
                   device) -> Tensor:
    """long [B]: prompt frames per item, uniform in [low * F, high * F) (at least 0, below F),
    0 for items drawn (probability `drop_p`) to have none. The authors draw one drop for the
    whole batch and lengths in [min(F / 4, 5), 0.4 F); per item keeps every batch mixed."""
    u = torch.rand(batch, device=device)
    span = torch.rand(batch, device=device) * (high - low) + low
    lengths = (span * frames).long().clamp(0, max(frames - 1, 0))
    return torch.where(u < drop_p, torch.zeros_like(lengths), lengths)


def frame_mask(lengths: Tensor, frames: int) -> Tensor:
    """bool [B, F]: True on the prompt frames (the first lengths[b] of item b)."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def noisy(x: Tensor, t: Tensor, noise: Tensor, sigma: float, prompt: Tensor
          ) -> tuple[Tensor, Tensor]:
    """x, noise [B, F, M], t [B], prompt bool [B, F] -> (x_t, target velocity v*)."""
    tt = t[:, None, None]
    xt = (1 - (1 - sigma) * tt) * noise + tt * x
    xt = torch.where(prompt[..., None], x, xt)
    return xt, x - (1 - sigma) * noise


def masked_mse(pred: Tensor, target: Tensor, keep: Tensor) -> Tensor:
    """Mean squared error over the frames where keep [B, F] is True (all elements of them)."""
    w = keep[..., None].to(pred.dtype)
    return ((pred.float() - target.float()).square() * w).sum() / (
        w.sum() * pred.shape[-1]).clamp(min=1)


def guided(cond: Tensor, uncond: Tensor, scale: float, rescale: float) -> Tensor:
    """Classifier-free guidance u + s (c - u), its spread pulled back towards the conditional
    one by `rescale` (the authors' rescale_cfg, after Lin et al. 2024); spreads per item."""
    out = uncond + scale * (cond - uncond)
    if rescale <= 0:
        return out
    dims = tuple(range(1, cond.dim()))
    ratio = cond.std(dims, keepdim=True) / out.std(dims, keepdim=True).clamp(min=1e-6)
    return rescale * out * ratio + (1 - rescale) * out


def euler_sample(velocity: Callable[[Tensor, Tensor], Tensor], noise: Tensor, steps: int,
                 prompt: Tensor | None = None) -> Tensor:
    """Integrate from noise [B, F, M] at t = 0 to t = 1 in `steps` Euler steps; prompt
    [B, P, M] (P < F) replaces the first P frames at every step. velocity(x_t, t [B])."""
    x = noise
    p = 0 if prompt is None else prompt.shape[1]
    h = 1.0 / steps
    for i in range(steps):
        if p:
            x = torch.cat([prompt, x[:, p:]], 1)
        t = torch.full((x.shape[0],), (i + 0.5) * h, device=x.device, dtype=x.dtype)
        x = x + h * velocity(x, t)
    return torch.cat([prompt, x[:, p:]], 1) if p else x
