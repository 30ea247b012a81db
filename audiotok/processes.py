"""Child processes that never outlive the process that started them.

A `kill -9` of `audiotok tokenize` or `train` gives the parent no chance to stop its
workers. Left alone, a DataLoader worker notices only when it next polls (and can then hang
for good flushing a queue nobody reads), holding memory and the caller's stdout/stderr
pipes. Linux can send a signal to a child when its parent dies (PR_SET_PDEATHSIG); it is
cleared on fork, so every child sets it for itself, first thing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when `parent` (its parent's pid, as the parent
    saw it) exits; exit at once if the parent is already gone. Linux only, else a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def loader_worker_init(extra=None):
    """A DataLoader `worker_init_fn` that ties each worker to the process creating the
    loader, then runs `extra(worker_id)` if given. Call it in that process."""
    return functools.partial(_init_worker, os.getpid(), extra)


def _init_worker(parent: int, extra, worker_id: int) -> None:
    die_with_parent(parent)
    if extra is not None:
        extra(worker_id)
