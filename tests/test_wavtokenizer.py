"""WavTokenizer (Ji et al. 2024) in its two published formats, against transformers'
WavTokenizerModel (5.24) as the reference: identical codes, decoded audio within 1e-4, on
three lengths (one not a multiple of the hop) and a padded batch of two, for the 75 and 40
tokens/s layouts (hop 320 and 600).

The transformers folder is what `WavTokenizerModel.save_pretrained` writes. The Lightning
`.ckpt` is made from the same random model by renaming its weights back to the names of
WavTokenizer's own code (jishengpeng/WavTokenizer: `feature_extractor.encodec.encoder.model.N`
with EnCodec's `conv.conv.weight_g/_v`, `feature_extractor.encodec.quantizer.vq.layers.0.
_codebook`, `backbone.*`, `head.out`), the inverse of the key mapping a conversion to
transformers applies, next to the training-only weights and Lightning bookkeeping a release
holds; the YAML has the released configs' layout with narrower layers. transformers carries
no conversion script for WavTokenizer, so the names come from the original modules.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import audiotok
from audiotok.errors import AudiotokError

transformers = pytest.importorskip("transformers")

AUDIO_ATOL = 1e-4  # the bar; measured differences are ~1e-7 (float32 rounding)
# the releases' strides (the YAML's `dowmsamples`, the decoder's order) and sizes; narrower
# layers keep the test fast
RELEASES = {"75": [8, 5, 4, 2], "40": [6, 5, 5, 4]}
# (32 GroupNorm groups and 4 AdaLayerNorm rows are constants of WavTokenizer's code, not YAML
# fields; the encoder width is read from the weights)
TINY = {"num_filters": 8, "hidden_size": 32, "codebook_size": 64, "codebook_dim": 32,
        "decoder_hidden_size": 32, "decoder_intermediate_size": 64, "decoder_num_layers": 2,
        "decoder_attention_num_groups": 32, "adanorm_num_embeddings": 4}


def randomise(model: torch.nn.Module) -> None:
    """Every weight moved off its init (AdaLayerNorm rows, GroupNorm affine, layer scales)
    so that a weight mapped to the wrong place, or the wrong condition row, shows; the
    codebook becomes jittered latents of noise, as k-means would place it (codewords far from
    the data would give every frame the same code)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        latents = model.encoder_model.encoder(0.1 * torch.randn(2, 1, 24000))
        x = latents.transpose(1, 2).reshape(-1, latents.shape[1])
        book = model.encoder_model.quantizer.codebook
        picks = x[torch.randint(0, x.shape[0], (book.embed.shape[0],))]
        book.embed.copy_(picks + 0.05 * x.std(0) * torch.randn_like(picks))
        book.embed_avg.copy_(book.embed)
        book.cluster_size.uniform_(0.5, 3.0)


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release(request, tmp_path_factory):
    """(reference model, transformers folder, folder with the .ckpt + YAML) of one layout."""
    from transformers import WavTokenizerConfig, WavTokenizerModel

    torch.manual_seed(0)
    model = WavTokenizerModel(WavTokenizerConfig(upsampling_ratios=RELEASES[request.param],
                                                 **TINY)).eval()
    randomise(model)
    root = tmp_path_factory.mktemp(f"wavtokenizer{request.param}")
    model.save_pretrained(root / "hf")
    write_release(model, root / "ckpt", request.param)
    return model, root / "hf", root / "ckpt"


def original_names(state: dict) -> dict:
    """transformers' WavTokenizerModel names -> WavTokenizer's own (see the docstring)."""
    out = {}
    for key, value in state.items():
        name = key.replace("encoder_model.encoder.layers.", "feature_extractor.encodec.encoder."
                                                           "model.")
        name = re.sub(r"\.conv\.parametrizations\.weight\.original0$", ".conv.conv.weight_g",
                      name)
        name = re.sub(r"\.conv\.parametrizations\.weight\.original1$", ".conv.conv.weight_v",
                      name)
        name = re.sub(r"^(feature_extractor.*)\.conv\.bias$", r"\1.conv.conv.bias", name)
        name = name.replace("encoder_model.quantizer.codebook.",
                            "feature_extractor.encodec.quantizer.vq.layers.0._codebook.")
        out[name.replace("head.linear.", "head.out.")] = value
    return out


