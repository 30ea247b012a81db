"""Training throughput of a recipe on this machine: steps/s and audio seconds/s.

    python benchmarks/train_speed.py [recipes/tiny_speech_16k.yaml] [--steps 30]
        [--threads 2] [--set key=value ...]

Times generator+discriminator steps (discriminator active from the first step, the
steady-state cost) on in-memory generated speech-like batches, after a few warm-up steps,
and separately the step cost before the discriminator starts.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch


def batch(n: int, seconds: float, sr: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    rows = []
    for i in range(n):
        f0 = 100 + 80 * torch.rand(1, generator=g).item()
        voiced = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 12))
        rows.append(0.1 * voiced * (1 + torch.sin(2 * math.pi * 3 * t)) +
                    0.01 * torch.randn(t.shape, generator=g))
    return torch.stack(rows)[:, None]


def time_steps(trainer, wavs, steps: int, warmup: int = 3) -> float:
    for i in range(warmup):
        trainer.train_step(wavs[i % len(wavs)])
    start = time.perf_counter()
    for i in range(steps):
        trainer.train_step(wavs[i % len(wavs)])
        trainer.step += 1
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", default="recipes/tiny_speech_16k.yaml")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from audiotok.train import read_recipe
    from audiotok.train.trainer import Trainer

    timings = []
    for disc_start in (0, 1_000_000_000):
        # each trainer locks its own run directory
        with tempfile.TemporaryDirectory() as run:
            recipe = read_recipe(args.recipe, [f"data.train={run}", f"train.run_dir={run}",
                                               *args.overrides,
                                               f"train.disc_start_step={disc_start}"])
            sr, bs = recipe.model.sample_rate, recipe.train.batch_size
            seg = recipe.data.segment_seconds
            wavs = [batch(bs, seg, sr, s) for s in range(4)]
            timings.append(time_steps(Trainer(recipe), wavs, args.steps))
    with_d, without_d = timings
    print(f"recipe {args.recipe}: batch {bs} x {seg:g} s at {sr} Hz, torch "
          f"{torch.__version__}, {args.threads} threads")
    for name, sec in (("generator + discriminators", with_d), ("generator only", without_d)):
        print(f"{name:28} {1 / sec:6.2f} steps/s  {bs * seg / sec:7.2f} audio s/s  "
              f"({sec * 1000:.0f} ms/step)")


if __name__ == "__main__":
    main()
