"""Frozen self-supervised speech models (HuBERT, WavLM, wav2vec 2.0 through `transformers`)
as feature extractors, and the k-means units fitted on their layers.

Inference needs these (the `ssl` encoder and `kmeans` quantizer of codecs/ssl_kmeans.py);
training builds on them (distill/teachers.py, distill/ssl_units.py), so they live here, below
both, and the models never import the training side.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from ..errors import AudiotokError


def load_frozen(path: str):
    """`AutoModel.from_pretrained(path)` in eval mode with gradients off; one-line errors."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudiotokError(f"teacher '{path}': cannot load it with transformers ({first})"
                            ) from None
    model.eval()
    model.requires_grad_(False)
    return model


def pick_layers(layers: list[int], n_layers: int, path: str, key: str | None = None
                ) -> list[int]:
    """The hidden_states indices to average: `layers`, or 1..n_layers when empty; errors
    start with `key`, the setting that named them, when given."""
    layers = list(layers) or list(range(1, n_layers + 1))
    bad = [i for i in layers if i > n_layers]
    if bad:
        raise AudiotokError(f"{key + ': ' if key else ''}teacher '{path}' has {n_layers} "
                            f"layers (hidden states 0..{n_layers}); layers {bad} do not exist")
    return layers


def average_layers(hidden_states: tuple[Tensor, ...], layers: list[int]) -> Tensor:
    return torch.stack([hidden_states[i] for i in layers]).mean(0)


def layer_streams(layers: list, key: str = "layers") -> list[list[int]]:
    """A layer setting -> the hidden states of each stream (one k-means, one code row each).

    An integer is one hidden state (0 = the input embeddings, i = output of layer i), a list
    of integers is averaged into one stream, and [] is one stream averaging every layer:
    [6] -> [[6]], [3, 7, 12] -> [[3], [7], [12]] (the multi-layer tokens of Mousavi et al.
    2024), [[3, 4, 5], 12] -> [[3, 4, 5], [12]], [] -> [[]]. ValueError naming `key` for
    negative indices, an empty group, a layer twice in a group, or a stream given twice."""
    if not layers:
        return [[]]
    streams: list[list[int]] = []
    for i, item in enumerate(layers):
        group = [item] if isinstance(item, int) else list(item)
        if not group:
            raise ValueError(f"{key}[{i}] is an empty list: name the layers to average")
        if any(j < 0 for j in group):
            raise ValueError(f"{key}: hidden-state indices are >= 0, got {item}")
        if len(set(group)) < len(group):
            raise ValueError(f"{key}[{i}] names a layer twice: {item}")
        if sorted(group) in (sorted(s) for s in streams):
            name = group[0] if len(group) == 1 else group
            raise ValueError(f"{key}: layer {name} is listed twice")
        streams.append(group)
    return streams


def conv_geometry(config) -> tuple[int, tuple[int, int]]:
    """An SSL model's (stride, (left, right) padding) from its conv feature encoder: padding
    the input by receptive field - stride, split around it, gives exactly T / stride frames,
    frame i centred on samples [i * stride, (i + 1) * stride) (unpadded, HuBERT gives 49
    frames per second, each 40 samples late)."""
    stride, reach = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride):
        reach += (int(k) - 1) * stride
        stride *= int(s)
    pad = max(reach - stride, 0)
    return stride, (pad // 2, pad - pad // 2)


def load_units(path) -> tuple[Tensor, dict]:
    """A units file (written by `audiotok kmeans`, distill/ssl_units.py) -> (centroids float32
    [K, D] or [L, K, D], metadata with "teacher" decoded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise AudiotokError(f"{path}: no such k-means units file (fit one with `audiotok "
                            f"kmeans`)")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        if "centroids" not in f.keys():  # noqa: SIM118  (safe_open is not a dict)
            raise AudiotokError(f"{path}: not a k-means units file (no 'centroids')")
        centroids = f.get_tensor("centroids").float()
    if "teacher" in meta:
        meta["teacher"] = json.loads(meta["teacher"])
    return centroids, meta
