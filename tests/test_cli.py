"""The command line through real files: round trips, info, and one test per bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import TINY, speechlike

from audiotok.cli import main
from audiotok.tokens import Tokens


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model": TINY["seanet-conv"]}))
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, match):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("audiotok: error")]
    assert lines, err
    assert "Traceback" not in err
    assert match in err, err


@pytest.mark.parametrize("ext,sr,channels", [("wav", 8000, 1), ("flac", 44100, 2),
                                             ("ogg", 22050, 1), ("mp3", 16000, 2)])
def test_round_trip_formats(tmp_path, capsys, recipe, write_audio, ext, sr, channels):
    src = write_audio(f"clip.{ext}", seconds=0.7, sr=sr, channels=channels)
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "clip.atok", "--codec", recipe)
    assert code == 0, err
    tokens = Tokens.load(tmp_path / "clip.atok")
    assert tokens.codes.shape[:2] == (1, 4)
    expected = sf.info(str(src)).frames * 8000 / sr
    assert abs(int(tokens.num_samples[0]) - expected) <= 2
    code, _, err = run(capsys, "decode", tmp_path / "clip.atok", "-o", tmp_path / "out.wav")
    assert code == 0, err
    out, out_sr = sf.read(str(tmp_path / "out.wav"))
    assert out_sr == 8000 and out.ndim == 1 and len(out) == tokens.num_samples[0]


def test_many_files_into_directory(tmp_path, capsys, recipe, write_audio):
    srcs = [write_audio(f"c{i}.wav", seconds=0.2 + 0.1 * i) for i in range(3)]
    code, _, _ = run(capsys, "encode", *srcs, "-o", tmp_path / "tok", "--codec", recipe,
                     "--n-codebooks", 2)
    assert code == 0
    toks = sorted((tmp_path / "tok").glob("*.atok"))
    assert [p.stem for p in toks] == ["c0", "c1", "c2"]
    assert Tokens.load(toks[0]).codes.shape[1] == 2
    code, _, _ = run(capsys, "decode", *toks, "-o", tmp_path / "wav", "--format", "flac")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "wav").iterdir()) == [
        "c0.flac", "c1.flac", "c2.flac"]


def test_chunked_cli_matches_whole(tmp_path, capsys, recipe, write_audio):
    src = write_audio("long.wav", seconds=3.0)
    run(capsys, "encode", src, "-o", tmp_path / "a.atok", "--codec", recipe,
        "--chunk-seconds", 0.13)
    run(capsys, "encode", src, "-o", tmp_path / "b.atok", "--codec", recipe,
        "--chunk-seconds", 100)
    a, b = Tokens.load(tmp_path / "a.atok"), Tokens.load(tmp_path / "b.atok")
    assert a.codes.equal(b.codes)


def test_info(tmp_path, capsys, recipe, write_audio):
    code, out, _ = run(capsys, "info", recipe)
    assert code == 0
    assert "frame rate      800 Hz" in out and "n_codebooks" in out
    assert "19.200" in out  # 4 codebooks x 6 bits x 800 Hz
    run(capsys, "encode", write_audio("x.wav"), "-o", tmp_path / "x.atok", "--codec", recipe,
        "--n-codebooks", 3)
    code, out, _ = run(capsys, "info", tmp_path / "x.atok")
    assert code == 0
    assert "tokens/second   2400" in out and "bitrate         14.400 kbps" in out


def test_short_clip_is_padded_and_trimmed_back(tmp_path, capsys, recipe):
    sf.write(str(tmp_path / "tiny.wav"), np.full(3, 0.1, dtype=np.float32), 8000)
    code, _, err = run(capsys, "encode", tmp_path / "tiny.wav", "-o", tmp_path / "t.atok",
                       "--codec", recipe)
    assert code == 0, err
    assert Tokens.load(tmp_path / "t.atok").codes.shape[-1] == 1
    run(capsys, "decode", tmp_path / "t.atok", "-o", tmp_path / "t.wav")
    assert len(sf.read(str(tmp_path / "t.wav"))[0]) == 3


def bad_audio_files(tmp_path, write_audio):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 50)
    full = write_audio("full.wav", seconds=1.0).read_bytes()
    (tmp_path / "trunc.wav").write_bytes(full[: len(full) // 2])
    flac = write_audio("full.flac", seconds=1.0).read_bytes()
    (tmp_path / "corrupt.flac").write_bytes(flac[:200] + bytes(500) + flac[700:])
    nan = speechlike(0.5, 8000)
    nan[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, 8000, subtype="FLOAT")
    sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 1), dtype=np.float32), 8000)
    return {
        "missing.wav": "no such file", "empty.wav": "file is empty",
        "text.wav": "cannot decode audio", "trunc.wav": "truncated WAV",
        "corrupt.flac": "cannot decode audio", "nan.wav": "NaN",
        "zero.wav": "no samples",
    }


def test_bad_audio_inputs(tmp_path, capsys, recipe, write_audio):
    for name, message in bad_audio_files(tmp_path, write_audio).items():
        out = tmp_path / "out" / f"{name}.atok"
        code, _, err = run(capsys, "encode", tmp_path / name, "-o", out, "--codec", recipe)
        assert_one_line_error(code, err, message)
        assert not out.exists()
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_file_among_good_ones_keeps_going(tmp_path, capsys, recipe, write_audio):
    good = write_audio("good.wav")
    (tmp_path / "bad.wav").write_text("nope")
    code, _, err = run(capsys, "encode", tmp_path / "bad.wav", good, "-o", tmp_path / "o",
                       "--codec", recipe)
    assert code == 1 and "1 of 2 files failed" in err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["good.atok"]


def test_bad_token_files(tmp_path, capsys, recipe, write_audio):
    run(capsys, "encode", write_audio("a.wav"), "-o", tmp_path / "a.atok", "--codec", recipe)
    data = (tmp_path / "a.atok").read_bytes()
    (tmp_path / "trunc.atok").write_bytes(data[:-5])
    (tmp_path / "version.atok").write_bytes(data[:4] + b"\x09\x00" + data[6:])
    cases = {"trunc.atok": "truncated", "version.atok": "format version 9",
             "missing.atok": "no such token file"}
    for name, message in cases.items():
        code, _, err = run(capsys, "decode", tmp_path / name, "-o", tmp_path / "o.wav")
        assert_one_line_error(code, err, message)
        assert not (tmp_path / "o.wav").exists()


def test_tokens_of_another_codec(tmp_path, capsys, recipe, write_audio):
    run(capsys, "encode", write_audio("a.wav"), "-o", tmp_path / "a.atok", "--codec", recipe)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"model": TINY["dac"]}))
    code, _, err = run(capsys, "decode", tmp_path / "a.atok", "-o", tmp_path / "o.wav",
                       "--codec", other)
    assert_one_line_error(code, err, "made by codec 'seanet'")
    assert not (tmp_path / "o.wav").exists()


def test_usage_errors(tmp_path, capsys, recipe, write_audio):
    src = write_audio("a.wav")
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "a.atok", "--codec", recipe,
                       "--n-codebooks", 9)
    assert_one_line_error(code, err, "between 1 and 4")
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "a.atok", "--codec",
                       tmp_path / "nothing")
    assert_one_line_error(code, err, "no codec")
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "a.atok", "--codec", recipe,
                       "--device", "tpu9")
    assert_one_line_error(code, err, "unknown device 'tpu9'")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {**TINY["dac"], "sample_rte": 8000}}))
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "a.atok", "--codec", bad)
    assert_one_line_error(code, err, "did you mean 'sample_rate'")


def test_console_script_help():
    exe = Path(sys.executable).parent / "audiotok"
    for args in ([], ["encode", "--help"], ["decode", "--help"], ["info", "--help"]):
        res = subprocess.run([str(exe), *args], check=False, capture_output=True, text=True, timeout=120)
        assert "usage: audiotok" in res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-m", "audiotok", "--version"], check=False,
                         capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("audiotok ")
