"""FreeCodec: a per-utterance timbre code beside per-frame prosody and content streams.

Tokens carry the per-utterance codes (`global_codes` [B, G]), token files store them
(format version 3; files without them stay version 2), the corpus tokenizer writes them per
utterance, LM layouts prefix them, and `with_global` swaps them between clips (voice
conversion)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import one_thread_fixture, speechlike

from audiotok import Codec, Tokens, load_codec
from audiotok.cli import main
from audiotok.codecs.base import CodecConfig
from audiotok.errors import ConfigError, TokenFileError
from audiotok.lm import flatten_tree, prepend_global, split_global, unflatten_tree
from audiotok.quantizers import build_quantizer
from audiotok.strict_config import from_dict, to_dict
from audiotok.tokenize import read_index, read_records
from audiotok.tokens import read_header
from audiotok.train import read_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "designs"


one_thread = one_thread_fixture()


def recipe(name, *overrides):
    return read_recipe(RECIPES / f"{name}.yaml", ["data.train=unused", *overrides])


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return Codec(recipe("freecodec_16k_tiny").model).eval()


def clip(seconds, seed=0, f0_scale=1.0):
    """`seconds` of speechlike signal at 16 kHz with its pitch scaled by `f0_scale`."""
    sig = speechlike(seconds * f0_scale, 16000 / f0_scale, seed=seed)[:, 0]
    return torch.from_numpy(sig[: int(seconds * 16000)].copy())[None, None]


def test_full_size_rates():
    """56.25 tokens/s (content at 50 Hz, prosody every 8 frames), 256-entry codes: 0.45
    kbps; 8 timbre codes of 1024 entries, 80 bits per utterance."""
    torch.manual_seed(0)
    c = Codec(recipe("freecodec_16k").model)
    assert (c.sample_rate, c.frame_rate) == (16000, 50.0)
    assert c.spec.strides() == (8, 1)
    assert c.spec.tokens_per_second() == pytest.approx(56.25)
    assert c.bitrate() == pytest.approx(450.0)
    assert c.spec.global_codebook_sizes == (1024,) * 8
    assert c.spec.global_bits == pytest.approx(80.0)


def test_parallel_streams_round_trip_and_rates():
    torch.manual_seed(0)
    q = build_quantizer({"type": "parallel", "semantic": 1, "streams": [
        {"dim": 4, "stride": 4, "quantizer": {"type": "vq", "codebook_size": 8}},
        {"dim": 6, "stride": 1, "quantizer": {"type": "rvq", "n_codebooks": 2,
                                              "codebook_size": 16}}]}, dim=10).eval()
    z = torch.randn(2, 10, 12)
    out = q(z)
    assert out.codes.shape == (2, 3, 12) and q.level_strides == [4, 1, 1]
    assert torch.equal(q.encode(z), out.codes)
    assert torch.allclose(q.decode(out.codes), out.z_q, atol=1e-6)
    # the stride-4 stream holds each code 4 frames and its z_q is constant over them
    assert torch.equal(out.codes[:, 0], out.codes[:, 0, ::4].repeat_interleave(4, -1))
    assert torch.equal(out.z_q[:, :4], out.z_q[:, :4, ::4].repeat_interleave(4, -1))
    # distillation reads the content stream alone
    assert out.semantic[:, :4].abs().max() == 0 and torch.equal(out.semantic[:, 4:], out.z_q[:, 4:])
    # keeping one row drops the content stream: it decodes as zeros
    first = q.decode(out.codes[:, :1])
    assert torch.allclose(first[:, :4], out.z_q[:, :4], atol=1e-6)
    assert first[:, 4:].abs().max() == 0
    # straight-through gradients reach every channel
    q.train()
    z.requires_grad_(True)
    q(z).z_q.sum().backward()
    assert (z.grad.abs().sum((0, 2)) > 0).all()


@pytest.mark.parametrize("bad,message", [
    ({"streams": [{"dim": 4, "quantizer": {"type": "vq"}}]}, "add up to 4, but latent_dim is 6"),
    ({"streams": [{"dim": 6, "strid": 2}]}, "quantizer.streams[0].strid"),
    ({"streams": [{"dim": 6}], "semantic": 1}, "semantic must index"),
    ({"streams": []}, "at least one"),
    ({"streams": [{"dim": 6, "quantizer": {"type": "parallel", "streams": [{"dim": 6}]}}]},
     "cannot nest"),
])
def test_parallel_config_errors_name_the_key(bad, message):
    with pytest.raises((ConfigError, ValueError), match=message.replace("[", r"\[")):
        build_quantizer({"type": "parallel", **bad}, dim=6)


def test_bad_model_settings_are_one_line_errors():
    model = to_dict(recipe("freecodec_16k_tiny").model)
    for key, value, message in [
            ("encoder", {**model["encoder"], "content_dim": 40}, "latent_dim is 48"),
            ("global_branch", {**model["global_branch"], "dimm": 3}, "global_branch.dimm"),
            ("global_branch", {**model["global_branch"], "encoder": {"type": "ecapaa"}},
             "did you mean 'ecapa'"),
            ("segment", {"seconds": 1.0}, "cannot be combined")]:
        with pytest.raises((ConfigError, ValueError), match=message) as e:
            Codec(from_dict(CodecConfig, {**model, key: value}, "model"))
        assert "\n" not in str(e.value)


def test_encode_batch_equals_items_and_chunks(codec):
    """Each item's timbre codes come from its own samples: a padded batch gives what each
    item gets alone; frame codes encoded in short chunks equal the whole (the encoder's
    receptive field is bounded and chunks cut at whole prosody groups)."""
    a, b = clip(1.3, seed=1), clip(0.7, seed=2)
    batch = torch.cat([a, torch.nn.functional.pad(b, (0, a.shape[-1] - b.shape[-1]))])
    both = codec.encode(batch, lengths=torch.tensor([a.shape[-1], b.shape[-1]]))
    assert both.global_codes.shape == (2, 4)
    for i, x in enumerate((a, b)):
        alone = codec.encode(x)
        assert torch.equal(alone.global_codes[0], both.global_codes[i])
        assert torch.equal(alone.codes[0], both.codes[i, :, :alone.codes.shape[-1]])
    whole = codec.encode(a, chunk_seconds=None)
    assert torch.equal(codec.encode(a, chunk_seconds=0.33).codes, whole.codes)
    assert whole.codes.shape[-1] % 8 == 0  # whole prosody groups


def test_decode_needs_global_codes(codec):
    t = codec.encode(clip(0.5))
    t.global_codes = None
    with pytest.raises(TokenFileError, match="with_global"):
        codec.decode(t)


def test_with_global_swaps_timbre_codes(codec, tmp_path):
    a, b = codec.encode(clip(0.9, seed=1)), codec.encode(clip(0.6, seed=3, f0_scale=1.6))
    swapped = a.with_global(b)
    assert torch.equal(swapped.codes, a.codes) and torch.equal(swapped.global_codes,
                                                               b.global_codes)
    assert a.global_codes is not swapped.global_codes  # a is left as it was
    # one clip's codes for every item of a batch
    pair = Tokens(torch.cat([a.codes, a.codes]), a.spec, global_codes=a.global_codes.repeat(2, 1))
    assert torch.equal(pair.with_global(b).global_codes, b.global_codes.repeat(2, 1))
    with pytest.raises(TokenFileError, match="out of range"):
        a.with_global(torch.full((1, 4), 16))
    with pytest.raises(ValueError, match="global codes must be"):
        a.with_global(torch.zeros(3, 4, dtype=torch.long))
    other = load_codec("seanet").encode(clip(0.5))
    with pytest.raises(TokenFileError, match="cannot go with"):
        a.with_global(other)
    with pytest.raises(TokenFileError, match="no per-utterance codes"):
        other.with_global(torch.zeros(1, 4, dtype=torch.long))


def test_token_file_v3_round_trip(codec, tmp_path):
    t = codec.encode(torch.cat([clip(0.8, 1), clip(0.8, 2)]))
    t.save(tmp_path / "x.atok")
    back = Tokens.load(tmp_path / "x.atok")
    assert torch.equal(back.codes, t.codes) and torch.equal(back.global_codes, t.global_codes)
    assert back.spec == t.spec
    data = (tmp_path / "x.atok").read_bytes()
    assert int.from_bytes(data[4:6], "little") == 3
    assert read_header(tmp_path / "x.atok", verify_payload=True)["global_shape"] == [2, 4]
    assert torch.allclose(codec.decode(back), codec.decode(t))
    # a file without global codes is still version 2
    plain = load_codec("seanet").encode(clip(0.5))
    plain.save(tmp_path / "plain.atok")
    assert int.from_bytes((tmp_path / "plain.atok").read_bytes()[4:6], "little") == 2
    # the global codes are inside the payload checksum
    bad = bytearray(data)
    bad[-1] ^= 0x01
    (tmp_path / "bad.atok").write_bytes(bytes(bad))
    with pytest.raises(TokenFileError, match="checksum"):
        Tokens.load(tmp_path / "bad.atok")
    # cut short: the global codes are missing
    (tmp_path / "cut.atok").write_bytes(data[:-1])
    with pytest.raises(TokenFileError, match="truncated or padded"):
        Tokens.load(tmp_path / "cut.atok")


def _rewrite_header(data: bytes, edit) -> bytes:
    """A token file with its JSON header edited and both checksums made right again."""
    import struct
    import zlib

    _, version, hlen = struct.unpack_from("<4sHI", data)
    header = json.loads(data[14:14 + hlen])
    version = edit(header) or version
    head = json.dumps(header).encode()
    start = struct.pack("<4sHI", b"ATOK", version, len(head))
    return start + struct.pack("<I", zlib.crc32(head, zlib.crc32(start))) + head + \
        data[14 + hlen:]


@pytest.mark.parametrize("edit,message", [
    (lambda h: 2, "version 2 file cannot hold global codes"),
    (lambda h: h.update(global_shape=[2, 9]), "'global_shape' must be"),
    (lambda h: h.update(global_bits=7), "'global_bits' is 7"),
    (lambda h: h["spec"].pop("global_codebook_sizes") and None, "without global codes"),
])
def test_token_file_bad_global_fields(codec, tmp_path, edit, message):
    codec.encode(torch.cat([clip(0.5, 1), clip(0.5, 2)])).save(tmp_path / "x.atok")
    (tmp_path / "y.atok").write_bytes(_rewrite_header((tmp_path / "x.atok").read_bytes(),
                                                      edit))
    with pytest.raises(TokenFileError, match=message):
        Tokens.load(tmp_path / "y.atok")


def test_lm_prefix_round_trip(codec):
    t = codec.encode(torch.cat([clip(0.64, 1), clip(0.64, 2)]))
    sizes, strides = t.spec.codebook_sizes, t.spec.strides()
    stream = flatten_tree(t.codes, sizes, strides)          # 9 tokens per 8 frames
    ids = prepend_global(t.global_codes, stream, t.spec.global_codebook_sizes, sum(sizes))
    assert ids.shape == (2, 4 + stream.shape[-1])
    assert ids[:, :4].min() >= sum(sizes) and ids[:, 4:].max() < sum(sizes)
    g, rest = split_global(ids, t.spec.global_codebook_sizes, sum(sizes))
    assert torch.equal(g, t.global_codes)
    assert torch.equal(unflatten_tree(rest, sizes, strides), t.codes)
    with pytest.raises(ValueError, match="global ids"):
        split_global(stream, t.spec.global_codebook_sizes, sum(sizes))


@pytest.mark.parametrize("fmt", ["parquet", "webdataset", "npy"])
def test_corpus_tokenizer_writes_global_codes(codec, tmp_path, fmt):
    src = tmp_path / "corpus"
    src.mkdir()
    for i, seconds in enumerate((0.3, 1.1, 0.31)):  # u0, u2: one batch of 16 frames
        sf.write(str(src / f"u{i}.wav"), speechlike(seconds, 16000, seed=i), 16000)
    codec_dir = codec.save_pretrained(tmp_path / "codec")
    out = tmp_path / "tokens"
    assert main(["tokenize", str(src), "-o", str(out), "--codec", str(codec_dir),
                 "--format", fmt, "--batch-seconds", "5", "--no-progress"]) == 0
    index = read_index(out)
    assert index["codec"]["global_codebook_sizes"] == [16] * 4
    loaded = load_codec(codec_dir)
    records = {r.id: r for r in read_records(out, index)}
    assert len(records) == 3
    for uid, rec in records.items():
        wav = torch.from_numpy(sf.read(str(src / uid), dtype="float32")[0])[None, None]
        alone = loaded.encode(wav)
        assert np.array_equal(rec.codes, alone.codes[0].numpy())
        assert np.array_equal(rec.global_codes, alone.global_codes[0].numpy())
    # detokenize decodes with each record's own timbre codes
    assert main(["detokenize", str(out), "-o", str(tmp_path / "wav"), "--ids", "u1.wav"]) == 0
    wav = torch.from_numpy(sf.read(str(tmp_path / "wav" / "u1.wav"), dtype="float32")[0])
    expected = loaded.decode(loaded.encode(
        torch.from_numpy(sf.read(str(src / "u1.wav"), dtype="float32")[0])[None, None]))
    assert torch.allclose(wav, expected[0, 0], atol=1e-4)  # 16-bit WAV: 3e-5 steps


def log_spectrum(wav: torch.Tensor) -> torch.Tensor:
    """Long-term average log spectrum [F]: the timbre a constant vector can carry."""
    spec = torch.stft(wav.reshape(-1), 512, 128, window=torch.hann_window(512),
                      return_complex=True).abs()
    return torch.log(spec.pow(2).mean(-1) + 1e-8)


@pytest.mark.slow
def test_tiny_overlay_trains_reloads_and_converts_voice(tmp_path):
    """60 steps on two voices (low and bright, high and dark): the loss falls, save ->
    reload gives identical codes, and decoding A's frames with B's timbre codes moves the
    long-term spectrum toward B's."""
    from audiotok.train.trainer import Trainer

    r = recipe("freecodec_16k_tiny", f"train.run_dir={tmp_path}", "train.disc_start_step=1000",
               "optim.lr=2e-3", "optim.warmup_steps=0", "optim.schedule=constant",
               "train.batch_size=4")
    # frame streams too narrow for the timbre (4 content codes, 2 prosody codes): the test
    # checks that the timbre codes reach the decoder, which a short run cannot show when the
    # frames can carry everything
    for stream, size in zip(r.model.quantizer["streams"], (2, 4)):
        stream["quantizer"]["codebook_size"] = size
    trainer = Trainer(r)

    def voice(seed, f0_scale, tilt):
        x = clip(1.0, seed, f0_scale)
        return torch.from_numpy(np.convolve(x[0, 0].numpy(), [1.0, tilt], "same"))[None, None]

    low = [voice(s, 0.8, 0.9) for s in range(2)]    # low pitch, bright (high-pass-ish)
    high = [voice(s, 1.5, -0.9) for s in range(2)]  # high pitch, dark (low-pass-ish)
    batch = torch.cat(low + high).float()
    losses = []
    for _ in range(60):
        out = trainer.train_step(batch)
        losses.append(out["mel"])
        trainer.step += 1
    # measured: mel 0.50-0.54 -> 0.23-0.26 over 60 steps (train.seed 0-4, two threads)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    c = trainer.codec.eval()
    wav = clip(0.7, seed=5)
    c.save_pretrained(tmp_path / "export")
    again = load_codec(tmp_path / "export")
    assert torch.equal(c.encode(wav).codes, again.encode(wav).codes)
    assert torch.equal(c.encode(wav).global_codes, again.encode(wav).global_codes)

    # Every pair of a low and a high voice whose timbre codes differ: after 60 steps the
    # timbre VQ gives some seeds' voices equal codes, so the check averages over the pairs.
    voices = [v.float() for v in low + high]
    tokens = [c.encode(v) for v in voices]
    pairs = [(i, j) for i in range(4) for j in range(4) if (i < 2) != (j < 2)
             and not torch.equal(tokens[i].global_codes, tokens[j].global_codes)]
    assert pairs, "the timbre codes do not tell a low voice from a high one"
    near, far = [], []
    for i, j in pairs:
        target = log_spectrum(voices[j])
        own, conv = c.decode(tokens[i]), c.decode(tokens[i].with_global(tokens[j]))
        far.append((log_spectrum(own) - target).abs().mean())
        near.append((log_spectrum(conv) - target).abs().mean())
        assert math.isfinite(float(conv.abs().max()))
    # B's timbre codes move A's long-term spectrum toward B's. Measured over train.seed
    # 0-7 (8 runs, 4-8 pairs each): mean distance converted / own reconstruction 0.53-0.95.
    # Content kept on re-encoding was at chance level in 60 steps, so it is not asserted
    # here; benchmarks/voice_conversion.py reports it for trained codecs.
    assert sum(near) < sum(far), (near, far)
