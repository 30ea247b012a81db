"""BEATs (recipes/designs/beats_iter*.yaml): the fbank patches, the random-projection and norm-EMA
tokenizers' rules, tokens-only codecs (encode works, decode is a one-line error), bad
settings, and both iterations trained at tiny size, chained through the teacher key, saved and
reloaded with identical codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from conftest import speechlike

from audiotok import Codec, load_codec
from audiotok.beats import read_beats_recipe
from audiotok.beats.frontend import PatchConfig, PatchEmbedding, fbank, patches
from audiotok.beats.quantizers import NormEMAQuantizer, NormEMAVQConfig
from audiotok.cli import main
from audiotok.errors import AudiotokError, ConfigError

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "designs"


def recipe(name: str, *overrides):
    return read_beats_recipe(RECIPES / f"{name}.yaml", ["data.train=unused", *overrides])


def speech(seconds: float, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(speechlike(seconds, 16000, seed=seed).T[None].copy())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        sig = np.roll(speechlike(2.0, 16000, seed=i), 700 * i, axis=0) * (0.5 + 0.1 * i)
        sf.write(str(folder / f"utt{i}.wav"), sig, 16000)
    return folder


def test_full_size_recipes_give_50_labels_a_second():
    for name in ("beats_iter1", "beats_iter2"):
        codec = Codec(recipe(name).model)
        assert codec.frame_rate == 50.0 and codec.codebook_sizes == [1024]
        assert codec.bitrate() == 500.0  # 50 labels/s x 10 bits
    r = recipe("beats_iter2")
    assert r.beats.teacher == "runs/beats_iter1/model" and r.beats.estimator.layers == 3


def test_patches_are_in_the_order_of_beats_patch_embedding():
    """The random-projection tokenizer flattens patches itself; BEATs' Conv2d patch embedding
    (the SSL model, the trained tokenizer) must see the same patch at the same index."""
    cfg = PatchConfig(mel_bins=32, patch=8)
    embed = PatchEmbedding(cfg, cfg.patch ** 2, cfg.patch ** 2)
    with torch.no_grad():  # conv output channel c = pixel c of the patch: the identity
        embed.conv.weight.copy_(torch.eye(64).view(64, 1, 8, 8))
    wav = speech(0.64)
    raw = embed.conv(fbank(wav, 32)[:, None]).flatten(2).transpose(1, 2)
    torch.testing.assert_close(raw, patches(fbank(wav, 32), 8))
    # 0.64 s = 64 fbank frames = 8 stretches of 4 patches, at 40 patches a second
    assert raw.shape == (1, 32, 64) and cfg.hop_length == 320 // 1 and cfg.per_stretch == 4


def test_fbank_frames_are_centred_and_match_kaldi():
    from torchaudio.compliance import kaldi

    wav = speech(0.32)
    ours = fbank(wav, 128)
    assert ours.shape == (1, 32, 128)  # T / 160 frames
    # frame i of the padded signal is BEATs' frame i of the signal padded by 120 samples
    ref = kaldi.fbank(F.pad(wav[0], (120, 120)) * 2 ** 15, num_mel_bins=128,
                      sample_frequency=16000, frame_length=25, frame_shift=10)
    torch.testing.assert_close(ours[0], (ref - 15.41663) / (2 * 6.55582))


def test_random_projection_labels_are_the_nearest_normalised_codeword():
    codec = load_codec(RECIPES / "beats_iter1_tiny.yaml")
    q = codec.quantizer
    wav = speech(1.0, seed=2)
    tokens = codec.encode(wav)
    x = patches(fbank(codec._pad_to_frames(wav), 64), 8)[0]            # [N, 64]
    projected = F.normalize(x @ q.projection.T, dim=-1)
    dist = torch.cdist(projected, F.normalize(q.codebook, dim=-1))        # l2 distance
    assert torch.equal(tokens.codes[0, 0], dist.argmin(-1))
    assert tokens.codes.shape == (1, 1, 104) and int(tokens.lengths[0]) == 100
    # a patch's label depends on its own stretch only: chunked coding is exact
    long = speech(3.0, seed=4)
    torch.testing.assert_close(codec.encode(long, chunk_seconds=0.8).codes,
                               codec.encode(long, chunk_seconds=None).codes, rtol=0, atol=0)
    assert len(set(tokens.codes.flatten().tolist())) > 8  # labels vary with the audio


def test_norm_ema_quantizer_follows_beats_rule():
    torch.manual_seed(0)
    q = NormEMAQuantizer(NormEMAVQConfig(codebook_size=8, decay=0.9, kmeans_iters=5), dim=4)
    z = torch.randn(2, 4, 50)
    q.train()
    out = q(z)  # k-means on this batch, then one EMA step
    assert bool(q.initialized)
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(8))
    # the outputs are unit vectors equal to the chosen codewords (before this batch's update)
    torch.testing.assert_close(out.z_q.norm(dim=1), torch.ones(2, 50))
    before = q.codebook.clone()
    z2 = torch.randn(2, 4, 30)
    x = F.normalize(z2.transpose(1, 2).reshape(-1, 4), dim=-1)
    codes = (x @ before.T).argmax(-1)
    out2 = q(z2)
    assert torch.equal(out2.codes.flatten(), codes)
    torch.testing.assert_close(out2.losses["vq/commit"], F.mse_loss(x, before[codes]))
    expected = before.clone()
    for k in codes.unique():
        mean = F.normalize(x[codes == k].mean(0), dim=0)
        expected[k] = F.normalize(0.9 * before[k] + 0.1 * mean, dim=0)
    torch.testing.assert_close(q.codebook, expected)
    # straight-through: the gradient of z_q reaches z
    z3 = torch.randn(1, 4, 10, requires_grad=True)
    q(z3).z_q.sum().backward()
    assert z3.grad is not None and z3.grad.abs().sum() > 0
    # encode changes nothing, even in training mode
    state = q.codebook.clone()
    q.encode(z2)
    assert torch.equal(q.codebook, state)


def test_tokens_only_codec_encodes_and_refuses_to_decode(tmp_path, capsys):
    codec = load_codec(RECIPES / "beats_iter1_tiny.yaml")
    tokens = codec.encode(speech(0.5))
    with pytest.raises(AudiotokError, match="has no decoder"):
        codec.decode(tokens)
    src = tmp_path / "x.wav"
    sf.write(str(src), speechlike(0.5, 16000), 16000)
    atok = tmp_path / "x.atok"
    codec.save_pretrained(tmp_path / "tokenizer")  # as stage ssl exports it
    assert main(["encode", str(src), "-o", str(atok), "--codec",
                 str(tmp_path / "tokenizer")]) == 0
    capsys.readouterr()
    assert main(["decode", str(atok), "-o", str(tmp_path / "y.wav")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "codec 'beats' has no decoder" in err, err
    assert not (tmp_path / "y.wav").exists()


@pytest.mark.parametrize("override,message", [
    ("beats.stage=teacher", "stage must be one of ssl, tokenizer"),
    ("beats.ssl.patch=12", "mel_bins (64) must be a multiple of patch (12)"),
    ("beats.ssl.mask_ratio=1.0", "mask_ratio must be in (0, 1)"),
    ("beats.ssl.encoder.heads=3", "dim (64) must be a multiple of heads (3)"),
    ("beats.teacher=runs/x", "teacher is read in stage tokenizer only"),
    ("beats.ssl.predictor_layer=2", "unknown key 'beats.ssl.predictor_layer'"),
    ("losses.weights.ssl/mlm=0", "needs a non-zero weight"),
    ("losses.weights.ssl/mlmm=1", "did you mean 'ssl/mlm'"),
    ("data.segment_seconds=0.05", "data.segment_seconds must be at least"),
    ("model.latent_dim=32", "latent_dim must be patch * patch = 64"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ValueError) as e:  # ConfigError, or the builder's ValueError
        r = recipe("beats_iter1_tiny", override)
        Codec(r.model)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_stage_tokenizer_needs_its_teacher(corpus, tmp_path, capsys):
    with pytest.raises(ConfigError, match="teacher must name the SSL model"):
        recipe("beats_iter2_tiny", "beats.teacher=null")
    run = tmp_path / "run"
    args = ["train", str(RECIPES / "beats_iter2_tiny.yaml"), "--set", f"data.train={corpus}",
            "--set", f"train.run_dir={run}", "--set", f"beats.teacher={tmp_path / 'nothing'}"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "beats.teacher: no BEATs SSL model at" in err, err
    assert not run.exists()  # a failed start leaves no run directory
    # a codec directory is not a teacher
    load_codec(RECIPES / "beats_iter1_tiny.yaml").save_pretrained(tmp_path / "codec")
    assert main(args[:-1] + [f"beats.teacher={tmp_path / 'codec'}"]) == 1
    assert "is not a BEATs SSL model" in capsys.readouterr().err
    # a teacher cut into other patches than the tokenizer's
    from audiotok.beats.backbone import BackboneConfig
    from audiotok.beats.ssl_model import SSLModel, SSLModelConfig

    small = BackboneConfig(dim=8, layers=1, heads=2, ffn_dim=8, conv_pos=4, conv_pos_groups=2)
    SSLModel(SSLModelConfig(mel_bins=128, patch=16, embed_dim=8, encoder=small), 16).save(
        tmp_path / "other")
    assert main(args[:-1] + [f"beats.teacher={tmp_path / 'other'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differ from the teacher's" in err, err
    assert not run.exists()


def overfit(trainer, batch, steps: int, names) -> dict[str, list[float]]:
    """Train on one batch (batch-to-batch noise would mask the trend)."""
    history = {n: [] for n in names}
    for _ in range(steps):
        values = trainer.train_step(batch)
        trainer.step += 1
        for n in names:
            history[n].append(values[n])
    return history


@pytest.mark.slow
def test_tiny_iterations_train_chain_and_reload(corpus, tmp_path, capsys):
    from audiotok.beats.trainer import BEATsTrainer
    from audiotok.data import build_items, make_train_loader

    torch.manual_seed(0)
    sets = [f"data.train={corpus}", "optim.schedule=constant", "optim.warmup_steps=0",
            "train.batch_size=4", "data.segment_seconds=0.64"]
    r1 = recipe("beats_iter1_tiny", *sets, f"train.run_dir={tmp_path / 'it1'}")
    batch = next(iter(make_train_loader(r1.data, 16000, 1, r1.train.batch_size,
                                        items=build_items(r1.data).train)))["wav"]
    ssl = BEATsTrainer(r1)
    h1 = overfit(ssl, batch, 24, ["ssl/mlm", "ssl/accuracy"])
    # measured (means of the first and last 5 steps, 1 and 2 threads): ssl/mlm 3.9 -> 1.2
    # (ratio ~0.3; step 0 is 5.3, about ln 128 = 4.85); masked-patch accuracy 0.005 at step 0,
    # 0.82 at the end (a few labels dominate this synthetic corpus)
    assert np.mean(h1["ssl/mlm"][-5:]) < 0.7 * np.mean(h1["ssl/mlm"][:5]), h1
    assert np.mean(h1["ssl/accuracy"][-5:]) > 0.2, h1
    ssl.export(_quiet_log(tmp_path))
    teacher = tmp_path / "it1" / "model"
    assert json.loads((teacher / "config.json").read_text())["format"] == "beats_ssl"
    with pytest.raises(AudiotokError, match="is a BEATs SSL model, not a codec"):
        load_codec(teacher)

    # iteration 2 reads that model through beats.teacher
    r2 = recipe("beats_iter2_tiny", *sets, f"train.run_dir={tmp_path / 'it2'}",
                f"beats.teacher={teacher}")
    tok = BEATsTrainer(r2)
    h2 = overfit(tok, batch, 24, ["distill/cosine", "vq/commit", "vq/perplexity/0"])
    # measured: distill/cosine 0.70 -> 0.02 (ratio ~0.03; step 0 is 1.03). A teacher trained
    # 24 steps on one batch is nearly constant over patches (mean pairwise cosine ~0.96), so
    # the estimator fits it fast and the codebook falls to a few codes (perplexity 51 at the
    # k-means start, ~1.2 after); a teacher trained 200 steps (cosine ~0.59) kept ~7 of 64
    assert np.mean(h2["distill/cosine"][-5:]) < 0.5 * np.mean(h2["distill/cosine"][:5]), h2
    assert h2["vq/perplexity/0"][0] > 8, h2  # k-means spreads the first batch over codes
    tok.export(_quiet_log(tmp_path))
    codec = load_codec(tmp_path / "it2" / "model")
    assert codec.config.encoder["type"] == "beats" and codec.frame_rate == 100.0
    wav = speech(0.9, seed=3)
    mine = tok.tokenizer.eval().encode(wav).codes
    assert torch.equal(codec.encode(wav).codes, mine)
    assert not any("estimator" in k for k in codec.state_dict())
    with pytest.raises(AudiotokError, match="has no decoder"):
        codec.decode(codec.encode(wav))

    # the SSL model of iteration 2 learns the new tokenizer's labels (a short CLI run)
    run = tmp_path / "it2_ssl"
    assert main(["train", str(RECIPES / "beats_iter1_tiny.yaml"), "--set", f"data.train={corpus}",
                 "--set", f"beats.tokenizer={tmp_path / 'it2' / 'model'}",
                 "--set", f"train.run_dir={run}", "--set", "train.steps=3",
                 "--set", "train.val_every=3", "--set", "train.log_every=1"]) == 0
    assert load_codec(run / "tokenizer").fingerprint() == codec.fingerprint()
    assert (run / "model" / "model.safetensors").is_file()
    capsys.readouterr()


def _quiet_log(tmp_path):
    from audiotok.train.runlog import RunLogger

    return RunLogger(tmp_path / "log", False, 0, 1)


@pytest.mark.slow
def test_a_stopped_run_resumes_exactly(corpus, tmp_path):
    from safetensors.torch import load_file

    def run(run_dir, steps):
        return main(["train", str(RECIPES / "beats_iter1_tiny.yaml"), "--set",
                     f"data.train={corpus}", "--set", f"train.run_dir={run_dir}", "--set",
                     f"train.steps={steps}", "--set", "train.ckpt_every=2", "--set",
                     "train.val_every=0", "--set", "train.batch_size=4", "--set",
                     "data.segment_seconds=0.64"])

    assert run(tmp_path / "whole", 4) == 0
    assert run(tmp_path / "parts", 2) == 0
    assert run(tmp_path / "parts", 4) == 0  # resumes from step 2
    whole = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    parts = load_file(str(tmp_path / "parts" / "model" / "model.safetensors"))
    assert whole.keys() == parts.keys()
    for k in whole:
        assert torch.equal(whole[k], parts[k]), k
