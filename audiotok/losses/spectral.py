"""Spectral reconstruction losses: ref, est [B, C, T] (or [B, T]) -> scalar tensor.

Three published recipes, each with its own config dataclass (and a phase loss after APNet),
registered as reconstruction losses (reconstruction.py) under the names recipes weight:

    mel     MultiResolutionMelLoss   DAC (Kumar et al. 2023): L1 between log10 mel magnitudes
                                     at 7 scales
    msstft  MultiScaleSTFTLoss       EnCodec (Défossez et al. 2022, eq. 1): L1 + L2 on 64-bin
                                     mels, 2^5..2^11
    stft    MultiResolutionSTFTLoss  Parallel WaveGAN (Yamamoto et al. 2020, eq. 3-5): spectral
                                     convergence + log-magnitude L1 at 3 resolutions
    phase   PhaseDerivativeLoss      instantaneous-frequency and group-delay distance

Arguments go reference first, like every loss and metric in audiotok. Any length T works:
inputs shorter than the largest window are zero-padded on the right (the same pad for ref and
est, so identical inputs still give 0). Channels are folded into the batch, and the STFTs run
in float32 whatever the input dtype, as under AMP a half-precision STFT loses the quiet bins.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from .reconstruction import RECONSTRUCTION_LOSSES, ReconstructionLoss


def _rows(ref: Tensor, est: Tensor, min_length: int) -> tuple[Tensor, int]:
    """ref, est [B, ..., T] -> rows [2N, T'] float32 (ref rows first) and B.

    T' = max(T, min_length): the right zero-pad lets reflect padding and the largest window work.
    """
    if ref.shape != est.shape:
        raise ValueError(f"ref and est must have the same shape, got {tuple(ref.shape)} "
                         f"and {tuple(est.shape)}")
    if ref.dim() < 2:
        raise ValueError(f"expected wav [B, C, T] or [B, T], got shape {tuple(ref.shape)}")
    x = torch.cat([ref.reshape(-1, ref.shape[-1]), est.reshape(-1, est.shape[-1])]).float()
    if x.shape[-1] < min_length:
        x = F.pad(x, (0, min_length - x.shape[-1]))
    return x, ref.shape[0]


def _fp32(x: Tensor):
    """Turns autocast off, so the filterbank matmul stays in float32 like the STFT."""
    return torch.autocast(x.device.type, enabled=False)


def _mel_fbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float | None,
               norm: str | None, mel_scale: str) -> Tensor:
    """[n_mels, n_fft // 2 + 1] filterbank, to left-multiply a magnitude spectrogram."""
    with warnings.catch_warnings():
        # Tiny windows with many bands (EnCodec's 2^5 window has 17 bins for 64 mels) leave
        # some filters empty; both papers use these settings, and an empty band adds 0 loss.
        warnings.filterwarnings("ignore", message=".*mel filterbank has all zero values.*")
        fb = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max if f_max is not None else sample_rate / 2, n_mels,
            sample_rate, norm=norm, mel_scale=mel_scale)
    return fb.T.contiguous()


def _check_lists(**lists: list) -> None:
    lengths = {name: len(v) for name, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"these lists must have the same length, got {lengths}")
    if not next(iter(lengths.values())):
        raise ValueError(f"{next(iter(lengths))} must name at least one scale")


# --- DAC --------------------------------------------------------------------------------------


@dataclass
class MelLossConfig:
    """Defaults are DAC's released recipe (descript-audio-codec conf/base.yml, the
    `MelSpectrogramLoss.*` keys): windows 32..2048 with hop w/4, 5..320 mels, pow 1,
    clamp_eps 1e-5, mag_weight 0 (log_weight 1 is the class default). DAC weights it 15."""

    window_lengths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024, 2048])
    n_mels: list[int] = field(default_factory=lambda: [5, 10, 20, 40, 80, 160, 320])
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    clamp_eps: float = 1e-5
    pow: float = 1.0
    log_weight: float = 1.0
    mag_weight: float = 0.0

    def __post_init__(self):
        _check_lists(window_lengths=self.window_lengths, n_mels=self.n_mels)
        if min(self.window_lengths) < 4:
            raise ValueError("window_lengths must be >= 4 (the hop is window // 4)")
        if min(self.n_mels) < 1:
            raise ValueError("n_mels must be >= 1")
        if self.clamp_eps <= 0:
            raise ValueError("clamp_eps must be > 0")


