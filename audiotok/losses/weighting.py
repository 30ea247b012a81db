"""Binding recipe weights to named losses ("mel", "adv/gen", "vq/commit").

The rule, shared by `weighted_sum` and `LossBalancer`:
  - a weight whose name no loss produces is an error naming the closest loss (a typo in a
    recipe must not silently drop a loss);
  - a produced loss without a weight gets weight 0: it is logged, never backpropagated;
  - a loss with weight 0 is skipped entirely (so a NaN in a logged-only loss cannot leak).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, did_you_mean


def check_weights(weights: dict[str, float], names) -> None:
    """Raise ConfigError (a ValueError) for a weight that names no loss in `names`. A zero
    weight is allowed to name none: it switches off a loss that an overlay removed the part
    of (`--set distill=null --set losses.weights.distill/wavlm/cosine=0`)."""
    names = list(names)
    for key, weight in weights.items():
        if key not in names and weight != 0:
            raise ConfigError(f"loss weight '{key}' names no loss{did_you_mean(key, names)}; "
                              f"the losses are: {', '.join(sorted(names)) or 'none'}")


def active(losses: dict[str, Tensor], weights: dict[str, float]) -> dict[str, float]:
    """The {name: weight} of the losses that take part in the backward (non-zero weight)."""
    check_weights(weights, losses)
    return {name: float(weights[name]) for name in losses if weights.get(name, 0.0) != 0.0}


def weighted_sum(losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_i weights[i] * losses[i] over the losses with a non-zero weight -> scalar.

    Returns a zero scalar (on the losses' device) when no loss is weighted."""
    terms = [w * losses[name] for name, w in active(losses, weights).items()]
    if terms:
        return sum(terms[1:], terms[0])
    device = next(iter(losses.values())).device if losses else None
    return torch.zeros((), device=device)
