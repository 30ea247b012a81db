"""EnCodec's releases (Defossez et al. 2022): `encodec_24khz-d7cc33bc.th`, a plain state dict.

The 24 kHz model is audiotok's SEANet family with a residual VQ of EMA codebooks, module for
module. Three options reproduce its arithmetic: the encoder pads each strided conv itself
(`publisher_padding`: EnCodec never pads the waveform to whole frames), the residual takes
the codeword itself (`eval_codeword`), and the codeword search that audiotok shares with it
(quantizers/search.py). The 48 kHz model adds `norm: time_group_norm` and 1 s segments each
coded at unit loudness, its scale kept beside the codes (codecs/segments.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from ...errors import AudiotokError
from .common import PublishedFormat, build, package_version, torch_load
from .common import provenance as make_provenance

RULES = [  # EnCodec's names -> audiotok's (weight norm, time-group norm, EMA codebooks)
    (re.compile(r"\.(conv|convtr)\.\1\.weight$"), r".\1.weight"),
    (re.compile(r"\.(conv|convtr)\.norm\.(weight|bias)$"), r".norm.\2"),
    (re.compile(r"\.(conv|convtr)\.\1\.weight_g$"), r".\1.parametrizations.weight.original0"),
    (re.compile(r"\.(conv|convtr)\.\1\.weight_v$"), r".\1.parametrizations.weight.original1"),
    (re.compile(r"\.(conv|convtr)\.\1\.bias$"), r".\1.bias"),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.embed$"),
     r"quantizer.levels.\1.codebook.weight"),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.embed_avg$"),
     r"quantizer.levels.\1.codebook.ema_sum"),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.cluster_size$"),
     r"quantizer.levels.\1.codebook.ema_count"),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.inited$"),
     r"quantizer.levels.\1.initialized"),
]
SEANET = {"type": "seanet", "n_filters": 32, "n_residual_layers": 1, "lstm_layers": 2,
          "causal": True, "true_skip": False}  # encodec/modules/seanet.py defaults, 24 kHz


def encodec_24k_config(n_q: int, codebook_size: int = 1024, seanet: dict | None = None,
                       latent_dim: int = 128) -> dict:
    """EncodecModel.encodec_model_24khz as an audiotok config (75 Hz, n_q x 1024 codes);
    `seanet` overrides SEANet fields for variants of it."""
    seanet = {**SEANET, **(seanet or {})}
    strides = seanet.pop("strides", [2, 4, 5, 8])
    return {
        "family": "encodec-24khz", "sample_rate": 24000, "channels": 1,
        "latent_dim": latent_dim,
        "encoder": {**seanet, "strides": strides, "publisher_padding": True},
        "quantizer": {"type": "rvq", "n_codebooks": n_q, "codebook_size": codebook_size,
                      "ema": True,
                      "ema_decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
                      "dead_code_threshold": 2.0, "eval_codeword": True,
                      # EnCodec trains at 1.5/3/6/12/24 kbps = 2/4/8/16/32 levels
                      "quantizer_dropout": 1.0,
                      "dropout_choices": [c for c in (2, 4, 8, 16, 32) if c <= n_q]},
        "decoder": {**seanet, "strides": strides[::-1]},
    }


def encodec_48k_config(n_q: int, codebook_size: int = 1024) -> dict:
    """EncodecModel.encodec_model_48khz as an audiotok config: stereo, non-causal, GroupNorm
    over time instead of weight norm, 150 Hz, and 1 s segments with 1% overlap each coded at
    unit loudness (codecs/segments.py); trained at 3/6/12/24 kbps = 2/4/8/16 levels."""
    config = encodec_24k_config(n_q, codebook_size, {"causal": False,
                                                     "norm": "time_group_norm"})
    config["quantizer"]["dropout_choices"] = [c for c in (2, 4, 8, 16) if c <= n_q]
    return {**config, "family": "encodec-48khz", "sample_rate": 48000, "channels": 2,
            "segment": {"seconds": 1.0, "overlap": 0.01, "normalize": True}}


def map_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        name = key
        for pattern, repl in RULES:
            name = pattern.sub(repl, name)
        if name.endswith(".initialized"):
            value = value.reshape(()).bool()
        out[name] = value
        if name.endswith(".codebook.ema_count"):  # its running use, for dead-code restarts
            out[name.replace(".codebook.ema_count", ".usage")] = value.clone()
    return out


def convert(path: Path):
    state = torch_load(path)
    is_48k = isinstance(state, dict) and "encoder.model.0.conv.norm.weight" in state
    if not isinstance(state, dict) or not (is_48k or
                                           "encoder.model.0.conv.conv.weight_v" in state):
        raise AudiotokError(f"{path}: not an EnCodec checkpoint (expected the state dict of "
                            f"EncodecModel.encodec_model_24khz or _48khz)")
    n_q = sum(1 for k in state if re.fullmatch(r"quantizer\.vq\.layers\.\d+\._codebook\.embed",
                                              k))
    provenance = make_provenance(
        "EnCodec .th", path, path, "CC-BY-NC 4.0 (EnCodec weights)",
        f"encodec {package_version('encodec')}")
    config = encodec_48k_config(n_q) if is_48k else encodec_24k_config(n_q)
    return build(path, config, lambda ours: map_state(state), provenance)


def recognise(path: Path) -> bool:
    return path.is_file() and path.suffix == ".th"


ENCODEC_TH = PublishedFormat("EnCodec", recognise, convert)
