"""Kyutai's Mimi, published in two formats: the moshi package's safetensors and transformers'
MimiModel folder. Each reference model is built with random weights by its publisher's own
code (moshi's `loaders.get_mimi`, transformers' `MimiModel`) at reduced width with the
released strides, heads and quantizer layout, saved as the publisher saves it, opened with
`load_codec`, and compared with the publisher's own outputs: identical codes at every level,
decoded audio equal to float rounding, on lengths that are and are not whole frames, a batch
of two, fewer levels, and (moshi, whose context is fixed at 250 frames) a clip longer than the
transformer's window."""

import copy
import math
from pathlib import Path

import pytest
import torch

import audiotok
from audiotok.errors import AudiotokError

transformers = pytest.importorskip("transformers")

FRAME = 1920  # samples per 12.5 Hz code frame at 24 kHz


def perturb(model: torch.nn.Module, g: torch.Generator) -> None:
    """Layer scales, biases and norm gains away from their init values, so that a weight
    mapped to the wrong place cannot go unnoticed."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith("bias"):
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            elif "norm" in name and name.endswith("weight"):
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=g))


def fill_codebooks(latents: torch.Tensor, groups, names: tuple[str, str, str],
                   g: torch.Generator) -> None:
    """Codewords drawn from the residuals each level sees (as a k-means init would place
    them), so that codes spread over the codebook at every level. `groups`: (input_proj,
    [codebook, ...]) per RVQ group; `names`: the codebook's sum buffer, its cached quotient
    (both publishers cache sum / usage) and the property that computes it."""
    total, cache, quotient = names
    for in_proj, books in groups:
        residual = in_proj(latents).transpose(1, 2).reshape(-1, in_proj.out_channels)
        for book in books:
            size = book.cluster_usage.shape[0]
            pick = residual[torch.randint(residual.shape[0], (size,), generator=g)]
            words = pick + 0.01 * torch.randn(pick.shape, generator=g)
            usage = 0.5 + torch.rand(size, generator=g)
            getattr(book, total).copy_(words * usage[:, None])
            book.cluster_usage.copy_(usage)
            setattr(book, cache, None)
            embed = getattr(book, quotient)
            residual = residual - embed[torch.cdist(residual[None], embed[None])[0].argmin(-1)]


def scale_output(last_conv: torch.nn.Conv1d, wav: torch.Tensor, decode) -> None:
    """Random decoders reach amplitudes of ~50; bring the output to ~0.5 so that the audio
    tolerance below means the same as for real speech."""
    with torch.no_grad():
        peak = decode(wav).abs().max()
        last_conv.weight.mul_(0.5 / peak)
        last_conv.bias.mul_(0.5 / peak)


# -- moshi ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moshi_mimi(tmp_path_factory):
    loaders = pytest.importorskip("moshi.models.loaders", reason="moshi is not installed "
                                  "(scripts/setup.sh installs it without its dependencies)")
    from safetensors.torch import save_file

    cfg = copy.deepcopy(loaders._mimi_config)  # the release's architecture, narrower
    cfg["seanet"].update(n_filters=8, dimension=64)
    cfg["quantizer"].update(dimension=16, n_q=8, bins=64, input_dimension=64,
                            output_dimension=64)
    cfg["transformer"].update(d_model=64, num_layers=2, dim_feedforward=128,
                              input_dimension=64, output_dimensions=[64])
    torch.manual_seed(0)
    model = loaders.get_mimi(None, cfg, num_codebooks=8).eval()
    g = torch.Generator().manual_seed(1)
    perturb(model, g)
    with torch.no_grad():
        latents = model._encode_to_unquantized_latent(0.3 * torch.randn(4, 1, 2 * 24000,
                                                                        generator=g))

        groups = [(rvq.input_proj, [layer._codebook for layer in rvq.vq.layers])
                  for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest)]
        fill_codebooks(latents, groups, ("embedding_sum", "_embedding", "embedding"), g)
        scale_output(model.decoder.model[-1].conv.conv, 0.3 * torch.randn(1, 1, FRAME * 4),
                     lambda w: model.decode(model.encode(w)))
    path = tmp_path_factory.mktemp("moshi") / "tokenizer-e351c8d8-checkpoint125.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def moshi_reference(model, wav, n_codebooks=8):
    model.set_num_codebooks(n_codebooks)
    with torch.no_grad():
        codes = model.encode(wav)
        return codes, model.decode(codes)


def assert_audio_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    # the same float32 arithmetic in two implementations: measured 0 (moshi, within the
    # attention window), up to 5.4e-7 of a 0.5 peak (past it, and transformers, whose
    # q/k/v projections are separate matmuls); 1e-4 is the bar
    n = min(ours.shape[-1], theirs.shape[-1])
    torch.testing.assert_close(ours[..., :n], theirs[..., :n], rtol=0, atol=1e-4)


@pytest.mark.parametrize("frames", [7, 7.2, 137.5])
def test_moshi_mimi_matches_the_publisher(moshi_mimi, frames):
    """137.5 frames = 11 s: 275 transformer steps, past the 250-step attention window."""
    model, path = moshi_mimi
    codec = audiotok.load_codec(path)
    assert (codec.sample_rate, codec.hop_length, codec.n_codebooks) == (24000, FRAME, 8)
    g = torch.Generator().manual_seed(round(frames * 10))
    wav = 0.3 * torch.randn(2, 1, round(frames * FRAME), generator=g)
    codes, audio = moshi_reference(model, wav)
    assert codes[:, 0].unique().numel() > 5 and codes[:, -1].unique().numel() > 5
    tokens = codec.encode(wav, chunk_seconds=None)
    assert torch.equal(tokens.codes, codes)  # every level, both items
    ours = codec.decode(tokens, chunk_seconds=None)
    assert ours.shape[-1] == wav.shape[-1]
    assert_audio_close(ours, audio)
    # long inputs stream through by default (10 s chunks): the same codes
    assert torch.equal(codec.encode(wav).codes, codes)
    assert_audio_close(codec.decode(tokens), audio)


def test_moshi_mimi_fewer_levels_and_streaming(moshi_mimi):
    model, path = moshi_mimi
    codec = audiotok.load_codec(path)
    g = torch.Generator().manual_seed(3)
    wav = 0.3 * torch.randn(1, 1, 9 * FRAME, generator=g)
    codes, audio = moshi_reference(model, wav, n_codebooks=3)  # the semantic level + 2
    assert torch.equal(codec.encode(wav, n_codebooks=3).codes, codes)
    # audiotok's streaming, fed uneven pieces, gives the publisher's codes and audio
    stream = codec.stream(n_codebooks=3)
    pieces = [stream.encode(wav[..., a:b]) for a, b in ((0, 1000), (1000, 5000),
                                                        (5000, 9 * FRAME))]
    streamed = torch.cat(pieces + [stream.flush()], -1)
    assert torch.equal(streamed, codes)
    decoded = torch.cat([stream.decode(streamed[..., i:i + 2]) for i in range(0, 9, 2)], -1)
    assert_audio_close(decoded, audio)


def test_moshi_mimi_provenance_and_round_trip(moshi_mimi, tmp_path):
    _, path = moshi_mimi
    codec = audiotok.load_codec(path)
    assert codec.provenance["format"] == "moshi Mimi safetensors"
    assert codec.provenance["matches"].startswith("moshi ")
    codec.save_pretrained(tmp_path / "converted")
    again = audiotok.load_codec(tmp_path / "converted")
    assert again.fingerprint() == codec.fingerprint()
    wav = 0.3 * torch.randn(1, 1, 5 * FRAME)
    assert torch.equal(again.encode(wav).codes, codec.encode(wav).codes)


def test_bad_moshi_files(moshi_mimi, tmp_path):
    from safetensors.torch import load_file, save_file

    _, path = moshi_mimi
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    state = load_file(str(path))
    del state["decoder_transformer.transformer.layers.1.linear2.weight"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    state = load_file(str(path))
    state["decoder_transformer.transformer.layers.0.linear1.weight"] = torch.zeros(100, 64)
    save_file(state, str(tmp_path / "shapes.safetensors"))
    cases = {
        "trunc.safetensors": "unreadable safetensors file",
        "missing.safetensors": "lacks weight 'decoder.transformer.layers.1.mlp.2.weight'",
        "shapes.safetensors": "weight 'decoder.transformer.layers.0.mlp.0.weight' has shape "
                              "(100, 64), the config gives (128, 64)",
    }
    save_file({"weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    cases["other.safetensors"] = "not a codec file audiotok reads"
    for name, message in cases.items():
        with pytest.raises(AudiotokError) as err:
            audiotok.load_codec(tmp_path / name)
        assert message in str(err.value) and "\n" not in str(err.value), (name, err.value)


# -- transformers --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_mimi(tmp_path_factory):
    config = transformers.MimiConfig(
        hidden_size=64, num_filters=8, num_hidden_layers=2, intermediate_size=128,
        num_attention_heads=8, num_key_value_heads=8, codebook_size=64, codebook_dim=16,
        vector_quantization_hidden_dimension=16, num_quantizers=8, upsample_groups=64,
        sliding_window=12)  # a short window: clips below run past it
    torch.manual_seed(0)
    model = transformers.MimiModel(config).eval()
    g = torch.Generator().manual_seed(1)
    perturb(model, g)
    with torch.no_grad():
        latents = model.encoder(0.3 * torch.randn(4, 1, 2 * 24000, generator=g)).latents

        q = model.quantizer
        groups = [(rvq.input_proj, [layer.codebook for layer in rvq.layers])
                  for rvq in (q.semantic_residual_vector_quantizer,
                              q.acoustic_residual_vector_quantizer)]
        fill_codebooks(latents, groups, ("embed_sum", "_embed", "embed"), g)
        scale_output(model.decoder.decoder_seanet.layers[-1].conv,
                     0.3 * torch.randn(1, 1, FRAME * 4),
                     lambda w: model.decode(model.encode(w).audio_codes).audio_values)
    path = tmp_path_factory.mktemp("hf") / "mimi"
    model.save_pretrained(path)
    return model, path


@pytest.mark.parametrize("samples", [7 * FRAME, 7 * FRAME + 333, 3 * 24000 + 5])
def test_transformers_mimi_matches_the_publisher(hf_mimi, samples):
    model, path = hf_mimi
    codec = audiotok.load_codec(path)
    g = torch.Generator().manual_seed(samples)
    wav = 0.3 * torch.randn(2, 1, samples, generator=g)
    with torch.no_grad():
        codes = model.encode(wav).audio_codes
        audio = model.decode(codes).audio_values
        codes4 = model.encode(wav, num_quantizers=4).audio_codes
    assert codes[:, 0].unique().numel() > 5 and codes[:, -1].unique().numel() > 5
    tokens = codec.encode(wav, chunk_seconds=None)
    assert torch.equal(tokens.codes, codes)  # every level; its convs pad the last frame
    assert torch.equal(codec.encode(wav, n_codebooks=4, chunk_seconds=None).codes, codes4)
    ours = codec.decode(tokens, chunk_seconds=None)
    assert ours.shape[-1] == samples
    assert_audio_close(ours, audio)
    # in chunks the waveform is padded to whole frames first: all but the last frame agree
    chunked = codec.encode(wav, chunk_seconds=0.5).codes
    whole_frames = samples // FRAME
    assert torch.equal(chunked[..., :whole_frames], codes[..., :whole_frames])


def test_mimi_short_name_resolves_through_the_hub_cache(hf_mimi, tmp_path, monkeypatch):
    from test_published import fake_hub_cache

    _, folder = hf_mimi
    fake_hub_cache(tmp_path / "hub", "kyutai/mimi", {f: folder / f for f in
                                                     ("config.json", "model.safetensors")})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wav = 0.3 * torch.randn(1, 1, 4 * FRAME)
    assert torch.equal(audiotok.load_codec("mimi").encode(wav).codes,
                       audiotok.load_codec(folder).encode(wav).codes)


def test_transformers_mimi_unsupported_configs(hf_mimi, tmp_path):
    import json
    import shutil

    _, path = hf_mimi
    for key, value, message in (("num_key_value_heads", 4, "grouped or resized attention"),
                                ("use_conv_shortcut", True, "use_conv_shortcut=True")):
        folder = tmp_path / key
        shutil.copytree(path, folder)
        config = json.loads((folder / "config.json").read_text())
        config[key] = value
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(AudiotokError, match=message) as err:
            audiotok.load_codec(folder)
        assert "\n" not in str(err.value)


def test_mimi_rope_styles_round_as_their_publishers():
    """The three RoPE styles agree to float32 rounding and differ in the last bits, which is
    why each checkpoint format keeps its publisher's."""
    from audiotok.modules.transformer import publisher_rope_tables, rope_tables

    ours = rope_tables(300, 64, 10000.0, None, torch.float32)
    moshi = publisher_rope_tables("moshi", 0, 300, 64, 10000.0, None)
    hf = publisher_rope_tables("transformers", 0, 300, 64, 10000.0, None)
    for table in (moshi, hf):
        for a, b in zip(ours, table):
            # float32 angles of positions up to 300 are off by up to 300 * 2^-24 rad
            torch.testing.assert_close(a, b, rtol=0, atol=300 * 2 ** -24 * 4)
    assert not torch.equal(moshi[0], hf[0])
    # positions count from `start`: a window starting at 100 has the whole sequence's values
    window = publisher_rope_tables("moshi", 100, 50, 64, 10000.0, None)
    assert torch.equal(window[0], moshi[0][100:150]) and torch.equal(window[1], moshi[1][100:150])


