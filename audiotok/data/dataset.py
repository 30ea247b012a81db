"""AudioDataset: fixed-length excerpts of audio files, one per integer index.

Training: index i draws, from a generator seeded by (seed, i) alone, a file (weighted by
duration), an offset and the augmentation, so any index can be produced again anywhere:
a resumed run, another worker or another rank sees exactly the same excerpt. The dataset's
length is nominal (the number of files); every non-negative index is valid.

Validation: index i is the first `segment_seconds` of file i, without augmentation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..audio import audio_info, read_excerpt
from ..strict_config import from_dict
from ..errors import AudioError, AudiotokError
from .data_config import AugmentConfig
from .manifest import AudioItem
from .transforms import Augment, normalize_loudness


class AudioDataset(Dataset):
    """item i -> {"wav": float32 [C, S], "index": i, "failed": files that failed to decode
    before one succeeded, "name", "text", "duration": the file the excerpt came from,
    "start": the excerpt's offset in that file in seconds}, S = round(segment_seconds *
    sample_rate). Files shorter than the segment are zero-padded on the right. Name, text and
    offset let distillation teachers find the transcript and cached features of an excerpt."""

    def __init__(self, items: list[AudioItem], sample_rate: int, channels: int,
                 segment_seconds: float, loudness_db: float | None = None,
                 augment: AugmentConfig | dict | None = None, seed: int = 0,
                 train: bool = True):
        if not items:
            raise AudiotokError("AudioDataset needs at least one audio file")
        if seed < 0:
            raise AudiotokError(f"seed must not be negative, got {seed}")
        self.items = list(items)
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment = max(1, round(segment_seconds * sample_rate))
        self.loudness_db = loudness_db
        self.seed = seed
        self.train = train
        if isinstance(augment, dict):
            augment = from_dict(AugmentConfig, augment, "augment")
        self.augment = Augment(augment, sample_rate) if train and augment and augment.enabled \
            else None
        # Duration weighting: every second of audio is equally likely to be drawn.
        self.weights = np.array([max(it.duration, 1e-3) for it in self.items], dtype=np.float64)
        self.cumulative = np.cumsum(self.weights)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            raise IndexError(f"AudioDataset index must not be negative, got {index}")
        rng = np.random.default_rng([self.seed, index])
        if self.train:
            wav, item, start, failed = self._random_excerpt(rng)
        else:
            wav, item, start, failed = self._first_excerpt(index)
        if self.loudness_db is not None:
            wav = normalize_loudness(wav, self.sample_rate, self.loudness_db)
        if self.augment is not None:
            wav = self.augment(wav, rng)
        wav = torch.nn.functional.pad(wav, (0, self.segment - wav.shape[-1]))
        return {"wav": wav.float().contiguous(), "index": index, "failed": failed,
                "name": item.name, "text": item.text, "duration": item.duration,
                "start": start}

    def _random_excerpt(self, rng: np.random.Generator
                        ) -> tuple[Tensor, AudioItem, float, int]:
        """A duration-weighted file and a uniform offset; on failure draw again among the
        files not yet tried, so the result still depends only on the generator."""
        cumulative, failed, error = self.cumulative, 0, None
        while failed < len(self.items):
            i = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            i = min(i, len(self.items) - 1)
            try:
                return (*self._read(self.items[i], rng), failed)
            except AudioError as e:
                failed, error = failed + 1, e
                weights = np.diff(cumulative, prepend=0.0)
                weights[i] = 0.0
                cumulative = np.cumsum(weights)
        raise AudiotokError(f"all {len(self.items)} audio files failed to decode "
                            f"(last: {error})")

    def _first_excerpt(self, index: int) -> tuple[Tensor, AudioItem, float, int]:
        """File `index` (mod the file count), or the next readable file after it."""
        error = None
        for failed in range(len(self.items)):
            item = self.items[(index + failed) % len(self.items)]
            try:
                return (*self._read(item, None), failed)
            except AudioError as e:
                error = e
        raise AudiotokError(f"all {len(self.items)} audio files failed to decode "
                            f"(last: {error})")

    def _read(self, item: AudioItem, rng: np.random.Generator | None
              ) -> tuple[Tensor, AudioItem, float]:
        """Decode only the frames the excerpt needs: ([C, <= S] at the dataset's rate, item,
        offset in seconds). A random offset when `rng` is given, else the start of the file."""
        info = audio_info(item.path)
        need = math.ceil(self.segment * info.sample_rate / self.sample_rate)
        start = 0 if rng is None else int(rng.integers(0, max(0, info.frames - need) + 1))
        wav = read_excerpt(item.path, start, need, self.sample_rate, self.channels, info)
        return wav[:, :self.segment], item, start / info.sample_rate
