"""What a tokenize job covers: the input list, its fixed split into shards, and the job
record (`plan.json`) that makes a rerun resume the same job instead of mixing two.

    utterances = list_inputs("/corpora/speech")      # or "clips/*.flac", "train.jsonl"
    plan = Plan(utterances, shard_size=1000)
    plan.shards_for(worker=1, n_workers=4)           # [1, 5, 9, ...]

Everything here is a pure function of the inputs, so every rank of a torchrun job (and
every rerun) computes the same shards without talking to the others.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..data.data_config import AUDIO_EXTENSIONS
from ..data.manifest import parse_manifest_line
from ..errors import AudiotokError

# columns every record has; manifest keys may not reuse these names
RESERVED = ("id", "codes", "n_frames", "num_samples", "codec")


@dataclass(frozen=True)
class Utterance:
    """One input file. `id` is unique in the job: the path relative to the folder (or glob
    root), or a manifest's "id" field (else its "path" as written)."""

    id: str
    path: str
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def duration(self) -> float | None:
        """A manifest's "duration", which spares a header probe when grouping by length."""
        d = self.meta.get("duration")
        return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else None


def list_inputs(source: str) -> list[Utterance]:
    """A folder (recursive), a glob pattern, a `.jsonl` manifest or one audio file -> the
    utterances sorted by id. Missing or unreadable files are not checked here: they fail
    at decode time and are reported, so a listing of millions of files costs no decoding."""
    path = Path(source)
    if path.is_dir():
        utts = _list_folder(path)
        where = f"searched {source} recursively for {'/'.join(AUDIO_EXTENSIONS)} files"
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        utts, where = _list_manifest(path), f"manifest {source} lists no files"
    elif path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
        utts, where = [Utterance(path.name, str(path))], ""
    elif glob.has_magic(source):
        utts, where = _list_glob(source), f"pattern {source} matches no audio files"
    elif not path.exists():
        raise AudiotokError(f"{source}: no such folder, manifest or file")
    else:
        raise AudiotokError(f"{source}: expected a folder of audio files, a glob pattern or "
                            f"a .jsonl manifest")
    if not utts:
        raise AudiotokError(f"no audio files found ({where})")
    utts.sort(key=lambda u: u.id)
    for a, b in itertools.pairwise(utts):
        if a.id == b.id:
            raise AudiotokError(f"utterance id '{a.id}' appears twice ({a.path} and {b.path});"
                                f" ids must be unique")
    return utts


def _list_folder(folder: Path) -> list[Utterance]:
    utts = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in files:
            if name.lower().endswith(AUDIO_EXTENSIONS):
                path = Path(root) / name
                utts.append(Utterance(path.relative_to(folder).as_posix(), str(path)))
    return utts


def _list_glob(pattern: str) -> list[Utterance]:
    """Ids are relative to the pattern's fixed leading folders ("data/*/x.wav" -> "data")."""
    parts = Path(pattern).parts
    fixed = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    return [Utterance(Path(p).relative_to(root).as_posix(), p)
            for p in glob.glob(pattern, recursive=True)
            if p.lower().endswith(AUDIO_EXTENSIONS) and Path(p).is_file()]


def _list_manifest(manifest: Path) -> list[Utterance]:
    utts = []
    with open(manifest, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            entry = parse_manifest_line(manifest, number, line)
            uid = entry.pop("id", entry["path"])
            if not isinstance(uid, str) or not uid:
                raise AudiotokError(f"{manifest} line {number}: \"id\" must be a non-empty "
                                    f"string, got {uid!r}")
            clash = [k for k in entry if k in RESERVED]
            if clash:
                raise AudiotokError(f"{manifest} line {number}: key \"{clash[0]}\" is an "
                                    f"output column name; rename it")
            path = Path(entry["path"])
            utts.append(Utterance(uid, str(path if path.is_absolute()
                                           else manifest.parent / path), entry))
    return utts


def column_types(utts: list[Utterance]) -> dict[str, str]:
    """Carried metadata columns and one type each (string, int64, float64, bool or json),
    fixed for the whole job so every shard has the same schema."""
    seen: dict[str, set[str]] = {}
    for u in utts:
        for key, value in u.meta.items():
            seen.setdefault(key, set()).add(_kind(value))
    types = {}
    for key in sorted(seen):
        kinds = seen[key] - {"null"}
        if kinds <= {"int64", "float64"} and kinds:
            types[key] = "float64" if "float64" in kinds else "int64"
        else:
            types[key] = kinds.pop() if len(kinds) == 1 else "json"
    return types


def _kind(value) -> str:
    if value is None:
        return "null"
    for kind, t in (("bool", bool), ("int64", int), ("float64", float), ("string", str)):
        if isinstance(value, t):
            return kind
    return "json"


def check_npy_ids(utts: list[Utterance]) -> None:
    """The npy format writes a file per id, so an id must be a safe relative path."""
    for u in utts:
        p = PurePosixPath(u.id)
        if p.is_absolute() or ".." in p.parts or not p.name or "\\" in u.id:
            raise AudiotokError(f"utterance id '{u.id}' cannot name a file under the output "
                                f"folder; use --format parquet or webdataset")


@dataclass(frozen=True)
class Plan:
    """Utterances (sorted by id) cut into shards of `shard_size`; shard i goes to worker
    i % n_workers, so any number of workers covers every shard once."""

    utterances: list[Utterance]
    shard_size: int

    def __post_init__(self):
        if self.shard_size < 1:
            raise AudiotokError(f"--shard-size must be at least 1, got {self.shard_size}")

    @property
    def n_shards(self) -> int:
        return -(-len(self.utterances) // self.shard_size)

    def shard(self, i: int) -> list[Utterance]:
        return self.utterances[i * self.shard_size:(i + 1) * self.shard_size]

    def first_index(self, i: int) -> int:
        """Position of shard i's first utterance in the whole job (a stable record key)."""
        return i * self.shard_size

    def shards_for(self, worker: int, n_workers: int) -> list[int]:
        return list(range(worker, self.n_shards, n_workers))

    def digest(self) -> str:
        """Identifies the input list: ids and carried metadata (not the folder's location,
        so a moved corpus still resumes)."""
        h = hashlib.sha256()
        for u in self.utterances:
            h.update(json.dumps([u.id, u.meta], sort_keys=True, default=str).encode())
            h.update(b"\n")
        return h.hexdigest()[:32]


def check_same_job(existing: dict, job: dict, out: Path) -> None:
    """Refuse to resume into a folder made by a different command (other inputs, codec,
    format or options): mixing them would give shards that disagree."""
    for key in sorted(set(existing) | set(job)):
        if key in ("codec_ref", "audiotok_version", "source"):
            continue  # the same codec or corpus may move; its fingerprint/digest decides
        if existing.get(key) != job.get(key):
            raise AudiotokError(
                f"{out} holds a different tokenize job ({key} was {_short(existing.get(key))},"
                f" now {_short(job.get(key))}); rerun the original command to resume it or "
                f"choose another --output")


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 60 else text[:57] + "..."
