"""`audiotok probe --task lm`: a small causal transformer per token layout (audiotok.lm's
flatten, delay, group) on tokenize shards, scored in bits per second of held-out audio.

The corpus is synthetic with a known answer: level 0 is uniform over 8 codes and
independent from frame to frame (3 bits a frame), level 1 copies level 0 (no information),
at 50 frames a second. Every layout must get close to 150 bits/s and cannot honestly go
below it, while every context-free figure sits at 300."""

import json

import numpy as np
import pytest
import torch
from conftest import one_thread_fixture
from test_eval_report import assert_one_line_error

from audiotok.cli import main
from audiotok.probe.lm_layouts import LAYOUTS, InputIds, layout_streams

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FRAME_RATE = 50  # 16 kHz, hop 320


one_thread = one_thread_fixture("function")


def write_shards(out, codes: list[np.ndarray], sizes, strides=()):
    """A finished tokenize output folder (parquet shard + index.json) holding `codes`."""
    from audiotok.tokenize.writers import FORMATS, Record
    from audiotok.tokens import CodecSpec

    out.mkdir(parents=True)
    spec = CodecSpec("synthetic", 16000, 1, 320, tuple(sizes), level_strides=tuple(strides)
                     ).to_dict()
    records = [Record(f"utt{i:03d}", c.astype(np.uint16), c.shape[1] * 320, {}, i)
               for i, c in enumerate(codes)]
    FORMATS["parquet"].write(out / "shard-00000.parquet", records, spec, {})
    (out / "index.json").write_text(json.dumps({
        "index_version": 1, "format": "parquet", "codec": spec, "codec_ref": None,
        "n_codebooks": len(sizes), "columns": {}, "records": len(records), "failed": 0,
        "shards": [{"file": "shard-00000.parquet", "records": len(records)}]}))
    return out


@pytest.fixture(scope="module")
def copy_corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    codes = []
    for _ in range(40):
        a = rng.integers(0, 8, 100)
        codes.append(np.stack([a, a]))
    return write_shards(tmp_path_factory.mktemp("lm") / "tokens", codes, [8, 8])


def test_lm_probe_finds_the_known_entropy(copy_corpus, tmp_path, capsys):
    from audiotok.probe.lm_probe import split_utterances

    out = tmp_path / "report"
    code = main(["probe", "--task", "lm", "--shards", str(copy_corpus), "--steps", "150",
                 "--dim", "32", "--context", "64", "--held-out", "0.2", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "probe.json").read_text())
    ids = [f"utt{i:03d}" for i in range(40)]
    train, held = split_utterances(ids, 0.2, 0)
    assert report["held_out_ids"] == [ids[j] for j in held]
    assert report["utterances"] == {"train": len(train), "held_out": len(held)}
    assert report["held_out_seconds"] == pytest.approx(len(held) * 100 / FRAME_RATE)
    base = report["baselines"]
    assert base["nominal"]["bits_per_second"] == pytest.approx(300)
    # context-free: both levels look uniform, 3 bits each
    assert base["unigram_cross_entropy"]["bits_per_second"] == pytest.approx(300, abs=8)
    assert set(report["layouts"]) == set(LAYOUTS)
    for name, row in report["layouts"].items():
        # 2 levels x 50 frames/s: bits per second = bits per token x 100 tokens per second
        assert row["bits_per_second"] == pytest.approx(100 * row["bits_per_token"])
        level0, level1 = row["bits_per_frame_by_level"]
        assert row["bits_per_second"] == pytest.approx((level0 + level1) * FRAME_RATE)
        # ~700 held-out uniform codes: a model trained without them cannot beat 3 bits by
        # more than noise (~0.01 bits); the copy must have been learnt
        assert 2.9 <= level0 <= 3.5, (name, row)
        assert level1 < 0.5, (name, row)
        assert 145 <= row["bits_per_second"] <= 180, (name, row)
    # 64 steps of context: 32 frames interleaved, 64 delayed or per group
    assert report["layouts"]["flatten"]["context_seconds"] == pytest.approx([0.64])
    assert report["layouts"]["delay"]["context_seconds"] == pytest.approx([1.28])
    assert report["layouts"]["group"]["context_seconds"] == pytest.approx([1.28, 1.28])
    assert report["layouts"]["group"]["groups"] == [1, 1]
    assert len(report["layouts"]["group"]["training"]) == 2   # one model per group
    assert "| delay LM |" in captured.out and "| nominal (context-free) |" in captured.out


