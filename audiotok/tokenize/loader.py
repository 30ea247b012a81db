"""Audio decoding off the codec's thread: a DataLoader over shards whose worker processes
probe lengths, group similar lengths, decode and resample, and hand over ready batches.

Each yielded `DecodedBatch` belongs to one shard; a shard's batches together account for
every one of its utterances, decoded or failed, which is how the consumer knows it is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..audio import audio_info, load_audio
from ..errors import AudiotokError
from ..processes import loader_worker_init
from .batching import group_by_length
from .plan import Plan

MAX_PADDING = 0.1  # pad no item by more than 10% of its batch's longest


@dataclass
class DecodedBatch:
    """Utterances `index` (positions within `shard`) decoded to wavs [C, T_i] at the codec's
    rate, plus (position, reason) for those that failed to decode."""

    shard: int
    index: list[int] = field(default_factory=list)
    wavs: list[Tensor] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


class ShardAudio(IterableDataset):
    """The shards a tokenize worker owns, split again among the DataLoader's processes."""

    def __init__(self, plan: Plan, shards: list[int], sample_rate: int, channels: int,
                 batch_seconds: float):
        self.plan, self.shards = plan, shards
        self.sample_rate, self.channels = sample_rate, channels
        self.budget = max(1, int(batch_seconds * sample_rate))

    def __iter__(self) -> Iterator[DecodedBatch]:
        info = get_worker_info()
        mine = self.shards if info is None else self.shards[info.id::info.num_workers]
        for shard in mine:
            yield from self._shard(shard)

    def _shard(self, shard: int) -> Iterator[DecodedBatch]:
        utts = self.plan.shard(shard)
        probe = DecodedBatch(shard)
        lengths: dict[int, int] = {}
        for i, u in enumerate(utts):
            try:
                seconds = u.duration if u.duration is not None else audio_info(u.path).duration
                lengths[i] = max(1, round(seconds * self.sample_rate))
            except AudiotokError as e:
                probe.failed.append((i, str(e)))
        if probe.failed:
            yield probe
        ok = sorted(lengths)
        groups = group_by_length([lengths[i] for i in ok], self.budget, MAX_PADDING)
        for group in groups:
            batch = DecodedBatch(shard)
            for i in (ok[g] for g in group):
                try:
                    wav, _ = load_audio(utts[i].path, self.sample_rate, self.channels)
                except AudiotokError as e:
                    batch.failed.append((i, str(e)))
                    continue
                batch.index.append(i)
                batch.wavs.append(wav)
            yield batch


def make_loader(dataset: ShardAudio, workers: int) -> DataLoader:
    """Batches come pre-grouped (batch_size=None); `workers` processes decode ahead."""
    return DataLoader(dataset, batch_size=None, num_workers=workers,
                      prefetch_factor=4 if workers else None, persistent_workers=False,
                      collate_fn=_identity, worker_init_fn=loader_worker_init())


def _identity(batch: DecodedBatch) -> DecodedBatch:
    return batch
