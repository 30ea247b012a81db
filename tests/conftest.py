import math

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(2)

# The STFT encoder and RVQ that the two frame-rate families share.
_STFT_TINY = {
    "family": "stft-test", "sample_rate": 8000, "latent_dim": 16,
    "encoder": {"type": "stft", "n_fft": 24, "hop_length": 6, "dim": 16, "num_layers": 1,
                "strides": [2], "dims": [12], "layers_per_stage": [1], "mlp_ratio": 2.0,
                "kernel_size": 3},
    "quantizer": {"type": "rvq", "n_codebooks": 3, "codebook_size": 64,
                  "codebook_dim": 4, "l2_normalize": True},
}

# Tiny versions of every family: same code paths as the full-size models, a few k params.
TINY = {
    "seanet-lstm": {
        "family": "seanet", "sample_rate": 8000, "latent_dim": 16,
        "encoder": {"type": "seanet", "n_filters": 4, "strides": [2, 4], "lstm_layers": 1},
        "quantizer": {"type": "rvq", "n_codebooks": 3, "codebook_size": 32},
        "decoder": {"type": "seanet", "n_filters": 4, "strides": [4, 2], "lstm_layers": 1},
    },
    "seanet-conv": {
        "family": "seanet", "sample_rate": 8000, "latent_dim": 16,
        "encoder": {"type": "seanet", "n_filters": 4, "strides": [2, 5], "lstm_layers": 0},
        "quantizer": {"type": "rvq", "n_codebooks": 4, "codebook_size": 64,
                      "codebook_dim": 4, "l2_normalize": True},
        "decoder": {"type": "seanet", "n_filters": 4, "strides": [5, 2], "lstm_layers": 0},
    },
    "seanet-causal": {
        "family": "seanet", "sample_rate": 8000, "latent_dim": 16,
        "encoder": {"type": "seanet", "n_filters": 4, "strides": [2, 4], "lstm_layers": 0,
                    "causal": True},
        "quantizer": {"type": "grvq", "groups": 2, "n_codebooks": 4, "codebook_size": 16},
        "decoder": {"type": "seanet", "n_filters": 4, "strides": [4, 2], "lstm_layers": 0,
                    "causal": True},
    },
    "dac": {
        "family": "dac", "sample_rate": 8000, "latent_dim": 16,
        "encoder": {"type": "dac", "d_model": 4, "strides": [2, 4]},
        "quantizer": {"type": "rvq", "n_codebooks": 3, "codebook_size": 1024,
                      "codebook_dim": 4, "l2_normalize": True},
        "decoder": {"type": "dac", "channels": 16, "strides": [4, 2]},
    },
    "wavtokenizer": {
        "family": "wavtokenizer", "sample_rate": 8000, "latent_dim": 16,
        "encoder": {"type": "seanet", "n_filters": 4, "strides": [2, 4, 5], "lstm_layers": 0},
        "quantizer": {"type": "vq", "codebook_size": 128},
        "decoder": {"type": "vocos", "dim": 16, "intermediate_dim": 32, "num_layers": 2,
                    "attention": True, "attention_heads": 2},
    },
    "fsq-stereo": {
        "family": "fsq-test", "sample_rate": 8000, "channels": 2, "latent_dim": 8,
        "encoder": {"type": "dac", "d_model": 4, "strides": [4]},
        "quantizer": {"type": "fsq", "levels": [5, 4, 3]},
        "decoder": {"type": "vocos", "dim": 16, "intermediate_dim": 32, "num_layers": 1,
                    "attention": False},
    },
    "stft-vocos": {  # the STFT encoder with a Vocos decoder: everything at frame rate
        **_STFT_TINY,
        "decoder": {"type": "vocos", "dim": 16, "intermediate_dim": 32, "num_layers": 2,
                    "attention": False},
    },
    "stft-spectral": {  # the bundled speech-16k design: magnitudes + Griffin-Lim phase
        **_STFT_TINY, "family": "spectral-test",
        "decoder": {"type": "spectral", "dim": 16, "intermediate_dim": 32, "num_layers": 1,
                    "upsample": 2, "fine_dim": 12, "fine_layers": 1, "iterations": 4,
                    "train_iterations": 2},
    },
    "stft-pitch": {  # speech-16k: YIN F0 as token level 0, envelopes x harmonic comb decoder
        **_STFT_TINY, "family": "pitch-test", "latent_dim": 17,
        "encoder": {**_STFT_TINY["encoder"], "pitch": True},
        "quantizer": {**_STFT_TINY["quantizer"], "type": "pitch_rvq", "pitch_levels": 256},
        "decoder": {"type": "spectral", "dim": 16, "intermediate_dim": 32, "num_layers": 1,
                    "upsample": 2, "fine_dim": 12, "fine_layers": 1, "iterations": 4,
                    "train_iterations": 2, "pitch": True, "envelope_points": 5},
    },
}
# the sixth speech-16k release: F0 refined on the harmonics, harmonic phase (no Griffin-Lim)
TINY["stft-harmonic"] = {
    **TINY["stft-pitch"], "family": "harmonic-test",
    "encoder": {**TINY["stft-pitch"]["encoder"], "pitch_refine": True},
    "decoder": {**TINY["stft-pitch"]["decoder"], "phase": "harmonic"},
}

CONV_FAMILIES = ["seanet-conv", "seanet-causal", "dac", "fsq-stereo", "stft-vocos",
                 "stft-spectral", "stft-pitch", "stft-harmonic"]


def build(name: str, seed: int = 0):
    from audiotok import Codec

    torch.manual_seed(seed)
    return Codec.from_config(dict(TINY[name])).eval()

def one_thread_fixture(scope: str = "module"):
    """An autouse fixture that runs a test module on one torch thread: modules of tiny ops
    (small convs, heads, anti-aliased activations) spend more on a second thread's
    synchronisation than it saves on a busy 2-core machine. Use as
    `one_thread = one_thread_fixture()` at module level."""

    @pytest.fixture(scope=scope, autouse=True)
    def one_thread():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)

    return one_thread


@pytest.fixture(params=sorted(TINY))
def family(request):
    return request.param


def speechlike(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A voiced, amplitude-modulated harmonic signal with noise bursts: [T, C] float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * math.pi * 3.0 * t)) ** 2
    sig = 0.2 * voiced * env + 0.02 * rng.standard_normal(t.shape)
    return np.stack([np.roll(sig, 37 * c) for c in range(channels)], axis=1).astype(np.float32)


@pytest.fixture
def write_audio(tmp_path):
    def write(name: str, seconds: float = 1.0, sr: int = 8000, channels: int = 1, **kw):
        path = tmp_path / name
        sf.write(str(path), speechlike(seconds, sr, channels), sr, **kw)
        return path
    return write


# A sitecustomize.py that makes every atomic commit (os.replace) take 0.25 s, so a job run
# with it lasts long enough for a test to kill it mid-work, whatever the machine's speed.
SLOW_COMMITS = """
import os, time
_replace = os.replace
def _slow_replace(*args, **kwargs):
    time.sleep(0.25)
    return _replace(*args, **kwargs)
os.replace = _slow_replace
"""


def slow_commits_env(folder) -> dict:
    """os.environ plus a PYTHONPATH that loads SLOW_COMMITS into a Python subprocess."""
    from pathlib import Path

    hook = Path(folder) / "slow_commits"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SLOW_COMMITS)
    import os

    return {**os.environ, "PYTHONPATH": str(hook)}
