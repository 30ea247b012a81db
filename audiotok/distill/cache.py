"""Teacher features computed once per corpus file, read back per excerpt (`distill-cache`).

Running HuBERT on every excerpt of every step costs about as much as the codec itself; over
many epochs it pays to compute each file's features once. `write_cache` runs an SSL teacher
over whole files (loudness-normalised like the training data, in `chunk_seconds` pieces so
memory stays bounded) and stores float16 features at the teacher's frame rate in safetensors
shards; `CachedTeacher` slices the frames under an excerpt (name + offset from the loader)
and aligns them to the codec's frames exactly as the on-the-fly teacher does.

    <dir>/index.json          teacher settings, frame rate, dim, {file name: [shard, n_frames]}
    <dir>/shard_00000.safetensors   one tensor [n_frames, D] per file, keyed by its name

Approximations against the on-the-fly teacher: features see the whole file's context rather
than the excerpt alone, and not the excerpt's augmentation (gain, polarity).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from ..errors import AudiotokError
from ..fileio import atomic_path
from .distill_config import TeacherConfig
from .teachers import SSLTeacher, align_frames

CACHE_FORMAT = 1
SHARD_BYTES = 256 * 2 ** 20


def _teacher_key(cfg: TeacherConfig) -> dict:
    """The settings that change the features (what a cache must match to be reused)."""
    key = asdict(cfg)
    key.pop("cache")
    return key


def write_cache(cfg: TeacherConfig, items, out_dir, loudness_db: float | None = -24.0,
                device: str = "cpu", chunk_seconds: float = 30.0, progress: bool = True
                ) -> Path:
    """Features of every item (AudioItem) into `out_dir`; returns the index path. Files that
    fail to decode are skipped and listed in the index under "failed"."""
    from tqdm import tqdm

    from ..audio import load_audio
    from ..data.transforms import normalize_loudness
    from ..errors import AudioError

    if cfg.type != "ssl":
        raise AudiotokError(f"only ssl teachers can be cached, not '{cfg.type}'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    teacher = SSLTeacher(cfg, cfg.sample_rate).to(device)
    chunk = max(1, int(chunk_seconds * cfg.sample_rate))
    files, failed, shard, shard_bytes, shard_id = {}, {}, {}, 0, 0
    for item in tqdm(items, desc="distill-cache", disable=not progress):
        try:
            wav, _ = load_audio(item.path, cfg.sample_rate, 1)
        except AudioError as e:
            failed[item.name] = str(e)
            continue
        if loudness_db is not None:
            wav = normalize_loudness(wav, cfg.sample_rate, loudness_db)
        feats = _file_features(teacher, wav, chunk, device)
        name = f"shard_{shard_id:05d}.safetensors"
        shard[item.name] = feats
        files[item.name] = (name, feats.shape[0])
        shard_bytes += feats.numel() * feats.element_size()
        if shard_bytes >= SHARD_BYTES:
            _write_shard(out / name, shard)
            shard, shard_bytes, shard_id = {}, 0, shard_id + 1
    if shard:
        _write_shard(out / f"shard_{shard_id:05d}.safetensors", shard)
    index = {"format": CACHE_FORMAT, "teacher": _teacher_key(cfg),
             "frame_rate": teacher.frame_rate, "dim": teacher.dim, "loudness_db": loudness_db,
             "files": {k: list(v) for k, v in files.items()}, "failed": failed}
    with atomic_path(out / "index.json") as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n")
    return out / "index.json"


def _file_features(teacher: SSLTeacher, wav: Tensor, chunk: int, device) -> Tensor:
    """wav [1, T] at the teacher's rate -> float16 [round(T / stride), D] on the CPU; each
    chunk is aligned to its exact frame count so frames stay on the teacher's frame grid."""
    stride = teacher.cfg.sample_rate / teacher.frame_rate
    parts = []
    with torch.no_grad():
        for i in range(0, wav.shape[-1], chunk):
            piece = wav[None, :, i:i + chunk].to(device)
            n = max(1, round(piece.shape[-1] / stride))
            parts.append(teacher.audio_features(piece, n)[0].half().cpu())
    return torch.cat(parts)


def _write_shard(path: Path, tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


class CachedTeacher:
    """Reads an SSL teacher's features from a cache instead of running it (no model loaded)."""

    def __init__(self, cfg: TeacherConfig, frame_rate: float):
        root = Path(cfg.cache)
        index_file = root / "index.json"
        if not index_file.is_file():
            raise AudiotokError(f"{root}: no feature cache here (run `audiotok distill-cache`)")
        index = json.loads(index_file.read_text())
        if index.get("format") != CACHE_FORMAT:
            raise AudiotokError(f"{root}: cache format {index.get('format')}, expected "
                                f"{CACHE_FORMAT}")
        want, have = _teacher_key(cfg), index["teacher"]
        diff = [k for k in want if have.get(k) != want[k]]
        if diff:
            cached = ", ".join(f"{k}={have.get(k)!r}" for k in diff)
            wanted = ", ".join(f"{k}={want[k]!r}" for k in diff)
            raise AudiotokError(f"{root}: cache was written for another teacher setting "
                                f"({cached}; the recipe has {wanted})")
        self.root, self.cfg = root, cfg
        self.dim, self.teacher_rate = int(index["dim"]), float(index["frame_rate"])
        self.files = index["files"]
        self.frame_rate = frame_rate  # the codec's
        self._open: dict[str, object] = {}

    def to(self, device) -> CachedTeacher:
        return self

    def _frames(self, name: str) -> object:
        if name not in self.files:
            raise AudiotokError(f"{self.root}: no cached features for '{name}' (run "
                                f"`audiotok distill-cache` again for this corpus)")
        shard = self.files[name][0]
        if shard not in self._open:
            from safetensors import safe_open

            self._open[shard] = safe_open(str(self.root / shard), framework="pt")
        return self._open[shard].get_slice(name)

    def targets(self, wav: Tensor, batch: dict | None, n_frames: int) -> tuple[Tensor, Tensor]:
        """The cached frames under each excerpt -> ([B, n_frames, D], keep all)."""
        if batch is None or "name" not in batch:
            raise AudiotokError("a cached teacher needs the batch's file names and offsets")
        span = max(1, round(n_frames * self.teacher_rate / self.frame_rate))
        feats = []
        for name, start in zip(batch["name"], batch["start"].tolist()):
            frames = self._frames(name)
            total = self.files[name][1]
            a = min(math.floor(start * self.teacher_rate), max(total - 1, 0))
            x = frames[a:min(a + span, total)]
            if x.shape[0] < span:  # an excerpt padded past the end of its file
                x = torch.cat([x, x[-1:].expand(span - x.shape[0], -1)])
            feats.append(x)
        x = align_frames(torch.stack(feats).float(), n_frames).to(wav.device)
        return x, torch.ones(wav.shape[0], dtype=torch.bool, device=wav.device)
