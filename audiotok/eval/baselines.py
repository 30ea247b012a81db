"""Classic speech codecs as baselines, run on the same clip as a neural codec through the
Debian command-line tools: Opus (package opus-tools) and Codec2 (package codec2). Each takes
(wav float [T] mono, sample rate) and returns a `BaselineOutput` whose wav has the input's
length and rate, so it can be scored against the input directly (after `metrics.align`, since
both codecs delay the signal)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import resample
from ..errors import AudiotokError
from .quality_metrics import as_mono

OPUS_KBPS = (6, 8, 12)
CODEC2_MODES = ("3200", "1600", "700C")
# Codec2 frame length in samples at 8 kHz: 20 ms for 3200/2400, 40 ms for the low rates.
CODEC2_FRAME = {"3200": 160, "2400": 160, "1600": 320, "1400": 320, "1300": 320,
                "1200": 320, "700C": 320}
TOOL_PACKAGE = {"opusenc": "opus-tools", "opusdec": "opus-tools", "c2enc": "codec2",
                "c2dec": "codec2"}


@dataclass(frozen=True)
class BaselineOutput:
    """wav float32 [T] at the input's sample rate and length; kbps: the bitrate actually spent
    on the clip (payload bits / input duration)."""

    wav: np.ndarray
    kbps: float


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudiotokError(f"{name} not found: install the Debian package "
                            f"'{TOOL_PACKAGE[name]}' (apt-get install -y {TOOL_PACKAGE[name]})")
    return path


def _run(*args: str) -> None:
    done = subprocess.run(args, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise AudiotokError(f"{Path(args[0]).name} failed ({done.returncode}): "
                            f"{done.stderr.strip()[-500:]}")


def _fit(wav: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad [T] to n samples."""
    return np.pad(wav, (0, max(n - wav.size, 0)))[:n].astype(np.float32)


def ogg_audio_bytes(path: Path) -> int:
    """Bytes of Opus audio packets in an Ogg file: page bodies without the container (page
    headers) and without the OpusHead/OpusTags header pages, which carry granule position 0
    (RFC 7845 sec. 3), so the rate compares with a neural codec's token rate."""
    data, pos, total = path.read_bytes(), 0, 0
    while pos + 27 <= len(data):
        if data[pos:pos + 4] != b"OggS":
            raise AudiotokError(f"{path}: not an Ogg stream at byte {pos}")
        granule = struct.unpack_from("<q", data, pos + 6)[0]
        n_segments = data[pos + 26]
        body = sum(data[pos + 27:pos + 27 + n_segments])
        total += body if granule != 0 else 0
        pos += 27 + n_segments + body
    return total


def opus(wav, sample_rate: int, kbps: float = 6) -> BaselineOutput:
    """Opus (RFC 6716) at `kbps` with hard CBR through opusenc/opusdec. wav [T] -> [T]."""
    wav = as_mono(wav)
    enc, dec = _tool("opusenc"), _tool("opusdec")
    with tempfile.TemporaryDirectory(prefix="audiotok-opus-") as tmp:
        src, bits, out = Path(tmp, "in.wav"), Path(tmp, "enc.opus"), Path(tmp, "out.wav")
        sf.write(src, np.clip(wav, -1, 1), sample_rate, subtype="PCM_16")
        _run(enc, "--quiet", "--bitrate", f"{kbps:g}", "--hard-cbr", str(src), str(bits))
        _run(dec, "--quiet", "--rate", str(sample_rate), str(bits), str(out))
        decoded, _ = sf.read(out, dtype="float32", always_2d=True)
        n_bytes = ogg_audio_bytes(bits)
    return BaselineOutput(_fit(decoded.mean(axis=1), wav.size), 8 * n_bytes / wav.size
                          * sample_rate / 1000)


def codec2(wav, sample_rate: int, mode: str = "3200") -> BaselineOutput:
    """Codec2 (Rowe, a 8 kHz sinusoidal speech codec) in `mode` ("3200", "1600", "700C", ...)
    through c2enc/c2dec on headerless raw s16 at 8 kHz. wav [T] -> [T]; kbps counts the whole
    bytes c2enc writes per frame (700C packs 28 bits into 4 bytes, i.e. 0.8 kbps)."""
    if mode not in CODEC2_FRAME:
        raise AudiotokError(f"unknown Codec2 mode {mode!r}; choose from {sorted(CODEC2_FRAME)}")
    wav = as_mono(wav)
    enc, dec = _tool("c2enc"), _tool("c2dec")
    narrow = resample(wav[None], sample_rate, 8000)[0]
    frame = CODEC2_FRAME[mode]
    # Pad to whole frames so c2enc does not drop the tail.
    narrow = np.pad(narrow, (0, -narrow.size % frame))
    pcm = (np.clip(narrow, -1, 1) * 32767).round().astype("<i2")
    with tempfile.TemporaryDirectory(prefix="audiotok-codec2-") as tmp:
        src, bits, out = Path(tmp, "in.raw"), Path(tmp, "enc.bin"), Path(tmp, "out.raw")
        pcm.tofile(src)
        _run(enc, mode, str(src), str(bits))
        _run(dec, mode, str(bits), str(out))
        decoded = np.fromfile(out, dtype="<i2").astype(np.float64) / 32768
        n_bytes = bits.stat().st_size
    wide = resample(decoded[None], 8000, sample_rate)[0]
    return BaselineOutput(_fit(wide, wav.size), 8 * n_bytes / wav.size * sample_rate / 1000)
