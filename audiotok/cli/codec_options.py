"""Options shared by the commands that open a codec: what --codec accepts, and --backend."""

from __future__ import annotations

CODEC_HELP = ("codec checkpoint directory, recipe .yaml (untrained weights) or a name from "
              "`audiotok info --list`")


def add_backend(p) -> None:
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="run the codec with torch, or with onnxruntime (CPU): a folder from "
                   "`audiotok export --format onnx` runs as it is, any other codec is "
                   "exported once into the cache (AUDIOTOK_CACHE, default ~/.cache/audiotok); "
                   "default: torch, onnxruntime for an exported folder")
