"""Finding and opening codecs: checkpoint directories, recipe files, preset names."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..errors import AudiotokError, ConfigError
from ..recipe import load_recipe
from ..strict_config import from_dict
from .base import CHECKPOINT_FORMAT, Codec, CodecConfig
from .presets import PRESETS
from .published import find_format
from .published.names import NAMES as PUBLISHED_NAMES
from .published.names import is_hub_ref, resolve

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"


def bundled_models() -> dict[str, Path]:
    """Trained codecs shipped inside the package: name -> checkpoint directory."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {f"audiotok/{p.name}": p for p in sorted(BUNDLED_DIR.iterdir())
            if (p / "config.json").is_file()}


def list_codecs() -> list[str]:
    """Names `load_codec` accepts besides paths: bundled trained models, published codecs
    (from the Hugging Face cache), then preset names (codecs/presets.py: each builds an
    untrained codec of its family's default size)."""
    return list(bundled_models()) + list(PUBLISHED_NAMES) + sorted(PRESETS)


def default_codec() -> str:
    """The codec used when none is named: the bundled trained model."""
    bundled = bundled_models()
    if not bundled:
        raise AudiotokError("no codec given and no bundled model is installed; name one "
                            f"({', '.join(list_codecs())})")
    return next(iter(bundled))


def is_untrained(codec: Codec) -> bool:
    """True for codecs built from a recipe or preset name (seeded random weights): their ref
    is neither a bundled model nor a checkpoint directory, and no publisher's weights were
    loaded into them."""
    ref = codec.ref
    return (ref is not None and codec.provenance is None and ref not in bundled_models()
            and not Path(ref).is_dir())


def load_codec(ref=None, device="cpu", seed: int = 0) -> Codec:
    """Open a codec from a checkpoint directory, a published codec's own release file (see
    codecs/published/), a recipe YAML, or a name in `list_codecs()`; with no `ref`, the
    bundled trained model (`default_codec()`). A folder written by `audiotok export --format
    onnx` opens as an OnnxCodec (export/onnx_codec.py): the same encode/decode, run by
    onnxruntime.

    A recipe or preset name builds an untrained codec whose weights are drawn with `seed`,
    so the same call always gives the same codec (useful for tests and pipelines; its
    reconstructions are noise until trained).
    """
    bundled = bundled_models()
    if ref is None:
        ref = default_codec()
    name = str(ref)
    path = Path(ref)
    published = find_format(path) if name not in bundled else None
    if name in bundled:
        codec = load_pretrained(bundled[name], device)
    elif published is not None:  # a publisher's own release format (codecs/published/)
        codec, name = published.convert(path).to(device), str(path.resolve())
    elif (path / "onnx.json").is_file():  # an ONNX export (export/onnx.py)
        from ..export.onnx_codec import OnnxCodec

        codec, name = OnnxCodec.open(path).to(device), str(path.resolve())
    elif path.is_dir():
        codec, name = load_pretrained(path, device), str(path.resolve())
    elif path.suffix in (".yaml", ".yml"):
        recipe = load_recipe(path)
        if "model" not in recipe:
            raise ConfigError(f"{path}: recipe has no 'model' section")
        codec, name = _untrained(recipe["model"], seed, device), str(path.resolve())
    elif name in PRESETS:
        codec = _untrained(PRESETS[name], seed, device)
    elif is_hub_ref(name):  # a published codec by short name or hub id
        folder = resolve(name)
        fmt = find_format(folder)
        if fmt is None:
            raise AudiotokError(f"{name}: {folder} holds no codec format audiotok reads")
        codec = fmt.convert(folder).to(device)
    elif path.is_file():
        raise AudiotokError(f"{path}: not a codec file audiotok reads (a publisher's release: "
                            f"DAC .pth, EnCodec .th, moshi Mimi .safetensors, SpeechTokenizer "
                            f"or SNAC weights beside their config.json, WavTokenizer .ckpt "
                            f"beside its YAML; or a recipe .yaml)")
    else:
        raise AudiotokError(
            f"no codec '{name}': not a checkpoint directory, recipe file, or known name "
            f"({', '.join(list_codecs())})"
        )
    codec.ref = name
    return codec


def _untrained(model: dict, seed: int, device) -> Codec:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        codec = Codec(from_dict(CodecConfig, model, "model"))
    return codec.to(device).eval()


def load_pretrained(path, device="cpu") -> Codec:
    """Open `config.json` + `model.safetensors` strictly; nothing is unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_file, weights = path / "config.json", path / "model.safetensors"
    for f in (config_file, weights):
        if not f.is_file():
            raise AudiotokError(f"{path}: not a codec checkpoint (missing {f.name})")
    try:
        meta = json.loads(config_file.read_text())
    except ValueError as e:
        raise AudiotokError(f"{config_file}: invalid JSON ({e})") from None
    version = meta.get("format_version")
    if version is None and meta.get("format") == "beats_ssl":
        raise AudiotokError(f"{path} is a BEATs SSL model, not a codec: the tokenizer that "
                            f"labelled its training is the run's `tokenizer` folder")
    if version != CHECKPOINT_FORMAT:
        raise AudiotokError(
            f"{path}: checkpoint format {version}; this audiotok reads {CHECKPOINT_FORMAT}"
        )
    codec = Codec(from_dict(CodecConfig, meta["config"], "config"))
    codec.config_record = meta["config"]
    codec.provenance = meta.get("provenance")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise AudiotokError(f"{weights}: unreadable weights ({e})") from None
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise AudiotokError(f"{weights}: weights do not match config ({str(e).splitlines()[0]})"
                            ) from None
    expected = meta.get("spec", {}).get("fingerprint")
    if expected and expected != codec.fingerprint():
        warnings.warn(f"{path}: weights fingerprint {codec.fingerprint()} differs from the "
                      f"one recorded at save time ({expected})", stacklevel=2)
    return codec.to(device).eval()
