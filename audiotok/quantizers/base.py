"""The quantizer contract shared by every quantizer type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..registry import Component, Registry


@dataclass
class QuantizerOutput:
    """Result of `Quantizer.forward`.

    z_q:     float [B, D, T]  quantized latents (straight-through: gradients reach the input)
    codes:   long  [B, K, T]  integer codes, one row per codebook level
    losses:  named scalar losses to be weighted by a recipe ("vq/commit", "vq/codebook", ...)
    metrics: named scalars for logging only ("vq/usage/0", "vq/perplexity/0", ...)
    semantic: float [B, D, T] the part of z_q that distillation heads read: the semantic
              levels of a split RVQ, level 0 of a residual VQ; None for the others
    active:   long [B] how many of the leading code rows each item's z_q sums (quantizer
              dropout in training); None when every item uses all rows of `codes`
    """

    z_q: Tensor
    codes: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)
    semantic: Tensor | None = None
    active: Tensor | None = None


class Quantizer(nn.Module, Component):
    """Maps latents [B, D, T] to codes [B, K, T] and back.

    Subclasses set `dim` (input/output latent channels) and `codebook_sizes` (one entry per
    level K; levels may differ in size). `n_codebooks` may be lowered at encode time to trade
    bitrate for quality where the quantizer supports it (residual quantizers).
    """

    dim: int
    codebook_sizes: list[int]
    # frames coded as one group (multi-scale levels pooled over `level_strides`): the codec
    # pads inputs to, and cuts chunks at, multiples of it
    frame_multiple: int = 1
    # multi-rate (multiscale_rvq, parallel): the instance sets `level_strides`, the frames
    # each level's code spans, one entry per level; single-rate quantizers have no such
    # attribute (every level codes every frame)
    multi_rate: ClassVar[bool] = False

    # Set by `hold_state` (a post-training that fine-tunes the decoder alone): training mode
    # keeps its quantizer dropout, but codebooks, usage counts and k-means state stay as
    # they are, so the codes of the frozen encoder never change.
    state_held: bool = False

    @property
    def updates_state(self) -> bool:
        """Whether a forward pass may update codebooks and usage (training, state not held)."""
        return self.training and not self.state_held

    def check_encoder(self, encoder: nn.Module) -> None:
        """ConfigError unless the built encoder gives what this quantizer codes (the
        k-means of ssl_kmeans: one stream per k-means); most quantizers take any."""

    @property
    def n_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def loss_weights(self) -> dict[str, float]:
        """The losses this quantizer returns besides "vq/commit" and "vq/codebook", with the
        weights its paper trains them at; the trainer applies these where a recipe's
        `losses.weights` does not name the loss (lfq.py, bsq.py, gsq.py)."""
        return {}

    def check_n_codebooks(self, n_codebooks: int | None) -> int:
        """Resolve `n_codebooks` (None = all) and check it against what this quantizer has."""
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(
                f"n_codebooks must be between 1 and {self.n_codebooks}, got {n_codebooks}"
            )
        return n

    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, K, T] (deterministic, no state updates)."""
        raise NotImplementedError

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, K, T] with K <= n_codebooks -> z_q [B, D, T]."""
        raise NotImplementedError

    def code_vectors(self) -> list[Tensor]:
        """Per code row k, float [codebook_sizes[k], C_k]: the vectors its codes stand for,
        in the space the search compares them (l2-normalised where it searches by cosine);
        "near" token perturbation (quantizers/perturb.py) draws neighbours there."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its code vectors")


def hold_state(quantizer: Quantizer) -> None:
    """Freeze the codebook state of `quantizer` and every quantizer inside it (see
    `Quantizer.state_held`); its parameters' requires_grad is the caller's business."""
    for module in quantizer.modules():
        if isinstance(module, Quantizer):
            module.state_held = True

# every module of these packages is imported on the first lookup; codec families may bring
# a quantizer of their own (ssl_kmeans' k-means, BEATs' projections)
QUANTIZERS = Registry("quantizer", packages=("audiotok.quantizers", "audiotok.codecs"),
                      contract=Quantizer)


def check_every_codebook(n_codebooks: int | None, total: int, type_name: str) -> int:
    """`check_n_codebooks` of quantizers whose K codebooks are parallel parts of one code
    (bit groups, channel groups) rather than coarse-to-fine levels: only all K (or None)."""
    if n_codebooks is not None and int(n_codebooks) != total:
        raise ValueError(f"n_codebooks must be {total} for the {type_name} quantizer: its "
                         f"{total} codebooks code parallel parts of each frame, not "
                         f"coarse-to-fine levels, so none can be left out (got {n_codebooks})")
    return total


def encodable_counts(quantizer) -> list[int]:
    """The codebook counts k in 1..K that `quantizer.check_n_codebooks` accepts (any object
    with `codebook_sizes` and that method: an ONNX codec's levels too)."""
    counts = []
    for k in range(1, len(quantizer.codebook_sizes) + 1):
        try:
            quantizer.check_n_codebooks(k)
        except ValueError:
            continue
        counts.append(k)
    return counts
