"""SSL k-means units: mini-batch k-means on a teacher layer over a corpus (`audiotok kmeans`).

The "semantic tokens" of DASB (Mousavi et al. 2024, "How Should We Extract Discrete Audio
Tokens from Self-Supervised Models?") and of HuBERT-unit speech LMs: frame features of an SSL
layer, clustered with k-means, one unit per frame. Fitting is mini-batch k-means (Sculley 2010,
"Web-scale k-means clustering", alg. 1, per-centre learning rate 1 / count): frames stream in
from the files in buffers of `batch_frames`, so memory stays bounded by one buffer however
large the corpus. The first buffer seeds the centres with k-means++.

    <units>.safetensors: "centroids" float32 [K, D]; metadata: teacher settings, frame rate,
    the mean squared distance of the last pass ("inertia").

Several layers at once (Mousavi et al. 2024, "How Should We Extract Discrete Audio Tokens from
Self-Supervised Models?", sec. 2: one k-means per SSL layer, each layer a token stream) fit one
k-means per stream from the same teacher passes, each as the single-layer fit would:

    <units>.safetensors: "centroids" float32 [L, K, D]; metadata "teacher" with "layers" the
    L streams (a list of hidden-state lists), "inertia" a JSON list of L values.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from ..errors import AudiotokError
from ..fileio import atomic_path
from ..modules.ssl import load_units  # noqa: F401  (the units format lives with its reader)
from .distill_config import TeacherConfig
from .teachers import SSLTeacher, pick_layers


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """x [N, D] -> k centres [k, D] drawn by k-means++ (Arthur & Vassilvitskii 2007)."""
    centres = [x[torch.randint(len(x), (1,), generator=generator)]]
    dist = torch.cdist(x, centres[0]).squeeze(1) ** 2
    for _ in range(1, k):
        probs = dist / dist.sum() if dist.sum() > 0 else torch.full_like(dist, 1 / len(dist))
        c = x[torch.multinomial(probs, 1, generator=generator)]
        centres.append(c)
        dist = torch.minimum(dist, torch.cdist(x, c).squeeze(1) ** 2)
    return torch.cat(centres)


def assign(x: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """x [N, D] -> (nearest centre long [N], squared distance [N])."""
    d = torch.cdist(x, centres) ** 2
    dist, idx = d.min(1)
    return idx, dist


class MiniBatchKMeans:
    """Streaming k-means: `update(frames)` per buffer, `centres` [K, D] after."""

    def __init__(self, k: int, seed: int = 0):
        if k < 2:
            raise AudiotokError(f"k-means needs k >= 2, got {k}")
        self.k = k
        self.generator = torch.Generator().manual_seed(seed)
        self.centres: Tensor | None = None
        self.counts: Tensor | None = None
        self.inertia = float("nan")

    def update(self, x: Tensor) -> None:
        x = x.float().cpu()
        if self.centres is None:
            if len(x) < self.k:
                raise AudiotokError(f"the first buffer has {len(x)} frames, fewer than k = "
                                    f"{self.k}: raise --batch-frames or lower -k")
            self.centres = kmeans_plus_plus(x, self.k, self.generator)
            self.counts = torch.zeros(self.k)
        idx, dist = assign(x, self.centres)
        self.inertia = float(dist.mean())
        # c <- c + (mean of its batch frames - c) * n_batch / n_total: alg. 1 of Sculley 2010
        # applied to the whole batch at once
        sums = torch.zeros_like(self.centres).index_add_(0, idx, x)
        n = torch.bincount(idx, minlength=self.k).float()
        self.counts += n
        hit = n > 0
        rate = (n[hit] / self.counts[hit])[:, None]
        self.centres[hit] += rate * (sums[hit] / n[hit, None] - self.centres[hit])


def fit_units(cfg: TeacherConfig, items, k: int, out_path, batch_frames: int = 20000,
              epochs: int = 1, device: str = "cpu", seed: int = 0, progress: bool = True,
              streams: list[list[int]] | None = None) -> Path:
    """Fit k-means units on `cfg`'s layer (average) over `items` (AudioItems); write
    `out_path`. With `streams` (hidden-state lists, `layer_streams`): one k-means per
    stream instead, stream i seeded with `seed + i`, into one [L, K, D] file."""
    from safetensors.torch import save_file

    teacher = SSLTeacher(cfg, cfg.sample_rate).to(device)
    multi = streams is not None
    groups = [pick_layers(s, teacher.n_layers, cfg.path, "layers") for s in streams] if multi \
        else [teacher.layers]
    kms = [MiniBatchKMeans(k, seed + i) for i in range(len(groups))]
    failed = _fit_passes(teacher, groups, kms, items, batch_frames, epochs, device, progress)
    if kms[0].centres is None:
        raise AudiotokError(f"no readable audio among {len(items)} files")
    layers = [list(s) for s in streams] if multi else cfg.layers
    meta = {"teacher": json.dumps({"path": cfg.path, "layers": layers,
                                   "sample_rate": cfg.sample_rate, "normalize": cfg.normalize}),
            "frame_rate": str(teacher.frame_rate),
            "inertia": json.dumps([km.inertia for km in kms]) if multi else str(kms[0].inertia),
            "failed_files": str(failed)}
    centroids = torch.stack([km.centres for km in kms]) if multi else kms[0].centres
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file({"centroids": centroids.contiguous()}, str(tmp), metadata=meta)
    return out


def _fit_passes(teacher: SSLTeacher, groups: list[list[int]], kms: list[MiniBatchKMeans],
                items, batch_frames: int, epochs: int, device: str, progress: bool) -> int:
    """Stream `items` through the teacher `epochs` times, updating k-means i with the frames
    of stream i in buffers of `batch_frames`; returns the number of unreadable files."""
    from tqdm import tqdm

    from ..audio import load_audio
    from ..errors import AudioError

    rate = teacher.cfg.sample_rate
    chunk = 30 * rate  # bounded teacher memory on long files
    for epoch in range(epochs):
        buffers, size, failed = [[] for _ in groups], 0, 0
        for item in tqdm(items, desc=f"kmeans pass {epoch + 1}/{epochs}", disable=not progress):
            try:
                wav, _ = load_audio(item.path, rate, 1)
            except AudioError:
                failed += 1
                continue
            with torch.no_grad():
                for i in range(0, wav.shape[-1], chunk):
                    piece = wav[None, :, i:i + chunk].to(device)
                    n = max(1, round(piece.shape[-1] * teacher.frame_rate / rate))
                    feats = teacher.stream_features(piece, n, groups)
                    for buffer, f in zip(buffers, feats):
                        buffer.append(f[0].cpu())
                    size += n
            if size >= batch_frames:
                for km, buffer in zip(kms, buffers):
                    km.update(torch.cat(buffer))
                buffers, size = [[] for _ in groups], 0
        if buffers[0]:
            for km, buffer in zip(kms, buffers):
                km.update(torch.cat(buffer))
    return failed
