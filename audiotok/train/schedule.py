"""Learning-rate schedule: linear warmup, then exponential, cosine or constant."""

from __future__ import annotations

import math

from .recipe_config import OptimConfig


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier on the base learning rate at optimiser step `step` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    after = step - cfg.warmup_steps
    if cfg.schedule == "exponential":
        return cfg.gamma ** after
    if cfg.schedule == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        cos = 0.5 * (1 + math.cos(math.pi * min(after, span) / span))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos
    return 1.0
