"""TaDiCodec (recipes/designs/tadicodec_16k*.yaml): flow matching with a prompt, byte-level
transcripts, the codec's stochastic decode (steps, seed, text, prompt), bad settings, the CLI,
and the tiny recipe trained on a CPU, saved and reloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from audiotok import Codec, load_codec
from audiotok.cli import main
from audiotok.errors import ConfigError
from audiotok.modules import flow_matching as fm
from audiotok.modules.chars import excerpt_text, text_ids
from audiotok.train import read_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "designs"


def recipe(*overrides):
    return read_recipe(RECIPES / "tadicodec_16k_tiny.yaml", ["data.train=unused", *overrides])


def tiny_codec(*overrides) -> Codec:
    torch.manual_seed(0)
    return Codec(recipe(*overrides).model).eval()


def speech(seconds: float, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(speechlike(seconds, 16000, seed=seed).T[None].copy())


# ---------------------------------------------------------------- flow matching
def test_noisy_path_ends_and_prompt_frames():
    torch.manual_seed(0)
    x, n = torch.randn(2, 10, 4), torch.randn(2, 10, 4)
    prompt = fm.frame_mask(torch.tensor([3, 0]), 10)
    xt, v = fm.noisy(x, torch.tensor([0.0, 1.0]), n, 0.0, prompt)
    assert torch.equal(xt[0, :3], x[0, :3])          # prompt frames stay clean
    torch.testing.assert_close(xt[0, 3:], n[0, 3:])  # t = 0: noise
    torch.testing.assert_close(xt[1], x[1])          # t = 1: data
    torch.testing.assert_close(v, x - n)             # d x_t / dt along the straight path


def test_euler_is_exact_on_a_straight_path_and_keeps_the_prompt():
    """With the true (constant) velocity of the path, Euler steps land on the data for any
    step count; the prompt frames come back as given."""
    torch.manual_seed(0)
    x, n = torch.randn(1, 8, 3), torch.randn(1, 8, 3)
    prompt = x[:, :2] + 5.0
    for steps in (1, 3, 8):
        out = fm.euler_sample(lambda xt, t: x - n, n, steps, prompt)
        torch.testing.assert_close(out[:, 2:], x[:, 2:], atol=1e-5, rtol=0)
        assert torch.equal(out[:, :2], prompt)


def test_prompt_lengths_respect_range_and_drop():
    torch.manual_seed(0)
    lengths = fm.prompt_lengths(2000, 100, 0.25, 0.1, 0.4, "cpu")
    kept = lengths[lengths > 0]
    assert kept.min() >= 10 and kept.max() < 40
    # the share of items with no prompt is drop_p (binomial sd ~0.01 for 2000 items)
    assert abs((lengths == 0).float().mean().item() - 0.25) < 0.05


def test_guidance():
    c, u = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    torch.testing.assert_close(fm.guided(c, u, 1.0, 0.0), c)
    torch.testing.assert_close(fm.guided(c, u, 2.0, 0.0), u + 2 * (c - u))
    full = fm.guided(c, u, 3.0, 1.0)  # rescale 1: each item's spread is the conditional's
    torch.testing.assert_close(full.std((1, 2)), c.std((1, 2)))


def test_masked_mse_scores_only_kept_frames():
    pred, target = torch.zeros(1, 4, 2), torch.tensor([[[9.0, 9], [1, 1], [1, 1], [9, 9]]])
    keep = torch.tensor([[False, True, True, False]])
    assert fm.masked_mse(pred, target, keep).item() == pytest.approx(1.0)


# ---------------------------------------------------------------- transcripts
def test_text_ids_are_utf8_bytes_plus_one():
    ids, mask = text_ids(["ab", None, "é  x"], max_len=3)
    assert ids.shape == (3, 3)
    assert ids[0].tolist() == [98, 99, 0] and mask[0].tolist() == [True, True, False]
    assert not mask[1].any()
    assert ids[2].tolist() == [0xC3 + 1, 0xA9 + 1, 33]  # NFC é, one space kept, cut at 3


def test_excerpt_text():
    assert excerpt_text("hello world", 0.0, 5.0, 2.0) == "hello world"  # whole file
    assert excerpt_text("abcdefghij", 1.0, 1.0, 2.0) == "fghij"          # second half
    assert excerpt_text(None, 0.0, 1.0, 1.0) is None


# ---------------------------------------------------------------- the codec
@pytest.fixture(scope="module")
def coded():
    codec = tiny_codec()
    return codec, codec.encode(speech(0.5))


def test_codes_are_one_codebook_at_6_25_hz_and_record_their_sampling():
    codec = tiny_codec()
    assert codec.frame_rate == 6.25 and codec.codebook_sizes == [256]
    assert codec.bitrate() == pytest.approx(50.0)
    tokens = codec.encode(speech(1.7))
    assert tokens.codes.shape == (1, 1, 11)  # ceil(1.7 * 6.25)
    assert int(tokens.codes.max()) < 256 and int(tokens.codes.min()) >= 0
    assert tokens.meta["sampling"] == {"steps": 8, "seed": 0}


def test_decode_same_seed_same_audio_other_seed_other_audio():
    codec = tiny_codec()
    tokens = codec.encode(speech(1.0))
    a = codec.decode(tokens, seed=3, steps=2, text="hello")
    assert a.shape == (1, 1, 16000)
    assert torch.equal(a, codec.decode(tokens, seed=3, steps=2, text="hello"))
    assert not torch.equal(a, codec.decode(tokens, seed=4, steps=2, text="hello"))
    assert not torch.equal(a, codec.decode(tokens, seed=3, steps=2, text="other words"))
    assert not torch.equal(a, codec.decode(tokens, seed=3, steps=3, text="hello"))
    # defaults come from the tokens' metadata
    tokens.meta["sampling"] = {"steps": 2, "seed": 3}
    assert torch.equal(codec.decode(tokens, text="hello"), a)


def test_prompt_frames_are_the_prompts_own_mel():
    codec = tiny_codec()
    wav = speech(2.0)
    tokens = codec.encode(wav)
    dec = codec.decoder
    z = codec.quantizer.decode(tokens.codes)
    prompt_mel = dec.mel(wav[..., :8000])
    mel = dec.sample_mel(z, 2, 0, None, prompt_mel)
    torch.testing.assert_close(mel[:, :prompt_mel.shape[1]], prompt_mel)
    out = codec.decode(tokens, steps=2, prompt=wav[..., :8000])
    assert out.shape == wav.shape
    with pytest.raises(ValueError, match="prompt: .* shorter prefix"):
        codec.decode(tokens, steps=2, prompt=speech(3.0))


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive whole number, got 0"),
    ({"steps": 2.5}, "steps must be a positive whole number, got 2.5"),
    ({"seed": -1}, "seed must be a whole number >= 0, got -1"),
    ({"seed": True}, "seed must be a whole number >= 0, got True"),
    ({"text": ["a", "b"]}, "text must be a string or a list of 1 strings"),
    ({"prompt": torch.zeros(1, 800)}, r"prompt must be a tensor \[1, 1, P\]"),
])
def test_bad_decode_options_are_one_line_errors(coded, kwargs, message):
    codec, tokens = coded
    with pytest.raises(ValueError, match=message) as info:
        codec.decode(tokens, **kwargs)
    assert "\n" not in str(info.value)


def test_deterministic_codecs_refuse_sampling_options():
    codec = Codec(read_recipe(RECIPES / "clam_melvae_16k_tiny.yaml", ["data.train=x"]).model)
    tokens = codec.encode(speech(0.3))
    with pytest.raises(ValueError, match="steps, seed: this codec's decoder is deterministic"):
        codec.decode(tokens, steps=4, seed=1)
    with pytest.raises(ValueError, match="text: this codec's decoder is not conditioned"):
        codec(speech(0.3), text=["hi"])


def test_text_free_decoder_refuses_text():
    codec = tiny_codec("model.decoder.text=false")
    assert not codec.decoder.takes_text
    with pytest.raises(ValueError, match="not conditioned on a transcript"):
        codec.decode(codec.encode(speech(0.3)), text="hi")


@pytest.mark.parametrize("override, message", [
    ("model.decoder.steps=0", "decoder: steps must be >= 1, got 0"),
    ("model.decoder.text_drop_p=1.5", r"decoder: text_drop_p must be in \[0, 1\], got 1.5"),
    ("model.decoder.prompt_range=[0.5,0.2]", "decoder: prompt_range must be"),
    ("model.decoder.guidance_scale=0.5", "decoder: guidance_scale must be >= 1"),
    ("model.decoder.heads=5", r"decoder: dim \(64\) must be a multiple of heads \(5\)"),
    ("model.encoder.downsample=0", "encoder: downsample must be >= 1"),
    ("model.decoder.upsample=3", r"decoder upsample \(3\) must divide"),
    ("model.decoder.vocoder.type=tadicodec", "vocoder must take mel frames"),
    ("model.decoder.n_fft=500", r"decoder n_fft: n_fft \(500\) must be at least"),
    ("model.decoder.stepz=3", "stepz"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises((ConfigError, ValueError), match=message) as info:
        tiny_codec(override)
    assert "\n" not in str(info.value)


def test_cli_decode_options(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), speechlike(1.0, 16000, seed=1), 16000)
    codec_dir = tmp_path / "codec"
    tiny_codec().save_pretrained(codec_dir)
    tok = tmp_path / "a.atok"
    assert main(["encode", str(wav), "-o", str(tok), "--codec", str(codec_dir)]) == 0
    outs = []
    for name in ("x.wav", "y.wav"):
        assert main(["decode", str(tok), "-o", str(tmp_path / name), "--steps", "2",
                     "--seed", "5", "--text", "some words", "--prompt", str(wav)]) == 0
        outs.append(sf.read(str(tmp_path / name))[0])
    assert np.array_equal(*outs) and outs[0].shape == (16000,)
    capsys.readouterr()
    for bad, message in ((["--steps", "0"], "--steps: must be at least 1, got 0"),
                         (["--seed", "-1"], "--seed: must be at least 0, got -1")):
        with pytest.raises(SystemExit) as info:
            main(["decode", str(tok), "-o", str(tmp_path / "z.wav"), *bad])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and message in err and "\n" not in err


def test_eval_report_names_the_sampling():
    from audiotok.eval.report import table_rows

    row = {"name": "tadi@1", "kind": "codec", "kbps": 0.05, "tokens_per_second": 6.25,
           "delay_ms": 0.0, "n_clips": 1, "metrics": {},
           "sampling": {"steps": 8, "seed": 0, "text": False, "prompt": False}}
    assert table_rows([row])[1][0] == "tadi@1 (8 steps, seed 0)"


# ---------------------------------------------------------------- training
def _corpus(folder: Path) -> Path:
    folder.mkdir()
    lines = []
    for i in range(4):
        path = folder / f"utt{i}.wav"
        sf.write(str(path), np.roll(speechlike(1.5, 16000, seed=i), 500 * i, axis=0), 16000)
        lines.append(f'{{"path": "{path}", "text": "utterance number {i}"}}')
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "corpus.jsonl"


@pytest.mark.slow
def test_tiny_recipe_trains_with_transcripts_and_reloads(tmp_path):
    from audiotok.data import build_items, make_train_loader
    from audiotok.train.trainer import Trainer

    manifest = _corpus(tmp_path / "corpus")
    torch.manual_seed(0)
    r = recipe(f"data.train={manifest}", f"train.run_dir={tmp_path / 'run'}",
               "data.num_workers=0", "optim.schedule=constant", "train.batch_size=4")
    trainer = Trainer(r)
    batch = next(iter(make_train_loader(r.data, 16000, 1, r.train.batch_size,
                                        items=build_items(r.data).train)))
    texts = trainer._transcripts(batch["wav"], batch)["text"]
    assert all(t.startswith("utterance number") for t in texts)  # whole files: whole texts
    history = []
    for _ in range(24):  # overfit one batch: batch-to-batch noise would mask the trend
        history.append(trainer.train_step(batch["wav"], batch))
        trainer.step += 1
    for name, ratio in (("decoder/flow", 0.8), ("mel", 0.9)):
        values = [h[name] for h in history]
        # measured (means of the first and last 5 steps, 1 thread): decoder/flow 3.40 ->
        # 1.58 (ratio 0.46); mel (the vocoder's, on the input's own mel) 1.02 -> 0.83 (0.81)
        assert np.mean(values[-5:]) < ratio * np.mean(values[:5]), (name, values)
    codec = trainer.codec.eval()
    wav = speech(1.3, seed=3)
    tokens = codec.encode(wav)
    codec.save_pretrained(tmp_path / "export")
    again = load_codec(tmp_path / "export")
    assert torch.equal(again.encode(wav).codes, tokens.codes)
    assert torch.equal(again.decode(again.encode(wav), text="hi", seed=1),
                       codec.decode(tokens, text="hi", seed=1))
