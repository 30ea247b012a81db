"""SNAC's releases (Siuzdak et al. 2024; hubertsiuzdak/snac_24khz, snac_32khz, snac_44khz): a
folder with `config.json` (the SNAC(...) keyword arguments, no model_type) and
`pytorch_model.bin` (`torch.save(model.state_dict())`), as `SNAC.from_pretrained` reads it.

The network is audiotok's SNAC encoder/decoder (codecs/snac.py), whose module tree mirrors
the package's, and the multi-scale RVQ (quantizers/multiscale_rvq.py) with DAC's codeword
search (l2-normalised, the same expression: quantizers/search.py). Codes are laid out at the
finest level's rate, coarser levels repeated (see multiscale_rvq.py); `Tokens.level_codes()`
gives the package's list of per-level tensors back.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ...errors import AudiotokError
from .common import (
    PublishedFormat,
    build,
    package_version,
    place,
    read_json,
    split_leaf,
    torch_load,
)
from .common import provenance as make_provenance

# SNAC.__init__ defaults (snac/snac.py), for keys a config.json leaves out
DEFAULTS = {"sampling_rate": 44100, "encoder_dim": 64, "encoder_rates": [3, 3, 7, 7],
            "latent_dim": None, "decoder_dim": 1536, "decoder_rates": [7, 7, 3, 3],
            "attn_window_size": 32, "codebook_size": 4096, "codebook_dim": 8,
            "vq_strides": [8, 4, 2, 1], "noise": True, "depthwise": True}
WEIGHTS = "pytorch_model.bin"


def snac_config(path: Path, kwargs: dict) -> dict:
    """SNAC(...) keyword arguments -> audiotok CodecConfig dict."""
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:  # SNAC(**config) itself refuses these
        raise AudiotokError(f"{path}: unknown SNAC config key '{unknown[0]}'")
    k = {**DEFAULTS, **kwargs}
    latent = k["encoder_dim"] * 2 ** len(k["encoder_rates"])
    if k["latent_dim"] not in (None, latent):
        raise AudiotokError(f"{path}: latent_dim {k['latent_dim']} differs from encoder_dim * "
                            f"2^len(encoder_rates) = {latent}, which SNAC's encoder outputs")
    window = k["attn_window_size"]
    return {
        "family": f"snac-{round(k['sampling_rate'] / 1000)}khz",
        "sample_rate": k["sampling_rate"], "channels": 1, "latent_dim": latent,
        "encoder": {"type": "snac", "d_model": k["encoder_dim"],
                    "strides": list(k["encoder_rates"]), "depthwise": k["depthwise"],
                    "attn_window": window},
        "quantizer": {"type": "msrvq", "strides": list(k["vq_strides"]),
                      "codebook_size": k["codebook_size"], "codebook_dim": k["codebook_dim"],
                      "l2_normalize": True},
        "decoder": {"type": "snac", "channels": k["decoder_dim"],
                    "strides": list(k["decoder_rates"]), "depthwise": k["depthwise"],
                    "attn_window": window, "noise": k["noise"]},
    }


def _module(key: str) -> str:
    """SNAC's module path -> audiotok's: the trees match but for three names."""
    key = key.replace("quantizer.quantizers.", "quantizer.levels.")
    key = key.replace(".rel_pos.inv_freq", ".inv_freq")
    return "encoder.model." + key[len("encoder.block."):] if key.startswith("encoder.block.") \
        else key


def map_state(state: dict[str, Tensor], ours: set[str]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        module, leaf = split_leaf(_module(key))
        out[place(module, leaf, ours)] = value
    return out


def files(path: Path) -> tuple[Path, Path]:
    """(config.json, pytorch_model.bin) of a release folder, or of the weights file."""
    folder = path if path.is_dir() else path.parent
    weights = folder / WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise AudiotokError(f"{folder}: no {WEIGHTS} beside config.json (a SNAC release "
                            f"folder holds both)")
    return folder / "config.json", weights


def convert(path: Path):
    config_file, weights = files(path)
    config = snac_config(config_file, read_json(config_file))
    state = torch_load(weights)
    if not isinstance(state, dict) or not any(str(k).startswith("quantizer.quantizers.")
                                              for k in state):
        raise AudiotokError(f"{weights}: not a SNAC state dict (no quantizer.quantizers.*)")
    provenance = make_provenance("SNAC config.json + pytorch_model.bin", weights, weights,
                                 "MIT (snac)", f"snac {package_version('snac')}")
    return build(weights, config, lambda ours: map_state(state, ours), provenance)


def _is_snac_config(config: Path) -> bool:
    try:
        cfg = read_json(config)
    except AudiotokError:
        return False
    return "model_type" not in cfg and {"vq_strides", "encoder_rates", "decoder_rates"} <= set(cfg)


def recognise(path: Path) -> bool:
    if path.is_file():
        return path.name.endswith(".bin") and _is_snac_config(path.parent / "config.json")
    return path.is_dir() and _is_snac_config(path / "config.json")


SNAC_RELEASE = PublishedFormat("SNAC", recognise, convert)
