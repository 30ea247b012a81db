"""Vocos-style decoder: ConvNeXt stack at frame rate, then an iSTFT head.

Vocos (Siuzdak 2023, arXiv:2306.00814) keeps every layer at the frame rate and lets an inverse
STFT produce the samples, which makes it much cheaper than upsampling decoders. WavTokenizer
(Ji et al. 2024, arXiv:2408.16532) decodes its single-codebook tokens with this design and adds
an attention stage (pos_net) before the ConvNeXt stack. The data flow here:

    z [B, D, T'] -> embed conv k=7 -> [pos_net] -> LayerNorm -> N x ConvNeXt -> LayerNorm
                 -> ISTFTHead -> wav [B, C, T' * hop]
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..errors import ConfigError
from ..modules.attention import PosNet, Reach, add_reach
from ..modules.convnext import ConvNeXtBlock, layer_norm
from ..modules.istft import ISTFTHead, check_stft_sizes
from .components import DECODERS
from .contracts import Decoder


@dataclass(frozen=True)
class VocosDecoderConfig:
    """Defaults are Vocos' 24 kHz model (dim 512, 1536, 8 layers); WavTokenizer uses 768,
    2304, 12 layers. n_fft None means 4 * hop_length, as in both.

    WavTokenizer's published decoder (decoder/models.py `VocosBackbone` of its code) needs:
      adanorm_embeddings: the first norm and every ConvNeXt norm are Vocos' AdaLayerNorm
          with this many condition rows (4 in its configs), row 0 used; 0 = nn.LayerNorm.
      pos_net_norm "group" with norm_groups 32: its pos_net's GroupNorm, whose statistics
          span the whole utterance (so the decoder's reach is unbounded); "layer" is
          audiotok's per-frame norm.
      attention_heads 1: its AttnBlock is single-head (scaled by channels ** -0.5).
      pos_net_dropout 0.1: its ResnetBlocks' dropout (training only).
    """

    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    n_fft: int | None = None
    attention: bool = True
    attention_heads: int = 8
    attention_window: int | None = None  # frames each side; None = whole sequence
    adanorm_embeddings: int = 0
    pos_net_norm: str = "layer"
    norm_groups: int = 32
    pos_net_dropout: float = 0.0

    def __post_init__(self):
        for name in ("dim", "intermediate_dim", "num_layers", "attention_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.attention and self.dim % self.attention_heads:
            raise ValueError(
                f"dim ({self.dim}) must be divisible by attention_heads ({self.attention_heads})"
            )
        if self.attention_window is not None and self.attention_window < 0:
            raise ValueError(f"attention_window must be >= 0, got {self.attention_window}")
        if self.adanorm_embeddings < 0:
            raise ValueError(f"adanorm_embeddings must be >= 0, got {self.adanorm_embeddings}")
        if self.pos_net_norm not in ("layer", "group"):
            raise ValueError(f"pos_net_norm must be 'layer' or 'group', got "
                             f"{self.pos_net_norm!r}")
        if self.pos_net_norm == "group" and (self.norm_groups < 1
                                             or self.dim % self.norm_groups):
            raise ValueError(f"dim ({self.dim}) must be divisible by norm_groups "
                             f"({self.norm_groups})")
        if not 0.0 <= self.pos_net_dropout < 1.0:
            raise ValueError(f"pos_net_dropout must be in [0, 1), got {self.pos_net_dropout}")


def init_backbone(module: nn.Module) -> None:
    # Vocos initialises its backbone convs and linears with a truncated normal of std 0.02
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


@DECODERS.register("vocos", VocosDecoderConfig)
class VocosDecoder(Decoder):
    """z [B, latent_dim, T'] -> wav [B, channels, T' * hop_length] (decoder contract)."""

    def __init__(self, cfg: VocosDecoderConfig, channels: int, latent_dim: int, hop_length: int):
        super().__init__()
        n_fft = 4 * hop_length if cfg.n_fft is None else cfg.n_fft
        try:
            check_stft_sizes(n_fft, hop_length)
        except ValueError as e:
            raise ConfigError(f"decoder n_fft: {e}") from None
        self.channels, self.latent_dim = channels, latent_dim
        self.hop_length, self.n_fft = hop_length, n_fft
        self.embed = nn.Conv1d(latent_dim, cfg.dim, kernel_size=7, padding=3)
        self.pos_net = (
            PosNet(cfg.dim, cfg.attention_heads, window=cfg.attention_window,
                   dropout=cfg.pos_net_dropout, norm=cfg.pos_net_norm, groups=cfg.norm_groups)
            if cfg.attention else None
        )
        self.norm = layer_norm(cfg.dim, cfg.adanorm_embeddings)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, layer_scale=1 / cfg.num_layers,
                          adanorm_embeddings=cfg.adanorm_embeddings)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.embed.apply(init_backbone)
        self.blocks.apply(init_backbone)
        self.head = ISTFTHead(cfg.dim, n_fft, hop_length, channels)

    def receptive_field(self) -> Reach:
        """(left, right) frames that can change a frame's samples; None with global attention.

        embed (3) + pos_net (4 ResBlocks x 2 + window) + 3 per ConvNeXt block + the iSTFT
        overlap (2 each side for n_fft = 4 * hop).
        """
        parts: list[Reach] = [(3, 3), *(block.reach() for block in self.blocks)]
        if self.pos_net is not None:
            parts.append(self.pos_net.reach())
        parts.append(self.head.istft.reach())
        return add_reach(parts)

    def forward(self, z: Tensor) -> Tensor:
        x = self.embed(z)
        if self.pos_net is not None:
            x = self.pos_net(x)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x.transpose(1, 2)))
