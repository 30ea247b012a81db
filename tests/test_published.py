"""Published codecs in their publishers' own formats: built with random weights by the
publisher's own package, saved as the publisher saves its releases, opened with `load_codec`,
and compared with the publisher's own outputs: identical codes at every level, decoded audio
within 1e-4, on three lengths (one not a multiple of the hop) and a padded batch of two."""

import itertools
from pathlib import Path

import pytest
import torch

import audiotok
from audiotok.errors import AudiotokError

dac = pytest.importorskip("dac", reason="descript-audio-codec is not installed "
                          "(pip install -c constraints.txt -e '.[published]')")

# the released models' strides, codebooks and rates; narrower layers keep the test fast
DAC_RELEASES = {
    "16khz": {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 12,
              "sample_rate": 16000},
    "24khz": {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 32,
              "sample_rate": 24000},
    "44khz": {"encoder_rates": [2, 4, 8, 8], "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9,
              "sample_rate": 44100},
}
# decoded audio: float32 rounding through ~40 layers differs between two implementations
# of the same arithmetic by ~1e-7 of full scale (measured 2.3e-7); 1e-4 is the bar
AUDIO_ATOL = 1e-4


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Snake alphas, biases and weight-norm gains away from their init values, so that a
    weight mapped to the wrong place cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.25 + 1.5 * torch.rand(p.shape, generator=g))
            elif name.endswith(("bias", "weight_g")):
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=g)).add_(
                    0.01 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module", params=sorted(DAC_RELEASES))
def dac_release(request, tmp_path_factory):
    torch.manual_seed(0)
    model = dac.DAC(encoder_dim=16, decoder_dim=128, codebook_size=1024, codebook_dim=8,
                    **DAC_RELEASES[request.param]).eval()
    randomise(model, 1)
    path = tmp_path_factory.mktemp("dac") / f"weights_{request.param}.pth"
    model.save(str(path), package=False)  # how the releases are stored
    return model, path


def their_codes_and_audio(model, wav):
    with torch.no_grad():
        x = model.preprocess(wav, model.sample_rate)
        _, codes, *_ = model.encode(x)
        audio = model.decode(model.quantizer.from_codes(codes)[0])
    return codes, audio


@pytest.mark.parametrize("seconds", [1.0, 0.4567, 0.25])
def test_dac_matches_the_publisher(dac_release, seconds):
    model, path = dac_release
    codec = audiotok.load_codec(path)
    assert (codec.sample_rate, codec.hop_length) == (model.sample_rate, model.hop_length)
    g = torch.Generator().manual_seed(round(seconds * 1000))
    wav = 0.1 * torch.randn(1, 1, round(seconds * model.sample_rate), generator=g)
    codes, audio = their_codes_and_audio(model, wav)
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes)  # every level
    ours = codec.decode(tokens)
    n = audio.shape[-1]
    assert ours.shape[-1] == wav.shape[-1]
    torch.testing.assert_close(ours[..., :min(n, ours.shape[-1])],
                               audio[..., :min(n, ours.shape[-1])], rtol=0, atol=AUDIO_ATOL)
    # DAC's odd-stride releases decode 8 samples short; audiotok pads that tail with silence
    assert not ours[..., n:].any()


def test_dac_padded_batch_and_fewer_levels(dac_release):
    model, path = dac_release
    codec = audiotok.load_codec(path)
    g = torch.Generator().manual_seed(7)
    long, short = round(0.6 * model.sample_rate), round(0.33 * model.sample_rate)
    wav = 0.1 * torch.randn(2, 1, long, generator=g)
    wav[1, :, short:] = 0
    codes, audio = their_codes_and_audio(model, wav)
    tokens = codec.encode(wav, lengths=torch.tensor([long, short]))
    assert torch.equal(tokens.codes, codes)
    ours = codec.decode(tokens)
    n = min(audio.shape[-1], ours.shape[-1])
    torch.testing.assert_close(ours[..., :n], audio[..., :n], rtol=0, atol=AUDIO_ATOL)
    # the first 3 levels alone: DAC's own n_quantizers
    with torch.no_grad():
        _, codes3, *_ = model.encode(model.preprocess(wav, model.sample_rate), n_quantizers=3)
    assert torch.equal(codec.encode(wav, n_codebooks=3).codes, codes3[:, :3])


