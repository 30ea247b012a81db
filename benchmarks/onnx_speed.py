"""onnxruntime next to torch on the same codec: encode and decode time of a speech-like clip,
the ONNX side being the folder `audiotok export --format onnx` writes.

    python benchmarks/onnx_speed.py [--threads 2] [--seconds 10] [--rounds 2] [--only mimi ...]

Rows are speed.py's random-weight releases (encodec_24k at 8 codebooks, dac_16k, mimi at 8
codebooks: the publisher's architecture saved in its format, opened by audiotok) and the
bundled model. Each is exported once into a temporary folder; then every round runs torch and
onnxruntime in fresh processes, alternating, with --threads threads each (torch's and
onnxruntime's intra-op pools); a 1 s warm-up, then the best of --repeats timings. The codes of
both sides are compared (column "same codes"). ratio = onnxruntime time / torch time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from codec_speed import best_time, signal  # same folder: shared helpers
from speed import release_file

ROWS = {"encodec_24k": 8, "dac_16k": None, "mimi": 8, "audiotok/speech-16k": None}


def child(ref: str, n_codebooks: int | None, seconds: float, repeats: int) -> dict:
    from audiotok import load_codec

    codec = load_codec(ref)
    wav = signal(seconds, codec.sample_rate)
    codec.decode(codec.encode(wav[..., :codec.sample_rate], n_codebooks))  # warm-up
    enc = best_time(lambda: codec.encode(wav, n_codebooks), repeats)
    tokens = codec.encode(wav, n_codebooks)
    dec = best_time(lambda: codec.decode(tokens), repeats)
    digest = hashlib.sha256(tokens.codes.numpy().tobytes()).hexdigest()
    return {"encode_rtf": enc / seconds, "decode_rtf": dec / seconds, "codes": digest}


def run_child(ref: str, n_codebooks, args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", ref, "--threads", str(args.threads),
         "--seconds", str(args.seconds), "--repeats", str(args.repeats),
         *(["--n-codebooks", str(n_codebooks)] if n_codebooks else [])],
        check=False, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def export(name: str, folder: Path) -> tuple[str, str]:
    """(torch ref, ONNX folder) of row `name`; raises AudiotokError if it does not export."""
    from audiotok import load_codec
    from audiotok.export import export_onnx

    ref = name if name.startswith("audiotok/") else str(release_file(name, folder))
    export_onnx(load_codec(ref), folder / f"{name.replace('/', '_')}_onnx")
    return ref, str(folder / f"{name.replace('/', '_')}_onnx")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--child", default=None)
    p.add_argument("--n-codebooks", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args.n_codebooks, args.seconds, args.repeats)))
        return
    from audiotok.errors import AudiotokError

    print(f"{args.seconds:g} s clip, {args.threads} threads, best of {args.repeats}, "
          f"{args.rounds} rounds (min over rounds; spread = max/min - 1)")
    print(f"{'codec':<22} {'side':<7} {'torch RTF':>9} {'onnx RTF':>9} {'ratio':>6} "
          f"{'spread':>7}  same codes")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or ROWS:
            try:
                ref, folder = export(name, Path(tmp))
            except AudiotokError as e:
                print(f"{name:<22} not exported: {e}")
                continue
            runs = {"torch": [], "onnx": []}
            for _ in range(args.rounds):
                runs["torch"].append(run_child(ref, ROWS[name], args))
                runs["onnx"].append(run_child(folder, ROWS[name], args))
            errors = [r["error"] for side in runs.values() for r in side if "error" in r]
            if errors:
                print(f"{name:<22} failed: {errors[0]}")
                continue
            same = runs["torch"][0]["codes"] == runs["onnx"][0]["codes"]
            for side in ("encode", "decode"):
                t = [r[f"{side}_rtf"] for r in runs["torch"]]
                o = [r[f"{side}_rtf"] for r in runs["onnx"]]
                spread = max(max(t) / min(t), max(o) / min(o)) - 1
                print(f"{name:<22} {side:<7} {min(t):>9.4f} {min(o):>9.4f} "
                      f"{min(o) / min(t):>6.2f} {spread:>6.1%}  {same}")


if __name__ == "__main__":
    main()
