"""Reading, converting and writing audio files.

Files are read with soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, aiff, ...),
resampled with soxr and mixed to the channel count a codec needs. Every failure becomes an
`AudioError` with a one-line reason.
"""

from __future__ import annotations

import functools
import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from .errors import AudioError
from .fileio import atomic_write_bytes


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
    declared = audio_info(path).frames  # header errors, empty audio, truncated WAV
    try:
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


# librosa's "kaiser_best" (resampy's): a long Kaiser-windowed sinc whose pass band and
# stop band come close to soxr's HQ, so audio resampled on the device in training matches
# what `load_audio` gives the codec at inference
KAISER_BEST = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596,
               "resampling_method": "sinc_interp_kaiser", "beta": 14.769656459379492}


def resample_tensor(wav: Tensor, sr_in: int, sr_out: int) -> Tensor:
    """wav [..., T] -> [..., ceil(T * sr_out / sr_in)] on wav's device, in float32: a fixed
    polyphase sinc filter (KAISER_BEST) applied by convolution, so the same input gives the
    same output on every call (soxr, above, runs on the CPU only)."""
    import torchaudio.functional as AF

    if sr_in == sr_out:
        return wav
    return AF.resample(wav.float(), sr_in, sr_out, **KAISER_BEST)


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
    """Write wav [C, T] atomically; the format follows the extension (.wav, .flac, .ogg).

    The file is encoded in memory first and then written by Python, so a full disk is
    reported as such (libsndfile says only "System error.") and nothing half-written stays.
    """
    path = Path(path)
    data = wav.detach().cpu().float().numpy().T
    subtype = "PCM_16" if path.suffix.lower() == ".wav" else None
    buf = io.BytesIO()
    try:
        sf.write(buf, np.clip(data, -1.0, 1.0), sample_rate, subtype=subtype,
                 format=_format(path))
    except (sf.LibsndfileError, ValueError, TypeError) as e:
        raise AudioError(f"{path}: cannot write audio ({_reason(e)})") from None
    atomic_write_bytes(path, buf.getbuffer())


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


@functools.lru_cache(maxsize=4096)  # training reads many excerpts of one file
def _check_ogg_complete(path: Path, size: int, _mtime_ns: int) -> None:
    """Refuse an Ogg file (Vorbis, Opus, FLAC) cut short. libsndfile takes the length from
    the last complete page's granule position, so half a file reads as a shorter, valid
    clip. An intact stream ends with a page flagged end-of-stream (RFC 3533, section 6);
    the pages are walked by their headers only (27 bytes + lacing table each). `size` and
    `_mtime_ns` key the cache, so a file rewritten in place is checked again."""
    pos, last_flags = 0, None
    with open(path, "rb") as f:
        while pos + 27 <= size:
            f.seek(pos)
            head = f.read(27)
            if head[:4] != b"OggS":
                break  # trailing bytes after the last page: judged by that page
            lacing = f.read(head[26])
            end = pos + 27 + len(lacing) + sum(lacing)
            if len(lacing) < head[26] or end > size:
                raise AudioError(f"{path}: truncated Ogg file (the page at byte {pos} is cut "
                                 f"short)")
            pos, last_flags = end, head[5]
    if last_flags is None:
        raise AudioError(f"{path}: not a valid Ogg file (no complete page)")
    if not last_flags & 0x04:
        raise AudioError(f"{path}: truncated Ogg file (no end-of-stream page after byte "
                         f"{pos})")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: rate, length in frames and channel count."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path) -> AudioInfo:
    """Read only the header of `path`; truncated WAVs are reported here already."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot decode audio ({_reason(e)})") from None
    if path.suffix.lower() == ".wav":
        _check_complete(path, info.frames, info.frames)
    if info.format == "OGG":
        st = path.stat()
        _check_ogg_complete(path.resolve(), st.st_size, st.st_mtime_ns)
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: audio has no samples")
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def read_excerpt(path, start: int, frames: int, sample_rate: int | None = None,
                 channels: int | None = None, info: AudioInfo | None = None) -> Tensor:
    """Decode only frames [start, start + frames) of `path` (counted at the file's own rate)
    -> wav float32 [C, T], converted like `load_audio`; T is shorter at the end of the file.

    When resampling, a few milliseconds of context either side are decoded too, so the
    excerpt matches the same span of the resampled whole file rather than showing filter
    edges. `info`: this file's `audio_info`, when the caller has already read it.
    """
    path = Path(path)
    info = info or audio_info(path)
    start = max(0, min(start, info.frames))
    frames = max(0, min(frames, info.frames - start))
    resampling = sample_rate is not None and sample_rate != info.sample_rate
    margin = 0
    if resampling:  # whole steps of the rate ratio keep the output on the whole file's grid
        margin = math.ceil(0.005 * info.sample_rate) + 16
        step = info.sample_rate // math.gcd(info.sample_rate, sample_rate)
        if step <= 0.05 * info.sample_rate:
            margin = step * math.ceil(margin / step)
    lead = min(margin, start)
    want = min(lead + frames + margin, info.frames - start + lead)
    try:
        data, _ = sf.read(str(path), start=start - lead, frames=want, dtype="float32",
                          always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as e:
        raise AudioError(f"{path}: cannot decode audio ({_reason(e)})") from None
    mp3_tail = path.suffix.lower() == ".mp3" and start - lead + len(data) >= 0.98 * info.frames
    if len(data) < want and not mp3_tail:  # MP3 headers only estimate the length
        raise AudioError(f"{path}: truncated audio ({data.shape[0]} of {want} frames decoded "
                         f"from frame {start - lead})")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    wav = data.T
    if channels is not None:
        wav = mix_channels(wav, channels, path)
    if resampling and wav.shape[1] > 0:
        ratio = sample_rate / info.sample_rate
        wav = resample(wav, info.sample_rate, sample_rate)
        begin = round(lead * ratio)
        wav = wav[:, begin:begin + round(frames * ratio)]
    return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