def test_mimi_cli_encode_decode(moshi_mimi, tmp_path):
    import soundfile as sf

    from audiotok.cli import main

    _, path = moshi_mimi
    wav = 0.3 * torch.randn(1, 1, 6 * FRAME + 100)
    sf.write(str(tmp_path / "in.wav"), wav[0, 0].numpy(), 24000)
    assert main(["encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "in.atok"),
                 "--codec", str(path), "--n-codebooks", "4"]) == 0
    assert main(["decode", str(tmp_path / "in.atok"), "-o", str(tmp_path / "out.wav"),
                 "--codec", str(path)]) == 0
    out, sr = sf.read(str(tmp_path / "out.wav"))
    assert sr == 24000 and len(out) == wav.shape[-1]
    codes = audiotok.load_codec(path).encode(wav, n_codebooks=4).codes
    assert torch.equal(audiotok.Tokens.load(tmp_path / "in.atok").codes, codes)
    assert math.isfinite(float(out.std()))


RECIPE = Path(__file__).parent.parent / "recipes" / "finetune" / "mimi.yaml"


def speech_corpus(folder: Path, rate: int = 24000) -> Path:
    import soundfile as sf
    from conftest import speechlike

    folder.mkdir()
    for i in range(4):
        sf.write(str(folder / f"u{i}.wav"), speechlike(2.5, rate, seed=i), rate)
    return folder


