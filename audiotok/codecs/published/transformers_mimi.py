"""Mimi in the transformers format (`MimiModel`: config.json + model.safetensors), as on the
hub's kyutai/mimi.

The same network as moshi's release (published/mimi.py), with a full config and other names:
separate q/k/v projections whose q and k rows transformers' converter permuted for its
rotate-half RoPE (undone here, audiotok pairs channels (2i, 2i+1) as moshi does), and each
convolution padding its input on the right up to a whole frame instead of the codec padding the
waveform first (`publisher_padding`), which changes the last frame of an input that is not a
whole number of 80 ms frames. RoPE angles are rounded as transformers rounds them.
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
from .mimi import codebook_tensors, mimi_config

SUPPORTED = {"use_causal_conv": True, "pad_mode": "constant", "trim_right_ratio": 1.0,
             "use_conv_shortcut": False, "hidden_act": "gelu", "norm_eps": 1e-5,
             "attention_bias": False}


def config_from_hf(path: Path, hf: dict) -> dict:
    def get(key, default=None):
        return hf.get(key, default)

    for key, value in SUPPORTED.items():
        if key in hf and hf[key] != value:
            raise AudiotokError(f"{path}: Mimi with {key}={hf[key]!r} is not supported (the "
                                f"released model has {value!r})")
    dim, heads = get("hidden_size", 512), get("num_attention_heads", 8)
    head_dim = get("head_dim") or dim // heads
    if get("num_key_value_heads", heads) != heads or head_dim * heads != dim:
        raise AudiotokError(f"{path}: Mimi with grouped or resized attention heads "
                            f"(num_key_value_heads, head_dim) is not supported")
    if get("codebook_dim", 256) != get("vector_quantization_hidden_dimension", 256):
        raise AudiotokError(f"{path}: codebook_dim differs from "
                            f"vector_quantization_hidden_dimension")
    ratios = get("upsampling_ratios") or [8, 6, 5, 4]
    sample_rate = get("sampling_rate", 24000)
    # MimiConfig.latent_stride: the SEANet frame rate over the codes' frame rate
    seanet_rate = math.ceil(sample_rate / math.prod(ratios))
    frame_rate = get("frame_rate") or sample_rate / (math.prod(ratios) * 2)
    rope = get("rope_parameters") or {}
    return mimi_config(
        n_filters=get("num_filters", 64), ratios=ratios, dim=dim,
        layers=get("num_hidden_layers", 8), heads=heads,
        dim_feedforward=get("intermediate_size", 2048), context=get("sliding_window", 250),
        max_period=float(rope.get("rope_theta", get("rope_theta", 10000.0))),
        n_codebooks=get("num_quantizers", 32), n_semantic=get("num_semantic_quantizers", 1),
        codebook_size=get("codebook_size", 2048),
        codebook_dim=get("vector_quantization_hidden_dimension", 256),
        downsample=int(seanet_rate / frame_rate), rope_style="transformers",
        publisher_padding=True, sample_rate=sample_rate, channels=get("audio_channels", 1),
        kernel_size=get("kernel_size", 7), last_kernel_size=get("last_kernel_size", 3),
        residual_kernel_size=get("residual_kernel_size", 3),
        dilation_base=get("dilation_growth_rate", 2), compress=get("compress", 2),
        n_residual_layers=get("num_residual_layers", 1),
        upsample_groups=get("upsample_groups", dim),
        layer_scale=get("layer_scale_initial_scale", 0.01))


def interleave_rope_rows(w: Tensor, heads: int) -> Tensor:
    """transformers' converter stored each head's q/k rows as [reals..., imaginaries...]
    (convert_mimi_checkpoint_to_pytorch.py permutes them for rotate_half); back to moshi's
    interleaved pairs (2i, 2i + 1)."""
    out, dim = w.shape
    return w.view(heads, 2, out // heads // 2, dim).transpose(1, 2).reshape(out, dim)


RULES = [
    (r"^(encoder|decoder)\.layers\.", r"\1.seanet.model."),
    # MimiConv1d / MimiConvTranspose1d keep the torch layer as `.conv`; place() finds
    # audiotok's `.conv` / `.convtr`
    (r"^((?:encoder|decoder)\.seanet\.model\.\d+(?:\.block\.\d+)?)\.conv\.", r"\1."),
    (r"^(encoder|decoder)_transformer\.layers\.", r"\1.transformer.layers."),
    (r"\.self_attn\.o_proj\.", ".attn.out."),
    (r"\.input_layernorm\.", ".norm1."), (r"\.post_attention_layernorm\.", ".norm2."),
    (r"\.mlp\.fc1\.", ".mlp.0."), (r"\.mlp\.fc2\.", ".mlp.2."),
    (r"\.self_attn_layer_scale\.", ".scale1."), (r"\.mlp_layer_scale\.", ".scale2."),
    (r"^downsample\.conv\.", "encoder.downsample.conv."),
    (r"^upsample\.conv\.", "decoder.upsample.convtr."),
    (r"^quantizer\.semantic_residual_vector_quantizer\.", "quantizer.semantic_vq."),
    (r"^quantizer\.acoustic_residual_vector_quantizer\.", "quantizer.acoustic_rvq."),
    (r"\.input_proj\.", ".in_proj."), (r"\.output_proj\.", ".out_proj."),
]
QKV = re.compile(r"^(.*)\.self_attn\.([qkv])_proj\.weight$")
CODEBOOK = re.compile(r"^(quantizer\.\w+)\.layers\.(\d+)\.codebook\.(\w+)$")


def map_state(state: dict[str, Tensor], ours: set[str], heads: int) -> dict[str, Tensor]:
    out, qkv, books = {}, {}, {}
    for key, value in state.items():
        name = key
        for pattern, repl in RULES:
            name = re.sub(pattern, repl, name)
        if m := QKV.match(name):
            qkv.setdefault(m[1], {})[m[2]] = value
        elif m := CODEBOOK.match(name):
            books.setdefault(f"{m[1]}.levels.{m[2]}", {})[m[3]] = value
        else:
            module, _, leaf = name.rpartition(".")
            out[place(module, leaf, ours)] = value
    for layer, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            continue  # the layer's qkv weight is then reported missing
        out[f"{layer}.attn.qkv.weight"] = torch.cat(
            [interleave_rope_rows(parts["q"], heads), interleave_rope_rows(parts["k"], heads),
             parts["v"]])
    for prefix, parts in books.items():
        if {"embed_sum", "cluster_usage"} <= set(parts):
            out.update(codebook_tensors(prefix, parts["embed_sum"], parts["cluster_usage"],
                                        parts.get("initialized")))
    return out


def convert(path: Path):
    hf, state, weights = read_transformers_folder(path, "mimi")
    config = config_from_hf(path, hf)
    heads = config["encoder"]["transformer"]["heads"]
    provenance = make_provenance(
        "transformers MimiModel", path, weights, "CC-BY 4.0 (Mimi weights)",
        f"transformers {package_version('transformers')}")
    return build(path, config, lambda ours: map_state(state, ours, heads), provenance)


MIMI_TRANSFORMERS = PublishedFormat("transformers MimiModel", transformers_recogniser("mimi"),
                                    convert)
