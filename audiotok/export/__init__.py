"""Exporting codecs for other runtimes.

    from audiotok.export import export_onnx
    export_onnx(load_codec("audiotok/speech-16k"), "speech_onnx/", streaming=False)
    codec = load_codec("speech_onnx/")   # an OnnxCodec, run by onnxruntime

onnx.py writes the folder (graphs.py / step_layers.py: what is traced, tracing.py: how),
onnx_codec.py and onnx_stream.py run it.
"""

from .onnx import check_exportable, export_onnx

__all__ = ["check_exportable", "export_onnx"]
