"""Quantizer tests: tiny CPU configs, seeded, each a few milliseconds."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from audiotok.errors import ConfigError
from audiotok.quantizers import QUANTIZERS, VectorQuantizer, VQConfig, build_quantizer
from audiotok.quantizers.codebook_usage import code_metrics
from audiotok.quantizers.search import nearest

DIM = 8

SPECS = {
    "vq": {"type": "vq", "codebook_size": 16},
    "vq_factorised_l2": {"type": "vq", "codebook_size": 16, "codebook_dim": 4,
                         "l2_normalize": True, "kmeans_init": True},
    "vq_ema_restart": {"type": "vq", "codebook_size": 16, "ema": True, "kmeans_init": True,
                       "dead_code_threshold": 0.5},
    "rvq": {"type": "rvq", "n_codebooks": 3, "codebook_size": 16, "kmeans_init": True,
            "quantizer_dropout": 0.5},
    "rvq_ema_factorised": {"type": "rvq", "n_codebooks": 3, "codebook_size": 16, "ema": True,
                           "codebook_dim": 4, "dead_code_threshold": 0.5},
    "fsq": {"type": "fsq", "levels": [5, 4, 3]},
    "grvq": {"type": "grvq", "groups": 2, "n_codebooks": 4, "codebook_size": 16,
             "quantizer_dropout": 0.5},
    "prvq": {"type": "prvq", "n_codebooks": 3, "codebook_size": 16, "quantizer_dropout": 0.5},
}
LEARNED = ["vq", "vq_factorised_l2", "rvq", "grvq"]


def build(name: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    return build_quantizer({**SPECS[name], **changes}, DIM)


def warm_up(q, steps: int = 3, seed: int = 1):
    """A few training forwards so k-means, EMA updates and restarts have run."""
    gen = torch.Generator().manual_seed(seed)
    q.train()
    for _ in range(steps):
        q(torch.randn(4, DIM, 16, generator=gen))
    return q


def clustered(n_clusters: int, dim: int, batch: int, frames: int, seed: int = 0):
    """z [batch, dim, frames]: points tightly around `n_clusters` well separated centres."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_clusters, dim, generator=gen)
    which = torch.arange(batch * frames) % n_clusters
    points = centres[which] + 0.05 * torch.randn(batch * frames, dim, generator=gen)
    return points.view(batch, frames, dim).transpose(1, 2).contiguous()


# -- contract: every family -------------------------------------------------------------------

@pytest.mark.parametrize("name", SPECS)
def test_eval_round_trip(name):
    q = warm_up(build(name)).eval()
    z = torch.randn(3, DIM, 11)
    out = q(z)
    codes = q.encode(z)
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(q.decode(codes), out.z_q, atol=1e-5, rtol=0)
    # The quantizer really quantizes: the output is not the input.
    assert (out.z_q - z).abs().max() > 1e-3


@pytest.mark.parametrize("name", SPECS)
def test_codes_do_not_depend_on_autocast(name):
    q = warm_up(build(name)).eval()
    z = torch.randn(2, DIM, 32).bfloat16()  # as a bf16 encoder would hand it over
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
    assert out.z_q.dtype == torch.float32
    assert torch.equal(out.codes, q.encode(z))


@pytest.mark.parametrize("frames", [1, 5, 13])
@pytest.mark.parametrize("name", SPECS)
def test_codes_shape_dtype_range(name, frames):
    q = build(name)
    z = torch.randn(3, DIM, frames)
    for training in (True, False):
        q.train(training)
        out = q(z)
        assert out.z_q.shape == z.shape
        assert out.codes.dtype == torch.long
        assert out.codes.shape == (3, q.n_codebooks, frames)
        sizes = torch.tensor(q.codebook_sizes)[None, :, None]
        assert (out.codes >= 0).all() and (out.codes < sizes).all()


