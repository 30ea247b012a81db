"""The `ssl_kmeans` family: SSL k-means units as a codec (DASB's "semantic tokens").

    wav -> frozen SSL model (encoder "ssl": HuBERT / WavLM / wav2vec 2.0 layer or layer
           average) -> nearest k-means centre (quantizer "kmeans", units from
           `audiotok kmeans`) -> code per frame -> the centre's vector -> a vocoder trained
           by a recipe (any decoder: Vocos, SEANet) -> wav

Only the decoder trains; the SSL model and the centres are frozen. The codec refers to its SSL
model and units file by path (both are read when it is built, so keep them where the config
says); their weights are also stored in `model.safetensors`, so the fingerprint covers them.
The SSL model's input rate must be the codec's `sample_rate` (16 kHz for the usual models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..quantizers.base import QUANTIZERS, Quantizer, QuantizerOutput
from ..quantizers.metrics import level_metrics
from ..quantizers.vq import check_code_rows
from .components import ENCODERS


@dataclass
class SSLEncoderConfig:
    """path: local directory or hub id (`AutoModel.from_pretrained`); layers: hidden_states
    averaged (0 = embeddings, [] = every layer); normalize: zero-mean unit-variance input."""

    path: str = ""
    layers: list[int] = field(default_factory=list)
    normalize: bool = False

    def __post_init__(self):
        if not self.path:
            raise ValueError("path must name the SSL model (a local directory or a hub id)")


class SSLEncoder(nn.Module):
    """wav [B, C, T] (T a multiple of the model's stride) -> features [B, D, T / stride],
    padded as the distillation teachers pad (`conv_geometry`), so frame i is centred on
    samples [i * stride, (i + 1) * stride) and the frame count is exact."""

    def __init__(self, cfg: SSLEncoderConfig, channels: int, latent_dim: int):
        super().__init__()
        from ..distill.teachers import conv_geometry, load_frozen, pick_layers

        self.cfg = cfg
        self.model = load_frozen(cfg.path)
        config = self.model.config
        if config.hidden_size != latent_dim:
            raise ValueError(f"latent_dim must be the SSL model's width {config.hidden_size}, "
                             f"got {latent_dim}")
        self.layers = pick_layers(cfg.layers, config.num_hidden_layers, cfg.path)
        self.hop_length, self.pad = conv_geometry(config)

    def train(self, mode: bool = True) -> SSLEncoder:
        """The SSL model stays in eval mode (no dropout): it is frozen."""
        super().train(mode)
        self.model.eval()
        return self

    def receptive_field(self) -> None:
        return None  # self-attention over the whole input

    def forward(self, wav: Tensor) -> Tensor:
        from ..distill.teachers import average_layers

        x = F.pad(wav.float().mean(1), self.pad)
        if self.cfg.normalize:
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-7)
        with torch.no_grad():
            out = self.model(x, output_hidden_states=True)
        return average_layers(out.hidden_states, self.layers).transpose(1, 2)


@dataclass
class KMeansQuantizerConfig:
    """units: the file `audiotok kmeans` wrote; codebook_size: its k (checked)."""

    units: str = ""
    codebook_size: int = 500

    def __post_init__(self):
        if not self.units:
            raise ValueError("units must name a k-means units file (from `audiotok kmeans`)")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")


class KMeansQuantizer(Quantizer):
    """features [B, D, T] -> codes long [B, 1, T] (nearest centre) -> the centre [B, D, T]."""

    def __init__(self, cfg: KMeansQuantizerConfig, dim: int):
        super().__init__()
        from ..distill.kmeans import load_units

        centroids, _ = load_units(cfg.units)
        if tuple(centroids.shape) != (cfg.codebook_size, dim):
            raise ValueError(f"{cfg.units} holds {tuple(centroids.shape)} centres; the config "
                             f"needs ({cfg.codebook_size}, {dim})")
        self.dim = dim
        self.codebook_sizes = [cfg.codebook_size]
        self.register_buffer("centroids", centroids)

    def _codes(self, z: Tensor) -> Tensor:
        x = z.transpose(1, 2).float()
        return torch.cdist(x, self.centroids.expand(len(x), -1, -1)).argmin(-1)[:, None]

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        self.check_n_codebooks(n_codebooks)
        codes = self._codes(z)
        return QuantizerOutput(self.decode(codes), codes, {},
                               level_metrics(codes, self.codebook_sizes))

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        self.check_n_codebooks(n_codebooks)
        return self._codes(z)

    def decode(self, codes: Tensor) -> Tensor:
        check_code_rows(codes, 1)
        return self.centroids[codes[:, 0]].transpose(1, 2)

    def code_vectors(self) -> list[Tensor]:
        return [self.centroids]


@ENCODERS.register("ssl", SSLEncoderConfig)
def build_ssl_encoder(cfg: SSLEncoderConfig, channels: int, latent_dim: int) -> SSLEncoder:
    return SSLEncoder(cfg, channels, latent_dim)


@QUANTIZERS.register("kmeans", KMeansQuantizerConfig)
def build_kmeans_quantizer(cfg: KMeansQuantizerConfig, dim: int) -> KMeansQuantizer:
    return KMeansQuantizer(cfg, dim)
