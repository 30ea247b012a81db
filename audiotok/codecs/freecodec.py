"""FreeCodec's frame encoder and decoder (Zheng et al. 2024, "FreeCodec: A disentangled
neural speech codec with fewer tokens", Interspeech 2025, sec. 2). The third part, the
speaker encoder whose one vector per utterance carries the timbre, is the codec's global
branch (codecs/global_branch.py, codecs/speaker_encoder.py).

Encoder "freecodec": wav [B, 1, T] -> z [B, prosody_dim + content_dim, T / hop]
    prosody: the lowest `prosody_bins` bands of a log mel at the frame rate -> convs ->
             max-pool over `prosody_stride` frames (sec. 2.1: a long stride and max pooling
             keep speaker and content out) -> 1x1 conv, each value held `prosody_stride`
             frames (the parallel quantizer's stream of that stride codes it once)
    content: a SEANet conv encoder (FreeCodec follows SuperCodec's) at the frame rate
    The channels are [prosody | content], the order of the parallel quantizer's streams
    (coarsest first, as lm.flatten_tree wants).

Decoder "freecodec": z [B, D_in, T'] (frame latents with the timbre vector appended at
every frame) -> 7-tap conv -> Transformer (non-causal) -> ConvNeXt blocks -> a SEANet
upsampling stack (strides 8, 5, 4, 2) -> wav [B, 1, T' * hop].

Departures (none of the paper's code is public): prosody reads the first 20 of 80 mel bands
(NaturalSpeech 3's FACodec prosody input; FreeCodec names only its long stride and max
pooling); the ConvNeXt blocks run before the upsampling stack, at the frame rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor, nn

from ..errors import ConfigError
from ..modules.convnext import ConvNeXtBlock
from ..modules.mel import CenteredLogMel as LogMel
from ..modules.transformer import CausalTransformer, TransformerConfig
from ..strict_config import check_ranges, from_dict, to_dict
from .components import DECODERS, ENCODERS
from .contracts import Decoder, Encoder
from .seanet import SEANetConfig, SEANetDecoder, SEANetDecoderConfig, SEANetEncoder


def _content_default() -> dict:
    return {"n_filters": 32, "strides": [2, 4, 5, 8], "lstm_layers": 0}


@dataclass
class FreeCodecEncoderConfig:
    content: dict = field(default_factory=_content_default)  # SEANet encoder fields
    content_dim: int = 256
    prosody_dim: int = 256
    prosody_stride: int = 8
    prosody_bins: int = 20
    n_mels: int = 80
    n_fft: int = 1024
    prosody_channels: int = 256
    prosody_layers: int = 2
    # training only: each item reaches the prosody and content encoders shifted by a random
    # whole number of semitones in [-perturb_semitones, perturb_semitones] (0: off)
    perturb_semitones: int = 0

    def __post_init__(self):
        check_ranges(self, positive=("content_dim", "prosody_dim", "prosody_stride",
                                     "prosody_bins", "n_mels", "n_fft", "prosody_channels",
                                     "prosody_layers"), at_least_0=("perturb_semitones",))
        if self.prosody_bins > self.n_mels:
            raise ValueError(f"prosody_bins ({self.prosody_bins}) cannot exceed n_mels "
                             f"({self.n_mels})")
        self.content = to_dict(from_dict(SEANetConfig, self.content, "encoder.content"))


class ProsodyEncoder(nn.Module):
    """log mel [B, bins, T] (T a multiple of stride) -> [B, dim, T], constant over each
    run of `stride` frames."""

    def __init__(self, cfg: FreeCodecEncoderConfig):
        super().__init__()
        c = cfg.prosody_channels
        layers: list[nn.Module] = [nn.Conv1d(cfg.prosody_bins, c, 3, padding=1), nn.GELU()]
        for _ in range(cfg.prosody_layers - 1):
            layers += [nn.Conv1d(c, c, 3, padding=1), nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv1d(c, cfg.prosody_dim, 1)
        self.stride = cfg.prosody_stride

    def forward(self, mel: Tensor) -> Tensor:
        h = F.max_pool1d(self.convs(mel), self.stride, self.stride)
        return self.out(h).repeat_interleave(self.stride, -1)


@ENCODERS.register("freecodec", FreeCodecEncoderConfig)
class FreeCodecEncoder(Encoder):
    def __init__(self, cfg: FreeCodecEncoderConfig, channels: int, latent_dim: int,
                 sample_rate: int):
        super().__init__()
        if channels != 1:
            raise ConfigError(f"encoder: freecodec codes mono speech, not {channels} channels")
        if cfg.prosody_dim + cfg.content_dim != latent_dim:
            raise ConfigError(f"encoder: prosody_dim + content_dim = "
                              f"{cfg.prosody_dim + cfg.content_dim}, but latent_dim is "
                              f"{latent_dim}")
        self.cfg = cfg
        content = SEANetConfig(**cfg.content)
        self.content = SEANetEncoder(content, channels, cfg.content_dim)
        self.hop_length = self.content.hop_length
        self.mel = LogMel(sample_rate, cfg.n_fft, self.hop_length, cfg.n_mels)
        self.prosody = ProsodyEncoder(cfg)
        self.frame_multiple = cfg.prosody_stride
        self.sample_rate = sample_rate

    def receptive_field(self):
        """A frame's prosody depends on its whole pooling group (stride - 1 frames either
        side at most), the convs' reach and half an FFT window; chunks are cut at whole
        groups (frame_multiple), so the bound makes chunked encoding exact."""
        content = self.content.receptive_field()
        if content is None:
            return None
        frames = self.cfg.prosody_stride - 1 + self.cfg.prosody_layers
        prosody = frames * self.hop_length + self.cfg.n_fft // 2
        return max(content[0], prosody), max(content[1], prosody)

    def perturbed(self, wav: Tensor) -> Tensor:
        """Each item pitch-shifted (pitch and formants together, length kept) by a random
        whole number of semitones: the speaker perturbation of NANSY (Choi et al. 2021, sec.
        3.2) and of ContentVec (Qian et al. 2022), which makes the voice in the frame streams
        unreliable so the decoder takes it from the timbre codes. The global branch reads the
        clean input."""
        k = self.cfg.perturb_semitones
        steps = torch.randint(-k, k + 1, (wav.shape[0],)).tolist()
        return torch.cat([w[None] if n == 0 else pitch_shift(w[None], n) for w, n in
                          zip(wav, steps)])

    def forward(self, wav: Tensor) -> Tensor:
        if self.training and self.cfg.perturb_semitones:
            wav = self.perturbed(wav)
        frames = wav.shape[-1] // self.hop_length
        mel = self.mel(wav)[:, :self.cfg.prosody_bins, :frames]
        return torch.cat([self.prosody(mel), self.content(wav)], 1)


def pitch_shift(wav: Tensor, semitones: int, n_fft: int = 512, hop: int = 128) -> Tensor:
    """wav [..., T] -> [..., T] shifted by `semitones`: a phase-vocoder time stretch by the
    pitch ratio r, then linear resampling back to T samples. torchaudio's `pitch_shift` does the
    same with a windowed-sinc resampler whose kernel, for ratios like 2^(1/12), made one
    second of audio take 7-40 s; linear interpolation aliases a little above
    sample_rate / (2 r), which a training-time perturbation can afford."""
    r = 2 ** (semitones / 12)
    window = torch.hann_window(n_fft, device=wav.device)
    spec = torch.stft(wav.reshape(-1, wav.shape[-1]), n_fft, hop, window=window,
                      return_complex=True)
    advance = torch.linspace(0, math.pi * hop, n_fft // 2 + 1, device=wav.device)[:, None]
    stretched = AF.phase_vocoder(spec, 1 / r, advance)
    y = torch.istft(stretched, n_fft, hop, window=window, length=round(wav.shape[-1] * r))
    y = F.interpolate(y[:, None], size=wav.shape[-1], mode="linear", align_corners=False)
    return y.reshape(wav.shape)


def _transformer_default() -> dict:
    return {"layers": 4, "heads": 8, "dim_feedforward": 2048, "causal": False}


def _upsample_default() -> dict:
    return {"n_filters": 32, "strides": [8, 5, 4, 2], "lstm_layers": 0}


@dataclass
class FreeCodecDecoderConfig:
    dim: int = 512
    transformer: dict = field(default_factory=_transformer_default)  # TransformerConfig
    convnext_layers: int = 4
    intermediate_dim: int = 1536
    upsample: dict = field(default_factory=_upsample_default)  # SEANet decoder fields

    def __post_init__(self):
        check_ranges(self, positive=("dim", "intermediate_dim"), at_least_0=("convnext_layers",))
        given = dict(self.transformer)
        if given.setdefault("dim", self.dim) != self.dim:
            raise ValueError(f"transformer.dim ({given['dim']}) must equal dim ({self.dim})")
        self.transformer = to_dict(from_dict(TransformerConfig, given, "decoder.transformer"))
        self.upsample = to_dict(from_dict(SEANetDecoderConfig, self.upsample,
                                          "decoder.upsample"))


@DECODERS.register("freecodec", FreeCodecDecoderConfig)
class FreeCodecDecoder(Decoder):
    def __init__(self, cfg: FreeCodecDecoderConfig, channels: int, latent_dim: int,
                 hop_length: int):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Conv1d(latent_dim, cfg.dim, 7, padding=3)
        tcfg = TransformerConfig(**cfg.transformer)
        self.transformer = CausalTransformer(tcfg) if tcfg.layers else None
        self.blocks = nn.Sequential(*(ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, 1 / 8)
                                      for _ in range(cfg.convnext_layers)))
        self.norm = nn.LayerNorm(cfg.dim)
        self.upsample = SEANetDecoder(SEANetDecoderConfig(**cfg.upsample), channels, cfg.dim,
                                      hop_length)

    def receptive_field(self):
        reach = self.transformer.reach() if self.transformer is not None else (0, 0)
        up = self.upsample.receptive_field()
        if reach is None or up is None:
            return None
        n = 3 + 3 * self.cfg.convnext_layers  # the 7-tap projection and 7-tap depthwise convs
        return reach[0] + n + up[0], reach[1] + n + up[1]

    def forward(self, z: Tensor) -> Tensor:
        h = self.proj(z)
        if self.transformer is not None:
            h = self.transformer(h)
        h = self.norm(self.blocks(h).transpose(1, 2)).transpose(1, 2)
        return self.upsample(h)
