"""X-Codec in the transformers format (`XcodecModel`: config.json + model.safetensors), as the
hub's hf-audio/xcodec-* releases are published (transformers 5.24, models/xcodec).

The whole model is in the folder, the semantic model (HuBERT or WavLM) included: its config
under `semantic_model_config`, its weights under `semantic_model.`. The acoustic encoder and
decoder are DacModel's modules under `acoustic_encoder.` / `acoustic_decoder.` and map as
transformers' DAC does (transformers_dac.py); the RVQ's EMA codebooks map as EnCodec's. The
publisher's semantic decoder (`decoder_semantic.`, `fc1.`) serves only its training loss and
is not loaded (codecs/xcodec.py).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from torch import Tensor

from ...errors import AudiotokError
from ..xcodec import SEMANTIC_TYPES, one_frame_per_hop
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
from .transformers_dac import module_name

# the hf-audio/xcodec-* model cards
LICENCE = "CC-BY-4.0 (X-Codec weights, hf-audio model cards)"
# XcodecConfig's defaults for its DAC sub-config (over DacConfig's own)
ACOUSTIC = {"encoder_hidden_size": 64, "downsampling_ratios": [8, 5, 4, 2],
            "decoder_hidden_size": 1024, "upsampling_ratios": [8, 5, 4, 2], "hidden_size": 256}
BASE_WIDTH = 768  # HubertConfig's and WavLMConfig's default hidden_size
# HubertConfig's and WavLMConfig's default feature encoder (stride 320, receptive field 400)
CONV_KERNEL, CONV_STRIDE = [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]
TRAINING_ONLY = ("decoder_semantic.", "fc1.")
CODEBOOK = {"embed": "codebook.weight", "embed_avg": "codebook.ema_sum",
            "cluster_size": "codebook.ema_count", "inited": "initialized"}


def level_counts(hf: dict, sample_rate: int, hop: int, codebook_size: int) -> tuple[int, list]:
    """(levels, the level count of each target bandwidth), as XcodecModel computes them: its
    frame rate rounded up, bits rounded up for the levels, exact per bandwidth."""
    bandwidths = list(hf.get("target_bandwidths") or [0.5, 1, 1.5, 2, 4])
    frame_rate = math.ceil(sample_rate / hop)
    n_q = int(1000 * bandwidths[-1] // (frame_rate * math.ceil(math.log2(codebook_size))))
    per_level = math.log2(codebook_size) * frame_rate / 1000
    choices = sorted({min(n_q, int(max(1, math.floor(b / per_level)))) for b in bandwidths})
    return n_q, choices


def config_from_hf(path: Path, hf: dict, plain: bool) -> dict:
    def get(source: dict, key: str, default):
        value = source.get(key)
        return default if value is None else value

    acoustic = {**ACOUSTIC, **(hf.get("acoustic_model_config") or {})}
    semantic = dict(hf.get("semantic_model_config") or {})
    semantic.setdefault("model_type", "hubert")
    down, up = list(acoustic["downsampling_ratios"]), list(acoustic["upsampling_ratios"])
    strides = list(get(hf, "strides", [1, 1]))
    ratios = list(get(hf, "channel_ratios", [1, 1]))
    unsupported = []
    if semantic["model_type"] not in SEMANTIC_TYPES:
        unsupported.append(f"semantic model_type={semantic['model_type']!r}")
    if any(s != 1 for s in strides) or len(strides) != len(ratios):
        unsupported.append(f"strides={strides!r}")  # the publisher's model fails on them too
    if math.prod(down) != math.prod(up):
        unsupported.append(f"downsampling_ratios={down!r} with upsampling_ratios={up!r}")
    kernels = list(get(semantic, "conv_kernel", CONV_KERNEL))
    conv_strides = list(get(semantic, "conv_stride", CONV_STRIDE))
    if not one_frame_per_hop(kernels, conv_strides, math.prod(down)):
        unsupported.append(f"semantic conv_kernel={kernels!r} and conv_stride={conv_strides!r} "
                           f"for a hop of {math.prod(down)}")
    latent_dim = acoustic["hidden_size"] + semantic.get("hidden_size", BASE_WIDTH)
    if get(hf, "codebook_dim", latent_dim) != latent_dim:
        unsupported.append(f"codebook_dim={hf['codebook_dim']!r}")
    if unsupported:
        raise AudiotokError(f"{path}: this XcodecModel ({', '.join(unsupported)}) is not "
                            f"supported; the released layout is")
    rate = get(hf, "sample_rate", 16000)
    codebook_size = get(hf, "codebook_size", 1024)
    n_q, choices = level_counts(hf, rate, math.prod(down), codebook_size)
    norm = "none" if plain else "weight_norm"
    return {
        "family": "xcodec", "sample_rate": rate, "channels": 1, "latent_dim": latent_dim,
        "encoder": {"type": "xcodec", "acoustic_dim": acoustic["hidden_size"],
                    "semantic": semantic,
                    "acoustic": {"d_model": acoustic["encoder_hidden_size"], "strides": down,
                                 "norm": norm},
                    "adapter": {"kernel_size": get(hf, "kernel_size", 3),
                                "channel_ratios": ratios,
                                "dilations": list(get(hf, "block_dilations", [1, 1])),
                                "unit_kernel_size": get(hf, "unit_kernel_size", 3)}},
        # EnCodec's RVQ (X-Codec trains with its code): EMA codebooks, k-means init, dead-code
        # restarts, trained at the target bandwidths' level counts
        "quantizer": {"type": "rvq", "n_codebooks": n_q, "codebook_size": codebook_size,
                      "ema": True, "ema_decay": 0.99, "kmeans_init": True,
                      "kmeans_iters": 50, "dead_code_threshold": 2.0, "eval_codeword": True,
                      "quantizer_dropout": 1.0, "dropout_choices": choices},
        "decoder": {"type": "xcodec", "acoustic_dim": acoustic["hidden_size"],
                    "acoustic": {"channels": acoustic["decoder_hidden_size"], "strides": up,
                                 "tanh": False, "norm": norm}},
    }


RENAMES = [
    (r"^semantic_model\.", "encoder.semantic."),
    (r"^encoder_semantic\.", "encoder.adapter."),
    (r"\.conv_blocks\.", ".blocks."), (r"\.res_units\.", ".units."),
    (r"^fc\.", "encoder.fuse."),
    (r"^fc2\.", "decoder.fc."),
]
LEVEL = re.compile(r"^quantizer\.quantizers\.(\d+)\.codebook\.(\w+)$")


def acoustic_name(key: str, n_enc: int, n_dec: int, ours: set[str]) -> str:
    """DacModel's encoder/decoder names under `acoustic_encoder.` / `acoustic_decoder.` ->
    audiotok's DAC modules under `encoder.acoustic.` / `decoder.acoustic.`."""
    side = "encoder" if key.startswith("acoustic_encoder.") else "decoder"
    module, leaf = split_leaf(key.removeprefix("acoustic_"))
    module = module_name(module, n_enc, n_dec)
    if module.startswith(f"{side}.model."):
        module = f"{side}.acoustic.{module.removeprefix(f'{side}.')}"
    return place(module, leaf, ours)


