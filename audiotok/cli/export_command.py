"""`audiotok export CODEC --format onnx -o DIR`: a codec's graphs for other runtimes."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import AudiotokError


def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a codec's encoder and decoder as ONNX graphs",
        description="Export a codec as ONNX graphs that onnxruntime (Python, C++, the browser) "
        "runs without torch: encoder.onnx (audio -> codes of every level) and decoder.onnx "
        "(codes -> audio) with dynamic batch and length, plus onnx.json (the codec's spec, "
        "the torch weights' fingerprint, the inputs' contract and the equality measured "
        "against torch at export). `audiotok encode/decode/tokenize --codec DIR` and "
        "load_codec(DIR) run the folder with onnxruntime.")
    p.add_argument("codec", help="codec checkpoint directory, recipe .yaml or a name from "
                   "`audiotok info --list`")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="graph format (onnx)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write")
    p.add_argument("--streaming", action="store_true",
                   help="also write step graphs with explicit state tensors "
                   "(encoder_step.onnx, decoder_step.onnx) for frame-by-frame streaming; "
                   "causal codecs with zero or replicate padding only")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..codecs import load_codec
    from ..export.onnx import check_target, export_onnx
    from ..export.onnx_codec import OnnxCodec

    check_target(args.output, args.force)  # before loading and tracing: fail fast
    codec = load_codec(args.codec)
    if isinstance(codec, OnnxCodec):
        raise AudiotokError(f"{args.codec} is an ONNX export already")
    out = export_onnx(codec, args.output, streaming=args.streaming, force=args.force)
    checks = OnnxCodec.open(out).manifest["checks"]
    sizes = ", ".join(f"{f.name} {f.stat().st_size / 1e6:.1f} MB"
                      for f in sorted(out.glob("*.onnx")))
    line = (f"audiotok: wrote {out} ({sizes}); vs torch: codes equal on "
            f"{checks['frames_equal']:.2%} of {checks['frames']} frames, audio within "
            f"{checks['audio_max_diff']:.1e}")
    if "stream_frames" in checks:
        line += (f"; streamed frame by frame: {checks['stream_frames_equal']:.2%} equal, audio "
                 f"within {checks['stream_audio_max_diff']:.1e}")
    print(line, file=sys.stderr)
    return 0
