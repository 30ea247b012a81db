"""The frozen pre-trained speaker encoder of a global branch (`ge2e`: Resemblyzer's GE2E
weights) and FreeCodec's training-time speaker perturbation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_thread_fixture, speechlike

from audiotok import Codec, load_codec
from audiotok.codecs import ge2e_speaker
from audiotok.codecs.ge2e_speaker import GE2EConfig, GE2ESpeakerEncoder
from audiotok.errors import ConfigError
from audiotok.train import read_recipe

resemblyzer = pytest.importorskip("resemblyzer")
RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "designs"


one_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    """The tiny FreeCodec with the frozen GE2E encoder in place of its ECAPA."""
    path = tmp_path_factory.mktemp("recipe") / "freecodec_ge2e_tiny.yaml"
    path.write_text(f"extends: {RECIPES / 'freecodec_16k_tiny.yaml'}\n"
                    "model: {global_branch: {encoder: {type: ge2e}}}\n")
    return path


@pytest.fixture
def recipe(overlay):
    return lambda *overrides: read_recipe(overlay, ["data.train=unused", *overrides])


def wav(seconds, seed=0, f0_scale=1.0):
    sig = speechlike(seconds * f0_scale, 16000 / f0_scale, seed=seed)[:, 0]
    return torch.from_numpy(sig[: int(seconds * 16000)].astype(np.float32).copy())


def test_embedding_is_resemblyzers():
    """Within one partial (<= 1.6 s), ours is Resemblyzer's forward on librosa's mel: the same
    weights on the same features, so the cosine is 1 up to float32 rounding of an STFT and
    a 3-layer LSTM (measured 1 - 1e-7; the bound leaves four orders of magnitude). Longer
    clips average partials at a slightly different step than theirs (80 vs 77 frames), so
    their embed_utterance agrees less tightly (measured 0.994-0.998 on recorded speech)."""
    from resemblyzer import VoiceEncoder, audio

    enc = GE2ESpeakerEncoder(GE2EConfig(), 1, 16000, 8).eval()
    theirs = VoiceEncoder("cpu", verbose=False)
    x = wav(1.2)
    x = x / x.abs().max() * 0.5  # loud enough that neither side changes the volume
    mels = audio.wav_to_mel_spectrogram(x.numpy())
    ref = theirs(torch.from_numpy(mels[None]))[0].detach()
    assert float(enc.embed(x[None, None])[0] @ ref) > 1 - 1e-3
    long = torch.cat([wav(1.5, seed=s, f0_scale=1 + s / 10) for s in range(3)])
    long = long / long.abs().max() * 0.5
    ref = torch.from_numpy(theirs.embed_utterance(long.numpy()))
    assert float(enc.embed(long[None, None])[0] @ ref) > 0.95


def test_frozen_in_training_and_saved_with_the_codec(recipe, tmp_path):
    """A train step moves the projection, not the GE2E weights; the saved codec carries them
    and loads (and trains) without the package's file."""
    from audiotok.train.trainer import Trainer

    r = recipe(f"train.run_dir={tmp_path}", "train.disc_start_step=1000", "optim.lr=1e-2",
               "optim.warmup_steps=0", "train.batch_size=2")
    trainer = Trainer(r)
    g = trainer.codec.global_branch.encoder
    lstm0 = {k: v.clone() for k, v in g.lstm.state_dict().items()}
    proj0 = g.proj.weight.detach().clone()
    batch = torch.stack([wav(1.0, seed=0), wav(1.0, seed=1, f0_scale=1.4)])[:, None]
    trainer.train_step(batch)
    assert all(torch.equal(v, g.lstm.state_dict()[k]) for k, v in lstm0.items())
    assert not torch.equal(proj0, g.proj.weight)

    c = trainer.codec.eval()
    c.save_pretrained(tmp_path / "export")
    ge2e_speaker._shipped_weights = _no_package  # as on a machine without resemblyzer
    try:
        again = load_codec(tmp_path / "export")
    finally:
        ge2e_speaker._shipped_weights = _shipped
    x = wav(2.0, seed=3)[None, None]
    assert torch.equal(c.encode(x).global_codes, again.encode(x).global_codes)
    assert bool(again.global_branch.encoder.pretrained)


_shipped = ge2e_speaker._shipped_weights


