"""Reading, converting and writing audio files.

Files are read with soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, aiff, ...),
resampled with soxr and mixed to the channel count a codec needs. Every failure becomes an
`AudioError` with a one-line reason.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from .errors import AudioError
from .fileio import atomic_path


def load_audio(path, sample_rate: int | None = None, channels: int | None = None
               ) -> tuple[Tensor, int]:
    """Read `path` -> (wav float32 [C, T], sample_rate), converted as asked.

    `sample_rate`: resample to this rate; `channels`: downmix (mean) to 1 or repeat mono.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        declared = sf.info(str(path)).frames
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(f"{path}: cannot decode audio ({_reason(e)})") from None
    _check_complete(path, data.shape[0], declared)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio has no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    wav = data.T  # [C, T]
    if channels is not None:
        wav = mix_channels(wav, channels, path)
    if sample_rate is not None and sr != sample_rate:
        wav, sr = resample(wav, sr, sample_rate), sample_rate
    return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), sr


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """[C, T] -> [C, T * sr_out / sr_in] with soxr's high-quality band-limited filter."""
    import soxr

    return soxr.resample(wav.T, sr_in, sr_out, quality="HQ").T


def mix_channels(wav: np.ndarray, channels: int, path=None) -> np.ndarray:
    have = wav.shape[0]
    if have == channels:
        return wav
    if channels == 1:
        return wav.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(wav, channels, axis=0)
    raise AudioError(f"{path}: cannot map {have} channels to {channels}")


def save_audio(path, wav: Tensor, sample_rate: int) -> None:
    """Write wav [C, T] atomically; the format follows the extension (.wav, .flac, .ogg)."""
    path = Path(path)
    data = wav.detach().cpu().float().numpy().T
    subtype = "PCM_16" if path.suffix.lower() == ".wav" else None
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), np.clip(data, -1.0, 1.0), sample_rate, subtype=subtype,
                     format=_format(path))
    except (sf.LibsndfileError, ValueError, TypeError) as e:
        raise AudioError(f"{path}: cannot write audio ({_reason(e)})") from None


def _format(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    formats = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3", "aiff": "AIFF"}
    if ext not in formats:
        raise AudioError(f"{path}: unknown audio extension '.{ext}' (use .wav, .flac or .ogg)")
    return formats[ext]


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split("Error : ")[-1].strip() if "Error : " in text else text


def _check_complete(path: Path, frames_read: int, frames_declared: int) -> None:
    """Catch truncation that libsndfile forgives: WAV data chunks cut short, and MP3 streams
    shorter than their Xing header says."""
    suffix = path.suffix.lower()
    if suffix == ".wav":
        missing = _wav_missing_bytes(path)
        if missing > 0:
            raise AudioError(f"{path}: truncated WAV file ({missing} bytes of audio missing)")
    elif suffix == ".mp3" and frames_declared > 0 and frames_read < 0.98 * frames_declared:
        raise AudioError(
            f"{path}: truncated MP3 file ({frames_read} of {frames_declared} samples decoded)"
        )


def _wav_missing_bytes(path: Path) -> int:
    """How many bytes the WAV 'data' chunk claims beyond the end of the file (0 if fine)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # streamed WAVs leave the size unset
                    return 0
                return max(0, pos + 8 + chunk_size - size)
            pos += 8 + chunk_size + (chunk_size & 1)
    return 0