def release_yaml(config) -> dict:
    """configs/wavtokenizer_smalldata_frame{40,75}_3s_nq1_code4096_dim512_kmeans200_attn.yaml
    of jishengpeng/WavTokenizer (the training YAML), with the sizes of transformers' `config`."""
    hop = config.hop_length
    return {"seed_everything": 3407, "model": {
        "class_path": "decoder.experiment.WavTokenizer",
        "init_args": {
            "sample_rate": 24000, "initial_learning_rate": 2e-4, "mel_loss_coeff": 45,
            "feature_extractor": {"class_path": "decoder.feature_extractors.EncodecFeatures",
                                  "init_args": {"encodec_model": "encodec_24khz",
                                                "bandwidths": [6.6] * 4,
                                                "train_codebooks": True, "num_quantizers": 1,
                                                "dowmsamples": list(config.upsampling_ratios),
                                                "vq_bins": config.codebook_size,
                                                "vq_kmeans": 200}},
            "backbone": {"class_path": "decoder.models.VocosBackbone",
                         "init_args": {"input_channels": config.hidden_size,
                                       "dim": config.decoder_hidden_size,
                                       "intermediate_dim": config.decoder_intermediate_size,
                                       "num_layers": config.decoder_num_layers,
                                       "adanorm_num_embeddings": 4}},
            "head": {"class_path": "decoder.heads.ISTFTHead",
                     "init_args": {"dim": config.decoder_hidden_size, "n_fft": 4 * hop,
                                   "hop_length": hop, "padding": "same"}}}},
        "trainer": {"max_steps": 2000000, "devices": [0]}}


def write_release(model, folder: Path, tokens: str) -> Path:
    """The .ckpt as Lightning saves WavTokenizer's training: state_dict (generator, EnCodec's
    unused decoder, a discriminator, the mel loss's buffers) and bookkeeping."""
    folder.mkdir()
    state = original_names(model.state_dict())
    state["head.istft.window"] = torch.hann_window(4 * model.hop_length)
    state["feature_extractor.encodec.decoder.model.0.conv.conv.weight_v"] = torch.randn(8, 32, 7)
    state["multiperioddisc.discriminators.0.convs.0.weight_v"] = torch.randn(4, 1, 5, 1)
    state["melspec_loss.mel_spec.mel_scale.fb"] = torch.rand(513, 100)
    ckpt = {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.8.6",
            "state_dict": state, "loops": {}, "callbacks": {"ModelCheckpoint": {
                "best_model_score": torch.tensor(1.5), "dirpath": "/x"}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 2e-4}]}],
            "lr_schedulers": [{"_last_lr": [2e-4]}],
            "hparams_name": "kwargs", "hyper_parameters": {"sample_rate": 24000}}
    size = {"75": "320", "40": "600"}[tokens]
    torch.save(ckpt, folder / f"wavtokenizer_small_{size}_24k_4096.ckpt")
    (folder / f"wavtokenizer_smalldata_frame{tokens}_3s_nq1_code4096_dim512_kmeans200_attn"
              f".yaml").write_text(yaml.safe_dump(release_yaml(model.config)))
    return folder


def theirs(model, wav):
    with torch.no_grad():
        codes = model.encode(wav).audio_codes
        return codes, model.decode(codes).audio_values


def ckpt_file(folder: Path) -> Path:
    return next(folder.glob("*.ckpt"))


