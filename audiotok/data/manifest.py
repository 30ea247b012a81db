"""The file list: audio files found in a folder or listed in a JSONL manifest, with durations,
and the deterministic train/validation split.

    index = index_files("/corpora/speech")          # or "train.jsonl"
    splits = build_items(cfg)                        # DataSplits(train=[...], val=[...])
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..audio import audio_info
from ..errors import AudioError, AudiotokError
from .data_config import AUDIO_EXTENSIONS, DataConfig


@dataclass(frozen=True)
class AudioItem:
    """One audio file. `name` is the path as listed (relative to the folder or manifest), so
    the validation split does not change when the corpus moves."""

    path: str
    duration: float  # seconds
    name: str
    text: str | None = None
    speaker: str | None = None
    language: str | None = None  # e.g. "en", "fr": tells the eval's ASR what it hears


@dataclass
class FileIndex:
    source: str
    items: list[AudioItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason" for unreadable entries
    too_short: int = 0                                # below min_seconds


@dataclass
class DataSplits:
    train: list[AudioItem]
    val: list[AudioItem]
    indexes: list[FileIndex]  # what indexing found and skipped, for logs


def index_files(source, min_seconds: float = 0.0) -> FileIndex:
    """Index a folder (recursively, by extension) or a `.jsonl` manifest. Files whose
    duration is unknown are probed with soundfile; unreadable ones are counted as skipped."""
    source = Path(source)
    if source.is_dir():
        index = _index_folder(source, min_seconds)
    elif source.suffix.lower() == ".jsonl" and source.is_file():
        index = _index_manifest(source, min_seconds)
    elif not source.exists():
        raise AudiotokError(f"{source}: no such folder or manifest")
    else:
        raise AudiotokError(f"{source}: expected a folder of audio files or a .jsonl manifest")
    if not index.items:
        raise AudiotokError(_nothing_found(index))
    return index


def _nothing_found(index: FileIndex) -> str:
    where = (f"searched {index.source} recursively for {'/'.join(AUDIO_EXTENSIONS)} files"
             if Path(index.source).is_dir() else f"read manifest {index.source}")
    reasons = []
    if index.skipped:
        reasons.append(f"{len(index.skipped)} unreadable, e.g. {index.skipped[0]}")
    if index.too_short:
        reasons.append(f"{index.too_short} shorter than min_seconds")
    return f"no usable audio found ({where}" + "".join(f"; {r}" for r in reasons) + ")"


def _index_folder(folder: Path, min_seconds: float) -> FileIndex:
    index = FileIndex(str(folder))
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(AUDIO_EXTENSIONS):
                path = Path(root) / name
                _add(index, path, path.relative_to(folder).as_posix(), None, min_seconds)
    return index


def _index_manifest(manifest: Path, min_seconds: float) -> FileIndex:
    index = FileIndex(str(manifest))
    with open(manifest, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            entry = parse_manifest_line(manifest, number, line)
            path = Path(entry["path"])
            path = path if path.is_absolute() else manifest.parent / path
            _add(index, path, entry["path"], entry, min_seconds)
    return index


def manifest_entries(manifest) -> list[tuple[int, dict]]:
    """(line number, entry) of each non-blank line of a `.jsonl` manifest, every entry checked
    as indexing checks it (a JSON object with a "path"; "duration", "text", "speaker",
    "language" well typed), with every other key kept as written."""
    manifest = Path(manifest)
    with open(manifest, encoding="utf-8") as f:
        return [(n, parse_manifest_line(manifest, n, line)) for n, line in enumerate(f, 1)
                if line.strip()]


def parse_manifest_line(manifest: Path, number: int, line: str) -> dict:
    where = f"{manifest} line {number}"
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as e:
        raise AudiotokError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(entry, dict):
        raise AudiotokError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        raise AudiotokError(f"{where}: missing \"path\" (each line needs a \"path\" string)")
    duration = entry.get("duration")
    if duration is not None and (isinstance(duration, bool)
                                 or not isinstance(duration, (int, float)) or duration < 0):
        raise AudiotokError(f"{where}: \"duration\" must be a number of seconds, "
                            f"got {duration!r}")
    for key in ("text", "speaker", "language"):
        if entry.get(key) is not None and not isinstance(entry[key], (str, int)):
            raise AudiotokError(f"{where}: \"{key}\" must be a string, got {entry[key]!r}")
    return entry


def _add(index: FileIndex, path: Path, name: str, entry: dict | None,
         min_seconds: float) -> None:
    entry = entry or {}
    duration = entry.get("duration")
    try:
        if duration is None:
            duration = audio_info(path).duration
        elif not path.is_file():  # a stat, not a decode: manifests may list millions
            raise AudioError(f"{path}: no such file")
    except AudioError as e:
        index.skipped.append(str(e))
        return
    if duration < min_seconds:
        index.too_short += 1
        return
    speaker = entry.get("speaker")
    language = entry.get("language")
    index.items.append(AudioItem(str(path), float(duration), name, entry.get("text"),
                                 None if speaker is None else str(speaker),
                                 None if language is None else str(language)))


def held_out(key: str, fraction: float) -> bool:
    """Stable membership: depends only on `key`, so adding files never moves old ones."""
    return _unit_hash(key) < fraction


def _unit_hash(key: str) -> float:
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_items(items: list[AudioItem], fraction: float, by_speaker: bool = False
                ) -> tuple[list[AudioItem], list[AudioItem]]:
    """Hold out about `fraction` of the files (or of the speakers), at least one, by hash."""
    if by_speaker:
        missing = [it.path for it in items if it.speaker is None]
        if missing:
            raise AudiotokError(f"val_by_speaker needs a \"speaker\" for every file; "
                                f"{len(missing)} have none, e.g. {missing[0]}")
    keys = sorted({it.speaker if by_speaker else it.name for it in items})
    unit = "speakers" if by_speaker else "files"
    if len(keys) < 2:
        raise AudiotokError(f"cannot hold out validation {unit} from only {len(keys)}; "
                            f"set data.val to a separate folder or manifest")
    val_keys = {k for k in keys if held_out(k, fraction)} or {min(keys, key=_unit_hash)}
    if len(val_keys) == len(keys):
        val_keys = {min(keys, key=_unit_hash)}
    key = (lambda it: it.speaker) if by_speaker else (lambda it: it.name)
    return ([it for it in items if key(it) not in val_keys],
            [it for it in items if key(it) in val_keys])


def build_items(cfg: DataConfig) -> DataSplits:
    """Index `cfg.train` (and `cfg.val`) and split off validation when `cfg.val` is None."""
    train = index_files(cfg.train, cfg.min_seconds)
    if cfg.val is not None:
        val = index_files(cfg.val, cfg.min_seconds)
        return DataSplits(train.items, val.items, [train, val])
    train_items, val_items = split_items(train.items, cfg.val_fraction, cfg.val_by_speaker)
    return DataSplits(train_items, val_items, [train])
