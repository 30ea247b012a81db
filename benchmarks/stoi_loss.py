"""Our differentiable STOI (losses/intelligibility.py) next to torch-stoi's NegSTOILoss:
agreement with pystoi on running speech, and training-step time.

    python benchmarks/stoi_loss.py --manifest /tmp/rs/running_speech.jsonl [--clips 24]

The manifest is scripts/prepare_running_speech.py's (sentences with their pauses, 16 kHz).
Each clip is degraded three ways (white noise at 0 and 10 dB SNR, a 1.5 kHz low-pass); every
(clip, degradation) pair is scored by pystoi (the metric), by ours and by torch-stoi (both
with their silence handling on). Printed: mean and max |score - pystoi| for each, and the
time of one forward + backward on a training batch (8 x 1 s excerpts, the shape the
recipes' `stoi` loss sees), best of --repeats, alternating the two.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from pystoi import stoi
from torch_stoi import NegSTOILoss

from audiotok.losses.intelligibility import STOILoss


def degraded(wav: np.ndarray, sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    power = np.mean(wav ** 2)
    out = {}
    for snr in (0, 10):
        noise = rng.standard_normal(wav.shape) * np.sqrt(power / 10 ** (snr / 10))
        out[f"noise {snr} dB"] = (wav + noise).astype(np.float32)
    low = torchaudio.functional.lowpass_biquad(torch.from_numpy(wav), sr, 1500.0)
    out["low-pass 1.5 kHz"] = low.numpy().astype(np.float32)
    return out


def step_time(loss: torch.nn.Module, ref: torch.Tensor, est: torch.Tensor) -> float:
    est = est.clone().requires_grad_(True)
    start = time.perf_counter()
    value = loss(ref, est)
    value.sum().backward()
    return time.perf_counter() - start


def degenerate_excerpts(rows: list[dict], folder: Path, rng: np.random.Generator,
                        seconds: tuple[float, ...] = (0.5, 1.0), n: int = 200) -> None:
    """Training sees short excerpts, pauses included: how often does each loss give no
    gradient there (torch-stoi scores a row 0 when under 30 of its frames are speech, and
    raises on excerpts under 31 frames)?"""
    clips = [sf.read(folder / row["path"], dtype="float32") for row in rows]
    for length in seconds:
        flat = err = ours_flat = 0
        for _ in range(n):
            wav, sr = clips[rng.integers(len(clips))]
            size = int(length * sr)
            start = rng.integers(max(1, len(wav) - size))
            ref = torch.from_numpy(wav[start:start + size])[None]
            est = (ref + 0.05 * torch.randn_like(ref)).requires_grad_(True)
            ours = (ref + 0.05 * torch.randn_like(ref)).requires_grad_(True)
            STOILoss(sr)(ref, ours).backward()
            ours_flat += int(ours.grad.abs().max() == 0)
            try:
                NegSTOILoss(sr)(est, ref).sum().backward()
                flat += int(est.grad.abs().max() == 0)
            except RuntimeError:
                err += 1
        print(f"{length:g} s excerpts: torch-stoi gives no gradient on {flat}/{n}, raises on "
              f"{err}/{n}; ours gives none on {ours_flat}/{n}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines()][:args.clips]
    diffs: dict[str, list[float]] = {"ours": [], "torch-stoi": []}
    for row in rows:
        wav, sr = sf.read(args.manifest.parent / row["path"], dtype="float32")
        ours, theirs = STOILoss(sr), NegSTOILoss(sr)
        for est in degraded(wav, sr, rng).values():
            metric = stoi(wav, est, sr, extended=False)
            r, e = torch.from_numpy(wav)[None], torch.from_numpy(est)[None]
            with torch.no_grad():
                diffs["ours"].append(abs(float(ours.per_item(r, e)[0]) - metric))
                diffs["torch-stoi"].append(abs(-float(theirs(e, r)[0]) - metric))
    print(f"{len(rows)} clips x 3 degradations of {args.manifest.name}")
    for name, d in diffs.items():
        print(f"{name:10}  |STOI - pystoi|  mean {np.mean(d):.4f}  max {np.max(d):.4f}")
    degenerate_excerpts(rows, args.manifest.parent, rng)
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(8, 16000, generator=g) * 0.1
    est = ref + 0.05 * torch.randn(8, 16000, generator=g)
    ours, theirs = STOILoss(16000), NegSTOILoss(16000)
    times = {"ours": [], "torch-stoi": []}
    for _ in range(args.repeats):
        times["ours"].append(step_time(ours, ref[:, None], est[:, None]))
        times["torch-stoi"].append(step_time(lambda r, e: theirs(e, r), ref, est))
    for name, t in times.items():
        print(f"{name:10}  forward + backward, 8 x 1 s at 16 kHz: {min(t) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
