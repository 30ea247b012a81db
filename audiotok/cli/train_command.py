"""`audiotok train`: train a codec from a recipe (audiotok/train)."""

from __future__ import annotations

from pathlib import Path


def add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a codec from a recipe (resumes where it stopped)",
        description="Train a codec from a YAML recipe. Running the same command again resumes "
        "from the last checkpoint in the run directory. Multi-GPU: torchrun "
        "--nproc_per_node=N -m audiotok train RECIPE.")
    p.add_argument("recipe", type=Path, help="a recipe .yaml: recipes/tiny_speech_16k.yaml, "
                   "recipes/designs/*.yaml (published designs), recipes/speech_16k/*.yaml "
                   "(the bundled model's stages), recipes/finetune/*.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set data.train=/data/speech "
                   "--set train.steps=2000 (repeatable)")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from ..train import train

    return train(args.recipe, args.overrides)