@pytest.mark.parametrize("name", SPECS)
def test_straight_through_gradient_reaches_input_and_every_parameter(name):
    q = build(name).train()
    z = torch.randn(4, DIM, 9, requires_grad=True)
    # Explicit n_codebooks: no quantizer dropout, so every level gets a loss.
    out = q(z, n_codebooks=q.n_codebooks)
    # Through z_q alone (not the commitment loss): only the straight-through path reaches z.
    (out.z_q * torch.randn_like(out.z_q)).sum().backward(retain_graph=True)
    assert z.grad is not None and z.grad.abs().sum() > 0
    if out.losses:
        sum(out.losses.values()).backward()
    for pname, param in q.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["vq", "vq_factorised_l2"])
def test_losses_train_their_own_side(name):
    """The codebook loss moves only codewords; the commitment loss only the encoder side."""
    q = build(name).train()
    z = torch.randn(2, DIM, 7, requires_grad=True)
    q(z).losses["vq/codebook"].backward()
    assert z.grad is None
    assert q.codebook.weight.grad.abs().sum() > 0

    q.zero_grad(set_to_none=True)
    z = torch.randn(2, DIM, 7, requires_grad=True)
    q(z).losses["vq/commit"].backward()
    assert z.grad.abs().sum() > 0
    assert q.codebook.weight.grad is None


def test_loss_names():
    z = torch.randn(2, DIM, 5)
    assert set(build("vq")(z).losses) == {"vq/commit", "vq/codebook"}
    assert set(build("vq_ema_restart")(z).losses) == {"vq/commit"}
    assert set(build("rvq")(z).losses) == {"vq/commit", "vq/codebook"}
    assert build("fsq")(z).losses == {}
    metrics = build("grvq")(z).metrics
    assert set(metrics) == {f"vq/{m}/{i}" for m in ("usage", "perplexity") for i in range(4)}


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("name", SPECS)
def test_encode_changes_no_state(name, warm):
    q = build(name).train()
    if warm:
        warm_up(q)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.encode(torch.randn(2, DIM, 16) * 5)
    after = q.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", SPECS)
def test_state_dict_round_trip_through_safetensors(name, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    q = warm_up(build(name)).eval()
    st.save_file(q.state_dict(), tmp_path / "q.safetensors")
    fresh = build(name, seed=123)
    fresh.load_state_dict(st.load_file(tmp_path / "q.safetensors"))
    fresh.eval()
    z = torch.randn(3, DIM, 10)
    codes = q.encode(z)
    assert torch.equal(fresh.encode(z), codes)
    assert torch.equal(fresh.decode(codes), q.decode(codes))


def test_kmeans_runs_once_and_the_flag_survives_loading():
    q = build("vq_factorised_l2").train()
    assert not q.initialized
    q(torch.randn(2, DIM, 16))
    assert q.initialized
    placed = q.codebook.weight.detach().clone()
    q(torch.randn(2, DIM, 16) + 5)  # a second k-means would move the codewords
    assert torch.equal(q.codebook.weight, placed)

    fresh = build("vq_factorised_l2", seed=9).train()
    fresh.load_state_dict(q.state_dict())
    fresh(torch.randn(2, DIM, 16) + 5)
    assert torch.equal(fresh.codebook.weight, placed)


# -- vector quantizer: codebook learning ------------------------------------------------------

def test_nearest_is_chunked_exactly():
    gen = torch.Generator().manual_seed(0)
    x, c = torch.randn(100, 6, generator=gen), torch.randn(37, 6, generator=gen)
    brute = torch.cdist(x, c).argmin(1)
    assert torch.equal(nearest(x, c, chunk_elements=37 * 7), brute)
    cosine = (F.normalize(x, dim=1) @ F.normalize(c, dim=1).T).argmax(1)
    assert torch.equal(nearest(x, c, normalize=True, chunk_elements=1), cosine)


def test_code_metrics_values():
    m = code_metrics(torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]]), size=8, level=2)
    torch.testing.assert_close(m["vq/usage/2"], torch.tensor(0.5))
    torch.testing.assert_close(m["vq/perplexity/2"], torch.tensor(4.0))
    m = code_metrics(torch.zeros(2, 5, dtype=torch.long), size=8, level=0)
    torch.testing.assert_close(m["vq/usage/0"], torch.tensor(1 / 8))
    torch.testing.assert_close(m["vq/perplexity/0"], torch.tensor(1.0))


