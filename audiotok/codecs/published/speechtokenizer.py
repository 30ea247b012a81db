"""SpeechTokenizer (Zhang et al. 2024): a folder or pair of files, `config.json` + the
state dict `.pt` (SpeechTokenizer.load_from_checkpoint(config_path, ckpt_path)).

Its network is EnCodec's SEANet (published/encodec.py) with a bidirectional LSTM in the
encoder, non-causal, and an RVQ of EMA codebooks whose first level carries the distilled
HuBERT content; the `transform` projection serves only distillation and is not needed to
tokenize (it is left out; `quantizer` level 0 is the semantic token stream).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import AudiotokError
from .common import PublishedFormat, build, one_checkpoint, package_version, read_json, torch_load
from .common import provenance as make_provenance
from .encodec import map_state as map_encodec_state


def _config(cfg: dict) -> dict:
    strides = list(cfg.get("strides", [8, 5, 4, 2]))
    if cfg.get("activation", "ELU") != "ELU":
        raise AudiotokError(f"SpeechTokenizer with activation {cfg.get('activation')!r} is not "
                            f"supported (ELU is)")
    seanet = {"type": "seanet", "n_filters": cfg.get("n_filters", 64),
              "n_residual_layers": cfg.get("n_residual_layers", 1),
              "residual_kernel_size": cfg.get("residual_kernel_size", 3),
              "dilation_base": cfg.get("dilation_base", 2),
              "lstm_layers": cfg.get("lstm_layers", 2), "causal": False, "true_skip": False}
    return {
        "family": "speechtokenizer", "sample_rate": cfg.get("sample_rate", 16000),
        "channels": 1, "latent_dim": cfg.get("dimension", 1024),
        "encoder": {**seanet, "strides": strides[::-1], "publisher_padding": True,
                    "bidirectional_lstm": bool(cfg.get("bidirectional", True))},
        "quantizer": {"type": "rvq", "n_codebooks": cfg.get("n_q", 8),
                      "codebook_size": cfg.get("codebook_size", 1024), "ema": True,
                      "ema_decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
                      "dead_code_threshold": 2.0, "eval_codeword": True},
        "decoder": {**seanet, "strides": strides},
    }


def files(path: Path) -> tuple[Path, Path]:
    """(config.json, checkpoint) of a folder, or of a checkpoint with config.json beside."""
    folder, ckpt = one_checkpoint(path, "*.pt", "SpeechTokenizer")
    return folder / "config.json", ckpt


def convert(path: Path):
    config_file, ckpt = files(path)
    cfg = read_json(config_file)
    state = torch_load(ckpt)
    if not isinstance(state, dict) or "encoder.model.0.conv.conv.weight_v" not in state:
        raise AudiotokError(f"{ckpt}: not a SpeechTokenizer checkpoint")
    state = {k: v for k, v in state.items() if not k.startswith("transform.")}
    provenance = make_provenance(
        "SpeechTokenizer config.json + .pt", ckpt, ckpt, "Apache-2.0 (SpeechTokenizer)",
        f"speechtokenizer {package_version('speechtokenizer')}")
    return build(ckpt, _config(cfg), lambda ours: map_encodec_state(state), provenance)


def _is_speechtokenizer_config(config: Path) -> bool:
    try:
        cfg = read_json(config)
    except AudiotokError:
        return False
    return "semantic_dimension" in cfg and "n_q" in cfg and "strides" in cfg


def recognise(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".pt" and _is_speechtokenizer_config(path.parent / "config.json")
    return path.is_dir() and _is_speechtokenizer_config(path / "config.json") and any(
        re.search(r"\.pt$", p.name) for p in path.iterdir())


SPEECHTOKENIZER = PublishedFormat("SpeechTokenizer", recognise, convert)
