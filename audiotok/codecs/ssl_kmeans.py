"""The `ssl_kmeans` family: SSL k-means units as a codec (DASB's "semantic tokens").

    wav -> frozen SSL model (encoder "ssl": HuBERT / WavLM / wav2vec 2.0 layer or layer
           average) -> nearest k-means centre (quantizer "kmeans", units from
           `audiotok kmeans`) -> code per frame -> the centre's vector -> a vocoder trained
           by a recipe (any decoder: Vocos, SEANet) -> wav

Several layers at once (Mousavi et al. 2024, "How Should We Extract Discrete Audio Tokens from
Self-Supervised Models?"): `layers: [3, 7, 12]` gives one k-means per layer, each layer a row
of codes [B, L, T]; the units of every layer get a learned embedding (initialised at their
centre), an attention over the layers weighs them into one vector per frame
(modules/layer_attention.py) and one vocoder decodes it. Trained with layer dropout, it decodes
any subset of the layers; `n_codebooks=n` codes and decodes the first n.

Only the decoder (and, with several layers, the embeddings and the attention) trains; the SSL
model and the centres are frozen. The codec refers to its SSL model and units file by path
(both are read when it is built, so keep them where the config says); their weights are also
stored in `model.safetensors`, so the fingerprint covers them. The SSL model's input rate must
be the codec's `sample_rate` (16 kHz for the usual models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..modules.layer_attention import LayerAttention, sample_kept_layers
from ..modules.ssl import (
    average_layers,
    conv_geometry,
    layer_streams,
    load_frozen,
    load_units,
    pick_layers,
)
from ..quantizers.base import QUANTIZERS, Quantizer, QuantizerOutput
from ..quantizers.codebook_usage import level_metrics
from ..quantizers.vq import check_code_rows
from .components import ENCODERS
from .contracts import Encoder


@dataclass
class SSLEncoderConfig:
    """path: local directory or hub id (`AutoModel.from_pretrained`); layers: the token
    streams, one k-means (one code row) each: a hidden-state index (0 = embeddings, i = output
    of layer i) or a list of indices averaged into one stream; [] = one stream averaging every
    layer. [6] is one row, [3, 7, 12] three, [[3, 4, 5]] one row of the three averaged;
    normalize: zero-mean unit-variance input."""

    path: str = ""
    layers: list[int | list[int]] = field(default_factory=list)
    normalize: bool = False

    def __post_init__(self):
        if not self.path:
            raise ValueError("path must name the SSL model (a local directory or a hub id)")
        layer_streams(self.layers)


@ENCODERS.register("ssl", SSLEncoderConfig)
class SSLEncoder(Encoder):
    """wav [B, C, T] (T a multiple of the model's stride) -> features [B, L * D, T / stride],
    the L streams' features one after the other on the channel axis, padded as the
    distillation teachers pad (`conv_geometry`), so frame i is centred on samples
    [i * stride, (i + 1) * stride) and the frame count is exact."""

    def __init__(self, cfg: SSLEncoderConfig, channels: int, latent_dim: int):
        super().__init__()
        self.cfg = cfg
        self.model = load_frozen(cfg.path)
        config = self.model.config
        if config.hidden_size != latent_dim:
            raise ValueError(f"latent_dim must be the SSL model's width {config.hidden_size}, "
                             f"got {latent_dim}")
        self.streams = [pick_layers(s, config.num_hidden_layers, cfg.path, "encoder.layers")
                        for s in layer_streams(cfg.layers)]
        self.hop_length, self.pad = conv_geometry(config)

    @property
    def n_streams(self) -> int:
        return len(self.streams)

    def train(self, mode: bool = True) -> SSLEncoder:
        """The SSL model stays in eval mode (no dropout): it is frozen."""
        super().train(mode)
        self.model.eval()
        return self

    def receptive_field(self) -> None:
        return None  # self-attention over the whole input

    def forward(self, wav: Tensor) -> Tensor:
        x = F.pad(wav.float().mean(1), self.pad)
        if self.cfg.normalize:
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-7)
        with torch.no_grad():
            out = self.model(x, output_hidden_states=True)
        if len(self.streams) == 1:  # the single-layer path, op for op
            return average_layers(out.hidden_states, self.streams[0]).transpose(1, 2)
        return torch.cat([average_layers(out.hidden_states, s) for s in self.streams],
                         -1).transpose(1, 2)


@dataclass
class KMeansQuantizerConfig:
    """units: the file `audiotok kmeans` wrote ([K, D] one layer, [L, K, D] several);
    codebook_size: its k (checked). With several layers: attention_dim, the width of the
    layer attention's scoring MLP (SpeechBrain's attn_dim); layer_dropout, the fraction of
    training items that drop a random subset of their layers (see modules/layer_attention.py)."""

    units: str = ""
    codebook_size: int = 500
    attention_dim: int = 128
    layer_dropout: float = 1.0

    def __post_init__(self):
        if not self.units:
            raise ValueError("units must name a k-means units file (from `audiotok kmeans`)")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.attention_dim < 1:
            raise ValueError(f"attention_dim must be >= 1, got {self.attention_dim}")
        if not 0.0 <= self.layer_dropout <= 1.0:
            raise ValueError(f"layer_dropout must be in [0, 1], got {self.layer_dropout}")


@QUANTIZERS.register("kmeans", KMeansQuantizerConfig)
class KMeansQuantizer(Quantizer):
    """features [B, L * D, T] -> codes long [B, L, T] (nearest centre of each layer's
    k-means) -> z_q [B, D, T]: the centre itself for one layer; for several, the attention-
    weighted sum of the units' learned embeddings."""

    def __init__(self, cfg: KMeansQuantizerConfig, dim: int):
        super().__init__()
        centroids, meta = load_units(cfg.units)
        if centroids.ndim not in (2, 3) or tuple(centroids.shape[-2:]) != (
                cfg.codebook_size, dim):
            raise ValueError(f"quantizer.units: {cfg.units} holds {tuple(centroids.shape)} "
                             f"centres; the config needs ({cfg.codebook_size}, {dim}) per layer")
        self.cfg, self.dim = cfg, dim
        self.n_layers = 1 if centroids.ndim == 2 else len(centroids)
        self.codebook_sizes = [cfg.codebook_size] * self.n_layers
        # the layers the units were fit on, to check the encoder against (several layers)
        layers = (meta.get("teacher") or {}).get("layers")
        self.unit_streams = layer_streams(layers) if centroids.ndim == 3 and layers else None
        self.register_buffer("centroids", centroids)
        if centroids.ndim == 3:
            self.embed = nn.Parameter(centroids.clone())
            self.attention = LayerAttention(dim, cfg.attention_dim)

    def check_encoder(self, encoder: nn.Module) -> None:
        """ConfigError unless the encoder gives one stream per k-means of the units file."""
        n = encoder.n_streams
        if n != self.n_layers:
            hint = (f"; to average hidden states into one stream, nest them: layers: "
                    f"[{encoder.cfg.layers}]") if self.n_layers == 1 else ""
            raise ConfigError(f"encoder.layers gives {n} layer stream{'s' * (n != 1)} but "
                              f"quantizer.units ({self.cfg.units}) holds k-means of "
                              f"{self.n_layers}{hint}")
        if self.unit_streams is None or not isinstance(encoder, SSLEncoder):
            return
        streams = layer_streams(encoder.cfg.layers)
        if streams != self.unit_streams:
            raise ConfigError(f"encoder.layers {streams} are not the layers "
                              f"{self.unit_streams} quantizer.units ({self.cfg.units}) was "
                              f"fit on")

    def _codes(self, z: Tensor, n: int) -> Tensor:
        x = z.transpose(1, 2).float()
        if self.centroids.ndim == 2:
            return torch.cdist(x, self.centroids.expand(len(x), -1, -1)).argmin(-1)[:, None]
        if x.shape[-1] != self.n_layers * self.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, not {self.n_layers} "
                             f"layers x {self.dim}")
        parts = x.split(self.dim, -1)
        return torch.stack([torch.cdist(parts[i], self.centroids[i].expand(len(x), -1, -1))
                            .argmin(-1) for i in range(n)], 1)

    def _pool(self, codes: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """codes long [B, k, T] of the first k layers -> (z_q [B, D, T], weights [B, k, T])."""
        e = torch.stack([self.embed[i][codes[:, i]] for i in range(codes.shape[1])], 1)
        return self.attention(e, keep)

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, L * D, T] -> z_q [B, D, T], codes [B, n, T]. Several layers in training with
        n_codebooks None: layer dropout (codes then hold every layer, also those an item
        dropped)."""
        n = self.check_n_codebooks(n_codebooks)
        codes = self._codes(z, n)
        metrics = level_metrics(codes, self.codebook_sizes)
        if self.centroids.ndim == 2:
            return QuantizerOutput(self.decode(codes), codes, {}, metrics)
        keep = None
        if self.training and n_codebooks is None and self.cfg.layer_dropout > 0:
            keep = sample_kept_layers(len(z), n, self.cfg.layer_dropout, z.device)
        z_q, weights = self._pool(codes, keep)
        for i, w in enumerate(weights.detach().mean((0, 2))):
            metrics[f"layers/weight/{i}"] = w  # mean attention on layer i (0 when dropped)
        return QuantizerOutput(z_q, codes, {}, metrics)

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        return self._codes(z, self.check_n_codebooks(n_codebooks))

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, T], k <= L -> z_q [B, D, T] from the first k layers."""
        check_code_rows(codes, self.n_layers)
        if self.centroids.ndim == 2:
            return self.centroids[codes[:, 0]].transpose(1, 2)
        return self._pool(codes)[0]

    def code_vectors(self) -> list[Tensor]:
        """Each layer's k-means centres [K, D]: the space its codes are searched in."""
        return list(self.centroids) if self.centroids.ndim == 3 else [self.centroids]
