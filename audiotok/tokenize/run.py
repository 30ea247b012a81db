"""The tokenize driver: plan the job, run its workers, write the index when every shard is in.

    codec = load_codec("my_codec")
    index = tokenize(TokenizeOptions("/corpora/speech", Path("tokens"), codec.ref), codec)

Shards are split statically between processes: with R ranks (torchrun's RANK/WORLD_SIZE, one
or many nodes) and, on GPUs, W worker processes per rank (`--workers`, one per device),
global worker g = rank * W + w takes shards g, g + R*W, ... No process group is needed: the
output folder (state.py) is the only shared state, and whichever process finds every shard
done writes the index.

On a CPU, `--workers W` is W encoding threads in the rank's one process instead, each with
cores / W torch threads, taking the next decoded batch as it frees up: no interpreter and
torch start-up per worker, work shared by batch rather than by shard (a corpus of one shard
still keeps every core busy), and single-threaded kernels in parallel threads scale better on
small tensors than one kernel split across cores. The codec's forward pass releases the GIL
in its kernels; each thread runs its own batches, so codes are those of `--workers 1`.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..codecs.base import Codec
from ..errors import AudiotokError
from ..processes import die_with_parent
from .batching import encode_exact
from .loader import DecodedBatch, ShardAudio, make_loader
from .plan import Plan, check_npy_ids, column_types, list_inputs
from .state import OutputDir, ShardLocks
from .writers import FORMATS, Record, codes_dtype

Report = Callable[[int, float], None]  # (utterances done, audio seconds)


@dataclass(frozen=True)
class TokenizeOptions:
    source: str                      # folder, glob pattern, .jsonl manifest or audio file
    output: Path
    codec: str                       # checkpoint dir, recipe .yaml or codec name
    format: str = "parquet"          # parquet | webdataset | npy
    n_codebooks: int | None = None   # keep the first K levels (None: all)
    shard_size: int = 1000           # utterances per shard: the unit of resume and of work
    batch_seconds: float | None = None  # padded audio per codec call (0: one file per
    #                                    call; None: 10 s on CPU, where bigger batches only
    #                                    thrash the caches, 120 s on a GPU)
    chunk_seconds: float = 10.0      # long files are encoded in chunks of this length
    workers: int = 1                 # processes on this machine (per torchrun rank)
    decode_workers: int = 1          # DataLoader processes decoding audio per worker
    # workers as processes (the default on GPUs, one per device) or, False, as threads of one
    # process (the default on a CPU); None: by device
    worker_processes: bool | None = None
    device: str = "cpu"
    progress: bool = True


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> Ranks:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", 1)))


def tokenize(opts: TokenizeOptions, codec: Codec) -> dict | None:
    """Run (or resume) the job; return the index once the whole job is done, else None
    (other ranks or processes still hold shards)."""
    _check_options(opts)
    plan = Plan(list_inputs(opts.source), opts.shard_size)
    if opts.format == "npy":
        check_npy_ids(plan.utterances)
    n = codec.quantizer.check_n_codebooks(opts.n_codebooks)
    job = {"format": opts.format, "inputs": plan.digest(), "n_utterances": len(plan.utterances),
           "shard_size": opts.shard_size, "codec": codec.spec.to_dict(), "codec_ref": codec.ref,
           "n_codebooks": n, "chunk_seconds": opts.chunk_seconds,
           "columns": column_types(plan.utterances), "source": str(opts.source)}
    out = OutputDir(opts.output, opts.format)
    out.check_or_record(job)

    ranks = Ranks.from_env()
    n_total = ranks.world * opts.workers
    workers = [ranks.rank * opts.workers + w for w in range(opts.workers)]
    threaded = _threaded(opts)
    if threaded:  # threads share the rank's shards
        n_total, workers = ranks.world, [ranks.rank]
    todo = sum(len(plan.shard(s)) for w in workers for s in plan.shards_for(w, n_total)
               if not out.is_done(s))
    with _Progress(todo, opts.progress and ranks.rank == 0) as report:
        if threaded:
            before = torch.get_num_threads()
            torch.set_num_threads(_threads_per_process(ranks.local_world * opts.workers))
            try:
                run_worker(opts, plan, job, codec, ranks.rank, ranks.world, report,
                           threads=opts.workers)
            finally:
                torch.set_num_threads(before)
        elif opts.workers == 1:
            device = _device(opts.device, ranks.local_rank)
            run_worker(opts, plan, job, codec.to(device), workers[0], n_total, report)
        else:
            threads = _threads_per_process(ranks.local_world * opts.workers)
            _spawn(opts, plan, job, workers, n_total, threads, ranks, report)
    index = out.finish(plan, job)
    _summary(out, plan, index, ranks)
    return index


def _threaded(opts: TokenizeOptions) -> bool:
    """Workers as threads of this process: on a CPU unless processes are asked for."""
    if opts.worker_processes is None:
        return torch.device(opts.device).type == "cpu"
    return not opts.worker_processes


def _check_options(opts: TokenizeOptions) -> None:
    if opts.format not in FORMATS:
        raise AudiotokError(f"unknown format '{opts.format}' (use {', '.join(FORMATS)})")
    batch = opts.batch_seconds or 0.0
    # NaN fails every comparison, so each check is written to be False for it
    checks = [(opts.workers >= 1, "--workers must be at least 1"),
              (opts.decode_workers >= 0, "--decode-workers must be 0 or more"),
              (opts.shard_size >= 1, "--shard-size must be at least 1"),
              (0 <= batch < math.inf, "--batch-seconds must be a finite number, 0 or more"),
              (0 < opts.chunk_seconds < math.inf, "--chunk-seconds must be finite and > 0")]
    for ok, message in checks:
        if not ok:
            raise AudiotokError(message)


@dataclass
class _ShardBuffer:
    """What a shard has so far: codes or a failure reason per position."""

    size: int
    records: dict[int, Record] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.records) + len(self.failed) == self.size


def run_worker(opts: TokenizeOptions, plan: Plan, job: dict, codec: Codec, worker: int,
               n_total: int, report: Report, threads: int = 1) -> None:
    """Tokenize every unfinished shard of global worker `worker` not claimed by a live
    process, with `threads` encoding threads; finished shards are written by a background
    thread."""
    out = OutputDir(opts.output, opts.format)
    locks = ShardLocks(out)
    try:
        mine = [s for s in plan.shards_for(worker, n_total)
                if not out.is_done(s) and locks.claim(s)]
        mine = [s for s in mine if not out.is_done(s)]  # finished while we were claiming
        for s in mine:
            out.remove_temps(s, [u.id for u in plan.shard(s)])
        if not mine:
            return
        batch_seconds = opts.batch_seconds
        if batch_seconds is None:
            batch_seconds = 10.0 if codec._device().type == "cpu" else 120.0
        dataset = ShardAudio(plan, mine, codec.sample_rate, codec.channels, batch_seconds)
        batches = iter(make_loader(dataset, opts.decode_workers))  # fork before threads start
        dtype = codes_dtype(codec.codebook_sizes)
        writer = _BackgroundWriter(lambda s, buf: _write_shard(out, plan, job, s, buf, worker))
        buffers: dict[int, _ShardBuffer] = {}
        done = threading.Lock()  # buffers, progress and the writer's queue

        def step(batch: DecodedBatch) -> None:
            codes = _encode_batch(codec, batch, job)
            codes = _with_global(codec, batch, codes)
            with done:
                buf = buffers.setdefault(batch.shard, _ShardBuffer(len(plan.shard(batch.shard))))
                _add_batch(batch, codes, plan, buf, dtype)
                report(len(batch.index) + len(batch.failed),
                       sum(w.shape[-1] for w in batch.wavs) / codec.sample_rate)
                if buf.complete:
                    writer.submit(batch.shard, buffers.pop(batch.shard))

        try:
            _run_threads(batches, step, threads)
        finally:
            writer.close()
    finally:
        locks.close()


def _run_threads(batches, step: Callable[[DecodedBatch], None], threads: int) -> None:
    """step(batch) for every batch, on `threads` threads (this one among them) that each take
    the next batch when free. The first error stops the others after their current batch and
    is raised here."""
    if threads == 1:
        for batch in batches:
            step(batch)
        return
    take, errors = threading.Lock(), []

    def loop() -> None:
        while not errors:
            with take:
                batch = next(batches, None)
            if batch is None:
                return
            try:
                step(batch)
            except BaseException as e:  # noqa: BLE001 - raised in the calling thread
                errors.append(e)

    helpers = [threading.Thread(target=_inference(loop), daemon=True)
               for _ in range(threads - 1)]
    for t in helpers:
        t.start()
    try:
        _inference(loop)()
    except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt too: the helpers stop
        errors.append(e)
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]


def _inference(fn: Callable[[], None]) -> Callable[[], None]:
    """Grad mode is per thread: each encoding thread sets inference mode itself."""
    def run() -> None:
        with torch.inference_mode():
            fn()
    return run


def _encode_batch(codec: Codec, batch: DecodedBatch, job: dict) -> list[torch.Tensor | str]:
    """Codes of each decoded item, or the reason it could not be encoded."""
    wavs = [w.to(codec._device()) for w in batch.wavs]
    try:
        return encode_exact(codec, wavs, job["n_codebooks"], job["chunk_seconds"])
    except (AudiotokError, ValueError, RuntimeError):  # find the item at fault, keep the rest
        return [_encode_one(codec, w, job) for w in wavs]


def _with_global(codec: Codec, batch: DecodedBatch, codes: list) -> list:
    """Each encoded item's codes as (frame codes, global codes or None): a codec with a
    global branch codes every utterance from all of its samples, one item at a time."""
    branch = getattr(codec, "global_branch", None)  # an OnnxCodec has none
    if branch is None:
        return [c if isinstance(c, str) else (c, None) for c in codes]
    out = []
    for wav, c in zip(batch.wavs, codes):
        if not isinstance(c, str):
            w = wav.to(codec._device())[None]
            c = (c, branch.encode(w, torch.tensor([w.shape[-1]]))[0])
        out.append(c)
    return out


def _add_batch(batch: DecodedBatch, codes: list, plan: Plan, buf: _ShardBuffer,
               dtype) -> None:
    utts = plan.shard(batch.shard)
    for i, reason in batch.failed:  # failed.jsonl has the path already
        buf.failed[i] = reason.removeprefix(f"{Path(utts[i].path)}: ")
    for i, wav, c in zip(batch.index, batch.wavs, codes):
        if isinstance(c, str):
            buf.failed[i] = c
            continue
        frames, g = c
        buf.records[i] = Record(utts[i].id, frames.cpu().numpy().astype(dtype), wav.shape[-1],
                                utts[i].meta, plan.first_index(batch.shard) + i,
                                None if g is None else g.cpu().numpy().astype(dtype))


def _encode_one(codec: Codec, wav: torch.Tensor, job: dict) -> torch.Tensor | str:
    try:
        return codec.encode(wav[None], job["n_codebooks"],
                            chunk_seconds=job["chunk_seconds"]).codes[0]
    except (AudiotokError, ValueError, RuntimeError) as e:
        return "cannot encode: " + " ".join(str(e).split())


def _write_shard(out: OutputDir, plan: Plan, job: dict, shard: int, buf: _ShardBuffer,
                 worker: int) -> None:
    records = [buf.records[i] for i in sorted(buf.records)]
    FORMATS[out.fmt].write(out.out / out.shard_file(shard), records, job["codec"],
                           job["columns"])
    utts = plan.shard(shard)
    failed = [{"id": utts[i].id, "path": utts[i].path, "reason": buf.failed[i]}
              for i in sorted(buf.failed)]
    seconds = sum(r.num_samples for r in records) / job["codec"]["sample_rate"]
    out.mark_done(shard, worker, len(records), seconds, failed)


class _BackgroundWriter:
    """Writes finished shards on a thread so the codec keeps running; at most two shards
    wait, which bounds memory. The first write error is raised in the caller."""

    def __init__(self, write: Callable):
        self._write, self._error = write, None
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, *args) -> None:
        self._raise()
        self._queue.put(args)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


# ---------------------------------------------------------------------- processes
def _spawn(opts: TokenizeOptions, plan: Plan, job: dict, workers: list[int], n_total: int,
           threads: int, ranks: Ranks, report: Report) -> None:
    ctx = torch.multiprocessing.get_context("spawn")
    progress = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(opts, plan, job, g, n_total, threads,
                                              ranks.local_rank * opts.workers + w,
                                              os.getpid(), progress))
             for w, g in enumerate(workers)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs) or not progress.empty():
        try:
            report(*progress.get(timeout=0.2))
        except queue.Empty:
            pass
    for p in procs:
        p.join()
    failed = [p for p in procs if p.exitcode != 0]
    if failed:
        raise AudiotokError(f"{len(failed)} of {len(procs)} tokenize workers failed (see "
                            f"above); rerun the same command to resume")


def _child(opts: TokenizeOptions, plan: Plan, job: dict, worker: int, n_total: int,
           threads: int, local_index: int, parent: int, progress) -> None:
    die_with_parent(parent)  # else it would keep writing (and holding shard locks) behind
    #                          the back of a rerun
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    from ..codecs import load_codec

    try:
        codec = load_codec(job["codec_ref"], device=_device(opts.device, local_index)).eval()
        if codec.fingerprint() != job["codec"]["fingerprint"]:
            raise AudiotokError(f"codec {job['codec_ref']} changed while the job ran")
        run_worker(opts, plan, job, codec, worker, n_total, lambda *a: progress.put(a))
    except (AudiotokError, ValueError, OSError, RuntimeError) as e:
        if os.environ.get("AUDIOTOK_DEBUG"):
            raise
        print(f"audiotok: error: worker {worker}: {' '.join(str(e).split())}",
              file=sys.stderr)
        sys.exit(1)


def _threads_per_process(processes: int) -> int:
    """Share the cores: an explicit OMP_NUM_THREADS (torchrun sets 1) wins."""
    if "OMP_NUM_THREADS" in os.environ:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // processes)


def _device(device: str, local_index: int) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", local_index % torch.cuda.device_count())
    return dev


# ---------------------------------------------------------------------- reporting
class _Progress:
    """A tqdm bar over utterances with audio hours alongside; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.seconds = total, enabled, 0.0

    def __enter__(self) -> Report:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc="tokenize", unit="utt", file=sys.stderr,
                        disable=not self.enabled, dynamic_ncols=True)
        return self.update

    def update(self, n: int, seconds: float) -> None:
        self.seconds += seconds
        self.bar.set_postfix_str(f"{self.seconds / 3600:.3f} h audio", refresh=False)
        self.bar.update(n)

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _summary(out: OutputDir, plan: Plan, index: dict | None, ranks: Ranks) -> None:
    who = f"rank {ranks.rank}: " if ranks.world > 1 else ""
    if index is None:
        left = sum(not out.is_done(s) for s in range(plan.n_shards))
        print(f"audiotok: {who}my shards are done; {left} of {plan.n_shards} shards are still "
              f"being written by other processes (the last one writes index.json)",
              file=sys.stderr)
        return
    print(f"audiotok: {who}{index['records']} utterances ({index['audio_hours']:.3f} h of "
          f"audio) in {len(index['shards'])} {index['format']} shards: {out.out}/index.json",
          file=sys.stderr)
    if index["failed"]:
        print(f"audiotok: {index['failed']} files failed to decode, listed with the reason in "
              f"{out.out}/failed.jsonl", file=sys.stderr)
