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
    enc = encoder(channels=2).double()
    # float64: the two calls run the FFT over batches of 2 and 1 rows, which float32 rounds
    # differently on some kernels, and the log-magnitude amplifies that in small bins
    wav = torch.randn(1, 2, 64, dtype=torch.float64)
    feats = enc.features(wav)
    assert feats.shape == (1, 2 * 3 * 17, 8)
    mono = encoder().double().features(wav[:, :1])
    torch.testing.assert_close(feats[:, : 3 * 17], mono)
    # silence gives the log floor and a zero compressed spectrum, not NaN
    quiet = enc.features(torch.zeros(1, 2, 64))
    assert torch.isfinite(quiet).all()
    assert quiet[:, :17].max() == pytest.approx(math.log(1e-5), rel=1e-4)


def _reach_mismatch(enc, left: int, right: int, t: int = 40) -> str | None:
    """Compare the claimed reach of frame t with the samples it actually depends on.

    The dependence is read off the gradient of frame t (under a random projection of its
    channels) in float64: outside the receptive field it is exactly zero (only products
    with zero flow there), inside it is a sum of products of non-zero factors. The edge
    samples (weighed by sin^2(pi / n_fft) in the periodic Hann window, then by the outermost
    taps of every layer) carry 1e-9..1e-8 of the largest gradient here, ~1e7 above float64
    rounding (1e-16), so a 1e-13 threshold has margins of 1e4 and more on both sides on any
    FFT or BLAS kernel. (The float32 forward bump this test used to make lost the edge
    sample's effect to rounding on some machines.)
    """
    hop = enc.hop_length
    wav = torch.randn(1, 1, 2 * t * hop, dtype=torch.float64, requires_grad=True)
    out = enc(wav)[0, :, t]
    (out * torch.randn_like(out)).sum().backward()
    grad = wav.grad[0, 0].abs()
    support = torch.nonzero(grad > 1e-13 * grad.max()).flatten()
    # the periodic Hann window is exactly 0 at its first sample, so the first sample that
    # matters is one past the field's left edge
    want = (t * hop - left + 1, t * hop + right)
    got = (int(support.min()), int(support.max()))
    return None if got == want else f"frame {t} reads samples {got}, the reach says {want}"


def test_receptive_field_is_tight():
    torch.manual_seed(0)
    enc = encoder(strides=[2], dims=[16], layers_per_stage=[1]).double()
    left, right = enc.receptive_field()
    assert _reach_mismatch(enc, left, right) is None
    # the check is sharp: a reach off by a couple of samples either way is caught
    for dl, dr in ((2, 0), (-2, 0), (0, 2), (0, -2), (1, 1)):
        assert _reach_mismatch(enc, left + dl, right + dr) is not None, (dl, dr)


def test_speech_recipe_builds_at_50_hz():
    from audiotok.train.recipe_config import read_recipe

    recipe = read_recipe("recipes/speech_16k/1_gla.yaml", ["data.train=unused"])
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
