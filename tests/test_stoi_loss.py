"""The differentiable STOI (losses/intelligibility.py) against pystoi, the metric `eval` uses."""

import math

import pytest
import torch
from pystoi import stoi as pystoi

from audiotok.losses import STOILoss
from audiotok.losses.intelligibility import third_octave_bands

SR = 16000


def voiced(seconds=2.0, seed=0):
    """A gliding 30-harmonic voice, amplitude-modulated at syllable rates, with no pauses."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    wav = sum(torch.sin(k * phase) / k for k in range(1, 31))
    wav = wav * (1.2 + torch.sin(2 * math.pi * 3 * t)) * (1 + 0.5 * torch.sin(2 * math.pi * 5.3 * t))
    return 0.1 * (wav + 0.02 * torch.randn(t.shape, generator=g))


def noisy(x, snr_db, seed=1):
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x + n / n.norm() * x.norm() / 10 ** (snr_db / 20)


@pytest.mark.parametrize("snr_db", [10, 0, -5])
def test_matches_pystoi_on_speech_without_pauses(snr_db):
    x = voiced()
    y = noisy(x, snr_db)
    ours = STOILoss(SR).per_item(x[None], y[None]).item()
    assert ours == pytest.approx(pystoi(x.numpy(), y.numpy(), SR), abs=0.005)


def test_ranks_like_pystoi_across_a_pause():
    # silence masked instead of cut out: values drift a little from pystoi, the order does not
    x = voiced(3.0)
    x[SR:int(1.6 * SR)] = 0
    loss = STOILoss(SR)
    ours = [loss.per_item(x[None], noisy(x, s)[None]).item() for s in (10, 0, -5)]
    ref = [pystoi(x.numpy(), noisy(x, s).numpy(), SR) for s in (10, 0, -5)]
    assert ours[0] > ours[1] > ours[2]
    assert max(abs(a - b) for a, b in zip(ours, ref)) < 0.03, (ours, ref)


def test_identity_is_zero_loss_and_gain_is_ignored():
    x = voiced(1.0).reshape(1, 1, -1).repeat(3, 1, 1)
    loss = STOILoss(SR)
    assert loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-5)
    # STOI normalises each window's energy: a gain does not change it
    assert loss(x, 0.3 * x).item() == pytest.approx(0.0, abs=1e-5)


def test_gradients_reach_the_estimate_and_stay_finite():
    x = voiced(1.0)[None, None]
    grads = []
    for start in (noisy(x, 0), torch.zeros_like(x)):
        est = start.clone().requires_grad_()
        value = STOILoss(SR)(x, est)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(est.grad).all()
        grads.append(est.grad.abs().sum())
    assert grads[0] > 0  # an all-zero estimate is a flat spot (|X| has no slope at 0)


@pytest.mark.parametrize("length", [1, 999, 6143, 16001])
def test_short_and_odd_lengths(length):
    x = voiced(1.1)[:length].reshape(1, -1)
    value = STOILoss(SR)(x, noisy(x, 0))
    assert torch.isfinite(value) and 0.0 <= value.item() <= 2.0


def test_silent_reference_scores_perfect_not_nan():
    x = torch.zeros(2, 1, SR)
    assert STOILoss(SR)(x, torch.randn_like(x)).item() == 0.0


def test_other_sample_rates_and_errors():
    x = voiced(1.0)
    x24 = torch.nn.functional.interpolate(x[None, None], scale_factor=1.5, mode="linear")[0]
    assert STOILoss(24000)(x24, x24).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        STOILoss(SR)(x[None], x[None, :-1])
    with pytest.raises(ValueError, match="sample_rate"):
        STOILoss(0)


def test_band_matrix_is_taals():
    from pystoi.utils import thirdoct

    bands = third_octave_bands()
    assert torch.equal(bands, torch.from_numpy(thirdoct(10000, 512, 15, 150)[0]).float())
    # the 150 Hz band holds bins 7-8 (137-156 Hz); the 3.8 kHz band ends at bin 218 (4.26 kHz)
    assert bands[0].nonzero().flatten().tolist() == [7, 8]
    assert bands[-1].nonzero().max().item() == 218