def test_dac_provenance_survives_save_and_reload(dac_release, tmp_path):
    model, path = dac_release
    codec = audiotok.load_codec(path)
    assert codec.provenance["format"] == "descript-audio-codec .pth"
    assert codec.provenance["matches"].startswith("descript-audio-codec 1.")
    assert len(codec.provenance["sha256"]) == 64
    # the fingerprint (which token files check) hashes the converter's config as written,
    # not every default of today's config classes, so it survives new config fields
    from audiotok.codecs.published.dac import dac_config

    assert codec.config_record == dac_config(torch.load(path, weights_only=True)["metadata"]
                                             ["kwargs"])
    codec.save_pretrained(tmp_path / "converted")
    again = audiotok.load_codec(tmp_path / "converted")
    assert again.provenance == codec.provenance
    assert again.fingerprint() == codec.fingerprint()
    wav = 0.1 * torch.randn(1, 1, model.sample_rate // 2)
    assert torch.equal(again.encode(wav).codes, codec.encode(wav).codes)


@pytest.mark.parametrize("dac_release", ["16khz"], indirect=True)
def test_bad_published_files(tmp_path, dac_release):
    import zipfile

    _, path = dac_release
    data = path.read_bytes()
    cases = {}
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    cases["trunc.pth"] = "not a readable PyTorch checkpoint"
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    cases["other.pth"] = "not a descript-audio-codec checkpoint"

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))
    torch.save({"state_dict": {}, "metadata": {"kwargs": {"encoder_rates": [2]}}, "x": Evil()},
               tmp_path / "evil.pth")
    cases["evil.pth"] = "never runs a pickle's code"
    blob = torch.load(path, weights_only=True)
    blob["metadata"]["kwargs"]["codebook_dim"] = 4  # the config no longer fits the weights
    torch.save(blob, tmp_path / "shapes.pth")
    cases["shapes.pth"] = "weight 'quantizer.levels.0.in_proj.bias' has shape (8,), the config " \
                          "gives (4,)"
    blob = torch.load(path, weights_only=True)
    del blob["state_dict"]["decoder.model.0.bias"]
    torch.save(blob, tmp_path / "missing.pth")
    cases["missing.pth"] = "lacks weight 'decoder.model.0.conv.bias'"
    for name, message in cases.items():
        with pytest.raises(AudiotokError, match=None) as err:
            audiotok.load_codec(tmp_path / name)
        assert message in str(err.value) and "\n" not in str(err.value), (name, err.value)
    assert zipfile.is_zipfile(path)  # the releases are torch's zip format


def same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def fine_tune(path: Path, sample_rate: int, tmp_path: Path) -> None:
    """train.init_from takes the release file: 5 steps on a tiny corpus, export, reload, same
    codes as the export."""
    import soundfile as sf
    import yaml
    from conftest import speechlike

    from audiotok.strict_config import to_dict
    from audiotok.train import read_recipe
    from audiotok.train.trainer import Trainer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        sf.write(str(corpus / f"u{i}.wav"), speechlike(1.0, sample_rate, seed=i), sample_rate)
    codec = audiotok.load_codec(path)
    recipe_path = tmp_path / "published.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "extends": str(Path(__file__).parent.parent / "recipes" / "base.yaml"),
        "model": to_dict(codec.config)}))
    recipe = read_recipe(recipe_path, [
        f"data.train={corpus}", f"train.run_dir={tmp_path / 'run'}", f"train.init_from={path}",
        "train.steps=5", "train.batch_size=2", "train.ckpt_every=5", "train.val_every=0",
        "data.segment_seconds=0.2", "data.num_workers=0", "train.disc_start_step=2",
        "discriminators=[{type: mpd, periods: [2, 3], channels: [4, 8, 8, 8, 8]}]"])
    trainer = Trainer(recipe)
    assert same_parameters(trainer.codec, codec)  # starts from the release
    assert trainer.fit() == 0
    export = audiotok.load_codec(tmp_path / "run" / "model")
    assert not same_parameters(export, codec)  # 5 steps moved the weights
    wav = 0.1 * torch.randn(1, 1, sample_rate // 2)
    assert torch.equal(audiotok.load_codec(tmp_path / "run" / "model").encode(wav).codes,
                       export.encode(wav).codes)


@pytest.mark.slow
@pytest.mark.parametrize("dac_release", ["16khz"], indirect=True)
def test_dac_fine_tunes_with_the_trainer(dac_release, tmp_path):
    model, path = dac_release
    fine_tune(path, model.sample_rate, tmp_path)


# ---------------------------------------------------------------- transformers DacModel
@pytest.fixture(scope="module")
def hf_dac(tmp_path_factory):
    """A DacModel with random weights, saved as the hub's descript/dac_16khz is stored."""
    from transformers import DacConfig, DacModel

    torch.manual_seed(0)
    cfg = DacConfig(encoder_hidden_size=16, downsampling_ratios=[2, 4, 5, 8],
                    decoder_hidden_size=128, upsampling_ratios=[8, 5, 4, 2], n_codebooks=12,
                    codebook_size=1024, codebook_dim=8, sampling_rate=16000, hidden_size=256)
    model = DacModel(cfg).eval()
    randomise(model, 2)
    folder = tmp_path_factory.mktemp("hf") / "dac_16khz"
    model.save_pretrained(folder)
    return model, folder


@pytest.mark.parametrize("seconds", [1.0, 0.4567, 0.25])
def test_transformers_dac_matches_dacmodel(hf_dac, seconds):
    model, folder = hf_dac
    codec = audiotok.load_codec(folder)
    g = torch.Generator().manual_seed(round(seconds * 1000))
    wav = 0.1 * torch.randn(1, 1, round(seconds * 16000), generator=g)
    padded = torch.nn.functional.pad(wav, (0, -wav.shape[-1] % 320))  # as its feature extractor
    with torch.no_grad():
        codes = model.encode(padded).audio_codes
        audio = model.decode(audio_codes=codes).audio_values[:, None]
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes)
    ours = codec.decode(tokens)
    n = min(audio.shape[-1], ours.shape[-1])
    torch.testing.assert_close(ours[..., :n], audio[..., :n], rtol=0, atol=AUDIO_ATOL)