def _perturbed(codes, k, t, sizes):
    other = codes.clone()
    other[k, t] = (other[k, t] + 1) % sizes[k]
    return other


@pytest.mark.parametrize("layout,groups", [("flatten", None), ("delay", None),
                                           ("group", [1, 2]), ("group", [2, 1])])
def test_layouts_predict_each_code_once_from_the_past(layout, groups):
    """Change one code: exactly one target changes (so each code is predicted once), the
    stream that predicts it sees the change only at later steps, and earlier groups' streams
    do not see it at all: the summed cross-entropy is a code length by the chain rule."""
    sizes = (4, 3, 5)
    ids = InputIds(sizes)
    torch.manual_seed(0)
    codes = torch.stack([torch.randint(s, (7,)) for s in sizes])
    base = layout_streams(layout, codes, ids, groups)
    for st in base:
        assert st.targets.shape[1] == 3 and st.inputs.shape[0] == st.targets.shape[0]
    total = sum(int((st.targets >= 0).sum()) for st in base)
    assert total == codes.numel()
    for k in range(3):
        for t in range(7):
            changed = layout_streams(layout, _perturbed(codes, k, t, sizes), ids, groups)
            diffs = [(g, s) for g, (a, b) in enumerate(zip(base, changed))
                     for s in (a.targets != b.targets).any(-1).nonzero()[:, 0].tolist()]
            assert len(diffs) == 1, (k, t, diffs)
            g, step = diffs[0]
            assert int(changed[g].targets[step, k]) == int(_perturbed(codes, k, t, sizes)[k, t])
            seen = (base[g].inputs != changed[g].inputs).any(-1).nonzero()[:, 0]
            assert (seen > step).all(), (k, t, step, seen)
            for earlier in range(g):
                assert torch.equal(base[earlier].inputs, changed[earlier].inputs)


def test_split_is_by_utterance_and_seed():
    from audiotok.probe.lm_probe import split_utterances

    ids = [f"u{i}" for i in range(200)]
    train, held = split_utterances(ids, 0.1, 0)
    assert sorted(train + held) == list(range(200)) and 8 <= len(held) <= 35
    assert split_utterances(ids, 0.1, 0) == (train, held)
    assert split_utterances(ids, 0.1, 1)[1] != held
    # membership depends on the id alone: more utterances never move old ones
    _, more_held = split_utterances(ids + [f"v{i}" for i in range(50)], 0.1, 0)
    assert [j for j in more_held if j < 200] == held
    assert split_utterances(["a", "b"], 0.01, 0)[1] and split_utterances(["a", "b"], 0.99, 0)[0]


def test_bad_lm_inputs(copy_corpus, tmp_path, capsys):
    one = write_shards(tmp_path / "one", [np.zeros((2, 10), np.int64)], [8, 8])
    multi = write_shards(tmp_path / "multi", [np.zeros((2, 8), np.int64)] * 3, [8, 8], [2, 1])
    cases = [
        ([str(copy_corpus), "--groups", "1,5"], "must be positive and sum to the corpus's 2"),
        ([str(one)], "1 non-empty utterance(s)"),
        ([str(multi)], "multi-rate codes"),
    ]
    for (shards, *rest), match in cases:
        out = tmp_path / "out"
        code = main(["probe", "--task", "lm", "--shards", shards, *rest, "--steps", "1",
                     "-o", str(out)])
        assert_one_line_error(code, capsys.readouterr().err, match)
        assert not out.exists()
