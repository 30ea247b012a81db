"""Training checkpoints that survive a kill at any moment.

Layout under `<run>/checkpoints/`:
    step_00001000/           one complete checkpoint
        model.safetensors    codec weights (what `save_pretrained` writes)
        config.json
        discriminator.safetensors
        distill_heads.safetensors   training-only distillation heads, if the recipe has any
        state.pt             optimizers, schedulers, RNG states, step, data position
                             (tensors and plain containers only: loaded with weights_only)
    latest                   text file naming the newest complete checkpoint

A checkpoint is written into `step_X.tmp-<pid>/` and renamed into place only when every file
is on disk, then `latest` is replaced atomically; a kill mid-write leaves a `.tmp` folder
that resume ignores and the next save removes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..fileio import atomic_write_bytes

STATE_FILE = "state.pt"


def lock_run_dir(run_dir):
    """Hold an exclusive lock on `run_dir` for this process's lifetime (returns the open
    file); a second trainer on the same run directory fails at once instead of interleaving
    checkpoints."""
    import fcntl

    from ..errors import AudiotokError

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    handle = open(Path(run_dir) / ".lock", "a+")  # noqa: SIM115  (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AudiotokError(f"{run_dir} is in use by another training run; stop it or pick "
                            f"another --set train.run_dir") from None
    return handle


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir, step: int, codec, discriminator, state: dict, keep: int = 2,
                    modules: dict | None = None) -> Path:
    """Write checkpoint `step` atomically and keep the newest `keep` complete ones.
    `modules` {file stem: nn.Module} go into `<stem>.safetensors` beside the codec."""
    from safetensors.torch import save_file

    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    codec.save_pretrained(tmp)
    if discriminator is not None:
        disc = {k: v.detach().cpu().contiguous() for k, v in discriminator.state_dict().items()}
        save_file(disc, str(tmp / "discriminator.safetensors"))
    for stem, module in (modules or {}).items():
        tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(tensors, str(tmp / f"{stem}.safetensors"))
    torch.save({**state, "step": step}, tmp / STATE_FILE)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_bytes(root / "latest", f"{final.name}\n".encode())
    _prune(root, keep)
    return final


def find_latest(run_dir) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return None
    pointer = root / "latest"
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if _complete(named):
            return named
    done = sorted(p for p in root.glob("step_*") if ".tmp" not in p.name and _complete(p))
    return done[-1] if done else None


def load_state(ckpt: Path) -> dict:
    return torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)


def load_discriminator(ckpt: Path, discriminator) -> None:
    load_module(ckpt, "discriminator", discriminator)


def load_module(ckpt: Path, stem: str, module) -> None:
    """Load `<stem>.safetensors` of checkpoint `ckpt` into `module` (strictly)."""
    from safetensors.torch import load_file

    from ..errors import AudiotokError

    path = ckpt / f"{stem}.safetensors"
    if not path.is_file():
        raise AudiotokError(f"{ckpt}: checkpoint has no {path.name} (was it written by a "
                            f"recipe without this part?)")
    module.load_state_dict(load_file(str(path)))


def _complete(path: Path) -> bool:
    return all((path / f).is_file() for f in ("model.safetensors", "config.json", STATE_FILE))


def _prune(root: Path, keep: int) -> None:
    for stale in root.glob("step_*.tmp-*"):
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)
    done = sorted(p for p in root.glob("step_*") if ".tmp" not in p.name)
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
