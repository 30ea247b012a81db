"""X-Codec-2.0 (Ye et al. 2025, the Llasa codec) in transformers' Xcodec2Model format, against
transformers' own Xcodec2Model (5.24) as the reference: the publisher's model is built with
random weights at reduced width (a tiny random w2v-BERT as its semantic model, the released
strides, FSQ levels and decoder layout), saved with `save_pretrained`, opened with
`load_codec`, and compared with what `Xcodec2FeatureExtractor` + `Xcodec2Model.encode/decode`
give: identical codes at every position, decoded audio within 1e-4, on lengths that are and
are not whole frames, and on a padded batch of two (the feature extractor's own batching).
"""

import json
import math
import shutil

import pytest
import torch
from conftest import one_thread_fixture

import audiotok
from audiotok.errors import AudiotokError

transformers = pytest.importorskip("transformers")
pytest.importorskip("torchaudio")  # Xcodec2FeatureExtractor's fbanks

AUDIO_ATOL = 1e-4  # the bar; measured differences are ~1e-7 (float32 rounding)
HOP = 320
# the release's strides and FSQ levels; narrow layers (GroupNorm's 32 groups need a width
# divisible by 32), two layers each
SEMANTIC = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "output_hidden_size": 32,
            "conv_depthwise_kernel_size": 5, "position_embeddings_type": "relative_key"}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32,
        "encoder_hidden_size": 4, "quantization_dim": 96}


# The anti-aliased activations are hundreds of tiny depthwise convs: with two threads
# on a busy 2-core machine their synchronisation dominates (measured: 1 s of audio encodes
# in 0.04 s on one thread, 5.5 s on two).
one_thread = one_thread_fixture()


def tiny_config():
    from transformers import Wav2Vec2BertConfig, Xcodec2Config

    return Xcodec2Config(semantic_model_config=Wav2Vec2BertConfig(**SEMANTIC).to_dict(), **TINY)


def randomise(model, g: torch.Generator) -> None:
    """Every weight moved off its init (SnakeBeta's zeros, norm gains, biases), so that a
    weight mapped to the wrong place shows; the FSQ input projection scaled up so that frames
    spread over the grid (at init every frame rounds to the same code), and the decoder's
    log-magnitudes raised so that its output is speech-like in level (~0.3), which gives the
    audio tolerance its usual meaning."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        model.quantizer.project_in.weight.mul_(30)
        bins = model.config.n_fft // 2 + 1
        model.acoustic_decoder.head.linear.bias[:bins] += math.log(5)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(reference model, its transformers folder)."""
    from transformers import Xcodec2Model

    torch.manual_seed(0)
    model = Xcodec2Model(tiny_config()).eval()
    randomise(model, torch.Generator().manual_seed(1))
    folder = tmp_path_factory.mktemp("xcodec2") / "hf"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def codec(release):
    return audiotok.load_codec(release[1])


def features():
    from transformers import Xcodec2FeatureExtractor

    return Xcodec2FeatureExtractor(hop_length=HOP)


