"""`audiotok kmeans`: k-means units on SSL model layers over a corpus (distill/ssl_units.py), the
units file of the ssl_kmeans codec and of `audiotok eval --probe-units`."""

from __future__ import annotations

from ..codec_backend import check_device
from ..errors import AudiotokError
from .argtypes import nonneg_int, positive_int


def add_kmeans(sub) -> None:
    p = sub.add_parser(
        "kmeans", help="fit k-means units on SSL model layers over a corpus",
        description="Mini-batch k-means (bounded memory) on the frame features of a "
        "HuBERT / WavLM / wav2vec 2.0 layer, or one k-means per layer for several layers at "
        "once (--layers 3,7,12: one token stream per layer); the units file feeds the "
        "ssl_kmeans codec.")
    p.add_argument("--teacher", required=True, help="SSL model: local directory or hub id")
    p.add_argument("--data", required=True, help="folder of audio files or .jsonl manifest")
    p.add_argument("-k", type=positive_int, default=500, help="number of units (default 500)")
    p.add_argument("-o", "--output", required=True, help="units file (.safetensors)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--layers", default=None, metavar="I[,I...]",
                       help="hidden states, one k-means each (0 = embeddings): 6 is one "
                       "stream, 3,7,12 three; join with + to average into one stream "
                       "(3+4+5); default: one stream averaging every layer")
    which.add_argument("--layer", type=nonneg_int, default=None, metavar="I",
                       help="one hidden state (the same as --layers I)")
    p.add_argument("--sample-rate", type=positive_int, default=16000, help="the model's input rate")
    p.add_argument("--normalize", action="store_true",
                   help="zero-mean unit-variance input (WavLM-Large, wav2vec2-large-lv60)")
    p.add_argument("--batch-frames", type=positive_int, default=20000,
                   help="frames per mini-batch (memory bound; default 20000)")
    p.add_argument("--epochs", type=positive_int, default=1, help="passes over the corpus")
    p.add_argument("--max-files", type=positive_int, default=None,
                   help="use only the first N files")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--device", default="cpu", help="torch device for the SSL model")
    p.set_defaults(func=cmd_kmeans)


def cmd_kmeans(args) -> int:
    from ..data import index_files
    from ..distill.distill_config import TeacherConfig
    from ..distill.ssl_units import fit_units

    check_device(args.device)
    for flag in ("batch_frames", "epochs", "max_files"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise AudiotokError(f"--{flag.replace('_', '-')} must be at least 1")
    streams = [[args.layer]] if args.layer is not None else parse_layers(args.layers)
    # one stream is the single-layer units file ([K, D]) it always was
    cfg = TeacherConfig(type="ssl", path=args.teacher,
                        layers=streams[0] if len(streams) == 1 else [],
                        sample_rate=args.sample_rate, normalize=args.normalize)
    items = index_files(args.data).items[: args.max_files]
    out = fit_units(cfg, items, args.k, args.output, args.batch_frames, args.epochs,
                    args.device, args.seed, streams=streams if len(streams) > 1 else None)
    what = f"{len(streams)} layers x {args.k} units" if len(streams) > 1 else f"{args.k} units"
    print(f"{what} on {len(items)} files written to {out}")
    return 0


def parse_layers(text: str | None) -> list[list[int]]:
    """`--layers` -> the hidden states of each stream: None -> [[]] (every layer averaged),
    "3,7,12" -> [[3], [7], [12]], "3+4+5,12" -> [[3, 4, 5], [12]]."""
    from ..distill.teachers import layer_streams

    if text is None:
        return [[]]
    try:
        spec = [[int(i) for i in part.split("+")] for part in text.split(",")]
    except ValueError:
        raise AudiotokError(f"--layers: expected integers like 6, 3,7,12 or 3+4+5, got "
                            f"'{text}'") from None
    try:
        return layer_streams(spec, "--layers")
    except ValueError as e:
        raise AudiotokError(str(e)) from None
