"""The command line through real files: round trips, info, and one test per bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
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
    for ext, subtype in (("ogg", "VORBIS"), ("opus", "OPUS")):
        sr = 48000 if ext == "opus" else 22050
        whole = write_audio(f"full.{ext}", seconds=2.9, sr=sr, format="OGG",
                            subtype=subtype).read_bytes()
        (tmp_path / f"trunc.{ext}").write_bytes(whole[: len(whole) // 2])
    nan = speechlike(0.5, 8000)
    nan[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, 8000, subtype="FLOAT")
    sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 1), dtype=np.float32), 8000)
    return {
        "missing.wav": "no such file", "empty.wav": "file is empty",
        "text.wav": "cannot decode audio", "trunc.wav": "truncated WAV",
        "corrupt.flac": "cannot decode audio", "nan.wav": "NaN",
        "zero.wav": "no samples", "trunc.ogg": "truncated Ogg", "trunc.opus": "truncated Ogg",
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


@pytest.mark.slow
def test_console_script_help():
    exe = Path(sys.executable).parent / "audiotok"
    for args in ([], ["encode", "--help"], ["decode", "--help"], ["info", "--help"]):
        res = subprocess.run([str(exe), *args], check=False, capture_output=True, text=True, timeout=120)
        assert "usage: audiotok" in res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-m", "audiotok", "--version"], check=False,
                         capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("audiotok ")


# ---------------------------------------------------------------- write errors
def test_a_write_error_does_not_stop_the_batch(tmp_path, capsys, recipe, write_audio):
    """The second output path is a directory: it is reported, the first and third are
    written, the exit code says something failed; the same for encode and decode."""
    srcs = [write_audio(f"c{i}.wav", seconds=0.3) for i in range(3)]
    (tmp_path / "tok" / "c1.atok").mkdir(parents=True)
    code, _, err = run(capsys, "encode", *srcs, "-o", tmp_path / "tok", "--codec", recipe)
    assert_one_line_error(code, err, "c1.atok: cannot write (a directory is in the way)")
    assert "1 of 3 files failed" in err
    assert all(Tokens.load(tmp_path / "tok" / f"c{i}.atok") for i in (0, 2))
    assert not [p for p in (tmp_path / "tok").iterdir() if p.name.startswith(".")]

    (tmp_path / "tok" / "c1.atok").rmdir()
    assert run(capsys, "encode", srcs[1], "-o", tmp_path / "tok" / "c1.atok", "--codec",
               recipe)[0] == 0
    (tmp_path / "wav" / "c1.wav").mkdir(parents=True)
    code, _, err = run(capsys, "decode", *sorted((tmp_path / "tok").glob("*.atok")), "-o",
                       tmp_path / "wav")
    assert_one_line_error(code, err, "c1.wav: cannot write (a directory is in the way)")
    assert sorted(p.name for p in (tmp_path / "wav").iterdir()) == ["c0.wav", "c1.wav",
                                                                     "c2.wav"]
    assert (tmp_path / "wav" / "c1.wav").is_dir()


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    import errno

    from audiotok.audio import save_audio
    from audiotok.errors import WriteError

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(WriteError, match=r"out\.wav: cannot write \(the disk is full\)"):
        save_audio(tmp_path / "out.wav", torch.zeros(1, 800), 8000)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_disk_full_on_a_real_file_system(tmp_path, capsys, recipe, write_audio):
    """A 64 kB tmpfs (needs root): decode of 3 s of 8 kHz audio (48 kB) fits once, not
    twice; the second file is reported as a full disk by name and leaves nothing behind."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        src = write_audio("a.wav", seconds=3.0)
        run(capsys, "encode", src, "-o", tmp_path / "a.atok", "--codec", recipe)
        code, _, err = run(capsys, "decode", tmp_path / "a.atok", "-o", disk / "one.wav")
        assert code == 0, err
        code, _, err = run(capsys, "decode", tmp_path / "a.atok", "-o", disk / "two.wav")
        assert_one_line_error(code, err, "two.wav: cannot write (the disk is full)")
        assert sorted(p.name for p in disk.iterdir()) == ["one.wav"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ---------------------------------------------------------------- numeric options
NUMERIC = [
    (["encode", "a.wav", "-o", "a.atok", "--chunk-seconds", "inf"], "expected a finite number"),
    (["encode", "a.wav", "-o", "a.atok", "--chunk-seconds", "nan"], "expected a finite number"),
    (["encode", "a.wav", "-o", "a.atok", "--chunk-seconds", "0"], "must be greater than 0"),
    (["encode", "a.wav", "-o", "a.atok", "--n-codebooks", "-1"], "must be at least 1"),
    (["decode", "a.atok", "-o", "a.wav", "--chunk-seconds", "-1"], "must be greater than 0"),
    (["tokenize", "x", "-o", "t", "--chunk-seconds", "inf"], "expected a finite number"),
    (["tokenize", "x", "-o", "t", "--chunk-seconds", "nan"], "expected a finite number"),
    (["tokenize", "x", "-o", "t", "--batch-seconds", "inf"], "expected a finite number"),
    (["tokenize", "x", "-o", "t", "--batch-seconds", "-1"], "must be at least 0"),
    (["tokenize", "x", "-o", "t", "--workers", "0"], "must be at least 1"),
    (["tokenize", "x", "-o", "t", "--shard-size", "0"], "must be at least 1"),
    (["tokenize", "x", "-o", "t", "--decode-workers", "two"], "expected a whole number"),
    (["detokenize", "t", "-o", "w", "--limit", "0"], "must be at least 1"),
    (["detokenize", "t", "-o", "w", "--chunk-seconds", "1e400"], "expected a finite number"),
    (["eval", "--data", "d", "-o", "r", "--max-clips", "0"], "must be at least 1"),
    (["demo", "--port", "70000"], "must be between 1 and 65535"),
    (["demo", "--max-seconds", "inf"], "expected a finite number"),
    (["kmeans", "--teacher", "t", "--data", "d", "-o", "u", "-k", "0"], "must be at least 1"),
    (["distill-cache", "r.yaml", "-o", "c", "--chunk-seconds", "nan"], "expected a finite"),
]


@pytest.mark.parametrize("args, match", NUMERIC, ids=[" ".join(a[-2:]) for a, _ in NUMERIC])
def test_numeric_options_are_checked_when_parsed(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"audiotok: error: {args[0]}: argument ")
    assert match in err and args[-2] in err, err
    assert not list(tmp_path.iterdir())  # nothing written: no plan, no folder


def test_api_refuses_non_finite_chunks(recipe):
    import math

    from audiotok import load_codec

    codec = load_codec(recipe)
    for bad in (math.inf, math.nan, 0.0):
        with pytest.raises(ValueError, match="chunk_seconds must be a positive finite"):
            codec.encode(torch.zeros(1, 1, 800), chunk_seconds=bad)


# ---------------------------------------------------------------- info reads little
def test_info_reads_the_header_and_streams_the_checksum(tmp_path, capsys, recipe, write_audio,
                                                        monkeypatch):
    """`info` never holds the codes in memory: it works with Tokens.load and whole-file
    reads disabled, and still finds a corrupt payload."""
    run(capsys, "encode", write_audio("x.wav"), "-o", tmp_path / "x.atok", "--codec", recipe)

    def forbidden(*a, **k):
        raise AssertionError("info read the whole file")

    monkeypatch.setattr(Tokens, "load", forbidden)
    monkeypatch.setattr(Path, "read_bytes", forbidden)
    code, out, err = run(capsys, "info", tmp_path / "x.atok")
    assert code == 0, err
    assert "shape [B,K,T]   [1, 4, 800]" in out
    monkeypatch.undo()
    data = bytearray((tmp_path / "x.atok").read_bytes())
    data[-1] ^= 0x10
    (tmp_path / "x.atok").write_bytes(bytes(data))
    code, _, err = run(capsys, "info", tmp_path / "x.atok")
    assert_one_line_error(code, err, "checksum mismatch")
