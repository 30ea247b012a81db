"""WavTokenizer's releases (Ji et al. 2024, arXiv:2408.16532): a Lightning `.ckpt` and the
YAML it was trained with (novateur/WavTokenizer*, configs/wavtokenizer_*_attn.yaml of
jishengpeng/WavTokenizer).

The network is audiotok's SEANet encoder as EnCodec builds it, non-causal (its
decoder/feature_extractors.py `EncodecFeatures`: reflect padding, conv shortcuts, a 2-layer
LSTM, 512-dim latents, the YAML's `dowmsamples` as strides), one EMA codebook (`vq_bins`
4096 entries, searched as EnCodec searches), and audiotok's Vocos decoder with WavTokenizer's
options (codecs/vocos.py: AdaLayerNorm, a GroupNorm pos_net with single-head attention,
"same" iSTFT head with n_fft = 4 * hop).

The `.ckpt` holds `state_dict` with the generator under `feature_extractor.encodec.encoder`,
`feature_extractor.encodec.quantizer`, `backbone` and `head`, beside what only training
uses (EnCodec's unused SEANet decoder, the discriminators, the mel loss's buffers) and
Lightning's bookkeeping; only the generator is read. The released files pickle nothing but
tensors and ordered dicts (the hub's pickle scan lists `_rebuild_tensor_v2`, `FloatStorage`,
`OrderedDict`), so they load with torch.load(weights_only=True); a checkpoint whose
bookkeeping pickles objects (a Lightning CLI namespace in `hyper_parameters`) loads with
those objects left unbuilt (common.torch_load_tensors): no pickled code ever runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from torch import Tensor

from ...errors import AudiotokError
from .common import (
    PublishedFormat,
    build,
    one_checkpoint,
    package_version,
    place,
    split_leaf,
    torch_load_tensors,
)
from .common import provenance as make_provenance

LICENCE = "MIT (WavTokenizer)"


def wavtokenizer_config(strides: list[int], *, n_filters: int = 32, latent_dim: int = 512,
                        codebook_size: int = 4096, kmeans_iters: int = 200,
                        dim: int = 768, intermediate_dim: int = 2304, num_layers: int = 12,
                        adanorm_embeddings: int = 4, norm_groups: int = 32,
                        seanet: dict | None = None) -> dict:
    """A WavTokenizer release as an audiotok config; `strides` in the order the encoder
    applies them (the YAML's `dowmsamples` reversed: EnCodec's SEANetEncoder walks
    `reversed(ratios)`). The decoder's n_fft is 4 * hop, as in every released YAML."""
    encoder = {"type": "seanet", "n_filters": n_filters, "strides": list(strides),
               "n_residual_layers": 1, "lstm_layers": 2, "causal": False,
               "pad_mode": "reflect", "true_skip": False, "publisher_padding": True,
               **(seanet or {})}
    return {
        "family": "wavtokenizer", "sample_rate": 24000, "channels": 1,
        "latent_dim": latent_dim,
        "encoder": encoder,
        # EnCodec's EuclideanCodebook as WavTokenizer configures it (ResidualVectorQuantizer
        # with decay 0.99, kmeans_init, kmeans_iters = vq_kmeans, dead codes below 2 uses)
        "quantizer": {"type": "vq", "codebook_size": codebook_size, "ema": True,
                      "ema_decay": 0.99, "kmeans_init": True, "kmeans_iters": kmeans_iters,
                      "dead_code_threshold": 2.0, "eval_codeword": True},
        "decoder": {"type": "vocos", "dim": dim, "intermediate_dim": intermediate_dim,
                    "num_layers": num_layers, "n_fft": 4 * math.prod(strides),
                    "attention": True, "attention_heads": 1,
                    "adanorm_embeddings": adanorm_embeddings, "pos_net_norm": "group",
                    "norm_groups": norm_groups, "pos_net_dropout": 0.1},
    }


# WavTokenizer's VocosBackbone.pos_net (an nn.Sequential: ResnetBlock x 2, AttnBlock,
# ResnetBlock x 2, GroupNorm) -> audiotok's PosNet
POS_NET = {"0": "pre.0", "1": "pre.1", "2": "attn", "3": "post.0", "4": "post.1", "5": "norm"}
CONVNEXT = {"pwconv1": "up", "pwconv2": "down", "gamma": "scale"}
BACKBONE = {"embed": "embed", "norm": "norm", "final_layer_norm": "final_norm"}