def test_kmeans_init_places_codewords_on_the_data():
    z = clustered(16, DIM, batch=4, frames=64)
    with_kmeans = build("vq", kmeans_init=True).train()(z)
    random_init = build("vq").train()(z)
    # Randomly seeded Lloyd (as EnCodec's) may merge a few clusters, hence the margins.
    assert with_kmeans.metrics["vq/usage/0"] >= 0.75
    assert with_kmeans.metrics["vq/perplexity/0"] >= 8
    assert with_kmeans.losses["vq/commit"] < 0.5 * random_init.losses["vq/commit"]


def collapse(q, point: torch.Tensor, z: torch.Tensor):
    """Put every codeword on one point and mark all as long unused. Codeword 0 sits 1% of
    the way nearer the data `z`, so it wins the first search by a clear margin instead of
    by an exact tie, which a BLAS kernel could round either way."""
    size = q.cfg.codebook_size
    vectors = point.expand(size, -1).clone()
    vectors[0] += 0.01 * (z.mean((0, 2)) - point)
    q.codebook.place(torch.ones(size, dtype=torch.bool), vectors, torch.ones(size))
    q.usage.zero_()


def test_collapsed_codebook_shows_and_dead_code_restart_recovers():
    z = clustered(16, DIM, batch=4, frames=64)
    stuck = build("vq_ema_restart", kmeans_init=False, dead_code_threshold=0.0).train()
    stuck(z)
    collapse(stuck, torch.full((DIM,), 10.0), z)
    for _ in range(10):
        out = stuck(z)
    assert out.metrics["vq/usage/0"] == pytest.approx(1 / 16)
    assert out.metrics["vq/perplexity/0"] == pytest.approx(1.0)
    stuck_commit = out.losses["vq/commit"]

    revived = build("vq_ema_restart", kmeans_init=False, dead_code_threshold=1.0).train()
    revived(z)
    collapse(revived, torch.full((DIM,), 10.0), z)
    for _ in range(30):
        out = revived(z)
    assert out.metrics["vq/usage/0"] >= 0.9
    assert out.metrics["vq/perplexity/0"] >= 8
    assert out.losses["vq/commit"] < 0.25 * stuck_commit


def test_ema_codebook_moves_toward_the_data():
    q = build("vq", codebook_size=4, ema=True).train()
    z = 3 + 0.1 * torch.randn(4, DIM, 16)
    mean = z.mean((0, 2))

    def gap():
        return (q.codebook.weight - mean).norm(dim=1).min()

    start = gap()
    for _ in range(50):
        q(z)
    assert gap() < 0.5 * start
    # A learned codebook does not move without an optimiser step.
    learned = build("vq", codebook_size=4).train()
    weight = learned.codebook.weight.detach().clone()
    for _ in range(5):
        learned(z)
    assert torch.equal(learned.codebook.weight, weight)


def test_ema_keeps_empty_kmeans_clusters_in_place():
    # 4 latents for 16 codewords: k-means seeds repeat, so some clusters end up empty.
    q = build("vq", ema=True, kmeans_init=True).train()
    z = 5 + torch.randn(1, DIM, 4)
    for _ in range(3):
        q(z)
    assert q.codebook.weight.norm(dim=1).min() > 5


