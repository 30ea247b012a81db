"""EnCodec's loss balancer (Défossez et al. 2022, Sec. 3.4; AudioCraft `losses/balancer.py`).

Losses that all depend on the model output y (reconstruction, adversarial, feature matching)
have gradients of unrelated scales. The balancer takes each loss's gradient g_i = dl_i/dy,
rescales it so its share of the gradient reaching y is w_i / sum(w):

    G = sum_i  total_norm * (w_i / sum_j w_j) * g_i / ema(||g_i||)

and backpropagates G from y. So weights read as fractions of the gradient, whatever the
losses' scales. ||g_i|| is the per-batch-item L2 norm averaged over the batch, smoothed by a
bias-corrected EMA (decay 0.999, both as AudioCraft).

Losses that do not depend on y (quantizer commitment, codebook) cannot be balanced: weight
them with `weighted_sum` and pass the result as `extra_loss`, which is backpropagated in the
same pass (or call its backward yourself *before* this one, with retain_graph=True).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .weighting import active


@dataclass
class BalancerConfig:
    """weights: {loss name: weight}; names bind as in `weighting` (unknown name = error,
    unweighted loss = logged only). Defaults are AudioCraft's compression solver's."""

    weights: dict[str, float] = field(default_factory=dict)
    total_norm: float = 1.0
    ema_decay: float = 0.999
    per_batch_item: bool = True
    eps: float = 1e-12

    def __post_init__(self):
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"balancer weights must be >= 0, got {self.weights}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.total_norm <= 0:
            raise ValueError(f"total_norm must be > 0, got {self.total_norm}")


@dataclass
class BalancerOutput:
    """losses: every loss given, detached (for logging).
    grad_norms: this step's ||dl_i/dy|| per balanced loss; ema_norms: their running averages.
    scales: the factor each gradient was multiplied by.
    effective_loss: sum_i scales_i * l_i (detached), the loss whose gradient was applied."""

    losses: dict[str, Tensor]
    grad_norms: dict[str, Tensor]
    ema_norms: dict[str, Tensor]
    scales: dict[str, Tensor]
    effective_loss: Tensor

    def metrics(self) -> dict[str, Tensor]:
        """Flat {name: scalar} for a logger: the losses plus "balancer/..." entries."""
        out = dict(self.losses)
        for name, value in self.grad_norms.items():
            out[f"balancer/grad_norm/{name}"] = value
            out[f"balancer/scale/{name}"] = self.scales[name]
        return out


class LossBalancer:
    """Not an nn.Module: it has no parameters, only the EMA state, which a trainer saves
    next to the optimizer state via state_dict() / load_state_dict()."""

    def __init__(self, cfg: BalancerConfig):
        self.cfg = cfg
        # name -> (decayed sum of norms, decayed count): mean = sum / count is the
        # bias-corrected EMA, so the first step uses the exact norm.
        self._ema: dict[str, tuple[Tensor, Tensor]] = {}

    def _norm(self, grad: Tensor) -> Tensor:
        if self.cfg.per_batch_item and grad.dim() > 1:
            return grad.flatten(1).norm(dim=1).mean()
        return grad.norm()

    def _update(self, name: str, norm: Tensor) -> Tensor:
        beta = self.cfg.ema_decay
        total, count = self._ema.get(name, (torch.zeros_like(norm), torch.zeros_like(norm)))
        total = total.to(norm) * beta + norm
        count = count.to(norm) * beta + 1
        self._ema[name] = (total, count)
        return total / count

    def _grad(self, name: str, loss: Tensor, y: Tensor) -> Tensor:
        (grad,) = torch.autograd.grad(loss, [y], retain_graph=True, allow_unused=True)
        if grad is None:
            raise ValueError(f"loss '{name}' does not depend on y, so it cannot be balanced; "
                             f"add it to `extra_loss` with weighted_sum instead")
        return grad

    def backward(self, losses: dict[str, Tensor], y: Tensor,
                 extra_loss: Tensor | None = None) -> BalancerOutput:
        """Backpropagate the balanced gradient of `losses` through y (plus `extra_loss`,
        a scalar that bypasses balancing). y: the model output every balanced loss uses.

        Raises ValueError if a weight names no loss, no loss has a positive weight, or a
        weighted loss does not depend on y."""
        weights = active(losses, self.cfg.weights)
        if not weights:
            raise ValueError(f"no loss has a positive balancer weight; losses: {sorted(losses)}")
        total_weight = sum(weights.values())
        out_grad = torch.zeros_like(y)
        grad_norms, ema_norms, scales = {}, {}, {}
        for name, weight in weights.items():
            grad = self._grad(name, losses[name], y)
            grad_norms[name] = self._norm(grad).detach()
            ema_norms[name] = self._update(name, grad_norms[name])
            ratio = weight / total_weight
            scales[name] = ratio * self.cfg.total_norm / (self.cfg.eps + ema_norms[name])
            out_grad.add_(grad * scales[name])
        effective = sum((scales[n] * losses[n].detach() for n in weights), y.new_zeros(()))
        if extra_loss is None:
            y.backward(out_grad)
        else:
            torch.autograd.backward([y, extra_loss], [out_grad, torch.ones_like(extra_loss)])
        return BalancerOutput(
            losses={n: v.detach() for n, v in losses.items()}, grad_norms=grad_norms,
            ema_norms=ema_norms, scales=scales, effective_loss=effective)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {name: {"total": t.detach().cpu(), "count": c.detach().cpu()}
                for name, (t, c) in self._ema.items()}

    def load_state_dict(self, state: dict[str, dict[str, Tensor]]) -> None:
        self._ema = {name: (v["total"].clone(), v["count"].clone()) for name, v in state.items()}
