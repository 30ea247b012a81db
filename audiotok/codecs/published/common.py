"""What every publisher format shares: safe loading, hashing, strict weight mapping."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...errors import AudiotokError


@dataclass(frozen=True)
class PublishedFormat:
    """One publisher's checkpoint format. `recognise(path)` is cheap (names and headers);
    `convert(path)` reads the weights and returns the audiotok Codec holding them, with
    `codec.provenance` saying where they came from."""

    name: str
    recognise: Callable[[Path], bool]
    convert: Callable[[Path], object]


def build(path: Path, config: dict, map_state: Callable[[set[str]], dict[str, Tensor]],
          provenance: dict):
    """The Codec of `config` holding the publisher's weights. `map_state(names)` gives the
    weights under audiotok's names (it may look at the codec's own names to place them).
    Training-only buffers the publisher does not have keep their fresh values, except that
    codebooks count as initialised (no k-means over a fine-tune's first batch)."""
    from ..base import Codec

    codec = Codec.from_config(config)
    # the converter's own dict, not one with every default filled in: the fingerprint (and so
    # token files made with these weights) stays valid when audiotok adds config fields
    codec.config_record = config
    mine = codec.state_dict()
    state = map_state(set(mine))
    extra = {k: v for k, v in mine.items() if k.endswith((".usage", ".initialized"))}
    given = {k: state.pop(k) for k in extra if k in state}  # a publisher that has them
    check_mapping(path, state, {k: v for k, v in mine.items() if k not in extra})
    for key, value in extra.items():
        state[key] = value.fill_(True) if key.endswith(".initialized") else value
    state.update(given)
    codec.load_state_dict(state, strict=True)
    codec.provenance = provenance
    return codec.eval()


def torch_load(path: Path) -> object:
    """torch.load that never runs a pickle's code (weights_only=True); any failure is one
    line that says what is wrong with the file."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unknown object"
        raise AudiotokError(f"{path}: refused: the file holds objects other than plain "
                            f"tensors and containers, and audiotok never runs a pickle's "
                            f"code ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudiotokError(f"{path}: not a readable PyTorch checkpoint (truncated or "
                            f"corrupt: {first})") from None


class Unread:
    """What `torch_load_tensors` puts where a checkpoint pickled an object of some class
    (Lightning's hyper-parameter namespaces, callbacks' state): the object is not built, its
    class not imported, its arguments dropped."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):  # stands in for functions as well
        return Unread()


def _tensor_pickle_module():
    """A pickle module whose unpickler resolves only the globals torch's weights_only loader
    allows (tensor rebuilders, storages, containers, dtypes); every other global becomes
    `Unread`, so no class or function that the file names is ever imported or called."""
    import types

    from torch import _weights_only_unpickler as safe

    allowed = safe._get_allowed_globals()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            return allowed.get(f"{module}.{name}", Unread)

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    module = types.ModuleType("audiotok_tensor_pickle")
    module.Unpickler, module.load = Unpickler, load
    return module


def torch_load_tensors(path: Path) -> object:
    """torch_load for files that pickle more than tensors and containers beside the weights
    (Lightning checkpoints: hyper-parameter objects, callback state): loaded with
    weights_only=True when it can be; otherwise with an unpickler that builds only what
    weights_only would and leaves every other object `Unread` (never importing or running
    anything the file names)."""
    try:
        return torch_load(path)
    except AudiotokError as e:
        if "refused" not in str(e):
            raise
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False,
                          pickle_module=_tensor_pickle_module())
    except Exception as e:  # noqa: BLE001 - torch's private loader: report, never crash
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudiotokError(f"{path}: refused: its objects other than tensors and containers "
                            f"could not be skipped ({first}); audiotok never runs a "
                            f"pickle's code") from None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def check_mapping(path: Path, state: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Raise naming the first weight that the codec built from the config lacks, does not
    get, or gets in another shape (a config whose shapes do not match the weights)."""
    for key, value in state.items():
        if key not in expected:
            raise AudiotokError(f"{path}: weight '{key}' has no place in the codec its "
                                f"config describes")
        if tuple(expected[key].shape) != tuple(value.shape):
            raise AudiotokError(f"{path}: weight '{key}' has shape {tuple(value.shape)}, the "
                                f"config gives {tuple(expected[key].shape)}")
    missing = [k for k in expected if k not in state]
    if missing:
        raise AudiotokError(f"{path}: the checkpoint lacks weight '{missing[0]}' "
                            f"({len(missing)} missing)")


# a publisher's weight-norm tensors -> audiotok's (torch.nn.utils.parametrizations)
WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0",
               "weight_v": "parametrizations.weight.original1",
               "parametrizations.weight.original0": "parametrizations.weight.original0",
               "parametrizations.weight.original1": "parametrizations.weight.original1"}


def place(module: str, leaf: str, ours: set[str]) -> str:
    """audiotok's name for tensor `leaf` of module `module` (already in audiotok's module
    path): audiotok's convs keep the torch layer one level down (`.conv` / `.convtr`)."""
    leaf = WEIGHT_NORM.get(leaf, leaf)
    return next((f"{module}.{inner}{leaf}" for inner in ("conv.", "convtr.", "")
                 if f"{module}.{inner}{leaf}" in ours), f"{module}.{leaf}")