def test_finetune_recipe_takes_its_model_from_the_weights(moshi_mimi, tmp_path):
    """recipes/finetune/mimi.yaml has no `model`: train.init_from supplies it, by file or by
    short name; an untrained codec or a missing file is a one-line error."""
    from audiotok.errors import ConfigError
    from audiotok.train import read_recipe

    _, path = moshi_mimi
    corpus = speech_corpus(tmp_path / "corpus")
    recipe = read_recipe(RECIPE, [f"data.train={corpus}", f"train.init_from={path}"])
    codec = audiotok.load_codec(path)
    assert recipe.model == codec.config
    assert recipe.train.init_from == str(path)
    for ref, message in (("mimi-like", "untrained codec"), (str(tmp_path / "none.safetensors"),
                                                           "no codec")):
        from audiotok.train.trainer import Trainer

        bad = read_recipe(RECIPE, [f"data.train={corpus}", f"train.init_from={path}",
                                   "distill=null", "losses.weights.distill/wavlm/cosine=0",
                                   f"train.run_dir={tmp_path / 'run'}"])
        bad.train.init_from = ref
        with pytest.raises(ConfigError, match=message) as err:
            Trainer(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="has no 'model' and train.init_from cannot give one"):
        read_recipe(RECIPE, [f"data.train={corpus}", "train.init_from=no/such-codec"])


