"""Discriminator contract, gradients, config errors and a quick real-vs-fake check, on tiny
configs (same code paths as the published sizes) over 0.25 s at 16 kHz."""

import math

import pytest
import torch

from audiotok.discriminators import (
    DISCRIMINATORS,
    MultiDiscriminator,
    build_discriminator,
    build_discriminators,
)
from audiotok.discriminators.cqt import ConstantQTransform, lowpass, upsample
from audiotok.errors import ConfigError

SR = 16000
TINY = {
    "mpd": {"channels": [4, 8, 8]},
    "msd": {"channels": [16] * 7},
    "msstft": {"filters": 4},
    "mrd": {"channels": 4},
    "cqt": {"filters": 4},
}


def tiny(name: str, channels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return build_discriminator({"type": name, **TINY[name]}, channels, SR)


def assert_contract(out, batch: int):
    assert isinstance(out, list) and out
    for logits, fmaps in out:
        assert isinstance(logits, torch.Tensor) and logits.shape[0] == batch
        assert logits.numel() > 0 and torch.isfinite(logits).all()
        assert isinstance(fmaps, list) and fmaps
        for f in fmaps:
            assert isinstance(f, torch.Tensor) and f.shape[0] == batch


def test_every_registered_type_has_a_tiny_config():
    assert sorted(TINY) == DISCRIMINATORS.names()


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("channels,length", [(1, 4000), (1, 4001), (2, 4443)])
def test_contract(name, channels, length):
    disc = tiny(name, channels)
    out = disc(torch.randn(2, channels, length))
    assert_contract(out, 2)
    assert len(out) == len(disc.discriminators)


def test_multi_discriminator_concatenates_families():
    specs = [{"type": n, **TINY[n]} for n in sorted(TINY)]
    multi = build_discriminators(specs, 1, SR)
    assert isinstance(multi, MultiDiscriminator)
    out = multi(torch.randn(3, 1, 4001))
    assert_contract(out, 3)
    assert len(out) == sum(len(d.discriminators) for d in multi.discriminators)


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_reach_input_and_every_parameter(name):
    disc = tiny(name)
    wav = torch.randn(2, 1, 4001, requires_grad=True)
    loss = sum(logits.mean() + sum(f.pow(2).mean() for f in fmaps) for logits, fmaps in disc(wav))
    loss.backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0
    for pname, p in disc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(TINY))
def test_unknown_config_key_is_named(name):
    with pytest.raises(ConfigError, match="widht"):
        build_discriminator({"type": name, "widht": 3}, 1, SR)


def test_unknown_key_in_multi_spec_names_its_position():
    specs = [{"type": "mrd", **TINY["mrd"]}, {"type": "mpd", "period": [2]}]
    with pytest.raises(ConfigError, match=r"discriminators\[1\]\.period"):
        build_discriminators(specs, 1, SR)
    with pytest.raises(ConfigError, match="unknown discriminator type"):
        build_discriminators([{"type": "msdd"}], 1, SR)


@pytest.mark.parametrize("name", sorted(TINY))
def test_normalised_spec_round_trips(name):
    full = DISCRIMINATORS.normalise({"type": name}, "discriminator")
    assert DISCRIMINATORS.normalise(dict(full), "discriminator") == full


def test_invalid_values_are_config_errors():
    with pytest.raises(ConfigError, match="hop"):
        build_discriminator({"type": "cqt", "hop_lengths": [100, 256, 256]}, 1, SR)
    with pytest.raises(ConfigError, match="groups"):
        build_discriminator({"type": "msd", "channels": [8] * 7}, 1, SR)


@pytest.mark.parametrize("sr", [16000, 24000])
def test_cqt_puts_a_sine_in_its_bin(sr):
    bins = 36
    cqt = ConstantQTransform(2 * sr, 256, 9, bins, 32.70)
    for freq in (110.0, 1000.0, 0.4 * sr):
        t = torch.arange(sr // 4) / sr
        wav = torch.sin(2 * math.pi * freq * t).view(1, 1, -1)
        z = cqt(upsample(wav, 2, lowpass(0.25, gain=2.0)))
        assert z.shape == (1, 2, 9 * bins, (2 * wav.shape[-1] - 1) // 256 + 1)
        mag = z.pow(2).sum(1).sqrt()[0, :, 4:-4].mean(-1)
        assert mag.argmax().item() == round(bins * math.log2(freq / 32.70))


@pytest.mark.parametrize("name", sorted(TINY))
def test_hinge_training_separates_sine_from_noise(name):
    disc = tiny(name, seed=1)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(4000) / SR

    def batch():
        freqs = 200 + 600 * torch.rand(2, 1, 1, generator=gen)
        return 0.5 * torch.sin(2 * math.pi * freqs * t), 0.3 * torch.randn(2, 1, 4000, generator=gen)

    def margin(real, fake):
        with torch.no_grad():
            means = [torch.stack([lg.mean() for lg, _ in disc(w)]).mean() for w in (real, fake)]
        return (means[0] - means[1]).item()

    held_out = batch()
    before = margin(*held_out)
    for _ in range(5):
        real, fake = batch()
        loss = sum(torch.relu(1 - lr).mean() + torch.relu(1 + lf).mean()
                   for (lr, _), (lf, _) in zip(disc(real), disc(fake)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = margin(*held_out)
    assert after > 0 and after > before
