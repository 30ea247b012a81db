"""Exports made on the fly for `--backend onnxruntime` with a torch codec: one folder per
codec fingerprint under the cache (AUDIOTOK_CACHE, else ~/.cache/audiotok), reused by later
runs and by tokenize's worker processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import AudiotokError
from .onnx import export_onnx
from .onnx_codec import OnnxCodec, is_onnx_export


def cache_root() -> Path:
    root = os.environ.get("AUDIOTOK_CACHE") or Path.home() / ".cache" / "audiotok"
    return Path(root) / "onnx"


def onnx_backend(codec) -> OnnxCodec:
    """The ONNX export of torch `codec` from the cache, exported there first if missing
    (with step graphs where the codec streams them, so long inputs stream as in torch)."""
    folder = cache_root() / f"{codec.config.family}-{codec.fingerprint()}"
    if not is_onnx_export(folder):
        print(f"audiotok: exporting {codec.ref} to ONNX in {folder} (once)", file=sys.stderr)
        try:
            export_onnx(codec, folder, streaming=codec._streams_by_stage(), force=True)
        except AudiotokError:
            if not codec._streams_by_stage():
                raise
            export_onnx(codec, folder, streaming=False, force=True)
    onnx = OnnxCodec.open(folder)
    if onnx.fingerprint() != codec.fingerprint():
        raise AudiotokError(f"{folder}: holds another codec's export; remove it")
    return onnx