def decoder_name(key: str) -> str | None:
    """A backbone/head weight of WavTokenizer's code or transformers' WavTokenizerModel
    (same names but `head.linear` for `head.out`) -> audiotok's name; None for those that
    merge with others (the attention's q/k/v, see merge_qkv)."""
    m = re.fullmatch(r"backbone\.pos_net\.(\d)\.(\w+)(.*)", key)
    if m:
        if m[1] == "5":  # the closing GroupNorm itself: pos_net.5.weight
            return f"decoder.pos_net.norm.{m[2]}{m[3]}"
        if m[2] in ("q", "k", "v", "proj_out"):
            return None
        return f"decoder.pos_net.{POS_NET[m[1]]}.{m[2]}{m[3]}"
    m = re.fullmatch(r"backbone\.convnext\.(\d+)\.(\w+)(.*)", key)
    if m:
        return f"decoder.blocks.{m[1]}.{CONVNEXT.get(m[2], m[2])}{m[3]}"
    m = re.fullmatch(r"backbone\.(embed|norm|final_layer_norm)\.(.+)", key)
    if m:
        return f"decoder.{BACKBONE[m[1]]}.{m[2]}"
    m = re.fullmatch(r"head\.(out|linear)\.(weight|bias)", key)
    if m:
        return f"decoder.head.proj.{m[2]}"
    return key  # unknown: check_mapping names it


