"""`train.perturb`: latent perturbation in training, so the decoder learns to make sense of the
wrong tokens a language model will hand it (RobusTok, Qiu et al. 2025, sec. 3.2; the
mechanics are in quantizers/perturb.py).

    train:
      perturb: {rate: 0.1, mode: near, neighbours: 16, warmup_steps: 500}

The schedule, as a factor on `rate` at each step:
  - 0 before `start_step` (a codebook still being placed has no meaningful neighbours);
  - then a linear ramp from 0 to 1 over `warmup_steps` (ours; 0 = none);
  - RobusTok's annealing: 1 until `anneal_start`, linear down to `end_ratio` at `anneal_end`,
    `end_ratio` after. Their `get_random_ratio` (tokenizer/tokenizer_image/xqgan_train.py)
    scales alpha and delta by it per epoch (main training: anneal over epochs 40-120 of 200,
    end_ratio 0.5, alpha 1.0, beta 0.1, delta 100 of 4096 codes); `neighbours` is scaled
    the same way here, per step. (Their ramp reaches 1 - end_ratio at `anneal_end` and then
    jumps to end_ratio, which agree only at their default 0.5; this one ends at end_ratio.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..quantizers.perturb import MODES, Perturbation


@dataclass
class PerturbConfig:
    """rate, mode, neighbours, items, levels: see `Perturbation`; start_step, warmup_steps,
    anneal_start, anneal_end, end_ratio: the schedule above (steps are optimiser steps)."""

    rate: float = 0.1
    mode: str = "near"
    neighbours: int = 16
    items: float = 1.0
    levels: list[int] = field(default_factory=list)
    start_step: int = 0
    warmup_steps: int = 0
    anneal_start: int | None = None
    anneal_end: int | None = None
    end_ratio: float = 1.0

    def __post_init__(self):
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")
        if not 0.0 < self.items <= 1.0:
            raise ValueError(f"items must be in (0, 1], got {self.items}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {self.neighbours}")
        for name in ("start_step", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(level < 0 for level in self.levels):
            raise ValueError(f"levels must be row indices >= 0, got {self.levels}")
        if (self.anneal_start is None) != (self.anneal_end is None):
            raise ValueError("anneal_start and anneal_end go together: set both or neither")
        if self.anneal_start is not None and not 0 <= self.anneal_start < self.anneal_end:
            raise ValueError(f"anneal_start must be >= 0 and below anneal_end, got "
                             f"{self.anneal_start} and {self.anneal_end}")
        if not 0.0 <= self.end_ratio <= 1.0:
            raise ValueError(f"end_ratio must be in [0, 1], got {self.end_ratio}")

    def anneal(self, step: int) -> float:
        """RobusTok's ratio at `step`: 1, then linear down to end_ratio, then end_ratio."""
        if self.anneal_start is None or step <= self.anneal_start:
            return 1.0
        if step >= self.anneal_end:
            return self.end_ratio
        done = (step - self.anneal_start) / (self.anneal_end - self.anneal_start)
        return 1.0 - done * (1.0 - self.end_ratio)

    def ramp(self, step: int) -> float:
        """0 before start_step, then linear up to 1 over warmup_steps."""
        if step < self.start_step:
            return 0.0
        if not self.warmup_steps:
            return 1.0
        return min(1.0, (step - self.start_step + 1) / self.warmup_steps)

    def at(self, step: int) -> Perturbation | None:
        """The perturbation of optimiser step `step` (0-based); None where its rate is 0."""
        ratio = self.anneal(step)
        rate = self.rate * ratio * self.ramp(step)
        if rate <= 0:
            return None
        return Perturbation(rate=rate, mode=self.mode,
                            neighbours=max(1, round(self.neighbours * ratio)),
                            items=self.items, levels=tuple(self.levels))


def check_perturbable(cfg: PerturbConfig | None, quantizer) -> None:
    """ConfigError, one line, when near codes are asked of a quantizer without code vectors
    (lookup-free and binary codes, whose implicit codebooks are too large to search)."""
    if cfg is None or cfg.mode != "near":
        return
    try:
        quantizer.code_vectors()
    except NotImplementedError as e:
        raise ConfigError(f"train.perturb.mode near: {e}; use mode: random") from None
