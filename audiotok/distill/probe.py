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
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import TeacherConfig
from .kmeans import assign, load_units
from .teachers import SSLTeacher


def mutual_information(joint: Tensor) -> float:
    """Counts [A, B] -> plug-in I(a; b) in bits."""
    p = joint.double() / joint.sum().clamp(min=1)
    pa, pb = p.sum(1, keepdim=True), p.sum(0, keepdim=True)
    nz = p > 0
    return float((p[nz] * (p[nz] / (pa @ pb)[nz]).log2()).sum())


def entropy(counts: Tensor) -> float:
    p = counts.double() / counts.sum().clamp(min=1)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def content_probe(codec, wavs: list[Tensor], units_path, speakers: list[str] | None = None,
                  device: str = "cpu") -> dict:
    """wavs: [C, T] at codec.sample_rate -> {"units": K, "frames": N, "levels": [{"level",
    "mi_bits", "chance_bits", "nmi", "speaker_mi_bits"?}, ...]} pooled over the clips."""
    centroids, meta = load_units(units_path)
    teacher = SSLTeacher(TeacherConfig(type="ssl", **meta["teacher"]), codec.sample_rate)
    teacher.to(device)
    n_units, sizes = len(centroids), codec.codebook_sizes
    joint = [torch.zeros(s, n_units, dtype=torch.long) for s in sizes]
    chance = [torch.zeros(s, n_units, dtype=torch.long) for s in sizes]
    names = sorted(set(speakers)) if speakers else []
    by_speaker = [torch.zeros(s, max(len(names), 1), dtype=torch.long) for s in sizes]
    frames = 0
    for i, wav in enumerate(wavs):
        codes = codec.encode(wav[None].to(device)).codes[0].cpu()      # [K, T]
        with torch.no_grad():
            feats = teacher.audio_features(wav[None].to(device), codes.shape[-1])[0].cpu()
        units, _ = assign(feats, centroids)
        shifted = units.roll(max(1, len(units) // 2))
        frames += len(units)
        for level, row in enumerate(codes):
            joint[level].index_put_((row, units), torch.tensor(1), accumulate=True)
            chance[level].index_put_((row, shifted), torch.tensor(1), accumulate=True)
            if names:
                spk = torch.full_like(row, names.index(speakers[i]))
                by_speaker[level].index_put_((row, spk), torch.tensor(1), accumulate=True)
    h_units = entropy(joint[0].sum(0))
    levels = []
    for level in range(len(sizes)):
        mi = mutual_information(joint[level])
        row = {"level": level, "mi_bits": mi, "chance_bits": mutual_information(chance[level]),
               "nmi": mi / h_units if h_units > 0 else math.nan}
        if names:
            row["speaker_mi_bits"] = mutual_information(by_speaker[level])
        levels.append(row)
    return {"units": n_units, "frames": frames, "unit_entropy_bits": h_units,
            "levels": levels}
