"""`audiotok tokenize`: every format read back by the library its users stream with and
compared with `codec.encode` of each file alone; kill -9 and resume; two-process torchrun;
batching that does not change codes; one-line errors."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import build, one_thread_fixture, slow_commits_env, speechlike

from audiotok import load_codec
from audiotok.audio import load_audio
from audiotok.cli import main
from audiotok.tokenize.batching import encode_exact, group_by_length
from audiotok.tokenize.state import OutputDir, ShardLocks

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # datasets must not reach for the hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

BROKEN = {"broken.wav", "sub/truncated.wav", "sub/truncated.ogg"}


# Tiny codecs run many tiny convolutions: a second thread only adds synchronisation
# (and on a busy 2-core machine, spinning).
one_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Clips from 20 ms to 12 s (longer than a 10 s chunk), at other rates and channel
    counts, in subfolders, plus a file that is not audio and a truncated WAV."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "sub" / "deep").mkdir(parents=True)
    clips = {"a.wav": (0.02, 8000, 1), "b.flac": (0.7, 8000, 1), "c.wav": (1.1, 8000, 1),
             "d.wav": (1.15, 16000, 2), "sub/e.wav": (1.2, 8000, 1),
             "sub/deep/f.ogg": (2.6, 22050, 1), "sub/g.wav": (0.3, 8000, 1),
             "long.wav": (12.0, 8000, 1)}
    for i, (name, (seconds, sr, ch)) in enumerate(clips.items()):
        sf.write(str(folder / name), speechlike(seconds, sr, ch, seed=i), sr)
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-w", str(folder / "sub" / "speech.wav"),
                        "tokens for a speech model"], check=True)
    (folder / "broken.wav").write_bytes(b"RIFF....not audio at all")
    sf.write(str(folder / "sub" / "truncated.wav"), speechlike(1.0, 8000), 8000)
    data = (folder / "sub" / "truncated.wav").read_bytes()
    (folder / "sub" / "truncated.wav").write_bytes(data[: len(data) // 2])
    sf.write(str(folder / "sub" / "truncated.ogg"), speechlike(2.9, 22050), 22050)
    data = (folder / "sub" / "truncated.ogg").read_bytes()
    (folder / "sub" / "truncated.ogg").write_bytes(data[: len(data) // 2])
    return folder


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    return build("seanet-conv").save_pretrained(tmp_path_factory.mktemp("codec") / "tiny")


@pytest.fixture(scope="module")
def expected(corpus, codec_dir) -> dict[str, np.ndarray]:
    """id -> codes of `codec.encode` on that file alone: what every format must hold."""
    codec = load_codec(codec_dir)
    out = {}
    for path in sorted(corpus.rglob("*")):
        uid = path.relative_to(corpus).as_posix()
        if path.is_file() and uid not in BROKEN:
            wav, _ = load_audio(path, codec.sample_rate, codec.channels)
            out[uid] = codec.encode(wav[None]).codes[0].numpy()
    return out


def tokenize(*args) -> int:
    return main(["tokenize", *map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def parquet_out(corpus, codec_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parquet") / "tokens"
    assert tokenize(corpus, "-o", out, "--codec", codec_dir, "--shard-size", 3,
                    "--batch-seconds", 5) == 0
    return out


def check_failed(out: Path) -> None:
    failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
    assert {f["id"] for f in failed} == BROKEN
    reasons = {f["id"]: f["reason"] for f in failed}
    assert "cannot decode audio" in reasons["broken.wav"]
    assert "truncated WAV" in reasons["sub/truncated.wav"]
    assert "truncated Ogg" in reasons["sub/truncated.ogg"]


def test_parquet_opens_with_datasets(parquet_out, expected, codec_dir, tmp_path):
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(parquet_out / "*.parquet"),
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert sorted(ds["id"]) == sorted(expected)  # each input once, failures left out
    spec = load_codec(codec_dir).spec.to_dict()
    for row in ds:
        codes = np.array(row["codes"], dtype=np.uint16)
        assert np.array_equal(codes, expected[row["id"]]), row["id"]
        assert row["n_frames"] == codes.shape[1]
        assert json.loads(row["codec"]) == spec
    assert ds.features["codes"].feature.feature.dtype == "uint16"
    index = json.loads((parquet_out / "index.json").read_text())
    assert index["records"] == len(expected) and index["failed"] == len(BROKEN)
    assert index["codec"]["fingerprint"] == spec["fingerprint"]
    check_failed(parquet_out)


def test_rerun_of_a_finished_job_changes_nothing(parquet_out, corpus, codec_dir):
    files = {p: p.stat().st_mtime_ns for p in parquet_out.glob("*.parquet")}
    assert tokenize(corpus, "-o", parquet_out, "--codec", codec_dir, "--shard-size", 3) == 0
    assert {p: p.stat().st_mtime_ns for p in parquet_out.glob("*.parquet")} == files


def test_detokenize_gives_codec_decode(parquet_out, corpus, codec_dir, tmp_path):
    codec = load_codec(codec_dir)
    ids = ["sub/deep/f.ogg", "c.wav"]
    assert main(["detokenize", str(parquet_out), "-o", str(tmp_path), "--ids", *ids]) == 0
    for uid in ids:
        wav, _ = load_audio(corpus / uid, codec.sample_rate, codec.channels)
        want = codec.decode(codec.encode(wav[None]))[0, 0].clamp(-1, 1).numpy()
        got, sr = sf.read(str(tmp_path / (uid if uid.endswith(".wav") else f"{uid}.wav")),
                          dtype="float32")
        assert sr == codec.sample_rate and got.shape == want.shape
        assert np.abs(got - want).max() < 2 / 32768  # 16-bit PCM rounding


def test_detokenize_reports_a_bad_record_and_goes_on(parquet_out, tmp_path, capsys):
    """One id's output path is taken by a folder: that id is reported, the others are
    written, and the exit status says something failed."""
    ids = ["b.flac", "c.wav", "sub/e.wav"]
    (tmp_path / "c.wav").mkdir()
    assert main(["detokenize", str(parquet_out), "-o", str(tmp_path), "--ids", *ids]) == 1
    err = capsys.readouterr().err
    assert "audiotok: error: c.wav: " in err and "a directory is in the way" in err, err
    assert "decoded 2 utterances" in err and "1 failed" in err
    assert (tmp_path / "b.flac.wav").is_file() and (tmp_path / "sub" / "e.wav").is_file()


def write_manifest(corpus: Path, path: Path) -> list[dict]:
    lines = []
    for i, name in enumerate(["c.wav", "sub/e.wav", "b.flac", "broken.wav", "missing.wav"]):
        entry = {"path": f"{corpus}/{name}", "speaker": f"spk{i % 2}", "text": f"utt {i}"}
        if i == 0:
            entry.update(id="first", duration=1.1, extra={"tags": ["x", "y"]})
        if i == 2:
            entry["speaker"] = None
        lines.append(entry)
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    return lines


def test_webdataset_from_manifest_carries_metadata(corpus, codec_dir, expected, tmp_path):
    import webdataset as wds

    entries = write_manifest(corpus, tmp_path / "train.jsonl")
    out = tmp_path / "wds"
    assert tokenize(tmp_path / "train.jsonl", "-o", out, "--codec", codec_dir,
                    "--format", "webdataset", "--shard-size", 2) == 0
    urls = [str(out / s["file"]) for s in json.loads((out / "index.json").read_text())["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    by_id = {s["json"]["id"]: s for s in samples}
    assert set(by_id) == {"first", f"{corpus}/b.flac", f"{corpus}/sub/e.wav"}
    for entry in entries[:3]:
        sample = by_id[entry.get("id", entry["path"])]
        rel = Path(entry["path"]).relative_to(corpus).as_posix()
        assert sample["codes.npy"].dtype == np.uint16
        assert np.array_equal(sample["codes.npy"], expected[rel])
        meta = sample["json"]
        assert {k: meta[k] for k in entry if k != "id"} == {k: v for k, v in entry.items()
                                                             if k != "id"}
        assert meta["n_frames"] == expected[rel].shape[1]
    failed = {json.loads(x)["path"] for x in (out / "failed.jsonl").read_text().splitlines()}
    assert failed == {f"{corpus}/broken.wav", f"{corpus}/missing.wav"}


def test_parquet_metadata_columns_are_typed(corpus, codec_dir, tmp_path):
    import pyarrow.parquet as pq

    write_manifest(corpus, tmp_path / "m.jsonl")
    out = tmp_path / "pq"
    assert tokenize(tmp_path / "m.jsonl", "-o", out, "--codec", codec_dir) == 0
    table = pq.read_table(out / "shard-00000.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert types["text"] == "string" and types["duration"] == "double"
    assert str(table.schema.field("codes").type.value_type.value_type) == "uint16"  # [K][T]
    rows = {r["id"]: r for r in table.to_pylist()}
    assert json.loads(rows["first"]["extra"]) == {"tags": ["x", "y"]}  # nested: JSON text
    assert rows[f"{corpus}/b.flac"]["speaker"] is None


@pytest.mark.slow
@pytest.mark.parametrize("processes", [True, False])
def test_npy_from_glob_with_two_workers(corpus, codec_dir, expected, tmp_path, processes):
    out = tmp_path / "npy"
    assert tokenize(f"{corpus}/**/*.wav", "-o", out, "--codec", codec_dir, "--format", "npy",
                    "--shard-size", 2, "--workers", 2,
                    *(["--worker-processes"] if processes else [])) == 0
    wavs = {k for k in expected if k.endswith(".wav")}
    lines = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(wavs)
    for r in lines:
        codes = np.load(out / r["file"])
        assert codes.dtype == np.uint16 and np.array_equal(codes, expected[r["id"]])
    workers = {json.loads(m.read_text())["worker"]
               for m in (out / ".audiotok" / "done").glob("*.json")}
    assert workers == ({0, 1} if processes else {0})  # threads: one process writes


@pytest.mark.slow
def test_kill_and_resume(corpus, codec_dir, expected, tmp_path):
    out = tmp_path / "tokens"
    args = [sys.executable, "-m", "audiotok", "tokenize", str(corpus), "-o", str(out),
            "--codec", str(codec_dir), "--shard-size", "1", "--workers", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # every commit takes a while, so kills land mid-job
    proc = subprocess.Popen(args, env={**slow_commits_env(tmp_path), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = out / ".audiotok" / "done"
    deadline = time.time() + 120
    while not (done.is_dir() and any(done.glob("*.json"))) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.5))
    proc.send_signal(signal.SIGKILL)
    log = proc.communicate()[0]
    n_shards = len(expected) + len(BROKEN)
    assert 0 < len(list(done.glob("*.json"))) < n_shards, log
    assert not (out / "index.json").exists()
    # the workers died with their parent (PDEATHSIG): communicate() saw every holder of the
    # output pipe exit, so their shard locks are free now
    locks = ShardLocks(OutputDir(out, "parquet"))
    assert all(locks.claim(s) for s in range(n_shards))
    locks.close()

    # the same job resumed with another worker count (the plan does not depend on it)
    args[args.index("--workers") + 1] = "1"
    res = subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    import pyarrow.parquet as pq

    ids = []
    for shard in sorted(out.glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            ids.append(row["id"])
            assert np.array_equal(np.array(row["codes"]), expected[row["id"]])
    assert sorted(ids) == sorted(expected)  # every input once: no duplicates, none missing
    check_failed(out)


@pytest.mark.slow
def test_torchrun_two_ranks_cover_disjoint_shards(corpus, codec_dir, expected, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "audiotok", "tokenize", str(corpus), "-o", str(out), "--codec", str(codec_dir),
           "--shard-size", "2", "--no-progress"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout + res.stderr
    markers = [json.loads(m.read_text()) for m in (out / ".audiotok" / "done").glob("*.json")]
    n_shards = -(-(len(expected) + len(BROKEN)) // 2)
    assert sorted(m["shard"] for m in markers) == list(range(n_shards))
    assert all(m["worker"] == m["shard"] % 2 for m in markers)  # rank r wrote shards r, r+2..

    ids = {}
    for m in markers:
        for row in pq.read_table(out / m["file"]).to_pylist():
            assert row["id"] not in ids, f"{row['id']} in shards {ids[row['id']]} and {m}"
            ids[row["id"]] = m["shard"]
            assert np.array_equal(np.array(row["codes"]), expected[row["id"]])
    assert sorted(ids) == sorted(expected)
    assert {ids[i] % 2 for i in ids} == {0, 1}  # both ranks did work


@pytest.mark.parametrize("name", ["seanet-conv", "seanet-causal", "dac", "fsq-stereo",
                                  "seanet-lstm", "wavtokenizer"])
def test_batched_encoding_equals_encoding_each_alone(name):
    codec = build(name)
    torch.manual_seed(1)
    hop = codec.hop_length
    lengths = [1, hop - 3, 5 * hop, 37 * hop + 1, 40 * hop, 41 * hop - 1, 120 * hop + 7]
    wavs = [torch.from_numpy(speechlike(n / 8000 + 0.01, 8000, codec.channels, seed=n)[:n].T)
            for n in lengths]
    got = encode_exact(codec, wavs, None, chunk_seconds=0.5)
    for wav, codes in zip(wavs, got):
        assert torch.equal(codes, codec.encode(wav[None], chunk_seconds=0.5).codes[0]), (
            name, wav.shape)


def test_length_groups_bound_padding():
    rng = random.Random(0)
    lengths = [rng.randint(100, 10000) for _ in range(300)]
    groups = group_by_length(lengths, budget=20000, max_padding=0.1)
    assert sorted(i for g in groups for i in g) == list(range(300))
    for g in groups:
        longest = max(lengths[i] for i in g)
        assert len(g) == 1 or len(g) * longest <= 20000
        assert min(lengths[i] for i in g) >= 0.9 * longest


def test_errors_are_one_line(corpus, codec_dir, tmp_path, capsys):
    def error(*args) -> str:
        capsys.readouterr()
        assert tokenize(*args) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("audiotok: error: ")
        return err

    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    assert "no audio files found" in error(tmp_path / "empty", "-o", out, "--codec", codec_dir)
    assert "no such folder" in error(tmp_path / "nope", "-o", out, "--codec", codec_dir)
    assert "matches no audio" in error(f"{tmp_path}/*.flac", "-o", out, "--codec", codec_dir)
    (tmp_path / "dup.jsonl").write_text('{"path": "a.wav", "id": "x"}\n'
                                        '{"path": "b.wav", "id": "x"}\n')
    assert "appears twice" in error(tmp_path / "dup.jsonl", "-o", out, "--codec", codec_dir)
    (tmp_path / "bad.jsonl").write_text('{"path": "a.wav", "codes": 1}\n')
    assert "output column" in error(tmp_path / "bad.jsonl", "-o", out, "--codec", codec_dir)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "not empty" in error(corpus, "-o", tmp_path / "busy", "--codec", codec_dir)

    assert tokenize(corpus / "c.wav", "-o", out, "--codec", codec_dir) == 0
    assert "different tokenize job (format was" in error(corpus / "c.wav", "-o", out,
                                                         "--codec", codec_dir, "--format", "npy")
    assert "(n_codebooks was 4, now 2)" in error(corpus / "c.wav", "-o", out, "--codec",
                                                 codec_dir, "--n-codebooks", "2")
    other = build("seanet-conv", seed=3).save_pretrained(tmp_path / "other")
    assert "(codec was" in error(corpus / "c.wav", "-o", out, "--codec", other)
    assert "(inputs was" in error(corpus / "b.flac", "-o", out, "--codec", codec_dir)
    assert main(["detokenize", str(tmp_path / "busy"), "-o", str(tmp_path / "w")]) == 1
    assert "not a tokenize output folder" in capsys.readouterr().err



def test_encoding_threads_share_batches_and_stop_on_the_first_error():
    import threading

    from audiotok.tokenize.run import _run_threads

    seen: dict[int, set] = {}
    both = threading.Barrier(2, timeout=10)

    def step(b):
        seen.setdefault(b, set()).add(threading.get_ident())
        if b < 2:
            both.wait()  # the first two batches are only done once two threads hold them
        assert torch.is_inference_mode_enabled()

    _run_threads(iter(range(10)), step, 2)
    assert sorted(seen) == list(range(10))
    assert len(set().union(*seen.values())) == 2  # both threads worked

    done = []

    def failing(b):
        if b == 3:
            raise ValueError("bad batch 3")
        done.append(b)

    with pytest.raises(ValueError, match="bad batch 3"):
        _run_threads(iter(range(1000)), failing, 2)
    assert len(done) < 10  # the others stopped after their batch in hand
