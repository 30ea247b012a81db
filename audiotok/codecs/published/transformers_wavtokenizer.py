"""WavTokenizer in the transformers format (`WavTokenizerModel`: config.json +
model.safetensors), as the hub's swiss-ai/wavtokenizer-large-unify-40token is published.

transformers' WavTokenizerModel (models/wavtokenizer/modeling_wavtokenizer.py, 5.24) computes
as WavTokenizer's own code (published/wavtokenizer.py): the same SEANet encoder under
`encoder_model.encoder.layers.N`, the codebook under `encoder_model.quantizer.codebook`,
and the backbone and head under the original names (`head.linear` for `head.out`). Its
encode takes any length (each strided conv pads to a whole frame: ceil(T / hop) codes) and
its decode uses bandwidth id 0, as audiotok does.
"""

from __future__ import annotations

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
from .wavtokenizer import LICENCE, map_codebook, map_decoder, wavtokenizer_config

CODEBOOK_PREFIX = "encoder_model.quantizer.codebook."


def _config(hf: dict, path: Path) -> dict:
    unsupported = [f"{k}={hf.get(k)!r}" for k, ok in (
        ("audio_channels", 1), ("use_causal_conv", False), ("norm_type", "weight_norm"),
        ("sampling_rate", 24000)) if hf.get(k, ok) != ok]
    if hf.get("codebook_dim", hf.get("hidden_size", 512)) != hf.get("hidden_size", 512):
        unsupported.append(f"codebook_dim={hf.get('codebook_dim')!r}")
    if unsupported:
        raise AudiotokError(f"{path}: this WavTokenizerModel ({', '.join(unsupported)}) is "
                            f"not supported; the released layout is")
    seanet = {"n_residual_layers": hf.get("num_residual_layers", 1),
              "dilation_base": hf.get("dilation_growth_rate", 2),
              "compress": hf.get("compress", 2),
              "true_skip": not hf.get("use_conv_shortcut", True),
              "pad_mode": hf.get("pad_mode", "reflect"),
              "kernel_size": hf.get("kernel_size", 7),
              "last_kernel_size": hf.get("last_kernel_size", 7),
              "residual_kernel_size": hf.get("residual_kernel_size", 3),
              "lstm_layers": hf.get("num_lstm_layers", 2)}
    return wavtokenizer_config(
        list(hf.get("upsampling_ratios", [6, 5, 5, 4]))[::-1],
        n_filters=hf.get("num_filters", 32), latent_dim=hf.get("hidden_size", 512),
        codebook_size=hf.get("codebook_size", 4096),
        dim=hf.get("decoder_hidden_size", 768),
        intermediate_dim=hf.get("decoder_intermediate_size", 2304),
        num_layers=hf.get("decoder_num_layers", 12),
        adanorm_embeddings=hf.get("adanorm_num_embeddings", 4),
        norm_groups=hf.get("decoder_attention_num_groups", 32), seanet=seanet)


def map_state(state: dict[str, Tensor], ours: set[str]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith("encoder_model.encoder.layers."):
            module, leaf = split_leaf(key.removeprefix("encoder_model."))
            module = re.sub(r"^encoder\.layers\.", "encoder.model.", module)
            out[place(module.removesuffix(".conv"), leaf, ours)] = value
        elif not key.startswith((CODEBOOK_PREFIX, "backbone.", "head.")):
            out[key] = value  # unknown: check_mapping names it
    book = {k[len(CODEBOOK_PREFIX):]: v for k, v in state.items()
            if k.startswith(CODEBOOK_PREFIX)}
    if book:
        out.update(map_codebook(book))
    out.update(map_decoder({k: v for k, v in state.items()
                            if k.startswith(("backbone.", "head."))}))
    return out


def convert(path: Path):
    hf, state, weights = read_transformers_folder(path, "wavtokenizer")
    config = _config(hf, path)
    provenance = make_provenance(
        "transformers WavTokenizerModel", path, weights, LICENCE,
        f"transformers {package_version('transformers')} WavTokenizerModel")
    return build(path, config, lambda ours: map_state(state, ours), provenance)


WAVTOKENIZER_TRANSFORMERS = PublishedFormat("transformers WavTokenizerModel",
                                            transformers_recogniser("wavtokenizer"), convert)
