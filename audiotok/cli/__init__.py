"""The `audiotok` command line: `main` and the parser; each command's options and its glue to
the package that does the work live in one module here.

    codec_commands.py        encode, decode, info, convert
    train_command.py         train
    eval_command.py          eval
    distill_cache_command.py distill-cache
    kmeans_command.py        kmeans
    tokenize_commands.py     tokenize, detokenize
    export_command.py        export
    probe_command.py         probe
    demo_command.py          demo
    argtypes.py, codec_options.py, per_file.py: what several commands share
"""

from __future__ import annotations

import argparse
import os
import sys

from .._version import __version__
from ..errors import AudiotokError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import torch

    # Silence and fades produce denormal floats, which run ~15x slower on x86 CPUs.
    torch.set_flush_denormal(True)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("audiotok: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `audiotok info --list | head`: the reader left, nothing to say
        sys.stderr.close()
        return 1
    except (AudiotokError, ValueError, OSError, RuntimeError) as e:
        if os.environ.get("AUDIOTOK_DEBUG"):
            raise
        print(f"audiotok: error: {_one_line(e)}", file=sys.stderr)
        return 1


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (the house rule for every error) and exit status 2."""

    def error(self, message: str):
        command = self.prog.removeprefix("audiotok").strip()
        self.exit(2, f"audiotok: error: {command + ': ' if command else ''}"
                     f"{_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="audiotok", description="Neural audio codec tokenizers: encode audio to discrete "
        "tokens and back, inspect codecs and token files.")
    p.add_argument("--version", action="version", version=f"audiotok {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    from .codec_commands import add_encode_decode_info
    from .demo_command import add_demo
    from .distill_cache_command import add_distill_cache
    from .eval_command import add_eval
    from .export_command import add_export
    from .kmeans_command import add_kmeans
    from .probe_command import add_probe
    from .tokenize_commands import add_detokenize, add_tokenize
    from .train_command import add_train

    add_encode_decode_info(sub)
    add_train(sub)
    add_eval(sub)
    add_distill_cache(sub)
    add_kmeans(sub)
    add_tokenize(sub)
    add_detokenize(sub)
    add_export(sub)
    add_probe(sub)
    add_demo(sub)
    return p


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())

