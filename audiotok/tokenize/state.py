"""The output folder as the job's only shared state, so ranks and reruns need no server:

    OUT/plan.json                  the job (inputs digest, codec, format, options)
    OUT/shard-NNNNN.<ext>          shards, each renamed into place when complete
    OUT/.audiotok/done/NNNNN.json  written after its shard: records, audio seconds, failures
    OUT/.audiotok/locks            one byte-range lock per shard while a process writes it
    OUT/index.json, failed.jsonl   written by whichever process finds every shard done

A shard counts as done only once its marker exists, so a kill between the shard's rename
and its marker just redoes that shard. Locks are POSIX record locks: the kernel drops them
when their process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from .._version import __version__
from ..errors import AudiotokError
from ..fileio import atomic_path
from .plan import Plan, check_same_job
from .writers import FORMATS, shard_name, shard_path

INDEX_VERSION = 1


class OutputDir:
    def __init__(self, out: Path, fmt: str):
        self.out, self.fmt = Path(out), fmt
        self.meta = self.out / ".audiotok"
        self.done_dir = self.meta / "done"

    # ------------------------------------------------------------------ job record
    def check_or_record(self, job: dict) -> None:
        """Resume only the same job; record it on the first run."""
        plan_file = self.out / "plan.json"
        if self.out.exists() and not self.out.is_dir():
            raise AudiotokError(f"{self.out} is a file; --output must be a folder")
        if plan_file.is_file():
            check_same_job(json.loads(plan_file.read_text()), job, self.out)
            return
        # another rank may be recording the same job right now: its files do not count
        others = [p for p in self.out.iterdir() if p.name != ".audiotok"
                  and not p.name.startswith(".plan.json.")] if self.out.is_dir() else []
        if others:
            raise AudiotokError(f"{self.out} is not empty and holds no tokenize job; choose an "
                                f"empty or new --output folder")
        self.done_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(plan_file) as tmp:  # ranks racing here write identical files
            tmp.write_text(json.dumps({**job, "audiotok_version": __version__}, indent=1))

    # ------------------------------------------------------------------ shards
    def marker(self, shard: int) -> Path:
        return self.done_dir / f"{shard_name(shard)}.json"

    def is_done(self, shard: int) -> bool:
        return self.marker(shard).is_file()

    def mark_done(self, shard: int, worker: int, records: int, seconds: float,
                  failed: list[dict]) -> None:
        info = {"shard": shard, "file": self.shard_file(shard), "worker": worker,
                "records": records, "seconds": seconds, "failed": failed}
        with atomic_path(self.marker(shard)) as tmp:
            tmp.write_text(json.dumps(info))

    def shard_file(self, shard: int) -> str:
        return shard_path(self.out, self.fmt, shard).relative_to(self.out).as_posix()

    def remove_temps(self, shard: int, ids: list[str]) -> None:
        """Temp files left by a killed writer of this shard (the caller holds its lock)."""
        target = shard_path(self.out, self.fmt, shard)
        patterns = [(target.parent, target.name), (self.done_dir, self.marker(shard).name)]
        if self.fmt == "npy":
            patterns += [((self.out / "codes" / i).parent, Path(i).name + ".npy") for i in ids]
        for folder, name in patterns:
            for tmp in folder.glob(f".{_escape(name)}.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    # ------------------------------------------------------------------ index
    def finish(self, plan: Plan, job: dict) -> dict | None:
        """Write index.json (and failed.jsonl, and index.jsonl for npy) if every shard is
        done; return the index, or None while shards remain."""
        if not all(self.is_done(s) for s in range(plan.n_shards)):
            return None
        markers = [json.loads(self.marker(s).read_text()) for s in range(plan.n_shards)]
        failed = [f for m in markers for f in m["failed"]]
        with atomic_path(self.out / "failed.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(f) + "\n" for f in failed))
        if self.fmt == "npy":
            with atomic_path(self.out / "index.jsonl") as tmp, open(tmp, "wb") as dst:
                dst.writelines((self.out / m["file"]).read_bytes() for m in markers)
        index = {
            "index_version": INDEX_VERSION, "format": self.fmt, "codec": job["codec"],
            "codec_ref": job["codec_ref"], "n_codebooks": job["n_codebooks"],
            "columns": job["columns"], "records": sum(m["records"] for m in markers),
            "failed": len(failed),
            "audio_hours": sum(m["seconds"] for m in markers) / 3600,
            "shards": [{"file": m["file"], "records": m["records"]} for m in markers],
        }
        with atomic_path(self.out / "index.json") as tmp:
            tmp.write_text(json.dumps(index, indent=1))
        return index


def _escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


class ShardLocks:
    """Claims on shards (one lock byte each in one file), so two processes never write
    the same shard, and a rerun started while an old worker still runs skips its shards."""

    def __init__(self, out: OutputDir):
        out.meta.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(out.meta / "locks", os.O_RDWR | os.O_CREAT, 0o666)

    def claim(self, shard: int) -> bool:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, shard)
        except OSError:
            return False
        return True

    def release(self, shard: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, shard)

    def close(self) -> None:
        os.close(self._fd)  # drops every lock this process holds on the file


def read_index(out: Path) -> dict:
    """index.json of a finished job, with one-line errors for the usual mistakes."""
    out = Path(out)
    index_file = out / "index.json"
    if not index_file.is_file():
        hint = ("the job is unfinished: rerun the same tokenize command"
                if (out / "plan.json").is_file() else "not a tokenize output folder")
        raise AudiotokError(f"{out}: no index.json ({hint})")
    index = json.loads(index_file.read_text())
    if index.get("format") not in FORMATS:
        raise AudiotokError(f"{index_file}: unknown format {index.get('format')!r}")
    return index
