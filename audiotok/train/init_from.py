"""`train.init_from`: the trained weights a fine-tune starts from, checked against the
recipe's model before the first step (weights, sample rates, trainability)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from ..codecs.base import Codec, CodecConfig
from ..errors import AudiotokError, ConfigError


def initial_weights(ref: str, codec: Codec) -> dict[str, Tensor]:
    """The state dict `ref` names, ready for `codec.load_state_dict`: a codec directory (a
    run's export, save_pretrained), a published codec's release file or folder, a bundled
    model, or a published short name or hub id (resolved as `load_codec` resolves them).
    ConfigError, one line, when it is untrained, inference only, made for other sample rates
    or of other weights than `codec`."""
    from safetensors.torch import load_file

    from ..codecs.loading import is_untrained, load_codec
    from ..codecs.published import find_format

    weights = Path(ref) / "model.safetensors"
    # an audiotok checkpoint directory; a publisher's folder with a model.safetensors of
    # its own names (transformers' formats) goes through its converter below
    if weights.is_file() and find_format(Path(ref)) is None:
        meta = _meta(Path(ref))
        provenance, config = meta.get("provenance") or {}, meta.get("config")
        rates = None if config is None else _rates(config)
        state = load_file(str(weights))
    else:
        try:
            loaded = load_codec(ref)
        except AudiotokError as e:
            raise ConfigError(f"train.init_from: {e}") from None
        if is_untrained(loaded):
            raise ConfigError(f"train.init_from: '{ref}' names an untrained codec (a "
                              f"recipe or family); give trained weights")
        provenance = loaded.provenance or {}
        rates = loaded.sample_rate, loaded.output_sample_rate
        state = loaded.state_dict()
    if provenance.get("trainable") is False:
        raise ConfigError(f"train.init_from: '{ref}' is {provenance.get('format', 'a codec')},"
                          f" which audiotok runs for inference only")
    mine = codec.sample_rate, codec.output_sample_rate
    if rates is not None and rates != mine:
        raise ConfigError(f"train.init_from: {ref} {_describe(rates)}, this recipe's model "
                          f"{_describe(mine)}; leave 'model' out of the recipe to take it "
                          f"from init_from")
    _check_fits(ref, state, codec.state_dict())
    return state


def _check_fits(ref: str, state: dict, mine: dict) -> None:
    problems = [(what, names) for what, names in (
        ("missing", [k for k in mine if k not in state]),
        ("unexpected", [k for k in state if k not in mine]),
        ("of another shape", [k for k in mine if k in state
                              and state[k].shape != mine[k].shape])) if names]
    if problems:
        summary = "; ".join(f"{len(names)} {what} (first: {names[0]})"
                            for what, names in problems)
        raise ConfigError(f"train.init_from: {ref} does not fit this recipe's model: "
                          f"weights {summary}")


def _meta(folder: Path) -> dict:
    """config.json of an audiotok checkpoint directory; {} when absent or unreadable (the
    weights alone still start the run, as before config.json carried rates)."""
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _rates(config: dict) -> tuple[int, int]:
    """(input, output) sample rates of a saved codec config: the output rate is its
    decoder's `sample_rate` where it declares one (as `Codec.output_sample_rate` reads it)."""
    rate = int(config.get("sample_rate", CodecConfig.sample_rate))
    decoder = config.get("decoder") or {}
    return rate, int(decoder.get("sample_rate") or rate)


def _describe(rates: tuple[int, int]) -> str:
    rate, out = rates
    return f"encodes and decodes at {rate} Hz" if rate == out else \
        f"encodes at {rate} Hz and decodes at {out} Hz"
