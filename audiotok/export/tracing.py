"""Tracing a torch module into ONNX bytes with torch's TorchScript-based exporter.

Why this exporter: torch's newer (dynamo) exporter needs the `onnx` and `onnxscript`
packages, and `onnx` cannot be installed next to descript-audiotools (which pins protobuf
3.19; onnx's wheels for it stop before Python 3.11). The TorchScript exporter builds the
ONNX protobuf inside torch and needs `onnx` for one step only: `_add_onnxscript_fn` parses
the model to insert onnx-script custom functions, and returns the bytes unchanged when the
graph has none. audiotok's graphs use standard operators only, so without `onnx` that step
is replaced by the identity for the duration of an export (`_without_onnxscript_functions`).

Tracing records one run: Python branches and Python arithmetic on sizes are fixed at the
traced shape. The modules that branch on lengths take a trace-friendly form while
`torch.jit.is_tracing()` (modules/conv.py reflect padding, modules/transformer.py attention
and RoPE, quantizers/search.py, modules/istft.py), and export/onnx.py checks every graph at
lengths other than the traced one.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

from ..errors import AudiotokError

OPSET = 17  # LayerNorm as one operator; what onnxruntime >= 1.14 runs


@contextlib.contextmanager
def _without_onnxscript_functions():
    """Skip the exporter's onnx-script function insertion when `onnx` is not installed (see
    the module docstring); a no-op when it is."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    original = onnx_proto_utils._add_onnxscript_fn
    onnx_proto_utils._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes
    try:
        yield
    finally:
        onnx_proto_utils._add_onnxscript_fn = original


def onnx_bytes(module: nn.Module, args: tuple, inputs: dict[str, dict[int, str]],
               outputs: dict[str, dict[int, str]]) -> bytes:
    """Trace `module(*args)` into a serialised ONNX model.

    inputs / outputs: name -> {axis: symbolic name} for the axes whose size varies (batch,
    time); the others are fixed at the traced size. Raises AudiotokError, naming the cause,
    for what the exporter cannot express (complex tensors, FFTs, ...).
    """
    f = io.BytesIO()
    axes = {**inputs, **outputs}
    try:
        with _without_onnxscript_functions(), torch.no_grad(), warnings.catch_warnings():
            # the tracer warns for every size it reads as a Python number: expected here, and
            # checked afterwards by running the graph at other sizes
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), args, f, dynamo=False, opset_version=OPSET,
                              input_names=list(inputs), output_names=list(outputs),
                              dynamic_axes={k: v for k, v in axes.items() if v},
                              do_constant_folding=True)
    except (RuntimeError, AssertionError, torch.onnx.errors.OnnxExporterError) as e:
        # (the exporter asserts on some shapes it cannot follow, e.g. cdist's rows)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudiotokError(f"torch's ONNX exporter cannot express "
                            f"{type(module).__name__}: {first}") from None
    return f.getvalue()
