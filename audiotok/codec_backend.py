"""Opening a codec for a job (the commands, the demo, the probes): a checked torch device, a
note when its weights are untrained, and the torch or onnxruntime backend it runs on."""

from __future__ import annotations

import sys

from .errors import AudiotokError


def check_device(device: str) -> None:
    """A one-line error for a device torch does not know or this machine does not have."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise AudiotokError(f"unknown device '{device}' (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AudiotokError(f"--device {device}: CUDA is not available here; use --device cpu")


def open_codec(ref, device, backend: str | None = None):
    """`load_codec(ref)` (the bundled model when `ref` is None) on a checked `device`, on the
    `backend` asked for ("torch", "onnxruntime", or None: whichever `ref` is)."""
    from .codecs import load_codec
    from .codecs.loading import default_codec, is_untrained

    check_device(device)
    ref = default_codec() if ref is None else ref
    codec = load_codec(ref, device=device)
    # a tokens-only codec (codecs/beats.py) makes no audio to call noise
    tokens_only = getattr(codec, "tokens_only", False)  # an ONNX export has none
    if is_untrained(codec) and not tokens_only:
        print(f"audiotok: note: codec '{ref}' has untrained weights; its audio is noise",
              file=sys.stderr)
    return with_backend(codec, ref, backend)


def with_backend(codec, ref, backend: str | None):
    """`codec` as it is, or its ONNX export (from the cache) for --backend onnxruntime; an
    export asked to run on torch is an error naming the codec it came from."""
    from .export.onnx_codec import OnnxCodec

    exported = isinstance(codec, OnnxCodec)
    if backend == "torch" and exported:
        raise AudiotokError(f"{ref} is an ONNX export: it runs with --backend onnxruntime; "
                            f"for torch pass the codec it was exported from "
                            f"({codec.manifest.get('source')})")
    if backend == "onnxruntime" and not exported:
        from .export.cache import onnx_backend

        return onnx_backend(codec)
    return codec