@pytest.mark.slow
def test_finetune_recipe_runs(moshi_mimi, tmp_path):
    """The recipe as shipped (adversarial + feature losses, MS-STFT discriminator, WavLM
    distilled into level 0), on a tiny Mimi and a tiny random WavLM: 3 steps, then the
    export reloads with the fine-tuned weights."""
    from transformers import WavLMConfig, WavLMModel

    from audiotok.train import read_recipe
    from audiotok.train.trainer import Trainer

    _, path = moshi_mimi
    torch.manual_seed(0)
    WavLMModel(WavLMConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 64),
                           conv_kernel=(10, 64), num_conv_pos_embeddings=16,
                           num_conv_pos_embedding_groups=2)).save_pretrained(tmp_path / "wavlm")
    recipe = read_recipe(RECIPE, [
        f"data.train={speech_corpus(tmp_path / 'corpus')}", f"train.init_from={path}",
        f"distill.heads.wavlm.teacher.path={tmp_path / 'wavlm'}",
        "distill.heads.wavlm.teacher.normalize=false", f"train.run_dir={tmp_path / 'run'}",
        "train.steps=3", "train.batch_size=2", "train.ckpt_every=3", "train.val_every=0",
        "data.num_workers=0", "data.segment_seconds=0.64"])
    trainer = Trainer(recipe)
    assert trainer.fit() == 0
    export = audiotok.load_codec(tmp_path / "run" / "model")
    start = audiotok.load_codec(path)
    moved = [k for k, v in export.state_dict().items()
             if v.dtype.is_floating_point and not torch.equal(v, start.state_dict()[k])]
    assert any(k.startswith("encoder.") for k in moved) and any(
        k.startswith("decoder.") for k in moved)


@pytest.mark.slow
def test_mimi_fine_tunes_with_the_trainer(moshi_mimi, tmp_path):
    from test_published import fine_tune

    _, path = moshi_mimi
    fine_tune(path, 24000, tmp_path)
