"""Resumable, rank-aware index streams and the DataLoaders built on them.

Step s of rank r (of W ranks, batch B) reads the global positions
    s*B*W + r*B + j,   j = 0..B-1,
so ranks never overlap, together they cover one single-process stream, and a run restarted
at step k sees exactly the batches the uninterrupted run would have seen from step k on.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import AudiotokError
from ..processes import loader_worker_init
from .data_config import DataConfig
from .dataset import AudioDataset
from .manifest import AudioItem, build_items


class ResumableSampler(Sampler[int]):
    """An endless stream of dataset indices for one rank, starting at `start_step`.

    `dataset_len=None` yields the global positions themselves: right for `AudioDataset`
    in training, where every index is a fresh excerpt. With an integer, positions pass
    through a permutation of range(dataset_len) drawn anew each epoch from (seed, epoch),
    for datasets whose index names a fixed item.
    """

    def __init__(self, dataset_len: int | None, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, start_step: int = 0):
        if batch_size <= 0 or world_size <= 0 or not 0 <= rank < world_size:
            raise AudiotokError(f"invalid sampler setup: batch_size={batch_size}, "
                                f"rank={rank}, world_size={world_size}")
        if start_step < 0 or (dataset_len is not None and dataset_len <= 0):
            raise AudiotokError(f"invalid sampler setup: start_step={start_step}, "
                                f"dataset_len={dataset_len}")
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step

    def positions(self, step: int) -> range:
        """Global positions this rank reads at `step`."""
        first = (step * self.world_size + self.rank) * self.batch_size
        return range(first, first + self.batch_size)

    def __iter__(self) -> Iterator[int]:
        epoch, perm = -1, None
        for step in itertools.count(self.start_step):
            for position in self.positions(step):
                if self.dataset_len is None:
                    yield position
                    continue
                if position // self.dataset_len != epoch:
                    epoch = position // self.dataset_len
                    perm = self._permutation(epoch)
                yield int(perm[position % self.dataset_len])

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.dataset_len, generator=generator)


def collate(items: list[dict]) -> dict:
    """-> {"wav": [B, C, S], "index": long [B], "failed": int (sum over the batch),
    "name"/"text": lists [B], "duration"/"start": float64 [B] seconds}."""
    return {
        "wav": torch.stack([it["wav"] for it in items]),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "failed": sum(it["failed"] for it in items),
        "name": [it["name"] for it in items],
        "text": [it["text"] for it in items],
        "duration": torch.tensor([it["duration"] for it in items], dtype=torch.float64),
        "start": torch.tensor([it["start"] for it in items], dtype=torch.float64),
    }


def make_train_loader(cfg: DataConfig, sample_rate: int, channels: int, batch_size: int,
                      seed: int = 0, rank: int = 0, world_size: int = 1, start_step: int = 0,
                      items: list[AudioItem] | None = None) -> DataLoader:
    """An endless loader of random excerpts; pass `items` (build_items(cfg).train) to skip
    indexing the corpus again."""
    items = build_items(cfg).train if items is None else items
    dataset = AudioDataset(items, sample_rate, channels, cfg.segment_seconds, cfg.loudness_db,
                           cfg.augment, seed, train=True)
    sampler = ResumableSampler(None, batch_size, seed, rank, world_size, start_step)
    return _loader(dataset, sampler, batch_size, cfg.num_workers, drop_last=True)


def make_val_loader(cfg: DataConfig, sample_rate: int, channels: int, batch_size: int,
                    rank: int = 0, world_size: int = 1,
                    items: list[AudioItem] | None = None) -> DataLoader:
    """The first `val_segment_seconds` of every validation file, in order, once; with
    several ranks each takes every world_size-th file."""
    items = build_items(cfg).val if items is None else items
    items = items[rank::world_size] or items[:1]
    dataset = AudioDataset(items, sample_rate, channels, cfg.val_segment_seconds,
                           cfg.loudness_db, None, 0, train=False)
    return _loader(dataset, None, batch_size, cfg.num_workers, drop_last=False)


def _loader(dataset, sampler, batch_size: int, num_workers: int, drop_last: bool
            ) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, collate_fn=collate, drop_last=drop_last,
                      persistent_workers=num_workers > 0,
                      worker_init_fn=loader_worker_init(_ignore_stop_signals),
                      pin_memory=torch.cuda.is_available())


def _ignore_stop_signals(_worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the trainer. Ctrl-C, `kill -- -PGID` and
    schedulers such as Slurm signal every process of the job; a worker dying first would
    make the trainer fail with "DataLoader worker killed" instead of saving a checkpoint.
    The trainer still stops its workers when it exits, and they die with it if it is
    killed (processes.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
