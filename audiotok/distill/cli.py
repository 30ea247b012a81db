"""`audiotok distill-cache` (teacher features for a recipe's corpus) and `audiotok kmeans`
(SSL k-means units)."""

from __future__ import annotations

from pathlib import Path

from ..argtypes import nonneg_int, positive_float, positive_int
from ..errors import AudiotokError


def add_distill(sub) -> None:
    p = sub.add_parser(
        "distill-cache", help="compute a recipe's SSL teacher features for its corpus",
        description="Run each ssl teacher of RECIPE's distill section over every file of its "
        "data (train and validation) and store the features in OUT/<head>/, to be read "
        "instead of running the teacher: --set distill.heads.<head>.teacher.cache=OUT/<head>")
    p.add_argument("recipe", help="recipe .yaml with a distill section")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="cache folder")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    p.add_argument("--head", default=None, help="only this head (default: every ssl head)")
    p.add_argument("--device", default="cpu", help="torch device for the teacher")
    p.add_argument("--chunk-seconds", type=positive_float, default=30.0,
                   help="teacher input per call on long files (default 30)")
    p.set_defaults(func=cmd_distill_cache)

    p = sub.add_parser(
        "kmeans", help="fit k-means units on an SSL model's layer over a corpus",
        description="Mini-batch k-means (bounded memory) on the frame features of a "
        "HuBERT / WavLM / wav2vec 2.0 layer; the units file feeds the ssl_kmeans codec.")
    p.add_argument("--teacher", required=True, help="SSL model: local directory or hub id")
    p.add_argument("--data", required=True, help="folder of audio files or .jsonl manifest")
    p.add_argument("-k", type=positive_int, default=500, help="number of units (default 500)")
    p.add_argument("-o", "--output", required=True, help="units file (.safetensors)")
    p.add_argument("--layers", default="", metavar="I[,I...]",
                   help="hidden states to average (0 = embeddings; default: every layer)")
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


def cmd_distill_cache(args) -> int:
    from ..commands import _check_device
    from ..data import build_items
    from ..train import read_recipe
    from .cache import write_cache

    _check_device(args.device)
    recipe = read_recipe(args.recipe, args.overrides)
    if recipe.distill is None:
        raise AudiotokError(f"{args.recipe}: recipe has no distill section")
    heads = {n: h for n, h in recipe.distill.heads.items() if h.teacher.type == "ssl"
             and args.head in (None, n)}
    if not heads:
        raise AudiotokError(f"{args.recipe}: no ssl teacher head"
                            + (f" named '{args.head}'" if args.head else ""))
    splits = build_items(recipe.data)
    for name, head in heads.items():
        out = Path(args.output) / name
        write_cache(head.teacher, splits.train + splits.val, out, recipe.data.loudness_db,
                    args.device, args.chunk_seconds)
        print(f"{name}: features of {len(splits.train) + len(splits.val)} files in {out}; "
              f"train with --set distill.heads.{name}.teacher.cache={out}")
    return 0


def cmd_kmeans(args) -> int:
    from ..commands import _check_device
    from ..data import index_files
    from .config import TeacherConfig
    from .kmeans import fit_units

    _check_device(args.device)
    for flag in ("batch_frames", "epochs", "max_files"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise AudiotokError(f"--{flag.replace('_', '-')} must be at least 1")
    try:
        layers = [int(x) for x in args.layers.split(",") if x.strip()]
    except ValueError:
        raise AudiotokError(f"--layers: expected integers like 6 or 3,4,5, got "
                            f"'{args.layers}'") from None
    cfg = TeacherConfig(type="ssl", path=args.teacher, layers=layers,
                        sample_rate=args.sample_rate, normalize=args.normalize)
    items = index_files(args.data).items[: args.max_files]
    out = fit_units(cfg, items, args.k, args.output, args.batch_frames, args.epochs,
                    args.device, args.seed)
    print(f"{args.k} units on {len(items)} files written to {out}")
    return 0
