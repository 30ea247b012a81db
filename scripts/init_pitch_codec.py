"""Start a pitch codec (recipes/speech_16k/2_pitch.yaml, 3_env.yaml) from the weights of
another codec (default: the bundled audiotok/speech-16k).

    python scripts/init_pitch_codec.py recipes/speech_16k/2_pitch.yaml \
        runs/speech_16k_pitch_init --source runs/speech_16k_gla/model

Copies every weight whose name and shape match. From a codec without pitch (trained by
recipes/speech_16k/1_gla.yaml): the RVQ moves under quantizer.rvq, the decoder's harmonic head
starts as a copy of its magnitude head, 6 dB up (so the harmonics stand out of the envelope
from the first step), and the decoder's pitch input starts at zero, so the copied decoder's
output only changes by the harmonic comb. Into a decoder with `envelope_points`: per-bin heads
become the least-squares fit of their outputs on the envelope points, so the new decoder
starts from a smoothed copy of the old one. Writes a codec directory for the recipe's
train.init_from.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from audiotok import load_codec
from audiotok.codecs.base import Codec
from audiotok.codecs.spectral_decoder import envelope_basis
from audiotok.errors import AudiotokError
from audiotok.train.recipe_config import read_recipe


def fit_envelope_heads(weights: dict[str, torch.Tensor], target: Codec) -> None:
    """Per-bin decoder heads in `weights` -> heads on the target's envelope points, in place:
    W' = pinv(B) W for the interpolation B, the least-squares fit of each output."""
    dec = target.decoder
    if not dec.cfg.envelope_points:
        return
    fit = torch.linalg.pinv(envelope_basis(dec.n_bins, dec.cfg.envelope_points).double())
    for name in ("decoder.proj.weight", "decoder.proj.bias",
                 "decoder.harmonic_proj.weight", "decoder.harmonic_proj.bias"):
        value = weights.get(name)
        if value is not None and value.shape[0] == dec.n_bins:
            weights[name] = (fit @ value.double().reshape(dec.n_bins, -1)).reshape(
                -1, *value.shape[1:]).to(value.dtype)


def transplant(source: Codec, target: Codec) -> list[str]:
    """Copy source's weights into target; returns the target weights left as initialised."""
    src = source.state_dict()
    renamed = {k.replace("quantizer.levels.", "quantizer.rvq.levels."): v for k, v in src.items()}
    if "decoder.harmonic_proj.weight" not in src:
        renamed["decoder.harmonic_proj.weight"] = src["decoder.proj.weight"]
        renamed["decoder.harmonic_proj.bias"] = src["decoder.proj.bias"] + math.log(2.0)
    fit_envelope_heads(renamed, target)
    state = target.state_dict()
    kept = []
    for name, value in state.items():
        new = renamed.get(name)
        if new is not None and new.shape == value.shape:
            state[name] = new.to(value.dtype)
        else:
            kept.append(name)
    target.load_state_dict(state)
    return kept


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("out")
    ap.add_argument("--source", default="audiotok/speech-16k")
    args = ap.parse_args(argv)
    try:
        recipe = read_recipe(args.recipe, ["data.train=unused"])
        source = load_codec(args.source).float()
        torch.manual_seed(recipe.train.seed)
        target = Codec(recipe.model)
        if "decoder.proj.weight" not in source.state_dict() or not hasattr(
                target.decoder, "harmonic_proj"):
            raise AudiotokError("needs a spectral-decoder source and a pitch recipe")
        kept = transplant(source, target)
    except (AudiotokError, OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    target.save_pretrained(args.out)
    print(f"wrote {args.out}; new weights: {', '.join(kept) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
