"""Atomic file writes: write a temp file in the same folder, fsync, rename over the target."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import WriteError

_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EISDIR: "a directory is in the way", errno.EACCES: "permission denied",
            errno.EROFS: "read-only file system", errno.ENOTDIR: "a file is in the way of a folder",
            errno.EEXIST: "a file is in the way of a folder"}


def write_error(path, e: OSError) -> WriteError:
    """`e` as a one-line WriteError that names `path` and says why in words."""
    reason = _REASONS.get(e.errno) or e.strerror or str(e) or type(e).__name__
    return WriteError(f"{path}: cannot write ({reason})")


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temp path next to `path`; on success it replaces `path`, on error it is removed.

    The temp name keeps the target's extension (`suffix`), because some writers (soundfile)
    pick the format from it.
    A failing write (disk full, a directory where the file should go, no permission) is
    raised as a `WriteError` naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.",
                                   suffix=suffix or path.suffix + ".tmp", dir=path.parent)
    except WriteError:
        raise
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError) and e.errno is not None:
            raise write_error(path, e) from None
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
