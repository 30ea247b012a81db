"""Grouped spherical quantization: the latent is split into G groups, each l2-normalised and
replaced by the nearest codeword of one spherical codebook that all groups share (Wang et al.
2024, "Scaling Image Tokenizers with Grouped Spherical Quantization", sec. 3; public code:
HelmholtzAI-FZJ/flex_gen, flex_gen/quantizers/group_sphere_quantizer.py). Each group is one
token, so a frame gives G codes of the same vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import QUANTIZERS, Quantizer, QuantizerOutput, check_every_codebook
from .codebook import LearnedCodebook
from .codebook_usage import level_metrics
from .entropy import entropy_terms, frames_first
from .precision import full_precision
from .search import nearest
from .vq import check_code_rows, projection


@dataclass
class GSQConfig:
    """groups:          G, codes per frame (rows of the code tensor).
    codebook_size:   V, entries of the shared codebook.
    codebook_dim:    dims per group; null = latent dim / groups (no projections, as the
                     paper's G x d = latent dim); otherwise 1x1 convs map the latent to
                     G * codebook_dim dims and back.
    entropy_loss:    also return "gsq/entropy", MAGVIT-v2's entropy penalty (entropy.py) on
                     a softmax over the codebook by -inv_temperature * squared distance on
                     the sphere. flex_gen trains GSQ without it, relying on the spherical
                     codebook for usage; off by default.
    inv_temperature, diversity_gamma: as in LFQConfig, for that penalty.
    """

    groups: int = 4
    codebook_size: int = 1024
    codebook_dim: int | None = None
    entropy_loss: bool = False
    inv_temperature: float = 100.0
    diversity_gamma: float = 1.0

    def __post_init__(self):
        if self.groups < 1:
            raise ValueError(f"groups must be >= 1, got {self.groups}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"codebook_dim must be >= 1 or null, got {self.codebook_dim}")
        if not self.inv_temperature > 0:
            raise ValueError(f"inv_temperature must be > 0, got {self.inv_temperature}")
        if self.diversity_gamma < 0:
            raise ValueError(f"diversity_gamma must be >= 0, got {self.diversity_gamma}")


@QUANTIZERS.register("gsq", GSQConfig)
class GroupedSphericalQuantizer(Quantizer):
    """z [B, D, T] -> codes long [B, G, T] in [0, V): row g is the code of channel group g.

    Search and codewords are both on the unit sphere: the nearest l2(c) to l2(u_g) (the
    spherical lookup), and z_q holds l2(c) itself, so the decoder never sees a codeword's
    norm. (flex_gen hands on the raw codeword, which its codebook loss keeps near the sphere
    where it is initialised.) Losses: "gsq/codebook" ||l2(c) - sg(l2(u))||^2 trains the
    codebook, "gsq/commit" ||l2(u) - sg(l2(c))||^2 the encoder (flex_gen's weights 1 and
    0.25), and with `entropy_loss` "gsq/entropy".
    """

    type_name = "gsq"

    def __init__(self, cfg: GSQConfig, dim: int):
        super().__init__()
        if cfg.codebook_dim is None and dim % cfg.groups:
            raise ValueError(f"latent dim {dim} is not divisible by groups={cfg.groups} "
                             f"(or set codebook_dim to project)")
        self.cfg = cfg
        self.dim = dim
        self.group_dim = cfg.codebook_dim or dim // cfg.groups
        width = cfg.groups * self.group_dim
        self.in_proj = projection(dim, width, normed=False)
        self.out_proj = projection(width, dim, normed=False)
        self.codebook = LearnedCodebook(cfg.codebook_size, self.group_dim)
        with torch.no_grad():  # spherical initialisation (GSQ sec. 3; flex_gen init_codebook)
            self.codebook.weight.copy_(F.normalize(self.codebook.weight, dim=1))
        self.codebook_sizes = [cfg.codebook_size] * cfg.groups

    @property
    def loss_weights(self) -> dict[str, float]:
        weights = {"gsq/codebook": 1.0, "gsq/commit": 0.25}
        if self.cfg.entropy_loss:  # MAGVIT-v2's weight for the same penalty
            weights["gsq/entropy"] = 0.1
        return weights

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.codebook.weight.dtype

    def check_n_codebooks(self, n_codebooks: int | None) -> int:
        return check_every_codebook(n_codebooks, self.n_codebooks, self.type_name)

    def groups_on_sphere(self, z: Tensor) -> Tensor:
        """z [B, D, T] -> l2(u) [B, G, d, T], each group a unit vector."""
        u = self.in_proj(z)
        # reshape with the sizes read from u, not unflatten: ONNX export keeps them dynamic
        u = u.reshape(u.shape[0], self.cfg.groups, self.group_dim, u.shape[-1])
        return F.normalize(u, dim=2)

    def search(self, u: Tensor) -> Tensor:
        """u [B, G, d, T] on the sphere -> codes long [B, G, T], by cosine similarity."""
        b, g, d, t = u.shape
        rows = u.detach().permute(0, 1, 3, 2).reshape(-1, d)
        return nearest(rows, self.codebook.weight.detach(), normalize=True).view(b, g, t)

    def codewords(self, codes: Tensor) -> Tensor:
        """codes long [B, G, T] -> l2(c) [B, G, d, T] (differentiable in the codebook)."""
        c = F.normalize(F.embedding(codes.long(), self.codebook.weight), dim=-1)
        return c.permute(0, 1, 3, 2)

    def entropy(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(per-sample, codebook) entropy of softmax(-inv_temperature * ||u - l2(c)||^2) over
        the codebook, per group; ||u - c||^2 = 2 - 2 u.c on the sphere."""
        cosine = torch.einsum("bgdt,vd->bgvt", u, F.normalize(self.codebook.weight, dim=1))
        logits = 2 * self.cfg.inv_temperature * cosine
        return entropy_terms(frames_first(logits).log_softmax(-1))

    @full_precision
    def forward(self, z: Tensor, n_codebooks: int | None = None) -> QuantizerOutput:
        """z [B, D, T] -> z_q [B, D, T], codes long [B, G, T], codebook/commit (+ entropy)."""
        self.check_n_codebooks(n_codebooks)
        u = self.groups_on_sphere(z)
        codes = self.search(u)
        c = self.codewords(codes)
        # straight-through estimator, as flex_gen: x + (x_quant - x).detach()
        z_q = self.out_proj((u + (c - u).detach()).flatten(1, 2))
        losses = {"gsq/codebook": F.mse_loss(c, u.detach()),
                  "gsq/commit": F.mse_loss(u, c.detach())}
        metrics = level_metrics(codes, self.codebook_sizes)
        if self.cfg.entropy_loss:
            sample, codebook = self.entropy(u)
            losses["gsq/entropy"] = sample - self.cfg.diversity_gamma * codebook
            metrics.update({"gsq/sample_entropy": sample.detach(),
                            "gsq/codebook_entropy": codebook.detach()})
        return QuantizerOutput(z_q, codes, losses, metrics)

    @torch.no_grad()
    @full_precision
    def encode(self, z: Tensor, n_codebooks: int | None = None) -> Tensor:
        """z [B, D, T] -> codes long [B, G, T]."""
        self.check_n_codebooks(n_codebooks)
        return self.search(self.groups_on_sphere(z))

    @full_precision
    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, G, T] (all G groups) -> z_q [B, D, T]."""
        self.check_n_codebooks(check_code_rows(codes, self.n_codebooks))
        return self.out_proj(self.codewords(codes).flatten(1, 2))
