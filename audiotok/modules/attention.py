"""Self-attention over time, and the "pos_net" that WavTokenizer puts before its ConvNeXt stack.

WavTokenizer (Ji et al. 2024, arXiv:2408.16532, sec. 3.3) adds an attention module to the Vocos
decoder to model context beyond the convolutions' reach: in its public code (`VocosBackbone`)
the embedded latents pass through ResBlock, ResBlock, attention, ResBlock, ResBlock, norm.

Two deliberate departures from that code, both so that a frame's receptive field stays bounded
and can be stated:
  * norms default to a per-frame LayerNorm over channels; WavTokenizer's GroupNorm(32) pools
    statistics over the whole utterance, so every output sample depends on every input frame.
    `norm="group"` keeps the published behaviour (for loading its weights) at that cost.
  * attention may be restricted to a local window (and made causal); the published model
    attends over the whole sequence (`window=None` here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Reach = tuple[int, int] | None
"""(left, right) frames an output frame can see on each side; None = unbounded."""


def add_reach(parts: list[Reach]) -> Reach:
    """Reach of modules applied one after another: the sum, or None if any is unbounded."""
    if any(p is None for p in parts):
        return None
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each frame: x [B, C, T] -> [B, C, T]."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, dim: int, groups: int = 32) -> nn.Module:
    """'layer': per-frame ChannelNorm; 'group': WavTokenizer's GroupNorm (`groups` groups,
    32 in its releases) over (C, T)."""
    if kind == "layer":
        return ChannelNorm(dim)
    if kind == "group":
        return nn.GroupNorm(groups, dim, eps=1e-6)
    raise ValueError(f"norm must be 'layer' or 'group', got {kind!r}")


def local_attention_mask(
    length: int, window: int | None, causal: bool, device: torch.device | None = None
) -> Tensor | None:
    """Boolean [T, T] mask, True where query i may attend key j; None = no mask needed.

    Query i sees keys with |i - j| <= window (and j <= i when causal). Every row keeps its
    diagonal, so no row is fully masked and softmax never yields NaN.
    """
    if window is None:
        return None  # full attention; causal alone is handled by SDPA's is_causal
    pos = torch.arange(length, device=device)
    offset = pos[:, None] - pos[None, :]  # i - j
    allowed = offset.abs() <= window
    if causal:
        allowed &= offset >= 0
    return allowed


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over time with a residual: x [B, C, T] -> [B, C, T].

    `causal`: a frame sees only itself and the past. `window`: a frame sees at most `window`
    frames on each side (None = the whole sequence).
    """

    def __init__(
        self, dim: int, heads: int, causal: bool = False, window: int | None = None,
        norm: str = "layer", groups: int = 32,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if window is not None and window < 0:
            raise ValueError(f"window must be >= 0 or None, got {window}")
        self.heads, self.causal, self.window = heads, causal, window
        self.norm = make_norm(norm, dim, groups)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.unbounded_norm = norm == "group"

    def reach(self) -> Reach:
        if self.window is None or self.unbounded_norm:
            return None
        return self.window, 0 if self.causal else self.window

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        h = self.norm(x).transpose(1, 2)  # [B, T, C]
        # [B, T, 3, H, C/H] -> three tensors [B, H, T, C/H]
        q, k, v = self.qkv(h).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = local_attention_mask(t, self.window, self.causal, x.device)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None
        )
        y = y.transpose(1, 2).reshape(b, t, c)
        return x + self.out(y).transpose(1, 2)


class ConvResBlock(nn.Module):
    """Norm, SiLU, conv k=3, norm, SiLU, dropout, conv k=3, plus residual: [B, C, T] -> same.

    The ResnetBlock of WavTokenizer's pos_net (itself from the VQGAN/LDM autoencoders). Two
    convolutions of kernel 3 reach 2 frames on each side.
    """

    def __init__(self, dim: int, dropout: float = 0.0, norm: str = "layer", groups: int = 32):
        super().__init__()
        self.norm1 = make_norm(norm, dim, groups)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.norm2 = make_norm(norm, dim, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        self.unbounded_norm = norm == "group"

    def reach(self) -> Reach:
        return None if self.unbounded_norm else (2, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return x + h


class PosNet(nn.Module):
    """WavTokenizer's attention stage: 2 ResBlocks, SelfAttention, 2 ResBlocks, norm.

    x [B, C, T] -> [B, C, T]. Reach: 4 ResBlocks of 2 frames each plus the attention's window
    (None when attention is global or `norm="group"`).
    """

    def __init__(
        self, dim: int, heads: int, window: int | None = None, dropout: float = 0.0,
        norm: str = "layer", groups: int = 32,
    ):
        super().__init__()
        self.pre = nn.ModuleList(ConvResBlock(dim, dropout, norm, groups) for _ in range(2))
        self.attn = SelfAttention(dim, heads, window=window, norm=norm, groups=groups)
        self.post = nn.ModuleList(ConvResBlock(dim, dropout, norm, groups) for _ in range(2))
        self.norm = make_norm(norm, dim, groups)
        self.unbounded_norm = norm == "group"

    def reach(self) -> Reach:
        if self.unbounded_norm:
            return None
        blocks = [*self.pre, self.attn, *self.post]
        return add_reach([m.reach() for m in blocks])

    def forward(self, x: Tensor) -> Tensor:
        for block in self.pre:
            x = block(x)
        x = self.attn(x)
        for block in self.post:
            x = block(x)
        return self.norm(x)