def test_transformers_dac_padded_batch(hf_dac):
    model, folder = hf_dac
    codec = audiotok.load_codec(folder)
    wav = 0.1 * torch.randn(2, 1, 9600, generator=torch.Generator().manual_seed(3))
    wav[1, :, 4000:] = 0
    with torch.no_grad():
        codes = model.encode(wav).audio_codes
    assert torch.equal(codec.encode(wav, lengths=torch.tensor([9600, 4000])).codes, codes)


def fake_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """A Hugging Face cache holding `files` (path in the repository -> source) of `repo`,
    laid out as huggingface_hub lays it out (snapshots/<revision>/..., refs/main)."""
    import shutil

    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("ab" * 20)
    for name, source in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, snapshot / name)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text("ab" * 20)


def test_short_names_resolve_through_the_hub_cache(hf_dac, tmp_path, monkeypatch):
    """dac_16khz is descript/dac_16khz: found in a Hugging Face cache laid out as the hub
    library lays it out, with the hub offline; missing, a one-line error says what to fetch."""
    _, folder = hf_dac
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "descript/dac_16khz", {f: folder / f for f in
                                                 ("config.json", "model.safetensors")})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wav = 0.1 * torch.randn(1, 1, 8000)
    by_name = audiotok.load_codec("dac_16khz")
    assert torch.equal(by_name.encode(wav).codes, audiotok.load_codec(folder).encode(wav).codes)
    assert audiotok.load_codec("descript/dac_16khz").spec == by_name.spec
    with pytest.raises(AudiotokError) as err:
        audiotok.load_codec("dac_24khz")
    text = str(err.value)
    assert "descript/dac_24khz" in text and "config.json, model.safetensors" in text
    assert "offline" in text and "\n" not in text
    with pytest.raises(AudiotokError, match="dac_16khz, dac_24khz, dac_44khz"):
        audiotok.load_codec("dac_48khz")  # unknown short name: the known ones are listed


