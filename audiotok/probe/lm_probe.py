"""LM probe: how predictable a tokenized corpus is to a small causal transformer, per token
layout, as held-out cross-entropy in bits per second of audio.

"Discrete Audio Tokens: More Than a Survey!" (Mousavi et al. 2025) compares tokenizers by
the acoustic language models trained on them; this is the cheap version of that: one small
model per layout (`lm_layouts`), trained on most utterances of `audiotok tokenize` shards and
scored on the rest (held out by utterance id, by a hash that depends on the seed only).
Bits per second = the summed cross-entropy of every held-out code, in bits, over the held-out
audio's duration (frames / frame rate): per token x tokens per second, summed over levels,
whatever the layout's step order. Beside it the context-free figures: the nominal bitrate
(log2 of the codebook sizes), the eval's plug-in unigram and bigram entropies of the held-out
codes (`eval/token_stats.py`, biased low on small sets), and the cross-entropy of a unigram
model counted on the training codes (add-one), the honest context-free bar an LM must pass.

    result = lm_probe("tokens/", LMProbeConfig(layouts=["flatten", "delay"]))
    result["layouts"]["delay"]["bits_per_second"]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import AudiotokError
from ..modules.transformer import CausalTransformer, TransformerConfig
from .lm_layouts import LAYOUTS, InputIds, Stream, default_groups, layout_streams


@dataclass
class LMProbeConfig:
    """layouts to train (one model each, one per group for "group"); groups: level counts of
    the "group" layout (default: 1, then the rest). A model of `layers` x `dim` with `heads`
    attends over windows of `context` steps; `steps` AdamW steps of `batch_size` windows.
    `held_out`: fraction of utterances scored, chosen by hashing "seed:id"."""

    layouts: list[str] = field(default_factory=lambda: list(LAYOUTS))
    groups: list[int] | None = None
    dim: int = 128
    layers: int = 2
    heads: int = 4
    context: int = 256
    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    held_out: float = 0.1
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        bad = [x for x in self.layouts if x not in LAYOUTS]
        if bad or not self.layouts:
            raise ValueError(f"--layouts: unknown layout {bad[0] if bad else '(none)'!r} "
                             f"(use {', '.join(LAYOUTS)})")
        if not 0 < self.held_out < 1:
            raise ValueError(f"--held-out must be between 0 and 1, got {self.held_out}")
        TransformerConfig(dim=self.dim, layers=self.layers, heads=self.heads,
                          dim_feedforward=4 * self.dim, context=self.context)


class TokenLM(nn.Module):
    """Summed input embeddings [B, S, J] -> per-level log-probabilities, one output head per
    level: a list of [B, S, size_k]."""

    def __init__(self, ids: InputIds, cfg: LMProbeConfig):
        super().__init__()
        self.sizes = list(ids.codebook_sizes)
        self.embed = nn.Embedding(ids.size, cfg.dim, padding_idx=ids.none)
        self.body = CausalTransformer(TransformerConfig(
            dim=cfg.dim, layers=cfg.layers, heads=cfg.heads, dim_feedforward=4 * cfg.dim,
            context=cfg.context, layer_scale=None))
        self.norm = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(cfg.dim, sum(self.sizes))

    def forward(self, inputs: Tensor) -> list[Tensor]:
        h = self.body(self.embed(inputs).sum(-2).transpose(1, 2)).transpose(1, 2)
        return [x.log_softmax(-1) for x in self.out(self.norm(h)).split(self.sizes, -1)]


def nll_bits(model: TokenLM, inputs: Tensor, targets: Tensor) -> Tensor:
    """Summed cross-entropy in bits per level [K] of `targets` [B, S, K] (-1: none)."""
    out = []
    for k, logp in enumerate(model(inputs)):
        t = targets[..., k]
        valid = t >= 0
        picked = logp.gather(-1, t.clamp(min=0)[..., None])[..., 0]
        out.append(-(picked * valid).sum() / math.log(2))
    return torch.stack(out)


# ---------------------------------------------------------------------- data
@dataclass
class Corpus:
    codes: list[Tensor]         # long [K, T] per utterance
    ids: list[str]
    codebook_sizes: list[int]
    frame_rate: float
    codec: dict


def load_corpus(shards) -> Corpus:
    """Every record of a finished `audiotok tokenize` job (one-line errors otherwise)."""
    from ..tokenize import read_index, read_records
    from ..tokens import CodecSpec

    out = Path(shards)
    if not out.is_dir():
        raise AudiotokError(f"{out}: no such folder (give the output folder of "
                            f"`audiotok tokenize`)")
    index = read_index(out)
    spec = CodecSpec.from_dict(index["codec"])
    if spec.level_strides and len(set(spec.level_strides)) > 1:
        raise AudiotokError(f"{out}: multi-rate codes (level strides "
                            f"{list(spec.level_strides)}) are not supported by the LM probe")
    codes, names = [], []
    for rec in read_records(out, index):
        if rec.n_frames:
            codes.append(torch.from_numpy(rec.codes.astype(np.int64)))
            names.append(rec.id)
    if len(codes) < 2:
        raise AudiotokError(f"{out}: {len(codes)} non-empty utterance(s); the LM probe "
                            f"holds out whole utterances and needs at least 2")
    k = codes[0].shape[0]
    return Corpus(codes, names, list(spec.codebook_sizes[:k]), spec.frame_rate, index["codec"])


def split_utterances(ids: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) positions: an utterance is held out when the hash of "seed:id" falls
    below `fraction`, so the split depends on nothing else; at least one of each."""
    def unit(i: str) -> float:
        return int.from_bytes(hashlib.sha1(f"{seed}:{i}".encode()).digest()[:8], "big") / 2**64

    hashes = [unit(i) for i in ids]
    held = {j for j, h in enumerate(hashes) if h < fraction}
    if not held or len(held) == len(ids):
        held = {min(range(len(ids)), key=hashes.__getitem__)}
    return [j for j in range(len(ids)) if j not in held], sorted(held)