def theirs(model, items: list[torch.Tensor]):
    """The publisher's codes [B, 1, T'] and audio [B, 1, T' * hop] for 1-D waveforms."""
    inputs = features()(items, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        codes = model.encode(**inputs).audio_codes
        return codes, model.decode(codes).audio_values


@pytest.mark.parametrize("samples", [16000, 7301, 3200])  # 3200: a whole number of frames
def test_matches_xcodec2model(release, codec, samples):
    model, _ = release
    assert (codec.sample_rate, codec.hop_length, codec.codebook_sizes) == (16000, HOP, [65536])
    g = torch.Generator().manual_seed(samples)
    wav = 0.1 * torch.randn(1, 1, samples, generator=g)
    codes, audio = theirs(model, [wav[0, 0]])
    # the publisher appends one zero before padding to whole frames: floor(T / hop) + 1 codes
    assert codes.shape[-1] == samples // HOP + 1
    if samples == 16000:  # a test with few codes in use would prove little
        assert codes.unique().numel() > 30
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes.long())
    # the frames holding the signal: the extra code of a whole number of frames covers only
    # the appended zero (token files record ceil(T / hop) frames for T samples)
    assert tokens.lengths.tolist() == [-(-samples // HOP)]
    ours = codec.decode(tokens)
    assert ours.shape[-1] == samples  # transformers decodes whole frames; audiotok trims
    torch.testing.assert_close(ours, audio[..., :samples], rtol=0, atol=AUDIO_ATOL)


def test_padded_batch(release, codec):
    """A batch as the feature extractor pads it: each item's fbanks normalised over the item
    alone and masked in w2v-BERT, the waveforms zero-padded to the longest; audiotok gets the
    same from `lengths` (whatever the padding holds)."""
    model, _ = release
    g = torch.Generator().manual_seed(5)
    long, short = 14000, 5000
    wav = 0.1 * torch.randn(2, 1, long, generator=g)
    codes, audio = theirs(model, [wav[0, 0], wav[1, 0, :short]])
    tokens = codec.encode(wav, lengths=torch.tensor([long, short]))  # padding is noise here
    assert torch.equal(tokens.codes, codes.long())
    assert tokens.lengths.tolist() == [-(-long // HOP), -(-short // HOP)]
    ours = codec.decode(tokens)
    torch.testing.assert_close(ours, audio[..., :long], rtol=0, atol=AUDIO_ATOL)


def test_shorter_than_a_frame(release, codec):
    """Inputs under one hop (and a batch whose short item is) still give the publisher's
    codes: the feature extractor pads them to one whole frame."""
    model, _ = release
    wav = 0.1 * torch.randn(2, 1, 700, generator=torch.Generator().manual_seed(3))
    codes, audio = theirs(model, [wav[0, 0], wav[1, 0, :100]])
    tokens = codec.encode(wav, lengths=torch.tensor([700, 100]))
    assert torch.equal(tokens.codes, codes.long()) and codes.shape[-1] == 3
    torch.testing.assert_close(codec.decode(tokens), audio[..., :700], rtol=0, atol=AUDIO_ATOL)
    alone = codec.encode(wav[1:, :, :100])
    assert torch.equal(alone.codes, theirs(model, [wav[1, 0, :100]])[0].long())


def test_training_pass_leaves_the_semantic_model_frozen(release):
    """Codec.forward (the trainer's call): audio of the input's length, gradients for the
    acoustic encoder, adapter, fusion, FSQ projections and decoder, none for w2v-BERT, which
    stays in eval mode (no dropout) when the codec trains."""
    codec = audiotok.load_codec(release[1]).train()
    assert not codec.encoder.semantic.training
    wav = 0.1 * torch.randn(2, 1, 3000)
    out = codec(wav)
    assert out.audio.shape == wav.shape and out.codes.shape == (2, 1, 3000 // HOP + 1)
    out.audio.square().mean().backward()
    assert all(p.grad is None for p in codec.encoder.semantic.parameters())
    for part in (codec.encoder.acoustic, codec.encoder.adapter, codec.encoder.fuse,
                 codec.quantizer.in_proj, codec.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_fixed_filters_and_fsq_round_trip(release, codec):
    """The anti-aliasing filters audiotok derives equal the publisher's buffers bit for bit,
    and the FSQ with X-Codec-2's options decodes its own codes to the training path's z_q."""
    model, _ = release
    theirs_act = model.acoustic_encoder.block[0].res_unit1.snake1
    ours_act = codec.encoder.acoustic.model[1].block[0]
    assert torch.equal(ours_act.upsample.filter, theirs_act.upsample.filter)
    assert torch.equal(ours_act.downsample.filter, theirs_act.downsample.filter)
    z = torch.randn(2, codec.config.latent_dim, 9)
    q = codec.quantizer(z)
    assert torch.equal(codec.quantizer.encode(z), q.codes)
    torch.testing.assert_close(codec.quantizer.decode(q.codes), q.z_q, rtol=0, atol=1e-6)


def test_provenance_token_file_and_reload(codec, tmp_path):
    assert codec.provenance["format"] == "transformers Xcodec2Model"
    assert codec.provenance["matches"].startswith("transformers 5.")
    assert codec.provenance["licence"].startswith("CC-BY-NC-4.0")
    wav = 0.1 * torch.randn(1, 1, 9000)
    tokens = codec.encode(wav)
    tokens.save(tmp_path / "a.atok")
    again = audiotok.Tokens.load(tmp_path / "a.atok")
    assert torch.equal(codec.decode(again), codec.decode(tokens))
    codec.save_pretrained(tmp_path / "converted")  # the w2v-BERT config travels in it
    converted = audiotok.load_codec(tmp_path / "converted")
    assert converted.fingerprint() == codec.fingerprint()
    assert torch.equal(converted.encode(wav).codes, tokens.codes)
    assert torch.equal(converted.decode(again), codec.decode(tokens))


def test_long_files_in_chunks(codec):
    """w2v-BERT's attention and the fbank normalisation see the whole file, so chunks with a
    fixed 1 s context (codecs/chunking.py) give codes near the whole-file ones, not equal;
    files up to `chunk_seconds` (10 s by default) encode in one piece, exactly."""
    wav = 0.1 * torch.randn(1, 1, 4 * 16000, generator=torch.Generator().manual_seed(11))
    whole = codec.encode(wav, chunk_seconds=None)
    assert torch.equal(codec.encode(wav).codes, whole.codes)
    chunked = codec.encode(wav, chunk_seconds=1.0)
    assert chunked.codes.shape == whole.codes.shape == (1, 1, 4 * 16000 // HOP + 1)
    agree = (chunked.codes == whole.codes).float().mean().item()
    assert agree >= 0.5, agree
    audio = codec.decode(whole, chunk_seconds=None)
    pieces = codec.decode(whole, chunk_seconds=1.0)
    assert pieces.shape == audio.shape and torch.isfinite(pieces).all()


def edit_config(src, dst, **changes):
    shutil.copytree(src, dst)
    config = json.loads((src / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_bad_files(release, tmp_path):
    from safetensors.torch import load_file, save_file

    _, hf = release
    cases = {}
    shutil.copytree(hf, tmp_path / "missing")
    weights = tmp_path / "missing" / "model.safetensors"
    state = load_file(str(weights))
    del state["acoustic_decoder.layers.1.self_attn.k_proj.weight"]
    save_file(state, str(weights), metadata={"format": "pt"})
    cases[tmp_path / "missing"] = "lacks weight 'decoder.transformer.layers.1.attn.qkv.weight'"
    shutil.copytree(hf, tmp_path / "trunc")
    weights = tmp_path / "trunc" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cases[tmp_path / "trunc"] = "unreadable safetensors file"
    # a config whose shapes do not fit the weights: the first mismatching weight is named
    edit_config(hf, tmp_path / "wide", encoder_hidden_size=8)
    cases[tmp_path / "wide"] = "weight 'encoder.acoustic.model.5.conv.bias' has shape (8,), " \
                               "the config gives (16,)"
    # settings whose arithmetic audiotok does not reproduce
    edit_config(hf, tmp_path / "gqa", num_key_value_heads=1)
    cases[tmp_path / "gqa"] = "num_key_value_heads=1) is not supported"
    edit_config(hf, tmp_path / "gelu", hidden_act="gelu")
    cases[tmp_path / "gelu"] = "hidden_act='gelu') is not supported"
    # the original release's folder (HKUSTAudio/xcodec2: its own config.json, same model_type)
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "config.json").write_text(json.dumps({
        "model_type": "xcodec2", "semantic_hidden_size": 1024, "codec_encoder_hidden_size":
        1024, "codec_decoder_hidden_size": 1024, "use_vocos": True,
        "architectures": ["XCodec2Model"]}))
    shutil.copy(hf / "model.safetensors", tmp_path / "original")
    cases[tmp_path / "original"] = "HKUSTAudio/xcodec2-hf"
    for path, message in cases.items():
        with pytest.raises(AudiotokError) as err:
            audiotok.load_codec(path)
        text = str(err.value)
        assert message in text and "\n" not in text, (path, text)
        assert path.name in text, (path, text)  # names the folder


def test_cli_encode_decode(release, tmp_path, capsys):
    import soundfile as sf
    from conftest import speechlike

    from audiotok.cli import main

    _, hf = release
    sf.write(str(tmp_path / "a.wav"), speechlike(0.7, 24000, seed=1), 24000)  # resampled
    assert main(["encode", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.atok"),
                 "--codec", str(hf)]) == 0
    assert main(["info", str(hf)]) == 0
    assert "published as    transformers Xcodec2Model" in capsys.readouterr().out
    assert main(["decode", str(tmp_path / "a.atok"), "-o", str(tmp_path / "b.wav")]) == 0
    info = sf.info(str(tmp_path / "b.wav"))
    assert info.samplerate == 16000 and abs(info.duration - 0.7) < 1e-3


def test_short_name_resolves_through_the_hub_cache(release, tmp_path, monkeypatch):
    """xcodec2 is the transformers-format release the transformers docs name, found in a
    Hugging Face cache laid out as the hub library lays it out, with the hub offline."""
    from test_published import fake_hub_cache

    from audiotok.codecs.published.names import NAMES

    model, hf = release
    entry = NAMES["xcodec2"]
    assert (entry.repo, entry.sample_rate, entry.hop_length, entry.codebook_size) == (
        "HKUSTAudio/xcodec2-hf", 16000, HOP, 65536)
    assert entry.kbps == pytest.approx(0.8)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AudiotokError) as err:
        audiotok.load_codec("xcodec2")
    assert entry.repo in str(err.value) and "\n" not in str(err.value)
    fake_hub_cache(tmp_path / "hub", entry.repo, {f: hf / f for f in entry.files})
    wav = 0.1 * torch.randn(1, 1, 8000)
    by_name = audiotok.load_codec("xcodec2")
    assert torch.equal(by_name.encode(wav).codes, theirs(model, [wav[0, 0]])[0].long())


@pytest.mark.slow
def test_fine_tunes_with_the_trainer(release, tmp_path):
    """The acoustic encoder, adapter, fusion, FSQ projections and decoder train; the
    w2v-BERT semantic model stays frozen, as in the publisher's training."""
    from test_published import fine_tune

    _, hf = release
    fine_tune(hf, 16000, tmp_path)
    export = audiotok.load_codec(tmp_path / "run" / "model")
    release_codec = audiotok.load_codec(hf)
    for name, p in export.encoder.semantic.state_dict().items():
        assert torch.equal(p, release_codec.encoder.semantic.state_dict()[name]), name
