"""Multi-layer SSL tokens (Mousavi et al. 2024): one k-means per SSL layer, codes [B, L, T], one
vocoder behind an attention over the layers, layer dropout. The teacher is a tiny random
HuBERT of the real `transformers` class saved to a temp directory; nothing is downloaded."""

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from conftest import speechlike

from audiotok import load_codec
from audiotok.cli import main
from audiotok.codecs.base import Codec
from audiotok.distill.ssl_units import load_units
from audiotok.errors import AudiotokError
from audiotok.train import read_recipe

os.environ["HF_HUB_OFFLINE"] = "1"  # a wrong path must fail, never fetch
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "designs"
SSL = {"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2,
       "intermediate_size": 32, "conv_dim": (8, 8), "conv_stride": (5, 64),
       "conv_kernel": (10, 64), "num_conv_pos_embeddings": 16,
       "num_conv_pos_embedding_groups": 2}
K = 16


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny HuBERT (3 layers, width 16, 50 Hz), six 1.2 s clips, and units fit by the CLI:
    layers 1, 2, 3 at once (seed 0) and layer 2 alone (seed 1)."""
    from transformers import HubertConfig, HubertModel

    root = tmp_path_factory.mktemp("ssl_layers")
    torch.manual_seed(0)
    HubertModel(HubertConfig(**SSL)).save_pretrained(root / "hubert")
    (root / "corpus").mkdir()
    for i in range(6):
        sig = np.roll(speechlike(1.2, 16000, seed=i), 700 * i, axis=0) * (0.5 + 0.1 * i)
        sf.write(str(root / "corpus" / f"utt{i}.wav"), sig, 16000)
    common = ["kmeans", "--teacher", str(root / "hubert"), "--data", str(root / "corpus"),
              "-k", str(K), "--batch-frames", "100"]
    assert main([*common, "--layers", "1,2,3", "-o", str(root / "multi.safetensors")]) == 0
    assert main([*common, "--layer", "2", "--seed", "1", "-o",
                 str(root / "single.safetensors")]) == 0
    return root


def tiny_recipe(files, *overrides):
    return read_recipe(RECIPES / "ssl_kmeans_layers_16k_tiny.yaml", [
        "data.train=unused", f"model.encoder.path={files / 'hubert'}", "model.latent_dim=16",
        "model.encoder.layers=[1, 2, 3]", "model.encoder.normalize=false",
        f"model.quantizer.units={files / 'multi.safetensors'}",
        f"model.quantizer.codebook_size={K}", *overrides])


def tiny_codec(files, *overrides) -> Codec:
    torch.manual_seed(0)
    return Codec(tiny_recipe(files, *overrides).model)


def clip(seconds=0.8, seed=9):
    return torch.from_numpy(speechlike(seconds, 16000, seed=seed).T[None].copy()).float()


def reference_codes(files, wav, layer, centroids):
    """The nearest centre of transformers' own hidden state `layer`, input padded as the
    codec pads it (receptive field - stride, split around the input)."""
    from transformers import HubertModel

    from audiotok.distill.teachers import conv_geometry

    model = HubertModel.from_pretrained(files / "hubert").eval()
    _, pad = conv_geometry(model.config)
    with torch.no_grad():
        hidden = model(F.pad(wav[:, 0], pad), output_hidden_states=True).hidden_states
    return torch.cdist(hidden[layer][0], centroids).argmin(-1)


# ---------------------------------------------------------------- settings
def test_layer_settings_become_streams():
    from audiotok.cli.kmeans_command import parse_layers
    from audiotok.distill.teachers import layer_streams

    assert layer_streams([]) == [[]]  # one stream averaging every layer, as before
    assert layer_streams([6]) == [[6]]
    assert layer_streams([3, 7, 12]) == [[3], [7], [12]]
    assert layer_streams([[3, 4, 5], 12]) == [[3, 4, 5], [12]]
    assert parse_layers(None) == [[]] and parse_layers("6") == [[6]]
    assert parse_layers("3,7,12") == [[3], [7], [12]]
    assert parse_layers("3+4+5,12") == [[3, 4, 5], [12]]
    for bad, message in [([3, 3], "layers: layer 3 is listed twice"),
                         ([[4, 3], [3, 4]], r"layer \[3, 4\] is listed twice"),
                         ([[]], r"layers\[0\] is an empty list"),
                         ([[2, 2]], r"layers\[0\] names a layer twice"),
                         ([-1], "indices are >= 0")]:
        with pytest.raises(ValueError, match=message):
            layer_streams(bad)


def test_kmeans_fits_one_kmeans_per_layer_and_refuses_bad_layers(files, capsys):
    centroids, meta = load_units(files / "multi.safetensors")
    assert centroids.shape == (3, K, 16) and meta["teacher"]["layers"] == [[1], [2], [3]]
    assert len(json.loads(meta["inertia"])) == 3
    single, single_meta = load_units(files / "single.safetensors")
    assert single.shape == (K, 16) and single_meta["teacher"]["layers"] == [2]  # the old file
    # stream i is the single-layer fit of its layer seeded seed + i: the same frames and draws
    assert torch.equal(centroids[1], single)
    assert not torch.allclose(centroids[0], centroids[1])
    from audiotok.distill.probe import UnitLabeller

    with pytest.raises(AudiotokError, match="holds the units of 3 layers; the probe takes one"):
        UnitLabeller(files / "multi.safetensors")  # the content probe reads one layer's units
    common = ["kmeans", "--teacher", str(files / "hubert"), "--data", str(files / "corpus"),
              "-k", str(K), "-o", str(files / "bad.safetensors")]
    for layers, message in [("1,1", "--layers: layer 1 is listed twice"),
                            ("", "--layers: expected integers"),
                            ("2+2", "--layers[0] names a layer twice"),
                            ("1,-1", "--layers: hidden-state indices are >= 0"),
                            ("1,9", "layers: teacher '")]:
        assert main([*common, "--layers", layers]) == 1, layers
        err = capsys.readouterr().err  # above the error: transformers' loading bar, if any
        line = err.strip().splitlines()[-1]
        assert line.startswith("audiotok: error: ") and message in line, err
        assert "Traceback" not in err
    assert "has 3 layers (hidden states 0..3); layers [9] do not exist" in line
    assert not (files / "bad.safetensors").exists()
    with pytest.raises(SystemExit):  # argparse: --layer and --layers exclude each other
        main([*common, "--layers", "1", "--layer", "2"])
    capsys.readouterr()


# ---------------------------------------------------------------- the codec
def test_codes_are_each_layers_nearest_unit_and_fewer_codebooks_the_first_layers(files):
    codec = tiny_codec(files).eval()
    centroids, _ = load_units(files / "multi.safetensors")
    wav = clip()
    codes = codec.encode(wav).codes
    assert codes.shape == (1, 3, 40) and codec.codebook_sizes == [K] * 3
    for i, layer in enumerate([1, 2, 3]):
        assert torch.equal(codes[0, i], reference_codes(files, wav, layer, centroids[i]))
    # the layer-2 row is what the single-layer codec of the same units gives
    single = tiny_codec(files, "model.encoder.layers=[2]",
                        f"model.quantizer.units={files / 'single.safetensors'}").eval()
    assert torch.equal(single.encode(wav).codes[:, 0], codes[:, 1])
    assert torch.equal(codec.encode(wav, n_codebooks=2).codes, codes[:, :2])
    assert codec.bitrate(1) == 50 * 4 and codec.bitrate() == 3 * 50 * 4
    for n in (1, 2, 3):
        assert codec.decode(codec.encode(wav, n_codebooks=n)).shape == (1, 1, 12800)


def test_decoding_a_subset_is_the_attention_over_those_layers(files):
    q = tiny_codec(files).quantizer.eval()
    torch.manual_seed(1)
    z = torch.randn(2, 3 * 16, 25)
    codes = q.encode(z)
    assert torch.equal(q(z).z_q, q.decode(codes))  # eval: forward == decode(encode)
    e = torch.stack([q.embed[i][codes[:, i]] for i in range(3)], 1)  # [B, L, T, D]
    keep = torch.tensor([[True, True, False], [True, False, True]])
    pooled, weights = q.attention(e, keep)
    assert torch.equal(weights[~keep], torch.zeros_like(weights[~keep]))
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 25))
    # item 0 kept the first two layers: exactly what decoding two rows gives
    torch.testing.assert_close(pooled[:1], q.decode(codes[:1, :2]), rtol=1e-6, atol=1e-6)
    # the weighted sum by hand, from the scoring MLP of the paper (Linear, ReLU, Linear)
    scores = q.attention.score(e).squeeze(-1).masked_fill(~keep[:, :, None], float("-inf"))
    by_hand = (scores.softmax(1)[..., None] * e).sum(1).transpose(1, 2)
    torch.testing.assert_close(pooled, by_hand, rtol=1e-5, atol=1e-6)


def test_layer_dropout_draws_subsets_and_training_reaches_embeddings_and_attention(files):
    from audiotok.modules.layer_attention import sample_kept_layers

    torch.manual_seed(0)
    keep = sample_kept_layers(6000, 3, 1.0, "cpu")
    kept = keep.sum(1)
    assert int(kept.min()) == 1  # never an item without a layer
    # SpeechBrain's draw: n dropped ~ U{0..L-1}, so 1, 2, 3 layers kept a third of the time
    # each and every layer kept 2/3 of the time (binomial sd of a share of 6000 < 0.007)
    for n in (1, 2, 3):
        assert abs(float((kept == n).float().mean()) - 1 / 3) < 0.04
    assert torch.allclose(keep.float().mean(0), torch.full((3,), 2 / 3), atol=0.04)
    assert bool(sample_kept_layers(500, 3, 0.0, "cpu").all())
    codec = tiny_codec(files).train()
    wav = clip(0.64).expand(8, -1, -1)
    out = codec(wav)
    assert out.codes.shape == (8, 3, 32) and "layers/weight/2" in out.metrics
    # the same input gives different z_q where an item dropped layers: dropout is on
    assert not all(torch.allclose(out.z_q[0], out.z_q[i]) for i in range(1, 8))
    out.audio.square().mean().backward()
    q = codec.quantizer
    assert q.embed.grad is not None and q.embed.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.attention.parameters())
    assert all(p.grad is None for p in codec.encoder.parameters())  # the SSL model is frozen


# ---------------------------------------------------------------- old checkpoints
def fingerprint_v1(config: dict, state: dict) -> str:
    """The fingerprint as audiotok wrote it into config.json before multi-layer units."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(state):
        t = state[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def test_a_single_layer_checkpoint_of_the_old_format_loads_identically(files, tmp_path):
    from safetensors.torch import save_file

    # config.json's model part exactly as the single-layer code saved it (no new keys)
    old = {"family": "ssl_kmeans", "sample_rate": 16000, "channels": 1, "latent_dim": 16,
           "encoder": {"type": "ssl", "path": str(files / "hubert"), "layers": [2],
                       "normalize": False},
           "quantizer": {"type": "kmeans", "units": str(files / "single.safetensors"),
                         "codebook_size": K},
           "decoder": {"type": "vocos", "dim": 16, "intermediate_dim": 32, "num_layers": 1,
                       "n_fft": None, "attention": False, "attention_heads": 8,
                       "attention_window": None, "adanorm_embeddings": 0,
                       "pos_net_norm": "layer", "norm_groups": 32, "pos_net_dropout": 0.0}}
    torch.manual_seed(0)
    codec = Codec.from_config(old).eval()
    state = {k: v.detach().contiguous() for k, v in codec.state_dict().items()}
    # one layer adds no weights: the quantizer holds its centres and nothing else
    assert [k for k in state if k.startswith("quantizer.")] == ["quantizer.centroids"]
    folder = tmp_path / "old"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    spec = {"family": "ssl_kmeans", "sample_rate": 16000, "channels": 1, "hop_length": 320,
            "codebook_sizes": [K], "fingerprint": fingerprint_v1(old, state),
            "frame_rate": 50.0}
    (folder / "config.json").write_text(json.dumps(
        {"format_version": 1, "audiotok_version": "0.1.0", "config": old, "spec": spec}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fingerprint that differs from the recorded one
        again = load_codec(folder)
    wav = clip()
    codes = again.encode(wav).codes
    single, _ = load_units(files / "single.safetensors")
    assert codes.shape == (1, 1, 40)
    assert torch.equal(codes[0, 0], reference_codes(files, wav, 2, single))
    assert torch.equal(codes, codec.encode(wav).codes)
    torch.testing.assert_close(again.decode(again.encode(wav)), codec.decode(codec.encode(wav)))
    assert again.fingerprint() == spec["fingerprint"]
    # saved again, its config is the old one, key for key
    again.save_pretrained(tmp_path / "resaved")
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["config"] == old


# ---------------------------------------------------------------- bad settings
@pytest.mark.parametrize("override,message", [
    ("model.encoder.layers=[1, 9, 3]", "encoder.layers: teacher '.*' has 3 layers"),
    ("model.encoder.layers=[1, 1, 3]", "layers: layer 1 is listed twice"),
    ("model.encoder.layers=[[], 2, 3]", r"layers\[0\] is an empty list"),
    ("model.encoder.layers=[-1, 2, 3]", "layers: hidden-state indices are >= 0"),
    ("model.encoder.layers=[1, x, 3]", r"encoder.layers\[1\]: expected"),
    ("model.encoder.layers=[1, 2]", "encoder.layers gives 2 layer streams but quantizer.units"),
    ("model.encoder.layers=[]", "encoder.layers gives 1 layer stream but quantizer.units"),
    ("model.encoder.layers=[3, 2, 1]", r"\[\[3\], \[2\], \[1\]\] are not the layers \[\[1\], "),
    ("model.quantizer.units=SINGLE", r"of 1; .* into one stream, nest them: layers: \[\[1, 2, 3"),
    ("model.quantizer.codebook_size=8", r"quantizer.units: .* holds \(3, 16, 16\) centres"),
    ("model.quantizer.layer_dropout=1.5", "layer_dropout must be in"),
    ("model.quantizer.attention_dim=0", "attention_dim must be >= 1"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(files, override, message):
    override = override.replace("SINGLE", str(files / "single.safetensors"))
    with pytest.raises((AudiotokError, ValueError), match=message) as info:
        tiny_codec(files, override)
    assert "\n" not in str(info.value)


def test_cli_reports_bad_layers_in_one_line(files, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {RECIPES / 'ssl_kmeans_layers_16k_tiny.yaml'}\n"
                   f"model: {{latent_dim: 16, encoder: {{path: {files / 'hubert'}, "
                   f"layers: [1, 2, 2], normalize: false}}, quantizer: {{units: "
                   f"{files / 'multi.safetensors'}, codebook_size: {K}}}}}\n")
    assert main(["info", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert "layer 2 is listed twice" in err.splitlines()[-1] and "Traceback" not in err


# ---------------------------------------------------------------- the tiny recipe
def test_full_size_recipe_is_the_papers_setting():
    from audiotok.recipe import load_recipe

    model = load_recipe(RECIPES / "ssl_kmeans_layers_16k.yaml")["model"]
    assert model["encoder"]["layers"] == [3, 7, 12, 18, 23]  # Mousavi et al. 2024, sec. 3
    assert model["quantizer"]["codebook_size"] == 1000 and model["latent_dim"] == 1024
    tiny = load_recipe(RECIPES / "ssl_kmeans_layers_16k_tiny.yaml")["model"]
    assert tiny["encoder"] == model["encoder"] and tiny["latent_dim"] == model["latent_dim"]


@pytest.mark.slow
def test_tiny_recipe_trains_and_reloads(files, tmp_path):
    from audiotok.data import build_items, make_train_loader
    from audiotok.losses import MultiResolutionMelLoss
    from audiotok.train.trainer import Trainer

    r = tiny_recipe(files, f"data.train={files / 'corpus'}", f"train.run_dir={tmp_path}",
                    "train.disc_start_step=1000", "data.num_workers=0", "optim.lr=1e-3",
                    "optim.warmup_steps=0", "optim.schedule=constant", "train.batch_size=4",
                    "data.segment_seconds=0.32")
    torch.manual_seed(0)
    trainer = Trainer(r)
    batch = next(iter(make_train_loader(r.data, 16000, 1, r.train.batch_size,
                                        items=build_items(r.data).train)))
    wav, mel = batch["wav"], MultiResolutionMelLoss(16000)

    def one_layer_mel() -> float:  # the first layer alone: a subset the dropout trained
        codec = trainer.codec.eval()
        with torch.no_grad():
            audio = codec.decoder(codec.quantizer.decode(codec.encode(wav, 1).codes))
        trainer.codec.train()
        return float(mel(wav, audio))

    before = one_layer_mel()
    history = []
    for _ in range(24):  # overfit one batch: batch-to-batch noise would mask the trend
        history.append(trainer.train_step(wav))
        trainer.step += 1
    values = [h["mel"] for h in history]
    # measured (means of the first and last 5 steps): mel 2.80 -> 1.51 (ratio 0.54)
    assert np.mean(values[-5:]) < 0.8 * np.mean(values[:5]), values
    # the first layer alone decodes too: measured 3.54 -> 1.45 (0.41). (Without layer dropout
    # it fell as far in these 24 steps on one batch, 1.49: this shows that a subset decodes,
    # not that dropout is what taught it.)
    after = one_layer_mel()
    assert after < 0.8 * before, (before, after)
    weights = [history[-1][f"layers/weight/{i}"] for i in range(3)]
    assert all(0 < w < 1 for w in weights), weights
    codec = trainer.codec.eval()
    test_wav = clip(0.9, seed=3)
    codes = codec.encode(test_wav).codes
    codec.save_pretrained(tmp_path / "export")
    again = load_codec(tmp_path / "export")
    assert torch.equal(again.encode(test_wav).codes, codes)
    for n in (1, 3):
        torch.testing.assert_close(again.decode(again.encode(test_wav, n)),
                                   codec.decode(codec.encode(test_wav, n)))
