"""Token shards back to audio, for listening to what a tokenize job stored: each record
decoded with its codec and written as <output>/<id>.wav.

    index = read_index("tokens")
    written, failed = detokenize("tokens", index, codec, Path("wavs"), ids=["spk/utt.flac"])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..audio import save_audio
from ..errors import AudiotokError
from ..tokens import CodecSpec, Tokens
from .writers import Record, read_records

# what one record can fail with; it is reported and the rest go on
RECORD_ERRORS = (AudiotokError, ValueError, OSError, RuntimeError)


def record_tokens(rec: Record, spec: CodecSpec) -> Tokens:
    """One stored record as a batch of one `Tokens`."""
    return Tokens(codes=torch.from_numpy(rec.codes.astype(np.int64))[None],
                  spec=spec, lengths=torch.tensor([rec.n_frames]),
                  num_samples=torch.tensor([rec.num_samples]),
                  global_codes=None if rec.global_codes is None else
                  torch.from_numpy(rec.global_codes.astype(np.int64))[None])


def detokenize(shards, index: dict, codec, output: Path, ids: list[str] | None = None,
               limit: int | None = None, chunk_seconds: float = 10.0, device: str = "cpu",
               on_error=None) -> tuple[int, int]:
    """Decode the records of `shards` (all, only `ids`, or the first `limit`) into `output`;
    a record that cannot be decoded or written goes to `on_error` (an AudiotokError naming
    its id) and the rest go on. Returns (files written, records failed); an id in `ids`
    that no shard holds is an error."""
    spec = CodecSpec.from_dict(index["codec"])
    wanted = set(ids) if ids else None
    written: set[Path] = set()
    failed = 0
    for rec in read_records(shards, index):
        if wanted is not None and rec.id not in wanted:
            continue
        dst = output / wav_name(rec.id)
        try:
            if dst in written:
                raise AudiotokError(f"{rec.id}: another id already wrote {dst}")
            tokens = record_tokens(rec, spec)
            codec.check_tokens(tokens)
            wav = codec.decode(tokens.to(device), chunk_seconds=chunk_seconds)
            save_audio(dst, wav[0].cpu(), codec.sample_rate)
            written.add(dst)
        except RECORD_ERRORS as e:
            failed += 1
            if on_error is not None:
                on_error(e if str(e).startswith(rec.id) else AudiotokError(f"{rec.id}: {e}"))
        if wanted is not None:
            wanted.discard(rec.id)
        if len(written) + failed == limit or wanted == set():
            break
    if wanted:
        raise AudiotokError(f"no such id in {shards}: {min(wanted)}")
    return len(written), failed


def wav_name(uid: str) -> str:
    """`spk/utt.flac` -> `spk/utt.flac.wav`; ids that leave the folder are flattened."""
    parts = [p for p in uid.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    name = "/".join(parts) or "_"
    return name if name.lower().endswith(".wav") else name + ".wav"