def _no_package():
    raise ConfigError("no resemblyzer")


def test_untrained_weights_refuse_to_train(recipe, monkeypatch, tmp_path):
    monkeypatch.setattr(ge2e_speaker, "_shipped_weights", _no_package)
    codec = Codec(recipe().model)
    with pytest.raises(ConfigError, match="pip install resemblyzer"):
        codec.global_branch(wav(1.0)[None, None])
    bad = tmp_path / "bad.pt"
    for content in (b"not a checkpoint", b"", b"model:\n  quantizer: {dim: 16}\n"):
        bad.write_bytes(content)  # bytes, nothing, a recipe named by mistake
        with pytest.raises(ConfigError, match="global_branch.encoder.weights: .* is not a "
                                              "Resemblyzer checkpoint"):
            GE2ESpeakerEncoder(GE2EConfig(weights=str(bad)), 1, 16000, 8)
    with pytest.raises(ConfigError, match="global_branch.encoder.weights: no such file"):
        GE2ESpeakerEncoder(GE2EConfig(weights=str(tmp_path / "none.pt")), 1, 16000, 8)


def test_bad_settings_name_the_key(recipe):
    with pytest.raises(ConfigError, match="perturb_semitones"):
        Codec(recipe("model.encoder.perturb_semitones=-1").model)
    with pytest.raises(ConfigError, match="partial_step"):
        Codec(recipe("model.global_branch.encoder.partial_step=0").model)


def test_perturbation_reaches_the_frame_encoders_only_in_training(recipe):
    """Training: the frame latents come from a pitch-shifted copy (same length); inference
    codes the clip as it is, so encoding stays deterministic."""
    torch.manual_seed(0)
    codec = Codec(recipe("model.encoder.perturb_semitones=4").model)
    enc = codec.encoder
    x = wav(1.28)[None, None]
    enc.eval()
    clean = enc(x)
    assert torch.equal(clean, enc(x))
    enc.train()
    torch.manual_seed(1)
    shifted = torch.stack([enc(x) for _ in range(4)])
    assert shifted.shape[1:] == clean.shape
    # 4 draws of 9 shifts are all 0 with probability 9^-4; seeded, one is not
    assert any((s - clean).abs().max() > 1e-3 for s in shifted)
    same = enc.perturbed(x.repeat(8, 1, 1))
    assert same.shape == (8, 1, x.shape[-1])


@pytest.mark.parametrize("semitones", [-4, 1, 4])
def test_pitch_shift_moves_a_tone(semitones):
    """A 200 Hz tone comes out at 200 * 2^(n/12) Hz, length kept. The spectrum's peak over
    12000 samples has 1.33 Hz bins, so the bound allows two bins."""
    from audiotok.codecs.freecodec import pitch_shift

    t = torch.arange(16000) / 16000
    y = pitch_shift(torch.sin(2 * np.pi * 200 * t)[None], semitones)
    assert y.shape == (1, 16000)
    peak = torch.fft.rfft(y[0, 2000:14000]).abs().argmax().item() * 16000 / 12000
    assert abs(peak - 200 * 2 ** (semitones / 12)) < 2.7


def test_small_voice_conversion_recipe_builds_as_measured(tmp_path):
    """recipes/designs/freecodec_16k_small.yaml, the configuration whose voice-conversion
    figures its header reports: frozen GE2E timbre, perturbed frame input, factorised frame
    codes, no discriminator steps."""
    r = read_recipe(RECIPES / "freecodec_16k_small.yaml",
                    [f"data.train={tmp_path}", f"train.run_dir={tmp_path / 'run'}"])
    assert r.train.disc_start_step > r.train.steps == 8000
    codec = Codec(r.model)
    assert isinstance(codec.global_branch.encoder, GE2ESpeakerEncoder)
    assert float(codec.global_branch.encoder.pretrained) == 1.0
    assert r.model.encoder["perturb_semitones"] == 3
    for stream in r.model.quantizer["streams"]:
        assert stream["quantizer"]["codebook_dim"] == 8 and stream["quantizer"]["l2_normalize"]
    wav = torch.from_numpy(speechlike(1.0, 16000)).float().reshape(1, 1, -1)
    tokens = codec.eval().encode(wav)
    assert tokens.global_codes.shape == (1, 4) and tokens.codes.shape[1] == 2
