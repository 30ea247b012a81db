"""A codec's global branch: one vector per utterance (FreeCodec's timbre, Zheng et al. 2024,
sec. 2.1), quantized into a few per-utterance codes that the decoder reads at every frame.

    global_branch:
      dim: 256                                       # width of the vector
      encoder: {type: ecapa}                         # GLOBAL_ENCODERS (codecs/components.py)
      quantizer: {type: grvq, groups: 8, n_codebooks: 8, codebook_size: 1024}

The quantizer is any registered one, run on the vector as a one-frame latent [B, dim, 1];
its rows become `Tokens.global_codes` long [B, G] (G = its levels), and the codec spec lists
their sizes as `global_codebook_sizes`. The decoder reads the frame latents with the
quantized vector appended to every frame (`condition`), so its input has latent_dim + dim
channels. Each item's vector comes from its own valid samples alone (`encode` takes their
lengths), so a padded batch gives the codes each item gets alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..quantizers import QUANTIZERS
from ..quantizers.base import QuantizerOutput
from .components import GLOBAL_ENCODERS


def _default_quantizer() -> dict:
    return {"type": "grvq", "groups": 8, "n_codebooks": 8, "codebook_size": 1024}


@dataclass
class GlobalBranchConfig:
    dim: int = 256
    encoder: dict = field(default_factory=lambda: {"type": "ecapa"})
    quantizer: dict = field(default_factory=_default_quantizer)

    def __post_init__(self):
        if self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")
        self.encoder = GLOBAL_ENCODERS.normalise(self.encoder, "global_branch.encoder")
        self.quantizer = QUANTIZERS.normalise(self.quantizer, "global_branch.quantizer")


class GlobalBranch(nn.Module):
    def __init__(self, cfg: GlobalBranchConfig, channels: int, sample_rate: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = GLOBAL_ENCODERS.build(cfg.encoder, "global_branch.encoder",
                                             channels=channels, sample_rate=sample_rate,
                                             dim=cfg.dim)
        self.quantizer = QUANTIZERS.build(cfg.quantizer, "global_branch.quantizer",
                                          dim=cfg.dim)

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.quantizer.codebook_sizes)

    def forward(self, wav: Tensor) -> QuantizerOutput:
        """Training: wav [B, C, T] -> the quantizer's output over one frame per item (z_q
        [B, dim, 1], codes [B, G, 1], its losses and metrics)."""
        return self.quantizer(self.encoder(wav)[..., None])

    @torch.no_grad()
    def encode(self, wav: Tensor, num_samples: Tensor) -> Tensor:
        """wav [B, C, T], valid samples [B] -> codes long [B, G], each item from its own
        samples only."""
        vectors = torch.cat([self.encoder(wav[i:i + 1, :, :int(n)])
                             for i, n in enumerate(num_samples)])
        return self.quantizer.encode(vectors[..., None])[..., 0]

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, G] -> vector [B, dim]."""
        return self.quantizer.decode(codes[..., None])[..., 0]


def condition(z: Tensor, vector: Tensor) -> Tensor:
    """Frame latents z [B, D, T] and per-utterance vectors [B, G_dim] (or [B, G_dim, 1]) ->
    [B, D + G_dim, T]: the vector appended to every frame."""
    if vector.dim() == 2:
        vector = vector[..., None]
    return torch.cat([z, vector.to(z.dtype).expand(-1, -1, z.shape[-1])], 1)
