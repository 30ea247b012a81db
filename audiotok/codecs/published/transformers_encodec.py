"""EnCodec in the transformers format (`EncodecModel`: config.json + model.safetensors), as the
hub's facebook/encodec_24khz is published.

transformers' EncodecModel computes as the encodec package does (published/encodec.py): the
same layers under `layers.N` instead of `model.N`, the same padding, search and residual, and
for the 48 kHz model the same segments (codecs/segments.py).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from torch import Tensor

from ...errors import AudiotokError
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
from .encodec import encodec_24k_config, encodec_48k_config

CODEBOOK = {"embed": "codebook.weight", "embed_avg": "codebook.ema_sum",
            "cluster_size": "codebook.ema_count", "inited": "initialized"}


LAYOUTS = {  # the released models' settings that audiotok reproduces
    24000: {"audio_channels": 1, "normalize": False, "chunk_length_s": None,
            "norm_type": "weight_norm", "use_causal_conv": True},
    48000: {"audio_channels": 2, "normalize": True, "chunk_length_s": 1.0, "overlap": 0.01,
            "norm_type": "time_group_norm", "use_causal_conv": False},
}


def _config(hf: dict, path: Path) -> dict:
    rate = hf.get("sampling_rate", 24000)
    layout = LAYOUTS.get(rate)
    unsupported = [f"{k}={hf.get(k)!r}" for k, ok in (layout or {}).items()
                   if hf.get(k, ok) != ok]
    if layout is None or unsupported:
        what = ", ".join(unsupported) or f"sampling_rate={rate}"
        raise AudiotokError(f"{path}: this EncodecModel ({what}) is not supported; the "
                            f"released 24 and 48 kHz layouts are")
    ratios = hf.get("upsampling_ratios", [8, 5, 4, 2])
    frame_rate = math.ceil(rate / math.prod(ratios))
    n_q = int(1000 * max(hf.get("target_bandwidths", [24.0])) // (frame_rate * 10))
    seanet = {"n_filters": hf.get("num_filters", 32), "strides": ratios[::-1],
              "n_residual_layers": hf.get("num_residual_layers", 1),
              "lstm_layers": hf.get("num_lstm_layers", 2), "compress": hf.get("compress", 2),
              "true_skip": not hf.get("use_conv_shortcut", True),
              "dilation_base": hf.get("dilation_growth_rate", 2),
              "kernel_size": hf.get("kernel_size", 7),
              "last_kernel_size": hf.get("last_kernel_size", 7),
              "residual_kernel_size": hf.get("residual_kernel_size", 3)}
    if rate == 48000:
        config = encodec_48k_config(n_q, hf.get("codebook_size", 1024))
        for part in ("encoder", "decoder"):
            strides = config[part]["strides"]
            config[part].update(seanet, strides=strides)
        config["latent_dim"] = hf.get("hidden_size", 128)
        return config
    return encodec_24k_config(n_q, hf.get("codebook_size", 1024), seanet,
                              hf.get("hidden_size", 128))


def _name(key: str, ours: set[str]) -> str:
    m = re.fullmatch(r"quantizer\.layers\.(\d+)\.codebook\.(\w+)", key)
    if m:
        return f"quantizer.levels.{m[1]}.{CODEBOOK.get(m[2], m[2])}"
    module, leaf = split_leaf(key)
    module = re.sub(r"^(encoder|decoder)\.layers\.", r"\1.model.", module)
    module = re.sub(r"\.conv$", "", module)  # audiotok's .conv / .convtr is found by place()
    return place(module, leaf, ours)


def convert(path: Path):
    hf, state, weights = read_transformers_folder(path, "encodec")
    config = _config(hf, path)

    def mapped(ours: set[str]) -> dict[str, Tensor]:
        out = {}
        for key, value in state.items():
            name = _name(key, ours)
            if name.endswith(".initialized"):
                value = value.reshape(()).bool()
            out[name] = value
            if name.endswith(".codebook.ema_count"):
                out[name.replace(".codebook.ema_count", ".usage")] = value.clone()
        return out

    provenance = make_provenance(
        "transformers EncodecModel", path, weights, "CC-BY-NC 4.0 (EnCodec weights)",
        f"transformers {package_version('transformers')} EncodecModel")
    return build(path, config, mapped, provenance)


ENCODEC_TRANSFORMERS = PublishedFormat("transformers EncodecModel",
                                       transformers_recogniser("encodec"), convert)
