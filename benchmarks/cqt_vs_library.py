"""Our CQT (discriminators/cqt.py `ConstantQTransform`) next to the libraries that compute one:
nnAudio's CQT2010v2 (what the CQT discriminator's reference code calls), nnAudio's CQT1992v2
and librosa.cqt.

    python benchmarks/cqt_vs_library.py [--seconds 4] [--repeats 3]

Settings are the discriminator's (`CQTDConfig` defaults): the codec's audio upsampled 2x,
fmin 32.70 Hz, 9 octaves, scales (hop, bins per octave) 512/24, 256/36, 256/48, at 16 and
24 kHz. At 16 kHz the top octave (8.4-16.3 kHz) crosses the upsampled Nyquist (16 kHz):
ours computes it (those bins hold nothing of a 16 kHz input), the libraries refuse the
settings, which the rows say. nnAudio is optional (`pip install nnAudio`; it is not a dependency of audiotok):
without it its rows are left out.

Printed:
- accuracy: each transform against the exact one, the same Hann kernels of Q cycles applied
  at the full rate with no decimation (what the octave-by-octave decimation approximates).
  The libraries normalise their kernels differently (L1, scaled by sqrt(length)), so each
  bin's gain is fitted first (least squares over the clip) and the error is what is left:
  ||g |A| - |R||| / ||R|| over all bins and frames, and over the worst octave. Signals: an
  espeak-ng sentence and white noise, at the codec's rate, upsampled 2x as the discriminator
  does (`upsample`).
- speed: seconds of compute per second of audio for the three scales of one batch of 8 x 1 s
  clips at 16 and 24 kHz (the discriminator's input after upsampling), forward
  and forward + backward to the input (torch transforms only; librosa is NumPy and has no
  gradient; CQT1992v2, whose kernels span the lowest bin's window at the full rate, forward
  once), best of --repeats, one thread; and the whole CQT discriminator's forward +
  backward, so the transform's share of it reads off.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from audiotok.discriminators.cqt import (
    ConstantQTransform,
    CQTDConfig,
    MultiScaleSubbandCQTDiscriminator,
    cqt_kernels,
    lowpass,
    upsample,
)

try:
    from nnAudio.features import CQT1992v2, CQT2010v2
except ImportError:  # optional: the comparison leaves its rows out
    CQT1992v2 = CQT2010v2 = None

CFG = CQTDConfig()
SCALES = list(zip(CFG.hop_lengths, CFG.n_octaves, CFG.bins_per_octave))
SENTENCE = ("Please call Stella. Ask her to bring these things with her from the store: six "
            "spoons of fresh snow peas, five thick slabs of blue cheese.")


def direct_cqt(x: torch.Tensor, sr: float, hop: int, n_octaves: int, bins: int) -> torch.Tensor:
    """The exact transform: every octave's kernels applied at the full rate. [N, bins, frames]
    complex, frame t centred on sample t * hop, as ConstantQTransform frames it."""
    frames = (x.shape[-1] - 1) // hop + 1
    out = []
    for k in range(n_octaves):
        bank = cqt_kernels(sr, CFG.fmin * 2 ** k, bins).double()
        y = F.conv1d(x.double(), bank, stride=hop, padding=bank.shape[-1] // 2)[..., :frames]
        out.append(torch.complex(y[:, :bins], y[:, bins:]))
    return torch.cat(out, 1)


def ours(x: torch.Tensor, sr: float, hop: int, n_octaves: int, bins: int):
    cqt = ConstantQTransform(sr, hop, n_octaves, bins, CFG.fmin)
    return lambda: torch.view_as_complex(cqt(x).permute(0, 2, 3, 1).contiguous())


def nnaudio(cls, x: torch.Tensor, sr: float, hop: int, n_octaves: int, bins: int):
    # as the reference code builds it (Amphion mssbcqtd.py, BigVGAN v2 discriminators.py)
    cqt = cls(sr=sr, hop_length=hop, fmin=CFG.fmin, n_bins=bins * n_octaves,
              bins_per_octave=bins, output_format="Complex", pad_mode="constant",
              verbose=False)
    return lambda: torch.view_as_complex(cqt(x[:, 0]).contiguous())


def librosa_cqt(x: torch.Tensor, sr: float, hop: int, n_octaves: int, bins: int):
    audio = x[:, 0].numpy()
    return lambda: torch.from_numpy(librosa.cqt(
        audio, sr=sr, hop_length=hop, fmin=CFG.fmin, n_bins=bins * n_octaves,
        bins_per_octave=bins, pad_mode="constant"))


def methods() -> dict:
    out = {"ours": ours, "librosa.cqt": librosa_cqt}
    if CQT2010v2 is not None:
        out["nnAudio CQT2010v2"] = lambda *a: nnaudio(CQT2010v2, *a)
        out["nnAudio CQT1992v2"] = lambda *a: nnaudio(CQT1992v2, *a)
    return out


def fitted_error(est: torch.Tensor, ref: torch.Tensor, bins: int, edge: int) -> tuple[float, float]:
    """(relative error over all bins, over the worst octave) of |est| against |ref| after one
    least-squares gain per bin; `edge` frames at each end are left out (zero padding)."""
    frames = min(est.shape[-1], ref.shape[-1])
    a = est[..., edge:frames - edge].abs().double()
    r = ref[..., edge:frames - edge].abs().double()
    gain = (a * r).sum((0, 2), keepdim=True) / a.square().sum((0, 2), keepdim=True).clamp(min=1e-30)
    err = (gain * a - r).square().sum((0, 2))  # per bin
    total = (err.sum() / r.square().sum()).sqrt().item()
    per_octave = (err.view(-1, bins).sum(1) / r.square().sum((0, 2)).view(-1, bins).sum(1)).sqrt()
    return total, per_octave.max().item()


def signals(rate: int, seconds: float) -> dict[str, torch.Tensor]:
    """{name: [1, 1, T]} at 2 x rate, upsampled as the discriminator upsamples."""
    out = {}
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.wav"
            subprocess.run(["espeak-ng", "-w", str(path), SENTENCE], check=True)
            wav, sr = sf.read(path, dtype="float32")
        wav = soxr.resample(wav, sr, rate)[:int(seconds * rate)]
        out["espeak-ng speech"] = torch.from_numpy(wav / np.abs(wav).max())
    rng = np.random.default_rng(0)
    out["white noise"] = torch.from_numpy(0.1 * rng.standard_normal(int(seconds * rate))).float()
    kernel = lowpass(0.5 / CFG.upsample, gain=CFG.upsample)
    return {k: upsample(v.view(1, 1, -1), CFG.upsample, kernel) for k, v in out.items()}


def accuracy(seconds: float) -> None:
    print("accuracy: relative error of |CQT| against the exact full-rate transform, per-bin "
          "gain fitted (all bins / worst octave)")
    for rate in (16000, 24000):
        sr = rate * CFG.upsample
        for name, x in signals(rate, seconds).items():
            for hop, octaves, bins in SCALES:
                ref = direct_cqt(x, sr, hop, octaves, bins)
                longest = cqt_kernels(sr, CFG.fmin, bins).shape[-1]
                edge = longest // (2 * hop) + 1
                row = []
                for method, build in methods().items():
                    try:
                        est = build(x, sr, hop, octaves, bins)()
                    except Exception as error:  # noqa: BLE001 - a library refusing the settings
                        row.append(f"{method} refuses ({str(error).split(',')[0]})")
                        continue
                    total, worst = fitted_error(est, ref, bins, edge)
                    row.append(f"{method} {total:.2e} / {worst:.2e}")
                print(f"  {rate // 1000} kHz, {name}, hop {hop}, {bins} bins/oct: " + "; ".join(row))


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: kernels built, caches filled
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forward_time(fns: list, repeats: int) -> float:
    return best_time(lambda: [fn() for fn in fns], repeats)


def backward_time(x: torch.Tensor, fns: list, repeats: int) -> float:
    def step():
        x.grad = None
        sum(fn().abs().sum() for fn in fns).backward()
    return best_time(step, repeats)


def speed(rate: int, repeats: int) -> None:
    batch = 8
    sr = rate * CFG.upsample
    x = torch.randn(batch, 1, sr) * 0.1
    print(f"speed: {batch} x 1 s at {rate // 1000} kHz (upsampled 2x), three scales, one thread, "
          "s of compute per s of audio")
    for method, build in methods().items():
        try:
            fns = [build(x, sr, hop, octaves, bins) for hop, octaves, bins in SCALES]
            fns[0]()
        except Exception:  # noqa: BLE001 - refused, as the accuracy rows say
            print(f"  {method}: refuses these settings")
            continue
        if method == "nnAudio CQT1992v2":  # full-length kernels at the full rate: seconds a call
            print(f"  {method}: forward {forward_time(fns, 1) / batch:.4f} (one run)")
            continue
        line = f"  {method}: forward {forward_time(fns, repeats) / batch:.4f}"
        if method != "librosa.cqt":
            xg = x.clone().requires_grad_(True)
            grad_fns = [build(xg, sr, hop, octaves, bins) for hop, octaves, bins in SCALES]
            line += f", forward + backward {backward_time(xg, grad_fns, repeats) / batch:.4f}"
        print(line)
    disc = MultiScaleSubbandCQTDiscriminator(CFG, channels=1, sample_rate=rate)
    wav = (torch.randn(batch, 1, rate) * 0.1).requires_grad_(True)

    def disc_step():
        disc.zero_grad()
        wav.grad = None
        outs = disc(wav)
        sum(logits.mean() for logits, _ in outs).backward()
    print(f"  whole CQT discriminator (ours, {CFG.filters} filters): forward + backward "
          f"{best_time(disc_step, repeats) / batch:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="accuracy clips' length")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if CQT2010v2 is None:
        print("nnAudio is not installed: its rows are left out")
    accuracy(args.seconds)
    for rate in (16000, 24000):
        speed(rate, args.repeats)


if __name__ == "__main__":
    main()
