"""`audiotok eval` end to end: a tiny codec, generated speech-like clips plus a silent and a
corrupt file, baselines when opus-tools/codec2 are installed, and the report files."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike

from audiotok.cli import main
from audiotok.codecs import load_codec

HAVE_TOOLS = all(shutil.which(t) for t in ("opusenc", "opusdec", "c2enc", "c2dec"))


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("codec") / "tiny"
    load_codec("recipes/tiny_speech_16k.yaml").save_pretrained(path)
    return path


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        sf.write(str(folder / f"speech{i}.wav"), speechlike(1.0, 16000, seed=i), 16000)
    sf.write(str(folder / "silent.wav"), np.zeros(16000, dtype=np.float32), 16000)
    (folder / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    return folder


def test_eval_report(tmp_path, capsys, codec_dir, clips):
    args = ["eval", "--codec", str(codec_dir), "--data", str(clips), "--n-codebooks", "2,8",
            "-o", str(tmp_path / "report")]
    if HAVE_TOOLS:
        args += ["--baselines", "opus,codec2"]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| tiny@2 | 1.000 | 100.0 |" in out
    report = tmp_path / "report"
    data = json.loads((report / "report.json").read_text())
    rows = {r["name"]: r for r in data["pooled"]}
    assert {"tiny@2", "tiny@8"} <= set(rows)
    for name in ("tiny@2", "tiny@8"):
        assert rows[name]["n_clips"] == 3
        assert len(rows[name]["token_stats"]["entropy_bits"]) == rows[name]["n_codebooks"]
        for m in ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance"):
            metric = rows[name]["metrics"][m]
            assert metric["n"] + metric["n_undefined"] == 3
    assert rows["tiny@2"]["kbps"] == pytest.approx(rows["tiny@8"]["kbps"] / 4)
    assert rows["tiny@8"]["tokens_per_second"] == pytest.approx(400)
    # each clip's delay in samples and ms; the row has their median, the table a column
    first = data["clips"][0]["systems"]["tiny@2"]
    assert first["delay_ms"] == pytest.approx(1000 * first["delay"] / 16000)
    assert isinstance(rows["tiny@2"]["delay_ms"], float) and "| delay (ms) |" in out
    excluded = {e["clip"]: e["reason"] for e in data["excluded"]}
    assert set(excluded) == {"silent.wav", "corrupt.flac"}
    assert "silent" in excluded["silent.wav"]
    assert "cannot decode audio" in excluded["corrupt.flac"]
    assert len(data["clips"]) == 3
    assert (report / "report.md").read_text().count("| tiny@") == 2
    assert "<img" in (report / "report.html").read_text()
    for png in [report / "quality.png", *report.glob("spectrogram_*.png")]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(report.glob("spectrogram_*.png"))
    assert not list(report.glob(".*tmp"))
    if not HAVE_TOOLS:
        pytest.skip("opusenc/c2enc not installed: baselines not checked")
    baselines = [r for r in data["pooled"] if r["kind"] == "baseline"]
    assert [r["name"] for r in baselines] == ["opus@6", "opus@8", "opus@12", "codec2@3200",
                                              "codec2@1600", "codec2@700C"]
    assert all(r["n_clips"] == 3 and r["metrics"]["stoi"]["mean"] is not None
               for r in baselines)
    assert rows["codec2@3200"]["kbps"] == pytest.approx(3.2, rel=0.05)
    assert abs(rows["opus@12"]["delay_ms"]) < 1  # opusdec removes Opus's pre-skip


def assert_one_line_error(code, err, match):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("audiotok: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], err


def test_eval_empty_folder(tmp_path, capsys, codec_dir):
    (tmp_path / "empty").mkdir()
    code = main(["eval", "--codec", str(codec_dir), "--data", str(tmp_path / "empty"),
                 "-o", str(tmp_path / "r")])
    assert_one_line_error(code, capsys.readouterr().err, "no usable audio found")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra,match", [
    (["--baselines", "mp3"], "unknown baseline 'mp3'"),
    (["--n-codebooks", "2,x"], "--n-codebooks: 'x' is not a whole number"),
    (["--n-codebooks", "0"], "must be at least 1"),
    (["--n-codebooks", "9"], "n_codebooks must be between 1 and 8"),
])
def test_eval_bad_arguments(tmp_path, capsys, codec_dir, clips, extra, match):
    code = main(["eval", "--codec", str(codec_dir), "--data", str(clips),
                 "-o", str(tmp_path / "r"), *extra])
    assert_one_line_error(code, capsys.readouterr().err, match)
    assert not (tmp_path / "r").exists()


def test_codec_labels_are_short_and_unique():
    from audiotok.eval.evaluate import codec_labels

    # a training run's export is named after its run; repeats are numbered
    assert codec_labels(["runs/speech_16k_env/model", "runs/other/model/", "audiotok/speech-16k",
                         "recipes/tiny_speech_16k.yaml", "a/ckpt", "b/ckpt"]) == [
        "speech_16k_env", "other", "speech-16k", "tiny_speech_16k", "ckpt-5", "ckpt-6"]
