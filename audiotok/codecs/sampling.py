"""Decoding options of codecs whose decoder samples (TaDiCodec's flow matching): how many
steps, which seed, which transcript and prompt. Deterministic decoders refuse them.

A stochastic decoder (`stochastic`, codecs/contracts.py) has `sample(z, steps, seed, text,
prompt)` and a default `cfg.steps`.
`Codec.encode` records the defaults in the tokens' metadata ("sampling": {"steps", "seed"},
so a token file says how it is meant to be decoded); `Codec.decode` takes them from its
arguments, else from the tokens, else the decoder's defaults (seed 0). The same codes, steps,
seed, text and prompt give the same audio on the same device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .contracts import Decoder

META_KEY = "sampling"


@dataclass(frozen=True)
class Sampling:
    steps: int
    seed: int

    def to_meta(self) -> dict:
        return {"steps": self.steps, "seed": self.seed}


def is_stochastic(decoder) -> bool:
    """True for a decoder that samples; False for the others, and for what is no `Decoder`
    (None, or an ONNX export's decoder graph)."""
    return isinstance(decoder, Decoder) and decoder.stochastic


def default_sampling(decoder) -> Sampling | None:
    """What `encode` records for a stochastic decoder; None for a deterministic one."""
    return Sampling(int(decoder.cfg.steps), 0) if is_stochastic(decoder) else None


def _whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        rule = "a positive whole number" if low == 1 else "a whole number >= 0"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


def sampling_options(decoder, meta: dict, steps, seed, text, prompt) -> Sampling | None:
    """The steps and seed to decode with (checked), or None for a deterministic decoder,
    which takes none of these options (ValueError naming those given)."""
    if not is_stochastic(decoder):
        given = [n for n, v in (("steps", steps), ("seed", seed), ("text", text),
                                ("prompt", prompt)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: this codec's decoder is deterministic; "
                             f"only diffusion decoders (tadicodec) sample")
        return None
    if text is not None and not decoder.takes_text:
        raise ValueError("text: this codec's decoder is not conditioned on a transcript")
    recorded = meta.get(META_KEY) if isinstance(meta.get(META_KEY), dict) else {}
    steps = recorded.get("steps", decoder.cfg.steps) if steps is None else steps
    seed = recorded.get("seed", 0) if seed is None else seed
    return Sampling(_whole("steps", steps, 1), _whole("seed", seed, 0))


def texts_for(text, batch: int) -> list[str | None] | None:
    """One transcript for every item (a str) or one per item (a list of B)."""
    if text is None or isinstance(text, str):
        return None if text is None else [text] * batch
    text = list(text)
    if len(text) != batch or not all(t is None or isinstance(t, str) for t in text):
        raise ValueError(f"text must be a string or a list of {batch} strings")
    return text


def decode_sampled(codec, codes: Tensor, sampling: Sampling, text, prompt: Tensor | None,
                   vector: Tensor | None = None) -> Tensor:
    """codes [B, K, T'] -> wav [B, C, T' * hop] sampled in one piece (the transcript spans
    the whole utterance, so the sequence is not cut into chunks); `vector` [B, dim]: a
    global branch's per-utterance condition (codecs/global_branch.py), if the codec has one."""
    if prompt is not None:
        if not isinstance(prompt, Tensor) or prompt.dim() != 3 or \
                prompt.shape[:2] != (codes.shape[0], codec.channels):
            shape = tuple(prompt.shape) if isinstance(prompt, Tensor) else type(prompt).__name__
            raise ValueError(f"prompt must be a tensor [{codes.shape[0]}, {codec.channels}, "
                             f"P] at {codec.sample_rate} Hz, got {shape}")
        prompt = prompt.to(codec._device())
    texts = texts_for(text, codes.shape[0])
    with torch.inference_mode():
        z = codec.quantizer.decode(codes)
        if vector is not None:
            from .global_branch import condition

            z = condition(z, vector)
        return codec.decoder.sample(z, sampling.steps, sampling.seed, texts, prompt)