def test_convert_writes_a_checkpoint_with_provenance(hf_dac, tmp_path, capsys):
    import json

    from audiotok.cli import main

    model, folder = hf_dac
    assert main(["convert", str(folder), "-o", str(tmp_path / "c"), "--dtype", "float16"]) == 0
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    assert meta["provenance"]["format"] == "transformers DacModel"
    assert meta["provenance"]["matches"].startswith("transformers 5.")
    converted = audiotok.load_codec(tmp_path / "c")
    assert converted.provenance == meta["provenance"]
    assert (tmp_path / "c" / "model.safetensors").stat().st_size < 0.6 * sum(
        p.numel() * 4 for p in model.parameters())  # float16
    capsys.readouterr()
    # bad inputs: an existing folder, a recipe (nothing published), an unknown name
    assert main(["convert", str(folder), "-o", str(tmp_path / "c")]) == 1
    assert "exists and is not an empty folder" in capsys.readouterr().err
    recipe = Path(__file__).parent.parent / "recipes" / "designs" / "dac_16k.yaml"
    assert main(["convert", str(recipe), "-o", str(tmp_path / "d")]) == 1
    assert "not a published checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "config.json").write_text('{"model_type": "dac"}')
    assert main(["convert", str(tmp_path / "e"), "-o", str(tmp_path / "f")]) == 1
    assert "no model.safetensors beside config.json" in capsys.readouterr().err


def test_info_list_shows_published_codecs(capsys):
    from audiotok.cli import main

    assert main(["info", "--list"]) == 0
    out = capsys.readouterr().out
    assert "dac_44khz" in out and "86.13" in out and "7.75" in out and "MIT" in out
    assert "audiotok/speech-16k" in out


# ---------------------------------------------------------------- EnCodec
def fill_codebooks(books, latents: torch.Tensor) -> None:
    """EnCodec-style EMA codebooks (EnCodec, transformers, SpeechTokenizer): each level's
    codewords become jittered residuals of `latents` [B, D, T], as k-means would place them
    (random codewords would all sit far from the data and every frame would take the same
    one; the publishers' own 50-iteration k-means would take minutes here)."""
    residual = latents.transpose(1, 2).reshape(-1, latents.shape[1])
    for book in books:
        picks = residual[torch.randint(0, residual.shape[0], (book.embed.shape[0],))]
        book.embed.copy_(picks * (1 + 0.1 * torch.randn_like(picks)))
        book.embed_avg.copy_(book.embed)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
        residual = residual - book.decode(book.encode(residual))


@pytest.fixture(scope="module")
def encodec_release(tmp_path_factory):
    """EncodecModel.encodec_model_24khz with random weights, saved as its releases are (a
    plain state dict, `.th`). Each level's codewords are residual latents of noise, jittered
    (random codewords would all sit far from the data and every frame would take the same
    one; EnCodec's own 50-iteration k-means would take minutes here)."""
    encodec = pytest.importorskip("encodec")
    torch.manual_seed(0)
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.01 * torch.randn_like(p))
        latents = model.encoder(0.1 * torch.randn(4, 1, 24000))
        fill_codebooks([layer._codebook for layer in model.quantizer.vq.layers], latents)
    path = tmp_path_factory.mktemp("encodec") / "encodec_24khz-random.th"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize("seconds", [1.0, 0.7551, 0.29])
@pytest.mark.parametrize("kbps, n_codebooks", [(1.5, 2), (6.0, 8), (24.0, 32)])
def test_encodec_matches_the_publisher(encodec_release, seconds, kbps, n_codebooks):
    model, path = encodec_release
    codec = audiotok.load_codec(path)
    model.set_target_bandwidth(kbps)
    g = torch.Generator().manual_seed(round(seconds * 1e4))
    wav = 0.1 * torch.randn(1, 1, round(seconds * 24000), generator=g)
    with torch.no_grad():
        frames = model.encode(wav)
        audio = model.decode(frames)
    tokens = codec.encode(wav, n_codebooks=n_codebooks)
    assert torch.equal(tokens.codes, frames[0][0])
    ours = codec.decode(tokens)
    assert ours.shape[-1] == wav.shape[-1]  # EnCodec returns whole frames; audiotok trims
    torch.testing.assert_close(ours, audio[..., : wav.shape[-1]], rtol=0, atol=AUDIO_ATOL)


def test_encodec_padded_batch_and_provenance(encodec_release):
    model, path = encodec_release
    codec = audiotok.load_codec(path)
    model.set_target_bandwidth(6.0)
    wav = 0.1 * torch.randn(2, 1, 12000, generator=torch.Generator().manual_seed(5))
    wav[1, :, 5000:] = 0
    with torch.no_grad():
        codes = model.encode(wav)[0][0]
    assert torch.equal(codec.encode(wav, 8, lengths=torch.tensor([12000, 5000])).codes, codes)
    assert codec.provenance["licence"].startswith("CC-BY-NC")
    assert codec.provenance["matches"] == "encodec 0.1.1"


