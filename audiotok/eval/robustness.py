"""`audiotok eval --perturb`: codec tokens with a fraction replaced before decoding, the
audio analogue of RobusTok's pFID (Qiu et al. 2025, "Image Tokenizer Needs Post-Training",
sec. 3.2: FID of images decoded from perturbed tokens, which tracks generation quality better
than reconstruction FID). `cfg` is an `EvalConfig` (evaluate.py)."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import torch

from ..errors import AudiotokError
from ..quantizers.perturb import Perturbation, perturb_codes


def check_perturb(cfg) -> None:
    """AudiotokError, one line, unless the fractions are distinct numbers in (0, 1] and the
    mode and neighbours valid."""
    bad = [f for f in cfg.perturb if not 0 < f <= 1]
    if bad or len(set(cfg.perturb)) != len(cfg.perturb):
        raise AudiotokError(f"perturb fractions must be distinct numbers in (0, 1], got "
                            f"{list(cfg.perturb)}")
    try:
        Perturbation(rate=0.0, mode=cfg.perturb_mode, neighbours=cfg.perturb_neighbours)
    except ValueError as e:
        raise AudiotokError(f"perturb: {e}") from None


def perturbed_tokens(codec, tokens, fraction: float, wav: np.ndarray, cfg):
    """`tokens` with `fraction` of their codes replaced, and the fraction that changed. The
    generator is seeded by `cfg.perturb_seed` and the clip's samples: reproducible, the same
    for every codec and fraction on one clip, whatever order the clips come in."""
    seed = (cfg.perturb_seed * 1_000_003 + zlib.crc32(wav.tobytes())) % 2 ** 63
    p = Perturbation(rate=fraction, mode=cfg.perturb_mode, neighbours=cfg.perturb_neighbours)
    with torch.inference_mode():
        codes = perturb_codes(codec.quantizer, tokens.codes, p,
                              generator=torch.Generator().manual_seed(seed))
    changed = float((codes != tokens.codes).float().mean())
    return dataclasses.replace(tokens, codes=codes), changed
