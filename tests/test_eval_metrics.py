"""Evaluation metrics, token statistics and classic-codec baselines on a short speech clip."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from audiotok.audio import resample
from audiotok.errors import AudiotokError
from audiotok.eval import baselines
from audiotok.eval.quality_metrics import (
    align,
    bigram_conditional_entropy,
    code_entropy,
    codebook_usage,
    find_delay,
    mel_distance,
    pesq_nb,
    pesq_wb,
    si_sdr,
    stoi,
)

SR = 16000
HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_opus = pytest.mark.skipif(shutil.which("opusenc") is None or shutil.which("opusdec") is None,
                                reason="opus-tools not installed (scripts/setup.sh installs it)")
needs_codec2 = pytest.mark.skipif(shutil.which("c2enc") is None or shutil.which("c2dec") is None,
                                  reason="codec2 not installed (scripts/setup.sh installs it)")


def _harmonic(seconds: float) -> np.ndarray:
    """A speech-like stand-in: 120-180 Hz gliding harmonics, syllable-rate amplitude bursts."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(150 + 30 * np.sin(2 * np.pi * 0.7 * t)) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    return 0.3 * voiced * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) / 2


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 2 s of synthetic speech at 16 kHz, float64 [T]."""
    if not HAS_ESPEAK:
        return _harmonic(2.0)
    path = tmp_path_factory.mktemp("espeak") / "clip.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Please call Stella, ask her to bring these."],
                   check=True, capture_output=True)
    wav, sr = sf.read(path, dtype="float64")
    return resample(wav[None], sr, SR)[0][: 2 * SR]


def _noisy(x: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(x.size)
    return x + noise * np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))


def test_identity_scores_perfect(speech):
    assert pesq_wb(speech, speech, SR).value == pytest.approx(4.64, abs=0.01)
    assert pesq_nb(speech, speech, SR).value > 4.4
    assert stoi(speech, speech, SR).value == pytest.approx(1.0, abs=1e-6)
    assert si_sdr(speech, speech) > 90
    # identical signals in different FFT batch rows may differ by float32 rounding (1-ulp
    # input noise gives 2.3e-6 here); 1e-4 is far above that and far below real distortion
    assert mel_distance(speech, torch.from_numpy(speech)[None], SR) == pytest.approx(0, abs=1e-4)


def test_noise_ranks_monotonically(speech):
    noisy = [_noisy(speech, snr) for snr in (30, 10, 0)]
    for metric in (pesq_wb, pesq_nb, stoi):
        scores = [metric(speech, y, SR).value for y in noisy]
        assert scores[0] > scores[1] > scores[2], (metric.__name__, scores)
    sdr = [si_sdr(speech, y) for y in noisy]
    assert sdr == pytest.approx([30, 10, 0], abs=0.5)


@pytest.mark.parametrize("delay", [123, -57, 0])
def test_align_recovers_delay(speech, delay):
    est = np.roll(speech, delay)
    aligned = align(speech, est, max_shift=400)
    assert aligned.delay == delay == find_delay(speech, est, 400)
    assert aligned.ref.size == aligned.est.size == speech.size - abs(delay)
    inner = slice(abs(delay), -abs(delay) or None)  # away from np.roll's wrapped samples
    np.testing.assert_array_equal(aligned.ref[inner], aligned.est[inner])


@pytest.mark.parametrize("delay", [0, 300])
def test_align_ignores_resynthesised_phase(speech, delay):
    """A copy whose phase was rebuilt by Griffin-Lim (magnitudes kept, polarity and fine
    timing lost) still aligns to its true delay, within 2 ms. The band energies find it 15-20
    samples early (Griffin-Lim spreads each onset a little ahead of itself; measured on the
    espeak-ng clip and on the harmonic fallback); the bound is that lead plus two 8-sample
    hops of the band envelopes, the estimator's resolution."""
    from audiotok.modules.griffin_lim import fast_griffin_lim
    from audiotok.modules.istft import ISTFT, stft_same

    istft = ISTFT(256, 64)
    x = torch.from_numpy(speech[: speech.size // 64 * 64]).float()[None]
    mag = stft_same(x, 256, 64, istft.window).abs()
    est = -istft(fast_griffin_lim(mag, istft, 16))[0].double().numpy()  # and inverted
    est = np.concatenate([np.zeros(delay), est])
    assert abs(find_delay(x[0].numpy(), est, 800) - delay) <= 32


def test_too_short_or_silent_gives_reason(speech):
    short = speech[: SR // 10]
    silent = np.zeros(SR)
    cases = {pesq_wb: [(short, short), (silent, silent), (speech, np.zeros_like(speech))],
             pesq_nb: [(short, short), (silent, silent), (speech, np.zeros_like(speech))],
             stoi: [(short, short), (silent, silent), (silent, speech[:SR])]}
    for metric, pairs in cases.items():
        for ref, est in pairs:
            score = metric(ref, est, SR)
            assert score.value is None and score.reason, (metric.__name__, ref.size, score)
    assert stoi(speech, np.zeros_like(speech), SR).value == pytest.approx(0, abs=1e-3)


def test_token_entropies_on_known_distributions():
    uniform = np.tile(np.arange(8), 100)[None]                # every symbol equally often
    cycle = np.tile([3, 1, 4, 1, 5], 50)[None]                 # 1 -> 4 or 5: one bit of choice
    constant = np.zeros((1, 40), dtype=np.int64)
    assert code_entropy(uniform, 8) == pytest.approx([3.0])
    assert bigram_conditional_entropy(uniform, 8) == pytest.approx([0.0], abs=1e-12)
    assert code_entropy(constant, 4) == [0.0]
    h = bigram_conditional_entropy(cycle, 6)[0]
    assert h == pytest.approx(2 / 5 * 1.0, abs=0.01)           # only after a 1 is there doubt
    iid = np.random.default_rng(0).integers(0, 4, size=(2, 20000))
    assert bigram_conditional_entropy(torch.from_numpy(iid), [4, 4]) == pytest.approx(
        [2.0, 2.0], abs=0.01)
    assert codebook_usage(np.stack([uniform[0], uniform[0] % 2]), [16, 8]) == [0.5, 0.25]
    with pytest.raises(ValueError, match="outside"):
        code_entropy(uniform, 4)


def _check_roundtrip(speech, out, kbps):
    assert out.wav.shape == speech.shape and out.wav.dtype == np.float32
    assert out.kbps == pytest.approx(kbps, rel=0.2)


@needs_opus
@pytest.mark.parametrize("kbps", baselines.OPUS_KBPS)
def test_opus_roundtrip(speech, kbps):
    out = baselines.opus(speech, SR, kbps)
    _check_roundtrip(speech, out, kbps)
    aligned = align(speech, out.wav, max_shift=SR // 20)
    assert pesq_wb(aligned.ref, aligned.est, SR).value > 1.2


@needs_codec2
@pytest.mark.parametrize("mode,kbps", [("3200", 3.2), ("1600", 1.6), ("700C", 0.7)])
def test_codec2_roundtrip(speech, mode, kbps):
    out = baselines.codec2(speech, SR, mode)
    _check_roundtrip(speech, out, kbps)
    aligned = align(speech, out.wav, max_shift=SR // 20)
    assert stoi(aligned.ref, aligned.est, SR).value > 0.5


@needs_codec2
@pytest.mark.skipif(not HAS_ESPEAK, reason="measured on the espeak-ng clip only")
def test_codec2_rate_ranks_quality(speech):
    def score(mode):
        aligned = align(speech, baselines.codec2(speech, SR, mode).wav, max_shift=SR // 20)
        return pesq_nb(aligned.ref, aligned.est, SR).value

    assert score("3200") > score("700C")


def test_missing_tool_names_debian_package(monkeypatch, speech):
    monkeypatch.setattr(baselines.shutil, "which", lambda name: None)
    with pytest.raises(AudiotokError, match="opus-tools"):
        baselines.opus(speech, SR)
    with pytest.raises(AudiotokError, match="codec2"):
        baselines.codec2(speech, SR, "700C")