def map_state(state: dict[str, Tensor], ours: set[str], n_enc: int, n_dec: int
              ) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith(TRAINING_ONLY):
            continue
        if key.startswith(("acoustic_encoder.", "acoustic_decoder.")):
            out[acoustic_name(key, n_enc, n_dec, ours)] = value
        elif m := LEVEL.match(key):
            name = f"quantizer.levels.{m[1]}.{CODEBOOK.get(m[2], m[2])}"
            out[name] = value.reshape(()).bool() if m[2] == "inited" else value
            if m[2] == "cluster_size":
                out[f"quantizer.levels.{m[1]}.usage"] = value.clone()
        else:
            name = key
            for pattern, repl in RENAMES:
                name = re.sub(pattern, repl, name)
            out[name] = value
    return out


def convert(path: Path):
    hf, state, weights = read_transformers_folder(path, "xcodec")
    plain = not any(k.startswith("acoustic_") and k.endswith(("weight_g", "original0"))
                    for k in state)
    config = config_from_hf(path, hf, plain)
    n_enc = len(config["encoder"]["acoustic"]["strides"])
    n_dec = len(config["decoder"]["acoustic"]["strides"])
    provenance = make_provenance(
        "transformers XcodecModel", path, weights, LICENCE,
        f"transformers {package_version('transformers')} XcodecModel")
    return build(path, config, lambda ours: map_state(state, ours, n_enc, n_dec), provenance)


XCODEC_TRANSFORMERS = PublishedFormat("transformers XcodecModel",
                                      transformers_recogniser("xcodec"), convert)
