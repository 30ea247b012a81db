"""The spectral (STFT + ConvNeXt) encoder: its hop, features, reach and config checks.
Shapes, chunking and round trips run over it with every family in test_codec.py."""

import math

import pytest
import torch

from audiotok import Codec
from audiotok.codecs.stft_encoder import STFTEncoder, STFTEncoderConfig
from audiotok.errors import ConfigError


def encoder(channels=1, **kw):
    cfg = {"n_fft": 32, "hop_length": 8, "dim": 16, "num_layers": 1, "strides": [2, 2],
           "dims": [16, 24], "layers_per_stage": [1, 0], "mlp_ratio": 2.0}
    cfg.update(kw)
    torch.manual_seed(0)
    return STFTEncoder(STFTEncoderConfig(**cfg), channels=channels, latent_dim=8,
                       sample_rate=8000).eval()


def test_hop_is_stft_hop_times_strides():
    enc = encoder()
    assert enc.hop_length == 8 * 2 * 2
    z = enc(torch.randn(3, 1, 10 * enc.hop_length))
    assert z.shape == (3, 8, 10)


def test_stereo_features_keep_channels_apart():
    enc = encoder(channels=2)
    wav = torch.randn(1, 2, 64)
    feats = enc.features(wav)
    assert feats.shape == (1, 2 * 3 * 17, 8)
    mono = encoder().features(wav[:, :1])
    torch.testing.assert_close(feats[:, : 3 * 17], mono)
    # silence gives the log floor and a zero compressed spectrum, not NaN
    quiet = enc.features(torch.zeros(1, 2, 64))
    assert torch.isfinite(quiet).all()
    assert quiet[:, :17].max() == pytest.approx(math.log(1e-5), rel=1e-4)


def test_receptive_field_is_tight():
    enc = encoder(strides=[2], dims=[16], layers_per_stage=[1])
    left, right = enc.receptive_field()
    hop = enc.hop_length
    wav = torch.randn(1, 1, 80 * hop)
    t = 40
    with torch.no_grad():
        base = enc(wav)[..., t]
        # the periodic Hann window is 0 at its first sample, so the left bound is one sample
        # wide of the first sample that matters
        for pos, changes in ((t * hop - left + 1, True), (t * hop - left - 1, False),
                             (t * hop + right, True), (t * hop + right + 1, False)):
            bumped = wav.clone()
            bumped[..., pos] += 1.0
            moved = (enc(bumped)[..., t] - base).abs().max() > 0
            assert bool(moved) == changes, (pos, left, right)


def test_speech_recipe_builds_at_50_hz():
    from audiotok.train.config import read_recipe

    recipe = read_recipe("recipes/speech_16k_stft.yaml", ["data.train=unused"])
    codec = Codec(recipe.model)
    assert codec.frame_rate == 50 and codec.hop_length == 320
    assert codec.encoder.receptive_field() is not None  # bounded: chunked encoding is exact
    assert codec.decoder.receptive_field() is not None


@pytest.mark.parametrize("bad, match", [
    ({"strides": [2], "dims": [16, 16]}, "same length"),
    ({"n_fft": 8, "hop_length": 8}, "at least 2"),
    ({"n_fft": 33}, "even n_fft"),
    ({"dims": [0, 24]}, "dims must all be >= 1"),
    ({"mlp_ratio": 0}, "mlp_ratio"),
])
def test_config_errors(bad, match):
    cfg = {"family": "x", "sample_rate": 8000, "latent_dim": 8,
           "encoder": {"type": "stft", "n_fft": 32, "hop_length": 8, "strides": [2, 2],
                       "dims": [16, 24], "layers_per_stage": [1, 1], **bad},
           "quantizer": {"type": "rvq", "n_codebooks": 2, "codebook_size": 16},
           "decoder": {"type": "vocos", "dim": 16, "intermediate_dim": 32, "num_layers": 1,
                       "attention": False}}
    with pytest.raises(ConfigError, match=match):
        Codec.from_config(cfg)
