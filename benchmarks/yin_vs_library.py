"""Our YIN (modules/f0.py `yin_f0`, with and without `refine_f0`) next to the pitch trackers
that libraries ship: librosa.yin, librosa.pyin and torchaudio's detect_pitch_frequency.

    python benchmarks/yin_vs_library.py [--chunk-seconds 1.0]

Settings are the bundled codec's: 16 kHz, one F0 per 320-sample frame (50 frames/s), 50-600
Hz, voicing threshold 0.5. Every method is read at the same frame centres, (s + 1/2) x 320
samples (librosa's frames are centred on t x hop, so it reads the signal from sample 160;
torchaudio's frame s covers samples [320 s, 320 (s + 1)) plus its lags, and its median runs
over 5 frames, as ours does).

Printed, per method:
- synthetic signals with a known F0: harmonic tones (30 harmonics under 7.5 kHz, amplitudes
  1/h, random phases) at 80, 150, 250 and 400 Hz, glides 80 -> 320 and 300 -> 120 Hz, and a
  200 Hz vibrato (+-6 % at 5 Hz), each 1.6 s between 0.4 s of white noise (unvoiced) and
  0.4 s of silence, with white noise added at no noise, 20, 10 and 0 dB SNR (over the voiced
  part). Scored on frames at least 40 ms from a boundary: GPE (voiced frames, by truth and by
  the method, whose F0 is off by over 20 %), the mean |cents| of the other voiced frames, and
  VDE (frames whose voiced/unvoiced call is wrong; methods without a voicing decision call
  every frame voiced, so their VDE is the unvoiced share and is not printed).
- espeak-ng speech (three voices) against librosa.pyin as the reference (no truth there):
  the same scores with pyin's F0 and voicing taken as the truth.
- chunk-exactness: the F0 of each clip computed in --chunk-seconds pieces, each with the
  context the method's window needs (ours: `yin_reach`; librosa: half its frame; torchaudio:
  its lags and median) on both sides, against the whole-clip F0: the share of frames that
  differ, leaving out the clips' first and last 5 frames (torchaudio's median replicates its
  first values there). The encoder's chunked encoding relies on this being 0.
- speed: seconds of compute per second of audio on the speech, one thread, best of 3.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch
import torchaudio

from audiotok.modules.f0 import refine_f0, yin_f0, yin_reach

SR, HOP = 16000, 320
F0_LOW, F0_HIGH = 50.0, 600.0
VOICING = 0.5          # the bundled codec's encoder.voicing_threshold
FRAME = 1024           # librosa's frame: over two periods of 50 Hz, as YIN needs
MARGIN = 0.04          # s: frames this close to a voiced/unvoiced boundary are not scored
EDGE = 5               # frames at each end of a clip left out of the chunk comparison
SEGMENTS = (0.4, 1.6, 0.4)  # s: noise (unvoiced), harmonic tone, silence
SPEECH = [("en-us", "Please call Stella. Ask her to bring these things with her from the store."),
          ("en+f4", "Six spoons of fresh snow peas, five thick slabs of blue cheese."),
          ("es", "El veloz murcielago hindu comia feliz cardillo y kiwi.")]


# --- methods: wav [T] float32 numpy, T a multiple of HOP -> (f0 Hz [T / HOP], voiced bool) ---

def ours(wav: np.ndarray, refine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(wav)[None]
    f0 = yin_f0(x, SR, HOP, VOICING)
    if refine:
        f0 = refine_f0(x, f0, SR, HOP)
    f0 = f0[0].numpy().astype(np.float64)
    return f0, f0 > 0


def librosa_yin(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f0 = librosa.yin(wav[HOP // 2:], fmin=F0_LOW, fmax=F0_HIGH, sr=SR, frame_length=FRAME,
                     hop_length=HOP)
    return f0, np.ones_like(f0, dtype=bool)  # no voicing decision


def librosa_pyin(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f0, voiced, _ = librosa.pyin(wav[HOP // 2:], fmin=F0_LOW, fmax=F0_HIGH, sr=SR,
                                 frame_length=FRAME, hop_length=HOP)
    return np.nan_to_num(f0), voiced


def torchaudio_nccf(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchaudio 2.9 warns of its functional API's future
        f0 = torchaudio.functional.detect_pitch_frequency(
            torch.from_numpy(wav)[None], SR, frame_time=HOP / SR, win_length=5,
            freq_low=int(F0_LOW), freq_high=int(F0_HIGH))[0].numpy().astype(np.float64)
    f0 = np.pad(f0, (0, max(0, len(wav) // HOP - len(f0))), mode="edge")[:len(wav) // HOP]
    return f0, np.ones_like(f0, dtype=bool)


METHODS = {
    "ours (YIN)": (ours, True),
    "ours + refine_f0": (lambda w: ours(w, refine=True), True),
    "librosa.yin": (librosa_yin, False),
    "librosa.pyin": (librosa_pyin, True),
    "torchaudio detect_pitch_frequency": (torchaudio_nccf, False),
}
CONTEXT = {  # samples each side a chunk needs, rounded up to whole frames
    "ours (YIN)": yin_reach(SR, HOP), "ours + refine_f0": yin_reach(SR, HOP),
    "librosa.yin": FRAME // 2 + HOP, "librosa.pyin": FRAME // 2 + HOP,
    "torchaudio detect_pitch_frequency": math.ceil(SR / F0_LOW) + 3 * HOP,
}


# --- signals ---

def harmonic(f0_track: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """f0 per sample -> 30 harmonics under 7.5 kHz, amplitudes 1/h, random phases."""
    phase = 2 * np.pi * np.cumsum(f0_track) / SR
    out = np.zeros_like(f0_track)
    for h in range(1, 31):
        out += np.where(h * f0_track < 7500, np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h, 0)
    return out


def synthetic(snr_db: float | None, rng: np.random.Generator) -> list[tuple[np.ndarray, callable]]:
    """[(wav, truth(t) -> F0 Hz, 0 unvoiced, nan near a boundary)]."""
    noise_s, tone_s, silence_s = SEGMENTS
    n = int(tone_s * SR)
    t = np.arange(n) / SR
    tracks = {f"{f:.0f} Hz": lambda t, f=f: np.full_like(t, f) for f in (80, 150, 250, 400)}
    tracks["glide 80-320 Hz"] = lambda t: 80 * 4 ** (t / tone_s)
    tracks["glide 300-120 Hz"] = lambda t: 300 * 0.4 ** (t / tone_s)
    tracks["vibrato 200 Hz"] = lambda t: 200 * (1 + 0.06 * np.sin(2 * np.pi * 5 * t))
    out = []
    for track in tracks.values():
        tone = harmonic(track(t), rng)
        tone *= 0.3 / np.abs(tone).max()
        if snr_db is not None:
            tone += rng.standard_normal(n) * np.sqrt(np.mean(tone ** 2) / 10 ** (snr_db / 10))
        wav = np.concatenate([0.03 * rng.standard_normal(int(noise_s * SR)), tone,
                              np.zeros(int(silence_s * SR))]).astype(np.float32)

        def truth(times, track=track):
            inside = times - noise_s
            f0 = np.where((inside > 0) & (inside < tone_s), track(np.clip(inside, 0, tone_s)), 0.0)
            near = np.minimum(np.abs(inside), np.abs(inside - tone_s)) < MARGIN
            return np.where(near, np.nan, f0)
        out.append((wav, truth))
    return out


def speech() -> list[np.ndarray]:
    if not shutil.which("espeak-ng"):
        return []
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice, text in SPEECH:
            path = Path(tmp) / "s.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            wav, sr = sf.read(path, dtype="float32")
            wav = soxr.resample(wav, sr, SR)
            clips.append((0.5 * wav / np.abs(wav).max()).astype(np.float32)[:len(wav) // HOP * HOP])
    return clips


# --- scores ---

def scores(f0: np.ndarray, voiced: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """-> [gross errors, voiced pairs, sum |cents| of fine ones, fine count, voicing errors,
    scored frames] for frames where ref is not nan."""
    ok = ~np.isnan(ref)
    f0, voiced, ref = f0[ok], voiced[ok], ref[ok]
    both = voiced & (ref > 0) & (f0 > 0)
    ratio = f0[both] / ref[both]
    gross = np.abs(ratio - 1) > 0.2
    cents = np.abs(1200 * np.log2(ratio[~gross]))
    return np.array([gross.sum(), both.sum(), cents.sum(), (~gross).sum(),
                     (voiced != (ref > 0)).sum(), ok.sum()], dtype=np.float64)


def report(name: str, total: np.ndarray, has_voicing: bool) -> str:
    gpe = 100 * total[0] / max(total[1], 1)
    cents = total[2] / max(total[3], 1)
    line = f"{name}: GPE {gpe:.1f} %, fine error {cents:.1f} cents"
    if has_voicing:
        line += f", VDE {100 * total[4] / total[5]:.1f} %"
    return line


def frame_times(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) * HOP / SR


def chunked(method, wav: np.ndarray, chunk: int, context: int) -> np.ndarray:
    """F0 of wav [T] in chunks of `chunk` frames, each read with `context` samples each side
    (zeros beyond the signal, as every method pads its ends)."""
    context = math.ceil(context / HOP) * HOP
    padded = np.pad(wav, (context, context))
    frames = len(wav) // HOP
    out = []
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        piece = padded[start * HOP:stop * HOP + 2 * context]
        out.append(method(piece)[0][context // HOP:context // HOP + stop - start])
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk-seconds", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    print(f"synthetic signals ({len(SEGMENTS)} segments each, 7 tracks), per SNR:")
    for snr in (None, 20, 10, 0):
        clips = synthetic(snr, rng)
        for name, (method, has_voicing) in METHODS.items():
            total = sum(scores(*method(wav), truth(frame_times(len(wav) // HOP)))
                        for wav, truth in clips)
            print(f"  {'clean' if snr is None else f'{snr} dB'}, {report(name, total, has_voicing)}")

    clips = speech()
    if not clips:
        print("espeak-ng is not installed: no speech rows")
        return
    seconds = sum(len(w) for w in clips) / SR
    print(f"espeak-ng speech ({len(clips)} voices, {seconds:.1f} s), against librosa.pyin:")
    refs = [librosa_pyin(w) for w in clips]
    for name, (method, has_voicing) in METHODS.items():
        if name == "librosa.pyin":
            continue
        total = sum(scores(*method(w), np.where(v, f, 0.0)) for w, (f, v) in zip(clips, refs))
        print(f"  {report(name, total, has_voicing)}")

    chunk = int(args.chunk_seconds * SR / HOP)
    print(f"chunk-exactness ({args.chunk_seconds:g} s chunks with the method's context) and "
          "speed (s per s of audio, one thread, best of 3):")
    for name, (method, _) in METHODS.items():
        differ = frames = 0
        for wav in clips:
            whole = method(wav)[0]
            pieces = chunked(method, wav, chunk, CONTEXT[name])
            inner = slice(EDGE, len(whole) - EDGE)
            differ += int((whole[inner] != pieces[inner]).sum())
            frames += len(whole[inner])
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for wav in clips:
                method(wav)
            times.append(time.perf_counter() - start)
        print(f"  {name}: {100 * differ / frames:.1f} % of frames differ, "
              f"{min(times) / seconds:.4f} s/s")


if __name__ == "__main__":
    main()
