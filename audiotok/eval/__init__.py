"""Evaluation: per-clip quality metrics, token-stream statistics and classic-codec baselines."""
