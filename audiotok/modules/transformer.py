"""Causal transformer over frames with a bounded attention window, as in Mimi.

Mimi (Défossez et al. 2024, "Moshi: a speech-text foundation model for real-time dialogue",
sec. 3.3) puts an 8-layer transformer (dim 512, 8 heads, feed-forward 2048, GELU, LayerNorm,
layer scale initialised at 0.01, RoPE) after the SEANet encoder and before the SEANet decoder.
Attention is causal and limited to the last 250 frames (10 s at 25 Hz), which is what makes the
codec streamable with bounded memory: a frame's output depends only on frames
[t - layers * (context - 1), t].

Design choices here (own code, not a port):
  * RoPE (Su et al. 2021) makes attention scores depend only on the distance between frames, so
    a frame's output is the same whether it is computed in a long sequence or in a window that
    holds its causal context; nothing else in a layer sees absolute positions. Angles are
    computed in float64 so that the invariance holds to float32 rounding even far into a window.
  * `step` is the same computation with an explicit key/value cache (the last `context - 1`
    frames of every layer), used for stateful streaming; `forward` is `step` with no cache.
  * Sequences longer than the window attend block-wise (each block of `context` queries sees
    2 * context keys), so memory and time grow linearly with length instead of quadratically.
  * `rope_style` "moshi" / "transformers" reproduce, for published Mimi checkpoints, the
    float32 angles of absolute positions that Kyutai's moshi package and transformers'
    MimiModel compute (their formulas differ in the last bit): codes then equal theirs bit for
    bit. The streaming state counts absolute positions for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KV = tuple[Tensor, Tensor]
"""One layer's cache: keys (before RoPE) and values, each [B, H, m, head_dim], m < context."""
ROPE_STYLES = ("audiotok", "moshi", "transformers")


@dataclass
class TransformerState:
    """What `CausalTransformer.step` carries between calls: each layer's key/value cache and
    the absolute position of the next frame (the publisher RoPE styles need it)."""

    caches: list
    position: int = 0