def test_encodec_streams_and_chunks_like_the_publisher(encodec_release):
    """EnCodec 24 kHz is causal: codec.stream() (reflect padding holds back its first frames,
    the LSTMs carry their state) gives the publisher's codes and audio, and long inputs,
    encoded through the stream in chunks, the publisher's codes at every frame."""
    model, path = encodec_release
    codec = audiotok.load_codec(path)
    model.set_target_bandwidth(6.0)
    g = torch.Generator().manual_seed(11)
    wav = 0.1 * torch.randn(2, 1, 320 * 61, generator=g)  # whole frames: see below
    with torch.no_grad():
        codes = model.encode(wav)[0][0]
        audio = model.decode([(codes, None)])
    stream = codec.stream(n_codebooks=8)
    cuts = [0, 1, 700, 4000, 4001, wav.shape[-1]]
    pieces = [stream.encode(wav[..., a:b]) for a, b in itertools.pairwise(cuts)]
    assert torch.equal(torch.cat([*pieces, stream.flush()], -1), codes)
    out = torch.cat([stream.decode(codes[..., i:i + 4]) for i in range(0, 61, 4)]
                    + [stream.end_decode()], -1)
    torch.testing.assert_close(out, audio, rtol=0, atol=AUDIO_ATOL)
    # 0.1 s chunks go through the same stream
    assert torch.equal(codec.encode(wav, n_codebooks=8, chunk_seconds=0.1).codes, codes)
    torch.testing.assert_close(codec.decode(codec.encode(wav, 8), chunk_seconds=0.1), audio,
                               rtol=0, atol=AUDIO_ATOL)
    # not whole frames: EnCodec pads each conv, the stream pads the waveform, so only the
    # last frame can differ
    with torch.no_grad():
        short = model.encode(wav[..., :-77])[0][0]
    chunked = codec.encode(wav[..., :-77], n_codebooks=8, chunk_seconds=0.1).codes
    assert torch.equal(chunked[..., :-1], short[..., :-1])


def test_encodec_bad_files(tmp_path, encodec_release):
    _, path = encodec_release
    state = torch.load(path, weights_only=True)
    state["encoder.model.0.conv.norm.weight"] = state.pop("encoder.model.0.conv.conv.weight_v")
    torch.save(state, tmp_path / "mixed.th")  # 48 kHz norms on 24 kHz weights
    with pytest.raises(AudiotokError, match="no place in the codec|lacks weight"):
        audiotok.load_codec(tmp_path / "mixed.th")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.th")
    with pytest.raises(AudiotokError, match="not an EnCodec checkpoint"):
        audiotok.load_codec(tmp_path / "other.th")
    state = torch.load(path, weights_only=True)
    state["quantizer.vq.layers.3._codebook.embed"] = torch.zeros(1024, 64)
    torch.save(state, tmp_path / "shape.th")
    with pytest.raises(AudiotokError, match=r"weight 'quantizer.levels.3.codebook.weight' has "
                                            r"shape \(1024, 64\), the config gives \(1024, 128\)"):
        audiotok.load_codec(tmp_path / "shape.th")


@pytest.mark.slow
def test_encodec_fine_tunes_with_the_trainer(encodec_release, tmp_path):
    _, path = encodec_release
    fine_tune(path, 24000, tmp_path)


