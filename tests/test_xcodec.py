"""X-Codec (Ye et al. 2024) in transformers' XcodecModel format, against transformers' own
XcodecModel (5.24) as the reference: the publisher's model is built with random weights at
reduced width (a tiny random HuBERT, or WavLM, with the releases' feature-encoder strides as
its semantic model; the releases' DAC strides, bandwidths and 1024-entry codebooks), saved with
`save_pretrained`, opened with `load_codec`, and compared with what `DacFeatureExtractor` (the
releases' feature extractor) + `XcodecModel.encode/decode` give: identical codes at every
level and position, decoded audio within 1e-4, on lengths that are and are not whole frames,
at lower bandwidths, and on a padded batch of two.
"""

import json
import shutil

import pytest
import torch
from conftest import one_thread_fixture

import audiotok
from audiotok.errors import AudiotokError

transformers = pytest.importorskip("transformers")

# the bar. Both sides run the same float32 operations on the same codes (measured
# difference 0.0 on this machine); a BLAS that orders a sum differently moves each of the
# decoder's ~25 layers by a few ulps of its activations, ~1e-6 of an output of level ~0.3
AUDIO_ATOL = 1e-4
# codes are compared exactly, and `nearest_margin` checks that they can be: every frame's
# nearest codeword is nearer than the second by more than this fraction of |residual|^2 +
# |codeword|^2. Rounding a 48-term float32 dot product moves a distance by ~sqrt(48) ulps,
# ~5e-7 of that scale; latents from a BLAS that sums in another order (relative error ~1e-6)
# by ~2e-6. Measured smallest margins: 5e-5 and more
MIN_MARGIN = 1e-5
HOP = 320
# the releases' feature encoder (conv kernels and strides), narrow, two layers
HUBERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
          "intermediate_size": 64, "conv_dim": [8] * 7}
# the releases' DAC strides, narrow: encoder 4 -> 64 channels, decoder 64 -> 4
ACOUSTIC = {"encoder_hidden_size": 4, "decoder_hidden_size": 64, "hidden_size": 16,
            "downsampling_ratios": [8, 5, 4, 2], "upsampling_ratios": [8, 5, 4, 2]}


# Tiny convolutions over every sample: two threads on a busy 2-core machine spend more
# on synchronisation than they save.
one_thread = one_thread_fixture()


def tiny_config(semantic: str = "hubert"):
    from transformers import HubertConfig, WavLMConfig, XcodecConfig

    kind = {"hubert": HubertConfig, "wavlm": WavLMConfig}[semantic]
    return XcodecConfig(acoustic_model_config=ACOUSTIC,
                        semantic_model_config=kind(**HUBERT).to_dict())


def embeddings(model, input_values):
    """What XcodecModel.encode quantizes, by its own modules (whole frames: its acoustic
    branch takes the waveform unpadded)."""
    semantic = model._extract_semantic_features(input_values)
    e_semantic = model.encoder_semantic(semantic.transpose(1, 2))
    e = torch.cat([model.acoustic_encoder(input_values), e_semantic], 1)
    return model.fc(e.transpose(1, 2)).transpose(1, 2)


def place_codebooks(model, g: torch.Generator) -> None:
    """Each level's codewords become jittered residuals, at that level, of the model's own
    latents of fresh noise, as k-means would place them (its zero-initialised codebooks would
    give every frame code 0; random ones would sit far from the data and every frame would
    take the same one). Fresh noise per level: residuals of the frames the codewords were
    drawn from shrink tenfold per level, and deeper codewords drawn from them would be far
    smaller than any new input's residual, all at near-equal distance from it."""
    books = [layer.codebook for layer in model.quantizer.quantizers]
    for i, book in enumerate(books):
        wav = 0.1 * torch.randn(4, 1, 2 * 16000, generator=g)
        residual = embeddings(model, wav).transpose(1, 2).reshape(-1, model.config.hidden_size)
        for done in books[:i]:
            residual = residual - done.decode(done.encode(residual))
        picks = residual[torch.randint(0, residual.shape[0], (book.embed.shape[0],),
                                       generator=g)]
        book.embed.copy_(picks * (1 + 0.1 * torch.randn(picks.shape, generator=g)))
        book.embed_avg.copy_(book.embed)
        book.cluster_size.fill_(1.0)


