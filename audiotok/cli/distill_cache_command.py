"""`audiotok distill-cache`: a recipe's SSL teacher features for its corpus (distill/cache.py),
read in training instead of running the teacher."""

from __future__ import annotations

from pathlib import Path

from ..codec_backend import check_device
from ..errors import AudiotokError
from .argtypes import positive_float


def add_distill_cache(sub) -> None:
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


def cmd_distill_cache(args) -> int:
    from ..data import build_items
    from ..distill.cache import write_cache
    from ..train import read_recipe

    check_device(args.device)
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