@pytest.mark.parametrize("fmt", ["transformers", "ckpt"])
@pytest.mark.parametrize("seconds", [1.0, 0.4567, 0.13])
def test_matches_wavtokenizermodel(release, fmt, seconds):
    model, hf, ckpt = release
    codec = audiotok.load_codec(hf if fmt == "transformers" else ckpt_file(ckpt))
    assert (codec.sample_rate, codec.hop_length, codec.codebook_sizes) == (
        24000, model.hop_length, [TINY["codebook_size"]])
    g = torch.Generator().manual_seed(round(seconds * 1e4))
    wav = 0.1 * torch.randn(1, 1, round(seconds * 24000), generator=g)
    codes, audio = theirs(model, wav)
    if seconds == 1.0:  # a test with one code in use would prove little
        assert codes.unique().numel() > 10
    tokens = codec.encode(wav)
    assert torch.equal(tokens.codes, codes)
    ours = codec.decode(tokens)
    assert ours.shape[-1] == wav.shape[-1]  # transformers decodes whole frames; audiotok trims
    torch.testing.assert_close(ours, audio[..., : wav.shape[-1]], rtol=0, atol=AUDIO_ATOL)


def test_padded_batch(release):
    model, hf, ckpt = release
    g = torch.Generator().manual_seed(5)
    long, short = 14000, 5000
    wav = 0.1 * torch.randn(2, 1, long, generator=g)
    wav[1, :, short:] = 0
    codes, audio = theirs(model, wav)
    for codec in (audiotok.load_codec(hf), audiotok.load_codec(ckpt)):  # the ckpt's folder
        tokens = codec.encode(wav, lengths=torch.tensor([long, short]))
        assert torch.equal(tokens.codes, codes)
        assert tokens.lengths.tolist() == [-(-long // model.hop_length),
                                          -(-short // model.hop_length)]
        ours = codec.decode(tokens)
        torch.testing.assert_close(ours, audio[..., :long], rtol=0, atol=AUDIO_ATOL)


def test_provenance_token_file_and_reload(release, tmp_path):
    _, hf, ckpt = release
    codec = audiotok.load_codec(hf)
    assert codec.provenance["format"] == "transformers WavTokenizerModel"
    assert codec.provenance["matches"].startswith("transformers 5.")
    assert codec.provenance["licence"].startswith("MIT")
    from_ckpt = audiotok.load_codec(ckpt_file(ckpt))
    assert from_ckpt.provenance["format"] == "WavTokenizer .ckpt + YAML"
    assert from_ckpt.provenance["config"].endswith(".yaml")
    wav = 0.1 * torch.randn(1, 1, 9000)
    tokens = codec.encode(wav)
    tokens.save(tmp_path / "a.atok")
    again = audiotok.Tokens.load(tmp_path / "a.atok")
    assert torch.equal(codec.decode(again), codec.decode(tokens))
    codec.save_pretrained(tmp_path / "converted")
    converted = audiotok.load_codec(tmp_path / "converted")
    assert converted.fingerprint() == codec.fingerprint()
    assert torch.equal(converted.decode(again), codec.decode(tokens))


def test_long_files_in_chunks(release):
    """The encoder's LSTM, and the decoder's global attention and GroupNorm, see the whole
    file, so audiotok's chunked processing (codecs/chunking.py) runs each chunk with a fixed
    1 s context, as for EnCodec: near the whole-file codes, not equal to them (measured on
    these random models: 98-99 % of codes equal with 1 s chunks). The decoder is the weaker
    part: a chunk's attention and GroupNorm statistics span that chunk and its context only
    (measured relative RMS difference 0.4-0.55 at 1 s chunks on random weights, whose
    near-uniform attention averages the whole window), so files up to `chunk_seconds` (10 s
    by default) decode in one piece, exactly as the publisher does."""
    _, hf, _ = release
    codec = audiotok.load_codec(hf)
    wav = 0.1 * torch.randn(1, 1, 4 * 24000, generator=torch.Generator().manual_seed(11))
    whole = codec.encode(wav, chunk_seconds=None)
    assert torch.equal(codec.encode(wav).codes, whole.codes)  # 4 s < the default 10 s
    chunked = codec.encode(wav, chunk_seconds=1.0)
    assert chunked.codes.shape == whole.codes.shape
    agree = (chunked.codes == whole.codes).float().mean().item()
    assert agree >= 0.95, agree
    audio = codec.decode(whole, chunk_seconds=None)
    assert torch.equal(codec.decode(whole), audio)
    pieces = codec.decode(whole, chunk_seconds=1.0)
    assert pieces.shape == audio.shape and torch.isfinite(pieces).all()


def test_bad_files(release, tmp_path):
    _, hf, ckpt = release
    cases = {}
    # a .ckpt without its YAML
    (tmp_path / "alone").mkdir()
    shutil.copy(ckpt_file(ckpt), tmp_path / "alone" / "w.ckpt")
    cases[tmp_path / "alone" / "w.ckpt"] = "no WavTokenizer YAML beside it"
    # truncated
    (tmp_path / "trunc").mkdir()
    data = ckpt_file(ckpt).read_bytes()
    (tmp_path / "trunc" / "w.ckpt").write_bytes(data[: len(data) // 2])
    shutil.copy(next(ckpt.glob("*.yaml")), tmp_path / "trunc")
    cases[tmp_path / "trunc" / "w.ckpt"] = "not a readable PyTorch checkpoint"
    # a YAML whose shapes do not fit the weights: the first mismatching weight is named
    shutil.copytree(ckpt, tmp_path / "wide")
    y = next((tmp_path / "wide").glob("*.yaml"))
    cfg = yaml.safe_load(y.read_text())
    cfg["model"]["init_args"]["backbone"]["init_args"]["dim"] = 64
    y.write_text(yaml.safe_dump(cfg))
    cases[tmp_path / "wide"] = "weight 'decoder.embed.weight' has shape (32, 32, 7), the config " \
                               "gives (64, 32, 7)"
    # a weight missing from the .ckpt
    shutil.copytree(ckpt, tmp_path / "missing")
    blob = torch.load(ckpt_file(ckpt), weights_only=True)
    del blob["state_dict"]["backbone.convnext.1.gamma"]
    torch.save(blob, ckpt_file(tmp_path / "missing"))
    cases[tmp_path / "missing"] = "lacks weight 'decoder.blocks.1.scale'"

    # a .ckpt whose state_dict is an object, not weights
    shutil.copytree(ckpt, tmp_path / "evil")
    torch.save({"state_dict": Evil(tmp_path / "ran")}, ckpt_file(tmp_path / "evil"))
    cases[tmp_path / "evil"] = "not a WavTokenizer checkpoint"
    # another Lightning checkpoint
    shutil.copytree(ckpt, tmp_path / "other")
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}}, ckpt_file(tmp_path / "other"))
    cases[tmp_path / "other"] = "not a WavTokenizer checkpoint"
    # the transformers folder: a weight missing, the file truncated
    for name, edit in (("hf_missing", "drop"), ("hf_trunc", "cut")):
        shutil.copytree(hf, tmp_path / name)
        weights = tmp_path / name / "model.safetensors"
        if edit == "cut":
            weights.write_bytes(weights.read_bytes()[:1000])
        else:
            from safetensors.torch import load_file, save_file

            state = load_file(str(weights))
            del state["backbone.pos_net.2.k.weight"]
            save_file(state, str(weights), metadata={"format": "pt"})
    cases[tmp_path / "hf_missing"] = "lacks weight 'decoder.pos_net.attn.qkv.weight'"
    cases[tmp_path / "hf_trunc"] = "unreadable safetensors file"
    for path, message in cases.items():
        with pytest.raises(AudiotokError) as err:
            audiotok.load_codec(path)
        text = str(err.value)
        assert message in text and "\n" not in text, (path, text)
        assert str(path).split("/")[-1] in text, (path, text)  # names the file
    assert not (tmp_path / "ran").exists()
    # a transformers layout audiotok does not reproduce
    shutil.copytree(hf, tmp_path / "causal")
    config = json.loads((hf / "config.json").read_text())
    (tmp_path / "causal" / "config.json").write_text(json.dumps({**config,
                                                                 "use_causal_conv": True}))
    with pytest.raises(AudiotokError, match="use_causal_conv=True.*not supported"):
        audiotok.load_codec(tmp_path / "causal")


class Evil:
    """Unpickling it would create `marker` (os.system could as well do anything else)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_objects_beside_the_weights_are_never_built(release, tmp_path):
    """Lightning checkpoints may pickle objects in their bookkeeping (a CLI namespace in
    `hyper_parameters`): weights_only refuses them, so audiotok reads the file with every
    object but tensors and containers left unbuilt; the weights load, no pickled code runs."""
    model, _, ckpt = release
    shutil.copytree(ckpt, tmp_path / "objects")
    blob = torch.load(ckpt_file(ckpt), weights_only=True)
    blob["hyper_parameters"] = {"config": Evil(tmp_path / "ran"), "sample_rate": 24000}
    torch.save(blob, ckpt_file(tmp_path / "objects"))
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(ckpt_file(tmp_path / "objects"), weights_only=True)
    codec = audiotok.load_codec(tmp_path / "objects")
    assert not (tmp_path / "ran").exists()
    wav = 0.1 * torch.randn(1, 1, 9000)
    assert torch.equal(codec.encode(wav).codes, theirs(model, wav)[0])


def test_two_releases_in_one_folder(tmp_path):
    """novateur/WavTokenizer keeps the 40 and 75 token models side by side: each .ckpt takes
    the YAML whose hop its name gives (…_320_… / …_600_…)."""
    from transformers import WavTokenizerConfig, WavTokenizerModel

    for tokens, strides in RELEASES.items():
        model = WavTokenizerModel(WavTokenizerConfig(upsampling_ratios=strides, **TINY)).eval()
        randomise(model)
        write_release(model, tmp_path / tokens, tokens)
        for f in (tmp_path / tokens).iterdir():
            shutil.move(str(f), tmp_path / f.name)
    assert audiotok.load_codec(tmp_path / "wavtokenizer_small_600_24k_4096.ckpt").hop_length == 600
    assert audiotok.load_codec(tmp_path / "wavtokenizer_small_320_24k_4096.ckpt").hop_length == 320
    with pytest.raises(AudiotokError, match="expected one WavTokenizer checkpoint"):
        audiotok.load_codec(tmp_path)


def test_cli_encode_decode(release, tmp_path, capsys):
    import soundfile as sf
    from conftest import speechlike

    from audiotok.cli import main

    _, _, ckpt = release
    path = ckpt_file(ckpt)
    sf.write(str(tmp_path / "a.wav"), speechlike(0.7, 16000, seed=1), 16000)
    assert main(["encode", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.atok"),
                 "--codec", str(path)]) == 0
    assert main(["info", str(path)]) == 0
    assert "published as    WavTokenizer .ckpt + YAML" in capsys.readouterr().out
    assert main(["decode", str(tmp_path / "a.atok"), "-o", str(tmp_path / "b.wav")]) == 0
    info = sf.info(str(tmp_path / "b.wav"))
    assert info.samplerate == 24000 and abs(info.duration - 0.7) < 1e-3


def test_short_names_resolve_through_the_hub_cache(release, tmp_path, monkeypatch):
    """wavtokenizer_40 is the hub's swiss-ai/wavtokenizer-large-unify-40token (transformers
    format), wavtokenizer_75 novateur/WavTokenizer-medium-speech-75token (.ckpt + YAML), each
    found in a Hugging Face cache laid out as the hub library lays it out; a missing one is a
    one-line error naming the repository."""
    from audiotok.codecs.published.names import NAMES

    model, hf, ckpt = release
    name = {600: "wavtokenizer_40", 320: "wavtokenizer_75"}[model.hop_length]
    entry = NAMES[name]
    sources = [hf / "config.json", hf / "model.safetensors"] if name.endswith("40") else \
        [ckpt_file(ckpt), next(ckpt.glob("*.yaml"))]
    root = tmp_path / "hub" / f"models--{entry.repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    for target, source in zip(entry.files, sources):
        shutil.copy(source, snapshot / target)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("ab" * 20)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wav = 0.1 * torch.randn(1, 1, 12000)
    assert torch.equal(audiotok.load_codec(name).encode(wav).codes, theirs(model, wav)[0])
    other = NAMES["wavtokenizer_75" if name.endswith("40") else "wavtokenizer_40"]
    with pytest.raises(AudiotokError) as err:
        audiotok.load_codec(other.name)
    assert other.repo in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_fine_tunes_with_the_trainer(release, tmp_path):
    from test_published import fine_tune

    _, _, ckpt = release
    fine_tune(ckpt_file(ckpt), 24000, tmp_path)
