"""The entropy penalty on soft code assignments that lookup-free quantizers train with.

MAGVIT-v2 (Yu et al. 2024, "Language Model Beats Diffusion: Tokenizer is Key to Visual
Generation", sec. 3.1, after Jansen et al. 2020): with q(c | z) a softmax over the codebook,

    L_entropy = E_z[H(q(c | z))] - gamma * H(E_z[q(c | z)])

The first term (per-sample entropy, minimised) makes each frame commit to one code; the
second (codebook entropy, maximised) spreads the batch over the whole codebook. Google's
magvit code (videogvt/train_lib/losses.py, entropy_loss) and vector-quantize-pytorch's
lookup_free_quantization.py compute it this way; several codebooks are averaged, as the
latter does.
"""

from __future__ import annotations

from torch import Tensor

# floor under the batch-averaged probabilities inside the log: a code no frame picks has
# probability 0 and the derivative of p log p would be infinite there (vector-quantize-
# pytorch clamps at 1e-5; anything far below 1 / codebook size does)
_EPS = 1e-8


def entropy_terms(log_probs: Tensor) -> tuple[Tensor, Tensor]:
    """log_probs float [N, K, C]: log q(c | frame n) over the C codes of each of K codebooks
    -> (per-sample entropy, codebook entropy), scalars in nats, averaged over the K codebooks
    (and the N frames for the first)."""
    probs = log_probs.exp()
    sample = -(probs * log_probs).sum(-1).mean()
    average = probs.mean(0)                                   # [K, C]
    codebook = -(average * average.clamp(min=_EPS).log()).sum(-1).mean()
    return sample, codebook


def frames_first(x: Tensor) -> Tensor:
    """x [B, K, C, T] -> [B * T, K, C]: one row per frame, as `entropy_terms` takes it."""
    b, k, c, t = x.shape
    return x.permute(0, 3, 1, 2).reshape(b * t, k, c)

