"""Mimi-style causal codec: windowed causal transformer, split RVQ, exact streaming."""

import math
import random

import pytest
import torch
from conftest import TINY

import audiotok
from audiotok import Codec
from audiotok.modules.transformer import (
    CausalTransformer,
    TransformerConfig,
    local_causal_attention,
    window_mask,
)
from audiotok.quantizers import build_quantizer

TRANSFORMER = {"dim": 16, "layers": 2, "heads": 2, "dim_feedforward": 32, "context": 8}
MIMI = {
    "family": "mimi-tiny", "sample_rate": 8000, "latent_dim": 16,
    "encoder": {"type": "mimi", "n_filters": 4, "strides": [2, 4], "downsample": 2,
                "transformer": TRANSFORMER},
    "quantizer": {"type": "split_rvq", "n_codebooks": 4, "codebook_size": 32,
                  "codebook_dim": 8, "quantizer_dropout": 0.5},
    "decoder": {"type": "mimi", "n_filters": 4, "strides": [4, 2], "downsample": 2,
                "transformer": TRANSFORMER},
}
# a plain causal SEANet with zero padding: streams layer by layer
SEANET_CAUSAL = {**TINY["seanet-causal"],
                 "encoder": {**TINY["seanet-causal"]["encoder"], "pad_mode": "constant"},
                 "decoder": {**TINY["seanet-causal"]["decoder"], "pad_mode": "constant"}}
# EnCodec's layout: causal convs with reflect padding (the first frames wait for the samples
# the padding mirrors) and an LSTM on both sides (its state is carried)
SEANET_LSTM = {**TINY["seanet-causal"],
               "encoder": {**TINY["seanet-causal"]["encoder"], "lstm_layers": 2},
               "decoder": {**TINY["seanet-causal"]["decoder"], "lstm_layers": 2}}
# causal DAC has no stream_stages(): streams as one stage recomputing its receptive field
DAC_CAUSAL = {**TINY["dac"], "encoder": {**TINY["dac"]["encoder"], "causal": True},
              "decoder": {**TINY["dac"]["decoder"], "causal": True}}


def build(config=MIMI, seed: int = 0) -> Codec:
    torch.manual_seed(seed)
    return Codec.from_config(dict(config)).eval()


def random_sizes(total: int, seed: int, sizes=(1, 3, 16, 17, 29, 64)):
    rng, pos = random.Random(seed), 0
    while pos < total:
        n = rng.choice(sizes)
        yield pos, min(pos + n, total)
        pos += n


# -- transformer -------------------------------------------------------------------------------

def tiny_transformer(**changes) -> CausalTransformer:
    torch.manual_seed(0)
    return CausalTransformer(TransformerConfig(**{**TRANSFORMER, **changes})).eval()


@torch.no_grad()
def test_transformer_window_invariance():
    """A frame's output is the same in a long sequence and in any window holding its causal
    context (RoPE is relative), and changes when one frame of that context is missing."""
    model = tiny_transformer(layer_scale=None)
    left, right = model.reach()
    assert (left, right) == (2 * 7, 0)
    x = torch.randn(2, 16, 90)
    whole = model(x)
    for start in (40, 73):
        window = model(x[..., start - left: start + 5])[..., left:]
        torch.testing.assert_close(window, whole[..., start: start + 5], rtol=1e-5, atol=1e-5)
        short = model(x[..., start - left + 1: start + 5])[..., left - 1:]
        assert (short[..., 0] - whole[..., start]).abs().max() > 1e-3  # reach is tight
    # causal: the future never matters
    torch.testing.assert_close(model(x[..., :50]), whole[..., :50], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_transformer_step_equals_forward():
    model = tiny_transformer()
    x = torch.randn(1, 16, 70)
    state, pieces = None, []
    for a, b in random_sizes(70, seed=1, sizes=(1, 2, 9, 20)):
        y, state = model.step(x[..., a:b], state)
        pieces.append(y)
    torch.testing.assert_close(torch.cat(pieces, -1), model(x), rtol=1e-5, atol=1e-6)
    assert all(k.shape[-2] == 7 for k, _ in state.caches)  # context - 1 frames
    assert state.position == 70


@pytest.mark.parametrize("n,m,context", [(37, 0, 8), (30, 5, 8), (16, 7, 8), (9, 0, 1)])
def test_blockwise_attention_equals_masked(n, m, context):
    q, k, v = torch.randn(2, 3, n, 4), torch.randn(2, 3, m + n, 4), torch.randn(2, 3, m + n, 4)
    dense = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=window_mask(n, m + n, context, None))
    torch.testing.assert_close(local_causal_attention(q, k, v, context), dense)


