"""Attention over layers: one vector per frame from the embeddings of several token streams.

The scalable vocoder of Mousavi et al. 2024 ("How Should We Extract Discrete Audio Tokens from
Self-Supervised Models?", Interspeech 2024): each SSL layer's k-means unit has an embedding, a
small MLP scores every layer's embedding at every frame, and a softmax over the layers weighs
their sum, which one vocoder turns into audio (SpeechBrain's `UnitHifiganGenerator`,
pooling_type "attention": Linear(E, attn_dim) -> ReLU -> Linear(attn_dim, 1, bias=False)):

    s[l, t] = w2 . relu(W1 e[l, t] + b1)      a[:, t] = softmax_l s[:, t]      out[t] = sum_l a[l, t] e[l, t]

Layer dropout (their vocoder recipe, SpeechBrain recipes/LibriTTS/vocoder/hifigan_discrete,
`layer_drop`) trains the vocoder on random subsets of the layers, so any subset decodes.
SpeechBrain replaces a dropped layer's token by a padding token whose learned embedding still
takes part in the softmax; here a dropped layer is left out of the softmax instead, so decoding
a subset is exactly the attention over the layers given.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerAttention(nn.Module):
    """e [B, L, T, D], keep bool [B, L] or None (all) -> (out [B, D, T], weights [B, L, T]);
    weights are 0 for the layers an item does not keep and sum to 1 over the others."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                   nn.Linear(hidden, 1, bias=False))

    def forward(self, e: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        scores = self.score(e).squeeze(-1)
        if keep is not None:
            scores = scores.masked_fill(~keep[:, :, None], float("-inf"))
        weights = scores.softmax(1)
        return torch.einsum("blt,bltd->bdt", weights, e), weights


def sample_kept_layers(batch: int, n_layers: int, p: float, device) -> Tensor:
    """Layer dropout: bool [B, L], every layer for most items; with probability p an item
    drops n ~ U{0..L-1} of its layers, chosen uniformly (SpeechBrain's draw), so it always
    keeps at least one."""
    n_drop = torch.randint(0, n_layers, (batch, 1), device=device)
    rank = torch.rand(batch, n_layers, device=device).argsort(1).argsort(1)  # random order
    keep = rank >= n_drop
    dropped = torch.rand(batch, 1, device=device) < p
    return keep | ~dropped
