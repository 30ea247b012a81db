"""Encode/decode real-time factors and peak memory for each codec family on this machine.

    python benchmarks/codec_speed.py [--threads 2] [--seconds 30] [--long-minutes 10]
    python benchmarks/codec_speed.py --full-size --seconds 10 --repeats 2 --no-long

For each family (default-size, untrained weights: speed does not depend on training):
  * RTF = processing time / audio duration for encode and decode of a `--seconds` clip
    (best of `--repeats`), so RTF 0.1 means ten times faster than real time;
  * peak RSS while encoding a `--long-minutes` file in 10 s chunks, measured in a fresh
    process so families do not share allocator state;
  * for families whose receptive field is unbounded (LSTM, full attention), the fraction of
    codes that chunked encoding shares with whole-file encoding on a 60 s clip.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

CODECS = ["audiotok/speech-16k", "recipes/tiny_speech_16k.yaml", "seanet", "dac", "wavtokenizer"]
# the published designs at full size (issue: recipes for the published codec designs)
FULL_SIZE = [f"recipes/designs/{n}.yaml" for n in (
    "encodec_24k", "dac_16k", "dac_24k", "dac_44k", "wavtokenizer_24k_75hz",
    "wavtokenizer_24k_40hz", "mimi_24k")]


def signal(seconds: float, sr: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * sr)) / sr
    voiced = sum(torch.sin(2 * torch.pi * 140 * k * t) / k for k in range(1, 10))
    return (0.1 * voiced * (1 + torch.sin(2 * torch.pi * 3 * t)) +
            0.01 * torch.randn(t.shape, generator=g))[None, None]


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speed(ref: str, seconds: float, repeats: int) -> dict:
    from audiotok import load_codec

    codec = load_codec(ref)
    wav = signal(seconds, codec.sample_rate)
    codec.encode(wav[..., : codec.sample_rate])  # warm-up
    enc = best_time(lambda: codec.encode(wav), repeats)
    tokens = codec.encode(wav)
    dec = best_time(lambda: codec.decode(tokens), repeats)
    return {"codec": ref, "params_M": sum(p.numel() for p in codec.parameters()) / 1e6,
            "frame_rate": codec.frame_rate, "kbps": codec.bitrate() / 1000,
            "encode_rtf": enc / seconds, "decode_rtf": dec / seconds}


def chunk_agreement(ref: str) -> float | None:
    from audiotok import load_codec

    codec = load_codec(ref)
    if codec.encoder.receptive_field() is not None:
        return None
    wav = signal(60.0, codec.sample_rate)
    whole = codec.encode(wav, chunk_seconds=None).codes
    chunked = codec.encode(wav, chunk_seconds=10.0).codes
    return (whole == chunked).float().mean().item()


def vm_kb(field: str) -> float:
    # /proc, not getrusage: ru_maxrss is inherited from the parent across fork+exec
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise KeyError(field)


def peak_memory(ref: str, minutes: float) -> dict:
    """Run in a child process: RSS after loading codec and audio vs peak RSS during a long
    chunked encode (the difference is what encoding holds at once)."""
    from audiotok import load_codec

    codec = load_codec(ref)
    wav = signal(minutes * 60, codec.sample_rate)
    base = vm_kb("VmHWM") / 1024
    start = time.perf_counter()
    tokens = codec.encode(wav, chunk_seconds=10.0)
    took = time.perf_counter() - start
    peak = vm_kb("VmHWM") / 1024
    return {"rss_before_MB": base, "peak_rss_MB": peak, "frames": tokens.codes.shape[-1],
            "encode_s": took}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--codecs", nargs="+", default=None)
    p.add_argument("--full-size", action="store_true", help="the published designs' recipes")
    p.add_argument("--no-long", action="store_true", help="skip the long-file memory run")
    p.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_memory:
        print(json.dumps(peak_memory(args.child_memory, args.long_minutes)))
        return
    print(f"torch {torch.__version__}, {args.threads} threads, clip {args.seconds:g} s, "
          f"long file {args.long_minutes:g} min")
    print(f"{'codec':32} {'params':>7} {'Hz':>5} {'kbps':>6} {'enc RTF':>8} {'dec RTF':>8} "
          f"{'base MB':>8} {'peak MB':>8} {'long enc s':>10} {'chunk==whole':>12}")
    codecs = args.codecs or (FULL_SIZE if args.full_size else CODECS)
    for ref in codecs:
        r = speed(ref, args.seconds, args.repeats)
        mem = {"rss_before_MB": float("nan"), "peak_rss_MB": float("nan"),
               "encode_s": float("nan")}
        if not args.no_long:
            child = subprocess.run(
                [sys.executable, __file__, "--child-memory", ref, "--threads",
                 str(args.threads), "--long-minutes", str(args.long_minutes)],
                capture_output=True, text=True, check=True)
            mem = json.loads(child.stdout.strip().splitlines()[-1])
        agree = None if args.no_long else chunk_agreement(ref)
        agree_s = "-" if args.no_long else ("exact" if agree is None else f"{agree:.4f}")
        print(f"{ref:32} {r['params_M']:>6.2f}M {r['frame_rate']:>5g} {r['kbps']:>6.2f} "
              f"{r['encode_rtf']:>8.4f} {r['decode_rtf']:>8.4f} {mem['rss_before_MB']:>8.0f} "
              f"{mem['peak_rss_MB']:>8.0f} "
              f"{mem['encode_s']:>10.1f} {agree_s:>12}", flush=True)


if __name__ == "__main__":
    main()
