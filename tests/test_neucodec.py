"""NeuCodec (Neuphonic; X-Codec-2's design, 16 kHz in, 24 kHz out) in transformers'
NeuCodecModel format, against transformers' own NeuCodecModel (5.24) fed by its
NeuCodecFeatureExtractor: identical codes, decoded 24 kHz audio within 1e-4, on lengths that
are and are not whole frames and on a padded batch of two. The model is built as in
test_xcodec2.py (tiny random w2v-BERT, the released strides and FSQ levels)."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import audiotok
from audiotok.errors import AudiotokError

transformers = pytest.importorskip("transformers")
pytest.importorskip("torchaudio")

from test_xcodec2 import SEMANTIC, TINY, one_thread, randomise  # noqa: F401

AUDIO_ATOL = 1e-4
HOP, OUT_HOP = 320, 480  # samples per code at 16 kHz in, 24 kHz out


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from transformers import NeuCodecConfig, NeuCodecModel, Wav2Vec2BertConfig

    torch.manual_seed(0)
    config = NeuCodecConfig(semantic_model_config=Wav2Vec2BertConfig(**SEMANTIC).to_dict(),
                            **TINY)
    model = NeuCodecModel(config).eval()
    randomise(model, torch.Generator().manual_seed(1))
    folder = tmp_path_factory.mktemp("neucodec") / "hf"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def codec(release):
    return audiotok.load_codec(release[1])


def theirs(model, items):
    from transformers import NeuCodecFeatureExtractor

    inputs = NeuCodecFeatureExtractor(hop_length=HOP)(items, sampling_rate=16000,
                                                      return_tensors="pt")
    with torch.no_grad():
        codes = model.encode(**inputs).audio_codes
        return codes, model.decode(codes).audio_values


@pytest.mark.parametrize("samples", [16000, 7301, 3200])
def test_matches_neucodecmodel(release, codec, samples):
    model, _ = release
    assert (codec.sample_rate, codec.output_sample_rate, codec.hop_length,
            codec.output_hop_length) == (16000, 24000, HOP, OUT_HOP)
    wav = 0.1 * torch.randn(1, 1, samples, generator=torch.Generator().manual_seed(samples))
    codes, audio = theirs(model, [wav[0, 0]])
    assert codes.shape[-1] == samples // HOP  # the tail of a partial frame is not coded
    if samples == 16000:
        assert codes.unique().numel() > 20
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes.long())
    assert tokens.lengths.tolist() == [samples // HOP]
    assert tokens.num_samples.tolist() == [samples // HOP * HOP]
    ours = codec.decode(tokens)
    assert ours.shape == audio.shape == (1, 1, samples // HOP * OUT_HOP)
    torch.testing.assert_close(ours, audio, rtol=0, atol=AUDIO_ATOL)


def test_padded_batch(release, codec):
    """Codes as the feature extractor batches; decoded without a padding mask, as the
    publisher's decode is when not given one (audiotok's decoders take none)."""
    model, _ = release
    long, short = 14000, 5000
    wav = 0.1 * torch.randn(2, 1, long, generator=torch.Generator().manual_seed(5))
    codes, audio = theirs(model, [wav[0, 0], wav[1, 0, :short]])
    tokens = codec.encode(wav, lengths=torch.tensor([long, short]))
    assert torch.equal(tokens.codes, codes.long())
    assert tokens.lengths.tolist() == [long // HOP, short // HOP]
    ours = codec.decode(tokens)
    torch.testing.assert_close(ours, audio[..., :ours.shape[-1]], rtol=0, atol=AUDIO_ATOL)


def test_provenance_and_reload(codec, tmp_path):
    assert codec.provenance["format"] == "transformers NeuCodecModel"
    assert codec.provenance["licence"].startswith("Apache-2.0")
    assert codec.provenance["trainable"] is True
    with pytest.raises(AudiotokError, match="at least 320 samples"):
        codec.encode(torch.zeros(1, 1, 200))
    wav = 0.1 * torch.randn(1, 1, 9000)
    tokens = codec.encode(wav)
    tokens.save(tmp_path / "a.atok")
    again = audiotok.Tokens.load(tmp_path / "a.atok")
    codec.save_pretrained(tmp_path / "converted")
    converted = audiotok.load_codec(tmp_path / "converted")
    assert converted.output_sample_rate == 24000
    assert torch.equal(converted.encode(wav).codes, tokens.codes)
    assert torch.equal(converted.decode(again), codec.decode(tokens))


@pytest.mark.parametrize("samples", [3200, 7301, 4801])
def test_forward_decodes_at_the_output_rate(codec, samples):
    """Training's forward takes 16 kHz and gives 24 kHz: T * 3 / 2 samples (rounded down
    for odd T), floor(T / 320) frames coded as `encode` codes them, the tail of a partial
    frame silent (as `decode` pads it); in eval mode the audio is `decode(encode(wav))`."""
    wav = 0.1 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(samples))
    frames = samples // HOP
    codec.eval()
    out = codec(wav)
    assert out.audio.shape == (2, 1, codec.output_samples(samples)) == (2, 1, samples * 3 // 2)
    assert out.codes.shape == (2, 1, frames)
    assert torch.equal(out.codes, codec.encode(wav).codes)
    assert not out.audio[..., frames * OUT_HOP:].any()
    decoded = codec.decode(codec.encode(wav))
    torch.testing.assert_close(out.audio[..., :decoded.shape[-1]], decoded, rtol=0,
                               atol=1e-5)
    codec.train()
    out = codec(wav)
    out.audio.square().mean().backward()  # gradients reach the decoder through 24 kHz audio
    assert codec.decoder.head.proj.weight.grad is not None
    codec.zero_grad(set_to_none=True)
    codec.eval()
    with pytest.raises(ValueError, match=r"wav must be a tensor \[B, 1, T > 0\] at 16000 Hz"):
        codec(torch.zeros(1, 2, 3200))


def test_training_input_is_the_target_resampled(codec):
    """The trainer's batch is the 24 kHz target, cut to whole frames (480 samples); the
    encoder's input is it resampled to 16 kHz (320 samples a frame), deterministically, close
    to what soxr (`load_audio`) makes of the same excerpt."""
    from conftest import speechlike

    from audiotok.audio import resample
    from audiotok.data.data_config import DataConfig
    from audiotok.errors import ConfigError
    from audiotok.train.rates import check_segments, segment_multiple, split_batch

    assert segment_multiple(codec) == OUT_HOP
    assert codec.input_samples(4 * OUT_HOP) == 4 * HOP and codec.input_samples(3) == 2
    with pytest.raises(ValueError, match="1921 samples at 24000 Hz are no whole number"):
        codec.input_samples(1921)
    speech = torch.from_numpy(speechlike(0.4, 24000, seed=3).T.copy())  # [1, 9600]
    wav = torch.stack([speech, -speech])[..., :15 * OUT_HOP + 101]
    inputs, target = split_batch(codec, wav)
    assert target.shape == (2, 1, 15 * OUT_HOP) and torch.equal(target, wav[..., :15 * OUT_HOP])
    assert inputs.shape == (2, 1, 15 * HOP) and inputs.dtype == torch.float32
    assert torch.equal(split_batch(codec, wav)[0], inputs)  # the same every time
    reference = torch.from_numpy(resample(target[0].numpy(), 24000, 16000))
    assert reference.shape == inputs[0].shape
    middle = slice(200, -200)  # away from the excerpt's edges, which each pads its own way
    error = (inputs[0, :, middle] - reference[:, middle]).abs().max()
    assert error < 0.01 * reference.abs().max(), error
    with pytest.raises(ConfigError, match="shorter than one frame"):
        split_batch(codec, wav[..., :OUT_HOP - 1])
    with pytest.raises(ConfigError, match=r"data.segment_seconds = 0.01 is shorter than one "
                                          r"frame of this codec \(480 samples at 24000 Hz"):
        check_segments(codec, DataConfig(train="x", segment_seconds=0.01))


def test_init_from_checks_trainability_and_rates(release, tmp_path):
    """Fine-tunes start from NeuCodec; a codec marked inference only is refused (no codec is
    now: the flag set on a loaded one), and so is a recipe whose model would read or write
    audio at other rates than the weights were made for (here 16 kHz out, which the
    weights' shapes alone do not show), in one line naming both."""
    import yaml

    from audiotok.errors import ConfigError
    from audiotok.strict_config import to_dict
    from audiotok.train import read_recipe
    from audiotok.train.trainer import Trainer

    _, hf = release
    loaded = audiotok.load_codec(hf)
    loaded.provenance["trainable"] = False
    loaded.save_pretrained(tmp_path / "frozen")

    def trainer(init_from, **model_changes):
        model = to_dict(audiotok.load_codec(hf).config)
        model["decoder"].update(model_changes)
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({
            "extends": str(Path(__file__).parent.parent / "recipes" / "base.yaml"),
            "model": model}))
        return Trainer(read_recipe(path, [f"data.train={tmp_path}",
                                          f"train.init_from={init_from}",
                                          f"train.run_dir={tmp_path / 'run'}"]))

    assert trainer(hf).initialised_from == str(hf)
    shutil.rmtree(tmp_path / "run")
    with pytest.raises(ConfigError, match="frozen' is transformers NeuCodecModel, which "
                                          "audiotok runs for inference only"):
        trainer(tmp_path / "frozen")
    with pytest.raises(ConfigError) as err:
        trainer(hf, sample_rate=None)
    assert "encodes at 16000 Hz and decodes at 24000 Hz, this recipe's model encodes and " \
           "decodes at 16000 Hz" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_bad_config(release, tmp_path):
    _, hf = release
    shutil.copytree(hf, tmp_path / "gqa")
    config = json.loads((hf / "config.json").read_text())
    (tmp_path / "gqa" / "config.json").write_text(json.dumps({**config,
                                                              "num_key_value_heads": 1}))
    with pytest.raises(AudiotokError, match="this NeuCodecModel .*num_key_value_heads=1"):
        audiotok.load_codec(tmp_path / "gqa")


