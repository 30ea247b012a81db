"""`audiotok tokenize` (corpus -> token shards) and `audiotok detokenize` (shards -> audio)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..codec_backend import check_device, open_codec
from ..errors import AudiotokError
from .argtypes import nonneg_float, nonneg_int, positive_float, positive_int
from .codec_options import CODEC_HELP, add_backend


def add_tokenize(sub) -> None:
    p = sub.add_parser(
        "tokenize", help="tokenize a corpus into shards for speech-LM training (resumable)",
        description="Encode every audio file of a folder (recursive), glob pattern or JSONL "
        "manifest into token shards plus index.json. Running the same command again resumes "
        "an interrupted job. Several machines or processes: torchrun --nproc_per_node=N -m "
        "audiotok tokenize ...; on one machine --workers N does the same.")
    p.add_argument("input", help="folder, quoted glob pattern ('data/**/*.flac') or .jsonl "
                   "manifest ({\"path\": ..., any metadata})")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--codec", default=None, help=CODEC_HELP)
    p.add_argument("--format", default="parquet", choices=["parquet", "webdataset", "npy"],
                   help="parquet (datasets/pyarrow), webdataset (.tar) or npy (a file per "
                   "utterance, for small jobs); default parquet")
    p.add_argument("--n-codebooks", type=positive_int, default=None,
                   help="keep the first K codebook levels (lower bitrate); default all")
    p.add_argument("--shard-size", type=positive_int, default=1000,
                   help="utterances per shard (the unit of work and of resume); default 1000")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="parallel encoders on this machine (per torchrun rank): threads of "
                   "one process on a CPU, each with cores/N torch threads; processes on GPUs "
                   "(one per device); default: the cores (per rank) on a CPU, 1 on a GPU")
    p.add_argument("--worker-processes", action="store_true",
                   help="run --workers as separate processes on a CPU too (each starts its "
                   "own Python and torch, and takes whole shards); the default on GPUs")
    p.add_argument("--decode-workers", type=nonneg_int, default=1,
                   help="audio-decoding processes per worker (0: decode in the worker)")
    p.add_argument("--batch-seconds", type=nonneg_float, default=None,
                   help="audio per codec call once padded (similar lengths are grouped; "
                   "0: one file per call); default 10 on CPU, 120 on GPU")
    p.add_argument("--chunk-seconds", type=positive_float, default=10.0,
                   help="encode long files in chunks of this many seconds (bounded memory)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add_backend(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tokenize)


def _default_workers(device: str) -> int:
    """On a CPU one single-threaded encoder per core (per torchrun rank): torch's own
    threads spin on a busy machine, batch-level threads do not (tokenize/run.py)."""
    import os

    if not device.startswith("cpu"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def cmd_tokenize(args) -> int:
    from ..tokenize.run import TokenizeOptions, tokenize

    check_device(args.device)
    # the workers move it (or load it) to --device; an ONNX export's folder is what the
    # workers open, so they run onnxruntime too
    codec = open_codec(args.codec, "cpu", args.backend)
    opts = TokenizeOptions(
        source=args.input, output=args.output, codec=codec.ref, format=args.format,
        n_codebooks=args.n_codebooks, shard_size=args.shard_size,
        batch_seconds=args.batch_seconds, chunk_seconds=args.chunk_seconds,
        workers=args.workers or _default_workers(args.device),
        decode_workers=args.decode_workers, device=args.device,
        worker_processes=True if args.worker_processes else None,
        progress=not args.no_progress)
    tokenize(opts, codec)
    return 0


def add_detokenize(sub) -> None:
    p = sub.add_parser(
        "detokenize", help="decode token shards back to audio (for checking)",
        description="Decode the records of a finished tokenize output folder to audio files "
        "<output>/<id>.wav with the codec that made them (or the one given).")
    p.add_argument("shards", type=Path, help="output folder of `audiotok tokenize`")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for audio files")
    p.add_argument("--codec", default=None, help="override the codec recorded in index.json")
    p.add_argument("--ids", nargs="+", default=None, metavar="ID",
                   help="decode only these utterance ids")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="decode at most N utterances")
    p.add_argument("--chunk-seconds", type=positive_float, default=10.0,
                   help="decode long token sequences in chunks of this many seconds")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.set_defaults(func=cmd_detokenize)


def cmd_detokenize(args) -> int:
    from ..tokenize.detokenize import detokenize
    from ..tokenize.state import read_index
    from .per_file import report_error

    index = read_index(args.shards)
    if args.limit is not None and args.limit < 1:
        raise AudiotokError(f"--limit must be at least 1, got {args.limit}")
    codec = open_codec(args.codec or index["codec_ref"], args.device)
    written, failed = detokenize(args.shards, index, codec, args.output, args.ids, args.limit,
                                 args.chunk_seconds, args.device, on_error=report_error)
    print(f"audiotok: decoded {written} utterances into {args.output}"
          + (f"; {failed} failed (see above)" if failed else ""), file=sys.stderr)
    return 1 if failed else 0