class _MelScale(nn.Module):
    """One DAC scale: rows [N, T] -> mel magnitudes [N, n_mels, frames] (hann window, centred
    reflect-padded STFT, librosa's Slaney filterbank, as audiotools' `mel_spectrogram`)."""

    def __init__(self, window_length: int, n_mels: int, sample_rate: int, cfg: MelLossConfig):
        super().__init__()
        self.hop = window_length // 4
        # Derived from the config, so not saved with the model.
        self.register_buffer("window", torch.hann_window(window_length), persistent=False)
        fb = _mel_fbank(window_length, n_mels, sample_rate, cfg.mel_fmin, cfg.mel_fmax,
                        norm="slaney", mel_scale="slaney")
        self.register_buffer("fbank", fb, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        n = self.window.numel()
        spec = torch.stft(x, n, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True).abs()
        return self.fbank @ spec


@RECONSTRUCTION_LOSSES.register("mel", MelLossConfig)
class MultiResolutionMelLoss(ReconstructionLoss):
    """DAC's multi-scale mel loss (dac/nn/loss.py `MelSpectrogramLoss`): summed over scales of
        log_weight * L1(log10(clamp(mel_ref, eps)^pow), log10(clamp(mel_est, eps)^pow))
      + mag_weight * L1(mel_ref, mel_est)
    Summed, not averaged, over scales as in DAC, so its recipe weight (15) carries over."""

    always_logged = True  # the reconstruction distance every run logs, weighted or not

    def __init__(self, sample_rate: int, cfg: MelLossConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MelLossConfig()
        self.sample_rate = sample_rate
        self.scales = nn.ModuleList(
            _MelScale(w, m, sample_rate, cfg) for w, m in zip(cfg.window_lengths, cfg.n_mels))

    def per_item(self, ref: Tensor, est: Tensor) -> Tensor:
        """ref, est [B, C, T] -> loss per item [B] (channels averaged)."""
        cfg = self.cfg
        x, batch = _rows(ref, est, max(cfg.window_lengths))
        total = x.new_zeros(x.shape[0] // 2)
        for scale in self.scales:
            with _fp32(x):
                mel_ref, mel_est = scale(x).chunk(2)
            if cfg.log_weight:
                log_ref = mel_ref.clamp(min=cfg.clamp_eps).pow(cfg.pow).log10()
                log_est = mel_est.clamp(min=cfg.clamp_eps).pow(cfg.pow).log10()
                total = total + cfg.log_weight * (log_ref - log_est).abs().mean(dim=(1, 2))
            if cfg.mag_weight:
                total = total + cfg.mag_weight * (mel_ref - mel_est).abs().mean(dim=(1, 2))
        return total.view(batch, -1).mean(dim=1)

    def forward(self, ref: Tensor, est: Tensor) -> Tensor:
        """ref, est [B, C, T] -> scalar."""
        return self.per_item(ref, est).mean()


# --- EnCodec ----------------------------------------------------------------------------------


@dataclass
class MultiScaleSTFTLossConfig:
    """Defaults are the EnCodec paper's (Sec. 3.4): windows 2^5..2^11 (min_scale..max_scale,
    inclusive), hop 2^i / 4, 64 mel bins, normalized STFT, alpha_i = 1. f_min, f_max,
    floor and power are not in the paper; they are AudioCraft's `msspec` values (its
    EnCodec recipe sets f_min = 64 and uses scales 2^6..2^10)."""

    min_scale: int = 5
    max_scale: int = 11
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    alpha: float = 1.0
    normalized: bool = True
    power: float = 2.0
    floor: float = 1e-5

    def __post_init__(self):
        if not 2 <= self.min_scale <= self.max_scale:
            raise ValueError(f"need 2 <= min_scale <= max_scale, got {self.min_scale}, "
                             f"{self.max_scale}")
        if self.n_mels < 1 or self.floor <= 0:
            raise ValueError("n_mels must be >= 1 and floor > 0")


class _EncodecMelScale(nn.Module):
    """rows [N, T] -> mel [N, n_mels, ceil(T / hop)]: reflect-pad (n - hop) // 2 each side,
    zero-pad to whole frames, uncentred STFT, HTK mel without area norm (torchaudio's
    MelSpectrogram defaults, as AudioCraft's MelSpectrogramWrapper)."""

    def __init__(self, n_fft: int, sample_rate: int, cfg: MultiScaleSTFTLossConfig):
        super().__init__()
        self.hop = n_fft // 4
        self.power = cfg.power
        window = torch.hann_window(n_fft)
        if cfg.normalized:  # torchaudio's normalized="window": unit-energy window
            window = window / window.pow(2).sum().sqrt()
        self.register_buffer("window", window, persistent=False)
        fb = _mel_fbank(n_fft, cfg.n_mels, sample_rate, cfg.f_min, cfg.f_max,
                        norm=None, mel_scale="htk")
        self.register_buffer("fbank", fb, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        n = self.window.numel()
        p = (n - self.hop) // 2
        x = F.pad(x, (p, p), mode="reflect")
        frames = math.ceil(max(x.shape[-1] - n, 0) / self.hop) + 1
        x = F.pad(x, (0, (frames - 1) * self.hop + n - x.shape[-1]))
        spec = torch.stft(x, n, self.hop, window=self.window, center=False,
                          return_complex=True).abs().pow(self.power)
        return self.fbank @ spec


@RECONSTRUCTION_LOSSES.register("msstft", MultiScaleSTFTLossConfig)
class MultiScaleSTFTLoss(ReconstructionLoss):
    """EnCodec's frequency-domain reconstruction loss l_f (Défossez et al. 2022, eq. 1):
        sum_i  L1(S_i(x), S_i(x_hat)) + alpha * L2(log S_i(x), log S_i(x_hat)),
    divided by sum_i (1 + alpha). The paper writes both terms on S_i; we follow the authors'
    public code (AudioCraft `MultiScaleMelSpectrogramLoss`), which takes the L1 on the mel power
    and the L2 (mean squared error) on log10(floor + mel), and normalises by that sum."""

    section = "stft"  # its options are `losses.stft`, as recipes have written them

    def __init__(self, sample_rate: int, cfg: MultiScaleSTFTLossConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MultiScaleSTFTLossConfig()
        self.sample_rate = sample_rate
        self.scales = nn.ModuleList(_EncodecMelScale(2 ** i, sample_rate, cfg)
                                    for i in range(cfg.min_scale, cfg.max_scale + 1))

    def forward(self, ref: Tensor, est: Tensor) -> Tensor:
        """ref, est [B, C, T] -> scalar."""
        cfg = self.cfg
        x, _ = _rows(ref, est, 2 ** cfg.max_scale)
        total = x.new_zeros(())
        for scale in self.scales:
            with _fp32(x):
                mel_ref, mel_est = scale(x).chunk(2)
            total = total + F.l1_loss(mel_est, mel_ref) + cfg.alpha * F.mse_loss(
                torch.log10(cfg.floor + mel_est), torch.log10(cfg.floor + mel_ref))
        return total / (len(self.scales) * (1 + cfg.alpha))


# --- Parallel WaveGAN -------------------------------------------------------------------------


@dataclass
class STFTLossConfig:
    """Defaults are Parallel WaveGAN's three resolutions (Yamamoto et al. 2020, Table 1;
    parallel_wavegan.v1.yaml `stft_loss_params`): FFT 1024/2048/512, hop 120/240/50,
    window 600/1200/240 (hann)."""

    fft_sizes: list[int] = field(default_factory=lambda: [1024, 2048, 512])
    hop_sizes: list[int] = field(default_factory=lambda: [120, 240, 50])
    win_lengths: list[int] = field(default_factory=lambda: [600, 1200, 240])
    sc_weight: float = 1.0
    mag_weight: float = 1.0

    def __post_init__(self):
        _check_lists(fft_sizes=self.fft_sizes, hop_sizes=self.hop_sizes,
                     win_lengths=self.win_lengths)
        for n, h, w in zip(self.fft_sizes, self.hop_sizes, self.win_lengths):
            if not (0 < h and 0 < w <= n):
                raise ValueError(f"need hop > 0 and 0 < win_length <= fft_size, got "
                                 f"fft {n}, hop {h}, window {w}")


@RECONSTRUCTION_LOSSES.register("stft", STFTLossConfig)
class MultiResolutionSTFTLoss(ReconstructionLoss):
    """Parallel WaveGAN's auxiliary loss: mean over resolutions of
        sc_weight * ||S_ref - S_est||_F / ||S_ref||_F  +  mag_weight * L1(log S_ref, log S_est)
    with S = sqrt(max(|STFT|^2, 1e-7)); the Frobenius norms run over the whole batch as in the
    reference code (kan-bayashi/ParallelWaveGAN `stft_loss.py`)."""

    def __init__(self, cfg: STFTLossConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or STFTLossConfig()
        for i, w in enumerate(cfg.win_lengths):
            self.register_buffer(f"window_{i}", torch.hann_window(w), persistent=False)

    def forward(self, ref: Tensor, est: Tensor) -> Tensor:
        """ref, est [B, C, T] -> scalar."""
        cfg = self.cfg
        x, _ = _rows(ref, est, max(cfg.fft_sizes))
        total = x.new_zeros(())
        for i, (n, hop) in enumerate(zip(cfg.fft_sizes, cfg.hop_sizes)):
            window = getattr(self, f"window_{i}")
            spec = torch.stft(x, n, hop, win_length=window.numel(), window=window, center=True,
                              pad_mode="reflect", return_complex=True)
            mag = torch.view_as_real(spec).pow(2).sum(-1).clamp(min=1e-7).sqrt()
            mag_ref, mag_est = mag.chunk(2)
            sc = torch.linalg.vector_norm(mag_ref - mag_est) / torch.linalg.vector_norm(mag_ref)
            log_mag = F.l1_loss(mag_est.log(), mag_ref.log())
            total = total + cfg.sc_weight * sc + cfg.mag_weight * log_mag
        return total / len(cfg.fft_sizes)


# --- phase derivatives (after APNet) ----------------------------------------------------------


@dataclass
class PhaseLossConfig:
    """STFT resolutions (hann window = fft size, hop = fft size / 4) and the power of the
    reference magnitude that weights each bin (1: linear; smaller values count quiet bins more). The defaults suit 16 kHz speech: 40 and 80 ms windows,
    the second being the Vocos decoder's own frames at 50 Hz."""

    fft_sizes: list[int] = field(default_factory=lambda: [640, 1280])
    weight_power: float = 1.0

    def __post_init__(self):
        if not self.fft_sizes or any(n < 4 or n % 4 for n in self.fft_sizes):
            raise ValueError(f"fft_sizes must be multiples of 4, got {self.fft_sizes}")
        if self.weight_power < 0:
            raise ValueError(f"weight_power must be >= 0, got {self.weight_power}")


def _unit(z: Tensor, eps: Tensor) -> Tensor:
    """z / |z|, smoothly shrunk to 0 where |z| is below eps (keeps gradients bounded)."""
    return z / (z.abs().square() + eps.square()).sqrt()


def _phasor_distance(ref: Tensor, est: Tensor, power: float) -> Tensor:
    """Weighted mean of |u_ref - u_est|^2 over complex ref/est [N, ...] with u = z/|z|.

    |u_ref - u_est|^2 = 2 - 2 cos(angle difference): a distance between phase differences
    that needs no unwrapping (APNet's anti-wrapping function, in a smooth form). Bins are
    weighted by the reference's |z|^power, so harmonics count and silent bins, whose phase is
    noise, hardly do."""
    def unit(z: Tensor) -> Tensor:
        # the floor follows each row's own level, so the distance ignores gain
        eps = 1e-3 * z.abs().flatten(1).mean(1).view(-1, *[1] * (z.dim() - 1)) + 1e-12
        return _unit(z, eps)

    weight = ref.abs().pow(power)
    dist = (unit(ref) - unit(est)).abs().square()
    return (weight * dist).sum() / weight.sum().clamp(min=1e-12)


@RECONSTRUCTION_LOSSES.register("phase", PhaseLossConfig)
class PhaseDerivativeLoss(ReconstructionLoss):
    """Distance between the phase derivatives of ref and est, at several STFT resolutions.

    Absolute phase says little at codec bitrates, but its derivatives carry the harmonic
    structure: along time, the instantaneous frequency; along frequency, the group delay.
    APNet (Ai & Ling 2023, arXiv:2305.07952) trains phase with anti-wrapped losses on both;
    here each derivative is the angle of X[t] * conj(X[t-1]) (or of neighbouring bins) and
    is compared through unit phasors, weighted by the reference's magnitude to the power
    `weight_power` (our formulation). Magnitude losses constrain these derivatives only
    indirectly, through the overlap of neighbouring frames.
    Returns the mean over resolutions of (IF term + GD term) / 2, in [0, 4]."""

    def __init__(self, cfg: PhaseLossConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PhaseLossConfig()
        for i, n in enumerate(cfg.fft_sizes):
            self.register_buffer(f"window_{i}", torch.hann_window(n), persistent=False)

    def forward(self, ref: Tensor, est: Tensor) -> Tensor:
        """ref, est [B, C, T] -> scalar."""
        x, _ = _rows(ref, est, max(self.cfg.fft_sizes))
        total = x.new_zeros(())
        for i, n in enumerate(self.cfg.fft_sizes):
            with _fp32(x):
                spec = torch.stft(x, n, n // 4, window=getattr(self, f"window_{i}"),
                                  center=True, pad_mode="reflect", return_complex=True)
            s_ref, s_est = spec.chunk(2)
            inst_freq = [s[..., 1:] * s[..., :-1].conj() for s in (s_ref, s_est)]
            group_delay = [s[:, 1:] * s[:, :-1].conj() for s in (s_ref, s_est)]
            power = self.cfg.weight_power / 2  # products of two bins: |z| is a squared magnitude
            total = total + 0.5 * (_phasor_distance(*inst_freq, power)
                                   + _phasor_distance(*group_delay, power))
        return total / len(self.cfg.fft_sizes)
