"""The Transformer that BEATs' SSL model, tokenizer encoder, label predictor and tokenizer
estimator are made of: a convolutional positional embedding, then bidirectional layers.

BEATs (Chen et al. 2022, sec. 3.3) uses a ViT backbone "equipped with a convolution-based
relative position embedding layer at the bottom" (wav2vec 2.0's grouped conv: unilm
beats/backbone.py, kernel `conv_pos` 128, 16 groups), gated relative position bias and
DeepNorm. Here the layers are torch's pre-LayerNorm encoder layers with a final LayerNorm:
pre-LN stands in for DeepNorm (both keep a deep post-residual stack trainable) and the conv
embedding alone carries position (no gated relative bias) — see the recipes' notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class BackboneConfig:
    """dim/layers/heads/ffn_dim: BEATs base is 768 / 12 / 8 / 3072 (sec. 4.2, 90M params);
    dropout 0.1 (unilm beats/BEATs.py BEATsConfig); conv_pos / conv_pos_groups: the
    positional conv's kernel and groups (BEATsConfig: 128, 16)."""

    dim: int = 768
    layers: int = 12
    heads: int = 8
    ffn_dim: int = 3072
    dropout: float = 0.1
    conv_pos: int = 128
    conv_pos_groups: int = 16

    def __post_init__(self):
        for name in ("dim", "layers", "heads", "ffn_dim", "conv_pos", "conv_pos_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.dim % self.conv_pos_groups:
            raise ValueError(f"dim ({self.dim}) must be a multiple of conv_pos_groups "
                             f"({self.conv_pos_groups})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class ConvPosition(nn.Module):
    """x [B, N, D] -> x + GELU(grouped conv over the sequence), as wav2vec 2.0's positional
    conv (weight-normed over the kernel axis; an even kernel drops its last output)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.conv = weight_norm(conv, dim=2)
        self.trim = kernel % 2 == 0

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[..., :-1]
        return x + nn.functional.gelu(y).transpose(1, 2)


class Backbone(nn.Module):
    """x [B, N, D] -> [B, N', D]: positions from the whole sequence, then (optionally) only
    the patches `keep` [B, N'] (indices) go through the layers — the MAE speed-up BEATs uses
    for masked pre-training (sec. 3.3)."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        self.position = ConvPosition(cfg.dim, cfg.conv_pos, cfg.conv_pos_groups)
        self.input_norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.ffn_dim, cfg.dropout,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.output_norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        x = self.input_norm(self.position(x))
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        return self.output_norm(self.layers(self.dropout(x)))