def test_cli_decodes_at_24khz(release, tmp_path):
    import soundfile as sf
    from conftest import speechlike

    from audiotok.cli import main

    _, hf = release
    sf.write(str(tmp_path / "a.wav"), speechlike(0.7, 16000, seed=1), 16000)
    assert main(["encode", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.atok"),
                 "--codec", str(hf)]) == 0
    assert main(["decode", str(tmp_path / "a.atok"), "-o", str(tmp_path / "b.wav")]) == 0
    info = sf.info(str(tmp_path / "b.wav"))
    assert info.samplerate == 24000 and abs(info.duration - 0.7) < 1e-3  # 35 whole frames


def test_short_name_resolves_through_the_hub_cache(release, tmp_path, monkeypatch):
    from test_published import fake_hub_cache

    from audiotok.codecs.published.names import NAMES

    model, hf = release
    entry = NAMES["neucodec"]
    assert (entry.repo, entry.sample_rate, entry.hop_length) == ("neuphonic/neucodec", 16000,
                                                                 HOP)
    fake_hub_cache(tmp_path / "hub", entry.repo, {f: hf / f for f in entry.files})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wav = 0.1 * torch.randn(1, 1, 8000)
    assert torch.equal(audiotok.load_codec("neucodec").encode(wav).codes,
                       theirs(model, [wav[0, 0]])[0].long())


