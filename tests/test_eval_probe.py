"""`audiotok eval --probe-units`: per-level content probe of each codec against SSL k-means
units fitted with `audiotok kmeans` on a tiny random HuBERT saved to a temp dir (nothing is
downloaded)."""

import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike
from test_eval_report import assert_one_line_error

from audiotok.cli import main

os.environ["HF_HUB_OFFLINE"] = "1"  # a wrong teacher path must fail, never fetch
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SSL = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 32, "conv_dim": (8, 8), "conv_stride": (5, 64),
       "conv_kernel": (10, 64), "num_conv_pos_embeddings": 16,
       "num_conv_pos_embedding_groups": 2}


def small_codec(n_codebooks):
    """The tiny recipe, thinner (same code paths, faster on a busy CPU)."""
    from audiotok.codecs.base import Codec
    from audiotok.recipe import load_recipe

    model = load_recipe("recipes/tiny_speech_16k.yaml")["model"]
    model["encoder"]["n_filters"] = model["decoder"]["n_filters"] = 4
    model["quantizer"].update(n_codebooks=n_codebooks, codebook_size=64)
    torch.manual_seed(0)
    return Codec.from_config(model).eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two tiny codecs (8 and 4 levels), a manifest of three 0.6 s clips (two speakers) plus a
    silent one (a third speaker, excluded from scoring), and 8 k-means units of a tiny
    HuBERT's layer 2."""
    from transformers import HubertConfig, HubertModel

    root = tmp_path_factory.mktemp("probe")
    torch.manual_seed(0)
    HubertModel(HubertConfig(**SSL)).save_pretrained(root / "hubert")
    small_codec(8).save_pretrained(root / "tiny")
    small_codec(4).save_pretrained(root / "tiny4")
    clips = root / "clips"
    clips.mkdir()
    lines = []
    for i in range(3):
        sig = np.roll(speechlike(0.6, 16000, seed=i), 900 * i, axis=0) * (0.6 + 0.2 * i)
        sf.write(str(clips / f"speech{i}.wav"), sig, 16000)
        lines.append({"path": f"speech{i}.wav", "speaker": f"s{i % 2}"})
    sf.write(str(clips / "silent.wav"), np.zeros(9600, dtype=np.float32), 16000)
    lines.append({"path": "silent.wav", "speaker": "s9"})
    (clips / "test.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    units = root / "units.safetensors"
    assert main(["kmeans", "--teacher", str(root / "hubert"), "--data", str(clips), "-k", "8",
                 "--layers", "2", "-o", str(units), "--batch-frames", "60"]) == 0
    return root, clips / "test.jsonl", units


def test_eval_content_probe(tmp_path, capsys, setup):
    from audiotok.audio import load_audio
    from audiotok.codecs.loading import load_pretrained
    from audiotok.distill.probe import content_probe
    from audiotok.eval.report import probe_table_rows

    root, manifest, units = setup
    out = tmp_path / "report"
    # tiny (8 levels) is probed with its own full-depth encode; tiny4's @4 codes are reused
    code = main(["eval", "--codec", str(root / "tiny"), "--codec", str(root / "tiny4"),
                 "--data", str(manifest), "--n-codebooks", "4", "--probe-units", str(units),
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "report.json").read_text())
    assert data["config"]["probe_units"] == str(units)
    assert [e["clip"] for e in data["excluded"]] == ["silent.wav"]
    rows = {r["name"]: r for r in data["pooled"]}
    scored = [load_audio(manifest.parent / f"speech{i}.wav", 16000, 1)[0] for i in range(3)]
    for label, levels in (("tiny", 8), ("tiny4", 4)):
        assert set(rows) == {"tiny@4", "tiny4@4"}
        probe = rows[f"{label}@4"]["content_probe"]
        assert probe["units"] == 8 and probe["frames"] == 3 * 30  # the silent clip left out
        assert probe["speakers"] == 2 and probe["speaker_frames"] == 3 * 30
        assert probe["teacher"]["layers"] == [2]
        assert [lv["level"] for lv in probe["levels"]] == list(range(levels))
        for lv in probe["levels"]:
            for key in ("mi_bits", "chance_bits", "mi_above_chance_bits", "nmi",
                        "speaker_mi_bits"):
                assert isinstance(lv[key], float) and math.isfinite(lv[key]), (key, lv)
            assert 0 <= lv["nmi"] <= 1 + 1e-9
        # the same numbers as the library probe over the scored clips only
        direct = content_probe(load_pretrained(root / label), scored, units, ["s0", "s1", "s0"])
        for a, b in zip(probe["levels"], direct["levels"], strict=True):
            assert a["mi_bits"] == pytest.approx(b["mi_bits"], abs=1e-9)
            assert a["chance_bits"] == pytest.approx(b["chance_bits"], abs=1e-9)
            assert a["speaker_mi_bits"] == pytest.approx(b["speaker_mi_bits"], abs=1e-9)
    md = (out / "report.md").read_text()
    assert md.count("## Content per level") == 1
    assert "| codec | level | MI units (bits above chance) | NMI units | MI speaker (bits) |" in md
    assert all(f"| tiny | {k} |" in md for k in range(8))
    assert all(f"| tiny4 | {k} |" in md for k in range(4)) and "| tiny4 | 4 |" not in md
    assert "Content per level" in (out / "report.html").read_text()
    bare = [{k: v for k, v in r.items() if k != "content_probe"} for r in data["pooled"]]
    assert probe_table_rows(bare) == []  # no probe, no table


def _bad_units(kind, root, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    if kind == "missing":
        return tmp_path / "nope.safetensors"
    if kind == "garbage":
        path.write_bytes(b"not a safetensors file" * 20)
    elif kind == "no_teacher":
        save_file({"centroids": torch.zeros(8, 16)}, str(path))
    elif kind == "wrong_dim":
        teacher = json.dumps({"path": str(root / "hubert"), "layers": [2]})
        save_file({"centroids": torch.randn(8, 5)}, str(path), metadata={"teacher": teacher})
    elif kind == "gone_teacher":
        teacher = json.dumps({"path": str(tmp_path / "deleted_hubert"), "layers": [2]})
        save_file({"centroids": torch.randn(8, 16)}, str(path), metadata={"teacher": teacher})
    return path


@pytest.mark.parametrize("kind,match", [
    ("missing", "no such k-means units file"),
    ("garbage", "not a readable k-means units file"),
    ("no_teacher", "no teacher recorded"),
    ("wrong_dim", "centroids have 5 dimensions but teacher"),
    ("gone_teacher", "cannot load it with transformers"),
])
def test_eval_bad_probe_units(tmp_path, capsys, setup, kind, match):
    root, manifest, _ = setup
    code = main(["eval", "--codec", str(root / "tiny"), "--data", str(manifest),
                 "--probe-units", str(_bad_units(kind, root, tmp_path)),
                 "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, match)
    assert "eval:" not in err  # failed before the first clip
    assert not (tmp_path / "r").exists()


def test_eval_probe_needs_a_codec(tmp_path, capsys, setup):
    _, manifest, units = setup
    code = main(["eval", "--baselines", "opus", "--data", str(manifest),
                 "--probe-units", str(units), "-o", str(tmp_path / "r")])
    assert_one_line_error(code, capsys.readouterr().err, "give at least one --codec")
