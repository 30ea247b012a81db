"""SNAC (hubertsiuzdak/snac_*) in its release format: built with random weights by the `snac`
package, saved as its releases are (config.json + pytorch_model.bin), opened with
`load_codec`, and compared with the package's own outputs: identical codes at every level,
decoded audio within 1e-4 given the same torch seed (SNAC's decoder draws noise), on three
lengths (one not a multiple of the hop) and a padded batch of two."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import audiotok
from audiotok.errors import AudiotokError, TokenFileError
from audiotok.tokens import Tokens


def snac_package():
    """The publisher's package; the tests that need it skip without it (the multi-scale RVQ
    in training runs either way)."""
    return pytest.importorskip("snac", reason="snac is not installed "
                               "(pip install -c constraints.txt -e '.[published]')")


# the released configs (the hub's config.json) with narrower layers to keep the test fast:
# encoder_dim 4 (48 / 64 released) still gives 64-channel latents, one attention head of
# SNAC's 64 channels; 32 kHz has two heads in both attention layers
RELEASES = {
    "24khz": {"sampling_rate": 24000, "encoder_dim": 4, "encoder_rates": [2, 4, 8, 8],
              "decoder_dim": 64, "decoder_rates": [8, 8, 4, 2], "attn_window_size": None,
              "codebook_size": 4096, "codebook_dim": 8, "vq_strides": [4, 2, 1],
              "noise": True, "depthwise": True},
    "32khz": {"sampling_rate": 32000, "encoder_dim": 8, "encoder_rates": [2, 3, 8, 8],
              "decoder_dim": 128, "decoder_rates": [8, 8, 3, 2], "attn_window_size": 32,
              "codebook_size": 4096, "codebook_dim": 8, "vq_strides": [8, 4, 2, 1],
              "noise": True, "depthwise": True},
    "44khz": {"sampling_rate": 44100, "encoder_dim": 4, "encoder_rates": [2, 3, 8, 8],
              "decoder_dim": 64, "decoder_rates": [8, 8, 3, 2], "attn_window_size": 32,
              "codebook_size": 4096, "codebook_dim": 8, "vq_strides": [8, 4, 2, 1],
              "noise": True, "depthwise": True},
}
AUDIO_ATOL = 1e-4  # the bar (measured: 0.0, the same arithmetic in the same order)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Snake alphas, biases, norm and weight-norm gains away from their init values, so that
    a weight mapped to the wrong place cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.25 + 1.5 * torch.rand(p.shape, generator=g))
            elif name.endswith(("bias", "original0", "norm.weight")):
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=g)).add_(
                    0.01 * torch.randn(p.shape, generator=g))


def save_release(model, config: dict, folder: Path) -> Path:
    """As the hub's hubertsiuzdak/snac_* hold it (what SNAC.from_pretrained reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release(request, tmp_path_factory):
    torch.manual_seed(0)
    model = snac_package().SNAC(**RELEASES[request.param]).eval()
    randomise(model, 1)
    folder = save_release(model, RELEASES[request.param],
                          tmp_path_factory.mktemp("snac") / f"snac_{request.param}")
    return model, folder


def theirs(model, wav, seed: int = 0):
    """SNAC's codes (list of [B, T_k]) and its decode under torch seed `seed`."""
    with torch.no_grad():
        codes = model.encode(model.preprocess(wav))
        torch.manual_seed(seed)
        audio = model.decode(codes)
    return codes, audio


def ours_decoded(codec, tokens, seed: int = 0):
    torch.manual_seed(seed)
    return codec.decode(tokens)


@pytest.mark.parametrize("seconds", [1.0, 0.4567, 0.25])
def test_snac_matches_the_publisher(release, seconds):
    model, folder = release
    codec = audiotok.load_codec(folder)
    assert (codec.sample_rate, codec.hop_length) == (model.sampling_rate, model.hop_length)
    g = torch.Generator().manual_seed(round(seconds * 1000))
    wav = 0.1 * torch.randn(1, 1, round(seconds * model.sampling_rate), generator=g)
    codes, audio = theirs(model, wav)
    tokens = codec.encode(wav)
    levels = tokens.level_codes()
    assert len(levels) == len(codes)
    for ours, ref in zip(levels, codes):  # every level, at its own rate
        assert torch.equal(ours, ref)
    assert len(codes[-1].unique()) > 1  # the test means something: codes vary
    # the one-rate layout: coarse levels repeat each code `stride` times
    for k, s in enumerate(model.vq_strides):
        assert torch.equal(tokens.codes[:, k], codes[k].repeat_interleave(s, -1))
    decoded = ours_decoded(codec, tokens)
    assert decoded.shape[-1] == wav.shape[-1]
    torch.testing.assert_close(decoded, audio[..., :wav.shape[-1]], rtol=0, atol=AUDIO_ATOL)


