"""The light downstream models of the probes: an input layer (token embeddings or a projection
of continuous features), a small encoder (BiLSTM or TDNN), and an output (pooled classes or
per-frame CTC logits).

After DASB (Mousavi et al. 2024, "DASB - Discrete Audio and Speech Benchmark"; the benchmark's
public code, speechbrain/benchmarks `benchmarks/DASB/model/custom_model.py`): every
(level, code) pair has its own learned embedding (`Discrete_EmbeddingLayer`: one table of
K x V rows), and an MLP scores each level's embedding per frame, softmax over the levels,
to weight their sum (`AttentionMLP`); ASR runs a 2-layer BiLSTM with a linear CTC layer on
top, classification tasks an x-vector / ECAPA-style TDNN with statistics pooling. The widths
here are much smaller than DASB's (1024): these are probes to compare tokenizers with, not
recognisers.

    model = ProbeModel(CodeInput([1024] * 8, 128, "attention"), "tdnn", 128, n_out=10,
                       ctc=False)
    logits = model(codes, lengths)        # codes [B, K, T] -> [B, n_out]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..lm import level_offsets

COMBINES = ("attention", "sum", "concat")
HEADS = ("lstm", "tdnn", "pool")


class CodeInput(nn.Module):
    """codes long [B, K, T] -> [B, T, D]: per-level embeddings combined over the levels by
    DASB's attention (softmax-weighted sum), a plain sum, or a projection of their
    concatenation."""

    def __init__(self, codebook_sizes: list[int], dim: int, combine: str = "attention"):
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
        self.combine = combine
        self.register_buffer("offsets", torch.tensor(level_offsets(codebook_sizes)),
                             persistent=False)
        self.table = nn.Embedding(sum(codebook_sizes), dim)
        k = len(codebook_sizes)
        if combine == "attention":
            self.score = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(),
                                       nn.Linear(dim, 1, bias=False))
        elif combine == "concat":
            self.proj = nn.Linear(k * dim, dim)

    def forward(self, codes: Tensor) -> Tensor:
        e = self.table(codes + self.offsets[:, None]).transpose(1, 2)      # [B, T, K, D]
        if self.combine == "attention":
            return (self.score(e).softmax(dim=2) * e).sum(2)
        if self.combine == "sum":
            return e.sum(2)
        return self.proj(e.flatten(2))


class FeatureInput(nn.Module):
    """Continuous features [B, F, T] -> [B, T, D]: standardised with the training set's
    per-band mean and deviation (`fit`), then a linear layer."""

    def __init__(self, n_features: int, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.proj = nn.Linear(n_features, dim)

    def fit(self, features: list[Tensor]) -> None:
        x = torch.cat(features, -1).float()
        self.mean.copy_(x.mean(-1))
        self.std.copy_(x.std(-1).clamp(min=1e-3))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj((x.transpose(1, 2) - self.mean) / self.std)


class LSTMEncoder(nn.Module):
    """[B, T, D] -> [B, T, 2H]: DASB's ASR head (2 bidirectional layers)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True,
                            dropout=dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        y, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(y, batch_first=True,
                                                total_length=x.shape[1])[0]


class TDNNEncoder(nn.Module):
    """[B, T, D] -> [B, T, H]: three dilated 1-D convolutions (kernel 5, dilation 1, 2, 3), as
    the frame layers of an x-vector (Snyder et al. 2018) at probe width. Frames past an item's
    length are zeroed before every convolution, so an item scores the same alone or padded
    in a batch."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        blocks, width = [], dim
        for dilation in (1, 2, 3):
            blocks.append(nn.Sequential(
                nn.Conv1d(width, hidden, 5, dilation=dilation, padding=2 * dilation),
                nn.ReLU(), nn.BatchNorm1d(hidden), nn.Dropout(dropout)))
            width = hidden
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = hidden

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        mask = _mask(lengths, x.shape[1])[:, None].to(x.dtype)            # [B, 1, T]
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(h * mask)
        return h.transpose(1, 2)


class NoEncoder(nn.Module):
    """[B, T, D] as it is: with statistics pooling and a linear layer, DASB's "time-pooling
    + linear" head, the lightest (a bag of embedded tokens for codes)."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.out_dim = dim

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return x


def _mask(lengths: Tensor, t: int) -> Tensor:
    return torch.arange(t, device=lengths.device)[None] < lengths[:, None]


def stats_pool(x: Tensor, lengths: Tensor) -> Tensor:
    """[B, T, H] -> [B, 2H]: mean and standard deviation over each item's valid frames."""
    m = _mask(lengths, x.shape[1])[..., None].to(x.dtype)
    n = m.sum(1).clamp(min=1)
    mean = (x * m).sum(1) / n
    var = ((x - mean[:, None]) ** 2 * m).sum(1) / n
    return torch.cat([mean, (var + 1e-5).sqrt()], -1)


class ProbeModel(nn.Module):
    """input -> encoder -> classes [B, n_out] (statistics pooling) or, with `ctc`, per-frame
    log-probabilities [B, T, n_out] (index 0 is the CTC blank)."""

    def __init__(self, inp: nn.Module, head: str, hidden: int, n_out: int, ctc: bool,
                 dim: int, dropout: float = 0.15):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.inp, self.ctc = inp, ctc
        if ctc and head == "pool":
            raise ValueError("head 'pool' has no frames left to align: CTC takes lstm or tdnn")
        encoder = {"lstm": LSTMEncoder, "tdnn": TDNNEncoder, "pool": NoEncoder}[head]
        self.encoder = encoder(dim, hidden, dropout)
        width = self.encoder.out_dim
        self.out = nn.Sequential(nn.Dropout(dropout),
                                 nn.Linear(width if ctc else 2 * width, n_out))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = self.encoder(self.inp(x), lengths)
        if self.ctc:
            return F.log_softmax(self.out(h), -1)
        return self.out(stats_pool(h, lengths))