def test_demo_and_eval_score_at_the_input_rate(release, codec, tmp_path):
    """The demo shows and scores the 24 kHz reconstruction beside its 16 kHz reference
    (resampled to it); eval scores the output at the codec's output rate."""
    import soundfile as sf
    from conftest import speechlike

    from audiotok.demo.core import run_clip
    from audiotok.eval.evaluate import EvalConfig, _codec_systems, score

    sf.write(str(tmp_path / "a.wav"), speechlike(1.0, 16000, seed=2), 16000)
    result = run_clip(codec, "neucodec", tmp_path / "a.wav", 1, tmp_path, 10.0)
    assert sf.info(str(result.reconstruction)).samplerate == 16000
    assert abs(len(result.rec) - len(result.ref)) < HOP and "stoi" in result.metrics
    wav = speechlike(1.0, 16000, seed=2).reshape(-1).astype("float64")
    cfg = EvalConfig(codecs=[], data="", n_codebooks=[1])
    out = _codec_systems(codec, "neucodec", cfg)[0].run(wav, 16000)
    assert out.sample_rate == 24000
    assert score(wav, out)["stoi"] is not None


def test_long_files_in_chunks(codec):
    """Chunks with a fixed context (as for X-Codec-2): the whole file's shape, codes near its
    own (80-87 % equal at 1 s chunks on this random model), audio at 24 kHz."""
    wav = 0.1 * torch.randn(1, 1, 4 * 16000 + 100, generator=torch.Generator().manual_seed(4))
    whole = codec.encode(wav, chunk_seconds=None)
    chunked = codec.encode(wav, chunk_seconds=1.0)
    assert chunked.codes.shape == whole.codes.shape == (1, 1, 200)
    assert (chunked.codes == whole.codes).float().mean() >= 0.5
    assert codec.decode(whole, chunk_seconds=1.0).shape == (1, 1, 200 * OUT_HOP)


