"""`audiotok demo`: serve the Gradio page (audiotok/demo/app.py). Gradio is imported only when
the command runs, so the rest of the CLI starts fast."""

from __future__ import annotations

from ..codec_backend import check_device
from .argtypes import port, positive_float
from .codec_options import CODEC_HELP


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="web page: listen to codecs at any bitrate, see tokens and metrics",
        description="Open a Gradio page to upload or record a clip, run it through a codec at "
        "a chosen number of codebooks, and hear, see and measure the result (plus an A/B tab "
        "and a token-file decoder). Listens on this machine only unless --host says otherwise.")
    p.add_argument("--codec", action="append", default=[], metavar="DIR",
                   help=CODEC_HELP + " (repeatable; default: the bundled model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=port, default=None,
                   help="port (default: 7860, or the next free one)")
    p.add_argument("--max-seconds", type=positive_float, default=60.0,
                   help="refuse clips (and token files) longer than this (default 60)")
    p.add_argument("--share", action="store_true",
                   help="also publish a temporary public gradio.live link (off by default)")
    p.add_argument("--device", default="cpu", help="torch device for the codecs")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    check_device(args.device)
    from ..demo.app import launch

    launch(args.codec, args.host, args.port, args.max_seconds, args.share, args.device)
    return 0
