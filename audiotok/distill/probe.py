"""How much content each quantizer level carries: mutual information with SSL k-means units.

SSL k-means units track phones far more than speakers (that is why DASB calls them semantic
tokens), so I(level codes; units) measures a level's content without transcripts. For each
level, frames of every clip are paired with the unit of the teacher features under the same
frame, and the plug-in mutual information of the pooled counts is reported in bits and
normalised by H(units). The plug-in estimate is biased upward when codes are many and frames
few; `chance_bits` is the same estimate with the units shifted by half a clip (same marginals,
no alignment), so `mi_bits - chance_bits` is the information beyond chance. With speaker
labels, I(level codes; speaker) is reported too: a semantic level should be high on the first
and low on the second, acoustic levels the reverse.

    probe = content_probe(codec, wavs, "units.safetensors", speakers=["s1", "s2", ...])
    probe["levels"][0]["nmi"]

Streaming, as `audiotok eval --probe-units` uses it (the teacher runs once per clip, whatever
the number of codecs; counts are kept sparse, so memory grows with frames, not with codebook
size x units):

    units = UnitLabeller("units.safetensors")            # AudiotokError if unusable
    probe = ContentProbe(codec.codebook_sizes, units.n_units)
    feats = units.features(wav, sr)                      # once per clip
    probe.add(codes, units.assign(feats, codes.shape[-1]), speaker)
    probe.result()
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import AudiotokError
from .distill_config import TeacherConfig
from .ssl_units import assign, load_units
from .teachers import SSLTeacher, align_frames, to_mono_rate

CHUNK_SECONDS = 30  # bounded teacher memory on long clips, as `audiotok kmeans`


def pair_mutual_information(a: Tensor, b: Tensor) -> float:
    """Paired labels a [N], b [N] (any integers) -> plug-in I(a; b) in bits, from sparse
    counts (only the pairs that occur)."""
    n = a.numel()
    if n == 0:
        return 0.0
    _, ia = a.unique(return_inverse=True)
    _, ib = b.unique(return_inverse=True)
    nb = int(ib.max()) + 1
    pair, c_ab = (ia * nb + ib).unique(return_counts=True)
    c_a, c_b = torch.bincount(ia).double(), torch.bincount(ib).double()
    c_ab = c_ab.double()
    return float((c_ab / n * (c_ab * n / (c_a[pair // nb] * c_b[pair % nb])).log2()).sum())


def entropy(counts: Tensor) -> float:
    p = counts.double() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


class UnitLabeller:
    """A units file written by `audiotok kmeans` and the SSL teacher recorded in it.
    Everything is checked on construction: any problem is one AudiotokError."""

    def __init__(self, units_path, device: str = "cpu"):
        from safetensors import SafetensorError

        path = str(units_path)
        try:
            centroids, meta = load_units(units_path)
        except (SafetensorError, OSError, ValueError) as e:  # a bad header, JSON metadata
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AudiotokError(f"{path}: not a readable k-means units file ({first})"
                                ) from None
        teacher = meta.get("teacher")
        if not isinstance(teacher, dict) or not teacher.get("path"):
            raise AudiotokError(f"{path}: no teacher recorded in the units file (write it "
                                f"with `audiotok kmeans`)")
        if centroids.ndim == 3:
            raise AudiotokError(f"{path}: holds the units of {len(centroids)} layers; the probe "
                                f"takes one layer's (audiotok kmeans --layer N)")
        if centroids.ndim != 2 or len(centroids) < 2 or not torch.isfinite(centroids).all():
            raise AudiotokError(f"{path}: centroids must be a finite [K >= 2, D] matrix, got "
                                f"shape {tuple(centroids.shape)}")
        try:
            cfg = TeacherConfig(type="ssl", **teacher)
        except (TypeError, ValueError) as e:
            raise AudiotokError(f"{path}: bad teacher settings {teacher} ({e})") from None
        self.teacher = SSLTeacher(cfg, cfg.sample_rate).to(device)
        if self.teacher.dim != centroids.shape[1]:
            raise AudiotokError(f"{path}: centroids have {centroids.shape[1]} dimensions but "
                                f"teacher '{cfg.path}' gives {self.teacher.dim}")
        self.centroids, self.meta, self.path, self.device = centroids, meta, path, device
        self.rate = cfg.sample_rate

    @property
    def n_units(self) -> int:
        return len(self.centroids)

    def features(self, wav: Tensor, sample_rate: int) -> Tensor:
        """wav [T] or [C, T] at `sample_rate` -> teacher features [T_teacher, D] on the CPU,
        at the teacher's own frame rate (long clips 30 s at a time)."""
        x = wav.reshape(-1, wav.shape[-1])[None].float()
        x = to_mono_rate(x, sample_rate, self.rate)[:, None]           # [1, 1, T']
        chunk, out = CHUNK_SECONDS * self.rate, []
        with torch.no_grad():
            for i in range(0, x.shape[-1], chunk):
                piece = x[..., i:i + chunk].to(self.device)
                n = max(1, round(piece.shape[-1] * self.teacher.frame_rate / self.rate))
                out.append(self.teacher.audio_features(piece, n)[0].cpu())
        return torch.cat(out)

    def assign(self, features: Tensor, n_frames: int) -> Tensor:
        """Teacher features [T_teacher, D] -> the unit under each of `n_frames` codec frames
        spanning the same audio, long [n_frames]."""
        units, _ = assign(align_frames(features[None], n_frames)[0], self.centroids)
        return units


