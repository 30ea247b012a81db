"""Magnitude decoder: ConvNeXt stacks predict a log-magnitude spectrogram, fast Griffin-Lim
gives it a phase, an inverse STFT gives the samples.

Learning phase is what makes neural decoders slow to train: a Vocos head or an upsampling
decoder needs a GAN and hundreds of thousands of steps before its phase stops sounding rough.
Magnitudes alone are a plain regression problem that a small network learns quickly, and at a
10 ms hop Griffin-Lim recovers a phase good enough for speech: on 8 of our held-out clips, true
magnitudes (n_fft 640, hop 160) through 32 iterations of fast Griffin-Lim score PESQ-WB 4.3 and
STOI 0.98, and magnitudes with 3 dB of random error still 3.5 / 0.92. So this decoder trades
decode speed (the iterations) for a codec that trains without learning phase. What it does
need is accurate magnitudes, harmonics included: the same clips with magnitudes blurred over
5 bins x 3 frames score only 1.6 / 0.84. The layout is ours; the parts come
from Vocos (ConvNeXt backbone, Siuzdak 2023) and the spectral-codec line of work (Langman et
al. 2024, arXiv:2406.05298, decode quantized spectral features):

    z [B, D, T'] -> conv k=7 -> LayerNorm -> N x ConvNeXt                  (token rate)
        -> transposed conv x upsample -> M x ConvNeXt -> LayerNorm         (STFT frame rate)
        -> Linear -> log|X| [B, C, n_fft//2+1, T' * upsample]
        -> phase -> iSTFT -> wav [B, C, T' * hop_length]

The phase (`phase`) is fast Griffin-Lim from zero phase, or, with a coded F0 (`pitch`), the
harmonic phase model of sinusoidal coders: each bin takes the phase of its nearest harmonic
along the F0 track plus the minimum phase of the harmonic envelope (modules/f0.py
`harmonic_phase`, `min_phase`). The harmonic phase needs no iterations and is consistent (the
STFT of its iSTFT has the same magnitudes) for a steady harmonic signal; on predicted
magnitudes, which no signal has exactly, it scores better than Griffin-Lim (see `phase`).

Training (`forward_train`) returns direct losses on the predicted magnitudes against the
input's STFT ("decoder/magnitude", "decoder/compressed"), and audio built with the phase of the
detached magnitudes (Griffin-Lim at `train_iterations`) or of the coded F0, so waveform losses
still reach the magnitudes through the synthesis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..modules.f0 import (
    PHASE_PERIOD,
    harmonic_comb,
    harmonic_phase,
    latent_to_f0,
    min_phase,
    upsample_f0,
)
from ..modules.griffin_lim import fast_griffin_lim, griffin_lim_reach
from ..modules.istft import ISTFT, check_stft_sizes, stft_same
from ..quantizers.pitch_rvq import check_pitch_coding
from .components import DECODERS, frame_hop
from .contracts import Decoder
from .stft_encoder import convnext_blocks
from .vocos import init_backbone

LOG_FLOOR = 1e-5
MAX_MAG = 1e2  # as Vocos clips its predicted magnitudes
INITIAL_LOG_MAG = -5.0
COMPRESS = 0.3
PHASES = ("griffin_lim", "harmonic")


@dataclass(frozen=True)
class SpectralDecoderConfig:
    dim: int = 384                   # width at the token rate
    intermediate_dim: int = 1152
    num_layers: int = 6
    upsample: int = 2                # STFT frames per token; STFT hop = hop_length / upsample
    fine_dim: int = 256              # width at the STFT frame rate
    fine_layers: int = 2
    n_fft: int | None = None         # None: 4 * STFT hop
    iterations: int = 32             # fast Griffin-Lim iterations when decoding
    train_iterations: int = 8        # ... for the audio of a training step
    momentum: float = 0.99           # Perraudin et al. 2013
    # latent channel 0 is a coded F0 (stft encoder `pitch`, pitch_rvq quantizer): the
    # magnitude is then exp(noise head) + exp(harmonic head) x the harmonic comb of that F0
    pitch: bool = False
    # with pitch: the two heads predict smooth envelopes, log-magnitudes at this many points
    # evenly spaced from 0 Hz to Nyquist, linearly interpolated to the bins (0: one value
    # per bin). Spaced wider than the harmonics (41 points at 16 kHz: 200 Hz), the noise
    # envelope cannot draw harmonics itself, so the comb has to
    envelope_points: int = 0
    # how the magnitudes get a phase: "griffin_lim" (fast Griffin-Lim, `iterations`), or
    # "harmonic" (needs pitch): every bin takes the phase of its nearest harmonic of the coded
    # F0 (modules/f0.py `harmonic_phase`) plus the minimum phase of the harmonic envelope,
    # the phase model of sinusoidal speech coders. No iterations: decoding is several times
    # faster, and on the 48 held-out clips the bundled weights score PESQ-WB 1.75 -> 1.79
    # (3 kbps, refined F0) with it before any training for it
    phase: str = "griffin_lim"

    def __post_init__(self):
        for name in ("dim", "intermediate_dim", "num_layers", "upsample", "fine_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("fine_layers", "iterations", "train_iterations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.envelope_points and (self.envelope_points < 2 or not self.pitch):
            raise ValueError(f"envelope_points must be 0, or >= 2 with pitch: true (without "
                             f"the comb nothing draws the harmonics), got "
                             f"{self.envelope_points}")
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {self.phase!r}")
        if self.phase == "harmonic" and not self.pitch:
            raise ValueError("phase: harmonic needs pitch: true (the phase follows the coded F0)")


def envelope_basis(n_bins: int, points: int) -> Tensor:
    """[n_bins, points]: linear interpolation from `points` values evenly spaced over the bins
    (first at bin 0, last at the Nyquist bin) to every bin."""
    pos = torch.linspace(0, points - 1, n_bins, dtype=torch.float64)
    lo = pos.floor().long().clamp(max=points - 2)
    frac = pos - lo
    basis = torch.zeros(n_bins, points, dtype=torch.float64)
    rows = torch.arange(n_bins)
    basis[rows, lo] = 1 - frac
    basis[rows, lo + 1] = frac
    return basis.float()


def _channel_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    return norm(x.transpose(1, 2)).transpose(1, 2)


@DECODERS.register("spectral", SpectralDecoderConfig)
class SpectralDecoder(Decoder):
    """z [B, latent_dim, T'] -> wav [B, channels, T' * hop_length] (decoder contract)."""

    # the losses `forward_train` returns; the trainer accepts recipe weights for them
    loss_names = ("decoder/magnitude", "decoder/compressed")
    supports_frame_offset = True  # the harmonic phase follows the absolute frame index

    @classmethod
    def check_codec(cls, codec) -> None:
        check_pitch_coding(codec)  # `pitch` needs the stft encoder's F0 and pitch_rvq too

    def __init__(self, cfg: SpectralDecoderConfig, channels: int, latent_dim: int,
                 hop_length: int, sample_rate: int):
        super().__init__()
        self.cfg, self.channels = cfg, channels
        self.sample_rate = sample_rate  # the harmonic comb's
        self.stft_hop = frame_hop(cfg.upsample, hop_length)
        self.n_fft = 4 * self.stft_hop if cfg.n_fft is None else cfg.n_fft
        try:
            check_stft_sizes(self.n_fft, self.stft_hop)
        except ValueError as e:
            raise ConfigError(f"decoder n_fft: {e}") from None
        self.n_bins = self.n_fft // 2 + 1
        self.pitch = cfg.pitch
        self.embed = nn.Conv1d(latent_dim - cfg.pitch, cfg.dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(convnext_blocks(cfg.dim, cfg.num_layers,
                                                    cfg.intermediate_dim / cfg.dim))
        self.up_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.up = nn.ConvTranspose1d(cfg.dim, cfg.fine_dim, cfg.upsample, stride=cfg.upsample)
        self.fine_blocks = nn.ModuleList(convnext_blocks(cfg.fine_dim, cfg.fine_layers, 3.0))
        self.final_norm = nn.LayerNorm(cfg.fine_dim, eps=1e-6)
        self.head_size = cfg.envelope_points or self.n_bins  # outputs per channel per frame
        self.proj = nn.Linear(cfg.fine_dim, channels * self.head_size)
        for m in (self.embed, self.blocks, self.fine_blocks):
            m.apply(init_backbone)
        # start quiet (|X| ~ 0.007, about -43 dB per bin) rather than at |X| = 1: a loud
        # initial output makes the first updates large enough to collapse the codebooks
        nn.init.constant_(self.proj.bias, INITIAL_LOG_MAG)
        if cfg.pitch:
            # [voiced, coded F0] -> the token-rate features; zero at first, so a decoder
            # without pitch can be loaded into this one and start from where it was
            self.pitch_embed = nn.Conv1d(2, cfg.dim, kernel_size=3, padding=1)
            nn.init.zeros_(self.pitch_embed.weight)
            nn.init.zeros_(self.pitch_embed.bias)
            self.harmonic_proj = nn.Linear(cfg.fine_dim, self.head_size)
            nn.init.constant_(self.harmonic_proj.bias, INITIAL_LOG_MAG)
        if cfg.envelope_points:
            self.register_buffer("envelope_basis", envelope_basis(self.n_bins,
                                                                  cfg.envelope_points),
                                 persistent=False)
        self.istft = ISTFT(self.n_fft, self.stft_hop)

    def receptive_field(self) -> tuple[int, int]:
        """Token frames each side that can change a frame's samples: embed (3), 3 per coarse
        block, 3 STFT frames per fine block, the phase's spread and the iSTFT overlap. The
        phase spreads by the Griffin-Lim reach, or, for the harmonic phase, up to a phase
        anchor (PHASE_PERIOD STFT frames back) plus the F0 interpolation."""
        up = self.cfg.upsample
        fine = 3 * len(self.fine_blocks) + max(self.istft.reach())
        if self.cfg.phase == "griffin_lim":
            fine += griffin_lim_reach(self.n_fft, self.stft_hop, self.cfg.iterations)
        reach = 3 + 3 * len(self.blocks) + math.ceil(fine / up) + 1
        if self.cfg.phase == "harmonic":
            return reach + math.ceil((PHASE_PERIOD + 1) / up) + 1, reach
        return reach, reach

    def log_magnitude(self, z: Tensor) -> Tensor:
        """z [B, D, T'] -> predicted log|X| [B, C, n_bins, T' * upsample]."""
        return self._predict(z)[0]

    def _predict(self, z: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """z -> (log|X| [B, C, F, T], and with pitch the F0 [B, T] in Hz at the STFT frame
        rate and the harmonic envelope, log [B, F, T]; else None, None)."""
        if self.pitch:
            p, z = z[:, :1].float(), z[:, 1:]
            features = torch.cat([(p >= 0).float(), p.clamp(0, 1)], 1).to(z.dtype)
            x = _channel_norm(self.norm, self.embed(z) + self.pitch_embed(features))
        else:
            x = _channel_norm(self.norm, self.embed(z))
        for block in self.blocks:
            x = block(x)
        x = self.up(_channel_norm(self.up_norm, x))
        for block in self.fine_blocks:
            x = block(x)
        x = self.final_norm(x.transpose(1, 2))
        b, t, _ = x.shape
        h = self._to_bins(self.proj(x).view(b, t, self.channels, self.head_size))
        log_mag = h.permute(0, 2, 3, 1)  # [B, C, F, T]
        if not self.pitch:
            return log_mag, None, None
        f0 = upsample_f0(latent_to_f0(p[:, 0]), self.cfg.upsample)  # [B, T]
        comb = harmonic_comb(f0, self.n_fft, self.sample_rate)  # [B, F, T]
        envelope = self._to_bins(self.harmonic_proj(x)).transpose(1, 2).float()
        harmonic = envelope + comb.clamp(min=1e-6).log()
        return (torch.logaddexp(log_mag.float(), harmonic[:, None]).to(log_mag.dtype), f0,
                envelope)

    def _to_bins(self, head: Tensor) -> Tensor:
        """A head's output [..., head_size] -> [..., n_bins] (envelope points interpolated)."""
        if not self.cfg.envelope_points:
            return head
        return head @ self.envelope_basis.to(head.dtype).T

    def synthesize(self, log_mag: Tensor, iterations: int) -> Tensor:
        """log|X| [B, C, F, T] -> wav [B, C, T * stft_hop] with a Griffin-Lim phase."""
        b, c, f, t = log_mag.shape
        mag = log_mag.float().exp().clamp(max=MAX_MAG).reshape(b * c, f, t)
        spec = fast_griffin_lim(mag, self.istft, iterations, self.cfg.momentum)
        return self.istft(spec).view(b, c, -1).to(log_mag.dtype)

    def harmonic_phasor(self, f0: Tensor, envelope: Tensor, frame_offset: int = 0) -> Tensor:
        """e^(i phase) [B, 1, F, T] of the harmonic phase model (config `phase`): in voiced
        frames the phase of each bin's nearest harmonic of f0 [B, T] plus the minimum phase of
        the harmonic envelope [B, F, T] (log), the vocal tract's as Codec2 models it; in
        unvoiced frames a fixed noise's phase. `frame_offset`: the
        STFT frame index of frame 0 in the whole signal (chunked decoding)."""
        phase = harmonic_phase(f0, self.n_fft, self.stft_hop, self.sample_rate, frame_offset)
        tract = min_phase(envelope.detach().float(), self.n_fft)
        phase = phase + tract * (f0 > 0)[:, None]  # unvoiced frames keep their noise phase
        return torch.polar(torch.ones_like(phase), phase)[:, None]

    def forward(self, z: Tensor, frame_offset: int = 0) -> Tensor:
        """z [B, D, T'] -> wav; `frame_offset` is the token index of z's first frame in the
        whole signal (only the harmonic phase depends on it)."""
        log_mag, f0, envelope = self._predict(z)
        if self.cfg.phase == "griffin_lim":
            return self.synthesize(log_mag, self.cfg.iterations)
        b, c, f, t = log_mag.shape
        mag = log_mag.float().exp().clamp(max=MAX_MAG)
        spec = mag * self.harmonic_phasor(f0, envelope, frame_offset * self.cfg.upsample)
        return self.istft(spec.reshape(b * c, f, t)).view(b, c, -1).to(log_mag.dtype)

    def forward_train(self, z: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(wav, losses) for a training step on target [B, C, T' * hop], both losses at this
        decoder's own STFT:

        decoder/magnitude   L1 between log-magnitudes (floored at 1e-5): every bin counts
                            alike, quiet ones included.
        decoder/compressed  MSE between magnitudes compressed to |X|^0.3 (as speech
                            enhancement trains, e.g. MP-SENet, Lu et al. 2023): dominated by
                            the loud bins, the harmonics that PESQ and STOI listen to.

        Spectral convergence is left out: it is unbounded when the estimate is louder than a
        quiet target, and its spikes early in training collapsed the codebooks."""
        log_mag, f0, envelope = self._predict(z)
        log_mag = log_mag.float()
        b, c, f, t = log_mag.shape
        ref = stft_same(target.reshape(b * c, -1).float(), self.n_fft, self.stft_hop,
                        self.istft.window).abs().view(b, c, f, t)
        est = log_mag.exp().clamp(max=MAX_MAG)
        ref = ref.clamp(min=LOG_FLOOR)
        log_l1 = (log_mag.clamp(min=math.log(LOG_FLOOR)) - ref.log()).abs().mean()
        compressed = (est.clamp(min=LOG_FLOOR).pow(COMPRESS) - ref.pow(COMPRESS)).square().mean()
        with torch.no_grad():
            if self.cfg.phase == "harmonic":
                phase = self.harmonic_phasor(f0, envelope).expand(b, c, f, t).reshape(b * c, f, t)
            else:
                flat = est.detach().reshape(b * c, f, t)
                spec = fast_griffin_lim(flat, self.istft, self.cfg.train_iterations,
                                        self.cfg.momentum)
                phase = spec / (spec.abs() + 1e-8)
        wav = self.istft(est.reshape(b * c, f, t) * phase).view(b, c, -1)
        return wav.to(z.dtype), {"decoder/magnitude": log_l1, "decoder/compressed": compressed}
