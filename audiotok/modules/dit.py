"""A bidirectional Llama-style transformer whose norms a condition vector can scale: the
backbone of TaDiCodec's encoder and of its flow-matching decoder.

TaDiCodec (Yang et al. 2025, arXiv:2508.16790; the authors' `llama_nar_prefix.py`,
DiffLlamaPrefix) runs Llama decoder layers without the causal mask, and replaces each RMSNorm
by an adaptive one whose per-channel gain is a linear map of the diffusion-time embedding
(initialised to the identity: weight 0, bias 1). Text enters as a prefix of the sequence,
so the layers take a key mask that hides the padding of a batch's prefixes.

    x [B, T, D] -> L x (AdaRMSNorm -> attention (RoPE) -> + ; AdaRMSNorm -> SwiGLU -> +)
                -> AdaRMSNorm -> [B, T, D]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .transformer import apply_rope, rope_tables


class AdaRMSNorm(nn.Module):
    """RMS norm whose gain is learned (cond_dim None) or a linear map of cond [B, cond_dim]."""

    def __init__(self, dim: int, cond_dim: int | None, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        if cond_dim is None:
            self.weight = nn.Parameter(torch.ones(dim))
            self.to_gain = None
        else:
            self.to_gain = nn.Linear(cond_dim, dim)
            nn.init.zeros_(self.to_gain.weight)  # the identity at the start, as the authors'
            nn.init.ones_(self.to_gain.bias)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        x = x * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + self.eps).to(x.dtype)
        if self.to_gain is None:
            return x * self.weight
        return x * self.to_gain(cond)[:, None, :]


class Attention(nn.Module):
    """Non-causal multi-head self-attention with rotary positions: x [B, T, D] -> same."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, -1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, cond_dim: int | None):
        super().__init__()
        self.norm1, self.norm2 = AdaRMSNorm(dim, cond_dim), AdaRMSNorm(dim, cond_dim)
        self.attn = Attention(dim, heads)
        self.mlp = SwiGLU(dim, 4 * dim)  # the authors' intermediate_size = 4 * hidden

    def forward(self, x: Tensor, cond: Tensor | None, rope, mask: Tensor | None) -> Tensor:
        x = x + self.attn(self.norm1(x, cond), rope, mask)
        return x + self.mlp(self.norm2(x, cond))


class DiffTransformer(nn.Module):
    """x [B, T, dim], cond [B, dim] or None, key_mask bool [B, T] (True = attend) or None
    -> [B, T, dim]. `conditioned` False: plain RMSNorm gains, no `cond` taken."""

    def __init__(self, dim: int, layers: int, heads: int, conditioned: bool,
                 max_period: float = 10000.0):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads}) with an even "
                             f"head size")
        cond_dim = dim if conditioned else None
        self.blocks = nn.ModuleList(Block(dim, heads, cond_dim) for _ in range(layers))
        self.norm = AdaRMSNorm(dim, cond_dim)
        self.head_dim, self.max_period = dim // heads, max_period
        for name, p in self.named_parameters():  # the authors' std 0.02 normal init
            if p.dim() == 2 and "to_gain" not in name:
                nn.init.normal_(p, std=0.02)

    def forward(self, x: Tensor, cond: Tensor | None = None,
                key_mask: Tensor | None = None) -> Tensor:
        rope = rope_tables(x.shape[1], self.head_dim, self.max_period, x.device, x.dtype)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, cond, rope, mask)
        return self.norm(x, cond)


class TimeEmbedding(nn.Module):
    """Flow time t [B] in [0, 1] -> [B, dim]: sinusoids of 1000 t, then an MLP (the authors'
    SinusoidalPosEmb + diff_step_mlp). The authors feed t unscaled, which leaves all but the
    fastest sinusoids near constant over [0, 1]; the 1000 is DiT's and F5-TTS's scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32)
                          * (-math.log(10000.0) / max(half - 1, 1)))
        angles = 1000.0 * t.float()[:, None] * freqs
        return self.mlp(torch.cat([angles.sin(), angles.cos()], -1).to(t.dtype))
