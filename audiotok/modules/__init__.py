"""Shared layers used by the codec families."""
