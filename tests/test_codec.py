"""The Codec API over every family: shapes, round trips, checkpoints, chunking, errors."""

import math
import warnings
from pathlib import Path

import pytest
import torch
from conftest import CONV_FAMILIES, TINY, build

import audiotok
from audiotok import Codec, Tokens
from audiotok.errors import AudiotokError, ConfigError, TokenFileError


@pytest.mark.parametrize("length", [1, 7, 39, 40, 41, 333])
def test_shapes_over_odd_lengths(family, length):
    codec = build(family)
    wav = torch.randn(2, codec.channels, length) * 0.1
    tokens = codec.encode(wav)
    frames = math.ceil(length / codec.hop_length)
    assert tokens.codes.shape == (2, codec.n_codebooks, frames)
    assert tokens.codes.dtype == torch.long
    assert tokens.lengths.tolist() == [frames, frames]
    for k, size in enumerate(codec.codebook_sizes):
        assert 0 <= tokens.codes[:, k].min() and tokens.codes[:, k].max() < size
    out = codec.decode(tokens)
    assert out.shape == (2, codec.channels, length)
    train = codec.train()(wav)
    assert train.audio.shape == wav.shape


def test_forward_gradients_reach_encoder(family):
    codec = build(family).train()
    wav = torch.randn(2, codec.channels, 400) * 0.1
    out = codec(wav)
    loss = (out.audio - wav).abs().mean() + sum(out.losses.values())
    loss.backward()
    first = next(codec.encoder.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_save_load_identical(tmp_path, family):
    codec = build(family)
    wav = torch.randn(1, codec.channels, 1234) * 0.1
    tokens = codec.encode(wav)
    codec.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "model.safetensors"]
    loaded = audiotok.load_codec(tmp_path / "ckpt")
    assert loaded.fingerprint() == codec.fingerprint()
    again = loaded.encode(wav)
    assert torch.equal(again.codes, tokens.codes)
    assert torch.equal(loaded.decode(again), codec.decode(tokens))


