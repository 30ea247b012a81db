"""The toolkit's version: a leaf module, so that the parts that record it (checkpoints, token
jobs, ONNX manifests) need not import the package root, which imports the codecs."""

__version__ = "0.1.0"