# -- codec -------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 15, 16, 17, 333])
def test_shapes_over_odd_lengths(length):
    codec = build()
    assert codec.hop_length == 16
    wav = torch.randn(2, 1, length) * 0.1
    tokens = codec.encode(wav)
    assert tokens.codes.shape == (2, 4, math.ceil(length / 16))
    assert codec.decode(tokens).shape == wav.shape
    assert codec.train()(wav).audio.shape == wav.shape


def test_receptive_fields_are_causal_bounds():
    codec = build()
    hop = codec.hop_length
    left, right = codec.encoder.receptive_field()
    assert right == hop - 1
    d_left, d_right = codec.decoder.receptive_field()
    assert d_right == 0
    wav, z = torch.randn(1, 1, 40 * hop), torch.randn(1, 16, 40)
    pos, t0 = 30 * hop + 3, 20
    with torch.no_grad():
        bumped = wav.clone()
        bumped[..., pos] += 1.0
        diff = (codec.encoder(bumped) - codec.encoder(wav)).abs().amax(1)[0]
        frames = torch.nonzero(diff > 0).flatten()
        assert frames.min() >= math.ceil((pos - right) / hop)
        assert frames.max() <= math.floor((pos + left) / hop)
        moved = z.clone()
        moved[..., t0] += 1.0
        diff = (codec.decoder(moved) - codec.decoder(z)).abs().amax(1)[0]
        frames = torch.nonzero(diff > 0).flatten() // hop
        assert frames.min() == t0 and frames.max() <= t0 + d_left


def test_chunked_offline_encode_equals_whole():
    codec = build()
    wav = torch.randn(1, 1, 30 * codec.hop_length + 5) * 0.2
    whole = codec.encode(wav, chunk_seconds=None).codes
    chunked = codec.encode(wav, chunk_seconds=4 / codec.frame_rate).codes
    assert torch.equal(chunked, whole)


def test_forward_trains_and_exposes_semantic_latent():
    codec = build().train()
    wav = torch.randn(2, 1, 200) * 0.1
    out = codec(wav)
    assert out.semantic is not None and out.semantic.shape == out.z_q.shape
    loss = (out.audio - wav).abs().mean() + sum(out.losses.values()) + out.semantic.pow(2).mean()
    loss.backward()
    for part in (codec.encoder.seanet, codec.encoder.transformer):
        grad = next(part.parameters()).grad
        assert grad is not None and grad.abs().sum() > 0


def test_save_load_identical(tmp_path):
    codec = build()
    wav = torch.randn(1, 1, 700) * 0.1
    tokens = codec.encode(wav)
    codec.save_pretrained(tmp_path / "ckpt")
    loaded = audiotok.load_codec(tmp_path / "ckpt")
    assert torch.equal(loaded.encode(wav).codes, tokens.codes)
    assert torch.equal(loaded.decode(tokens), codec.decode(tokens))


def test_mimi_family_preset():
    codec = audiotok.load_codec("mimi-like")
    assert (codec.sample_rate, codec.hop_length, codec.frame_rate) == (24000, 1920, 12.5)
    assert codec.encoder.receptive_field()[1] == 1919
    assert codec.decoder.receptive_field()[1] == 0
    assert codec.bitrate() == pytest.approx(1100.0)


# -- streaming ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [MIMI, SEANET_CAUSAL, SEANET_LSTM, DAC_CAUSAL],
                         ids=["mimi", "seanet-causal", "seanet-lstm-reflect", "dac-causal"])
def test_stream_equals_offline(config):
    codec = build(config)
    hop = codec.hop_length
    wav = torch.randn(2, 1, 45 * hop + 7) * 0.3
    tokens = codec.encode(wav)
    audio = codec.decode(tokens)
    stream = codec.stream()
    for seed in range(3):
        pieces = [stream.encode(wav[..., a:b]) for a, b in random_sizes(wav.shape[-1], seed)]
        codes = torch.cat([*pieces, stream.flush()], -1)
        assert torch.equal(codes, tokens.codes), seed
        frames = [stream.decode(codes[..., a:b])
                  for a, b in random_sizes(codes.shape[-1], seed, sizes=(1, 2, 5, 9))]
        out = torch.cat([*frames, stream.end_decode()], -1)
        assert out.shape[-1] == codes.shape[-1] * hop
        torch.testing.assert_close(out[..., : wav.shape[-1]], audio, rtol=0, atol=1e-5)
        stream.reset()