class ContentProbe:
    """Pooled per-level counts of (code, unit), (code, shifted unit) and (code, speaker)."""

    def __init__(self, codebook_sizes: list[int], n_units: int):
        self.sizes, self.n_units = list(codebook_sizes), n_units
        self.codes: list[Tensor] = []     # [K, T] per clip
        self.units: list[Tensor] = []     # [T]
        self.shifted: list[Tensor] = []   # [T], units rolled by half the clip
        self.speaker: list[Tensor] = []   # [T] speaker index, -1 unknown
        self.speakers: dict[str, int] = {}

    def add(self, codes: Tensor, units: Tensor, speaker: str | None = None) -> None:
        """codes [K, T] of one clip, units [T] aligned with them, the clip's speaker."""
        codes, units = codes.long().cpu(), units.long().cpu()
        if codes.shape != (len(self.sizes), len(units)):
            raise ValueError(f"codes {tuple(codes.shape)} do not match {len(self.sizes)} "
                             f"levels x {len(units)} units")
        spk = -1 if speaker is None else self.speakers.setdefault(speaker, len(self.speakers))
        self.codes.append(codes)
        self.units.append(units)
        self.shifted.append(units.roll(max(1, len(units) // 2)))
        self.speaker.append(torch.full_like(units, spk))

    def result(self) -> dict:
        """{"units", "frames", "unit_entropy_bits", "levels": [{"level", "mi_bits",
        "chance_bits", "mi_above_chance_bits", "nmi", "speaker_mi_bits"?}]}; with speakers,
        also "speakers" (distinct) and "speaker_frames" (the frames with a known speaker,
        over which speaker_mi_bits is pooled)."""
        k = len(self.sizes)
        codes = torch.cat(self.codes, -1) if self.codes else torch.zeros(k, 0, dtype=torch.long)
        units = torch.cat(self.units) if self.units else torch.zeros(0, dtype=torch.long)
        shifted = torch.cat(self.shifted) if self.shifted else units
        spk = torch.cat(self.speaker) if self.speaker else units
        known = spk >= 0
        h_units = entropy(torch.bincount(units)) if len(units) else 0.0
        levels = []
        for level in range(k):
            mi = pair_mutual_information(codes[level], units)
            chance = pair_mutual_information(codes[level], shifted)
            row = {"level": level, "mi_bits": mi, "chance_bits": chance,
                   "mi_above_chance_bits": mi - chance,
                   "nmi": mi / h_units if h_units > 0 else math.nan}
            if self.speakers:
                row["speaker_mi_bits"] = pair_mutual_information(codes[level][known], spk[known])
            levels.append(row)
        out = {"units": self.n_units, "frames": len(units), "unit_entropy_bits": h_units,
               "levels": levels}
        if self.speakers:
            out.update(speakers=len(self.speakers), speaker_frames=int(known.sum()))
        return out


def content_probe(codec, wavs: list[Tensor], units_path, speakers: list[str] | None = None,
                  device: str = "cpu") -> dict:
    """wavs: [C, T] at codec.sample_rate -> {"units": K, "frames": N, "levels": [{"level",
    "mi_bits", "chance_bits", "nmi", "speaker_mi_bits"?}, ...]} pooled over the clips."""
    labeller = UnitLabeller(units_path, device)
    probe = ContentProbe(codec.codebook_sizes, labeller.n_units)
    for i, wav in enumerate(wavs):
        codes = codec.encode(wav[None].to(device)).codes[0].cpu()      # [K, T]
        units = labeller.assign(labeller.features(wav, codec.sample_rate), codes.shape[-1])
        probe.add(codes, units, speakers[i] if speakers else None)
    return probe.result()
