"""Commands over many files (encode, decode, detokenize): one output per input, and a file
that fails is reported on one line while the rest go on."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import AudiotokError

# what one file of a batch can fail with; the batch reports it and goes on
PER_FILE_ERRORS = (AudiotokError, ValueError, OSError, RuntimeError)


def output_paths(inputs: list[Path], output: Path, suffix: str) -> list[Path]:
    """One output per input: `output` itself for a single input with a file suffix, else
    `output/<stem><suffix>`; refuse two inputs that would write the same file."""
    if len(inputs) == 1 and output.suffix and not output.is_dir():
        return [output]
    outs = [output / (p.stem + suffix) for p in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outs):
        if dst in seen:
            raise AudiotokError(f"{src} and {seen[dst]} would both write {dst}; rename one")
        seen[dst] = src
    return outs


def report_error(e: BaseException) -> None:
    """One line on stderr, on a line of its own even while a progress bar is drawn."""
    from tqdm import tqdm

    tqdm.write(f"audiotok: error: {' '.join(str(e).split()) or type(e).__name__}",
               file=sys.stderr)


def for_each(items, outs, work, what: str) -> int:
    """`work(src, dst)` for each pair, with a progress bar for several; exit status 1 if any
    failed."""
    from tqdm import tqdm

    failed = 0
    for src, dst in tqdm(list(zip(items, outs)), desc=what, unit="file", disable=len(items) < 2,
                         file=sys.stderr):
        try:
            work(src, dst)
        except PER_FILE_ERRORS as e:
            failed += 1
            report_error(e)
    if failed and len(items) > 1:
        print(f"audiotok: {failed} of {len(items)} files failed", file=sys.stderr)
    return 1 if failed else 0