def split_leaf(key: str) -> tuple[str, str]:
    """'a.b.weight_g' -> ('a.b', 'weight_g'); parametrized weights keep their three parts."""
    for tail in ("parametrizations.weight.original0", "parametrizations.weight.original1"):
        if key.endswith("." + tail):
            return key[: -len(tail) - 1], tail
    module, _, leaf = key.rpartition(".")
    return module, leaf


def one_checkpoint(path: Path, pattern: str, what: str) -> tuple[Path, Path]:
    """(folder, checkpoint) for formats whose weights sit beside their config: `path` is the
    checkpoint itself, or a folder holding exactly one file matching `pattern`."""
    folder = path if path.is_dir() else path.parent
    ckpts = [path] if path.is_file() else sorted(folder.glob(pattern))
    if len(ckpts) != 1:
        raise AudiotokError(f"{path}: expected one {what} checkpoint ({pattern}), found "
                            f"{len(ckpts)}")
    return folder, ckpts[0]


def read_json(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AudiotokError(f"{path}: unreadable JSON ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise AudiotokError(f"{path}: expected a JSON object")
    return data


def read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise AudiotokError(f"{path}: unreadable safetensors file (truncated or corrupt: "
                            f"{' '.join(str(e).split())})") from None


def read_transformers_folder(path: Path, model_type: str) -> tuple[dict, dict[str, Tensor], Path]:
    """A transformers model folder of `model_type` -> (its config, its weights, weights file)."""
    hf = read_json(path / "config.json")
    if hf.get("model_type") != model_type:
        raise AudiotokError(f"{path}: not a transformers {model_type} model (model_type is "
                            f"{hf.get('model_type')!r})")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise AudiotokError(f"{path}: no model.safetensors beside config.json")
    return hf, read_safetensors(weights), weights


def transformers_recogniser(model_type: str) -> Callable[[Path], bool]:
    """recognise() for transformers folders whose config.json names `model_type`."""
    def recognise(path: Path) -> bool:
        config = path / "config.json"
        if not (path.is_dir() and config.is_file()):
            return False
        try:
            return read_json(config).get("model_type") == model_type
        except AudiotokError:
            return False
    return recognise


def provenance(fmt: str, source: Path, weights: Path, licence: str, matches: str) -> dict:
    """Where converted weights came from; `weights` is the file hashed."""
    return {"format": fmt, "source": str(source.resolve()), "sha256": sha256(weights),
            "licence": licence, "matches": matches, "trainable": True}