# ---------------------------------------------------------------- transformers EncodecModel
@pytest.fixture(scope="module")
def hf_encodec(tmp_path_factory):
    """EncodecModel (24 kHz defaults) with random weights and residual-latent codebooks (as
    encodec_release), saved as the hub's facebook/encodec_24khz is stored."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.01 * torch.randn_like(p))
        latents = model.encoder(0.1 * torch.randn(4, 1, 24000))
        fill_codebooks([layer.codebook for layer in model.quantizer.layers], latents)
    folder = tmp_path_factory.mktemp("hf") / "encodec_24khz"
    model.save_pretrained(folder)
    return model, folder


@pytest.mark.parametrize("seconds", [1.0, 0.7551, 0.29])
def test_transformers_encodec_matches_encodecmodel(hf_encodec, seconds):
    model, folder = hf_encodec
    codec = audiotok.load_codec(folder)
    g = torch.Generator().manual_seed(round(seconds * 1e4))
    wav = 0.1 * torch.randn(1, 1, round(seconds * 24000), generator=g)
    for kbps, n in ((1.5, 2), (24.0, 32)):
        with torch.no_grad():
            out = model.encode(wav, bandwidth=kbps)
            audio = model.decode(out.audio_codes, out.audio_scales).audio_values
        tokens = codec.encode(wav, n_codebooks=n)
        assert torch.equal(tokens.codes, out.audio_codes[0])
        ours = codec.decode(tokens)
        torch.testing.assert_close(ours, audio[..., : wav.shape[-1]], rtol=0, atol=AUDIO_ATOL)


def test_transformers_encodec_unsupported_layout(hf_encodec, tmp_path):
    import json
    import shutil

    _, folder = hf_encodec
    shutil.copytree(folder, tmp_path / "e48")
    config = json.loads((tmp_path / "e48" / "config.json").read_text())
    config.update(sampling_rate=48000, audio_channels=1)  # neither released layout
    (tmp_path / "e48" / "config.json").write_text(json.dumps(config))
    with pytest.raises(AudiotokError, match="audio_channels=1.*is not supported") as err:
        audiotok.load_codec(tmp_path / "e48")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- EnCodec 48 kHz
def perturb_norms(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.01 * torch.randn_like(p))
            elif ".norm.weight" in name:  # GroupNorm gains away from 1
                p.mul_(1 + 0.2 * torch.rand_like(p))


@pytest.fixture(scope="module")
def encodec48_release(tmp_path_factory):
    """EncodecModel.encodec_model_48khz with random weights (stereo, time-group norm, 1 s
    segments at unit loudness), saved as its `.th` release is."""
    encodec = pytest.importorskip("encodec")
    torch.manual_seed(0)
    model = encodec.EncodecModel.encodec_model_48khz(pretrained=False).eval()
    perturb_norms(model)
    with torch.no_grad():
        latents = model.encoder(torch.randn(2, 2, 48000))
        fill_codebooks([layer._codebook for layer in model.quantizer.vq.layers], latents)
    path = tmp_path_factory.mktemp("encodec48") / "encodec_48khz-random.th"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize("samples", [30000, 48000, 60001])
def test_encodec_48k_matches_the_publisher(encodec48_release, samples):
    """Under one segment, one segment plus its 1% overlap's worth (a second, 480-sample
    segment), and two segments ending mid-frame: the publisher's codes and scales, and its
    cross-faded audio."""
    model, path = encodec48_release
    codec = audiotok.load_codec(path)
    assert (codec.channels, codec.n_codebooks, codec.spec.segment) == (2, 16, (48000, 47520))
    model.set_target_bandwidth(12.0)  # 8 levels
    g = torch.Generator().manual_seed(samples)
    wav = 0.1 * torch.randn(2, 2, samples, generator=g)
    wav[1] *= 3  # another loudness: another scale
    with torch.no_grad():
        frames = model.encode(wav)
        audio = model.decode(frames)[..., :samples]
    tokens = codec.encode(wav, n_codebooks=8)
    assert torch.equal(tokens.codes, torch.cat([c for c, _ in frames], -1))
    assert torch.equal(tokens.scales, torch.cat([s for _, s in frames], -1))
    assert tokens.lengths.tolist() == [tokens.codes.shape[-1]] * 2
    torch.testing.assert_close(codec.decode(tokens), audio, rtol=0, atol=AUDIO_ATOL)


def test_encodec_48k_token_files_and_cli(encodec48_release, tmp_path, capsys):
    import dataclasses

    import soundfile as sf

    from audiotok.cli import main
    from audiotok.errors import TokenFileError

    _, path = encodec48_release
    codec = audiotok.load_codec(path)
    wav = 0.2 * torch.randn(1, 2, 50000, generator=torch.Generator().manual_seed(2))
    tokens = codec.encode(wav, n_codebooks=4)
    tokens.save(tmp_path / "a.atok")
    again = audiotok.Tokens.load(tmp_path / "a.atok")
    assert torch.equal(again.scales, tokens.scales) and torch.equal(again.codes, tokens.codes)
    assert torch.equal(codec.decode(again), codec.decode(tokens))
    # codes without scales (an LM's output) decode at unit loudness
    plain = codec.decode(dataclasses.replace(tokens, scales=None))
    assert torch.isfinite(plain).all() and not torch.equal(plain, codec.decode(tokens))
    with pytest.raises(TokenFileError, match="'scales' must be"):
        dataclasses.replace(tokens, scales=-tokens.scales).save(tmp_path / "bad.atok")
    # the command line, on a stereo 48 kHz file
    sf.write(str(tmp_path / "s.wav"), wav[0].T.numpy(), 48000)
    assert main(["encode", str(tmp_path / "s.wav"), "-o", str(tmp_path / "s.atok"),
                 "--codec", str(path), "--n-codebooks", "4"]) == 0
    assert torch.equal(audiotok.Tokens.load(tmp_path / "s.atok").codes,
                       codec.encode(torch.from_numpy(sf.read(str(tmp_path / "s.wav"),
                                                             dtype="float32")[0].T[None]),
                                    n_codebooks=4).codes)
    assert main(["decode", str(tmp_path / "s.atok"), "-o", str(tmp_path / "out.wav"),
                 "--codec", str(path)]) == 0
    out, rate = sf.read(str(tmp_path / "out.wav"))
    assert rate == 48000 and out.shape == (50000, 2)


def test_transformers_encodec_48k_matches_encodecmodel(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig(
        sampling_rate=48000, audio_channels=2, normalize=True, chunk_length_s=1.0,
        overlap=0.01, norm_type="time_group_norm", use_causal_conv=False,
        target_bandwidths=[3.0, 6.0, 12.0, 24.0])).eval()
    perturb_norms(model)
    with torch.no_grad():
        latents = model.encoder(torch.randn(2, 2, 48000))
        fill_codebooks([layer.codebook for layer in model.quantizer.layers], latents)
    model.save_pretrained(tmp_path / "e48")
    codec = audiotok.load_codec(tmp_path / "e48")
    wav = 0.1 * torch.randn(1, 2, 60001, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = model.encode(wav, bandwidth=24.0)
        audio = model.decode(out.audio_codes, out.audio_scales,
                             last_frame_pad_length=out.last_frame_pad_length).audio_values
    codes = torch.cat(out.audio_codes.unbind(0), -1)[..., :-out.last_frame_pad_length]
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes)
    torch.testing.assert_close(codec.decode(tokens), audio[..., :wav.shape[-1]], rtol=0,
                               atol=AUDIO_ATOL)


# ---------------------------------------------------------------- SpeechTokenizer
ST_CONFIG = {  # the release's config.json, with narrower layers to keep the test fast
    "resblock": "1", "n_filters": 32, "strides": [8, 5, 4, 2], "dimension": 256,
    "semantic_dimension": 768, "bidirectional": True, "dilation_base": 2,
    "residual_kernel_size": 3, "n_residual_layers": 1, "lstm_layers": 2, "activation": "ELU",
    "codebook_size": 1024, "n_q": 8, "sample_rate": 16000}


@pytest.fixture(scope="module")
def speechtokenizer_release(tmp_path_factory):
    """SpeechTokenizer with random weights and residual-latent codebooks (as
    encodec_release), saved as its release is: config.json + a state dict .pt."""
    import json

    st = pytest.importorskip("speechtokenizer")
    torch.manual_seed(0)
    model = st.SpeechTokenizer(ST_CONFIG).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.01 * torch.randn_like(p))
        latents = model.encoder(0.1 * torch.randn(4, 1, 16000))
        fill_codebooks([layer._codebook for layer in model.quantizer.vq.layers], latents)
    folder = tmp_path_factory.mktemp("speechtokenizer")
    (folder / "config.json").write_text(json.dumps(ST_CONFIG))
    torch.save(model.state_dict(), folder / "SpeechTokenizer.pt")
    return model, folder


@pytest.mark.parametrize("seconds", [1.0, 0.7716, 0.3])
def test_speechtokenizer_matches_the_publisher(speechtokenizer_release, seconds):
    model, folder = speechtokenizer_release
    g = torch.Generator().manual_seed(round(seconds * 1e4))
    wav = 0.1 * torch.randn(1, 1, round(seconds * 16000), generator=g)
    with torch.no_grad():
        codes = model.encode(wav)  # [n_q, B, T]
        audio = model.decode(codes)
    for ref in (folder, folder / "SpeechTokenizer.pt"):  # the folder or the checkpoint
        codec = audiotok.load_codec(ref)
        tokens = codec.encode(wav)
        assert torch.equal(tokens.codes, codes.transpose(0, 1))
        ours = codec.decode(tokens)
        torch.testing.assert_close(ours, audio[..., : wav.shape[-1]], rtol=0, atol=AUDIO_ATOL)
    # level 0 alone: the content (HuBERT-distilled) tokens, as SpeechTokenizer gives them
    assert torch.equal(codec.encode(wav, n_codebooks=1).codes[:, 0], codes[0])


def test_speechtokenizer_padded_batch_and_bad_files(speechtokenizer_release, tmp_path):
    import json
    import shutil

    model, folder = speechtokenizer_release
    codec = audiotok.load_codec(folder)
    wav = 0.1 * torch.randn(2, 1, 9600, generator=torch.Generator().manual_seed(9))
    wav[1, :, 3000:] = 0
    with torch.no_grad():
        codes = model.encode(wav)
    assert torch.equal(codec.encode(wav, lengths=torch.tensor([9600, 3000])).codes,
                       codes.transpose(0, 1))
    shutil.copytree(folder, tmp_path / "two")
    shutil.copy(folder / "SpeechTokenizer.pt", tmp_path / "two" / "other.pt")
    with pytest.raises(AudiotokError, match="expected one SpeechTokenizer checkpoint"):
        audiotok.load_codec(tmp_path / "two")
    shutil.copytree(folder, tmp_path / "wide")
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "wide" / "config.json").write_text(json.dumps({**config, "dimension": 512}))
    with pytest.raises(AudiotokError, match="has shape .* the config gives"):
        audiotok.load_codec(tmp_path / "wide")


@pytest.mark.slow
def test_speechtokenizer_fine_tunes_with_the_trainer(speechtokenizer_release, tmp_path):
    _, folder = speechtokenizer_release
    fine_tune(folder / "SpeechTokenizer.pt", 16000, tmp_path)


def test_a_published_codec_goes_through_every_command(encodec_release, tmp_path, capsys):
    """encode, info, decode, tokenize, detokenize and eval take the release file as --codec;
    token files record it, so decode finds it again."""
    import json

    import soundfile as sf
    from conftest import speechlike

    from audiotok.cli import main

    _, path = encodec_release
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        sf.write(str(clips / f"c{i}.wav"), speechlike(0.8 + 0.3 * i, 16000, seed=i), 16000)
    a = clips / "c0.wav"
    assert main(["encode", str(a), "-o", str(tmp_path / "a.atok"), "--codec", str(path),
                 "--n-codebooks", "8"]) == 0
    assert main(["info", str(tmp_path / "a.atok")]) == 0
    out = capsys.readouterr()
    assert "6.000 kbps" in out.out and "untrained" not in out.err
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "published as    EnCodec .th" in out and "licence         CC-BY-NC 4.0" in out
    from audiotok.codecs.loading import is_untrained

    assert not is_untrained(audiotok.load_codec(path))  # no "untrained" note in CLI or demo
    assert main(["decode", str(tmp_path / "a.atok"), "-o", str(tmp_path / "a.wav")]) == 0
    assert sf.info(str(tmp_path / "a.wav")).samplerate == 24000
    assert main(["tokenize", str(clips), "-o", str(tmp_path / "tok"), "--codec", str(path),
                 "--n-codebooks", "4", "--format", "npy", "--no-progress"]) == 0
    index = json.loads((tmp_path / "tok" / "index.json").read_text())
    assert index["records"] == 2 and index["codec_ref"] == str(path.resolve())
    assert main(["detokenize", str(tmp_path / "tok"), "-o", str(tmp_path / "wavs")]) == 0
    assert main(["eval", "--codec", str(path), "--data", str(clips), "--n-codebooks", "8",
                 "-o", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [row["kbps"] for row in report["pooled"]] == [6.0]


def test_speechtokenizer_by_short_name(speechtokenizer_release, tmp_path, monkeypatch):
    """`speechtokenizer` is fnlp/SpeechTokenizer's speechtokenizer_hubert_avg/ subfolder."""
    model, folder = speechtokenizer_release
    fake_hub_cache(tmp_path / "hub", "fnlp/SpeechTokenizer", {
        f"speechtokenizer_hubert_avg/{f}": folder / f
        for f in ("config.json", "SpeechTokenizer.pt")})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wav = 0.1 * torch.randn(1, 1, 8000)
    with torch.no_grad():
        codes = model.encode(wav)
    assert torch.equal(audiotok.load_codec("speechtokenizer").encode(wav).codes,
                       codes.transpose(0, 1))
