"""descript-audio-codec's releases (Kumar et al. 2023): `weights_{16,24,44}khz.pth`.

The file is `torch.save({"state_dict": ..., "metadata": {"kwargs": DAC(...) arguments}})`.
Its architecture is audiotok's DAC family (codecs/dac.py) module for module; two options
reproduce its arithmetic: `publisher_padding` (its transposed convs drop a sample per odd
stride) and the codeword search that audiotok shares with it (quantizers/search.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from ...errors import AudiotokError
from .common import PublishedFormat, build, package_version, place, split_leaf, torch_load
from .common import provenance as make_provenance

# DAC.__init__ defaults (dac/model/dac.py), for kwargs a file leaves out
DEFAULTS = {"encoder_dim": 64, "encoder_rates": [2, 4, 8, 8], "latent_dim": None,
            "decoder_dim": 1536, "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9,
            "codebook_size": 1024, "codebook_dim": 8, "sample_rate": 44100}


def dac_config(kwargs: dict) -> dict:
    """DAC(...) keyword arguments -> audiotok CodecConfig dict."""
    k = {**DEFAULTS, **{key: v for key, v in kwargs.items() if key in DEFAULTS}}
    latent = k["latent_dim"] or k["encoder_dim"] * 2 ** len(k["encoder_rates"])
    if isinstance(k["codebook_dim"], list):
        raise AudiotokError("descript-audio-codec models with a codebook_dim per level are "
                            "not supported")
    return {
        "family": f"dac-{round(k['sample_rate'] / 1000)}khz", "sample_rate": k["sample_rate"],
        "channels": 1, "latent_dim": latent,
        "encoder": {"type": "dac", "d_model": k["encoder_dim"],
                    "strides": list(k["encoder_rates"])},
        "quantizer": {"type": "rvq", "n_codebooks": k["n_codebooks"],
                      "codebook_size": k["codebook_size"], "codebook_dim": k["codebook_dim"],
                      "l2_normalize": True},
        "decoder": {"type": "dac", "channels": k["decoder_dim"],
                    "strides": list(k["decoder_rates"]), "publisher_padding": True},
    }


def _module(key: str, n_enc: int, n_dec: int) -> str:
    """DAC's nested module path -> audiotok's flat one. Both stacks are, in order: a conv,
    per stride 5 modules (DAC nests them in one block: 3 residual units + snake + conv in the
    encoder, snake + transposed conv + 3 residual units in the decoder), a snake, a conv."""
    for theirs, ours, n in (("encoder.block", "encoder.model", n_enc),
                            ("decoder.model", "decoder.model", n_dec)):
        m = re.fullmatch(re.escape(theirs) + r"\.(\d+)(?:\.block\.(\d+))?(.*)", key)
        if m:
            i, j, rest = int(m[1]), m[2], m[3]
            if 1 <= i <= n and j is not None:
                index = 1 + (i - 1) * 5 + int(j)
            else:
                index = 0 if i == 0 else 5 * n + (i - n)
            return f"{ours}.{index}{rest}"
    return key.replace("quantizer.quantizers.", "quantizer.levels.")


def map_state(state: dict[str, Tensor], n_enc: int, n_dec: int, ours: set[str]
              ) -> dict[str, Tensor]:
    """DAC weight names -> audiotok's; weight norm's g and v keep their values."""
    out = {}
    for key, value in state.items():
        module, leaf = split_leaf(_module(key, n_enc, n_dec))
        out[place(module, leaf, ours)] = value
    return out


def convert(path: Path):
    blob = torch_load(path)
    kwargs = blob.get("metadata", {}).get("kwargs") if isinstance(blob, dict) else None
    if not isinstance(kwargs, dict) or not isinstance(blob.get("state_dict"), dict) or \
            "encoder_rates" not in kwargs:
        raise AudiotokError(f"{path}: not a descript-audio-codec checkpoint (expected "
                            f"{{'state_dict', 'metadata': {{'kwargs': DAC arguments}}}})")
    config = dac_config(kwargs)
    n_enc, n_dec = len(config["encoder"]["strides"]), len(config["decoder"]["strides"])
    provenance = make_provenance(
        "descript-audio-codec .pth", path, path, "MIT (descript-audio-codec)",
        f"descript-audio-codec {package_version('descript-audio-codec')}")
    return build(path, config, lambda ours: map_state(blob["state_dict"], n_enc, n_dec, ours),
                 provenance)


def recognise(path: Path) -> bool:
    return path.is_file() and path.suffix == ".pth"


DAC_PTH = PublishedFormat("descript-audio-codec", recognise, convert)
