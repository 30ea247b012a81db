"""Pitch coding: the YIN estimator and the harmonic comb (modules/f0.py), the pitch_rvq
quantizer, the spectral decoder's pitch input, and their wiring in Codec. Shapes, chunking,
save/load and gradients run over the tiny "stft-pitch" family in test_codec.py."""

import math

import pytest
import torch
from conftest import TINY, build, speechlike

from audiotok import Codec
from audiotok.codecs.spectral_decoder import envelope_basis
from audiotok.errors import ConfigError
from audiotok.modules.f0 import (
    F0_MAX,
    F0_MIN,
    PHASE_PERIOD,
    f0_to_latent,
    harmonic_comb,
    harmonic_phase,
    latent_to_f0,
    min_phase,
    noise_phase,
    refine_f0,
    upsample_f0,
    yin_f0,
)
from audiotok.modules.istft import ISTFT, stft_same
from audiotok.quantizers.pitch_rvq import PitchRVQ, PitchRVQConfig

SR = 16000


def harmonic(f0: float, seconds: float = 1.0, n: int = 6) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    wav = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, n + 1))
    return (0.3 * wav).float()[None]


@pytest.mark.parametrize("f0", [62.0, 110.0, 245.0, 480.0])
def test_yin_finds_the_fundamental(f0):
    est = yin_f0(harmonic(f0), SR, 320)[0, 3:-3]
    assert (est > 0).all()
    assert (est / f0 - 1).abs().max() < 0.005, est


def test_yin_missing_fundamental_is_not_an_octave_up():
    # harmonics 2..6 only: the period is still 1 / f0
    wav = harmonic(150.0) - 0.3 * torch.sin(2 * math.pi * 150.0 * torch.arange(SR) / SR)[None]
    est = yin_f0(wav, SR, 320)[0, 3:-3]
    assert ((est / 150.0 - 1).abs() < 0.01).float().mean() > 0.9


def test_noise_and_silence_are_unvoiced():
    torch.manual_seed(0)
    assert (yin_f0(0.1 * torch.randn(1, SR), SR, 320) == 0).float().mean() > 0.95
    assert (yin_f0(torch.zeros(1, SR), SR, 320) == 0).all()
    quiet = harmonic(200.0) * 1e-3  # -70 dBFS
    assert (yin_f0(quiet, SR, 320) == 0).all()


