"""The `beats` family: BEATs' acoustic tokenizers as tokens-only codecs.

    wav (16 kHz) -> Kaldi fbank patches (modules/fbank_patches.py) -> encoder -> quantizer
                 -> one label per patch: codes [B, 1, N], 50 patches a second for 16 x 16
                    patches of 128 mel bins, time-major within each 160 ms stretch

Encoders: "fbank_patches" (the raw flattened patches, for the random-projection tokenizer of
iteration 1) and "beats" (BEATs' tokenizer encoder: patch embedding, Transformer, and the
Linear-Tanh-Linear map into the codebook space of unilm beats/Tokenizers.py). Quantizers:
"random_projection" and "norm_ema_vq" (quantizers/beats.py). Decoder: "none" — these codecs
make labels for SSL training and nothing decodes them back to audio; `Codec.decode` refuses
them in one line (TOKENS_ONLY).

Each patch "frame" is hop_length = 320 samples of the flattened sequence, and the encoder
works on whole stretches of `mel_bins / patch` frames (`frame_multiple`), so `Codec.encode`
pads the input to whole 160 ms stretches. Full self-attention: the encoder has no bounded
receptive field, so long inputs coded chunk by chunk differ from one pass near the cuts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from ..errors import AudiotokError
from ..modules.beats_transformer import Backbone, BackboneConfig
from ..modules.fbank_patches import PatchConfig, PatchEmbedding, check_rate, fbank, patches
from .components import DECODERS, ENCODERS
from .contracts import TOKENS_ONLY, Decoder, Encoder


@dataclass
class PatchEncoderConfig(PatchConfig):
    """The flattened fbank patches themselves; latent_dim must be patch * patch."""


@ENCODERS.register("fbank_patches", PatchEncoderConfig)
class PatchEncoder(Encoder):
    """wav [B, C, T] -> patches [B, patch^2, T / hop_length] (no parameters)."""

    def __init__(self, cfg: PatchEncoderConfig, latent_dim: int, sample_rate: int):
        super().__init__()
        check_rate(sample_rate)
        if latent_dim != cfg.patch ** 2:
            raise ValueError(f"latent_dim must be patch * patch = {cfg.patch ** 2} for "
                             f"fbank_patches, got {latent_dim}")
        self.cfg = cfg
        self.hop_length = cfg.hop_length
        self.frame_multiple = cfg.per_stretch

    def receptive_field(self) -> tuple[int, int]:
        stretch = self.cfg.patch * 160
        return (stretch + 120, stretch + 120)  # a patch's own 160 ms plus the window overlap

    def forward(self, wav: Tensor) -> Tensor:
        return patches(fbank(wav, self.cfg.mel_bins), self.cfg.patch).transpose(1, 2)


@dataclass
class BEATsEncoderConfig(PatchConfig):
    """BEATs' tokenizer encoder (unilm beats/Tokenizers.py): patch embedding of `embed_dim`
    (512), the Transformer `backbone` (12 layers of 768, as the SSL model), then
    Linear-Tanh-Linear down to latent_dim (the codebook's 256 dims)."""

    embed_dim: int = 512
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def __post_init__(self):
        super().__post_init__()
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {self.embed_dim}")


@ENCODERS.register("beats", BEATsEncoderConfig)
class BEATsEncoder(Encoder):
    """wav [B, C, T] -> latents [B, latent_dim, T / hop_length]."""

    def __init__(self, cfg: BEATsEncoderConfig, latent_dim: int, sample_rate: int):
        super().__init__()
        check_rate(sample_rate)
        self.cfg = cfg
        self.hop_length = cfg.hop_length
        self.frame_multiple = cfg.per_stretch
        dim = cfg.backbone.dim
        self.embed = PatchEmbedding(cfg, cfg.embed_dim, dim)
        self.backbone = Backbone(cfg.backbone)
        self.to_code = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, latent_dim))

    def receptive_field(self) -> None:
        return None  # self-attention over the whole input

    def forward(self, wav: Tensor) -> Tensor:
        return self.to_code(self.backbone(self.embed(wav))).transpose(1, 2)


@dataclass
class NoDecoderConfig:
    """No options: the codec has no decoder."""


@DECODERS.register("none", NoDecoderConfig)
class NoDecoder(Decoder):
    """The decoder of a tokens-only codec: using it is a one-line error (`Codec.decode`
    refuses every call first, whatever the tokens)."""

    tokens_only = True

    def __init__(self, cfg: NoDecoderConfig):
        super().__init__()

    def receptive_field(self) -> None:
        return None

    def forward(self, z: Tensor) -> Tensor:
        raise AudiotokError(f"this codec {TOKENS_ONLY}")




