"""NeuCodec (Neuphonic; X-Codec-2's design, 16 kHz in, 24 kHz out) in transformers'
NeuCodecModel format, against transformers' own NeuCodecModel (5.24) fed by its
NeuCodecFeatureExtractor: identical codes, decoded 24 kHz audio within 1e-4, on lengths that
are and are not whole frames and on a padded batch of two. The model is built as in
test_xcodec2.py (tiny random w2v-BERT, the released strides and FSQ levels)."""

import json
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


def test_inference_only_and_reload(codec, tmp_path):
    assert codec.provenance["format"] == "transformers NeuCodecModel"
    assert codec.provenance["licence"].startswith("Apache-2.0")
    assert codec.provenance["trainable"] is False
    with pytest.raises(ValueError, match="inference only"):
        codec(torch.zeros(1, 1, 3200))
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

    from audiotok.demo_core import run_clip
    from audiotok.eval.evaluate import _codec_systems, score

    sf.write(str(tmp_path / "a.wav"), speechlike(1.0, 16000, seed=2), 16000)
    result = run_clip(codec, "neucodec", tmp_path / "a.wav", 1, tmp_path, 10.0)
    assert sf.info(str(result.reconstruction)).samplerate == 16000
    assert abs(len(result.rec) - len(result.ref)) < HOP and "stoi" in result.metrics
    wav = speechlike(1.0, 16000, seed=2).reshape(-1).astype("float64")
    out = _codec_systems(codec, "neucodec", [1], "cpu")[0].run(wav, 16000)
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


def test_init_from_is_refused(release, tmp_path):
    """The trainer refuses it up front, naming why (not at its first step)."""
    import yaml

    from audiotok.config import to_dict
    from audiotok.errors import ConfigError
    from audiotok.train import read_recipe
    from audiotok.train.trainer import Trainer

    _, hf = release
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "extends": str(Path(__file__).parent.parent / "recipes" / "base.yaml"),
        "model": to_dict(audiotok.load_codec(hf).config)}))
    recipe = read_recipe(recipe_path, [f"data.train={tmp_path}", f"train.init_from={hf}",
                                       f"train.run_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="inference only"):
        Trainer(recipe)