def test_factorised_codes_use_weight_normed_projections_and_cosine_search():
    q = warm_up(build("vq_factorised_l2")).eval()
    assert q.codebook.weight.shape == (16, 4)
    z = torch.randn(2, DIM, 9)
    with torch.no_grad():
        z_e = F.normalize(q.in_proj(z), dim=1)                        # [B, 4, T]
        cosine = torch.einsum("bct,kc->bkt", z_e, F.normalize(q.codebook.weight, dim=1))
    assert torch.equal(q.encode(z)[:, 0], cosine.argmax(1))
    keys = q.state_dict().keys()
    assert "in_proj.parametrizations.weight.original0" in keys
    assert "out_proj.parametrizations.weight.original1" in keys


# -- residual quantizers: bitrate scalability -------------------------------------------------

def levels_used(q, out, groups: int) -> list[int]:
    """Per item, the number of leading code rows whose decode reproduces z_q."""
    used = []
    for b in range(out.z_q.shape[0]):
        ks = range(groups, q.n_codebooks + 1, groups)
        errors = [(q.decode(out.codes[b:b + 1, :k]) - out.z_q[b:b + 1]).abs().max() for k in ks]
        best = min(range(len(errors)), key=lambda i: errors[i])
        assert errors[best] < 1e-5
        used.append(list(ks)[best])
    return used


@pytest.mark.parametrize("name,groups", [("rvq", 1), ("grvq", 2)])
def test_quantizer_dropout(name, groups):
    # Learned codebook without k-means: training forwards leave the codewords alone, so
    # decode() reproduces what forward() summed.
    q = build(name, n_codebooks=4, quantizer_dropout=1.0, kmeans_init=False).train()
    z = torch.randn(32, DIM, 5)
    out = q(z)
    used = levels_used(q, out, groups)
    assert len(set(used)) >= 2
    assert out.codes.shape[1] == 4
    # Dropped levels carry no loss for their items.
    full = q(z, n_codebooks=4)
    assert out.losses["vq/commit"] < full.losses["vq/commit"]

    assert levels_used(q, q.eval()(z), groups) == [4] * 32
    no_dropout = build(name, n_codebooks=4, quantizer_dropout=0.0, kmeans_init=False).train()
    assert levels_used(no_dropout, no_dropout(z), groups) == [4] * 32


@pytest.mark.parametrize("name,step", [("rvq", 1), ("grvq", 2)])
def test_error_falls_as_levels_are_added(name, step):
    q = build(name, n_codebooks=4, kmeans_init=True, quantizer_dropout=0.0).train()
    z = torch.randn(8, DIM, 32)
    q(z)  # k-means places each level on the residual the levels before it leave
    q.eval()
    ks = list(range(step, 5, step))
    errors = [F.mse_loss(q.decode(q.encode(z, k)), z).item() for k in ks]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[0] < F.mse_loss(torch.zeros_like(z), z).item()
    # Fewer levels give a prefix of the full code, and a forward over fewer levels agrees.
    full = q.encode(z)
    assert torch.equal(q.encode(z, ks[0]), full[:, :ks[0]])
    torch.testing.assert_close(q(z, ks[0]).z_q, q.decode(full[:, :ks[0]]), atol=1e-5, rtol=0)


def test_grvq_codes_are_level_major():
    q = warm_up(build("grvq")).eval()
    z = torch.randn(2, DIM, 6)
    codes = q.encode(z)
    for g, part in enumerate(z.chunk(2, dim=1)):
        assert torch.equal(codes[:, g::2], q.groups[g].encode(part))
    # Keeping the first two rows keeps the coarse level of both channel groups.
    coarse = q.decode(codes[:, :2])
    expected = torch.cat([q.groups[g].decode(codes[:, g:g + 1]) for g in range(2)], 1)
    torch.testing.assert_close(coarse, expected)


# -- finite scalar quantization ---------------------------------------------------------------