def test_stream_details():
    codec = build()
    tokens = codec.encode(torch.randn(1, 1, 100) * 0.3, n_codebooks=2)
    stream = codec.stream(n_codebooks=2)
    assert stream.encode(torch.zeros(1, 1, 0)).shape == (1, 2, 0)
    assert stream.flush().shape == (1, 2, 0)  # nothing was fed
    assert stream.encode(torch.randn(1, 1, 15)).shape == (1, 2, 0)  # not a whole frame yet
    assert stream.encode(torch.randn(1, 1, 1)).shape == (1, 2, 1)
    assert stream.flush().shape == (1, 2, 0)  # ended on a frame boundary
    assert stream.decode(tokens.codes).shape == (1, 1, tokens.codes.shape[-1] * 16)
    with pytest.raises(ValueError, match="batch size changed"):
        stream.decode(torch.cat([tokens.codes] * 2))
    with pytest.raises(ValueError, match="channel"):
        stream.encode(torch.zeros(1, 2, 10))
    with pytest.raises(ValueError, match="out of range"):
        stream.decode(torch.full((1, 2, 1), 32))


@pytest.mark.parametrize("frames", [1, 2, 6])
def test_reflect_padded_stream_holds_back_only_the_start(frames):
    """A signal shorter than what reflect padding mirrors at its start: nothing comes out
    until the signal ends; flush() and end_decode() then give the whole-signal results."""
    codec = build(SEANET_LSTM)
    hop = codec.hop_length
    wav = torch.randn(1, 1, frames * hop) * 0.3
    tokens = codec.encode(wav)
    stream = codec.stream()
    early = [stream.encode(wav[..., i:i + 3]) for i in range(0, wav.shape[-1], 3)]
    codes = torch.cat([*early, stream.flush()], -1)
    assert torch.equal(codes, tokens.codes)
    pieces = [stream.decode(codes[..., i:i + 1]) for i in range(frames)]
    if frames == 1:
        assert pieces[0].shape[-1] == 0  # its first samples mirror later ones
    out = torch.cat([*pieces, stream.end_decode()], -1)
    torch.testing.assert_close(out, codec.decode(tokens), rtol=0, atol=1e-5)
    assert stream.end_decode().shape == (0, 1, 0)  # ended: a new signal starts


BIDIRECTIONAL = {**TINY["seanet-causal"], "encoder": {
    **TINY["seanet-causal"]["encoder"], "causal": False, "lstm_layers": 1,
    "bidirectional_lstm": True}}


@pytest.mark.parametrize("config,why", [(TINY["seanet-lstm"], "past the end"),
                                        (TINY["seanet-conv"], "past the end"),
                                        (BIDIRECTIONAL, "unbounded")])
def test_non_causal_codec_refuses_to_stream(config, why):
    with pytest.raises(ValueError, match=f"cannot stream.*{why}"):
        build(config).stream()


# -- split RVQ ---------------------------------------------------------------------------------

def split_rvq(**changes):
    torch.manual_seed(0)
    spec = {"type": "split_rvq", "n_codebooks": 4, "codebook_size": 16, "codebook_dim": 4,
            **changes}
    return build_quantizer(spec, 8)


def test_split_rvq_round_trip_and_reduction():
    q = split_rvq().eval()
    z = torch.randn(2, 8, 12)
    out = q(z)
    codes = q.encode(z)
    assert torch.equal(codes, out.codes) and codes.shape == (2, 4, 12)
    torch.testing.assert_close(q.decode(codes), out.z_q)
    torch.testing.assert_close(out.semantic, q.semantic_latent(z))
    torch.testing.assert_close(q.decode(codes[:, :1]), out.semantic)
    for n in (1, 2, 3):
        assert torch.equal(q.encode(z, n), codes[:, :n])
        torch.testing.assert_close(q(z, n).z_q, q.decode(codes[:, :n]))
    # both parts see the same latent: the acoustic levels do not quantize a residual of the
    # semantic one
    torch.testing.assert_close(out.z_q - out.semantic, q.acoustic_rvq.quantize(z, 3).z_q)


def test_split_rvq_dropout_keeps_semantic_level():
    q = split_rvq(quantizer_dropout=1.0).train()
    z = torch.randn(64, 8, 3, requires_grad=True)
    out = q(z)
    q.eval()
    semantic = q.semantic_latent(z)
    torch.testing.assert_close(out.semantic, semantic)
    acoustic = out.z_q - out.semantic
    prefixes = [torch.zeros_like(z)] + [q.acoustic_rvq.quantize(z, n).z_q for n in (1, 2, 3)]
    kept = [min(range(4), key=lambda n, b=b: (acoustic[b] - prefixes[n][b]).abs().max().item())
            for b in range(64)]
    for b, n in enumerate(kept):
        torch.testing.assert_close(acoustic[b], prefixes[n][b])
    assert set(kept) == {0, 1, 2, 3}  # every acoustic depth, semantic level always kept
    out.semantic.sum().backward()
    assert z.grad.abs().sum() > 0  # straight-through: distillation reaches the encoder


def test_split_rvq_config_errors():
    from audiotok.errors import ConfigError

    with pytest.raises(ConfigError, match="n_semantic"):
        split_rvq(n_semantic=4)
    with pytest.raises(ConfigError, match="n_semantic"):
        split_rvq(n_semantic=0)
