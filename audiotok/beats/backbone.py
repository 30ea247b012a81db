"""BEATs' Transformer backbone lives in modules/beats_transformer.py (the codec family
imports it from there without this package); this name is kept for existing imports."""

from ..modules.beats_transformer import Backbone, BackboneConfig, ConvPosition

__all__ = ["Backbone", "BackboneConfig", "ConvPosition"]
