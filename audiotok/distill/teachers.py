"""Frozen teachers from `transformers`, loaded from a local directory or a hub id.

Every teacher maps a batch to targets aligned with the codec's frames:

    teacher.targets(wav [B, C, T], batch, n_frames) -> (features [B', n_frames, D], keep [B])

`keep` marks the items that have a target (a text teacher skips excerpts of files without a
transcript); audio teachers keep every item. Audio teachers also expose
`audio_features(wav, n_frames)`, which is differentiable in `wav` (the teacher's weights stay
frozen) so LM-SPT-style heads can run them on reconstructions.

A teacher is never an `nn.Module` child of the codec or of the heads: its weights are not in
any state dict, optimiser or exported model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import AudiotokError
from ..modules.ssl import (  # noqa: F401  (layer_streams, conv_geometry: also imported from here)
    average_layers,
    conv_geometry,
    layer_streams,
    load_frozen,
    pick_layers,
)
from .distill_config import TeacherConfig


def align_frames(features: Tensor, n_frames: int) -> Tensor:
    """features [B, T_teacher, D] -> [B, n_frames, D] spanning the same stretch of audio.

    A faster teacher (WavLM at 50 Hz for a 12.5 Hz codec) is averaged over each codec frame
    (adaptive average pooling, as Mimi pools WavLM down); a slower or nearly equal one is
    linearly interpolated (HuBERT's 49 frames per second of audio onto a 50 Hz codec)."""
    if features.shape[1] == n_frames:
        return features
    x = features.transpose(1, 2).float()
    if features.shape[1] > n_frames:
        x = F.adaptive_avg_pool1d(x, n_frames)
    else:
        x = F.interpolate(x, size=n_frames, mode="linear", align_corners=False)
    return x.transpose(1, 2).to(features.dtype)


def to_mono_rate(wav: Tensor, sample_rate: int, teacher_rate: int) -> Tensor:
    """wav [B, C, T] at `sample_rate` -> [B, T'] mono at the teacher's rate (differentiable)."""
    import torchaudio.functional as AF

    x = wav.float().mean(1)
    if sample_rate != teacher_rate:
        x = AF.resample(x, sample_rate, teacher_rate)
    return x


class AudioTeacher:
    """Shared plumbing of audio teachers: device moves and the (grad-free) targets call."""

    dim: int
    model: torch.nn.Module

    def __init__(self, cfg: TeacherConfig, sample_rate: int):
        self.cfg = cfg
        self.sample_rate = sample_rate  # the codec's

    def to(self, device) -> AudioTeacher:
        self.model.to(device)
        return self

    def audio_features(self, wav: Tensor, n_frames: int) -> Tensor:
        raise NotImplementedError

    def targets(self, wav: Tensor, batch: dict | None, n_frames: int) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            feats = self.audio_features(wav, n_frames)
        return feats, torch.ones(wav.shape[0], dtype=torch.bool, device=wav.device)


class SSLTeacher(AudioTeacher):
    """HuBERT, WavLM, wav2vec 2.0 (any `transformers` model taking raw `input_values`)."""

    def __init__(self, cfg: TeacherConfig, sample_rate: int):
        super().__init__(cfg, sample_rate)
        self.model = load_frozen(cfg.path)
        config = self.model.config
        self.layers = pick_layers(cfg.layers, config.num_hidden_layers, cfg.path)
        self.dim = config.hidden_size
        stride, self.pad = conv_geometry(config)
        self.frame_rate = cfg.sample_rate / stride

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers

    def audio_features(self, wav: Tensor, n_frames: int) -> Tensor:
        """wav [B, C, T] at the codec's rate -> [B, n_frames, D]."""
        return self.stream_features(wav, n_frames, [self.layers])[0]

    def stream_features(self, wav: Tensor, n_frames: int, streams: list[list[int]]
                        ) -> list[Tensor]:
        """wav [B, C, T] -> one [B, n_frames, D] per stream (its hidden states averaged; see
        `pick_layers`), all from one pass of the model."""
        x = F.pad(to_mono_rate(wav, self.sample_rate, self.cfg.sample_rate), self.pad)
        if self.cfg.normalize:
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-7)
        out = self.model(x, output_hidden_states=True)
        return [align_frames(average_layers(out.hidden_states, s), n_frames).float()
                for s in streams]


class WhisperTeacher(AudioTeacher):
    """The encoder of a Whisper checkpoint, fed a differentiable copy of Whisper's log-mel.

    Whisper's encoder only accepts its full 30 s window (3000 mel frames); input is zero-padded
    to it, as Whisper's feature extractor does, and the output cropped to the frames that
    cover the audio. Mel settings are Whisper's: 16 kHz, n_fft 400, hop 160, Slaney mel
    filters up to 8 kHz, log10 clipped 8 below the maximum, (x + 4) / 4.
    """

    N_FFT, HOP, RATE = 400, 160, 16000

    def __init__(self, cfg: TeacherConfig, sample_rate: int):
        super().__init__(cfg, sample_rate)
        if cfg.sample_rate != self.RATE:
            raise AudiotokError(f"teacher '{cfg.path}': Whisper runs at 16000 Hz, "
                                f"not {cfg.sample_rate}")
        from transformers.audio_utils import mel_filter_bank

        model = load_frozen(cfg.path)
        self.model = model.get_encoder() if hasattr(model, "get_encoder") else model
        config = model.config
        if not hasattr(config, "num_mel_bins"):
            raise AudiotokError(f"teacher '{cfg.path}' is a {type(model).__name__}, not a "
                                f"Whisper model")
        self.layers = pick_layers(cfg.layers or [config.encoder_layers],
                                  config.encoder_layers, cfg.path)
        self.dim = config.d_model
        self.mel_frames = config.max_source_positions * 2  # the encoder's two convs halve it
        filters = mel_filter_bank(num_frequency_bins=self.N_FFT // 2 + 1,
                                  num_mel_filters=config.num_mel_bins, min_frequency=0.0,
                                  max_frequency=8000.0, sampling_rate=self.RATE, norm="slaney",
                                  mel_scale="slaney")
        self.filters = torch.from_numpy(filters).float()
        self.window = torch.hann_window(self.N_FFT)

    def to(self, device) -> WhisperTeacher:
        super().to(device)
        self.filters, self.window = self.filters.to(device), self.window.to(device)
        return self

    def log_mel(self, x: Tensor) -> Tensor:
        """x [B, T] at 16 kHz, already padded -> [B, n_mels, T / 160] Whisper log-mel."""
        stft = torch.stft(x, self.N_FFT, self.HOP, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.filters.T @ power, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0

    def audio_features(self, wav: Tensor, n_frames: int) -> Tensor:
        """wav [B, C, T] at the codec's rate -> [B, n_frames, D]."""
        x = to_mono_rate(wav, self.sample_rate, self.RATE)
        window = self.mel_frames * self.HOP
        if x.shape[-1] > window:
            raise AudiotokError(f"Whisper teacher takes at most {window / self.RATE:g} s of "
                                f"audio, got {x.shape[-1] / self.RATE:g} s")
        valid = max(1, -(-x.shape[-1] // (2 * self.HOP)))  # encoder frames covering audio
        mel = self.log_mel(F.pad(x, (0, window - x.shape[-1])))
        out = self.model(mel, output_hidden_states=True)
        feats = average_layers(out.hidden_states, self.layers)[:, :valid]
        return align_frames(feats, n_frames).float()
