"""SSL k-means units: mini-batch k-means on a teacher layer over a corpus (`audiotok kmeans`).

The "semantic tokens" of DASB (Mousavi et al. 2024, "How Should We Extract Discrete Audio
Tokens from Self-Supervised Models?") and of HuBERT-unit speech LMs: frame features of an SSL
layer, clustered with k-means, one unit per frame. Fitting is mini-batch k-means (Sculley 2010,
"Web-scale k-means clustering", alg. 1, per-centre learning rate 1 / count): frames stream in
from the files in buffers of `batch_frames`, so memory stays bounded by one buffer however
large the corpus. The first buffer seeds the centres with k-means++.

    <units>.safetensors: "centroids" float32 [K, D]; metadata: teacher settings, frame rate,
    the mean squared distance of the last pass ("inertia").
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from ..errors import AudiotokError
from ..fileio import atomic_path
from .config import TeacherConfig
from .teachers import SSLTeacher


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
              epochs: int = 1, device: str = "cpu", seed: int = 0, progress: bool = True
              ) -> Path:
    """Fit k-means units on `cfg`'s layer over `items` (AudioItems); write `out_path`."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from ..audio import load_audio
    from ..errors import AudioError

    teacher = SSLTeacher(cfg, cfg.sample_rate).to(device)
    km = MiniBatchKMeans(k, seed)
    chunk = 30 * cfg.sample_rate  # bounded teacher memory on long files
    for epoch in range(epochs):
        buffer, size, failed = [], 0, 0
        for item in tqdm(items, desc=f"kmeans pass {epoch + 1}/{epochs}", disable=not progress):
            try:
                wav, _ = load_audio(item.path, cfg.sample_rate, 1)
            except AudioError:
                failed += 1
                continue
            with torch.no_grad():
                for i in range(0, wav.shape[-1], chunk):
                    piece = wav[None, :, i:i + chunk].to(device)
                    n = max(1, round(piece.shape[-1] * teacher.frame_rate / cfg.sample_rate))
                    buffer.append(teacher.audio_features(piece, n)[0].cpu())
                    size += n
            if size >= batch_frames:
                km.update(torch.cat(buffer))
                buffer, size = [], 0
        if buffer:
            km.update(torch.cat(buffer))
        if km.centres is None:
            raise AudiotokError(f"no readable audio among {len(items)} files")
    meta = {"teacher": json.dumps({"path": cfg.path, "layers": cfg.layers,
                                   "sample_rate": cfg.sample_rate, "normalize": cfg.normalize}),
            "frame_rate": str(teacher.frame_rate), "inertia": str(km.inertia),
            "failed_files": str(failed)}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file({"centroids": km.centres.contiguous()}, str(tmp), metadata=meta)
    return out


def load_units(path) -> tuple[Tensor, dict]:
    """A units file -> (centroids float32 [K, D], metadata with "teacher" decoded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise AudiotokError(f"{path}: no such k-means units file (fit one with `audiotok "
                            f"kmeans`)")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        if "centroids" not in f.keys():  # noqa: SIM118  (safe_open is not a dict)
            raise AudiotokError(f"{path}: not a k-means units file (no 'centroids')")
        centroids = f.get_tensor("centroids").float()
    if "teacher" in meta:
        meta["teacher"] = json.loads(meta["teacher"])
    return centroids, meta
