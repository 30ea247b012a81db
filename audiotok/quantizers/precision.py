"""Quantizers run in full precision whatever the caller's autocast context.

Why: under bf16 autocast the 1x1 projections round differently, so the same audio would give
other codes in a mixed-precision training step than in an fp32 tokenization job, and
near-ties between codewords flip. The quantizer is a few small matmuls; full precision is cheap.
"""

from __future__ import annotations

import functools

import torch


def full_precision(method):
    """Decorate `method(self, x, ...)`: autocast off, floating `x` cast to
    `self.compute_dtype` (integer codes pass through unchanged)."""

    @functools.wraps(method)
    def run(self, x, *args, **kwargs):
        with torch.autocast(device_type=x.device.type, enabled=False):
            if x.is_floating_point():
                x = x.to(self.compute_dtype)
            return method(self, x, *args, **kwargs)

    return run
