"""ONNX export: graphs run by onnxruntime against the torch codec they came from, streaming
step graphs driven piece by piece, the folder through load_codec and the command line.

The measured equality is printed (pytest -s shows it): codes are compared frame by frame
(a frame is equal when all its levels are), audio as the largest absolute difference."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY, one_thread_fixture, speechlike
from test_streaming import MIMI, SEANET_CAUSAL, SEANET_LSTM

from audiotok import AudiotokError, Codec, load_codec
from audiotok.cli import main
from audiotok.codecs.published.encodec import encodec_24k_config
from audiotok.codecs.published.mimi import mimi_config
from audiotok.codecs.published.snac import snac_config
from audiotok.errors import TokenFileError
from audiotok.export import export_onnx
from audiotok.export.onnx_codec import OnnxCodec
from audiotok.tokens import Tokens

pytest.importorskip("onnxruntime")

EXPORTABLE = ["seanet-lstm", "seanet-conv", "seanet-causal", "dac", "wavtokenizer",
              "fsq-stereo", "stft-vocos"]
NOT_EXPORTABLE = {"stft-spectral": "absolute position", "stft-pitch": "F0 estimator",
                  "stft-harmonic": "F0 estimator"}
# causal codecs whose step graphs stream: zero padding (SEANet, Mimi-like), the published
# Mimi layout (replicate-padded downsampling, depthwise upsampling, moshi's RoPE) and
SEANET_LSTM_ZERO = {**SEANET_LSTM,
                    "encoder": {**SEANET_LSTM["encoder"], "pad_mode": "constant"},
                    "decoder": {**SEANET_LSTM["decoder"], "pad_mode": "constant"}}
MIMI_PUBLISHED = mimi_config(
    n_filters=4, ratios=[4, 2], dim=16, layers=2, heads=2, dim_feedforward=32, context=8,
    max_period=10000.0, n_codebooks=4, n_semantic=1, codebook_size=32, codebook_dim=8,
    downsample=2, rope_style="moshi", publisher_padding=False, sample_rate=8000)
# EnCodec 24 kHz's layout: reflect padding (the first step must hold 7 frames here), LSTMs,
# 1x1 shortcuts, and each encoder layer padding to the input's length (any T offline)
ENCODEC = {**encodec_24k_config(4, 32, {"n_filters": 4, "strides": [2, 4]}, latent_dim=16),
           "sample_rate": 8000}
STREAMING = {"mimi": MIMI, "mimi-published": MIMI_PUBLISHED, "encodec-24khz": ENCODEC,
             "seanet-causal-zero": SEANET_CAUSAL, "seanet-lstm-zero": SEANET_LSTM_ZERO}
# SNAC's layout without its noise blocks: frames in groups of 8 (windowed attention, levels
# pooled over 4 and 2 frames)
SNAC = {"sampling_rate": 8000, "encoder_dim": 16, "encoder_rates": [2, 4], "decoder_dim": 64,
        "decoder_rates": [4, 2], "attn_window_size": 8, "codebook_size": 64,
        "vq_strides": [4, 2, 1]}
OFFLINE = {**{name: TINY[name] for name in EXPORTABLE},
           "snac-noise-free": snac_config(Path("snac"), {**SNAC, "noise": False})}
CONFIGS = {**OFFLINE, **STREAMING}


one_thread = one_thread_fixture()


def build(name: str) -> Codec:
    torch.manual_seed(0)
    return Codec.from_config(dict(CONFIGS[name])).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (torch codec, its ONNX folder opened), each exported once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            codec = build(name)
            folder = tmp_path_factory.mktemp("onnx") / name
            export_onnx(codec, folder, streaming=name in STREAMING)
            cache[name] = codec, load_codec(folder)
        return cache[name]
    return get


def signal(codec, seconds: float, batch: int = 1, seed: int = 0) -> torch.Tensor:
    wav = np.stack([speechlike(seconds, codec.sample_rate, codec.channels, seed=seed + i).T
                    for i in range(batch)])
    return torch.from_numpy(wav)


def equal_frames(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a == b).all(1).float().mean().item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnxruntime_equals_torch(exported, name):
    """Batch of 2 padded items plus single items at lengths that are no whole number of
    frames, the traced length nowhere among them; every allowed codebook count."""
    codec, onnx = exported(name)
    assert isinstance(onnx, OnnxCodec) and onnx.spec == codec.spec
    equal, frames, diff = 0.0, 0, 0.0
    for seconds, batch in [(0.37, 2), (0.05, 1), (1.3, 1)]:
        wav = signal(codec, seconds, batch)
        lengths = torch.tensor([wav.shape[-1], wav.shape[-1] * 2 // 3])[:batch]
        ref = codec.encode(wav, lengths=lengths)
        got = onnx.encode(wav, lengths=lengths)
        assert torch.equal(got.lengths, ref.lengths)
        assert torch.equal(got.num_samples, ref.num_samples)
        n = ref.codes.shape[0] * ref.codes.shape[-1]
        equal, frames = equal + equal_frames(got.codes, ref.codes) * n, frames + n
        for k in onnx.quantizer.allowed:
            tokens = codec.encode(wav, n_codebooks=k)
            assert torch.equal(onnx.encode(wav, n_codebooks=k).codes, tokens.codes)
            diff = max(diff, (onnx.decode(tokens) - codec.decode(tokens)).abs().max().item())
    print(f"\n{name}: codes equal on {equal / frames:.4%} of {frames} frames, "
          f"audio within {diff:.2e}")
    assert equal / frames >= 0.999
    assert diff <= 1e-3


@pytest.mark.parametrize("name", list(STREAMING))
def test_step_graphs_driven_piece_by_piece_equal_offline_torch(exported, name):
    codec, onnx = exported(name)
    hop = codec.hop_length
    wav = signal(codec, 40.5 * hop / codec.sample_rate, batch=2, seed=3)
    tokens = codec.encode(wav)
    audio = codec.decode(tokens)
    rng = random.Random(0)
    stream = onnx.stream()
    for _ in range(2):  # a reset stream starts a new signal
        pieces, at = [], 0
        while at < wav.shape[-1]:
            n = rng.choice([1, 7, hop - 1, hop, 3 * hop + 5])
            pieces.append(stream.encode(wav[..., at:at + n]))
            at += n
        codes = torch.cat([*pieces, stream.flush()], -1)
        share = equal_frames(codes, tokens.codes)
        out, at = [], 0
        while at < codes.shape[-1]:
            m = rng.choice([1, 2, 5])
            out.append(stream.decode(tokens.codes[..., at:at + m]))
            at += m
        out = torch.cat([*out, stream.end_decode()], -1)[..., :wav.shape[-1]]
        diff = (out - audio).abs().max().item()
        print(f"\n{name} streamed: codes equal on {share:.4%} of {codes.numel() // codes.shape[1]}"
              f" frames, audio within {diff:.2e}")
        assert share >= 0.999 and diff <= 1e-3
        stream.reset()


@pytest.mark.parametrize("frames", [1, 3, 6])
def test_signals_shorter_than_the_first_step_stream_through_the_offline_graphs(exported,
                                                                             frames):
    codec, onnx = exported("encodec-24khz")
    assert onnx.manifest["streaming"]["encoder"]["first_frames"] == 7
    wav = signal(codec, (frames * codec.hop_length - 3) / codec.sample_rate)
    tokens = codec.encode(wav)
    stream = onnx.stream()
    held = [stream.encode(wav[..., i:i + 5]) for i in range(0, wav.shape[-1], 5)]
    assert all(h.shape[-1] == 0 for h in held)  # waiting for the first step's 7 frames
    assert torch.equal(torch.cat([*held, stream.flush()], -1), tokens.codes)
    assert stream.decode(tokens.codes).shape[-1] == 0
    out = stream.end_decode()[..., :wav.shape[-1]]
    torch.testing.assert_close(out, codec.decode(tokens), rtol=0, atol=1e-4)


def test_long_inputs_chunk_as_torch_does(exported):
    """Chunked (conv: exact reach; LSTM: 1 s context, as torch) and streamed (causal) long
    inputs give torch's codes; the manifest records the checks made at export."""
    for name in ("seanet-conv", "seanet-lstm", "mimi", "encodec-24khz"):
        codec, onnx = exported(name)
        wav = signal(codec, 3.1, seed=5)
        ref = codec.encode(wav, chunk_seconds=0.5)
        got = onnx.encode(wav, chunk_seconds=0.5)
        assert equal_frames(got.codes, ref.codes) >= 0.999, name
        diff = (onnx.decode(ref, chunk_seconds=0.5) - codec.decode(ref, chunk_seconds=0.5))
        assert diff.abs().max() <= 1e-3, name
        checks = onnx.manifest["checks"]
        assert checks["frames_equal"] >= 0.999 and checks["audio_max_diff"] <= 1e-3