def build_release(folder, semantic: str = "hubert"):
    """XcodecModel with every weight moved off its init (Snake's ones, zero biases, the
    semantic model's norms), so that a weight mapped to the wrong place shows, and codebooks
    placed on the data; saved with save_pretrained."""
    from transformers import XcodecModel

    torch.manual_seed(0)
    model = XcodecModel(tiny_config(semantic)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        place_codebooks(model, g)
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(reference model, its transformers folder)."""
    folder = tmp_path_factory.mktemp("xcodec") / "hf"
    return build_release(folder), folder


@pytest.fixture(scope="module")
def codec(release):
    return audiotok.load_codec(release[1])


def features(items: list[torch.Tensor]) -> torch.Tensor:
    """The releases' preprocessing: DacFeatureExtractor with the codec's hop pads every item
    with zeros to whole frames of the longest."""
    from transformers import DacFeatureExtractor

    out = DacFeatureExtractor(sampling_rate=16000, hop_length=HOP)(
        [x.numpy() for x in items], sampling_rate=16000, return_tensors="pt")
    return out["input_values"]


def theirs(model, items: list[torch.Tensor], bandwidth: float | None = None):
    """The publisher's codes [B, K, T'] and audio [B, 1, T' * hop] for 1-D waveforms."""
    with torch.no_grad():
        codes = model.encode(features(items), bandwidth=bandwidth).audio_codes
        return codes, model.decode(codes).audio_values


def nearest_margin(model, input_values) -> float:
    """The smallest gap, over every frame and level, between the nearest and the second
    nearest codeword's squared distance, as a fraction of |residual|^2 + |codeword|^2."""
    with torch.no_grad():
        residual = embeddings(model, input_values).transpose(1, 2).reshape(
            -1, model.config.hidden_size).double()
        worst = float("inf")
        for layer in model.quantizer.quantizers:
            embed = layer.codebook.embed.double()
            dist = torch.cdist(residual, embed).square()
            two = dist.topk(2, largest=False)
            scale = residual.square().sum(1) + embed[two.indices[:, 0]].square().sum(1)
            worst = min(worst, ((two.values[:, 1] - two.values[:, 0]) / scale).min().item())
            residual = residual - embed[two.indices[:, 0]]
    return worst


@pytest.mark.parametrize("samples", [16000, 7301, 3200, 100])  # 3200: whole frames
def test_matches_xcodecmodel(release, codec, samples):
    model, _ = release
    assert (codec.sample_rate, codec.hop_length, codec.codebook_sizes) == (16000, HOP,
                                                                           [1024] * 8)
    g = torch.Generator().manual_seed(samples)
    wav = 0.1 * torch.randn(1, 1, samples, generator=g)
    codes, audio = theirs(model, [wav[0, 0]])
    assert codes.shape == (1, 8, -(-samples // HOP))  # the feature extractor's whole frames
    assert nearest_margin(model, features([wav[0, 0]])) > MIN_MARGIN
    if samples == 16000:  # a test with few codes in use would prove little
        assert all(level.unique().numel() > 25 for level in codes[0])
        assert 0.05 < audio.abs().max() < 2  # speech-like level: the tolerance means what it says
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes)
    ours = codec.decode(tokens)
    assert ours.shape[-1] == samples  # transformers decodes whole frames; audiotok trims
    torch.testing.assert_close(ours, audio[..., :samples], rtol=0, atol=AUDIO_ATOL)


@pytest.mark.parametrize("bandwidth, levels", [(0.5, 1), (1.5, 3), (2.0, 4)])
def test_lower_bandwidths(release, codec, bandwidth, levels):
    """XcodecModel's bandwidths are level counts (0.5 kbps each): `n_codebooks`."""
    model, _ = release
    wav = 0.1 * torch.randn(1, 1, 9000, generator=torch.Generator().manual_seed(7))
    codes, audio = theirs(model, [wav[0, 0]], bandwidth)
    assert codes.shape[1] == levels
    tokens = codec.encode(wav, n_codebooks=levels)
    assert torch.equal(tokens.codes, codes)
    torch.testing.assert_close(codec.decode(tokens), audio[..., :9000], rtol=0,
                               atol=AUDIO_ATOL)


def test_padded_batch(release, codec):
    """A batch as the feature extractor makes it: each item zero-padded to whole frames of the
    longest (the semantic model's GroupNorm sees the padding, as the publisher's does)."""
    model, _ = release
    g = torch.Generator().manual_seed(5)
    long, short = 14000, 5000
    wav = 0.1 * torch.randn(2, 1, long, generator=g)
    wav[1, :, short:] = 0
    codes, audio = theirs(model, [wav[0, 0], wav[1, 0, :short]])
    tokens = codec.encode(wav, lengths=torch.tensor([long, short]))
    assert torch.equal(tokens.codes, codes)
    assert tokens.lengths.tolist() == [-(-long // HOP), -(-short // HOP)]
    ours = codec.decode(tokens)
    torch.testing.assert_close(ours, audio[..., :long], rtol=0, atol=AUDIO_ATOL)


def test_wavlm_semantic_model(tmp_path):
    """The WavLM releases (xcodec-wavlm-*): the same modules with WavLM's hidden states."""
    model = build_release(tmp_path / "hf", "wavlm")
    codec = audiotok.load_codec(tmp_path / "hf")
    assert type(codec.encoder.semantic).__name__ == "WavLMModel"
    wav = 0.1 * torch.randn(1, 1, 7301, generator=torch.Generator().manual_seed(2))
    codes, audio = theirs(model, [wav[0, 0]])
    assert nearest_margin(model, features([wav[0, 0]])) > MIN_MARGIN
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes)
    torch.testing.assert_close(codec.decode(tokens), audio[..., :7301], rtol=0,
                               atol=AUDIO_ATOL)


def test_training_pass_leaves_the_semantic_model_frozen(release):
    """Codec.forward (the trainer's call): audio of the input's length, gradients for the
    acoustic encoder, adapter, fusion and decoder, none for the semantic model, which stays
    in eval mode (no dropout, layer drop or time masking) when the codec trains; the EMA
    codebooks move with the batch."""
    codec = audiotok.load_codec(release[1]).train()
    assert not codec.encoder.semantic.training
    before = codec.quantizer.levels[0].codebook.weight.clone()
    wav = 0.1 * torch.randn(2, 1, 3000)
    out = codec(wav)
    assert out.audio.shape == wav.shape and out.codes.shape == (2, 8, -(-3000 // HOP))
    assert "vq/commit" in out.losses
    out.audio.square().mean().backward()
    assert all(p.grad is None for p in codec.encoder.semantic.parameters())
    for part in (codec.encoder.acoustic, codec.encoder.adapter, codec.encoder.fuse,
                 codec.decoder.fc, codec.decoder.acoustic):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert not torch.equal(codec.quantizer.levels[0].codebook.weight, before)


def test_rvq_round_trip(codec):
    """decode(encode(z)) is the quantizer's z_q in eval (EnCodec's codeword residual)."""
    z = torch.randn(2, codec.config.latent_dim, 9)
    q = codec.quantizer(z)
    assert torch.equal(codec.quantizer.encode(z), q.codes)
    torch.testing.assert_close(codec.quantizer.decode(q.codes), q.z_q, rtol=0, atol=1e-5)


def test_provenance_token_file_and_reload(codec, tmp_path):
    assert codec.provenance["format"] == "transformers XcodecModel"
    assert codec.provenance["matches"].startswith("transformers 5.")
    assert codec.provenance["licence"].startswith("CC-BY-4.0")
    assert codec.provenance["trainable"]
    wav = 0.1 * torch.randn(1, 1, 9000)
    tokens = codec.encode(wav)
    tokens.save(tmp_path / "a.atok")
    again = audiotok.Tokens.load(tmp_path / "a.atok")
    assert torch.equal(codec.decode(again), codec.decode(tokens))
    codec.save_pretrained(tmp_path / "converted")  # the HuBERT config travels in it
    converted = audiotok.load_codec(tmp_path / "converted")
    assert converted.fingerprint() == codec.fingerprint()
    assert torch.equal(converted.encode(wav).codes, tokens.codes)
    assert torch.equal(converted.decode(again), codec.decode(tokens))


def test_long_files_in_chunks(codec):
    """The semantic model's attention and GroupNorm see the whole file, so chunks with a
    fixed 1 s context (codecs/chunking.py) give codes near the whole-file ones, not equal;
    files up to `chunk_seconds` (10 s by default) encode in one piece, exactly. The decoder
    is DAC's, of bounded reach: chunked decoding gives the whole-file audio."""
    wav = 0.1 * torch.randn(1, 1, 4 * 16000, generator=torch.Generator().manual_seed(11))
    whole = codec.encode(wav, chunk_seconds=None)
    assert torch.equal(codec.encode(wav).codes, whole.codes)
    chunked = codec.encode(wav, chunk_seconds=1.0)
    assert chunked.codes.shape == whole.codes.shape == (1, 8, 4 * 16000 // HOP)
    agree = (chunked.codes[:, 0] == whole.codes[:, 0]).float().mean().item()
    assert agree >= 0.5, agree
    audio = codec.decode(whole, chunk_seconds=None)
    torch.testing.assert_close(codec.decode(whole, chunk_seconds=1.0), audio, rtol=0,
                               atol=AUDIO_ATOL)


def edit_config(src, dst, **changes):
    shutil.copytree(src, dst)
    config = json.loads((src / "config.json").read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_bad_files(release, tmp_path):
    from safetensors.torch import load_file, save_file

    _, hf = release
    cases = {}
    shutil.copytree(hf, tmp_path / "missing")
    weights = tmp_path / "missing" / "model.safetensors"
    state = load_file(str(weights))
    del state["acoustic_decoder.block.1.res_unit2.conv1.weight"]
    save_file(state, str(weights), metadata={"format": "pt"})
    cases[tmp_path / "missing"] = "lacks weight 'decoder.acoustic.model.9.block.1.conv.weight'"
    shutil.copytree(hf, tmp_path / "trunc")
    weights = tmp_path / "trunc" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cases[tmp_path / "trunc"] = "unreadable safetensors file"
    # a config whose shapes do not fit the weights: the first mismatching weight is named
    edit_config(hf, tmp_path / "wide", acoustic_model_config={"encoder_hidden_size": 8})
    cases[tmp_path / "wide"] = "weight 'encoder.acoustic.model.5.conv.bias' has shape (8,), " \
                               "the config gives (16,)"
    # settings the publisher's own model cannot run, or audiotok does not reproduce
    edit_config(hf, tmp_path / "strided", strides=[2, 1])
    cases[tmp_path / "strided"] = "strides=[2, 1]) is not supported"
    edit_config(hf, tmp_path / "w2v", semantic_model_config={"model_type": "wav2vec2-bert"})
    cases[tmp_path / "w2v"] = "semantic model_type='wav2vec2-bert'"
    edit_config(hf, tmp_path / "hop",
                semantic_model_config={"conv_stride": [5, 2, 2, 2, 2, 2, 1]})
    cases[tmp_path / "hop"] = "conv_stride=[5, 2, 2, 2, 2, 2, 1] for a hop of 320"
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
                 "--codec", str(hf), "--n-codebooks", "4"]) == 0
    assert main(["info", str(hf)]) == 0
    assert "published as    transformers XcodecModel" in capsys.readouterr().out
    assert main(["decode", str(tmp_path / "a.atok"), "-o", str(tmp_path / "b.wav")]) == 0
    info = sf.info(str(tmp_path / "b.wav"))
    assert info.samplerate == 16000 and abs(info.duration - 0.7) < 1e-3


def test_short_names_resolve_through_the_hub_cache(release, tmp_path, monkeypatch):
    """The X-Codec releases the transformers docs name, found in a Hugging Face cache laid out
    as the hub library lays it out, with the hub offline."""
    from test_published import fake_hub_cache

    from audiotok.codecs.published.names import NAMES

    model, hf = release
    entries = {n: NAMES[n] for n in ("xcodec_hubert_librispeech", "xcodec_wavlm_more_data",
                                     "xcodec_hubert_general_balanced")}
    for name, entry in entries.items():
        assert entry.repo == "hf-audio/" + name.replace("_", "-"), entry
        assert (entry.sample_rate, entry.hop_length, entry.n_codebooks,
                entry.codebook_size) == (16000, HOP, 8, 1024)
        assert entry.kbps == pytest.approx(4.0)
    entry = entries["xcodec_hubert_librispeech"]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AudiotokError) as err:
        audiotok.load_codec("xcodec_hubert_librispeech")
    assert entry.repo in str(err.value) and "\n" not in str(err.value)
    fake_hub_cache(tmp_path / "hub", entry.repo, {f: hf / f for f in entry.files})
    wav = 0.1 * torch.randn(1, 1, 8000)
    by_name = audiotok.load_codec("xcodec_hubert_librispeech")
    assert torch.equal(by_name.encode(wav).codes, theirs(model, [wav[0, 0]])[0])


@pytest.mark.slow
def test_fine_tunes_with_the_trainer(release, tmp_path):
    """The acoustic encoder, adapter, fusion, codebooks and decoder train; the semantic model
    stays frozen, as in the publisher's training."""
    from test_published import fine_tune

    _, hf = release
    fine_tune(hf, 16000, tmp_path)
    export = audiotok.load_codec(tmp_path / "run" / "model")
    release_codec = audiotok.load_codec(hf)
    for name, p in export.encoder.semantic.state_dict().items():
        assert torch.equal(p, release_codec.encoder.semantic.state_dict()[name]), name