def merge_qkv(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """WavTokenizer's AttnBlock keeps q, k, v and proj_out as 1x1 convs; audiotok's
    SelfAttention has one Linear whose output rows are q, k, v in that order (one head), and
    an output Linear."""
    import torch

    def linear(name: str) -> Tensor | None:
        w = state.get(f"{prefix}.{name}.weight")
        return None if w is None else w.reshape(w.shape[0], -1)

    out = {}
    parts = [linear(n) for n in ("q", "k", "v")]
    biases = [state.get(f"{prefix}.{n}.bias") for n in ("q", "k", "v")]
    if all(p is not None for p in parts):
        out["decoder.pos_net.attn.qkv.weight"] = torch.cat(parts)
    if all(b is not None for b in biases):
        out["decoder.pos_net.attn.qkv.bias"] = torch.cat(biases)
    if linear("proj_out") is not None:
        out["decoder.pos_net.attn.out.weight"] = linear("proj_out")
    if f"{prefix}.proj_out.bias" in state:
        out["decoder.pos_net.attn.out.bias"] = state[f"{prefix}.proj_out.bias"]
    return out


def map_decoder(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """backbone.* and head.* -> audiotok's decoder.* (1x1 convs become Linear weights)."""
    out = {name: value for key, value in state.items()
           if (name := decoder_name(key)) is not None}
    out.update(merge_qkv(state, "backbone.pos_net.2"))
    return out


def map_codebook(book: dict[str, Tensor]) -> dict[str, Tensor]:
    """EnCodec's EuclideanCodebook buffers (embed, embed_avg, cluster_size, inited) ->
    audiotok's single-level VQ."""
    out = {"quantizer.codebook.weight": book["embed"],
           "quantizer.codebook.ema_sum": book["embed_avg"],
           "quantizer.codebook.ema_count": book["cluster_size"],
           "quantizer.usage": book["cluster_size"].clone(),  # running use, for restarts
           "quantizer.initialized": book["inited"].reshape(()).bool()}
    return out


ENCODER_PREFIX = "feature_extractor.encodec.encoder."
CODEBOOK_PREFIX = "feature_extractor.encodec.quantizer.vq.layers.0._codebook."
GENERATOR = (ENCODER_PREFIX, CODEBOOK_PREFIX, "backbone.", "head.out.")


def map_state(state: dict[str, Tensor], ours: set[str]) -> dict[str, Tensor]:
    """The `.ckpt` state_dict's generator -> audiotok's names."""
    out = {}
    for key, value in state.items():
        if key.startswith(ENCODER_PREFIX):  # EnCodec's names: model.N.conv.conv.weight_g
            module, leaf = split_leaf("encoder." + key[len(ENCODER_PREFIX):])
            module = re.sub(r"\.(conv)\.conv$", r".\1", module)
            out[place(module.removesuffix(".conv"), leaf, ours)] = value
    book = {k[len(CODEBOOK_PREFIX):]: v for k, v in state.items()
            if k.startswith(CODEBOOK_PREFIX)}
    if book:
        out.update(map_codebook(book))
    out.update(map_decoder({k: v for k, v in state.items()
                            if k.startswith(("backbone.", "head.out."))}))
    return out


# ---------------------------------------------------------------- files
def read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise AudiotokError(f"{path}: unreadable YAML ({' '.join(str(e).split())[:160]})"
                            ) from None
    return data if isinstance(data, dict) else {}


def _init_args(cfg: dict, part: str) -> dict:
    model = cfg.get("model", cfg)  # the training YAML, or a `from_hparams` one without `model`
    args = model.get("init_args", model) if isinstance(model, dict) else {}
    block = args.get(part) if isinstance(args, dict) else None
    return block.get("init_args", {}) if isinstance(block, dict) else {}


def is_wavtokenizer_yaml(cfg: dict) -> bool:
    fe = _init_args(cfg, "feature_extractor")
    return "dowmsamples" in fe and bool(_init_args(cfg, "backbone"))


def config_from_yaml(cfg: dict, path: Path, n_filters: int = 32) -> dict:
    """The YAML's architecture; `n_filters` is not in it (EncodecFeatures fixes it at 32)."""
    fe, bb, head = (_init_args(cfg, p) for p in ("feature_extractor", "backbone", "head"))
    if fe.get("num_quantizers", 1) != 1:
        raise AudiotokError(f"{path}: WavTokenizer with num_quantizers="
                            f"{fe.get('num_quantizers')} is not supported (the releases use 1)")
    if head.get("padding", "same") != "same":
        raise AudiotokError(f"{path}: an ISTFT head with padding {head.get('padding')!r} is "
                            f"not supported (the releases use 'same')")
    strides = list(fe.get("dowmsamples", [6, 5, 5, 4]))[::-1]
    hop = math.prod(strides)
    if head.get("hop_length", hop) != hop or head.get("n_fft", 4 * hop) != 4 * hop:
        raise AudiotokError(f"{path}: head hop_length {head.get('hop_length')} / n_fft "
                            f"{head.get('n_fft')} do not fit dowmsamples (hop {hop}, n_fft "
                            f"{4 * hop})")
    return wavtokenizer_config(
        strides, n_filters=n_filters, latent_dim=bb.get("input_channels", 512),
        codebook_size=fe.get("vq_bins", 16384), kmeans_iters=fe.get("vq_kmeans", 800),
        dim=bb.get("dim", 768), intermediate_dim=bb.get("intermediate_dim", 2304),
        num_layers=bb.get("num_layers", 12),
        adanorm_embeddings=bb.get("adanorm_num_embeddings") or 0)


def files(path: Path) -> tuple[Path, Path]:
    """(YAML, .ckpt) of a folder holding one of each, or of a .ckpt with its YAML beside."""
    folder, ckpt = one_checkpoint(path, "*.ckpt", "WavTokenizer")
    ckpts = [ckpt]
    yamls = [p for p in sorted(folder.glob("*.y*ml")) if is_wavtokenizer_yaml(read_yaml(p))]
    if not yamls:
        raise AudiotokError(f"{ckpts[0]}: no WavTokenizer YAML beside it (the release's "
                            f"configs/wavtokenizer_*.yaml gives the architecture; put it in "
                            f"the same folder)")
    if len(yamls) > 1:
        # releases share a folder (novateur/WavTokenizer holds the 40 and 75 token models):
        # the YAML whose hop matches the file name's (…_320_… / …_600_…)
        hops = {p: math.prod(_init_args(read_yaml(p), "feature_extractor")["dowmsamples"])
                for p in yamls}
        named = [p for p, h in hops.items() if f"_{h}_" in ckpts[0].name]
        if len(named) != 1:
            raise AudiotokError(f"{ckpts[0]}: {len(yamls)} WavTokenizer YAMLs beside it and "
                                f"its name does not say which is its own; keep one")
        yamls = named
    return yamls[0], ckpts[0]


def convert(path: Path):
    yaml_file, ckpt = files(path)
    cfg = read_yaml(yaml_file)
    blob = torch_load_tensors(ckpt)
    state = blob.get("state_dict") if isinstance(blob, dict) else None
    first = f"{ENCODER_PREFIX}model.0.conv.conv.weight_v"
    if not isinstance(state, dict) or first not in state:
        raise AudiotokError(f"{ckpt}: not a WavTokenizer checkpoint (expected a Lightning "
                            f"state_dict with feature_extractor.encodec.encoder weights)")
    # the encoder's width is a constant of WavTokenizer's code, not a YAML field: 32 in
    # every release; read from the first conv so that narrower variants load too
    config = config_from_yaml(cfg, yaml_file, n_filters=state[first].shape[0])
    state = {k: v for k, v in state.items() if k.startswith(GENERATOR)}
    provenance = make_provenance(
        "WavTokenizer .ckpt + YAML", ckpt, ckpt, LICENCE,
        f"WavTokenizer (jishengpeng/WavTokenizer); transformers "
        f"{package_version('transformers')} WavTokenizerModel")
    provenance["config"] = str(yaml_file.resolve())
    try:
        return build(ckpt, config, lambda ours: map_state(state, ours), provenance)
    except AudiotokError as e:  # shapes from the YAML that the weights do not have
        raise AudiotokError(f"{e} (architecture from {yaml_file.name})") from None


def recognise(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".ckpt"
    return path.is_dir() and any(p.suffix == ".ckpt" for p in path.iterdir())


WAVTOKENIZER_CKPT = PublishedFormat("WavTokenizer", recognise, convert)
