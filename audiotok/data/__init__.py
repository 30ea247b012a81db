"""Training data: file lists from folders or JSONL manifests, reproducible excerpts, and
resumable rank-aware loaders.

    splits = build_items(cfg)                          # DataSplits(train, val, indexes)
    loader = make_train_loader(cfg, sample_rate=24000, channels=1, batch_size=8, seed=0,
                               rank=0, world_size=1, start_step=step, items=splits.train)
    batch = next(iter(loader))                         # {"wav": [B, C, S], "index", "failed"}
"""

from .data_config import AugmentConfig, DataConfig
from .dataset import AudioDataset
from .manifest import AudioItem, DataSplits, FileIndex, build_items, index_files, split_items
from .sampler import ResumableSampler, collate, make_train_loader, make_val_loader
from .transforms import Augment, normalize_loudness

__all__ = [
    "AudioDataset",
    "AudioItem",
    "Augment",
    "AugmentConfig",
    "DataConfig",
    "DataSplits",
    "FileIndex",
    "ResumableSampler",
    "build_items",
    "collate",
    "index_files",
    "make_train_loader",
    "make_val_loader",
    "normalize_loudness",
    "split_items",
]