def test_snac_padded_batch_and_fewer_levels(release):
    model, folder = release
    codec = audiotok.load_codec(folder)
    sr = model.sampling_rate
    long, short = round(0.6 * sr), round(0.33 * sr)
    wav = 0.1 * torch.randn(2, 1, long, generator=torch.Generator().manual_seed(7))
    wav[1, :, short:] = 0
    codes, audio = theirs(model, wav, seed=3)
    tokens = codec.encode(wav, lengths=torch.tensor([long, short]))
    assert all(torch.equal(a, b) for a, b in zip(tokens.level_codes(), codes))
    assert tokens.lengths.tolist() == [-(-long // codec.hop_length), -(-short // codec.hop_length)]
    torch.testing.assert_close(ours_decoded(codec, tokens, seed=3), audio[..., :long], rtol=0,
                               atol=AUDIO_ATOL)
    # the coarsest levels alone (SNAC's residual chain: the same first codes)
    two = codec.encode(wav, n_codebooks=2)
    assert all(torch.equal(a, b) for a, b in zip(two.level_codes(), codes[:2]))
    assert codec.decode(two).shape == (2, 1, long)


@pytest.mark.parametrize("release", ["24khz"], indirect=True)
def test_snac_bitrate_tokens_and_token_files(release, tmp_path):
    _, folder = release
    codec = audiotok.load_codec(folder)
    # 46.875 Hz frames; levels at 1/4, 1/2, 1 of it; 12 bits a code: the release's 0.98 kbps
    assert codec.spec.level_strides == (4, 2, 1)
    assert codec.bitrate() == pytest.approx(984.375)
    assert codec.bitrate(1) == pytest.approx(46.875 / 4 * 12)
    wav = 0.1 * torch.randn(1, 1, 30000, generator=torch.Generator().manual_seed(2))
    tokens = codec.encode(wav)
    assert tokens.tokens_per_second == pytest.approx(46.875 * 1.75)
    tokens.save(tmp_path / "a.atok")
    back = Tokens.load(tmp_path / "a.atok")
    assert back.spec == tokens.spec and torch.equal(back.codes, tokens.codes)
    assert torch.equal(ours_decoded(codec, back), ours_decoded(codec, tokens))
    # SNAC's noise blocks: decoding is stochastic, repeatable by seeding torch
    assert not torch.equal(ours_decoded(codec, tokens, seed=1), ours_decoded(codec, tokens))
    # tokens of a codec with other level strides are refused
    from dataclasses import replace

    other = replace(tokens, spec=replace(tokens.spec, level_strides=(2, 2, 1)))
    with pytest.raises(TokenFileError, match="not by this codec"):
        codec.decode(other)
    # codes cut to the valid frames (as an LM might keep them) still decode, to full length
    cut = replace(tokens, codes=tokens.codes[..., : int(tokens.lengths[0])])
    assert codec.decode(cut).shape == (1, 1, 30000)


@pytest.mark.parametrize("release", ["24khz", "32khz"], indirect=True)
def test_snac_chunked_encoding_is_exact(release):
    """Chunks cut at whole groups (coarsest stride, attention window) with the encoder's
    receptive field as context give the codes of one whole-signal encode."""
    model, folder = release
    codec = audiotok.load_codec(folder)
    wav = 0.1 * torch.randn(1, 1, round(3.1 * model.sampling_rate),
                            generator=torch.Generator().manual_seed(4))
    whole = codec.encode(wav, chunk_seconds=None)
    chunked = codec.encode(wav, chunk_seconds=0.5)
    assert torch.equal(chunked.codes, whole.codes)
    codes, _ = theirs(model, wav)
    assert all(torch.equal(a, b) for a, b in zip(whole.level_codes(), codes))


def test_snac_chunked_decoding_without_noise_is_exact(tmp_path):
    """The decoder's reach (attention windows included) is stated right: with the noise
    blocks off, decoding chunk by chunk gives the whole decode (with them on, every chunk
    draws its own noise)."""
    config = {**RELEASES["32khz"], "noise": False}
    torch.manual_seed(0)
    quiet = snac_package().SNAC(**config).eval()
    randomise(quiet, 1)
    codec = audiotok.load_codec(save_release(quiet, config, tmp_path / "quiet"))
    wav = 0.1 * torch.randn(1, 1, 2 * 32000, generator=torch.Generator().manual_seed(6))
    tokens = codec.encode(wav)
    whole = codec.decode(tokens, chunk_seconds=None)
    torch.testing.assert_close(codec.decode(tokens, chunk_seconds=0.5), whole, rtol=0,
                               atol=1e-5)
    _, audio = theirs(quiet, wav)
    torch.testing.assert_close(whole, audio[..., :wav.shape[-1]], rtol=0, atol=AUDIO_ATOL)


@pytest.mark.parametrize("release", ["24khz"], indirect=True)
def test_snac_provenance_and_save_reload(release, tmp_path):
    _, folder = release
    codec = audiotok.load_codec(folder)
    p = codec.provenance
    assert p["format"] == "SNAC config.json + pytorch_model.bin"
    assert p["licence"] == "MIT (snac)" and p["matches"] == f"snac {snac_package().__version__}"
    assert codec.config_record["quantizer"]["type"] == "msrvq"
    # the weights file alone works too (config.json beside it)
    assert audiotok.load_codec(folder / "pytorch_model.bin").fingerprint() == codec.fingerprint()
    codec.save_pretrained(tmp_path / "converted")
    again = audiotok.load_codec(tmp_path / "converted")
    assert again.provenance == p and again.fingerprint() == codec.fingerprint()
    wav = 0.1 * torch.randn(1, 1, 12000)
    assert torch.equal(again.encode(wav).codes, codec.encode(wav).codes)


@pytest.mark.parametrize("release", ["24khz"], indirect=True)
def test_snac_bad_files(release, tmp_path):
    _, folder = release

    def variant(name: str, config: dict | None = None, weights: bytes | None = None,
                state: dict | None = None) -> Path:
        d = tmp_path / name
        shutil.copytree(folder, d)
        if config is not None:
            (d / "config.json").write_text(json.dumps(config))
        if weights is not None:
            (d / "pytorch_model.bin").write_bytes(weights)
        if state is not None:
            torch.save(state, d / "pytorch_model.bin")
        return d

    config = json.loads((folder / "config.json").read_text())
    data = (folder / "pytorch_model.bin").read_bytes()
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    missing = variant("missing")
    (missing / "pytorch_model.bin").unlink()
    cases = {
        missing: "no pytorch_model.bin beside config.json",
        variant("trunc", weights=data[: len(data) // 2]): "not a readable PyTorch checkpoint",
        variant("shapes", config={**config, "codebook_dim": 4}):
            "weight 'quantizer.levels.0.in_proj.bias' has shape (8,), the config gives (4,)",
        variant("lacks", state={k: v for k, v in state.items()
                                if k != "decoder.model.0.bias"}):
            "lacks weight 'decoder.model.0.conv.bias'",
        variant("other", state={"weights": torch.zeros(3)}): "not a SNAC state dict",
        variant("unknown", config={**config, "n_mels": 80}): "unknown SNAC config key 'n_mels'",
        variant("latent", config={**config, "latent_dim": 100}): "latent_dim 100 differs",
    }
    for path, message in cases.items():
        with pytest.raises(AudiotokError) as err:
            audiotok.load_codec(path)
        text = str(err.value)
        assert message in text and "\n" not in text, (path.name, text)
        assert path.name in text  # names the file (or folder) at fault


def test_snac_trains_like_any_codec():
    """The multi-scale RVQ in training: losses, straight-through gradients into the encoder,
    quantizer dropout, and decode(encode(z)) == forward(z).z_q in eval."""
    from audiotok.codecs.base import Codec
    from audiotok.codecs.published.snac import snac_config

    torch.manual_seed(0)
    config = snac_config(Path("x"), {**RELEASES["32khz"], "sampling_rate": 16000})
    config["quantizer"].update(codebook_size=64, quantizer_dropout=0.5)
    codec = Codec.from_config(config).train()
    wav = 0.1 * torch.randn(2, 1, 5000)
    out = codec(wav)
    assert out.audio.shape == wav.shape and out.codes.shape[:2] == (2, 4)
    assert {"vq/commit", "vq/codebook"} <= set(out.losses)
    (out.audio.pow(2).mean() + sum(out.losses.values())).backward()
    assert codec.encoder.model[0].conv.parametrizations.weight.original1.grad.abs().sum() > 0
    assert codec.quantizer.levels[0].codebook.weight.grad.abs().sum() > 0
    q = codec.quantizer.eval()
    z = torch.randn(2, codec.config.latent_dim, 32)
    with torch.no_grad():
        torch.testing.assert_close(q.decode(q.encode(z)), q(z).z_q, rtol=0, atol=1e-5)
        codes = q.encode(z)
    for k, s in enumerate(q.level_strides):  # coarse levels are constant over their runs
        runs = codes[:, k].reshape(2, -1, s)
        assert torch.equal(runs, runs[..., :1].expand_as(runs))


@pytest.mark.parametrize("release", ["24khz"], indirect=True)
def test_snac_through_the_cli_and_by_short_name(release, tmp_path, capsys, monkeypatch):
    import soundfile as sf
    from conftest import speechlike

    from audiotok.cli import main

    _, folder = release
    sf.write(str(tmp_path / "a.wav"), speechlike(0.9, 24000), 24000)
    assert main(["encode", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.atok"),
                 "--codec", str(folder)]) == 0
    assert main(["info", str(tmp_path / "a.atok")]) == 0
    out = capsys.readouterr().out
    assert "0.984 kbps" in out and "tokens/second   82.0312" in out
    assert main(["decode", str(tmp_path / "a.atok"), "-o", str(tmp_path / "b.wav")]) == 0
    info = sf.info(str(tmp_path / "b.wav"))
    assert (info.samplerate, info.frames) == (24000, round(0.9 * 24000))
    assert main(["tokenize", str(tmp_path), "-o", str(tmp_path / "tok"), "--codec", str(folder),
                 "--format", "npy", "--no-progress"]) == 0
    assert main(["detokenize", str(tmp_path / "tok"), "-o", str(tmp_path / "wavs")]) == 0
    again = sf.read(str(next((tmp_path / "wavs").glob("*.wav"))))[0]
    assert again.shape == (round(0.9 * 24000),)
    assert main(["info", "--list"]) == 0
    assert "snac_24khz" in capsys.readouterr().out
    # snac_24khz = hubertsiuzdak/snac_24khz, from a Hugging Face cache laid out as the hub
    # library lays it out, offline
    root = tmp_path / "hub" / "models--hubertsiuzdak--snac_24khz"
    snapshot = root / "snapshots" / ("ab" * 20)
    shutil.copytree(folder, snapshot)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("ab" * 20)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert audiotok.load_codec("snac_24khz").fingerprint() == \
        audiotok.load_codec(folder).fingerprint()
    with pytest.raises(AudiotokError, match="hubertsiuzdak/snac_32khz.*pytorch_model.bin"):
        audiotok.load_codec("snac_32khz")


@pytest.mark.parametrize("release", ["24khz"], indirect=True)
def test_snac_corpus_tokenizer_batches_exactly(release):
    """The corpus tokenizer's batched encode gives each item the codes it has alone (items
    batch only with items of as many padded groups of frames)."""
    from audiotok.tokenize.batching import encode_exact

    _, folder = release
    codec = audiotok.load_codec(folder)
    g = torch.Generator().manual_seed(8)
    # 2048-sample groups: the first two share a padded length, the third does not
    wavs = [0.1 * torch.randn(1, n, generator=g) for n in (4500, 5000, 9000)]
    for wav, codes in zip(wavs, encode_exact(codec, wavs, None, None)):
        assert torch.equal(codes, codec.encode(wav[None]).codes[0])


@pytest.mark.slow
@pytest.mark.parametrize("release", ["24khz"], indirect=True)
def test_snac_fine_tunes_with_the_trainer(release, tmp_path):
    from test_published import fine_tune

    model, folder = release
    fine_tune(folder, model.sampling_rate, tmp_path)
