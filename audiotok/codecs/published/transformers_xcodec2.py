"""X-Codec-2.0 in the transformers format (`Xcodec2Model`: config.json + model.safetensors),
as on the hub's HKUSTAudio/xcodec2-hf (transformers 5.24, models/xcodec2), and its relative
NeuCodec (`NeuCodecModel`, Neuphonic): the same modules and weight names, NeuCodec's feature
extractor (one frame fewer) and a decoder at 24 kHz.

The whole model is in the folder, the w2v-BERT 2.0 semantic model included (its config under
`semantic_model_config`, its weights under `semantic_encoder.`). The mapping onto audiotok's
modules (codecs/xcodec2.py): the acoustic encoder's blocks flatten into DAC's layout
(conv, per stride 3 residual units + activation + strided conv, activation, conv), FSQ keeps
its Linear projections, the decoder's separate q/k/v projections join into one, and the
iSTFT head's `linear` is audiotok's `proj`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import Tensor

from ...errors import AudiotokError
from .common import (
    PublishedFormat,
    build,
    package_version,
    place,
    read_transformers_folder,
    transformers_recogniser,
)
from .common import provenance as make_provenance

# the model card of HKUSTAudio/xcodec2 (and of its transformers conversion)
LICENCE = "CC-BY-NC-4.0 (X-Codec-2.0 weights)"
# settings transformers' Xcodec2Model reads whose other values audiotok does not reproduce
SUPPORTED = {"hidden_act": "silu", "attention_bias": False}


def config_from_hf(path: Path, hf: dict, kind: str = "xcodec2") -> dict:
    """`kind` "neucodec": NeuCodecModel, X-Codec-2's design with NeuCodec's features and a
    decoder at `output_sampling_rate` (24 kHz from 16 kHz input)."""
    if "semantic_model_config" not in hf and "codec_encoder_hidden_size" in hf:
        # HKUSTAudio/xcodec2: the original code's config.json (same model_type) and weights
        raise AudiotokError(f"{path}: this is X-Codec-2's original release (its own module "
                            f"names, HKUSTAudio/xcodec2); audiotok reads the transformers "
                            f"Xcodec2Model format: load HKUSTAudio/xcodec2-hf (short name "
                            f"xcodec2) instead")

    def get(key, default=None):
        value = hf.get(key)
        return default if value is None else value

    unsupported = [f"{k}={hf[k]!r}" for k, ok in SUPPORTED.items() if k in hf and hf[k] != ok]
    dim, heads = get("hidden_size", 1024), get("num_attention_heads", 16)
    if get("num_key_value_heads", heads) != heads:
        unsupported.append(f"num_key_value_heads={hf['num_key_value_heads']!r}")
    if get("head_dim", dim // heads) * heads != dim:
        unsupported.append(f"head_dim={hf['head_dim']!r}")
    rope = get("rope_parameters", {})
    if rope.get("rope_type", "default") != "default":
        # other RoPE types scale the rotated q and k, which would not cancel (module docs)
        unsupported.append(f"rope_type={rope['rope_type']!r}")
    semantic = dict(get("semantic_model_config", {}))
    semantic.setdefault("model_type", "wav2vec2-bert")
    if semantic["model_type"] != "wav2vec2-bert":
        unsupported.append(f"semantic model_type={semantic['model_type']!r}")
    if unsupported:
        model = "Xcodec2Model" if kind == "xcodec2" else "NeuCodecModel"
        raise AudiotokError(f"{path}: this {model} ({', '.join(unsupported)}) is not "
                            f"supported; the released layout is")
    if "num_hidden_layers" not in semantic:
        semantic["num_hidden_layers"] = 16  # Xcodec2Config's default for its sub-config
    sem_dim = semantic.get("hidden_size", 1024)
    latent_dim = dim + sem_dim
    if get("quantization_dim", latent_dim) != latent_dim:
        raise AudiotokError(f"{path}: quantization_dim {hf['quantization_dim']} is not "
                            f"hidden_size + the semantic model's hidden_size ({latent_dim})")
    ratios = list(get("downsampling_ratios", [2, 2, 4, 4, 5]))
    rate = get("sampling_rate" if kind == "xcodec2" else "input_sampling_rate", 16000)
    out_rate = rate if kind == "xcodec2" else get("output_sampling_rate", 24000)
    if (math.prod(ratios) * out_rate) % rate:
        raise AudiotokError(f"{path}: output_sampling_rate {out_rate} gives no whole hop")
    return {
        "family": kind, "sample_rate": rate, "channels": 1,
        "latent_dim": latent_dim,
        "encoder": {"type": "xcodec2", "acoustic_dim": dim, "semantic": semantic,
                    "acoustic": {"d_model": get("encoder_hidden_size", 48),
                                 "strides": ratios, "activation": "snake_beta_aa",
                                 "norm": "none"},
                    **({} if kind == "xcodec2" else {"features": "neucodec"})},
        "quantizer": {"type": "fsq", "levels": list(get("quantization_levels", [4] * 8)),
                      "projection": "linear", "bound": "atanh", "bound_passes": 2},
        "decoder": {"type": "xcodec2", "dim": dim, "layers": get("num_hidden_layers", 12),
                    "heads": heads, "dim_feedforward": get("intermediate_size", 4096),
                    "norm_eps": get("rms_norm_eps", 1e-6),
                    "dropout": get("activation_dropout", 0.1),
                    "n_fft": 4 * math.prod(ratios) * out_rate // rate,
                    **({} if out_rate == rate else {"sample_rate": out_rate})},
    }


UNIT = re.compile(r"^acoustic_encoder\.block\.(\d+)\.res_unit([123])\.(snake1|conv1|snake2|"
                  r"conv2)\.(.+)$")
BLOCK = re.compile(r"^acoustic_encoder\.block\.(\d+)\.(snake1|conv1)\.(.+)$")
UNIT_PARTS = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}
RENAMES = [
    (r"^semantic_encoder\.", "encoder.semantic."),
    (r"^semantic_adapter\.", "encoder.adapter."),
    (r"^fc_encoder\.", "encoder.fuse."),
    (r"^quantizer\.project_in\.", "quantizer.in_proj."),
    (r"^quantizer\.project_out\.", "quantizer.out_proj."),
    (r"^acoustic_decoder\.fc\.", "decoder.fc."),
    (r"^acoustic_decoder\.embed\.", "decoder.embed."),
    (r"^acoustic_decoder\.prior_net\.", "decoder.prior."),
    (r"^acoustic_decoder\.post_net\.", "decoder.post."),
    (r"^acoustic_decoder\.norm\.", "decoder.final_norm."),
    (r"^acoustic_decoder\.head\.linear\.", "decoder.head.proj."),
    (r"^acoustic_decoder\.layers\.", "decoder.transformer.layers."),
    (r"\.self_attn\.o_proj\.", ".attn.out."),
    (r"\.input_layernorm\.", ".norm1."), (r"\.post_attention_layernorm\.", ".norm2."),
    (r"\.mlp\.fc1\.", ".mlp.0."), (r"\.mlp\.fc2\.", ".mlp.2."),
]
QKV = re.compile(r"^(decoder\.transformer\.layers\.\d+)\.self_attn\.([qkv])_proj\.weight$")


def acoustic_name(key: str, n_blocks: int, ours: set[str]) -> str:
    """transformers' Xcodec2Encoder names -> DACEncoder's flat `model.N` (see dac.py)."""
    root = "encoder.acoustic.model"
    if m := UNIT.match(key):
        index = 1 + 5 * int(m[1]) + int(m[2]) - 1
        module, leaf = f"{root}.{index}.block.{UNIT_PARTS[m[3]]}", m[4]
    elif m := BLOCK.match(key):
        index = 4 + 5 * int(m[1]) + (m[2] == "conv1")
        module, leaf = f"{root}.{index}", m[3]
    elif key.startswith("acoustic_encoder.conv1."):
        module, leaf = f"{root}.0", key.rpartition(".")[2]
    elif key.startswith(("acoustic_encoder.snake1.", "acoustic_encoder.conv2.")):
        part, _, leaf = key.removeprefix("acoustic_encoder.").partition(".")
        module = f"{root}.{1 + 5 * n_blocks + (part == 'conv2')}"
    else:
        return key  # unknown: check_mapping names it
    if leaf.startswith("act."):  # the SnakeBeta inside an anti-aliased activation
        return f"{module}.{leaf}"
    return place(module, leaf, ours)


def map_state(state: dict[str, Tensor], ours: set[str], n_blocks: int) -> dict[str, Tensor]:
    out, qkv = {}, {}
    for key, value in state.items():
        if key.startswith("acoustic_encoder."):
            out[acoustic_name(key, n_blocks, ours)] = value
            continue
        name = key
        for pattern, repl in RENAMES:
            name = re.sub(pattern, repl, name)
        if m := QKV.match(name):
            qkv.setdefault(m[1], {})[m[2]] = value
        else:
            out[name] = value
    for layer, parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:  # else the qkv weight is reported missing
            out[f"{layer}.attn.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def convert(path: Path):
    hf, state, weights = read_transformers_folder(path, "xcodec2")
    config = config_from_hf(path, hf)
    n_blocks = len(config["encoder"]["acoustic"]["strides"])
    provenance = make_provenance(
        "transformers Xcodec2Model", path, weights, LICENCE,
        f"transformers {package_version('transformers')} Xcodec2Model")
    return build(path, config, lambda ours: map_state(state, ours, n_blocks), provenance)


XCODEC2_TRANSFORMERS = PublishedFormat("transformers Xcodec2Model",
                                       transformers_recogniser("xcodec2"), convert)

# NeuCodec (neuphonic/neucodec; Apache-2.0): model card of the release
NEUCODEC_LICENCE = "Apache-2.0 (NeuCodec weights)"


def convert_neucodec(path: Path):
    hf, state, weights = read_transformers_folder(path, "neucodec")
    config = config_from_hf(path, hf, "neucodec")
    n_blocks = len(config["encoder"]["acoustic"]["strides"])
    provenance = make_provenance(
        "transformers NeuCodecModel", path, weights, NEUCODEC_LICENCE,
        f"transformers {package_version('transformers')} NeuCodecModel")
    return build(path, config, lambda ours: map_state(state, ours, n_blocks), provenance)


NEUCODEC_TRANSFORMERS = PublishedFormat("transformers NeuCodecModel",
                                        transformers_recogniser("neucodec"), convert_neucodec)
