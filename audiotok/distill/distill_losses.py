"""Distillation losses between a student's projected features and a teacher's, both [B, T, D].

d_axis and t_axis are SpeechTokenizer's (Zhang et al. 2024, "SpeechTokenizer: Unified Speech
Tokenizer for Speech Language Models", ICLR, sec. 3.3, after DistilHuBERT's log-sigmoid cosine
term), written as in its public trainer:

    d_axis = -1/D sum_d log sigmoid(cos(A q[:, d], s[:, d]))       cosine along TIME, per dim
    t_axis = L1(A q, s) - 1/T sum_t log sigmoid(cos(A q[t], s[t]))  cosine along D, per frame

The paper found the D-axis form better for content (it asks each feature dimension to follow the
teacher's trajectory over the utterance). Note -log sigmoid(1) = 0.313 is the floor of both
log-sigmoid terms. `cosine` is Mimi's plain cosine distance per frame (Défossez et al. 2024,
sec. 3.3), `mse` the squared error.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def d_axis_loss(pred: Tensor, target: Tensor) -> Tensor:
    """pred, target [B, T, D] -> scalar: -mean log sigmoid(cosine over time, per dimension)."""
    return -F.logsigmoid(F.cosine_similarity(pred, target, dim=1)).mean()


def t_axis_loss(pred: Tensor, target: Tensor) -> Tensor:
    """pred, target [B, T, D] -> scalar: L1 + -mean log sigmoid(cosine over D, per frame)."""
    return F.l1_loss(pred, target) - F.logsigmoid(F.cosine_similarity(pred, target, dim=-1)).mean()


def cosine_loss(pred: Tensor, target: Tensor) -> Tensor:
    """pred, target [B, T, D] -> scalar: mean over frames of 1 - cos(pred_t, target_t)."""
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(pred, target)


LOSSES = {"cosine": cosine_loss, "d_axis": d_axis_loss, "t_axis": t_axis_loss, "mse": mse_loss}