def test_fsq_grid_and_mixed_radix_codes():
    q = build_quantizer(SPECS["fsq"], 3).eval()
    assert q.codebook_sizes == [60]
    with torch.no_grad():  # identity projections expose the grid itself
        for proj in (q.in_proj, q.out_proj):
            proj.weight.copy_(torch.eye(3)[:, :, None])
            proj.bias.zero_()
    # items: all dims +big, all -big, all zero -> top code, code 0, centre digits (2, 2, 1)
    z = torch.tensor([50.0, -50.0, 0.0]).view(3, 1, 1).expand(3, 3, 1)
    codes = q.encode(z)
    assert codes.flatten().tolist() == [59, 0, 2 + 2 * 5 + 1 * 20]
    torch.testing.assert_close(q.bound(torch.zeros(1, 3, 1)), torch.zeros(1, 3, 1), atol=1e-3,
                               rtol=0)
    top = q.decode(torch.tensor([[[59]]]))
    torch.testing.assert_close(top.flatten(), torch.tensor([1.0, 0.5, 1.0]))
    # Every code is a distinct grid point and maps back to itself.
    every = torch.arange(60).view(1, 1, 60)
    grid = q.codes_to_latent(every)
    assert torch.unique(grid.squeeze(0).T, dim=0).shape[0] == 60
    assert torch.equal(q.digits_to_codes(grid * (q.levels // 2)), every)


def test_fsq_two_level_dimensions_work():
    torch.manual_seed(0)
    q = build_quantizer({"type": "fsq", "levels": [2, 2, 3]}, DIM).eval()
    z = torch.randn(4, DIM, 64) * 3
    out = q(z)
    assert torch.isfinite(out.z_q).all()
    assert out.metrics["vq/usage/0"] > 0.5  # most of the 12 codes are reachable
    torch.testing.assert_close(q.decode(out.codes), out.z_q, atol=1e-5, rtol=0)


# -- configuration and argument errors --------------------------------------------------------

def test_bad_n_codebooks_are_rejected():
    z = torch.randn(2, DIM, 4)
    vq, rvq, fsq, grvq = (build(n) for n in ("vq", "rvq", "fsq", "grvq"))
    for q, bad in ((vq, 2), (rvq, 0), (rvq, 4), (fsq, 2), (grvq, 6)):
        with pytest.raises(ValueError, match="n_codebooks must be between 1 and"):
            q.encode(z, bad)
    with pytest.raises(ValueError, match="multiple of groups=2"):
        grvq.encode(z, 3)
    with pytest.raises(ValueError, match="multiple of groups=2"):
        grvq(z, 1)
    with pytest.raises(ValueError, match="multiple of groups=2"):
        grvq.decode(grvq.encode(z)[:, :3])
    with pytest.raises(ValueError, match="decodes 1 to 3"):
        rvq.decode(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        vq.decode(torch.zeros(2, 1, 4))


@pytest.mark.parametrize("spec,message", [
    ({"type": "vq", "codebok_size": 8}, "did you mean 'codebook_size'"),
    ({"type": "rvq", "quantizer_dropout": 1.5}, "quantizer_dropout"),
    ({"type": "fsq", "levels": [1, 4]}, "levels must be >= 2"),
    ({"type": "grvq", "groups": 2, "n_codebooks": 5}, "multiple of groups"),
    ({"type": "vq", "ema_decay": 1.0}, "ema_decay"),
    ({"type": "rvqq"}, "did you mean 'rvq'"),
])
def test_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_quantizer(spec, DIM)


def test_registry_and_dim_checks():
    assert {"vq", "rvq", "fsq", "grvq"} <= set(QUANTIZERS.names())
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        build_quantizer({"type": "grvq", "groups": 2, "n_codebooks": 4}, 7)


def test_dead_code_restart_does_not_leak_the_current_batch():
    """Restarts happen after the search: even when every code is 'dead', a training forward
    quantizes with the old codebook, so the commitment loss is not zero."""
    torch.manual_seed(0)
    q = VectorQuantizer(VQConfig(codebook_size=64, dead_code_threshold=1e9, ema=True), 8).train()
    q(torch.randn(2, 8, 10))                      # initialise
    out = q(torch.randn(2, 8, 10) * 3)            # every code is below the threshold
    assert out.losses["vq/commit"] > 0.5