# ---------------------------------------------------------------------- training
def _windows(streams: list[Stream], length: int, starts: list[tuple[int, int]], none: int
             ) -> tuple[Tensor, Tensor]:
    """Windows (stream, first step) of `length` steps, padded -> inputs [B, L, J],
    targets [B, L, K]."""
    j, k = streams[0].inputs.shape[1], streams[0].targets.shape[1]
    inputs = torch.full((len(starts), length, j), none, dtype=torch.long)
    targets = torch.full((len(starts), length, k), -1, dtype=torch.long)
    for b, (s, a) in enumerate(starts):
        piece = slice(a, a + length)
        n = streams[s].inputs[piece].shape[0]
        inputs[b, :n], targets[b, :n] = streams[s].inputs[piece], streams[s].targets[piece]
    return inputs, targets


def train_lm(streams: list[Stream], ids: InputIds, cfg: LMProbeConfig) -> tuple[TokenLM, dict]:
    """Random windows (utterances drawn in proportion to their length) -> the model and its
    training curve (bits per predicted code at the first and last tenth of the steps)."""
    g = torch.Generator().manual_seed(cfg.seed)
    model = TokenLM(ids, cfg).to(cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warmup = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))))
    weights = torch.tensor([float(len(s.inputs)) for s in streams])
    curve = []
    model.train()
    for _ in range(cfg.steps):
        pick = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=g)
        starts = [(int(s), int(torch.randint(max(1, len(streams[s].inputs) - cfg.context + 1),
                                             (1,), generator=g))) for s in pick]
        x, y = _windows(streams, cfg.context, starts, ids.none)
        y = y.to(cfg.device)
        bits = nll_bits(model, x.to(cfg.device), y).sum()
        n = (y >= 0).sum().clamp(min=1)
        opt.zero_grad()
        (bits / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        curve.append(float(bits.detach() / n))
    tenth = max(1, len(curve) // 10)
    return model, {"bits_per_code_start": sum(curve[:tenth]) / tenth,
                   "bits_per_code_end": sum(curve[-tenth:]) / tenth}


@torch.no_grad()
def score_lm(model: TokenLM, streams: list[Stream], ids: InputIds, cfg: LMProbeConfig
             ) -> Tensor:
    """Bits per level [K] summed over every step of `streams`, window after window of
    `context` steps (each window starts with a cold context)."""
    model.eval()
    total = torch.zeros(len(ids.codebook_sizes), dtype=torch.float64)
    starts = [(s, a) for s, st in enumerate(streams) for a in range(0, len(st.inputs),
                                                                     cfg.context)]
    for i in range(0, len(starts), cfg.batch_size):
        x, y = _windows(streams, cfg.context, starts[i:i + cfg.batch_size], ids.none)
        total += nll_bits(model, x.to(cfg.device), y.to(cfg.device)).double().cpu()
    return total


# ---------------------------------------------------------------------- the probe
def lm_probe(shards, cfg: LMProbeConfig) -> dict:
    """Train and score one model per layout (per group) on the corpus in `shards`."""
    corpus = load_corpus(shards)
    train, held = split_utterances(corpus.ids, cfg.held_out, cfg.seed)
    k = len(corpus.codebook_sizes)
    groups = cfg.groups or default_groups(k)
    if sum(groups) != k or min(groups) < 1:
        raise AudiotokError(f"--groups {','.join(map(str, groups))} must be positive and sum "
                            f"to the corpus's {k} codebook levels")
    ids = InputIds(tuple(corpus.codebook_sizes))
    frames = sum(corpus.codes[j].shape[-1] for j in held)
    seconds = frames / corpus.frame_rate
    layouts = {}
    for layout in cfg.layouts:
        per_utt = [layout_streams(layout, corpus.codes[j], ids, groups) for j in range(
            len(corpus.codes))]
        bits, curves = torch.zeros(k, dtype=torch.float64), []
        for g in range(len(per_utt[0])):  # one model per stream (per group for "group")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + g)
                model, curve = train_lm([per_utt[j][g] for j in train], ids, cfg)
            bits += score_lm(model, [per_utt[j][g] for j in held], ids, cfg)
            curves.append(curve)
        layouts[layout] = _figures(bits, frames, seconds, k)
        # steps per frame: K interleaved, 1 delayed, a group's size per group's model
        per_frame = {"flatten": [k], "delay": [1], "group": groups}[layout]
        layouts[layout]["context_seconds"] = [cfg.context / (n * corpus.frame_rate)
                                              for n in per_frame]
        layouts[layout]["training"] = curves
        if layout == "group":
            layouts[layout]["groups"] = groups
    return {"shards": str(shards), "codec": corpus.codec, "codebook_sizes": corpus.codebook_sizes,
            "frame_rate": corpus.frame_rate, "utterances": {"train": len(train),
                                                            "held_out": len(held)},
            "held_out_seconds": seconds, "held_out_ids": [corpus.ids[j] for j in held],
            "context_steps": cfg.context, "config": _config(cfg),
            "layouts": layouts, "baselines": _baselines(corpus, train, held, frames, seconds)}


def _figures(bits_per_level: Tensor, frames: int, seconds: float, k: int) -> dict:
    total = float(bits_per_level.sum())
    return {"bits_per_second": total / seconds, "bits_per_token": total / (frames * k),
            "bits_per_frame_by_level": [float(b) / frames for b in bits_per_level]}


def _baselines(corpus: Corpus, train: list[int], held: list[int], frames: int,
               seconds: float) -> dict:
    """Context-free figures of the held-out codes, per level then summed to bits/s."""
    from ..eval.token_stats import bigram_conditional_entropy, code_entropy

    sizes, k = corpus.codebook_sizes, len(corpus.codebook_sizes)
    held_codes = torch.cat([corpus.codes[j] for j in held], -1)
    train_codes = torch.cat([corpus.codes[j] for j in train], -1)
    xent = []
    for level, size in enumerate(sizes):  # unigram counted on train, add-one smoothed
        p = (torch.bincount(train_codes[level], minlength=size) + 1).double()
        p = p / p.sum()
        xent.append(float(-p[held_codes[level]].log2().sum()) / frames)
    nominal = [math.log2(s) for s in sizes]
    rows = {"nominal": nominal, "unigram_entropy": code_entropy(held_codes, sizes),
            "bigram_conditional_entropy": bigram_conditional_entropy(held_codes, sizes),
            "unigram_cross_entropy": xent}
    # per frame and level -> per second: each level holds one code per frame
    return {name: {"bits_per_frame_by_level": v,
                   "bits_per_token": sum(v) / k,
                   "bits_per_second": sum(v) * frames / seconds} for name, v in rows.items()}


def _config(cfg: LMProbeConfig) -> dict:
    from dataclasses import asdict

    return asdict(cfg)