def test_tokens_pass_between_backends(exported, tmp_path):
    codec, onnx = exported("seanet-causal")  # grvq: codebook counts are multiples of 2
    assert onnx.fingerprint() == codec.fingerprint()
    wav = signal(codec, 0.4)
    onnx.encode(wav).save(tmp_path / "a.atok")
    tokens = Tokens.load(tmp_path / "a.atok")
    assert tokens.codec_ref == onnx.ref
    codec.check_tokens(tokens)
    torch.testing.assert_close(codec.decode(tokens), onnx.decode(tokens), rtol=0, atol=1e-4)
    assert onnx.quantizer.allowed == [2, 4]
    with pytest.raises(ValueError, match=r"one of \[2, 4\]"):
        onnx.encode(wav, n_codebooks=3)
    other = build("seanet-conv").encode(signal(codec, 0.4))
    with pytest.raises(TokenFileError, match="not by this codec"):
        onnx.decode(other)
    with pytest.raises(AudiotokError, match="NaN"):
        onnx.encode(torch.full((1, 1, 80), float("nan")))
    with pytest.raises(ValueError, match="channel"):
        onnx.encode(torch.zeros(1, 2, 80))


def test_not_exportable_codecs_say_why(tmp_path):
    configs = {**{name: TINY[name] for name in NOT_EXPORTABLE},
               "snac": snac_config(Path("snac"), SNAC)}
    for name, config in configs.items():
        torch.manual_seed(0)
        with pytest.raises(AudiotokError, match=NOT_EXPORTABLE.get(name, "random noise")):
            export_onnx(Codec.from_config(dict(config)), tmp_path / name)
        assert not (tmp_path / name).exists()