def fine_tune_recipe(hf, tmp_path, overrides):
    """A recipe that takes its model from the publisher's folder (train.init_from), with
    tiny discriminators and 0.2 s excerpts (10 frames)."""
    import yaml

    from audiotok.train import read_recipe

    path = tmp_path / "neucodec.yaml"
    path.write_text(yaml.safe_dump({
        "extends": str(Path(__file__).parent.parent / "recipes" / "base.yaml")}))
    return read_recipe(path, [
        f"train.init_from={hf}", f"train.run_dir={tmp_path / 'run'}", "train.batch_size=2",
        "data.segment_seconds=0.2", "data.num_workers=0",
        "discriminators=[{type: mpd, periods: [2, 3], channels: [4, 8, 8, 8, 8]}]",
        *overrides])


@pytest.mark.slow
def test_trainer_overfits_one_batch(release, tmp_path):
    """The trainer's own step on one 24 kHz batch, again and again: the mel loss (24 kHz
    output against the 24 kHz target) falls (measured 3.9 -> 1.7 in 12 steps)."""
    from conftest import speechlike

    from audiotok.train.trainer import Trainer

    _, hf = release
    trainer = Trainer(fine_tune_recipe(hf, tmp_path, [
        f"data.train={tmp_path}", "optim.lr=1e-3", "optim.schedule=constant",
        "train.disc_start_step=1000"]))
    wav = torch.stack([torch.from_numpy(speechlike(0.2, 24000, seed=i).T.copy())
                       for i in range(2)])
    mel = [trainer.train_step(wav)["mel"] for _ in range(12)]
    assert mel[-1] < 0.75 * mel[0], mel


@pytest.mark.slow
def test_fine_tunes_with_the_trainer(release, tmp_path):
    """`train.init_from` takes the publisher's folder (the recipe takes its model from it):
    the data loads at 24 kHz, the target; the encoder reads it resampled to 16 kHz; losses,
    discriminators, validation and the logged clips see 24 kHz. Finite losses on every step,
    weights moved (the w2v-BERT semantic model frozen, as in the publisher's training), the
    export reloads with the same codes."""
    import soundfile as sf
    from conftest import speechlike
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_published import same_parameters

    from audiotok.train.trainer import Trainer

    _, hf = release
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        sf.write(str(corpus / f"u{i}.wav"), speechlike(1.0, 24000, seed=i), 24000)
    trainer = Trainer(fine_tune_recipe(hf, tmp_path, [
        f"data.train={corpus}", f"data.val={corpus}", "train.steps=6", "train.ckpt_every=6",
        "train.val_every=3", "train.val_batches=1", "train.audio_examples=1",
        "train.log_every=1", "data.val_segment_seconds=0.3", "train.disc_start_step=2"]))
    release_codec = audiotok.load_codec(hf)
    assert same_parameters(trainer.codec, release_codec)
    assert trainer.losses.mel.sample_rate == 24000
    seen, values = [], []
    step = trainer.train_step

    def recording(wav, batch=None):
        seen.append(tuple(wav.shape))
        values.append(step(wav, batch))
        return values[-1]

    trainer.train_step = recording
    assert trainer.fit() == 0
    assert seen == [(2, 1, 4800)] * 6  # 0.2 s at 24 kHz: 10 frames of 480
    for v in values:
        assert all(math.isfinite(x) for x in v.values()), v
    assert "adv/gen" in values[-1] and "adv/disc" in values[-1]
    export = audiotok.load_codec(tmp_path / "run" / "model")
    assert (export.sample_rate, export.output_sample_rate) == (16000, 24000)
    assert not same_parameters(export, release_codec)
    for name, p in export.encoder.semantic.state_dict().items():
        assert torch.equal(p, release_codec.encoder.semantic.state_dict()[name]), name
    wav = 0.1 * torch.randn(1, 1, 8000)
    assert torch.equal(audiotok.load_codec(tmp_path / "run" / "model").encode(wav).codes,
                       export.encode(wav).codes)
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"audio": 0})
    events.Reload()
    clips = {tag: events.Audio(tag)[-1] for tag in events.Tags()["audio"]}
    assert set(clips) == {"audio/original_0", "audio/reconstruction_0"}
    for clip in clips.values():  # 0.3 s validation excerpts at 24 kHz (15 whole frames)
        assert clip.sample_rate == 24000 and clip.length_frames == 7200
    assert math.isfinite(events.Scalars("val/mel_distance")[-1].value)
