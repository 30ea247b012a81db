"""Start a pitch codec (recipes/speech_16k_pitch.yaml) from the weights of a codec without
pitch (default: the bundled audiotok/speech-16k, trained by recipes/speech_16k_gla.yaml).

    python scripts/init_pitch_codec.py recipes/speech_16k_pitch.yaml runs/speech_16k_pitch_init

Copies every weight whose name and shape match; the RVQ moves under quantizer.rvq; the
decoder's harmonic head starts as a copy of its magnitude head, 6 dB up (so the harmonics
stand out of the envelope from the first step). The pitch input of the decoder starts at
zero, so the copied decoder's output only changes by the harmonic comb. Writes a codec
directory for the recipe's train.init_from.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from audiotok import load_codec
from audiotok.codecs.base import Codec
from audiotok.errors import AudiotokError
from audiotok.train.config import read_recipe


def transplant(source: Codec, target: Codec) -> list[str]:
    """Copy source's weights into target; returns the target weights left as initialised."""
    src = source.state_dict()
    renamed = {k.replace("quantizer.levels.", "quantizer.rvq.levels."): v for k, v in src.items()}
    renamed["decoder.harmonic_proj.weight"] = src["decoder.proj.weight"]
    renamed["decoder.harmonic_proj.bias"] = src["decoder.proj.bias"] + math.log(2.0)
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