def test_folder_checks(exported, tmp_path):
    _, onnx = exported("seanet-conv")
    with pytest.raises(ValueError, match="exported without streaming"):
        onnx.stream()
    folder = tmp_path / "copy"
    folder.mkdir()
    manifest = dict(onnx.manifest, format_version=99)
    (folder / "onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(AudiotokError, match="format audiotok-onnx 99"):
        load_codec(folder)
    (folder / "onnx.json").write_text(json.dumps(onnx.manifest))
    with pytest.raises(AudiotokError, match="missing encoder.onnx"):
        load_codec(folder)


def test_exporter_shim_on_a_small_conv_model():
    """tracing.py exports with torch's TorchScript exporter without the `onnx` package (which
    cannot be installed beside descript-audiotools), restores the exporter afterwards, and
    the graph follows the dynamic axes."""
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    from audiotok.export.onnx_codec import session
    from audiotok.export.tracing import onnx_bytes

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 5, padding=2), torch.nn.ELU(),
                                torch.nn.Conv1d(4, 2, 4, stride=2)).eval()
    before = onnx_proto_utils._add_onnxscript_fn
    graph = session(onnx_bytes(model, (torch.randn(1, 1, 40),), {"x": {0: "b", 2: "t"}},
                               {"y": {0: "b", 2: "f"}}))
    assert onnx_proto_utils._add_onnxscript_fn is before
    x = torch.randn(3, 1, 91)
    with torch.no_grad():
        np.testing.assert_allclose(graph.run(None, {"x": x.numpy()})[0], model(x).numpy(),
                                   atol=1e-6)


# -- command line ---------------------------------------------------------------------------

def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, match):
    assert code != 0 and "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("audiotok: error")]
    assert len(lines) == 1 and match in lines[0], err


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    torch.manual_seed(0)
    return Codec.from_config(dict(MIMI)).save_pretrained(tmp_path_factory.mktemp("ckpt") / "m")


