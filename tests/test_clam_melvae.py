"""CLaM-TTS's Mel-VAE codec (recipes/designs/clam_melvae_16k*.yaml): the log-mel front end, the mel_vae
decoder with a vocoder from the decoder registry, chunked coding, bad settings, and the tiny
recipe trained on a CPU, saved and reloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from conftest import speechlike

from audiotok import Codec, load_codec
from audiotok.cli import main
from audiotok.errors import ConfigError
from audiotok.modules.istft import same_padding
from audiotok.modules.mel import LogMel
from audiotok.train import read_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "designs"


def recipe(name="clam_melvae_16k_tiny", *overrides):
    return read_recipe(RECIPES / f"{name}.yaml", ["data.train=unused", *overrides])


def tiny_codec(*overrides) -> Codec:
    torch.manual_seed(0)
    return Codec(recipe("clam_melvae_16k_tiny", *overrides).model)


def speech(seconds: float, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(speechlike(seconds, 16000, seed=seed).T[None].copy())


def test_log_mel_is_torchaudios_on_the_same_frames():
    wav = speech(0.5)[:, 0]
    mel = LogMel(16000, 640, 160, 80)(wav)
    assert mel.shape == (1, 80, 50)
    reference = torchaudio.transforms.MelSpectrogram(
        16000, n_fft=640, hop_length=160, n_mels=80, power=1.0, center=False, norm="slaney",
        mel_scale="slaney")(F.pad(wav, same_padding(640, 160)))
    torch.testing.assert_close(mel, reference.clamp(min=1e-5).log(), atol=1e-4, rtol=1e-4)


def test_full_size_recipe_rates():
    torch.manual_seed(0)
    codec = Codec(recipe("clam_melvae_16k").model)
    assert codec.frame_rate == 10.0                      # the paper's 10 Hz codes
    assert codec.codebook_sizes == [1024] * 32           # 32 depths x 1024
    assert codec.bitrate() == pytest.approx(3200.0)
    assert codec.bitrate(8) == pytest.approx(800.0)
    assert codec.encoder.mel.n_mels == 80 and codec.decoder.cfg.teacher_forcing


def test_encoder_reads_the_mel_and_the_codec_round_trips():
    codec = tiny_codec().eval()
    wav = speech(1.25)  # 12.5 frames: encode pads to 13
    torch.testing.assert_close(codec.encoder.features(wav), codec.encoder.mel(wav[:, 0]))
    tokens = codec.encode(wav)
    assert tokens.codes.shape == (1, 4, 13)
    assert 0 <= int(tokens.codes.min()) and int(tokens.codes.max()) < 64
    assert codec.decode(tokens).shape == wav.shape
    fewer = codec.encode(wav, n_codebooks=2)
    assert torch.equal(fewer.codes, tokens.codes[:, :2])


def test_chunked_coding_matches_whole():
    codec = tiny_codec().eval()
    wav = speech(3.0, seed=1)
    whole = codec.encode(wav, chunk_seconds=None)
    assert torch.equal(codec.encode(wav, chunk_seconds=0.5).codes, whole.codes)
    torch.testing.assert_close(codec.decode(whole, chunk_seconds=0.5),
                               codec.decode(whole, chunk_seconds=None), atol=1e-5, rtol=0)


def test_decoder_trains_on_the_mel_and_teacher_forcing_keeps_waveform_losses_off_it():
    codec = tiny_codec().train()
    assert codec.decoder.loss_names == ("decoder/mel",)
    wav = speech(1.0)
    out = codec(wav)
    assert out.audio.shape == wav.shape
    assert set(out.losses) == {"vq/commit", "vq/codebook", "decoder/mel"}
    # a loss on the audio alone reaches the vocoder, not the mel model (teacher forcing) ...
    out.audio.square().mean().backward()
    assert codec.decoder.vocoder.head.proj.weight.grad.abs().sum() > 0
    assert codec.decoder.proj.weight.grad is None
    codec.zero_grad(set_to_none=True)
    codec(wav).losses["decoder/mel"].backward()
    assert codec.decoder.proj.weight.grad.abs().sum() > 0
    assert codec.decoder.vocoder.head.proj.weight.grad is None
    # ... and outside training the predicted mel is what is vocoded
    codec.eval()
    with torch.no_grad():
        out = codec(wav)
        torch.testing.assert_close(out.audio, codec.decoder(out.z_q)[..., :wav.shape[-1]])
    end_to_end = tiny_codec("model.decoder.teacher_forcing=false").train()
    end_to_end(wav).audio.square().mean().backward()
    assert end_to_end.decoder.proj.weight.grad.abs().sum() > 0


def test_a_griffin_lim_vocoder_brings_its_own_losses():
    codec = tiny_codec("model.decoder.vocoder={type: spectral, dim: 32, intermediate_dim: 64, "
                       "num_layers: 1, upsample: 1, fine_dim: 32, fine_layers: 0, "
                       "train_iterations: 2, iterations: 4}").train()
    names = ("decoder/mel", "decoder/magnitude", "decoder/compressed")
    assert codec.decoder.loss_names == names
    out = codec(speech(0.6))
    assert set(out.losses) == {"vq/commit", "vq/codebook", *names}
    assert codec.eval().decode(codec.encode(speech(0.6))).shape == (1, 1, 9600)


@pytest.mark.parametrize("override,message", [
    ("model.decoder.upsample=3", "upsample \\(3\\) must divide the encoder's hop length"),
    ("model.decoder.vocoder.dimm=8", "vocoder.*did you mean 'dim'"),
    ("model.decoder.vocoder={type: mel_vae}", "vocoder must take mel frames"),
    ("model.decoder.vocoder={type: vocoss}", "vocoder.*did you mean 'vocos'"),
    ("model.decoder.n_fft=100", "decoder n_fft"),
    ("model.encoder.n_mels=-1", "n_mels must be >= 0"),
    ("model.quantizer.sigma=-1", "sigma must be > 0"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        tiny_codec(override)
    assert "\n" not in str(info.value)


def test_cli_reports_a_bad_setting_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {RECIPES / 'clam_melvae_16k_tiny.yaml'}\n"
                   "model: {quantizer: {sigma_decay: 1.5}}\n")
    assert main(["info", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert "sigma_decay must be in (0, 1)" in err and "\n" not in err and "Traceback" not in err


@pytest.mark.slow
def test_tiny_recipe_trains_and_reloads(tmp_path):
    from audiotok.data import build_items, make_train_loader
    from audiotok.train.trainer import Trainer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        sig = np.roll(speechlike(1.2, 16000, seed=i), 700 * i, axis=0) * (0.5 + 0.1 * i)
        sf.write(str(corpus / f"utt{i}.wav"), sig, 16000)
    torch.manual_seed(0)
    r = recipe("clam_melvae_16k_tiny", f"data.train={corpus}", f"train.run_dir={tmp_path}",
               "data.num_workers=0", "optim.lr=1e-3", "optim.schedule=constant")
    trainer = Trainer(r)
    batch = next(iter(make_train_loader(r.data, 16000, 1, r.train.batch_size,
                                        items=build_items(r.data).train)))
    history = []
    for _ in range(24):  # overfit one batch: batch-to-batch noise would mask the trend
        history.append(trainer.train_step(batch["wav"]))
        trainer.step += 1
    for name in ("decoder/mel", "mel"):
        values = [h[name] for h in history]
        # measured (means of the first and last 5 steps): decoder/mel 1.04 -> 0.67 (ratio
        # 0.64), mel 0.45 -> 0.26 (0.57); 1 and 2 threads alike
        assert np.mean(values[-5:]) < 0.8 * np.mean(values[:5]), (name, values)
    codec = trainer.codec.eval()
    wav = speech(0.9, seed=3)
    codes = codec.encode(wav).codes
    codec.save_pretrained(tmp_path / "export")
    again = load_codec(tmp_path / "export")
    assert torch.equal(again.encode(wav).codes, codes)
    torch.testing.assert_close(again.decode(again.encode(wav)), codec.decode(codec.encode(wav)))
