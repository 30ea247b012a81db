"""The `audiotok` command line: encode, decode, info, train, eval, tokenize, detokenize,
export, probe, demo."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .errors import AudiotokError


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
    from .commands import add_encode_decode_info, add_train
    from .demo_cli import add_demo
    from .distill.cli import add_distill
    from .eval.cli import add_eval
    from .export.cli import add_export
    from .probe.cli import add_probe
    from .tokenize.cli import add_detokenize, add_tokenize

    add_encode_decode_info(sub)
    add_train(sub)
    add_eval(sub)
    add_distill(sub)
    add_tokenize(sub)
    add_detokenize(sub)
    add_export(sub)
    add_probe(sub)
    add_demo(sub)
    return p


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