def test_cli_export_encode_decode(codec_dir, tmp_path, capsys):
    out = tmp_path / "onnx"
    code, _, err = run(capsys, "export", codec_dir, "--format", "onnx", "-o", out,
                       "--streaming")
    assert code == 0, err
    assert "codes equal on 100.00%" in err and "streamed frame by frame" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.onnx", "decoder_step.onnx", "encoder.onnx", "encoder_step.onnx", "onnx.json"]
    audio = tmp_path / "a.wav"
    sf.write(str(audio), speechlike(0.7, 8000), 8000)
    assert run(capsys, "encode", audio, "-o", tmp_path / "a.atok", "--codec", out)[0] == 0
    assert run(capsys, "encode", audio, "-o", tmp_path / "t.atok", "--codec", codec_dir)[0] == 0
    a, t = Tokens.load(tmp_path / "a.atok"), Tokens.load(tmp_path / "t.atok")
    assert torch.equal(a.codes, t.codes) and a.spec == t.spec
    assert run(capsys, "decode", tmp_path / "a.atok", "-o", tmp_path / "a.wav")[0] == 0
    assert run(capsys, "decode", tmp_path / "a.atok", "-o", tmp_path / "t.wav",
               "--codec", codec_dir)[0] == 0
    x, y = sf.read(str(tmp_path / "a.wav"))[0], sf.read(str(tmp_path / "t.wav"))[0]
    assert np.abs(x - y).max() <= 1e-3
    code, info, _ = run(capsys, "info", out)
    assert code == 0 and "onnxruntime" in info and "streaming step graphs" in info
    code, _, err = run(capsys, "decode", tmp_path / "a.atok", "-o", tmp_path / "b.wav",
                       "--backend", "torch")
    one_line_error(code, err, "runs with --backend onnxruntime")


def test_cli_export_bad_inputs(codec_dir, tmp_path, capsys):
    code, _, err = run(capsys, "export", "no-such-codec", "-o", tmp_path / "x")
    one_line_error(code, err, "no codec 'no-such-codec'")
    path = TINY["seanet-conv"]
    recipe = tmp_path / "conv.yaml"
    recipe.write_text(json.dumps({"model": path}))  # JSON is YAML
    code, _, err = run(capsys, "export", recipe, "-o", tmp_path / "x", "--streaming")
    one_line_error(code, err, "cannot stream")
    assert not (tmp_path / "x").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "export", recipe, "-o", full)
    one_line_error(code, err, "not empty; pass --force")
    assert run(capsys, "export", recipe, "-o", full, "--force")[0] == 0
    assert not (full / "keep.txt").exists() and (full / "onnx.json").is_file()
    code, _, err = run(capsys, "export", full, "-o", tmp_path / "again")
    one_line_error(code, err, "is an ONNX export already")
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(recipe), "--format", "tflite", "-o", str(tmp_path / "y")])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            code, _, err = run(capsys, "export", recipe, "-o", locked / "out")
            one_line_error(code, err, "permission denied")
        finally:
            locked.chmod(0o700)


def test_cli_backend_onnxruntime_exports_once_into_the_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "conv.yaml"
    recipe.write_text(json.dumps({"model": TINY["seanet-conv"]}))
    audio = tmp_path / "a.wav"
    sf.write(str(audio), speechlike(0.6, 8000), 8000)
    code, _, err = run(capsys, "encode", audio, "-o", tmp_path / "o.atok", "--codec", recipe,
                       "--backend", "onnxruntime")
    assert code == 0 and "exporting" in err, err
    code, _, err = run(capsys, "encode", audio, "-o", tmp_path / "o2.atok", "--codec", recipe,
                       "--backend", "onnxruntime")
    assert code == 0 and "exporting" not in err  # the cached export
    assert run(capsys, "encode", audio, "-o", tmp_path / "t.atok", "--codec", recipe)[0] == 0
    o, t = Tokens.load(tmp_path / "o.atok"), Tokens.load(tmp_path / "t.atok")
    assert torch.equal(o.codes, t.codes)
    assert o.codec_ref.startswith(str(tmp_path / "cache" / "onnx"))
    # tokenize with the ONNX backend writes the codes torch writes
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seconds in enumerate([0.3, 1.1, 0.05]):
        sf.write(str(corpus / f"{i}.wav"), speechlike(seconds, 8000, seed=i), 8000)
    for backend, out, workers in [("onnxruntime", "o", 1), ("onnxruntime", "o2", 2),
                                  ("torch", "t", 1)]:
        assert main(["tokenize", str(corpus), "-o", str(tmp_path / out), "--codec", str(recipe),
                     "--format", "npy", "--backend", backend, "--no-progress", "--workers",
                     str(workers), "--shard-size", "1"]) == 0
    files = {}
    for out in ("o", "o2", "t"):
        index = [json.loads(x) for x in (tmp_path / out / "index.jsonl").read_text().splitlines()]
        files[out] = {r["id"]: np.load(tmp_path / out / r["file"]) for r in index}
    for out in ("o", "o2"):
        assert sorted(files[out]) == sorted(files["t"]) and len(files[out]) == 3
        for uid, codes in files[out].items():
            assert np.array_equal(codes, files["t"][uid]), uid


