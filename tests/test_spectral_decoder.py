"""The magnitude decoder (codecs/spectral_decoder.py) and fast Griffin-Lim (modules/griffin_lim.py).
Shapes, chunked decoding, save/load and gradients run over it with every family in
test_codec.py ("stft-spectral")."""

import math

import pytest
import torch
from conftest import build, speechlike

from audiotok import Codec
from audiotok.codecs.spectral_decoder import SpectralDecoder, SpectralDecoderConfig
from audiotok.errors import ConfigError
from audiotok.modules.griffin_lim import fast_griffin_lim, griffin_lim_reach
from audiotok.modules.istft import ISTFT, stft_same


def _inconsistency(mag: torch.Tensor, spec: torch.Tensor, istft: ISTFT) -> float:
    """Spectral convergence between the wanted magnitudes and those of the resynthesis."""
    again = stft_same(istft(spec), istft.n_fft, istft.hop_length, istft.window).abs()
    return float(torch.linalg.vector_norm(again - mag) / torch.linalg.vector_norm(mag))


def test_griffin_lim_recovers_a_consistent_phase():
    istft = ISTFT(256, 64)
    wav = torch.from_numpy(speechlike(1.0, 8000)[:, 0]).view(1, -1)[..., : 125 * 64]
    mag = stft_same(wav, 256, 64, istft.window).abs()
    errors = {n: _inconsistency(mag, fast_griffin_lim(mag, istft, n), istft)
              for n in (0, 4, 32)}
    # measured: 0.82 (zero phase), 0.34, 0.076
    assert errors[32] < errors[4] < errors[0]
    assert errors[32] < 0.12, errors
    # deterministic: the same magnitudes always give the same audio
    torch.testing.assert_close(fast_griffin_lim(mag, istft, 8), fast_griffin_lim(mag, istft, 8),
                               rtol=0, atol=0)


def test_griffin_lim_reach_bounds_the_spread():
    istft = ISTFT(32, 8)
    mag = torch.rand(1, 17, 80) + 0.1
    iterations = 3
    base = fast_griffin_lim(mag, istft, iterations)
    bumped = mag.clone()
    bumped[..., 40] *= 3
    diff = (fast_griffin_lim(bumped, istft, iterations) - base).abs().amax(dim=1)[0]
    changed = torch.nonzero(diff > 1e-6).flatten()
    reach = griffin_lim_reach(32, 8, iterations)
    assert changed.min() >= 40 - reach and changed.max() <= 40 + reach
    assert changed.max() > 40  # it does spread


def decoder(**kw):
    cfg = {"dim": 16, "intermediate_dim": 32, "num_layers": 1, "upsample": 2, "fine_dim": 12,
           "fine_layers": 1, "iterations": 4, "train_iterations": 2, **kw}
    torch.manual_seed(0)
    return SpectralDecoder(SpectralDecoderConfig(**cfg), channels=1, latent_dim=8,
                           hop_length=32, sample_rate=8000)


def test_shapes_and_training_loss():
    dec = decoder()
    z = torch.randn(2, 8, 11)
    assert dec.n_fft == 64 and dec.stft_hop == 16
    assert dec.log_magnitude(z).shape == (2, 1, 33, 22)
    assert dec(z).shape == (2, 1, 11 * 32)
    wav, losses = dec.forward_train(z, torch.randn(2, 1, 11 * 32) * 0.1)
    assert wav.shape == (2, 1, 11 * 32)
    assert set(losses) == {"decoder/magnitude", "decoder/compressed"}
    loss = losses["decoder/magnitude"]
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert dec.embed.weight.grad.abs().sum() > 0
    # silence as the target: the log floor keeps the loss finite
    _, quiet = dec.forward_train(z, torch.zeros(2, 1, 11 * 32))
    assert torch.isfinite(quiet["decoder/magnitude"])


def test_magnitude_loss_is_small_for_a_matching_prediction():
    """With the target's own log-magnitudes as the prediction the loss is ~0, and it grows
    with the error."""
    dec = decoder()
    target = torch.from_numpy(speechlike(0.5, 8000)[:, 0]).view(1, 1, -1)[..., : 125 * 32]
    true = stft_same(target[:, 0], dec.n_fft, dec.stft_hop, dec.istft.window).abs()
    true_log = true.clamp(min=1e-5).log()[:, None]

    def loss_for(log_mag):
        dec._predict = lambda z: (log_mag, None, None)  # no pitch: no F0, no envelope
        return float(dec.forward_train(torch.zeros(1, 8, 125), target)[1]["decoder/magnitude"])

    exact, off = loss_for(true_log), loss_for(true_log + math.log(2))
    assert exact < 1e-3 and off > 0.5


def test_tiny_codec_learns_magnitudes():
    """A few dozen optimiser steps on one signal bring the magnitude loss well down."""
    codec = build("stft-spectral").train()
    wav = torch.from_numpy(speechlike(0.6, 8000).T[None].copy())
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        loss = codec(wav).losses["decoder/magnitude"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    # measured: 2.5 -> 0.96
    assert history[-1] < 0.5 * history[0], history


@pytest.mark.parametrize("bad, match", [
    ({"upsample": 3}, "upsample \\(3\\) must divide"),
    ({"n_fft": 16}, "at least 2"),
    ({"momentum": 1.0}, "momentum"),
    ({"iterations": -1}, "iterations must be >= 0"),
])
def test_config_errors(bad, match):
    cfg = {"family": "x", "sample_rate": 8000, "latent_dim": 8,
           "encoder": {"type": "stft", "n_fft": 32, "hop_length": 8, "strides": [4],
                       "dims": [16], "layers_per_stage": [1]},
           "decoder": {"type": "spectral", "dim": 16, "intermediate_dim": 16, **bad}}
    with pytest.raises((ConfigError, ValueError), match=match):
        Codec.from_config(cfg)


def test_speech_recipe_fits_the_bundle_budget():
    from audiotok.train.recipe_config import read_recipe

    recipe = read_recipe("recipes/speech_16k/1_gla.yaml", ["data.train=unused"])
    codec = Codec(recipe.model)
    assert codec.frame_rate == 50 and codec.decoder.stft_hop == 160
    params = sum(p.numel() for p in codec.parameters())
    assert 2 * params < 20e6  # fp16 weights under the ~20 MB bundle limit
    assert codec.decoder.receptive_field() is not None
