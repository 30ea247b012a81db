"""X-Codec (Ye et al. 2024, "Codec Does Matter: Exploring the Semantic Shortcoming of Codec for
Audio Language Model"): a DAC codec whose RVQ also codes a frozen self-supervised model's
features, 16 kHz at 50 frames/s.

Encoder: DAC's acoustic encoder (codecs/dac.py) and a frozen HuBERT or WavLM, whose hidden
states (the input embedding and every layer's output) are averaged and pass through a small
conv adapter; the two streams are concatenated and fused by one linear layer:

    wav (whole frames) -> [DAC encoder(wav), adapter(mean_l HuBERT_l(pad(wav, hop/2)))]
        -> Linear -> z [B, D_ac + D_sem, T']

The semantic model sees the waveform padded by half a hop on each side, so its 400-sample
receptive field and 320-sample stride give one frame per hop, aligned with the acoustic ones.
Quantizer: EnCodec's residual VQ of EMA codebooks over the whole fused vector (the `rvq`
quantizer). Decoder: Linear back to the acoustic width, then DAC's decoder without its final
tanh. Its transposed convs (padding ceil(s / 2), output_padding s % 2) give exactly
T' * hop samples, which is the DAC family's own layout (not `publisher_padding`).

The publisher also trains a semantic decoder (`fc1` and a conv stack) on the quantized vector
to reconstruct the averaged features (its semantic loss); it has no part in encoding or
decoding, and audiotok does not load it.

The semantic model attends to the whole utterance and its first conv's GroupNorm normalises
over it: the receptive field is unbounded, so long files are chunked with a fixed context.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..strict_config import from_dict
from .components import DECODERS, ENCODERS
from .contracts import Decoder, Encoder
from .dac import DACDecoder, DACDecoderConfig, DACEncoder, DACEncoderConfig
from .xcodec2 import semantic_model

SEMANTIC_TYPES = ("hubert", "wavlm")


@dataclass
class XCodecAdapterConfig:
    """The publisher's SemanticEncoder: a conv of `kernel_size`, then per entry of
    `channel_ratios` a block of residual units (one per dilation, convs of
    `unit_kernel_size`) and a k=3 conv to `ratio * width` channels. The last ratio must be 1
    (the fusing layer reads the semantic model's width)."""

    kernel_size: int = 3
    channel_ratios: list[float] = field(default_factory=lambda: [1.0, 1.0])
    dilations: list[int] = field(default_factory=lambda: [1, 1])
    unit_kernel_size: int = 3

    def __post_init__(self):
        if not self.channel_ratios or self.channel_ratios[-1] != 1:
            raise ValueError(f"channel_ratios must end with 1, got {self.channel_ratios}")
        if self.kernel_size % 2 == 0 or self.unit_kernel_size % 2 == 0:
            raise ValueError("kernel_size and unit_kernel_size must be odd (centred convs)")


class AdapterUnit(nn.Module):
    """ELU, conv(k, dilation), ELU, conv(1), identity skip; no biases. [B, C, T] -> same."""

    def __init__(self, dim: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, padding=(kernel_size - 1) // 2 * dilation,
                               dilation=dilation, bias=False)
        self.conv2 = nn.Conv1d(dim, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(nn.functional.elu(self.conv1(nn.functional.elu(x))))


class AdapterBlock(nn.Module):
    def __init__(self, cfg: XCodecAdapterConfig, dim: int, out_dim: int):
        super().__init__()
        self.units = nn.ModuleList(AdapterUnit(dim, cfg.unit_kernel_size, d)
                                   for d in cfg.dilations)
        self.conv = nn.Conv1d(dim, out_dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        for unit in self.units:
            x = unit(x)
        return self.conv(x)


class SemanticAdapter(nn.Module):
    """x [B, C, T'] -> [B, C, T']."""

    def __init__(self, cfg: XCodecAdapterConfig, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, cfg.kernel_size, padding=cfg.kernel_size // 2,
                              bias=False)
        widths = [dim] + [int(dim * r) for r in cfg.channel_ratios]
        self.blocks = nn.ModuleList(AdapterBlock(cfg, a, b)
                                    for a, b in itertools.pairwise(widths))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        for block in self.blocks:
            x = block(x)
        return x


@dataclass
class XCodecEncoderConfig:
    """acoustic: DAC encoder settings (the releases: d_model 64, strides [8, 5, 4, 2], plain
    weights); acoustic_dim its output width (256). semantic: the HuBERT or WavLM config as a
    dict (transformers' HubertConfig / WavLMConfig, base size in the releases), built with
    `AutoModel.from_config`; its weights come from the checkpoint. adapter: see
    XCodecAdapterConfig."""

    acoustic: dict = field(default_factory=lambda: {
        "d_model": 64, "strides": [8, 5, 4, 2], "norm": "none"})
    acoustic_dim: int = 256
    semantic: dict = field(default_factory=lambda: {"model_type": "hubert"})
    adapter: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.acoustic_dim < 1:
            raise ValueError(f"acoustic_dim must be >= 1, got {self.acoustic_dim}")
        if self.semantic.get("model_type") not in SEMANTIC_TYPES:
            raise ValueError(f"semantic must be a {' or '.join(SEMANTIC_TYPES)} config (a model "
                             f"of raw waveforms), got model_type "
                             f"{self.semantic.get('model_type')!r}")


def conv_frames(num_samples: int, kernels, strides) -> int:
    """Frames a stack of unpadded convs (HuBERT's feature encoder) gives for `num_samples`."""
    for k, s in zip(kernels, strides):
        num_samples = (num_samples - k) // s + 1
    return num_samples


def one_frame_per_hop(kernels, strides, hop_length: int) -> bool:
    """Whether a semantic model's feature encoder gives one frame per hop of the waveform
    padded by half a hop on each side, as the releases' HuBERT and WavLM (stride 320,
    receptive field 400) do; the publisher's model fails on any other."""
    return math.prod(strides) == hop_length and \
        conv_frames(hop_length + 2 * (hop_length // 2), kernels, strides) == 1


@ENCODERS.register("xcodec", XCodecEncoderConfig)
class XCodecEncoder(Encoder):
    """wav [B, 1, T] -> z [B, latent_dim, T / hop], T a whole number of frames (the publisher's
    feature extractor, DacFeatureExtractor, pads to them as `Codec` does)."""

    def __init__(self, cfg: XCodecEncoderConfig, channels: int, latent_dim: int):
        super().__init__()
        if channels != 1:
            raise ValueError(f"X-Codec encodes mono audio, got {channels} channels")
        self.acoustic = DACEncoder(from_dict(DACEncoderConfig, cfg.acoustic, "encoder.acoustic"),
                                   1, cfg.acoustic_dim)
        self.hop_length = self.acoustic.hop_length
        self.semantic = semantic_model(cfg.semantic)
        # frozen, as the publisher runs it under no_grad: fine-tuning leaves it as released
        self.semantic.requires_grad_(False)
        self.pad = self.hop_length // 2
        conv = self.semantic.config
        if not one_frame_per_hop(conv.conv_kernel, conv.conv_stride, self.hop_length):
            raise ValueError(f"the semantic model's feature encoder (kernels "
                             f"{list(conv.conv_kernel)}, strides {list(conv.conv_stride)}) "
                             f"must give one frame per hop of {self.hop_length} samples")
        width = self.semantic.config.hidden_size
        self.adapter = SemanticAdapter(from_dict(XCodecAdapterConfig, cfg.adapter,
                                                 "encoder.adapter"), width)
        self.fuse = nn.Linear(cfg.acoustic_dim + width, latent_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.semantic.eval()  # no dropout, layer drop or masking in the frozen model
        return self

    def receptive_field(self) -> None:
        return None  # the semantic model's attention and GroupNorm see the whole input

    def semantic_features(self, wav: Tensor) -> Tensor:
        """wav [B, 1, T] -> the mean of the semantic model's hidden states [B, T', width],
        computed as the publisher computes it (its `_extract_semantic_features`)."""
        x = nn.functional.pad(wav[:, 0, :], (self.pad, self.pad))
        with torch.no_grad():
            hidden = self.semantic(x, output_hidden_states=True).hidden_states
        return torch.stack(hidden, dim=1).mean(dim=1)

    def forward(self, wav: Tensor) -> Tensor:
        semantic = self.adapter(self.semantic_features(wav).transpose(1, 2))
        acoustic = self.acoustic(wav)
        if acoustic.shape[-1] != semantic.shape[-1]:
            raise ValueError(f"X-Codec encodes whole frames of {self.hop_length} samples, got "
                             f"{wav.shape[-1]} samples")
        # channels-last through the fusing Linear, as the publisher
        z = self.fuse(torch.cat([acoustic, semantic], 1).transpose(1, 2))
        return z.transpose(1, 2)


@dataclass
class XCodecDecoderConfig:
    """acoustic: DAC decoder settings (the releases: 1024 channels, strides [8, 5, 4, 2], no
    tanh, plain weights); acoustic_dim the width the Linear maps the latents to (256)."""

    acoustic: dict = field(default_factory=lambda: {
        "channels": 1024, "strides": [8, 5, 4, 2], "tanh": False, "norm": "none"})
    acoustic_dim: int = 256


@DECODERS.register("xcodec", XCodecDecoderConfig)
class XCodecDecoder(Decoder):
    """z [B, latent_dim, T'] -> wav [B, 1, T' * hop]."""

    def __init__(self, cfg: XCodecDecoderConfig, channels: int, latent_dim: int,
                 hop_length: int):
        super().__init__()
        self.fc = nn.Linear(latent_dim, cfg.acoustic_dim)
        self.acoustic = DACDecoder(from_dict(DACDecoderConfig, cfg.acoustic, "decoder.acoustic"),
                                   channels, cfg.acoustic_dim, hop_length)

    def receptive_field(self):
        return self.acoustic.receptive_field()  # the Linear acts frame by frame

    def forward(self, z: Tensor) -> Tensor:
        return self.acoustic(self.fc(z.transpose(1, 2)).transpose(1, 2))
