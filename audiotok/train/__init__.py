"""Training codecs from recipes: `audiotok train RECIPE [--set key=value ...]`."""

from __future__ import annotations

from .recipe_config import Recipe, read_recipe


def train(recipe_path, overrides: list[str] | None = None) -> int:
    """Run (or resume) the recipe; returns a process exit code."""
    from ..beats import is_beats_recipe, train_beats
    from ..recipe import apply_overrides, load_recipe
    from .distributed import cleanup
    from .trainer import Trainer

    if is_beats_recipe(apply_overrides(load_recipe(recipe_path), overrides or [])):
        return train_beats(recipe_path, overrides)  # its own trainer (beats/trainer.py)
    recipe = read_recipe(recipe_path, overrides)
    try:
        return Trainer(recipe).fit()
    finally:
        cleanup()


__all__ = ["Recipe", "read_recipe", "train"]
