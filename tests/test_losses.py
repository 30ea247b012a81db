import math

import pytest
import torch
from torch import nn

from audiotok.errors import ConfigError
from audiotok.losses import (
    BalancerConfig,
    LossBalancer,
    MelLossConfig,
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    MultiScaleSTFTLoss,
    PhaseDerivativeLoss,
    PhaseLossConfig,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    weighted_sum,
)
from audiotok.strict_config import from_dict
from audiotok.waveform_metrics import mel_distance, si_sdr

SR = 8000

SPECTRAL = {
    "mel": lambda: MultiResolutionMelLoss(SR),
    "msspec": lambda: MultiScaleSTFTLoss(SR),
    "mrstft": lambda: MultiResolutionSTFTLoss(),
}


def tone(batch=2, channels=1, length=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / SR
    f0 = 150 + 100 * torch.rand(batch, channels, 1, generator=g)
    wav = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))
    return 0.3 * wav + 0.01 * torch.randn(batch, channels, length, generator=g)


@pytest.fixture(params=sorted(SPECTRAL))
def spectral(request):
    return SPECTRAL[request.param]()


# The spectral losses take reference and estimate through the FFT as one batch, and FFT
# libraries may run different rows through different code paths (SIMD groups and a scalar
# tail): identical inputs then differ by float32 rounding, which one ulp of input noise turns
# into losses of 2e-6..3.3e-6. 1e-4 is 30x above that and 40x below the smallest real
# difference these tests make (>= 4e-3).
ROUNDING = 1e-4


def test_spectral_identical_is_zero(spectral):
    x = tone()
    assert spectral(x, x.clone()).item() == pytest.approx(0.0, abs=ROUNDING)


def test_spectral_grows_with_noise(spectral):
    x = tone()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    values = [spectral(x, x + level * noise).item() for level in (0.003, 0.03, 0.3)]
    assert values[0] < values[1] < values[2], values


def test_spectral_gradient_reaches_estimate(spectral):
    x = tone()
    est = (x + 0.05 * torch.randn_like(x)).requires_grad_()
    spectral(x, est).backward()
    assert est.grad is not None and torch.isfinite(est.grad).all()
    assert est.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 1, 1001), (1, 2, 300), (3, 1, 1), (2, 777)])
def test_spectral_odd_and_short_lengths(spectral, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    value = spectral(x, 0.5 * x)
    assert value.dim() == 0 and torch.isfinite(value) and value > 0


def test_spectral_runs_in_float32_under_autocast(spectral):
    x = tone()
    est = x + 0.05 * torch.randn_like(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = spectral(x.bfloat16(), est.bfloat16())
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(spectral(x.bfloat16().float(), est.bfloat16().float()).item(),
                                         rel=1e-5)


def test_spectral_buffers_are_not_saved():
    assert MultiResolutionMelLoss(SR).state_dict() == {}
    assert MultiScaleSTFTLoss(SR).state_dict() == {}


def test_mel_config_is_strict():
    with pytest.raises(ConfigError, match="did you mean 'n_mels'"):
        from_dict(MelLossConfig, {"n_mel": [5]})
    with pytest.raises(ConfigError, match="same length"):
        from_dict(MelLossConfig, {"n_mels": [5, 10]})


# --- phase derivatives ---------------------------------------------------------------------


def phase_loss():
    return PhaseDerivativeLoss(PhaseLossConfig(fft_sizes=[256, 512]))


def with_random_phase(x, n=256):
    window = torch.hann_window(n)
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n, n // 4, window=window, return_complex=True)
    phase = torch.rand(spec.shape, generator=torch.Generator().manual_seed(3)) * 2 * math.pi
    out = torch.istft(torch.polar(spec.abs(), phase), n, n // 4, window=window,
                      length=x.shape[-1])
    return out.reshape(x.shape)


def test_phase_loss_ignores_gain_and_polarity():
    x = tone()
    loss = phase_loss()
    for est in (x.clone(), -x, 0.25 * x):
        assert loss(x, est).item() == pytest.approx(0.0, abs=1e-6)


def test_phase_loss_ranks_noise_and_scrambled_phase():
    x = tone()
    loss = phase_loss()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    values = [loss(x, x + level * x.std() * noise).item() for level in (0.01, 0.1, 1.0)]
    assert values[0] < values[1] < values[2], values
    scrambled = with_random_phase(x)
    # the same magnitudes with scrambled phase: the mel loss barely sees it, this loss does
    mel = MultiResolutionMelLoss(SR)
    assert loss(x, scrambled).item() > 2 * values[1]
    assert mel(x, scrambled).item() < mel(x, x + 1.0 * x.std() * noise).item()


def test_phase_loss_gradients_stay_finite():
    x = tone()
    loss = phase_loss()
    for start in (torch.zeros_like(x), with_random_phase(x)):
        est = start.clone().requires_grad_()
        value = loss(x, est)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(est.grad).all()
    assert est.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 1, 1001), (1, 2, 300), (3, 1, 1), (2, 777)])
