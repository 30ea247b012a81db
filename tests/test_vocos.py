"""Vocos-style decoder: shapes, iSTFT inversion, gradients, receptive field, registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audiotok.codecs.components import DECODERS
from audiotok.codecs.vocos import VocosDecoder, VocosDecoderConfig
from audiotok.errors import ConfigError
from audiotok.modules.attention import SelfAttention
from audiotok.modules.istft import ISTFT, ISTFTHead, same_padding, stft_same

TINY = {"dim": 32, "intermediate_dim": 64, "num_layers": 2, "attention_heads": 4}


def tiny_decoder(hop: int, channels: int = 1, latent_dim: int = 16, **overrides) -> VocosDecoder:
    torch.manual_seed(0)
    cfg = VocosDecoderConfig(**{**TINY, **overrides})
    return VocosDecoder(cfg, channels=channels, latent_dim=latent_dim, hop_length=hop)


@pytest.mark.parametrize(
    "hop, channels, attention", [(40, 1, False), (64, 2, True), (40, 2, True)]
)
def test_output_length_is_frames_times_hop(hop, channels, attention):
    dec = tiny_decoder(hop, channels, attention=attention)
    for frames in (1, 3, 17):
        wav = dec(torch.randn(2, 16, frames))
        assert wav.shape == (2, channels, frames * hop)
        assert torch.isfinite(wav).all()


def test_default_n_fft_is_four_hops_and_bad_n_fft_is_a_config_error():
    assert tiny_decoder(40).n_fft == 160
    with pytest.raises(ConfigError, match="n_fft"):
        tiny_decoder(40, n_fft=60)  # less than 50% overlap


@pytest.mark.parametrize("n_fft, hop", [(160, 40), (256, 64), (150, 45)])
def test_stft_same_frames_like_torch_stft(n_fft, hop):
    wav = torch.randn(2, 9 * hop, dtype=torch.float64)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    ours = stft_same(wav, n_fft, hop, window)
    ref = torch.stft(
        F.pad(wav, same_padding(n_fft, hop)), n_fft, hop, window=window, center=False,
        return_complex=True,
    )
    assert ours.shape == (2, n_fft // 2 + 1, 9)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("n_fft, hop", [(160, 40), (256, 64), (150, 45)])
def test_istft_head_inverts_a_known_stft(n_fft, hop):
    torch.manual_seed(1)
    frames = 17
    wav = 0.3 * torch.randn(2, frames * hop)
    spec = stft_same(wav, n_fft, hop, torch.hann_window(n_fft))
    head = ISTFTHead(dim=8, n_fft=n_fft, hop_length=hop, channels=1)
    log_mag = spec.abs().clamp_min(1e-8).log()[:, None]
    out = head.synthesize(log_mag, spec.angle()[:, None])
    assert out.shape == (2, 1, frames * hop)
    inner = slice(n_fft, frames * hop - n_fft)
    torch.testing.assert_close(out[:, 0, inner], wav[:, inner], atol=1e-4, rtol=0)
    # "same" framing inverts exactly up to the edges too
    torch.testing.assert_close(out[:, 0], wav, atol=1e-4, rtol=0)


def test_istft_works_for_a_single_frame():
    spec = torch.randn(1, 81, 1, dtype=torch.complex64)
    assert ISTFT(160, 40)(spec).shape == (1, 40)


def test_gradient_reaches_every_parameter():
    dec = tiny_decoder(40, channels=2, attention=True)
    z = torch.randn(2, 16, 5, requires_grad=True)
    dec(z).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, p in dec.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("overrides", [{"attention": False}, {"attention_window": 2}])
def test_receptive_field_bounds_the_influence_of_a_frame(overrides):
    hop, frames, t = 40, 60, 30
    dec = tiny_decoder(hop, **overrides).eval()
    left, right = dec.receptive_field()
    assert frames > t + left + 1 and t - right > 0
    z = torch.randn(1, 16, frames)
    z2 = z.clone()
    z2[:, :, t] += 10.0
    with torch.no_grad():
        diff = (dec(z2) - dec(z)).abs()[0, 0]
    lo, hi = (t - right) * hop, (t + left + 1) * hop
    assert diff[lo:hi].max() > 1e-4
    outside = torch.cat([diff[:lo], diff[hi:]])
    assert outside.max() <= 1e-6 * diff.max()


def test_receptive_field_formula():
    # embed 3 + 2 ConvNeXt x 3 + iSTFT 2 (n_fft = 4 hop)
    assert tiny_decoder(40, attention=False).receptive_field() == (11, 11)
    # + pos_net: 4 ResBlocks x 2 + window 2
    assert tiny_decoder(40, attention_window=2).receptive_field() == (21, 21)
    assert tiny_decoder(40, attention=True).receptive_field() is None


def test_attention_window_and_causal_mask_what_a_frame_sees():
    torch.manual_seed(0)
    attn = SelfAttention(8, heads=2, causal=True, window=1)
    x = torch.randn(1, 8, 6, requires_grad=True)
    attn(x)[0, :, 3].sum().backward()
    seen = x.grad[0].abs().sum(0) > 0
    assert seen.tolist() == [False, False, True, True, False, False]
    assert attn.reach() == (1, 0)


def test_built_through_the_registry_and_unknown_keys_are_named():
    spec = {"type": "vocos", **TINY, "attention_window": 4}
    dec = DECODERS.build(spec, "decoder", channels=1, latent_dim=16, hop_length=40)
    assert isinstance(dec, VocosDecoder)
    assert dec(torch.randn(1, 16, 3)).shape == (1, 1, 120)
    assert DECODERS.normalise({"type": "vocos"}, "decoder")["n_fft"] is None
    with pytest.raises(ConfigError, match="intermediate_dimm"):
        DECODERS.build(
            {"type": "vocos", "intermediate_dimm": 64}, "decoder",
            channels=1, latent_dim=16, hop_length=40,
        )
    with pytest.raises(ConfigError, match="attention_heads"):
        DECODERS.parse({"type": "vocos", "dim": 30, "attention_heads": 4}, "decoder")
