"""kill -9 of `audiotok tokenize` or `train` at any moment of start-up or work leaves no
process behind: loader workers, tokenize workers and multiprocessing's resource tracker all
exit, so a wrapper reading the command's output pipe sees it close.

Each run starts in a session of its own; the processes of that session are its descendants
(none of ours calls setsid), found through /proc."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from conftest import build, slow_commits_env, speechlike

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

ROOT = Path(__file__).resolve().parent.parent
SMALL_TRAIN = [
    "model.encoder.n_filters=4", "model.decoder.n_filters=4", "model.latent_dim=16",
    "model.quantizer.n_codebooks=2", "model.quantizer.codebook_size=64",
    "discriminators=[{type: mpd, periods: [2, 3], channels: [4, 8, 8, 8, 8]}]",
    "train.batch_size=2", "train.val_every=0", "train.log_every=1", "train.ckpt_every=3",
    "data.segment_seconds=0.25", "data.num_workers=2", "train.steps=100000",
]


def session(sid: int) -> list[str]:
    """Live (not zombie) processes of session `sid`, as 'pid command'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] not in "ZX":
            found.append(f"{entry.name} {cmd}")
    return found


def kill_when(args, ready, what: str, tmp) -> None:
    """Start `audiotok ARGS`, SIGKILL it once `ready(n_processes)` holds, then require its
    output pipe to close and every process of its session to be gone within seconds."""
    # commits take 0.25 s each: the job outlasts every moment below on a machine of any speed
    env = {**slow_commits_env(tmp), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "audiotok", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 180
    while not ready(len(session(proc.pid))) and proc.poll() is None:
        assert time.time() < deadline, f"{what}: never got there"
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail(f"{what}: the command ended before the kill:\n{proc.stdout.read()[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    try:
        # EOF: nothing holds the pipe any more. A worker spawned just before the kill
        # finishes importing torch first (it has no parent-death signal yet): seconds
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        left = session(proc.pid)
        for line in left:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        pytest.fail(f"{what}: output pipe still open 60 s after kill -9, held by {left}")
    deadline = time.time() + 10
    while (left := session(proc.pid)) and time.time() < deadline:
        time.sleep(0.05)
    for line in left:
        os.kill(int(line.split()[0]), signal.SIGKILL)
    assert not left, f"{what}: survived the kill: {left}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(100):
        sf.write(str(folder / f"utt{i:03d}.wav"), speechlike(1.0, 8000, seed=i), 8000)
    return folder


# moments of start-up and work, by what exists: processes in the session, or files
def after(seconds):
    start = time.time()
    return lambda n: time.time() - start >= seconds


def at_least(k):
    return lambda n: n >= k


@pytest.mark.parametrize("moment", ["importing", "first child", "loaders starting",
                                    "all running", "shards written"])
def test_tokenize_leaves_nothing_behind(corpus, tmp_path, moment):
    codec = build("seanet-conv").save_pretrained(tmp_path / "codec")
    out = tmp_path / "tokens"
    done = out / ".audiotok" / "done"
    # parent + resource tracker + 2 tokenize workers with 2 loader workers each: 8 at full
    # strength; 7 means every tokenize worker has started its loader
    ready = {"importing": after(0.3), "first child": at_least(2),
             "loaders starting": at_least(4), "all running": at_least(7),
             "shards written": lambda n: done.is_dir() and any(done.iterdir())}[moment]
    kill_when(["tokenize", corpus, "-o", out, "--codec", codec, "--shard-size", 2,
               "--workers", 2, "--worker-processes", "--decode-workers", 2, "--no-progress"],
              ready, moment, tmp_path)


@pytest.mark.parametrize("moment", ["importing", "loaders starting", "all running",
                                    "checkpoint written"])
def test_train_leaves_nothing_behind(corpus, tmp_path, moment):
    run = tmp_path / "run"
    ready = {"importing": after(0.3), "loaders starting": at_least(2),
             "all running": at_least(3),
             "checkpoint written": lambda n: (run / "checkpoints").is_dir()
             and any((run / "checkpoints").iterdir())}[moment]
    kill_when(["train", ROOT / "recipes" / "tiny_speech_16k.yaml",
               "--set", f"data.train={corpus}", "--set", f"train.run_dir={run}",
               *[a for s in SMALL_TRAIN for a in ("--set", s)]], ready, moment, tmp_path)
