"""How close the reference codecs already run to this CPU's float32 peak: the floor under
any implementation that does the same arithmetic.

    python benchmarks/roofline.py [--threads 2] [--seconds 5] [--only dac_16k ...]

For each pair of `speed.py` (the same random-weight release files), in this process:

  * FLOPs of the reference's encode and decode, counted by torch.utils.flop_counter (a
    multiply-add is 2 FLOPs; convolutions and matmuls only, so elementwise work is left out
    and the figures are a lower bound of the work);
  * the reference's time (best of --repeats) and the GFLOP/s it reaches;
  * this machine's float32 matmul peak with the same threads: the best GFLOP/s of a large
    square torch.mm, the rate oneDNN/MKL reach on their best-shaped problem;
  * floor = FLOPs / peak: no fp32 implementation of the same convolutions can take less
    time, and "floor/ref" says what fraction of the reference's time that is. An
    implementation 1.5x faster than the reference needs floor/ref under 0.67.

Fewer multiplies (Winograd or FFT convolution) or lower precision are the only ways under
the floor; both change the outputs' rounding (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from codec_speed import signal  # same folder: shared helpers
from speed import PAIRS, reference, release_file
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak(repeats: int = 5, n: int = 2048) -> float:
    """GFLOP/s of the best of `repeats` [n, n] x [n, n] float32 products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="+", default=["encodec_24k", "dac_16k", "dac_44k"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {args.threads} threads, {args.seconds:g} s clip; "
          f"float32 matmul peak {peak:.0f} GFLOP/s")
    print(f"{'model':12} {'step':6} {'GFLOP':>7} {'ref s':>7} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'floor s':>8} {'floor/ref':>9}")
    tmp = Path(tempfile.mkdtemp(prefix="roofline-"))
    for name in args.only:
        _, sr, encode, decode = reference(PAIRS[name][2], release_file(name, tmp))
        wav = signal(args.seconds, sr)
        codes = encode(wav)
        decode(encode(wav[..., :sr]))  # warm-up
        steps = (("encode", partial(encode, wav)), ("decode", partial(decode, codes)))
        for step, fn in steps:
            work = flops(fn)
            took = min(_timed(fn) for _ in range(args.repeats))
            rate = work / took / 1e9
            floor = work / 1e9 / peak
            print(f"{name:12} {step:6} {work / 1e9:>7.1f} {took:>7.3f} {rate:>8.0f} "
                  f"{rate / peak:>8.0%} {floor:>8.3f} {floor / took:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
