"""The demo's computing and callbacks without a browser: a clip through a codec, token files
decoded, images, the metrics table, one message per bad input, and the `audiotok demo` flags.
The page in a real browser is tested in test_demo_browser.py."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import build, speechlike

from audiotok.cli import build_parser, main
from audiotok.demo import core as demo_core
from audiotok.demo.core import (
    decode_token_file,
    metrics_markdown,
    new_request_dir,
    read_clip,
    run_clip,
    spectrogram_images,
    token_grid_image,
)
from audiotok.errors import AudioError, TokenFileError
from audiotok.tokens import Tokens


@pytest.fixture(scope="module")
def codec():
    return build("seanet-conv")  # 8 kHz, 4 codebooks of 64


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_run_clip_writes_files_and_scores(codec, write_audio, out_dir):
    clip = write_audio("my clip.wav", seconds=1.2, sr=16000, channels=2)
    r = run_clip(codec, "tiny", clip, 2, out_dir, max_seconds=5)
    tokens = Tokens.load(r.token_file)
    assert tokens.codes.shape[:2] == (1, 2) and torch.equal(tokens.codes[0], r.codes)
    assert tokens.meta["source"] == "my clip.wav"
    ref, sr = sf.read(str(r.reference))
    rec, sr_rec = sf.read(str(r.reconstruction))
    assert sr == sr_rec == 8000 and len(ref) == len(rec) == len(r.ref) == round(1.2 * 8000)
    assert r.reconstruction.name == "my_clip.tiny.2cb.wav"
    m = r.metrics
    assert m["kbps"] == pytest.approx(codec.bitrate(2) / 1000)
    assert m["tokens_per_second"] == pytest.approx(codec.frame_rate * 2)
    assert np.isfinite(m["si_sdr"]) and m["mel_distance"] > 0 and m["pesq_nb"] is not None
    # An 8 kHz codec has no band for PESQ-WB or STOI: undefined, with the reason.
    assert m["pesq_wb"] is None and "16 kHz" in m["undefined"]["pesq_wb"]
    assert m["stoi"] is None


def test_read_clip_refuses_bad_uploads_in_one_line(codec, tmp_path, write_audio):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is text, not audio\n")
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    cases = {not_audio: "cannot decode audio", empty: "file is empty",
             write_audio("long.wav", seconds=3.0): "at most 2 s",
             write_audio("short.wav", seconds=0.1): "too short"}
    for path, message in cases.items():
        with pytest.raises(AudioError, match=message) as e:
            run_clip(codec, "tiny", path, 1, tmp_path, max_seconds=2)
        text = str(e.value)
        assert "\n" not in text and text.startswith(path.name + ":")
        assert str(tmp_path) not in text  # the server's temp folder is not shown to users


def test_read_clip_converts_rate_and_channels(codec, write_audio):
    wav = read_clip(write_audio("s.flac", seconds=0.5, sr=22050, channels=2), codec, 1.0)
    assert wav.shape == (1, 4000)


def test_decode_token_file_round_trip_and_errors(codec, write_audio, out_dir, tmp_path):
    r = run_clip(codec, "tiny", write_audio("a.wav", seconds=0.6), 3, out_dir, max_seconds=5)
    other = build("seanet-conv", seed=1)  # same shape, other weights
    d = decode_token_file(r.token_file, {"other": other, "tiny": codec}, out_dir, 5)
    assert d.codec == "tiny" and d.sample_rate == 8000 and d.note == ""
    assert np.allclose(sf.read(str(d.audio))[0], sf.read(str(r.reconstruction))[0], atol=1e-4)
    with pytest.raises(TokenFileError, match="does not serve.*serving: other"):
        decode_token_file(r.token_file, {"other": other}, out_dir, 5)
    with pytest.raises(TokenFileError, match="at most 0.5 s"):
        decode_token_file(r.token_file, {"tiny": codec}, out_dir, 0.5)
    batch = codec.encode(0.1 * torch.randn(2, 1, 1600), 2, lengths=torch.tensor([800, 1600]))
    batch.save(tmp_path / "batch.atok")
    d = decode_token_file(tmp_path / "batch.atok", {"tiny": codec}, out_dir, 5)
    assert "2 items" in d.note and d.wav.shape == (800,)
    garbage = tmp_path / "garbage.atok"
    garbage.write_bytes(b"RIFF not tokens at all")
    with pytest.raises(TokenFileError, match=r"^garbage.atok: not an audiotok token file"):
        decode_token_file(garbage, {"tiny": codec}, out_dir, 5)


def test_images(codec):
    wav = speechlike(0.5, 8000)[:, 0].astype(np.float64)
    ref, quiet = spectrogram_images([(wav, 8000, "ref"), (0.01 * wav, 8000, "")])
    assert ref.dtype == np.uint8 and ref.ndim == 3 and ref.shape[2] == 3
    assert quiet.mean() < ref.mean()  # one colour scale: a quieter copy looks darker
    codes = torch.randint(0, 64, (3, 40))
    grid = token_grid_image(codes, codec.codebook_sizes, codec.frame_rate)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3 and grid.shape[1] > grid.shape[0]


def test_metrics_markdown(codec, write_audio, out_dir):
    r = run_clip(codec, "tiny", write_audio("a.wav", seconds=0.6), 4, out_dir, max_seconds=5)
    table = metrics_markdown([r, r], ["A", "B"])
    assert table.splitlines()[0] == "| | A | B |"
    assert "| codec | tiny | tiny |" in table and "| PESQ-WB | n/a | n/a |" in table
    assert "n/a PESQ-WB: needs 16 kHz audio" in table
    assert "| codec |" not in metrics_markdown([r])


def test_request_dirs_are_pruned(tmp_path):
    old = new_request_dir(tmp_path)
    past = time.time() - 7200
    os.utime(old, (past, past))
    fresh = new_request_dir(tmp_path)
    assert fresh.is_dir() and not old.exists()


def test_default_codecs(monkeypatch, tmp_path):
    monkeypatch.setattr(demo_core, "bundled_models", dict)
    assert demo_core.default_codec_refs() == [str(demo_core.FALLBACK_RECIPE)]
    monkeypatch.setattr(demo_core, "bundled_models", lambda: {"audiotok/x": tmp_path})
    assert demo_core.default_codec_refs() == ["audiotok/x"]


# ------------------------------------------------------------------ callbacks and CLI
@pytest.fixture(scope="module")
def handlers(codec, tmp_path_factory):
    from audiotok.demo.app import DemoHandlers

    return DemoHandlers({"tiny": codec}, 5.0, tmp_path_factory.mktemp("work"))


def test_handlers_show_errors_as_status(handlers, tmp_path):
    assert handlers.listen(None, "tiny", 2)[0].startswith("**Error:** upload or record")
    bad = tmp_path / "x.wav"
    bad.write_text("text")
    out = handlers.compare(str(bad), "tiny", 2, "tiny", 1)
    assert len(out) == 8 and out[0].startswith("**Error:** x.wav: cannot decode audio")
    assert all(o is None for o in out[1:])
    assert "upload a token file" in handlers.decode(None)[0]


def test_handlers_listen_compare_decode(handlers, write_audio):
    clip = str(write_audio("c.wav", seconds=0.6))
    out = handlers.listen(clip, "tiny", 2)  # status, original, recon, 2 spectrograms, grid, ...
    assert len(out) == 8 and "at 2 codebooks" in out[0] and out[2].endswith(".2cb.wav")
    assert all(img.ndim == 3 for img in out[3:6])
    files = out[-1]
    assert [f.rsplit(".", 1)[1] for f in files] == ["atok", "wav"]
    out = handlers.compare(clip, "tiny", 4, "tiny", 1)
    assert out[0].startswith("A: **tiny** at 4") and "| codebooks | 4 | 1 |" in out[-1]
    status, audio, spec, grid = handlers.decode(files[0])
    assert spec.shape[2] == 3
    assert "with **tiny**: 2 codebooks" in status and audio.endswith(".wav") and grid.ndim == 3
    assert handlers.codec_changed("tiny", 9)[1].startswith("**4 of 4**")


def test_slider_keeps_to_the_counts_a_quantizer_accepts(tmp_path):
    """lfq's 4 codebooks code parallel bits of a frame: the slider is pinned to 4 (a lower
    count would be refused by encode), and a stale lower value is raised to it."""
    from audiotok import load_codec
    from audiotok.demo.app import DemoHandlers

    lfq = load_codec(str(Path(__file__).parents[1] / "recipes" / "designs" / "lfq_16k_tiny.yaml"))
    h = DemoHandlers({"lfq": lfq}, 5.0, tmp_path)
    slider, hint = h.codec_changed("lfq", 1)
    assert (slider.maximum, slider.value) == (4, 4)
    assert not slider.interactive and hint.startswith("**4 of 4**")
    assert h.codebooks_changed("lfq", 2).startswith("**4 of 4**")


def test_build_demo_notes_untrained_codecs(codec, tmp_path):
    import yaml
    from conftest import TINY

    from audiotok.demo.app import build_demo

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": TINY["seanet-conv"]}))
    demo = build_demo({"trained": codec, "r": recipe}, max_seconds=7, examples=[])
    text = str(demo.config)
    assert "`r` has untrained weights" in text and "`trained` has" not in text
    assert "up to 7 s" in text
    # Every codec run shares one queued worker; only the small slider/hint updates bypass it.
    queued = [fn for fn in demo.fns.values() if fn.queue]
    assert len(queued) == 3
    assert all(fn.concurrency_id == "codec" and fn.concurrency_limit == 1 for fn in queued)
    assert demo._queue.max_size == 64


def test_cli_flags_and_errors(capsys, tmp_path):
    args = build_parser().parse_args(["demo", "--codec", "a", "--codec", "b"])
    assert (args.codec, args.host, args.port, args.max_seconds, args.share) == (
        ["a", "b"], "127.0.0.1", None, 60.0, False)
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--max-seconds", "0"])
    assert stop.value.code == 2
    assert "--max-seconds: must be greater than 0" in capsys.readouterr().err
    # A bad --codec fails in one line before any server starts.
    assert main(["demo", "--codec", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audiotok: error: no codec") and err.count("\n") == 1
