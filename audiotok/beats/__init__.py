"""BEATs (Chen et al. 2022): iterative pre-training of an acoustic tokenizer and an audio SSL
model. Recipes with a `beats:` section run here (`audiotok train` dispatches them);
the tokenizers are codecs of the `beats` family (codecs/beats.py)."""

from __future__ import annotations

from .beats_recipe import BEATsRecipe, is_beats_recipe, read_beats_recipe


def train_beats(recipe_path, overrides: list[str] | None = None) -> int:
    """Run (or resume) one BEATs stage; returns a process exit code."""
    from ..train.distributed import cleanup
    from .trainer import BEATsTrainer

    recipe = read_beats_recipe(recipe_path, overrides)
    try:
        return BEATsTrainer(recipe).fit()
    finally:
        cleanup()


__all__ = ["BEATsRecipe", "is_beats_recipe", "read_beats_recipe", "train_beats"]