def test_fingerprint_survives_config_fields_added_later(tmp_path):
    """A codec saved by an older audiotok lacks the config fields added since (loading fills
    in their defaults): its fingerprint is still the one it recorded, so its token files stay
    valid, also after the loaded codec is saved again."""
    import json

    codec = build("seanet-conv")
    codec.save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["config"]["decoder"]["dilation_base"]  # as if the field did not exist yet
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="fingerprint"):  # recorded with the field in
        first = audiotok.load_codec(tmp_path / "old")
    meta["spec"]["fingerprint"] = first.fingerprint()  # what the older audiotok recorded
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    tokens = first.encode(torch.randn(1, 1, 2000) * 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = audiotok.load_codec(tmp_path / "old")
        loaded.decode(tokens)  # a changed fingerprint would refuse these tokens
        loaded.save_pretrained(tmp_path / "resaved")
        again = audiotok.load_codec(tmp_path / "resaved")
    assert again.fingerprint() == first.fingerprint()
    saved = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert saved["config"] == meta["config"]


def test_half_precision_export_halves_size_and_verifies(tmp_path):
    codec = build("seanet-conv")
    codec.save_pretrained(tmp_path / "fp32")
    state = torch.random.get_rng_state()
    codec.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    assert torch.equal(torch.random.get_rng_state(), state)  # saving draws no random numbers
    size = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("fp32", "fp16")}
    assert size["fp16"] < 0.65 * size["fp32"]  # float tensors halve; int buffers, header stay
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recorded fingerprint must match the loaded weights
        loaded = audiotok.load_codec(tmp_path / "fp16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.fingerprint() != codec.fingerprint()  # rounded weights are other weights
    wav = torch.randn(1, 1, 4000) * 0.1
    ta, tb = codec.encode(wav), loaded.encode(wav)
    assert (ta.codes == tb.codes).float().mean() > 0.9  # rounding may flip near-ties only
    with torch.inference_mode():
        a, b = (c.decoder(c.quantizer.decode(ta.codes)) for c in (codec, loaded))
    assert (a - b).abs().max() < 1e-2 * a.abs().max()


def test_reduced_codebooks_lower_bitrate():
    codec = build("seanet-conv")
    wav = torch.randn(1, 1, 800) * 0.1
    full = codec.encode(wav)
    two = codec.encode(wav, n_codebooks=2)
    assert two.codes.shape[1] == 2
    assert torch.equal(two.codes, full.codes[:, :2])
    assert two.bitrate == pytest.approx(full.bitrate / 2)
    assert two.bitrate == pytest.approx(codec.frame_rate * 2 * math.log2(64))
    assert codec.decode(two).shape == wav.shape
    with pytest.raises(ValueError, match="between 1 and 4"):
        codec.encode(wav, n_codebooks=5)


@pytest.mark.parametrize("name", CONV_FAMILIES)
@pytest.mark.parametrize("chunk_frames", [1, 4, 13, 50])
def test_chunked_encode_equals_whole(name, chunk_frames):
    codec = build(name)
    wav = torch.randn(1, codec.channels, 30 * codec.hop_length + 17) * 0.2
    whole = codec.encode(wav, chunk_seconds=None).codes
    seconds = chunk_frames / codec.frame_rate
    chunked = codec.encode(wav, chunk_seconds=seconds).codes
    assert torch.equal(chunked, whole)


@pytest.mark.parametrize("name", CONV_FAMILIES)
def test_chunked_decode_matches_whole(name):
    codec = build(name)
    wav = torch.randn(1, codec.channels, 40 * codec.hop_length) * 0.2
    tokens = codec.encode(wav)
    whole = codec.decode(tokens, chunk_seconds=None)
    for frames in (1, 7, 25):
        chunked = codec.decode(tokens, chunk_seconds=frames / codec.frame_rate)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_receptive_field_is_an_upper_bound():
    """Perturbing one sample changes only frames within the reported receptive field."""
    for name in CONV_FAMILIES:
        codec = build(name)
        left, right = codec.encoder.receptive_field()
        hop = codec.hop_length
        wav = torch.randn(1, codec.channels, 64 * hop)
        pos = 30 * hop + 3
        with torch.no_grad():
            base = codec.encoder(wav)
            bumped = wav.clone()
            bumped[..., pos] += 1.0
            diff = (codec.encoder(bumped) - base).abs().amax(dim=1)[0]
        changed = torch.nonzero(diff > 0).flatten()
        assert len(changed) > 0
        # frame t sees samples [t*hop - left, t*hop + right]
        lo, hi = math.ceil((pos - right) / hop), math.floor((pos + left) / hop)
        assert changed.min() >= lo and changed.max() <= hi, name


def test_padded_batch_lengths():
    codec = build("dac")
    wav = torch.randn(3, 1, 500) * 0.1
    tokens = codec.encode(wav, lengths=torch.tensor([500, 37, 8]))
    assert tokens.lengths.tolist() == [63, 5, 1]
    assert tokens.num_samples.tolist() == [500, 37, 8]
    with pytest.raises(ValueError, match="lengths"):
        codec.encode(wav, lengths=torch.tensor([0, 1, 2]))


def test_bad_waveforms():
    codec = build("dac")
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        codec.encode(torch.zeros(100))
    with pytest.raises(ValueError, match="channel"):
        codec.encode(torch.zeros(1, 2, 100))
    with pytest.raises(AudiotokError, match="no samples"):
        codec.encode(torch.zeros(1, 1, 0))
    bad = torch.zeros(1, 1, 100)
    bad[0, 0, 5] = float("nan")
    with pytest.raises(AudiotokError, match="NaN"):
        codec.encode(bad)


def test_decode_refuses_other_codec():
    a, b = build("dac", seed=0), build("dac", seed=1)
    tokens = a.encode(torch.randn(1, 1, 200))
    with pytest.raises(TokenFileError, match="made by codec 'dac'"):
        b.decode(tokens)
    with pytest.raises(TokenFileError, match="made by codec"):
        build("seanet-conv").decode(tokens)


def test_decode_refuses_out_of_range_codes():
    codec = build("seanet-conv")
    tokens = codec.encode(torch.randn(1, 1, 200))
    tokens.codes[0, 1, 2] = 64
    with pytest.raises(TokenFileError, match="code 64 at codebook level 1"):
        codec.decode(tokens)


def test_config_errors_name_the_key():
    cfg = dict(TINY["dac"])
    cfg["encoder"] = {**cfg["encoder"], "d_modle": 8}
    with pytest.raises(ConfigError, match="unknown key 'encoder.d_modle'.*d_model"):
        Codec.from_config(cfg)
    cfg = dict(TINY["dac"], decoder={"type": "dac", "strides": [4, 4]})
    with pytest.raises(ConfigError, match="multiply to 16"):
        Codec.from_config(cfg)
    with pytest.raises(ConfigError, match="unknown quantizer type 'rqv'.*rvq"):
        Codec.from_config(dict(TINY["dac"], quantizer={"type": "rqv"}))


def test_public_api():
    for name in ("Codec", "Tokens", "load_codec", "list_codecs"):
        assert hasattr(audiotok, name)
    assert {"dac", "seanet", "wavtokenizer"} <= set(audiotok.list_codecs())
    with pytest.raises(AudiotokError, match="no codec 'nope'"):
        audiotok.load_codec("nope")


def test_recipe_codec_is_deterministic(tmp_path):
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": TINY["dac"]}))
    a, b = audiotok.load_codec(recipe), audiotok.load_codec(recipe)
    assert a.fingerprint() == b.fingerprint()
    assert isinstance(a.encode(torch.zeros(1, 1, 64)), Tokens)


def test_untrained_codec_spreads_frames_over_codes():
    """Zero-initialised biases: an untrained encoder's frames differ with the input, so level 0
    uses many codes (random bias init sent every frame to one codeword: perplexity 1.0)."""
    import numpy as np
    from conftest import speechlike

    from audiotok.quantizers.codebook_usage import code_metrics

    recipes = Path(__file__).resolve().parent.parent / "recipes"
    codec = audiotok.load_codec(recipes / "tiny_speech_16k.yaml")
    wav = torch.from_numpy(np.ascontiguousarray(speechlike(2.0, 16000).T))[None]
    codes = codec.encode(wav).codes
    perplexity = code_metrics(codes[:, 0], codec.codebook_sizes[0], 0)["vq/perplexity/0"]
    assert perplexity > 10, perplexity


def test_snake_inference_path_matches_autograd_path():
    from audiotok.modules.snake import Snake1d

    snake = Snake1d(6)
    with torch.no_grad():
        snake.alpha.uniform_(0.2, 3.0)
    x = torch.randn(2, 6, 777, requires_grad=True)
    y = snake(x)
    expected = x + torch.sin(snake.alpha * x) ** 2 / snake.alpha
    assert torch.allclose(y, expected, atol=1e-6)
    y.sum().backward()
    assert x.grad is not None and snake.alpha.grad is not None
    with torch.inference_mode():
        x_in = x.detach().clone()
        fast = snake(x_in)
        assert torch.equal(x_in, x.detach())  # the input is not modified in place
    assert torch.allclose(fast, y.detach(), atol=1e-6)