def test_phase_loss_odd_and_short_lengths(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    value = phase_loss()(x, x + 0.3 * torch.randn_like(x))
    assert value.dim() == 0 and torch.isfinite(value) and 0 < value.item() <= 4


def test_phase_loss_config_and_state():
    assert phase_loss().state_dict() == {}
    with pytest.raises(ConfigError, match="multiples of 4"):
        from_dict(PhaseLossConfig, {"fft_sizes": [250]})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = phase_loss()(tone().bfloat16(), tone(seed=1).bfloat16())
    assert value.dtype == torch.float32


# --- adversarial ------------------------------------------------------------------------------


def disc_out(*logits):
    return [(torch.tensor([row]), [torch.tensor([row])]) for row in logits]


FAKE = disc_out([0.5, -2.0], [1.5, 0.0])
REAL = disc_out([2.0, 0.0], [0.5, -1.0])


@pytest.mark.parametrize("kind, expected", [("hinge", 1.125), ("lsgan", 2.625)])
def test_generator_adversarial_loss_values(kind, expected):
    # hinge: sub1 (0.5 + 3) / 2, sub2 (0 + 1) / 2; lsgan: (0.25 + 9) / 2, (0.25 + 1) / 2
    assert generator_adversarial_loss(FAKE, kind).item() == pytest.approx(expected)


@pytest.mark.parametrize("kind, expected", [("hinge", 2.125), ("lsgan", 3.1875)])
def test_discriminator_loss_values(kind, expected):
    # hinge: sub1 real 0.5 + fake 0.75, sub2 real 1.25 + fake 1.75 -> (1.25 + 3.0) / 2
    # lsgan: sub1 real 1 + fake 2.125, sub2 real 2.125 + fake 1.125 -> (3.125 + 3.25) / 2
    assert discriminator_loss(REAL, FAKE, kind).item() == pytest.approx(expected)


def test_adversarial_kind_typo_names_nearest():
    with pytest.raises(ValueError, match="did you mean 'hinge'"):
        generator_adversarial_loss(FAKE, "hing")


def test_feature_matching():
    real = [(torch.zeros(1), [torch.tensor([1.0, -1.0]), torch.tensor([2.0, 2.0])])]
    fake_feat = torch.tensor([1.5, -1.0], requires_grad=True)
    fake = [(torch.zeros(1), [fake_feat, torch.tensor([2.0, 2.0])])]
    # layer 1: mean|diff| 0.25 / mean|real| 1; layer 2: 0 -> mean 0.125
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(0.125)
    assert feature_matching_loss(real, real).item() == 0.0
    real_feat = real[0][1][0].requires_grad_()
    feature_matching_loss(real, fake).backward()
    assert fake_feat.grad is not None and real_feat.grad is None


# --- weighting and balancing ------------------------------------------------------------------


def test_weighted_sum_binds_by_name():
    losses = {"mel": torch.tensor(2.0), "adv/gen": torch.tensor(3.0),
              "logged": torch.tensor(float("nan"))}
    assert weighted_sum(losses, {"mel": 15.0, "adv/gen": 1.0}).item() == 33.0
    with pytest.raises(ValueError, match="'adv/gn'.*did you mean 'adv/gen'"):
        weighted_sum(losses, {"adv/gn": 1.0})


def make_model_and_losses():
    torch.manual_seed(0)
    model = nn.Conv1d(1, 1, 3, padding=1)
    x = torch.randn(4, 1, 64)
    target = torch.randn(4, 1, 64)
    y = model(x)
    return model, x, y, {
        "big": 1e4 * (y - target).pow(2).mean(),   # gradient ~1e4 times the other's
        "small": 1e-2 * (y - 2 * target).abs().mean(),
    }


def test_balancer_gradient_ratio_follows_weights():
    model, x, y, losses = make_model_and_losses()
    grads = {n: torch.autograd.grad(v, y, retain_graph=True)[0] for n, v in losses.items()}
    balancer = LossBalancer(BalancerConfig(weights={"big": 1.0, "small": 3.0}))
    out = balancer.backward(losses, y)

    def norm(g):
        return g.flatten(1).norm(dim=1).mean()

    contrib = {n: out.scales[n] * grads[n] for n in grads}
    assert norm(contrib["small"]) / norm(contrib["big"]) == pytest.approx(3.0, rel=1e-4)
    assert norm(contrib["small"]) == pytest.approx(0.75, rel=1e-4)  # total_norm * 3 / 4
    # the balanced gradient, sum of the contributions, reaches the parameters through y
    total = contrib["big"] + contrib["small"]
    expected = torch.autograd.grad(model(x), model.weight, grad_outputs=total)[0]
    torch.testing.assert_close(model.weight.grad, expected)
    assert set(out.losses) == {"big", "small"} and not out.losses["big"].requires_grad


def test_balancer_extra_loss_and_errors():
    model, _, y, losses = make_model_and_losses()
    commit = model.bias.pow(2).sum()  # does not depend on y
    balancer = LossBalancer(BalancerConfig(weights={"big": 1.0}))
    out = balancer.backward({**losses, "vq/commit": commit}, y, extra_loss=0.5 * commit)
    assert set(out.scales) == {"big"} and "small" in out.losses  # unweighted: logged only
    assert model.bias.grad is not None
    _, _, y, losses = make_model_and_losses()
    with pytest.raises(ValueError, match="did you mean 'small'"):
        LossBalancer(BalancerConfig(weights={"smal": 1.0})).backward(losses, y)
    with pytest.raises(ValueError, match="'vq/commit' does not depend on y"):
        LossBalancer(BalancerConfig(weights={"vq/commit": 1.0})).backward(
            {"vq/commit": model.bias.pow(2).sum(), **losses}, y)


def test_balancer_ema_state_round_trip():
    balancer = LossBalancer(BalancerConfig(weights={"big": 1.0, "small": 1.0}))
    for _ in range(2):
        _, _, y, losses = make_model_and_losses()
        out = balancer.backward(losses, y)
    torch.testing.assert_close(out.ema_norms["big"], out.grad_norms["big"])  # same grads twice
    restored = LossBalancer(balancer.cfg)
    restored.load_state_dict(balancer.state_dict())
    _, _, y, losses = make_model_and_losses()
    torch.testing.assert_close(restored.backward(losses, y).scales["big"], out.scales["big"])


# --- metrics ----------------------------------------------------------------------------------


def test_si_sdr():
    x = tone(batch=3, channels=2, length=8000)
    same = si_sdr(x, x)
    assert same.shape == (3,) and (same > 90).all()
    torch.testing.assert_close(si_sdr(x, 0.37 * x), same, atol=1e-3, rtol=0)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    noise = noise - noise.mean(-1, keepdim=True)
    for snr in (0.0, 10.0, 20.0):
        scale = x.flatten(1).std(1) / noise.flatten(1).std(1) / 10 ** (snr / 20)
        est = x + scale[:, None, None] * noise
        assert (si_sdr(x, est) - snr).abs().max() < 0.5


def test_mel_distance():
    x = tone(length=3001)
    assert mel_distance(x, x, SR).abs().max() < ROUNDING
    d = mel_distance(x, x + 0.1 * torch.randn_like(x), SR)
    assert d.shape == (2,) and (d > 0).all()


# --- the reconstruction-loss registry ---------------------------------------------------------


def test_reconstruction_losses_register_in_the_order_the_trainer_sums_them():
    """The trainer computes and sums the weighted losses in registration order (mel, msstft,
    stft, phase, stoi, waveform, as before the registry: a float sum depends on its order), and
    a recipe's `losses` holds one options section per loss that has options."""
    import dataclasses

    from audiotok.losses.reconstruction import options_sections, reconstruction_losses
    from audiotok.train.recipe_config import LossConfig

    assert reconstruction_losses() == ["mel", "msstft", "stft", "phase", "stoi", "waveform"]
    assert options_sections() == ["mel", "phase", "stft"]  # msstft and stft share losses.stft
    fields = {f.name for f in dataclasses.fields(LossConfig)}
    assert fields == {"weights", "adversarial", "balancer", "mel", "phase", "stft"}


def test_a_new_loss_is_one_class_and_one_decorator(monkeypatch):
    from audiotok.losses.reconstruction import (
        RECONSTRUCTION_LOSSES,
        NoOptions,
        ReconstructionLoss,
    )
    from audiotok.train.generator_losses import ReconstructionLosses
    from audiotok.train.recipe_config import LossConfig

    RECONSTRUCTION_LOSSES.discover()
    monkeypatch.setattr(RECONSTRUCTION_LOSSES, "_entries", dict(RECONSTRUCTION_LOSSES._entries))

    @RECONSTRUCTION_LOSSES.register("test_peak", NoOptions)
    class PeakLoss(ReconstructionLoss):
        def forward(self, ref, est):
            return (ref - est).abs().amax()

    ref, est = tone(seed=1), tone(seed=2)
    losses = ReconstructionLosses(LossConfig(weights={"test_peak": 2.0, "waveform": 1.0}), SR, [])
    out = losses(ref, est)
    assert list(out) == ["mel", "waveform", "test_peak"]  # mel always, for the logs
    assert torch.equal(out["test_peak"], (ref - est).abs().amax())
    assert torch.equal(out["mel"], MultiResolutionMelLoss(SR)(ref, est))
    with pytest.raises(ConfigError, match="'test_peek'.*did you mean 'test_peak'"):
        ReconstructionLosses(LossConfig(weights={"test_peek": 1.0}), SR, [])


def test_loss_contract_is_checked_at_registration():
    from dataclasses import dataclass

    from audiotok.losses.reconstruction import NoOptions, ReconstructionLoss
    from audiotok.registry import Registry

    @dataclass
    class Opts:
        scale: float = 1.0

    class NeedsHop(ReconstructionLoss):
        def __init__(self, hop: int):
            super().__init__()

    class IgnoresItsOptions(ReconstructionLoss):
        def __init__(self, sample_rate: int):
            super().__init__()

    reg = Registry("test loss", contract=ReconstructionLoss, classes_only=True)
    with pytest.raises(TypeError, match="NeedsHop: its constructor may take cfg and "
                                        "sample_rate, not hop"):
        reg.register("hop", NoOptions)(NeedsHop)
    with pytest.raises(TypeError, match="IgnoresItsOptions registers options"):
        reg.register("opts", Opts)(IgnoresItsOptions)
    with pytest.raises(TypeError, match="register the test loss class itself"):
        reg.register("fn", NoOptions)(lambda cfg: None)
