"""Spectral encoder: an STFT front end and ConvNeXt stacks at frame rate.

Time-domain encoders (SEANet, DAC) spend most of their compute in the first layers, which run
at the sample rate with few channels: small convolutions that a CPU executes far below its
peak. A spectral encoder starts from an STFT instead, so every layer runs at a frame rate
(100 or 50 Hz for speech) with wide matrix multiplies. APCodec (Ai et al. 2024,
arXiv:2402.10533) encodes amplitude and phase spectra with ConvNeXt blocks this way, and
Langman et al. 2024 (arXiv:2406.05298) build speech codecs on spectrogram inputs; paired with the Vocos iSTFT decoder (codecs/vocos.py) the whole
codec runs at frame rate. The data flow here (ours):

    wav [B, C, T] -> STFT (n_fft, hop) -> per bin: log|X|, and X compressed to |X|^0.3
        -> conv (kernel_size) -> LayerNorm -> N x ConvNeXt            (at sample_rate / hop)
        -> per downsampling stride s: conv k=2s stride s -> M x ConvNeXt
        -> LayerNorm -> conv k=1 -> z [B, D, T / (hop * prod(strides))]

Every layer has a bounded reach, so chunked encoding is exact (codecs/chunking.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..modules.conv import Conv1d, chain_reach
from ..modules.convnext import ConvNeXtBlock
from ..modules.f0 import VOICING_THRESHOLD, f0_to_latent, refine_f0, yin_f0, yin_reach
from ..modules.istft import check_stft_sizes, same_padding, stft_same, stft_same_parts
from ..modules.mel import LogMel
from ..quantizers.pitch_rvq import check_pitch_coding
from .components import ENCODERS
from .contracts import Encoder
from .vocos import init_backbone

# |X|^0.3 amplitude compression of the complex spectrum, as speech-enhancement models use
# (Braun & Tashev 2021); the log-magnitude channel keeps the quiet bins' level.
COMPRESS = 0.3
LOG_FLOOR = 1e-5


@dataclass
class STFTEncoderConfig:
    n_fft: int = 640
    hop_length: int = 160             # STFT hop; the codec's hop is this times prod(strides)
    dim: int = 256                    # width at the STFT frame rate
    num_layers: int = 4               # ConvNeXt blocks at the STFT frame rate
    strides: list[int] = field(default_factory=lambda: [2])
    dims: list[int] = field(default_factory=lambda: [384])        # width after each stride
    layers_per_stage: list[int] = field(default_factory=lambda: [4])
    mlp_ratio: float = 3.0            # ConvNeXt hidden width / width (Vocos: 1536 / 512)
    kernel_size: int = 7              # of the first conv, over STFT frames
    # latent channel 0 = the YIN F0 of each frame, coded by modules/f0.py (for the
    # pitch_rvq quantizer and a spectral decoder with `pitch: true`); mono only
    pitch: bool = False
    # YIN voicing decision (modules/f0.py); 0.3 in the first pitch releases. On 8 held-out
    # clips the bundled codec, untrained for it, already scores PESQ-WB 1.60 -> 1.66 at 0.5:
    # breathy and onset frames that 0.3 calls unvoiced get harmonics back
    voicing_threshold: float = VOICING_THRESHOLD
    # sharpen YIN's F0 on the harmonics of the frame's spectrum (modules/f0.py
    # `refine_f0`); off in the releases before the sixth, whose codes it would change
    pitch_refine: bool = False
    # > 0: the features are a log-mel spectrogram of this many bands (modules/mel.py) instead
    # of the STFT's log-magnitude and compressed spectrum, the input of CLaM-TTS's Mel-VAE
    # (Kim et al. 2024, sec. 3.1; recipes/designs/clam_melvae_16k.yaml)
    n_mels: int = 0

    def __post_init__(self):
        check_stft_sizes(self.n_fft, self.hop_length)
        if self.n_mels < 0:
            raise ValueError(f"n_mels must be >= 0 (0: STFT features), got {self.n_mels}")
        if not 0 < self.voicing_threshold <= 1:
            raise ValueError(f"voicing_threshold must be in (0, 1], got {self.voicing_threshold}")
        if self.pitch_refine and not self.pitch:
            raise ValueError("pitch_refine needs pitch: true (it refines the coded F0)")
        if not len(self.strides) == len(self.dims) == len(self.layers_per_stage):
            raise ValueError(f"strides, dims and layers_per_stage must have the same length, "
                             f"got {len(self.strides)}, {len(self.dims)}, "
                             f"{len(self.layers_per_stage)}")
        for name in ("dim", "num_layers", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("strides", "dims"):
            if any(int(v) < 1 for v in getattr(self, name)):
                raise ValueError(f"{name} must all be >= 1, got {getattr(self, name)}")
        if any(int(v) < 0 for v in self.layers_per_stage):
            raise ValueError(f"layers_per_stage must be >= 0, got {self.layers_per_stage}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of x [B, D, T]."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def convnext_blocks(dim: int, n: int, mlp_ratio: float) -> list[ConvNeXtBlock]:
    hidden = max(1, round(dim * mlp_ratio))
    return [ConvNeXtBlock(dim, hidden, layer_scale=1 / max(n, 1)) for _ in range(n)]


@ENCODERS.register("stft", STFTEncoderConfig)
class STFTEncoder(Encoder):
    """wav [B, C, T] -> z [B, D, T / hop_length] (encoder contract, codecs/contracts.py)."""

    @classmethod
    def check_codec(cls, codec) -> None:
        check_pitch_coding(codec)  # `pitch` needs the pitch_rvq quantizer and decoder too

    def __init__(self, cfg: STFTEncoderConfig, channels: int, latent_dim: int,
                 sample_rate: int):
        super().__init__()
        self.pitch = cfg.pitch
        self.voicing_threshold = cfg.voicing_threshold
        self.pitch_refine = cfg.pitch_refine
        self.sample_rate = sample_rate  # the F0 estimator's
        self.n_fft, self.stft_hop = cfg.n_fft, cfg.hop_length
        self.hop_length = cfg.hop_length * math.prod(int(s) for s in cfg.strides)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.mel = LogMel(sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels) if cfg.n_mels \
            else None
        n_features = cfg.n_mels if cfg.n_mels else 3 * (cfg.n_fft // 2 + 1)
        conv = {"norm": "none"}
        layers: list[nn.Module] = [Conv1d(n_features * channels, cfg.dim, cfg.kernel_size, **conv),
                                   _ChannelNorm(cfg.dim),
                                   *convnext_blocks(cfg.dim, cfg.num_layers, cfg.mlp_ratio)]
        dim = cfg.dim
        for stride, out_dim, n in zip(cfg.strides, cfg.dims, cfg.layers_per_stage):
            layers += [_ChannelNorm(dim), Conv1d(dim, out_dim, 2 * stride, stride=stride, **conv),
                       *convnext_blocks(out_dim, n, cfg.mlp_ratio)]
            dim = out_dim
        layers += [_ChannelNorm(dim), Conv1d(dim, latent_dim - cfg.pitch, 1, **conv)]
        self.model = nn.Sequential(*layers)
        self.model.apply(init_backbone)  # Vocos' init, as the decoder uses

    def onnx_blocker(self) -> str | None:
        if self.pitch:
            return ("its encoder's F0 estimator (YIN over FFTs, a median of voiced frames) "
                    "has no ONNX form yet")
        return None

    def receptive_field(self) -> tuple[int, int]:
        left_pad, _ = same_padding(self.n_fft, self.stft_hop)
        # STFT frame j reads samples [j*hop - left_pad, j*hop - left_pad + n_fft - 1]
        stft = (left_pad, self.n_fft - 1 - left_pad, self.stft_hop)
        parts = [stft]
        for m in self.model:
            if isinstance(m, Conv1d):
                parts.append(m.reach())
            elif isinstance(m, ConvNeXtBlock):
                parts.append((*m.reach(), 1))
        left, right, _ = chain_reach(parts)
        if self.pitch:
            reach = yin_reach(self.sample_rate, self.hop_length)
            left, right = max(left, reach), max(right, reach)
        return left, right

    def features(self, wav: Tensor) -> Tensor:
        """wav [B, C, T] -> [B, 3 * n_bins * C, T / stft_hop]: log|X|, Re and Im of X|X|^-0.7;
        with `n_mels`, [B, n_mels * C, T / stft_hop]: the log-mel spectrogram."""
        b, c, t = wav.shape
        x = wav.reshape(b * c, t)
        if self.mel is not None:
            mel = self.mel(x)
            return mel.reshape(b, c * mel.shape[1], mel.shape[-1])
        x = x if x.dtype == torch.float64 else x.float()  # half inputs take the STFT in float32
        window = self.window.to(x.dtype)
        if torch.jit.is_tracing():  # ONNX export: no complex tensors (stft_same_parts)
            real, imag = stft_same_parts(x, self.n_fft, self.stft_hop, window)
            mag = (real.square() + imag.square()).sqrt().clamp(min=LOG_FLOOR)
            scale = mag.pow(COMPRESS - 1)
            feats = torch.cat([mag.log(), real * scale, imag * scale], dim=1)
            return feats.reshape(b, c * feats.shape[1], feats.shape[-1])
        spec = stft_same(x, self.n_fft, self.stft_hop, window)
        mag = spec.abs().clamp(min=LOG_FLOOR)
        compressed = spec * mag.pow(COMPRESS - 1)
        feats = torch.cat([mag.log(), compressed.real, compressed.imag], dim=1)
        return feats.reshape(b, c * feats.shape[1], feats.shape[-1])

    def forward(self, wav: Tensor) -> Tensor:
        z = self.model(self.features(wav).to(wav.dtype))
        if not self.pitch:
            return z
        with torch.no_grad():
            f0 = yin_f0(wav[:, 0], self.sample_rate, self.hop_length, self.voicing_threshold)
            if self.pitch_refine:
                f0 = refine_f0(wav[:, 0], f0, self.sample_rate, self.hop_length)
        return torch.cat([f0_to_latent(f0)[:, None].to(z.dtype), z], 1)
