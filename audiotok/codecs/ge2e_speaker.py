"""A pre-trained, frozen speaker encoder for a codec's global branch: Resemblyzer's GE2E model
(Wan et al. 2018, "Generalized End-to-End Loss for Speaker Verification"; the weights the PyPI
package `resemblyzer` ships, trained on LibriSpeech, VoxCeleb 1 and 2).

FreeCodec (Zheng et al. 2024, sec. 2.1) starts its timbre branch from a pre-trained speaker
encoder. Trained jointly with the codec from scratch (the `ecapa` global encoder), ours
carried no timbre: in a 1,250-step run the decoder learnt to take the voice from the frame
streams and ignored the timbre codes. A frozen verifier's embedding tells speakers apart from
the first step, so the decoder has a reason to read it.

    global_branch:
      encoder: {type: ge2e}        # needs `pip install resemblyzer` to build, not to load

    wav [B, 1, T] at the codec's rate -> 16 kHz -> volume raised to -30 dBFS (never lowered)
    -> 40-band mel power spectrogram (25 ms Hann windows every 10 ms, Slaney mel scale, as
    librosa computes it for Resemblyzer) -> partials of 160 frames (1.6 s) every 80 frames
    -> 3-layer LSTM (256) -> last hidden state -> Linear -> ReLU -> L2 norm, averaged over the
    partials and normalised again -> trainable Linear -> [B, dim]

Everything up to the average is Resemblyzer's `VoiceEncoder.embed_utterance` (their
`hparams.py` and `voice_encoder.py`), computed in torch so it runs inside the codec on any
device; only the last projection trains. Departures: no voice-activity trimming (their
`preprocess_wav` cuts long silences; a training excerpt has none to cut), and partials every
80 frames instead of their 1.3 partials a second (77 frames). The frozen weights are saved with
the codec, so a trained codec loads without the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor, nn

from ..errors import ConfigError
from .components import GLOBAL_ENCODERS

SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40  # Resemblyzer's hparams: 25 ms, 10 ms, 40 channels
HIDDEN = 256


@dataclass
class GE2EConfig:
    weights: str = ""           # a Resemblyzer-format .pt; empty: the one the package ships
    partial_frames: int = 160   # frames per partial utterance (1.6 s)
    partial_step: int = 80      # frames between partials
    target_dbfs: float = -30.0  # quieter clips are raised to this level first

    def __post_init__(self):
        if self.partial_frames < 1 or not 1 <= self.partial_step <= self.partial_frames:
            raise ValueError(f"partial_step must be in 1..partial_frames "
                             f"({self.partial_frames}), got {self.partial_step}")


def _shipped_weights() -> Path:
    try:
        import resemblyzer
    except ImportError:
        raise ConfigError("global_branch.encoder: type ge2e starts from the weights the "
                          "resemblyzer package ships: pip install resemblyzer") from None
    return Path(resemblyzer.__file__).parent / "pretrained.pt"


@GLOBAL_ENCODERS.register("ge2e", GE2EConfig)
class GE2ESpeakerEncoder(nn.Module):
    def __init__(self, cfg: GE2EConfig, channels: int, sample_rate: int, dim: int):
        super().__init__()
        if channels != 1:
            raise ConfigError(f"global_branch.encoder: ge2e reads mono audio, not {channels} "
                              f"channels")
        self.cfg, self.sample_rate = cfg, sample_rate
        self.lstm = nn.LSTM(N_MELS, HIDDEN, 3, batch_first=True)
        self.linear = nn.Linear(HIDDEN, HIDDEN)
        self.proj = nn.Linear(HIDDEN, dim)
        fbank = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE,
                                   norm="slaney", mel_scale="slaney")
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        # 1 once the publisher's weights are in; saved, so a loaded codec keeps saying so
        self.register_buffer("pretrained", torch.zeros(()))
        self._load_weights(Path(cfg.weights) if cfg.weights else None)
        for module in (self.lstm, self.linear):
            module.requires_grad_(False)

    def _load_weights(self, path: Path | None) -> None:
        if path is None:
            try:
                path = _shipped_weights()
            except ConfigError:
                return  # loading a saved codec: its state dict brings the weights
        if not path.is_file():
            raise ConfigError(f"global_branch.encoder.weights: no such file: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
            self.lstm.load_state_dict({k[5:]: v for k, v in state.items()
                                       if k.startswith("lstm.")})
            self.linear.load_state_dict({k[7:]: v for k, v in state.items()
                                         if k.startswith("linear.")})
        # any file can be named here, and torch's unpickler raises whatever a stray byte
        # stream makes it raise (IndexError on a YAML file, EOFError on an empty one, ...)
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"global_branch.encoder.weights: {path} is not a Resemblyzer "
                              f"checkpoint ({(str(e).strip().splitlines() or [type(e).__name__])[0]})") from None
        self.pretrained.fill_(1.0)

    def mel(self, wav: Tensor) -> Tensor:
        """wav [B, T] at 16 kHz -> mel power [B, frames, 40] (librosa's melspectrogram with
        Resemblyzer's settings: centred frames, zero padding, power 2, no log)."""
        spec = torch.stft(wav, N_FFT, HOP, window=self.window, center=True, pad_mode="constant",
                          return_complex=True).abs().pow(2)
        return (spec.transpose(1, 2) @ self.fbank).float()

    def embed(self, wav: Tensor) -> Tensor:
        """wav [B, 1, T] -> Resemblyzer's utterance embedding [B, 256] (unit norm)."""
        x = wav[:, 0].float()
        if self.sample_rate != SAMPLE_RATE:
            x = AF.resample(x, self.sample_rate, SAMPLE_RATE)
        dbfs = 10 * torch.log10(x.pow(2).mean(-1, keepdim=True).clamp(min=1e-12))
        x = x * 10 ** ((self.cfg.target_dbfs - dbfs).clamp(min=0) / 20)
        mels = self.mel(x)
        n, size = mels.shape[1], self.cfg.partial_frames
        if n <= size:
            starts = [0]
        else:
            last = n - size
            starts = list(range(0, last + 1, self.cfg.partial_step))
            starts += [last] if starts[-1] != last else []
        parts = torch.cat([mels[:, s:s + size] for s in starts])  # [P * B, frames, 40]
        _, (hidden, _) = self.lstm(parts)
        e = F.normalize(F.relu(self.linear(hidden[-1])), dim=-1)
        return F.normalize(e.view(len(starts), -1, HIDDEN).mean(0), dim=-1)

    def forward(self, wav: Tensor) -> Tensor:
        if self.training and not bool(self.pretrained):
            raise ConfigError("global_branch.encoder: ge2e has no pre-trained weights to train "
                              "from: pip install resemblyzer, or set its weights")
        with torch.no_grad():
            e = self.embed(wav)
        # the embedding is non-negative with unit norm; centre it so the projection starts
        # from signed values of the usual scale
        return self.proj((e - 1 / math.sqrt(HIDDEN)) * math.sqrt(HIDDEN))