def test_yin_tracks_a_glide_and_its_voicing_edges():
    t = torch.arange(SR) / SR
    f0 = 120 + 60 * t  # 120 -> 180 Hz
    wav = 0.3 * torch.sin(2 * math.pi * torch.cumsum(f0, 0) / SR)
    wav[: SR // 4] = 0
    est = yin_f0(wav[None], SR, 320)[0]
    frames = torch.arange(est.shape[0])
    centre = f0[(frames * 320 + 160).clamp(max=SR - 1)]
    assert (est[:10] == 0).all()  # the silent first quarter
    voiced = frames >= 16
    assert ((est[voiced] / centre[voiced] - 1).abs() < 0.02).all()


def test_yin_is_frame_local():
    wav = torch.from_numpy(speechlike(2.0, SR)[:, 0])[None]
    whole = yin_f0(wav, SR, 320)
    part = yin_f0(wav[:, 320 * 20: 320 * 60], SR, 320)
    torch.testing.assert_close(part[:, 5:-5], whole[:, 25:55])


def test_voicing_threshold_voices_breathy_frames():
    # a harmonic tone under noise: the dip at its period sits between the two thresholds
    torch.manual_seed(0)
    wav = harmonic(150.0, 2.0) + 0.2 * torch.randn(1, 2 * SR)
    strict = yin_f0(wav, SR, 320, voicing_threshold=0.3)
    relaxed = yin_f0(wav, SR, 320, voicing_threshold=0.6)
    assert (relaxed > 0).float().mean() > (strict > 0).float().mean() + 0.2
    assert (strict[relaxed == 0] == 0).all()  # a higher threshold only ever adds frames
    voiced = relaxed[relaxed > 0]
    # not the deepest dip, at twice the period (75 Hz): the first one near as deep
    assert ((voiced / 150.0 - 1).abs() < 0.03).float().mean() > 0.85


def test_codec_voicing_threshold_is_a_config_field():
    cfg = dict(TINY["stft-pitch"])
    codec = Codec.from_config({**cfg, "encoder": {**cfg["encoder"], "voicing_threshold": 0.5}})
    assert codec.encoder.voicing_threshold == 0.5
    assert codec._config_dict()["encoder"]["voicing_threshold"] == 0.5
    with pytest.raises(ConfigError, match="voicing_threshold"):
        Codec.from_config({**cfg, "encoder": {**cfg["encoder"], "voicing_threshold": 0}})


def test_refine_f0_sharpens_an_estimate_on_the_harmonics():
    wav = harmonic(180.0, n=20)
    yin = yin_f0(wav, SR, 320)
    off = yin * 1.03  # a 3 % error: the 20th harmonic 108 Hz off, past the comb's lobe
    off[0, 10:15] = 0  # frames called unvoiced stay unvoiced
    refined = refine_f0(wav, off, SR, 320)
    assert refined.shape == off.shape and (refined[0, 10:15] == 0).all()
    inner = [i for i in range(3, off.shape[1] - 3) if not 10 <= i < 15]
    assert (refined[0, inner] / 180.0 - 1).abs().max() < 0.003, refined
    # a right estimate stays right
    again = refine_f0(wav, torch.full_like(yin, 180.0), SR, 320)
    assert (again[0, 3:-3] / 180.0 - 1).abs().max() < 0.003


def test_refine_f0_is_frame_local():
    wav = torch.from_numpy(speechlike(2.0, SR)[:, 0])[None]
    whole = refine_f0(wav, yin_f0(wav, SR, 320), SR, 320)
    part = wav[:, 320 * 20: 320 * 60]
    torch.testing.assert_close(refine_f0(part, yin_f0(part, SR, 320), SR, 320)[:, 5:-5],
                               whole[:, 25:55])


def test_pitch_refine_is_a_config_field_and_needs_pitch():
    cfg = dict(TINY["stft-pitch"])
    assert not build("stft-pitch").encoder.pitch_refine  # older codecs keep their codes
    codec = build("stft-harmonic")
    assert codec.encoder.pitch_refine and codec._config_dict()["encoder"]["pitch_refine"]
    plain = TINY["stft-spectral"]
    with pytest.raises(ConfigError, match="pitch_refine needs pitch"):
        Codec.from_config({**plain, "encoder": {**plain["encoder"], "pitch_refine": True}})
    with pytest.raises(ConfigError, match="phase must be one of"):
        Codec.from_config({**cfg, "decoder": {**cfg["decoder"], "phase": "random"}})
    with pytest.raises(ConfigError, match="phase: harmonic needs pitch"):
        Codec.from_config({**plain, "decoder": {**plain["decoder"], "phase": "harmonic"}})


def _convergence(mag: torch.Tensor, phase: torch.Tensor) -> float:
    """Relative error of |STFT(iSTFT(mag e^(i phase)))| against mag, edge frames left out."""
    istft = ISTFT(640, 160)
    y = istft(mag * torch.polar(torch.ones_like(phase), phase))
    again = stft_same(y, 640, 160, istft.window).abs()
    return float((again - mag)[..., 4:-4].norm() / mag[..., 4:-4].norm())


@pytest.mark.parametrize("glide", [False, True])
def test_harmonic_phase_is_consistent_for_a_harmonic_signal(glide):
    # a consistent phase: the magnitudes come back through iSTFT -> STFT unchanged
    t = torch.arange(SR, dtype=torch.float64) / SR
    f0 = 150 + 100 * t if glide else torch.full_like(t, 200.0)
    phi = 2 * math.pi * torch.cumsum(f0, 0) / SR
    wav = sum(torch.sin(k * phi + k * k) / k for k in range(1, 16)).float()[None] * 0.2
    mag = stft_same(wav, 640, 160, ISTFT(640, 160).window).abs()
    frames = torch.arange(mag.shape[-1]) * 160 + 80  # frame centres
    f0_frames = f0[frames.clamp(max=SR - 1)].float()[None]
    err = _convergence(mag, harmonic_phase(f0_frames, 640, 160, SR))
    assert err < (0.001 if not glide else 0.15), err
    assert _convergence(mag, torch.zeros_like(mag)) > 0.5  # what Griffin-Lim starts from


def _same_angle(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4) -> bool:
    return bool((torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi).abs().max() < atol)


def test_harmonic_phase_restarts_at_voicing_and_every_period():
    f0 = torch.full((1, 3 * PHASE_PERIOD), 123.0)
    f0[0, 10:20] = 0
    phase = harmonic_phase(f0, 640, 160, SR)
    bins = torch.arange(321, dtype=torch.float32)
    at_anchor = torch.remainder(-math.pi * bins, 2 * math.pi)
    for frame in (20, PHASE_PERIOD, 2 * PHASE_PERIOD):  # run start, anchors
        assert _same_angle(phase[0, :, frame], at_anchor), frame
    assert not _same_angle(phase[0, :, 21], at_anchor, atol=1e-2)
    # unvoiced frames: a fixed noise's phase, different in every frame, not a pulse per frame
    noise = noise_phase(3 * PHASE_PERIOD, 640, 160)
    assert _same_angle(phase[0, :, 10:20], noise[:, 10:20])
    assert not _same_angle(phase[0, :, 10], phase[0, :, 11], atol=1.0)
    assert not _same_angle(phase[0, :, 15], at_anchor, atol=1.0)
    # a chunk that starts at frame s with frame_offset s agrees from its first anchor on
    s = 50
    part = harmonic_phase(f0[:, s:], 640, 160, SR, frame_offset=s)
    assert _same_angle(part[..., PHASE_PERIOD - s:], phase[..., PHASE_PERIOD:])
    assert _same_angle(harmonic_phase(f0[:, 12:], 640, 160, SR, frame_offset=12)[..., :8],
                       phase[..., 12:20])  # the noise phase holds from the first frame
    assert not _same_angle(part[..., :PHASE_PERIOD - s], phase[..., s:PHASE_PERIOD])


def test_min_phase_of_a_one_pole_filter():
    # H(z) = 1 / (1 - a z^-1) is minimum phase: its phase is -atan2(a sin w, 1 - a cos w)
    a, n_fft = 0.5, 64
    w = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * 2 * math.pi / n_fft
    h = 1 / (1 - a * torch.exp(-1j * w))
    phase = min_phase(h.abs().log()[:, None], n_fft)[:, 0]
    torch.testing.assert_close(phase, torch.angle(h), atol=1e-6, rtol=0)


def test_harmonic_phase_decode_is_chunk_exact_over_long_voiced_runs():
    codec = build("stft-harmonic")
    wav = torch.from_numpy(speechlike(2.0, codec.sample_rate)[:, 0]).view(1, 1, -1)
    tokens = codec.encode(wav)
    assert (tokens.codes[0, 0] > 0).float().mean() > 0.5
    assert tokens.codes.shape[-1] * codec.decoder.cfg.upsample > 4 * PHASE_PERIOD
    whole = codec.decode(tokens, chunk_seconds=None)
    for frames in (7, 60, 301):
        chunked = codec.decode(tokens, chunk_seconds=frames / codec.frame_rate)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_latent_round_trip_and_range():
    f0 = torch.tensor([0.0, F0_MIN, 100.0, 333.0, F0_MAX, 2000.0])
    p = f0_to_latent(f0)
    assert p[0] == -1 and ((p[1:] >= 0) & (p[1:] <= 1)).all()
    back = latent_to_f0(p)
    torch.testing.assert_close(back[:5], f0[:5], rtol=1e-5, atol=0)
    assert back[5] == F0_MAX  # clamped into the codable range


def test_comb_peaks_on_harmonics():
    comb = harmonic_comb(torch.tensor([[200.0, 0.0]]), 640, SR)  # 25 Hz bins
    voiced, unvoiced = comb[0, :, 0], comb[0, :, 1]
    assert (unvoiced == 0).all()
    peaks = torch.arange(8, 317, 8)  # 200 Hz = 8 bins
    torch.testing.assert_close(voiced[peaks], torch.ones(len(peaks)))
    assert (voiced[peaks + 4] == 0).all()  # half-way between harmonics
    assert 0.4 < voiced[9] < 0.6  # one bin off: Hann main lobe at 1 bin


def test_upsample_holds_edges_and_interpolates_in_log():
    up = upsample_f0(torch.tensor([[0.0, 100.0, 400.0, 0.0]]), 2)[0]
    assert up[:2].eq(0).all() and up[-2:].eq(0).all()
    # exp(log(f)) in float32 lands within a few ulps of f, and which SIMD path evaluates it
    # (AVX2 or AVX-512 width, or the scalar tail) differs by machine: 1e-5 covers ~100 ulps
    torch.testing.assert_close(up[[2, 5]], torch.tensor([100.0, 400.0]), rtol=1e-5, atol=0)
    torch.testing.assert_close(up[3], torch.tensor(100.0 * 4 ** 0.25), rtol=1e-5, atol=0)


def quantizer(levels=1024, n=3):
    torch.manual_seed(0)
    return PitchRVQ(PitchRVQConfig(n_codebooks=n, codebook_size=16, codebook_dim=4,
                                   pitch_levels=levels), dim=9).eval()


def test_pitch_rvq_codes_pitch_to_half_a_step():
    q = quantizer()
    f0 = torch.tensor([[0.0, 55.0, 120.0, 121.0, 590.0]])
    z = torch.cat([f0_to_latent(f0)[:, None], torch.randn(1, 8, 5)], 1)
    codes = q.encode(z)
    assert codes.shape == (1, 4, 5) and q.codebook_sizes == [1024, 16, 16, 16]
    assert codes[0, 0, 0] == 0 and (codes[0, 0, 1:] > 0).all()
    back = latent_to_f0(q.decode(codes)[:, 0])
    step = math.log(F0_MAX / F0_MIN) / (1024 - 2)
    assert ((back[0, 1:] / f0[0, 1:]).log().abs() <= step / 2 + 1e-6).all()
    assert back[0, 0] == 0
    assert codes[0, 0, 2] != codes[0, 0, 3]  # 120 and 121 Hz are told apart


def test_pitch_rvq_prefixes():
    q = quantizer()
    z = torch.cat([torch.full((2, 1, 7), 0.5), torch.randn(2, 8, 7)], 1)
    only_pitch = q.encode(z, 1)
    assert only_pitch.shape == (2, 1, 7)
    z1 = q.decode(only_pitch)
    assert z1.shape == (2, 9, 7) and (z1[:, 1:] == 0).all()
    out = q.train()(z, 2)
    assert out.codes.shape == (2, 2, 7) and "vq/commit" in out.losses
    # level 0 is the pitch, RVQ level 0 is token level 1
    assert sorted(out.metrics) == ["vq/perplexity/0", "vq/perplexity/1", "vq/usage/0",
                                   "vq/usage/1"]
    assert out.metrics["vq/usage/0"] == pytest.approx(1 / 1024)  # one F0 in the batch
    assert q(z, 1).z_q[:, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="between 1 and 4"):
        q.encode(z, 5)


def test_codec_codes_pitch_and_bitrate():
    codec = build("stft-pitch")
    wav = torch.from_numpy(speechlike(1.0, 8000)[:, 0]).view(1, 1, -1)
    tokens = codec.encode(wav)
    assert codec.codebook_sizes == [256, 64, 64, 64]
    pitch = tokens.codes[0, 0]
    assert (pitch > 0).float().mean() > 0.5  # the signal is voiced most of the time
    f0 = latent_to_f0(codec.quantizer.decode(tokens.codes[:, :1])[:, 0])[0]
    assert ((f0[pitch > 0] > 80) & (f0[pitch > 0] < 200)).float().mean() > 0.9  # 90..150 Hz
    assert codec.bitrate(2) == pytest.approx(codec.frame_rate * (8 + 6))


def test_pitch_must_be_wired_through_all_three_parts():
    cfg = dict(TINY["stft-pitch"])
    with pytest.raises(ConfigError, match="not set: decoder"):
        Codec.from_config({**cfg, "decoder": {**cfg["decoder"], "pitch": False,
                                              "envelope_points": 0}})
    with pytest.raises(ConfigError, match="not set: quantizer"):
        rvq = {k: v for k, v in cfg["quantizer"].items() if k != "pitch_levels"}
        Codec.from_config({**cfg, "quantizer": {**rvq, "type": "rvq"}})
    with pytest.raises(ConfigError, match="mono"):
        Codec.from_config({**cfg, "channels": 2})
    with pytest.raises(ConfigError, match="latent_dim >= 2"):
        Codec.from_config({**cfg, "latent_dim": 1})
    codec = Codec.from_config({**cfg, "sample_rate": 24000})
    assert codec.encoder.sample_rate == codec.decoder.sample_rate == 24000  # F0 is in Hz


@pytest.mark.parametrize("points", [0, 5])
def test_decoder_pitch_input_starts_at_zero_and_comb_shapes_the_output(points):
    cfg = dict(TINY["stft-pitch"])
    torch.manual_seed(0)
    codec = Codec.from_config({**cfg, "decoder": {**cfg["decoder"], "envelope_points": points}})
    z = torch.randn(1, 17, 20)
    z[:, 0] = 0.3
    unvoiced = z.clone()
    unvoiced[:, 0] = -1
    dec = codec.decoder
    voiced_mag, unvoiced_mag = dec.log_magnitude(z).exp(), dec.log_magnitude(unvoiced).exp()
    assert (voiced_mag >= unvoiced_mag - 1e-6).all()  # the harmonic part only adds
    assert (voiced_mag > unvoiced_mag * 1.01).any()


def test_envelope_basis_interpolates_linearly_between_its_points():
    basis = envelope_basis(321, 41)
    assert basis.shape == (321, 41) and torch.allclose(basis.sum(1), torch.ones(321))
    points = torch.linspace(0, 1, 41)
    assert torch.allclose(basis @ points, torch.linspace(0, 1, 321), atol=1e-6)
    assert torch.equal(basis[::8], torch.eye(41))  # every 8th bin is a point


def test_envelope_heads_cannot_draw_harmonics():
    codec = build("stft-pitch")
    dec = codec.decoder
    z = torch.randn(2, 17, 9)
    z[:, 0] = -1  # unvoiced: the noise envelope alone
    log_mag = dec.log_magnitude(z)[:, 0]  # [B, F, T]
    assert log_mag.shape == (2, dec.n_bins, 18)
    # piecewise linear over the bins: curvature only at the 5 points (bins 0, 3, 6, 9, 12)
    curvature = (log_mag[:, 2:] - 2 * log_mag[:, 1:-1] + log_mag[:, :-2]).abs()
    between = [i - 1 for i in range(1, dec.n_bins - 1) if i % 3]
    assert curvature[:, between].max() < 1e-4 < curvature.max()
    assert dec.proj.out_features == dec.harmonic_proj.out_features == 5


def test_envelope_points_need_the_comb():
    cfg = TINY["stft-spectral"]
    with pytest.raises(ConfigError, match="envelope_points must be 0, or >= 2 with pitch"):
        Codec.from_config({**cfg, "decoder": {**cfg["decoder"], "envelope_points": 8}})
    pitch = TINY["stft-pitch"]
    with pytest.raises(ConfigError, match="envelope_points"):
        Codec.from_config({**pitch, "decoder": {**pitch["decoder"], "envelope_points": 1}})


def test_init_script_fits_per_bin_heads_onto_the_envelope():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "init_pitch_codec.py"
    spec = importlib.util.spec_from_file_location("init_pitch_codec", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    cfg = TINY["stft-pitch"]
    torch.manual_seed(0)
    source = Codec.from_config({**cfg, "decoder": {**cfg["decoder"], "envelope_points": 0}})
    target = build("stft-pitch", seed=1)
    assert script.transplant(source, target) == []  # every weight has a source
    z = torch.randn(1, 17, 9)
    z[:, 0] = -1
    with torch.no_grad():
        per_bin = source.decoder.log_magnitude(z)[0, 0]
        fitted = target.decoder.log_magnitude(z)[0, 0]
    basis = envelope_basis(target.decoder.n_bins, 5)
    least_squares = basis @ torch.linalg.pinv(basis) @ per_bin
    assert torch.allclose(fitted, least_squares, atol=1e-4)
