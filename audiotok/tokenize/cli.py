"""`audiotok tokenize` (corpus -> token shards) and `audiotok detokenize` (shards -> audio)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..argtypes import nonneg_float, nonneg_int, positive_float, positive_int
from ..commands import CODEC_HELP, add_backend
from ..errors import AudiotokError


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
    from ..commands import _check_device, _open_codec
    from .run import TokenizeOptions, tokenize

    _check_device(args.device)
    # the workers move it (or load it) to --device; an ONNX export's folder is what the
    # workers open, so they run onnxruntime too
    codec = _open_codec(args.codec, "cpu", args.backend)
    opts = TokenizeOptions(
        source=args.input, output=args.output, codec=codec.ref, format=args.format,
        n_codebooks=args.n_codebooks, shard_size=args.shard_size,
        batch_seconds=args.batch_seconds, chunk_seconds=args.chunk_seconds,
        workers=args.workers or _default_workers(args.device), decode_workers=args.decode_workers, device=args.device,
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
    import numpy as np
    import torch

    from ..audio import save_audio
    from ..commands import PER_FILE_ERRORS, _open_codec, report_error
    from ..tokens import CodecSpec, Tokens
    from .state import read_index
    from .writers import read_records

    index = read_index(args.shards)
    if args.limit is not None and args.limit < 1:
        raise AudiotokError(f"--limit must be at least 1, got {args.limit}")
    codec = _open_codec(args.codec or index["codec_ref"], args.device)
    spec = CodecSpec.from_dict(index["codec"])
    wanted = set(args.ids) if args.ids else None
    written: set[Path] = set()
    failed = 0
    for rec in read_records(args.shards, index):
        if wanted is not None and rec.id not in wanted:
            continue
        dst = args.output / _wav_name(rec.id)
        try:  # a record that cannot be decoded or written is reported; the rest go on
            if dst in written:
                raise AudiotokError(f"{rec.id}: another id already wrote {dst}")
            tokens = Tokens(codes=torch.from_numpy(rec.codes.astype(np.int64))[None],
                            spec=spec, lengths=torch.tensor([rec.n_frames]),
                            num_samples=torch.tensor([rec.num_samples]),
                            global_codes=None if rec.global_codes is None else
                            torch.from_numpy(rec.global_codes.astype(np.int64))[None])
            codec.check_tokens(tokens)
            wav = codec.decode(tokens.to(args.device), chunk_seconds=args.chunk_seconds)
            save_audio(dst, wav[0].cpu(), codec.sample_rate)
            written.add(dst)
        except PER_FILE_ERRORS as e:
            failed += 1
            report_error(e if str(e).startswith(rec.id) else AudiotokError(f"{rec.id}: {e}"))
        if wanted is not None:
            wanted.discard(rec.id)
        if len(written) + failed == args.limit or wanted == set():
            break
    if wanted:
        raise AudiotokError(f"no such id in {args.shards}: {min(wanted)}")
    print(f"audiotok: decoded {len(written)} utterances into {args.output}"
          + (f"; {failed} failed (see above)" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _wav_name(uid: str) -> str:
    """`spk/utt.flac` -> `spk/utt.flac.wav`; ids that leave the folder are flattened."""
    parts = [p for p in uid.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    name = "/".join(parts) or "_"
    return name if name.lower().endswith(".wav") else name + ".wav"
