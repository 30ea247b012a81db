"""Lookup-free (lfq), binary spherical (bsq) and grouped spherical (gsq) quantizers: the
quantizer contract, their codes and entropy penalty, recipe wiring, and the tiny recipes."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from conftest import speechlike

from audiotok import Tokens, load_codec
from audiotok.cli import main
from audiotok.errors import ConfigError
from audiotok.quantizers import build_quantizer
from audiotok.quantizers.base import encodable_counts
from audiotok.quantizers.binary import bit_entropy_terms, codes_to_signs, signs_to_codes
from audiotok.recipe import deep_merge
from audiotok.train import read_recipe
from audiotok.train.generator_losses import with_quantizer_weights

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "designs"
DIM = 8

SPECS = {
    "lfq": {"type": "lfq", "codebook_bits": 3, "n_codebooks": 2},          # 8 -> 6 dims
    "lfq_no_projection": {"type": "lfq", "codebook_bits": 4, "n_codebooks": 2},
    "bsq": {"type": "bsq", "codebook_bits": 4, "n_codebooks": 2, "entropy_group_bits": 2},
    "gsq": {"type": "gsq", "groups": 2, "codebook_size": 16},              # 2 x 4 dims
    "gsq_projected_entropy": {"type": "gsq", "groups": 2, "codebook_size": 16,
                              "codebook_dim": 3, "entropy_loss": True},
}
FAMILY = {name: spec["type"] for name, spec in SPECS.items()}
TINY = ["lfq_16k_tiny", "bsq_16k_tiny", "gsq_16k_tiny"]


def build(name: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    return build_quantizer({**SPECS[name], **changes}, DIM)


# -- the quantizer contract --------------------------------------------------------------------

@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", SPECS)
def test_round_trip_decode_of_encode_is_forward(name, training):
    q = build(name).train(training)
    z = torch.randn(3, DIM, 11)
    out = q(z)
    codes = q.encode(z)
    assert torch.equal(out.codes, codes)
    # z_q is x + (q - x).detach() in forward and the codeword itself in decode: equal up to
    # one float rounding of each dim before the out projection
    torch.testing.assert_close(q.decode(codes), out.z_q, atol=1e-5, rtol=0)
    assert (out.z_q - z).abs().max() > 1e-3


@pytest.mark.parametrize("frames", [1, 5, 13])
@pytest.mark.parametrize("name", SPECS)
def test_codes_shape_dtype_range(name, frames):
    q = build(name)
    z = torch.randn(3, DIM, frames) * 4
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.codes.dtype == torch.long and out.codes.shape == (3, 2, frames)
    sizes = torch.tensor(q.codebook_sizes)[None, :, None]
    assert (out.codes >= 0).all() and (out.codes < sizes).all()
    assert all(torch.isfinite(v) for v in out.losses.values())


@pytest.mark.parametrize("name", SPECS)
def test_straight_through_gradient_reaches_input_and_every_parameter(name):
    q = build(name).train()
    z = torch.randn(4, DIM, 9, requires_grad=True)
    out = q(z)
    # through z_q alone: only the straight-through path reaches z
    (out.z_q * torch.randn_like(out.z_q)).sum().backward(retain_graph=True)
    assert z.grad is not None and z.grad.abs().sum() > 0
    sum(out.losses.values()).backward()
    for pname, param in q.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", SPECS)
def test_codes_do_not_depend_on_autocast(name):
    q = build(name).eval()
    z = torch.randn(2, DIM, 32).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
    assert out.z_q.dtype == torch.float32
    assert torch.equal(out.codes, q.encode(z))


@pytest.mark.parametrize("name", SPECS)
def test_losses_and_metrics_are_named_for_recipes(name):
    q = build(name)
    out = q(torch.randn(2, DIM, 5))
    family = FAMILY[name]
    assert set(out.losses) == set(q.loss_weights)
    assert all(k.startswith(f"{family}/") for k in out.losses)
    levels = {f"vq/{m}/{i}" for m in ("usage", "perplexity") for i in range(2)}
    assert levels <= set(out.metrics)


def test_default_loss_weights_follow_the_papers():
    assert build("lfq").loss_weights == {"lfq/entropy": 0.1, "lfq/commit": 0.25}
    assert build("bsq").loss_weights == {"bsq/entropy": 0.1, "bsq/commit": 0.0}
    assert build("gsq").loss_weights == {"gsq/codebook": 1.0, "gsq/commit": 0.25}
    assert build("gsq_projected_entropy").loss_weights["gsq/entropy"] == 0.1


@pytest.mark.parametrize("name", SPECS)
def test_encode_changes_no_state_and_safetensors_round_trip(name, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    q = build(name).train()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.encode(torch.randn(2, DIM, 16) * 5)
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())
    st.save_file({k: v.contiguous() for k, v in q.state_dict().items()}, tmp_path / "q.st")
    fresh = build(name, seed=123)
    fresh.load_state_dict(st.load_file(tmp_path / "q.st"))
    z = torch.randn(3, DIM, 10)
    codes = q.eval().encode(z)
    assert torch.equal(fresh.eval().encode(z), codes)
    assert torch.equal(fresh.decode(codes), q.decode(codes))


# -- binary codes ------------------------------------------------------------------------------

def test_bits_are_signs_least_significant_first():
    q = build("lfq_no_projection").eval()          # 8 dims = 2 codebooks x 4 bits, no conv
    z = torch.tensor([1.0, -1, 1, 1, -1, -1, -1, 1]).view(1, DIM, 1)
    assert q.encode(z).flatten().tolist() == [1 + 4 + 8, 8]
    torch.testing.assert_close(q.decode(q.encode(z)), z)
    every = torch.arange(16).view(1, 1, 16)
    signs = codes_to_signs(every, 4)
    assert torch.unique(signs[0, 0].T, dim=0).shape[0] == 16
    assert torch.equal(signs_to_codes(signs > 0), every)


def test_bsq_codewords_lie_on_the_unit_sphere_and_ignore_the_latent_norm():
    q = build("bsq").eval()                        # 2 x 4 bits = 8 dims: no projections
    z = torch.randn(2, DIM, 7)
    z_q = q.decode(q.encode(z))
    torch.testing.assert_close(z_q.norm(dim=1), torch.ones(2, 7))
    torch.testing.assert_close(z_q.abs(), torch.full_like(z_q, DIM ** -0.5))
    assert torch.equal(q.encode(z * 7.5), q.encode(z))


def brute_force_entropies(x: torch.Tensor, inv_temperature: float, scale: float):
    """MAGVIT-v2's formulation over all 2^b codewords: softmax(2 * inv_t * <x, c>), c in
    {-scale, +scale}^b. x [N, b] -> (mean per-sample entropy, entropy of the mean)."""
    b = x.shape[1]
    codewords = torch.tensor(list(itertools.product([-scale, scale], repeat=b)),
                             dtype=x.dtype)
    probs = (2 * inv_temperature * x @ codewords.T).softmax(-1)
    sample = -(probs * probs.log()).sum(-1).mean()
    mean = probs.mean(0)
    return sample, -(mean * mean.log()).sum()


def test_bit_entropies_match_the_softmax_over_all_codewords():
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(40, 6, generator=gen, dtype=torch.float64)
    inv_t, scale = 3.0, 0.5
    logits = (4 * inv_t * scale * x).T.reshape(1, 1, 6, 40)   # [B, K, b, T]
    sample, codebook = bit_entropy_terms(logits, group_bits=6)
    want_sample, want_codebook = brute_force_entropies(x, inv_t, scale)
    torch.testing.assert_close(sample, want_sample)
    torch.testing.assert_close(codebook, want_codebook)
    # BSQ's factorised groups: the same per-sample entropy, an upper bound on the codebook's
    grouped_sample, grouped_codebook = bit_entropy_terms(logits, group_bits=2)
    torch.testing.assert_close(grouped_sample, want_sample)
    assert grouped_codebook >= want_codebook - 1e-9


def test_gsq_searches_by_cosine_and_hands_on_unit_codewords():
    q = build("gsq").eval()                        # 8 dims = 2 groups x 4, no projection
    z = torch.randn(3, DIM, 6)
    codes = q.encode(z)
    book = F.normalize(q.codebook.weight, dim=1)
    for g, part in enumerate(z.chunk(2, dim=1)):
        cosine = torch.einsum("bdt,vd->bvt", F.normalize(part, dim=1), book)
        assert torch.equal(codes[:, g], cosine.argmax(1))
    z_q = q.decode(codes)
    torch.testing.assert_close(z_q.unflatten(1, (2, 4)).norm(dim=2), torch.ones(3, 2, 6))
    assert torch.equal(q.encode(z * 3.0), codes)


# -- the entropy penalty spreads the codes -----------------------------------------------------

def collapse(q, name: str) -> None:
    """Start where (almost) every frame gets the same code: tiny projection weights under a
    shared positive bias (lfq, bsq), or every codeword bunched around one direction (gsq)."""
    with torch.no_grad():
        if name == "gsq":
            w = q.codebook.weight
            w.copy_(F.normalize(torch.ones_like(w) + 0.05 * w, dim=1))
        else:
            q.in_proj.weight.mul_(0.05)
            q.in_proj.bias.fill_(0.02)


def perplexity_after(spec: dict, name: str, losses: list[str], steps: int = 40) -> float:
    torch.manual_seed(0)
    q = build_quantizer(spec, DIM)
    collapse(q, name)
    z = torch.randn(4, DIM, 64, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    for _ in range(steps):
        out = q.train()(z)
        opt.zero_grad()
        sum(out.losses[k] for k in losses).backward()
        opt.step()
    return float(q.eval()(z).metrics["vq/perplexity/0"])


# The soft assignment must be sharp enough to see the hard codes: BSQ's default temperature
# (1) over 6 bits on the sphere gives bit logits of about 4 / 6, nearly uniform, so the toy
# uses 10. Measured after 40 steps (perplexity of the 64 codes, entropy vs without): lfq 59.2
# vs 23.2, bsq 33.9 vs 2.3, gsq 35.9 vs 12.6; the bounds leave room for other CPUs' rounding.
ENTROPY_TOYS = {
    "lfq": ({"type": "lfq", "codebook_bits": 6}, "lfq/entropy", ["lfq/commit"]),
    "bsq": ({"type": "bsq", "codebook_bits": 6, "entropy_group_bits": 3,
             "inv_temperature": 10.0}, "bsq/entropy", ["bsq/commit"]),
    "gsq": ({"type": "gsq", "groups": 2, "codebook_size": 64, "entropy_loss": True},
            "gsq/entropy", ["gsq/codebook", "gsq/commit"]),
}


@pytest.mark.parametrize("name", ENTROPY_TOYS)
def test_entropy_loss_spreads_a_collapsed_code(name):
    spec, entropy, others = ENTROPY_TOYS[name]
    without = perplexity_after(spec, name, others)
    with_entropy = perplexity_after(spec, name, [entropy, *others])
    assert with_entropy > 1.5 * without and with_entropy > 20, (with_entropy, without)


# -- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SPECS)
def test_codebooks_cannot_be_left_out(name):
    q = build(name)
    z = torch.randn(2, DIM, 4)
    assert q(z, n_codebooks=2).codes.shape[1] == 2
    assert encodable_counts(q) == [2]
    for call in (lambda: q.encode(z, 1), lambda: q(z, n_codebooks=1),
                 lambda: q.decode(q.encode(z)[:, :1])):
        with pytest.raises(ValueError, match=f"n_codebooks must be 2 for the {FAMILY[name]}"):
            call()
    with pytest.raises(ValueError, match="decodes 1 to 2"):
        q.decode(torch.zeros(2, 3, 4, dtype=torch.long))


@pytest.mark.parametrize("spec,message", [
    ({"type": "lfq", "codebook_bits": 0}, "codebook_bits must be between 1 and 30"),
    ({"type": "lfq", "codebook_bits": 20}, "entropy_group_bits must be set"),
    ({"type": "lfq", "codebook_bits": 8, "entropy_group_bits": 3},
     r"entropy_group_bits must divide codebook_bits \(8\)"),
    ({"type": "lfq", "n_codebooks": 0}, "n_codebooks must be >= 1"),
    ({"type": "lfq", "diversity_gamma": -1}, "diversity_gamma must be >= 0"),
    ({"type": "bsq", "inv_temperature": 0}, "inv_temperature must be > 0"),
    ({"type": "bsq", "codebook_bits": 18, "entropy_group_bits": 4}, "entropy_group_bits"),
    ({"type": "gsq", "groups": 0}, "groups must be >= 1"),
    ({"type": "gsq", "codebook_size": 1}, "codebook_size must be >= 2"),
    ({"type": "gsq", "codebook_dim": 0}, "codebook_dim must be >= 1"),
    ({"type": "gsq", "codebok_size": 8}, "did you mean 'codebook_size'"),
    ({"type": "lfqq"}, "did you mean 'lfq'"),
])
def test_config_errors_are_one_line_and_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_quantizer(spec, DIM)
    assert "\n" not in str(info.value)


def test_gsq_groups_must_divide_the_latent_unless_projected():
    with pytest.raises(ValueError, match="latent dim 8 is not divisible by groups=3"):
        build_quantizer({"type": "gsq", "groups": 3}, DIM)
    assert build_quantizer({"type": "gsq", "groups": 3, "codebook_dim": 4}, DIM).n_codebooks == 3


# -- recipes -----------------------------------------------------------------------------------

def recipe(name, *overrides):
    return read_recipe(RECIPES / f"{name}.yaml", ["data.train=unused", *overrides])


def test_an_overlay_that_swaps_the_type_drops_the_old_options():
    base = {"model": {"quantizer": {"type": "rvq", "n_codebooks": 8, "codebook_dim": 8}}}
    swapped = deep_merge(base, {"model": {"quantizer": {"type": "lfq", "codebook_bits": 8}}})
    assert swapped["model"]["quantizer"] == {"type": "lfq", "codebook_bits": 8}
    kept = deep_merge(base, {"model": {"quantizer": {"type": "rvq", "n_codebooks": 4}}})
    assert kept["model"]["quantizer"] == {"type": "rvq", "n_codebooks": 4, "codebook_dim": 8}
    untyped = deep_merge(base, {"model": {"quantizer": {"n_codebooks": 2}}})
    assert untyped["model"]["quantizer"]["codebook_dim"] == 8
    r = recipe("lfq_16k_tiny")
    assert r.model.quantizer["type"] == "lfq" and "codebook_dim" not in r.model.quantizer
    assert r.model.encoder == recipe("../tiny_speech_16k").model.encoder


@pytest.mark.parametrize("name", TINY)
def test_quantizer_weights_fill_in_where_the_recipe_is_silent(name):
    family = name.split("_")[0]
    r = recipe(name, f"losses.weights.{family}/commit=0.5")
    codec = load_codec(RECIPES / f"{name}.yaml")
    weights = with_quantizer_weights(r, codec.quantizer).losses.weights
    assert weights[f"{family}/commit"] == 0.5
    assert weights["mel"] == 15.0
    for loss, weight in codec.quantizer.loss_weights.items():
        if loss != f"{family}/commit":
            assert weights[loss] == weight
    assert r.losses.weights.get(f"{family}/entropy") is None   # the recipe itself untouched


def test_a_weight_for_a_loss_the_quantizer_does_not_return_is_an_error(tmp_path):
    from audiotok.train.trainer import Trainer

    r = recipe("gsq_16k_tiny", "losses.weights.gsq/entropy=0.1", f"train.run_dir={tmp_path}/r")
    with pytest.raises(ConfigError, match="loss weight 'gsq/entropy' names no loss") as info:
        Trainer(r)
    assert "gsq/codebook" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", TINY)
def test_info_bitrate_and_token_files(name, tmp_path, capsys, write_audio):
    path = str(RECIPES / f"{name}.yaml")
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "4 x [256] entries" in out
    rows = out.split("n_codebooks  tokens/s  kbps\n")[1].splitlines()
    assert [r.split() for r in rows] == [["4", "200", "1.600"]]
    src = write_audio("x.wav", seconds=0.5, sr=16000)
    atok = tmp_path / "x.atok"
    assert main(["encode", str(src), "-o", str(atok), "--codec", path]) == 0
    capsys.readouterr()
    assert main(["info", str(atok)]) == 0
    assert "bitrate         1.600 kbps" in capsys.readouterr().out
    codec = load_codec(path)
    tokens = Tokens.load(atok)
    wav = torch.from_numpy(sf.read(str(src), dtype="float32")[0])[None, None]
    assert torch.equal(tokens.codes, codec.encode(wav).codes)
    assert codec.decode(tokens).shape[-1] == wav.shape[-1]
    assert main(["encode", str(src), "-o", str(atok), "--codec", path,
                 "--n-codebooks", "2"]) != 0
    assert "n_codebooks must be 4" in capsys.readouterr().err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        sig = np.roll(speechlike(1.2, 16000, seed=i), 700 * i, axis=0) * (0.5 + 0.1 * i)
        sf.write(str(folder / f"utt{i}.wav"), sig, 16000)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_tiny_recipe_trains_and_reloads(name, corpus, tmp_path):
    from audiotok.data import build_items, make_train_loader
    from audiotok.train.trainer import Trainer

    r = recipe(name, f"data.train={corpus}", f"train.run_dir={tmp_path}",
               "train.disc_start_step=1000", "data.num_workers=0", "optim.lr=1e-3",
               "optim.warmup_steps=0", "optim.schedule=constant", "data.segment_seconds=0.3")
    trainer = Trainer(r)
    family = name.split("_")[0]
    assert trainer.recipe.losses.weights[f"{family}/commit"] == \
        trainer.codec.quantizer.loss_weights[f"{family}/commit"]
    batch = next(iter(make_train_loader(r.data, 16000, 1, r.train.batch_size,
                                        items=build_items(r.data).train)))
    mel = []
    for _ in range(24):  # overfit one batch, as test_recipes.py's tiny overlays
        out = trainer.train_step(batch["wav"])
        assert all(math.isfinite(v) for v in out.values()), out
        mel.append(out["mel"])
        trainer.step += 1
    # measured last-5 / first-5 mel ratios with 1 thread: 0.61 (lfq; 0.58 with 2 threads),
    # 0.36 (bsq), 0.44 (gsq); mel at step 0 -> 23: 3.89 -> 1.68, 8.23 -> 1.49, 5.59 -> 1.46
    assert np.mean(mel[-5:]) < 0.8 * np.mean(mel[:5]), mel
    # every codebook in use (120 frames per batch; a collapsed one gives 1.0); measured
    # perplexities at step 23: 28-37 (lfq), 7.6-18 (bsq), 14-21 (gsq)
    for k in range(4):
        assert out[f"vq/perplexity/{k}"] > 4, out
    codec = trainer.codec.eval()
    wav = torch.from_numpy(speechlike(0.7, 16000).T[None].copy())
    codes = codec.encode(wav).codes
    codec.save_pretrained(tmp_path / "export")
    assert torch.equal(load_codec(tmp_path / "export").encode(wav).codes, codes)


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_onnx_export_gives_the_same_codes(name, tmp_path):
    pytest.importorskip("onnxruntime")
    from audiotok.export import export_onnx

    torch.manual_seed(0)
    codec = load_codec(RECIPES / f"{name}.yaml").eval()
    export_onnx(codec, tmp_path / "onnx")
    onnx = load_codec(tmp_path / "onnx")
    wav = torch.from_numpy(np.stack([speechlike(0.7, 16000, seed=s).T for s in (0, 1)]))
    tokens = codec.encode(wav)
    assert torch.equal(onnx.encode(wav).codes, tokens.codes)
    torch.testing.assert_close(onnx.decode(tokens), codec.decode(tokens), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="n_codebooks must be one of"):
        onnx.encode(wav, 2)
