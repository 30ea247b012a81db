"""What happens to an excerpt after decoding: loudness normalisation, then augmentation.

Every random choice is drawn from the `numpy.random.Generator` the dataset makes for the
excerpt's index, so an excerpt is the same whenever and wherever it is drawn.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from .data_config import AugmentConfig

MAX_PEAK = 1.0  # normalisation never pushes samples past full scale


def normalize_loudness(wav: Tensor, sample_rate: int, target_db: float) -> Tensor:
    """Scale wav [C, T] to `target_db` LUFS (ITU-R BS.1770, pyloudnorm), but no further than
    a peak of MAX_PEAK. Silence (loudness below the -70 LUFS gate) is returned unchanged."""
    import pyloudnorm

    if wav.shape[-1] == 0:
        return wav
    data = wav.double().numpy().T  # [T, C]
    if data.shape[1] > 5:  # BS.1770 weights stop at 5.0 surround
        data = data.mean(axis=1, keepdims=True)
    # short excerpts: one block of (almost) all of it; pyloudnorm wants more samples than
    # one block holds, and BS.1770 filters need a few samples to mean anything
    if data.shape[0] < 64:
        return wav
    block = min(0.4, (data.shape[0] - 1) / sample_rate)
    loudness = pyloudnorm.Meter(sample_rate, block_size=block).integrated_loudness(data)
    if not np.isfinite(loudness):
        return wav
    gain = 10.0 ** ((target_db - loudness) / 20.0)
    peak = float(wav.abs().max())
    return wav * min(gain, MAX_PEAK / peak)


class Augment:
    """Random gain, polarity flip and optional descript-audiotools transforms (AugmentConfig).

    wav [C, T] -> wav [C, T]; `rng` supplies every random draw.
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int):
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.audiotools = _build_audiotools(cfg.audiotools) if cfg.audiotools else None

    def __call__(self, wav: Tensor, rng: np.random.Generator) -> Tensor:
        if self.audiotools is not None:
            wav = self._apply_audiotools(wav, int(rng.integers(2**31)))
        low, high = self.cfg.gain_db
        if low != 0.0 or high != 0.0:
            wav = wav * 10.0 ** (rng.uniform(low, high) / 20.0)
        if self.cfg.polarity_prob > 0 and rng.random() < self.cfg.polarity_prob:
            wav = -wav
        return wav

    def _apply_audiotools(self, wav: Tensor, seed: int) -> Tensor:
        from audiotools import AudioSignal

        signal = AudioSignal(wav[None].clone(), self.sample_rate)
        # Some transforms draw from torch's global generator: pin it for this excerpt only.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            kwargs = self.audiotools.instantiate(np.random.RandomState(seed), signal)
            signal = self.audiotools(signal, **kwargs)
        return signal.audio_data[0].float()


def _build_audiotools(specs: list[dict]):
    """[{name: LowPass, cutoff: [...], prob: 0.5}, ...] -> audiotools Compose."""
    try:
        from audiotools.data import transforms as tfm
    except ImportError as e:  # optional dependency
        raise ConfigError(f"augment.audiotools needs descript-audiotools ({e})") from None
    built = []
    for i, spec in enumerate(specs):
        args = {k: v for k, v in spec.items() if k != "name"}
        cls = getattr(tfm, spec["name"], None)
        if not (isinstance(cls, type) and issubclass(cls, tfm.BaseTransform)):
            raise ConfigError(f"augment.audiotools[{i}]: unknown transform '{spec['name']}' "
                              f"(a class in audiotools.data.transforms, e.g. LowPass)")
        try:
            built.append(cls(**args))
        except TypeError as e:
            raise ConfigError(f"augment.audiotools[{i}] ({spec['name']}): {e}") from None
    return tfm.Compose(built)