@dataclass
class TransformerConfig:
    """Defaults are Mimi's (Moshi paper, sec. 3.3; public `_transformer_kwargs`).

    dim:             model width (the SEANet latent dimension in Mimi).
    layers:          transformer layers; 0 = no transformer.
    heads:           attention heads; dim / heads must be even when `rope` is on.
    dim_feedforward: hidden width of the per-frame MLP.
    context:         each frame attends to itself and the `context - 1` frames before it.
    rope:            rotary position embeddings; off = no position information besides the
                     causal mask (absolute embeddings are not offered: they break streaming).
    max_period:      RoPE's longest wavelength.
    layer_scale:     initial per-channel scale of each residual branch; None = no layer scale.
    rope_style:      how rotation angles are computed: "audiotok" (float64 angles of positions
                     relative to the window, exact window invariance), or the float32 angles
                     of absolute positions of Kyutai's moshi package ("moshi") or of
                     transformers' MimiModel ("transformers"), for their checkpoints' codes
                     bit for bit.
    causal:          False: every frame attends to the whole sequence (`context` unused; no
                     streaming, unbounded reach), as X-Codec-2's decoder does.
    norm:            "layer" (LayerNorm, Mimi) or "rms" (RMSNorm, the Llama-style blocks of
                     X-Codec-2's decoder), with epsilon `norm_eps`.
    activation:      of the MLP: "gelu" (Mimi) or "silu" (X-Codec-2).
    """

    dim: int = 512
    layers: int = 8
    heads: int = 8
    dim_feedforward: int = 2048
    context: int = 250
    rope: bool = True
    max_period: float = 10000.0
    layer_scale: float | None = 0.01
    rope_style: str = "audiotok"
    causal: bool = True
    norm: str = "layer"
    norm_eps: float = 1e-5
    activation: str = "gelu"

    def __post_init__(self):
        if self.norm not in ("layer", "rms"):
            raise ValueError(f"transformer norm must be 'layer' or 'rms', got {self.norm!r}")
        if self.activation not in ("gelu", "silu"):
            raise ValueError(f"transformer activation must be 'gelu' or 'silu', got "
                             f"{self.activation!r}")
        for name in ("dim", "heads", "dim_feedforward", "context"):
            if getattr(self, name) < 1:
                raise ValueError(f"transformer {name} must be >= 1, got {getattr(self, name)}")
        if self.layers < 0:
            raise ValueError(f"transformer layers must be >= 0, got {self.layers}")
        if self.dim % self.heads:
            raise ValueError(f"transformer dim {self.dim} is not divisible by heads {self.heads}")
        if self.rope and (self.dim // self.heads) % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.dim // self.heads}")
        if self.max_period <= 0:
            raise ValueError(f"max_period must be > 0, got {self.max_period}")
        if self.rope_style not in ROPE_STYLES:
            raise ValueError(f"rope_style must be one of {', '.join(ROPE_STYLES)}, got "
                             f"'{self.rope_style}'")


def rope_tables(length: int, head_dim: int, max_period: float, device, dtype) -> tuple:
    """cos, sin [length, head_dim / 2] for positions 0..length-1 (computed in float64)."""
    half = head_dim // 2
    freqs = max_period ** (-torch.arange(half, dtype=torch.float64) * 2 / head_dim)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * freqs
    if torch.jit.is_tracing():
        # ONNX export: onnxruntime has no float64 Cos/Sin; reduced mod 2 pi in float64 first,
        # the float32 angles are within an ulp of 2 pi of the exact ones
        angles = torch.remainder(angles, 2 * math.pi).float()
    return angles.cos().to(device, dtype), angles.sin().to(device, dtype)


def publisher_rope_tables(style: str, start: int, length: int, head_dim: int,
                          max_period: float, device) -> tuple[Tensor, Tensor]:
    """cos, sin float32 [length, head_dim / 2] for absolute positions start..start+length-1,
    rounded as the publisher rounds them: moshi's `apply_rope` (modules/rope.py) takes
    exp(i * -2 ln(max_period) / d) as frequencies, transformers' MimiRotaryEmbedding
    1 / max_period^(2i / d); both multiply by the float32 position."""
    positions = float(start) + torch.arange(length, device=device, dtype=torch.float32)
    angles = positions[:, None] * publisher_rope_freqs(style, head_dim, max_period, device)
    return angles.cos(), angles.sin()


def publisher_rope_freqs(style: str, head_dim: int, max_period: float, device) -> Tensor:
    """The float32 frequencies [head_dim / 2] of `publisher_rope_tables`."""
    if style == "moshi":
        ds = torch.arange(head_dim // 2, device=device, dtype=torch.float32)
        return torch.exp(ds * (-math.log(max_period) * 2 / head_dim))
    return 1.0 / (max_period ** (torch.arange(0, head_dim, 2, device=device,
                                              dtype=torch.float32) / head_dim))


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (2i, 2i+1) of x [..., T, d] by position angles [T, d/2]."""
    pairs = x.unflatten(-1, (-1, 2))
    re, im = pairs[..., 0], pairs[..., 1]
    return torch.stack((re * cos - im * sin, re * sin + im * cos), -1).flatten(-2)


def window_mask(n_q: int, n_k: int, context: int, device) -> Tensor:
    """Bool [n_q, n_k]: query i (at key position n_k - n_q + i) may see key j."""
    query_pos = torch.arange(n_q, device=device)[:, None] + (n_k - n_q)
    delta = query_pos - torch.arange(n_k, device=device)
    return (delta >= 0) & (delta < context)


def local_causal_attention(q: Tensor, k: Tensor, v: Tensor, context: int) -> Tensor:
    """q [B, H, n, d], k/v [B, H, m + n, d] (queries are the last n key positions) -> [B, H, n, d].

    Each query sees itself and the `context - 1` keys before it. For n > context the queries
    are cut into blocks of `context`, each attending to the 2 * context keys that can reach it.
    """
    n, total = q.shape[-2], k.shape[-2]
    # an ONNX trace fixes Python branches and block counts: it takes the dense masked form,
    # which gives the same result for any length (with memory quadratic in the chunk)
    if torch.jit.is_tracing() or n <= context:
        mask = window_mask(n, total, context, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b, h, _, d = q.shape
    w, m = context, total - n
    blocks = -(-n // w)
    pad = blocks * w - n
    q = F.pad(q, (0, 0, 0, pad)).reshape(b, h * blocks, w, d)
    i = torch.arange(w, device=q.device)[:, None]
    j = torch.arange(2 * w, device=q.device)[None, :]
    key_pos = m + torch.arange(blocks, device=q.device)[:, None, None] * w - w + j
    mask = (j > i) & (j <= i + w) & (key_pos >= 0)                        # [nb, W, 2W]
    mask = mask.expand(h, -1, -1, -1).reshape(h * blocks, w, 2 * w)
    y = F.scaled_dot_product_attention(q, _key_windows(k, m, w, pad), _key_windows(v, m, w, pad),
                                       attn_mask=mask)
    return y.view(b, h, blocks * w, d)[..., :n, :]


def _key_windows(x: Tensor, m: int, w: int, pad: int) -> Tensor:
    """x [B, H, m + n, d] -> [B, H * nb, 2w, d]: block b's window holds key positions
    [m + (b - 1) * w, m + (b + 1) * w), zero-padded outside the sequence."""
    b, d = x.shape[0], x.shape[-1]
    x = F.pad(x, (0, 0, w, pad))[..., m:, :]     # key position p now at index p - m + w
    return x.unfold(-2, 2 * w, w).transpose(-1, -2).reshape(b, -1, 2 * w, d)


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (CaiT, Touvron et al. 2021): x [..., D]."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x


class WindowedSelfAttention(nn.Module):
    """Causal multi-head self-attention over the last `context` frames: x [B, n, D] -> same."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)  # Mimi: no biases
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: Tensor, cache: KV | None = None, position: int = 0
                ) -> tuple[Tensor, KV]:
        """x [B, n, D], cache of the previous frames -> y [B, n, D], cache for the next call.
        `position`: absolute index of x's first frame (read by the publisher RoPE styles)."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], -2), torch.cat([cache[1], v], -2)
        start = max(0, k.shape[-2] - (self.cfg.context - 1))
        new_cache = (k[..., start:, :], v[..., start:, :])
        if self.cfg.rope:
            total = k.shape[-2]
            if self.cfg.rope_style == "audiotok":
                # positions count from the first cached frame: only differences matter
                cos, sin = rope_tables(total, self.head_dim, self.cfg.max_period,
                                       x.device, q.dtype)
            else:
                cos, sin = publisher_rope_tables(self.cfg.rope_style, position + n - total,
                                                 total, self.head_dim, self.cfg.max_period,
                                                 x.device)
                cos, sin = cos.to(q.dtype), sin.to(q.dtype)
            q, k = apply_rope(q, cos[-n:], sin[-n:]), apply_rope(k, cos, sin)
        if self.cfg.causal:
            y = local_causal_attention(q, k, v, self.cfg.context)
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, -1)), new_cache


class TransformerLayer(nn.Module):
    """Pre-norm layer: x + ls(attn(norm(x))), then x + ls(mlp(norm(x))). x [B, n, D] -> same."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        norm = nn.RMSNorm if cfg.norm == "rms" else nn.LayerNorm
        self.norm1 = norm(cfg.dim, eps=cfg.norm_eps)
        self.attn = WindowedSelfAttention(cfg)
        self.norm2 = norm(cfg.dim, eps=cfg.norm_eps)
        act = nn.SiLU() if cfg.activation == "silu" else nn.GELU()
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim_feedforward, bias=False), act,
                                 nn.Linear(cfg.dim_feedforward, cfg.dim, bias=False))
        scale = (lambda: LayerScale(cfg.dim, cfg.layer_scale)) if cfg.layer_scale is not None \
            else nn.Identity
        self.scale1, self.scale2 = scale(), scale()

    def forward(self, x: Tensor, cache: KV | None = None, position: int = 0
                ) -> tuple[Tensor, KV]:
        h, cache = self.attn(self.norm1(x), cache, position)
        x = x + self.scale1(h)
        return x + self.scale2(self.mlp(self.norm2(x))), cache


class CausalTransformer(nn.Module):
    """x [B, D, T] -> [B, D, T]; frame t depends on frames [t - layers * (context - 1), t]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.layers))

    def reach(self) -> tuple[int, int] | None:
        """(left, right) frames that can change an output frame: exact, and right is 0;
        None (unbounded) for a non-causal transformer."""
        if not self.cfg.causal:
            return None
        return self.cfg.layers * (self.cfg.context - 1), 0

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x)[0]

    def step(self, x: Tensor, state: TransformerState | None = None
             ) -> tuple[Tensor, TransformerState]:
        """Streaming form: x [B, D, n] new frames, state from the previous call (None at the
        start) -> (y [B, D, n], state). Concatenated outputs equal `forward` on the whole."""
        h = x.transpose(1, 2)
        if state is not None and not self.cfg.causal:
            raise ValueError("a non-causal transformer does not stream")
        if state is None:
            state = TransformerState([None] * len(self.layers))
        caches = []
        for layer, cache in zip(self.layers, state.caches):
            h, cache = layer(h, cache, state.position)
            caches.append(cache)
        return h.transpose(1, 2), TransformerState(caches, state.position + x.shape[-1])
