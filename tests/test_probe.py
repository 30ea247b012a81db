"""`audiotok probe --task speaker|label|ctc`: DASB-style heads on frozen tokens of the bundled
codec and on log-mel features, trained on espeak-ng voices (speakers) saying phrases and
words, generated into a temp dir by scripts/prepare_probe_data.py. The probes must beat
chance by a clear margin, and the same probe on shuffled labels must not."""

import importlib.util
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import one_thread_fixture
from test_eval_report import assert_one_line_error

from audiotok.cli import main

ROOT = Path(__file__).resolve().parents[1]
CODEC = "audiotok/speech-16k"
pytestmark = [pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                 reason="needs espeak-ng (apt-get install espeak-ng)"),
              pytest.mark.filterwarnings("ignore::UserWarning")]


# Small heads run thousands of tiny ops: a second intra-op thread only adds
# synchronisation, which on a busy 2-core machine costs more than the ops.
one_thread = one_thread_fixture("function")


def _prepare():
    spec = importlib.util.spec_from_file_location("prepare_probe_data",
                                                  ROOT / "scripts" / "prepare_probe_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


@pytest.fixture(scope="module")
def phrases(tmp_path_factory):
    """6 voices x 10 four-word phrases: 6 phrases each to train on, 4 each to test (24 clips,
    chance 1/6). A "shuffled" key holds the speakers permuted over all clips, so it says
    nothing about the audio."""
    root = tmp_path_factory.mktemp("phrases")
    sets = _prepare().espeak_set(root, n_voices=6, n_phrases=10, n_words=0, test_phrases=4)
    clips = sets["speaker_train"] + sets["speaker_test"]
    labels = [c["speaker"] for c in clips]
    random.Random(0).shuffle(labels)
    for clip, label in zip(clips, labels):
        clip["shuffled"] = label
    n = len(sets["speaker_train"])
    return _write(root / "train.jsonl", clips[:n]), _write(root / "test.jsonl", clips[n:])


def _probe(args, tmp_path, capsys) -> tuple[dict, str]:
    out = tmp_path / "report"
    code = main(["probe", *args, "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "probe.json").read_text()), captured.out


def test_speaker_probe_beats_chance_shuffled_labels_do_not(phrases, tmp_path, capsys):
    train, test = phrases
    common = ["--codec", CODEC, "--n-codebooks", "2", "--train", str(train), "--test",
              str(test), "--head", "pool", "--steps", "150", "--dim", "64"]
    report, table = _probe(["--task", "speaker", *common], tmp_path, capsys)
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["speech-16k@2", "log-mel"]
    assert rows["speech-16k@2"]["kbps"] == pytest.approx(1.0)
    assert rows["speech-16k@2"]["tokens_per_second"] == pytest.approx(100)
    assert rows["log-mel"]["kind"] == "continuous" and rows["log-mel"]["kbps"] is None
    assert report["train"] == {"manifest": str(train), "clips": 36, "classes": 6}
    assert report["chance"]["uniform_accuracy"] == pytest.approx(1 / 6)
    assert report["chance"]["majority_accuracy"] == pytest.approx(4 / 24)
    # 24 test clips, 6 speakers: 15 right is 3.6 x chance; a guesser gets there with
    # probability ~1e-5
    for name, row in rows.items():
        assert row["metric"] == "accuracy" and row["n_test"] == 24
        assert row["value"] >= 0.6, (name, row)
        assert row["loss_end"] < row["loss_start"], (name, row)
    assert "| speech-16k@2 | 2 | 1.00 |" in table and "| log-mel | - | - |" in table
    assert (tmp_path / "report" / "probe.png").stat().st_size > 1000

    shuffled, _ = _probe(["--task", "label", "--label-key", "shuffled", *common],
                         tmp_path, capsys)
    assert shuffled["label_key"] == "shuffled"
    # the heads fit their training labels either way; on the test clips, 10 or more right
    # out of 24 at chance 1/6 happens with probability ~3e-3
    for row in shuffled["rows"]:
        assert row["value"] <= 0.42, row


@pytest.mark.slow
def test_ctc_probe_transcribes_unseen_voices(tmp_path_factory, tmp_path, capsys):
    """Six words said by 10 voices train a TDNN + CTC on the bundled codec's tokens; the
    other 2 voices are transcribed. The best constant output (e.g. "o") scores CER 0.9 on
    these words and an empty one 1.0, so CER < 0.75 needs the tokens."""
    root = tmp_path_factory.mktemp("words")
    sets = _prepare().espeak_set(root, n_voices=12, n_phrases=0, n_words=6, test_voices=2)
    train = _write(root / "train.jsonl", sets["word_train"])
    test = _write(root / "test.jsonl", sets["word_test"])
    report, table = _probe(["--task", "ctc", "--codec", CODEC, "--n-codebooks", "2",
                            "--train", str(train), "--test", str(test), "--no-baseline",
                            "--head", "tdnn", "--steps", "300", "--dim", "64", "--lr", "5e-3"],
                           tmp_path, capsys)
    (row,) = report["rows"]
    assert row["metric"] == "cer" and row["n_test"] == 12 and row["skipped_train"] == 0
    assert row["value"] < 0.75, row
    assert row["loss_end"] < 0.5 * row["loss_start"], row
    assert report["chance"] == {"empty_transcript_cer": 1.0}
    assert "| CER |" in table


# ---------------------------------------------------------------------- bad inputs
def _manifests(tmp_path, phrases, train_edit=None, test_edit=None) -> tuple[Path, Path]:
    train = [json.loads(x) for x in phrases[0].read_text().splitlines()]
    test = [json.loads(x) for x in phrases[1].read_text().splitlines()]
    for entries, edit in ((train, train_edit), (test, test_edit)):
        for e in entries:
            e["path"] = str(phrases[0].parent / e["path"])
            if edit:
                edit(e)
    return _write(tmp_path / "train.jsonl", train), _write(tmp_path / "test.jsonl", test)


def _drop_key(e):
    if e["path"].endswith("p3.wav"):
        del e["shuffled"]


def _one_class(e):
    e["shuffled"] = "same"


def _new_class(e):
    e["shuffled"] = "stranger"


def _missing_audio(e):
    e["path"] += ".gone"


@pytest.mark.parametrize("args,train_edit,test_edit,match", [
    (["--task", "label", "--label-key", "shuffled"], _drop_key, None,
     'no "shuffled" (--label-key shuffled needs one on every line)'),
    (["--task", "label", "--label-key", "shuffled"], _one_class, None,
     'needs at least 2 classes of "shuffled", found 1'),
    (["--task", "label", "--label-key", "shuffled"], None, _new_class,
     "never seen in"),
    (["--task", "label"], None, None, "--task label needs --label-key"),
    (["--task", "speaker", "--label-key", "x"], None, None, "--label-key is for --task label"),
    (["--task", "speaker"], _missing_audio, None, "no such file"),
    (["--task", "speaker", "--codec", CODEC, "--n-codebooks", "99"], None, None,
     "n_codebooks must be between 1 and 9"),
    (["--task", "speaker", "--shards", "x"], None, None, "--shards is for --task lm"),
    (["--task", "ctc", "--head", "pool"], None, None, "--head pool leaves no frames to align"),
])
def test_bad_downstream_inputs(phrases, tmp_path, capsys, args, train_edit, test_edit, match):
    train, test = _manifests(tmp_path, phrases, train_edit, test_edit)
    code = main(["probe", *args, "--train", str(train), "--test", str(test),
                 "-o", str(tmp_path / "out")])
    assert_one_line_error(code, capsys.readouterr().err, match)
    assert not (tmp_path / "out").exists()


def test_bad_probe_arguments(phrases, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "shards").mkdir()
    few = _write(tmp_path / "few.jsonl", [
        {**json.loads(line), "path": str(phrases[0].parent / json.loads(line)["path"])}
        for line in phrases[0].read_text().splitlines()[:5]])
    with pytest.raises(SystemExit) as exit_:  # argparse: usage errors exit 2
        main(["probe", "--task", "emotion"])
    assert_one_line_error(exit_.value.code, capsys.readouterr().err, "invalid choice: 'emotion'")
    cases = [
        (["--task", "ctc", "--train", str(few), "--test", str(few)],
         "too little data for CTC: 5 transcribed clips and"),
        (["--task", "speaker"], "--task speaker needs --train and --test"),
        (["--task", "lm"], "--task lm needs --shards"),
        (["--task", "lm", "--shards", str(tmp_path / "shards")], "no index.json"),
        (["--task", "lm", "--shards", str(tmp_path / "nowhere")], "no such folder"),
        (["--task", "lm", "--shards", str(tmp_path / "shards"), "--codec", CODEC],
         "--codec is for the downstream tasks"),
        (["--task", "lm", "--shards", str(tmp_path / "shards"), "-o", str(tmp_path / "file")],
         "a file is in the way"),
        (["--task", "lm", "--shards", str(tmp_path / "shards"), "--layouts", "zigzag"],
         "unknown layout 'zigzag'"),
    ]
    for args, match in cases:
        code = main(["probe", *args])
        assert_one_line_error(code, capsys.readouterr().err, match)


# ---------------------------------------------------------------------- the heads
@pytest.mark.parametrize("head", ["lstm", "tdnn", "pool"])
@pytest.mark.parametrize("ctc", [False, True])
def test_heads_score_an_item_the_same_alone_or_padded(head, ctc):
    from audiotok.probe.heads import CodeInput, ProbeModel

    if ctc and head == "pool":
        with pytest.raises(ValueError, match="CTC takes lstm or tdnn"):
            ProbeModel(CodeInput([16, 8], 12), head, 10, 5, ctc=True, dim=12)
        return
    torch.manual_seed(0)
    model = ProbeModel(CodeInput([16, 8], 12), head, 10, 5, ctc=ctc, dim=12).eval()
    codes = torch.stack([torch.randint(16, (3, 40)), torch.randint(8, (3, 40))], 1)
    lengths = torch.tensor([40, 23, 9])
    with torch.no_grad():
        batch = model(codes, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = model(codes[i:i + 1, :, :n], lengths[i:i + 1])[0]
            torch.testing.assert_close(batch[i, :n] if ctc else batch[i], alone,
                                       rtol=1e-4, atol=1e-5)
    if ctc:  # log-probabilities over the vocabulary plus blank
        torch.testing.assert_close(batch.exp().sum(-1), torch.ones(3, 40))


def test_code_embeddings_per_level():
    """Level k's code c is row offset_k + c of one table (DASB's Discrete_EmbeddingLayer);
    attention weights over the levels are a softmax, so equal embeddings come back as they
    are; sum and concat are what they say."""
    from audiotok.probe.heads import CodeInput

    torch.manual_seed(0)
    codes = torch.tensor([[[3, 0], [1, 7]]])                        # [B=1, K=2, T=2]
    summed = CodeInput([4, 8], 6, "sum")
    table = summed.table.weight
    torch.testing.assert_close(summed(codes)[0, 0], table[3] + table[4 + 1])
    torch.testing.assert_close(summed(codes)[0, 1], table[0] + table[4 + 7])
    att = CodeInput([4, 8], 6, "attention")
    with torch.no_grad():
        att.table.weight[3] = att.table.weight[4 + 1]
    torch.testing.assert_close(att(codes)[0, 0], att.table.weight[3])
    cat = CodeInput([4, 8], 6, "concat")
    torch.testing.assert_close(cat(codes)[0, 1], cat.proj(torch.cat([cat.table.weight[0],
                                                                      cat.table.weight[11]])))


def test_ctc_helpers():
    from audiotok.probe.downstream import ctc_frames_needed, greedy_decode

    vocab = [" ", "a", "b"]
    assert greedy_decode(torch.tensor([0, 2, 2, 0, 2, 3, 3, 1, 0, 3]), vocab) == "aab b"
    assert greedy_decode(torch.tensor([1, 2, 1, 1, 0, 1, 3, 1]), vocab) == "a b"
    assert greedy_decode(torch.tensor([0, 0]), vocab) == ""
    assert ctc_frames_needed([1, 1, 2]) == 4 and ctc_frames_needed([1, 2, 1]) == 3
