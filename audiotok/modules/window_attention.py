"""Self-attention within fixed, non-overlapping windows, with rotary positions counted from
each window's start: SNAC's local attention (Siuzdak et al. 2024, sec. 3; its `LocalMHA`,
placed after the encoder's last downsampling and before the decoder's first upsampling).

Windows do not overlap, so a frame sees exactly the frames of its own window: the reach is
bounded (window - 1 frames each side) provided the signal is cut on window boundaries, which
the codec guarantees by padding and aligning chunks to whole windows (`frame_multiple`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    """[..., d] -> [..., d]: (x1, x2) halves -> (-x2, x1) (RoFormer's rotation, halves layout)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class WindowAttention(nn.Module):
    """x [B, C, T] -> x + attention(LayerNorm(x)) within windows of `window` frames.

    T must be a multiple of `window`. Heads of `head_dim` channels (C // head_dim of them),
    bias-free projections, rotary embedding on queries and keys (positions 0..window-1 in
    every window), scaled dot-product attention over the window, no mask.
    """

    def __init__(self, dim: int, window: int, head_dim: int = 64, rotary: bool = True):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"attention width {dim} is not a multiple of head_dim {head_dim}")
        self.window = window
        self.heads = dim // head_dim
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.rotary = rotary
        if rotary:
            # the inverse frequencies 10000^(-2i/d) are saved with the weights (as SNAC saves
            # them), so a checkpoint brings the exact values it was trained with
            inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
            self.register_buffer("inv_freq", inv_freq)

    def reach(self) -> tuple[int, int, int]:
        return self.window - 1, self.window - 1, 1

    def _split(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [B, heads, windows, window, C / heads]."""
        b, t, c = x.shape
        x = x.reshape(b, t // self.window, self.window, self.heads, c // self.heads)
        return x.permute(0, 3, 1, 2, 4)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        if t % self.window:
            raise ValueError(f"window attention needs a multiple of {self.window} frames, "
                             f"got {t}")
        q, k, v = self.to_qkv(self.norm(x.transpose(1, 2))).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if self.rotary:
            pos = torch.arange(self.window, device=x.device).type_as(self.inv_freq)
            freqs = torch.outer(pos, self.inv_freq)
            freqs = torch.cat((freqs, freqs), dim=-1)           # [window, head_dim]
            cos, sin = freqs.cos(), freqs.sin()
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v)             # [B, H, W, n, d]
        out = out.permute(0, 2, 3, 1, 4).reshape(b, t, c)
        return self.to_out(out).transpose(1, 2) + x
