"""DAC in the transformers format (`DacModel`: config.json + model.safetensors), as the hub's
descript/dac_16khz, dac_24khz and dac_44khz are published.

Same network as descript-audio-codec's (published/dac.py), under other names. The hub's
weights are stored plain (weight norm folded in), so the layers are built without weight norm,
and DacModel's codeword search is kept as it is written (quantizers/search.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from .common import (
    PublishedFormat,
    build,
    package_version,
    place,
    read_transformers_folder,
    split_leaf,
    transformers_recogniser,
)
from .common import provenance as make_provenance
from .dac import dac_config

RES = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}  # inside a residual unit


def module_name(key: str, n_enc: int, n_dec: int) -> str:
    """DacModel's module path -> audiotok's (both stacks: conv, 5 modules per stride, snake,
    conv; see published/dac.py)."""
    m = re.fullmatch(r"(encoder|decoder)\.(conv1|snake1|conv2)", key)
    if m:
        n = n_enc if m[1] == "encoder" else n_dec
        return f"{m[1]}.model.{ {'conv1': 0, 'snake1': 5 * n + 1, 'conv2': 5 * n + 2}[m[2]] }"
    m = re.fullmatch(r"(encoder|decoder)\.block\.(\d+)\.(\w+?)(\d?)(?:\.(\w+))?", key)
    if m:
        side, i, part, r, inner = m[1], int(m[2]), m[3], m[4], m[5]
        base = 1 + 5 * i
        if part == "res_unit":
            offset = int(r) - 1 if side == "encoder" else int(r) + 1
            return f"{side}.model.{base + offset}.block.{RES[inner]}"
        offset = {("encoder", "snake"): 3, ("encoder", "conv"): 4,
                  ("decoder", "snake"): 0, ("decoder", "conv_t"): 1}.get((side, part))
        if offset is not None:
            return f"{side}.model.{base + offset}"
    return key.replace("quantizer.quantizers.", "quantizer.levels.")


def _config(hf: dict, plain: bool) -> dict:
    kwargs = {"encoder_dim": hf.get("encoder_hidden_size", 64),
              "encoder_rates": hf.get("downsampling_ratios", [2, 4, 8, 8]),
              "decoder_dim": hf.get("decoder_hidden_size", 1536),
              "decoder_rates": hf.get("upsampling_ratios", [8, 8, 4, 2]),
              "n_codebooks": hf.get("n_codebooks", 9),
              "codebook_size": hf.get("codebook_size", 1024),
              "codebook_dim": hf.get("codebook_dim", 8),
              "latent_dim": hf.get("hidden_size"),
              "sample_rate": hf.get("sampling_rate", 44100)}
    config = dac_config(kwargs)
    config["quantizer"]["search"] = "transformers_dac"
    if plain:
        config["encoder"]["norm"] = config["decoder"]["norm"] = "none"
        config["quantizer"]["projection_norm"] = False
    return config


def convert(path: Path):
    hf, state, weights = read_transformers_folder(path, "dac")
    plain = not any(k.endswith(("weight_g", "original0")) for k in state)
    config = _config(hf, plain)
    n_enc, n_dec = len(config["encoder"]["strides"]), len(config["decoder"]["strides"])

    def mapped(ours: set[str]) -> dict[str, Tensor]:
        out = {}
        for key, value in state.items():
            module, leaf = split_leaf(key)
            out[place(module_name(module, n_enc, n_dec), leaf, ours)] = value
        return out

    provenance = make_provenance(
        "transformers DacModel", path, weights, "MIT (descript-audio-codec)",
        f"transformers {package_version('transformers')} DacModel")
    return build(path, config, mapped, provenance)


DAC_TRANSFORMERS = PublishedFormat("transformers DacModel", transformers_recogniser("dac"), convert)
