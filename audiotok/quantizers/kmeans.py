"""k-means over a batch of latents, used to place codewords where the data is."""

from __future__ import annotations

import torch
from torch import Tensor

from .search import nearest


@torch.no_grad()
def kmeans(x: Tensor, k: int, iters: int, normalize: bool = False) -> tuple[Tensor, Tensor]:
    """Lloyd's algorithm on x [N, C] -> (centroids [k, C], counts float [k]).

    Seeds are k distinct rows of x (drawn with replacement when N < k), as in EnCodec's
    `kmeans` (audiocraft/quantization/core_vq.py). Assignment uses the same distance as the
    quantizer (`normalize` = cosine), so the centroids are the codewords search will pick.
    An empty cluster keeps its previous centroid; dead-code restarts deal with it later.
    `counts` are the cluster sizes under the final centroids.
    """
    n = x.shape[0]
    if n >= k:
        seeds = torch.randperm(n, device=x.device)[:k]
    else:
        seeds = torch.randint(n, (k,), device=x.device)
    centroids = x[seeds].clone()
    for _ in range(iters):
        codes = nearest(x, centroids, normalize)
        counts = torch.bincount(codes, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, codes, x)
        means = sums / counts.clamp(min=1)[:, None]
        centroids = torch.where(counts[:, None] > 0, means, centroids)
    counts = torch.bincount(nearest(x, centroids, normalize), minlength=k).to(x.dtype)
    return centroids, counts
