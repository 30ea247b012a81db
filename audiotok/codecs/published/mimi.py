"""Kyutai's Mimi (Défossez et al. 2024, "Moshi", sec. 3.3) in its release format: the moshi
package's safetensors, `tokenizer-e351c8d8-checkpoint125.safetensors`.

The file holds weights only; the architecture is the one moshi's `loaders.get_mimi` builds
(`_seanet_kwargs`, `_transformer_kwargs`, `_quantizer_kwargs` in moshi/models/loaders.py):
a causal SEANet (64 filters, ratios 8, 6, 5, 4, no weight norm), 8-layer transformers of width
512 with 8 heads and a 250-frame context before and after the quantizer, a learnt stride-2
conv from 25 Hz to 12.5 Hz, and a split RVQ of 1 semantic + 31 acoustic levels of 2048
codewords of 256 dims. Widths, layer counts, strides and codebooks are read from the weights;
heads (8), context (250 frames), RoPE period (10000) and the sample rate (24 kHz) are moshi's
fixed values, which no weight shows.

It is audiotok's Mimi family (codecs/mimi.py) with its publisher options: a depthwise,
bias-free upsampling conv, replicate padding of the downsampling conv, RoPE rounded as moshi
rounds it, one projection per RVQ group, and torch.cdist as the codeword search. Moshi uses
the first 8 of the 32 levels; `n_codebooks` picks any count from 1 (the semantic level) up.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from ...errors import AudiotokError
from .common import PublishedFormat, build, package_version, place, read_safetensors
from .common import provenance as make_provenance

EPSILON = 1e-5  # EuclideanCodebook's: codeword = embedding_sum / max(cluster_usage, epsilon)
SIGNATURE = "quantizer.rvq_first.vq.layers.0._codebook.embedding_sum"


def mimi_config(*, n_filters: int, ratios: list[int], dim: int, layers: int, heads: int,
                dim_feedforward: int, context: int, max_period: float, n_codebooks: int,
                n_semantic: int, codebook_size: int, codebook_dim: int, downsample: int,
                rope_style: str, publisher_padding: bool, sample_rate: int = 24000,
                channels: int = 1, kernel_size: int = 7, last_kernel_size: int = 3,
                residual_kernel_size: int = 3, dilation_base: int = 2, compress: int = 2,
                n_residual_layers: int = 1, upsample_groups: int | None = None,
                layer_scale: float = 0.01) -> dict:
    """A Mimi checkpoint's architecture as an audiotok config. `ratios` in decoder order
    (moshi's and transformers' convention: the encoder applies them reversed)."""
    transformer = {"dim": dim, "layers": layers, "heads": heads,
                   "dim_feedforward": dim_feedforward, "context": context,
                   "max_period": max_period, "layer_scale": layer_scale,
                   "rope_style": rope_style}
    seanet = {"type": "mimi", "n_filters": n_filters, "kernel_size": kernel_size,
              "last_kernel_size": last_kernel_size, "residual_kernel_size": residual_kernel_size,
              "dilation_base": dilation_base, "compress": compress,
              "n_residual_layers": n_residual_layers, "lstm_layers": 0, "causal": True,
              "pad_mode": "constant", "norm": "none", "true_skip": True,
              "transformer": transformer, "downsample": downsample}
    return {
        "family": "mimi", "sample_rate": sample_rate, "channels": channels, "latent_dim": dim,
        "encoder": {**seanet, "strides": list(ratios[::-1]), "resample_pad_mode": "replicate",
                    "publisher_padding": publisher_padding},
        "quantizer": {"type": "split_rvq", "n_semantic": n_semantic,
                      "n_codebooks": n_codebooks, "codebook_size": codebook_size,
                      "codebook_dim": codebook_dim, "shared_projection": True,
                      "projection_norm": False, "ema": True, "ema_decay": 0.99,
                      "ema_epsilon": EPSILON, "search": "cdist", "eval_codeword": True,
                      # Mimi trains with quantizer dropout on half the batch (paper, sec. 3.3)
                      "quantizer_dropout": 0.5},
        "decoder": {**seanet, "strides": list(ratios), "upsample_groups": upsample_groups or dim,
                    "upsample_bias": False},
    }


def codebook_tensors(prefix: str, embedding_sum: Tensor, cluster_usage: Tensor,
                     initialized: Tensor | None) -> dict[str, Tensor]:
    """An EMA codebook's buffers -> audiotok's level `prefix` (quantizer....levels.N)."""
    weight = embedding_sum / cluster_usage.clamp(min=EPSILON)[:, None]  # as the publisher
    out = {f"{prefix}.codebook.weight": weight, f"{prefix}.codebook.ema_sum": embedding_sum,
           f"{prefix}.codebook.ema_count": cluster_usage,
           f"{prefix}.usage": cluster_usage.clone()}
    if initialized is not None:
        out[f"{prefix}.initialized"] = initialized.reshape(()).bool()
    return out


# moshi's names -> audiotok's, applied in order (layer indices are the same on both sides)
RULES = [
    (r"^downsample\.conv\.conv\.conv\.", "encoder.downsample.conv."),
    (r"^upsample\.convtr\.convtr\.convtr\.", "decoder.upsample.convtr."),
    (r"^(encoder|decoder)\.model\.", r"\1.seanet.model."),
    (r"\.conv\.conv\.(weight|bias)$", r".conv.\1"),
    (r"\.convtr\.convtr\.(weight|bias)$", r".convtr.\1"),
    (r"^(encoder|decoder)_transformer\.transformer\.layers\.", r"\1.transformer.layers."),
    (r"\.self_attn\.in_projs\.0\.", ".attn.qkv."),
    (r"\.self_attn\.out_projs\.0\.", ".attn.out."),
    (r"\.linear1\.", ".mlp.0."), (r"\.linear2\.", ".mlp.2."),
    (r"\.layer_scale_1\.", ".scale1."), (r"\.layer_scale_2\.", ".scale2."),
    (r"^quantizer\.rvq_first\.", "quantizer.semantic_vq."),
    (r"^quantizer\.rvq_rest\.", "quantizer.acoustic_rvq."),
    (r"\.input_proj\.", ".in_proj."), (r"\.output_proj\.", ".out_proj."),
]
CODEBOOK = re.compile(r"^(quantizer\.\w+)\.vq\.layers\.(\d+)\._codebook\.(\w+)$")


def map_state(state: dict[str, Tensor], ours: set[str]) -> dict[str, Tensor]:
    out, books = {}, {}
    for key, value in state.items():
        name = key
        for pattern, repl in RULES:
            name = re.sub(pattern, repl, name)
        m = CODEBOOK.match(name)
        if m:
            books.setdefault(f"{m[1]}.levels.{m[2]}", {})[m[3]] = value
            continue
        module, _, leaf = name.rpartition(".")
        out[place(module, leaf, ours)] = value
    for prefix, parts in books.items():
        if "embedding_sum" not in parts or "cluster_usage" not in parts:
            out[f"{prefix}.codebook.ema_sum"] = parts.get("embedding_sum")  # reported missing
            continue
        out.update(codebook_tensors(prefix, parts["embedding_sum"], parts["cluster_usage"],
                                    parts.get("_initialized")))
    return {k: v for k, v in out.items() if v is not None}


def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m[1] for k in state if (m := regex.match(k))})


def config_from_weights(path: Path, state: dict[str, Tensor]) -> dict:
    """Architecture read off the weights' shapes, plus moshi's fixed values."""
    try:
        first = state["encoder.model.0.conv.conv.weight"]
        dim = state["encoder_transformer.transformer.layers.0.norm1.weight"].shape[0]
        ff = state["encoder_transformer.transformer.layers.0.linear1.weight"].shape[0]
        books = state[SIGNATURE]
        code_dim = books.shape[1]
        down = state["downsample.conv.conv.conv.weight"].shape[-1] // 2
    except KeyError as e:
        raise AudiotokError(f"{path}: not a Mimi checkpoint of the moshi package (no weight "
                            f"{e.args[0]})") from None
    # the encoder's stack: a conv, then per ratio residual blocks and a conv of kernel
    # 2 * ratio, then the last conv
    convs = sorted((int(m[1]), v) for k, v in state.items()
                   if (m := re.fullmatch(r"encoder\.model\.(\d+)\.conv\.conv\.weight", k)))
    ratios = [v.shape[-1] // 2 for _, v in convs[1:-1]]
    n_semantic = _count(state, r"quantizer\.rvq_first\.vq\.layers\.(\d+)\._codebook\.emb")
    n_acoustic = _count(state, r"quantizer\.rvq_rest\.vq\.layers\.(\d+)\._codebook\.emb")
    return mimi_config(
        n_filters=first.shape[0], ratios=ratios[::-1], dim=dim,
        layers=_count(state, r"encoder_transformer\.transformer\.layers\.(\d+)\."),
        heads=8, dim_feedforward=ff, context=250, max_period=10000.0,
        n_codebooks=n_semantic + n_acoustic, n_semantic=n_semantic,
        codebook_size=books.shape[0], codebook_dim=code_dim, downsample=down,
        rope_style="moshi", publisher_padding=False, channels=first.shape[1],
        kernel_size=first.shape[-1], last_kernel_size=convs[-1][1].shape[-1])


def convert(path: Path):
    state = read_safetensors(path)
    if SIGNATURE not in state:
        raise AudiotokError(f"{path}: not a Mimi checkpoint of the moshi package (expected "
                            f"weights such as {SIGNATURE})")
    config = config_from_weights(path, state)
    provenance = make_provenance(
        "moshi Mimi safetensors", path, path, "CC-BY 4.0 (Mimi weights)",
        f"moshi {package_version('moshi')}")
    return build(path, config, lambda ours: map_state(state, ours), provenance)


def recognise(path: Path) -> bool:
    if not (path.is_file() and path.suffix == ".safetensors"):
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return SIGNATURE in f.keys()  # noqa: SIM118 - a safe_open handle, not a dict
    except Exception:  # noqa: BLE001 - a damaged .safetensors: convert() says what is wrong
        return True  # (no other format reads a lone .safetensors file)


MIMI_MOSHI = PublishedFormat("moshi Mimi", recognise, convert)