# -- the publishers' own models (random weights, their packages) ----------------------------

@pytest.mark.slow
def test_publishers_encodec_24khz_through_onnxruntime(tmp_path):
    """EncodecModel.encodec_model_24khz at full size, saved as its release is: onnxruntime's
    codes (offline at any length, and streamed) against the encodec package's own."""
    encodec = pytest.importorskip("encodec")
    from test_published import fill_codebooks

    torch.manual_seed(0)
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(0.01 * torch.randn_like(p))
        fill_codebooks([layer._codebook for layer in model.quantizer.vq.layers],
                       model.encoder(0.1 * torch.randn(4, 1, 24000)))
    torch.save(model.state_dict(), tmp_path / "encodec_24khz-random.th")
    onnx = load_codec(export_onnx(load_codec(tmp_path / "encodec_24khz-random.th"),
                                  tmp_path / "onnx", streaming=True))
    model.set_target_bandwidth(6.0)  # 8 codebooks
    wav = torch.from_numpy(speechlike(1.3, 24000).T[None])
    with torch.no_grad():
        theirs = model.encode(wav)[0][0]
        audio = model.decode([(theirs, None)])[..., :wav.shape[-1]]
    ours = onnx.encode(wav, n_codebooks=8)
    share = equal_frames(ours.codes, theirs)
    diff = (onnx.decode(ours) - audio).abs().max().item()
    # streaming zero-pads a partial last frame (as codec.stream() does) where EnCodec pads
    # each layer: compared on whole frames
    whole = wav[..., : wav.shape[-1] // 320 * 320]
    with torch.no_grad():
        whole_codes = model.encode(whole)[0][0]
    stream = onnx.stream(n_codebooks=8)
    streamed = torch.cat([*(stream.encode(whole[..., i:i + 500])
                            for i in range(0, whole.shape[-1], 500)), stream.flush()], -1)
    streamed_share = equal_frames(streamed, whole_codes)
    print(f"\nEnCodec 24 kHz (publisher's model): codes equal on {share:.4%} of "
          f"{theirs.shape[-1]} frames, audio within {diff:.2e}; streamed {streamed_share:.4%}")
    assert share >= 0.999 and diff <= 1e-3 and streamed_share >= 0.999


@pytest.mark.slow
def test_publishers_mimi_through_onnxruntime(tmp_path):
    """moshi's Mimi (the release's architecture, narrower), saved as its safetensors release
    is: onnxruntime's codes and audio, offline and streamed, against moshi's own."""
    loaders = pytest.importorskip("moshi.models.loaders")
    import copy

    from safetensors.torch import save_file
    from test_mimi import fill_codebooks, perturb

    cfg = copy.deepcopy(loaders._mimi_config)
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
        latents = model._encode_to_unquantized_latent(0.3 * torch.randn(4, 1, 48000,
                                                                        generator=g))
        groups = [(rvq.input_proj, [layer._codebook for layer in rvq.vq.layers])
                  for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest)]
        fill_codebooks(latents, groups, ("embedding_sum", "_embedding", "embedding"), g)
    path = tmp_path / "tokenizer-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    onnx = load_codec(export_onnx(load_codec(path), tmp_path / "onnx", streaming=True))
    wav = 0.3 * torch.randn(2, 1, 23 * 1920, generator=g)
    with torch.no_grad():
        theirs = model.encode(wav)
        audio = model.decode(theirs)
    ours = onnx.encode(wav)
    stream = onnx.stream()
    streamed = torch.cat([*(stream.encode(wav[..., i:i + 3000])
                            for i in range(0, wav.shape[-1], 3000)), stream.flush()], -1)
    played = torch.cat([stream.decode(theirs[..., i:i + 2]) for i in range(0, 23, 2)], -1)
    share, diff = equal_frames(ours.codes, theirs), (onnx.decode(ours) - audio).abs().max()
    print(f"\nMimi (moshi's model): codes equal on {share:.4%} of {2 * 23} frames, audio "
          f"within {diff:.2e}; streamed {equal_frames(streamed, theirs):.4%}, audio within "
          f"{(played - audio).abs().max():.2e}")
    assert share >= 0.999 and diff <= 1e-3 and equal_frames(streamed, theirs) >= 0.999
    assert (played - audio).abs().max() <= 1e-3
