"""The `audiotok demo` page: app.py lays out the Gradio page and its callbacks, core.py computes
what it shows (reconstructions, metrics, spectrogram and token-grid images) without any UI.
Gradio is imported by app.py only, so `audiotok.demo.core` works without it."""
