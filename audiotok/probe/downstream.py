"""Train a light head on one system's frozen features and score it on the test clips:
accuracy for speaker and label classification, character error rate (greedy CTC decoding)
for ASR.

    cfg = ProbeConfig(task="speaker", steps=300)
    result = fit_and_score(system, train_feats, train_targets, test_feats, test_targets, cfg)
    result.value        # accuracy in [0, 1] or CER

Everything random (initialisation, batches, crops, dropout) is drawn from `cfg.seed` inside a
forked RNG, so a run is repeatable and leaves the caller's random state alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor

from .features import System
from .heads import COMBINES, HEADS, CodeInput, FeatureInput, ProbeModel


@dataclass
class ProbeConfig:
    """task: speaker | label | ctc. head: lstm | tdnn (None: tdnn for classes, lstm for CTC,
    DASB's choices). combine: how token levels merge (attention | sum | concat). steps of
    AdamW at `lr` (cosine decay to a tenth), `batch_size` clips per step; classification
    trains on random `crop_seconds` excerpts and is scored on whole clips."""

    task: str
    head: str | None = None
    combine: str = "attention"
    dim: int = 128
    hidden: int = 128
    steps: int = 400
    batch_size: int = 16
    lr: float = 2e-3
    crop_seconds: float = 3.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.head is None:
            self.head = "lstm" if self.task == "ctc" else "tdnn"
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.task == "ctc" and self.head == "pool":
            raise ValueError("--head pool leaves no frames to align: --task ctc takes lstm "
                             "or tdnn")
        if self.combine not in COMBINES:
            raise ValueError(f"--combine must be one of {', '.join(COMBINES)}, got "
                             f"{self.combine!r}")
        for name in ("dim", "hidden", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class ProbeResult:
    system: dict
    metric: str                 # "accuracy" or "cer"
    value: float
    n_test: int
    loss_start: float           # mean training loss over the first and last tenth of steps
    loss_end: float
    skipped_train: int = 0      # CTC: clips with fewer frames than their transcript needs
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.system, "metric": self.metric, "value": self.value,
                "n_test": self.n_test, "loss_start": self.loss_start,
                "loss_end": self.loss_end, "skipped_train": self.skipped_train, **self.extra}


def fit_and_score(system: System, train_x: list[Tensor], train_y: list[str],
                  test_x: list[Tensor], test_y: list[str], cfg: ProbeConfig) -> ProbeResult:
    """Features per clip ([K, T] codes or [F, T] floats) and targets (classes, or normalised
    transcripts for CTC) -> the trained head's score on the test clips."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.task == "ctc":
            return _ctc(system, train_x, train_y, test_x, test_y, cfg)
        return _classify(system, train_x, train_y, test_x, test_y, cfg)


def _model(system: System, train_x: list[Tensor], n_out: int, cfg: ProbeConfig):
    if system.kind == "tokens":
        inp = CodeInput(system.codebook_sizes, cfg.dim, cfg.combine)
    else:
        inp = FeatureInput(train_x[0].shape[0], cfg.dim)
        inp.fit(train_x)
    return ProbeModel(inp, cfg.head, cfg.hidden, n_out, cfg.task == "ctc", cfg.dim
                      ).to(cfg.device)


def _batch(xs: list[Tensor], device: str) -> tuple[Tensor, Tensor]:
    """[C, T_i] each -> padded [B, C, T_max] and lengths [B]."""
    lengths = torch.tensor([x.shape[-1] for x in xs])
    out = xs[0].new_zeros(len(xs), xs[0].shape[0], int(lengths.max()))
    for i, x in enumerate(xs):
        out[i, :, :x.shape[-1]] = x
    return out.to(device), lengths.to(device)


def _crop(x: Tensor, frames: int, g: torch.Generator) -> Tensor:
    if x.shape[-1] <= frames:
        return x
    start = int(torch.randint(x.shape[-1] - frames + 1, (1,), generator=g))
    return x[:, start:start + frames]


def _train(model, n: int, loss_of, cfg: ProbeConfig) -> tuple[float, float]:
    """`cfg.steps` AdamW steps over shuffled batches of clip indices; returns the mean loss
    of the first and of the last tenth of the steps."""
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    order, losses = torch.zeros(0, dtype=torch.long), []
    model.train()
    for _ in range(cfg.steps):
        if len(order) < min(cfg.batch_size, n):
            order = torch.cat([order, torch.randperm(n, generator=g)])
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        loss = loss_of(idx.tolist(), g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    tenth = max(1, len(losses) // 10)
    return sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth


def _classify(system, train_x, train_y, test_x, test_y, cfg) -> ProbeResult:
    classes = sorted(set(train_y))
    index = {c: i for i, c in enumerate(classes)}
    y_train = torch.tensor([index[c] for c in train_y])
    model = _model(system, train_x, len(classes), cfg)
    crop = max(1, round(cfg.crop_seconds * system.frame_rate))

    def loss_of(idx: list[int], g) -> Tensor:
        x, lengths = _batch([_crop(train_x[i], crop, g) for i in idx], cfg.device)
        return F.cross_entropy(model(x, lengths), y_train[idx].to(cfg.device))

    start, end = _train(model, len(train_x), loss_of, cfg)
    predicted = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(test_x), cfg.batch_size):
            x, lengths = _batch(test_x[i:i + cfg.batch_size], cfg.device)
            predicted += model(x, lengths).argmax(-1).tolist()
    correct = sum(classes[p] == t for p, t in zip(predicted, test_y))
    return ProbeResult(system.describe(), "accuracy", correct / len(test_y), len(test_y),
                       start, end)


def ctc_frames_needed(labels: list[int]) -> int:
    """The fewest frames a CTC path for `labels` takes: one per label, plus a blank between
    each pair of equal neighbours."""
    return len(labels) + sum(a == b for a, b in pairwise(labels))


def _ctc(system, train_x, train_y, test_x, test_y, cfg) -> ProbeResult:
    from ..eval.text import errors, pooled_rates

    vocab = sorted({ch for text in train_y for ch in text})
    index = {ch: i + 1 for i, ch in enumerate(vocab)}             # 0 is the blank
    labels = [[index[ch] for ch in text] for text in train_y]
    keep = [i for i, x in enumerate(train_x) if x.shape[-1] >= ctc_frames_needed(labels[i])]
    if not keep:
        raise ValueError(f"{system.name}: no training clip has enough frames for its "
                         f"transcript at {system.frame_rate:g} frames/s")
    model = _model(system, [train_x[i] for i in keep], len(vocab) + 1, cfg)

    def loss_of(idx: list[int], g) -> Tensor:
        idx = [keep[i] for i in idx]
        x, lengths = _batch([train_x[i] for i in idx], cfg.device)
        targets = torch.cat([torch.tensor(labels[i]) for i in idx])
        target_lengths = torch.tensor([len(labels[i]) for i in idx])
        logp = model(x, lengths).transpose(0, 1)                  # [T, B, V]
        # summed over each clip's labels, averaged over clips (DASB's "batchmean")
        return F.ctc_loss(logp, targets, lengths, target_lengths, blank=0,
                          reduction="sum", zero_infinity=True) / len(idx)

    start, end = _train(model, len(keep), loss_of, cfg)
    hyps = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(test_x), cfg.batch_size):
            x, lengths = _batch(test_x[i:i + cfg.batch_size], cfg.device)
            best = model(x, lengths).argmax(-1).cpu()
            hyps += [greedy_decode(best[b, :int(lengths[b])], vocab) for b in range(len(best))]
    rates = pooled_rates([errors(ref, hyp) for ref, hyp in zip(test_y, hyps)])
    return ProbeResult(system.describe(), "cer", rates["cer"], len(test_y), start, end,
                       len(train_x) - len(keep), {"wer": rates["wer"],
                                                  "example": {"ref": test_y[0],
                                                              "hyp": hyps[0]}})


def greedy_decode(best: Tensor, vocab: list[str]) -> str:
    """Best path [T] (0 = blank) -> text: merge repeats, drop blanks (Graves et al. 2006)."""
    out, prev = [], 0
    for p in best.tolist():
        if p != prev and p != 0:
            out.append(vocab[p - 1])
        prev = p
    return " ".join("".join(out).split())
