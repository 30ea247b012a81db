"""Run the audiotok demo page from a checkout: `python demo/app.py [--codec DIR ...]`, the same
as `audiotok demo` (see `--help`). The page is built by `audiotok.demo.app`, inside the package
so that the installed command works without this folder; `build_demo` and `launch` are
re-exported here for scripts that embed or host the page."""

import sys

from audiotok.cli import main
from audiotok.demo.app import build_demo, launch

__all__ = ["build_demo", "launch"]

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
