"""`audiotok probe`: what frozen tokens are good for. Downstream probes (speaker, any label,
CTC ASR) train a light head per codec and codebook count beside a log-mel baseline; the LM
probe trains a small causal transformer on tokenized shards per token layout."""

from __future__ import annotations

import sys
from pathlib import Path

from ..codec_backend import check_device
from ..errors import AudiotokError
from .argtypes import positive_float, positive_int
from .codec_options import CODEC_HELP

TASKS = ("speaker", "label", "ctc", "lm")


def add_probe(sub) -> None:
    p = sub.add_parser(
        "probe", help="probe tokens: speaker/label/CTC heads (DASB-style) or an LM per layout",
        description="Downstream probes after DASB (Mousavi et al. 2024): train a light head on "
        "frozen tokens of each --codec at each --n-codebooks, and on log-mel features with "
        "the same head, and score it on --test: --task speaker (the manifests' \"speaker\"), "
        "--task label --label-key KEY (any categorical key), --task ctc (characters of "
        "\"text\", CER). --task lm: a small causal transformer per token layout (flatten, "
        "delay, group) on the shards of `audiotok tokenize`, held-out cross-entropy in bits "
        "per second. Prints a table; -o writes probe.json (and probe.png).")
    p.add_argument("--task", required=True, choices=TASKS, help="what to probe")
    p.add_argument("--codec", action="append", default=[], metavar="DIR",
                   help=CODEC_HELP + " (repeatable; default: the bundled model)")
    p.add_argument("--train", type=Path, default=None, metavar="JSONL",
                   help="training manifest (path + the task's key per line)")
    p.add_argument("--test", type=Path, default=None, metavar="JSONL", help="test manifest")
    p.add_argument("--label-key", default=None, metavar="KEY",
                   help="--task label: the manifest key holding the class (e.g. emotion)")
    p.add_argument("--n-codebooks", action="append", default=[], metavar="K[,K...]",
                   help="codebook counts to probe, e.g. 2,8 (default: each codec's full depth)")
    p.add_argument("--no-baseline", action="store_true", help="skip the log-mel baseline")
    p.add_argument("--head", choices=["lstm", "tdnn", "pool"], default=None,
                   help="downstream head: 2-layer BiLSTM, x-vector-style TDNN, or none (pool: "
                   "statistics pooling of the embeddings + linear, DASB's lightest; classes "
                   "only); classes are pooled over time (default: tdnn for classes, lstm for "
                   "ctc, as DASB)")
    p.add_argument("--combine", choices=["attention", "sum", "concat"], default="attention",
                   help="how the levels' token embeddings merge (default: DASB's attention)")
    p.add_argument("--shards", type=Path, default=None, metavar="DIR",
                   help="--task lm: output folder of `audiotok tokenize`")
    p.add_argument("--layouts", default="flatten,delay,group", metavar="NAME[,NAME...]",
                   help="--task lm: token layouts (audiotok.lm), default all three")
    p.add_argument("--groups", default=None, metavar="N[,N...]",
                   help="--task lm: levels per group of the group layout (default 1,K-1)")
    p.add_argument("--held-out", type=positive_float, default=0.1, metavar="FRACTION",
                   help="--task lm: fraction of utterances held out (by id hash; default 0.1)")
    p.add_argument("--context", type=positive_int, default=256, metavar="STEPS",
                   help="--task lm: attention window in steps (default 256)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="training steps per head or LM (default 400 downstream, 500 lm)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--dim", type=positive_int, default=128, help="model width (default 128)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default 2e-3 downstream, 3e-3 lm)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help="folder for probe.json and probe.png (written when every probe is done)")
    p.set_defaults(func=cmd_probe)


def _check_args(args) -> None:
    """Flags that belong to the other kind of probe are mistakes, not silently ignored."""
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        raise AudiotokError(f"-o {args.output}: a file is in the way; give a folder")
    if args.task == "lm":
        if args.shards is None:
            raise AudiotokError("--task lm needs --shards (the output folder of "
                                "`audiotok tokenize`)")
        stray = [f for f, v in (("--codec", args.codec), ("--train", args.train),
                                ("--test", args.test), ("--label-key", args.label_key),
                                ("--n-codebooks", args.n_codebooks)) if v]
        if stray:
            raise AudiotokError(f"{stray[0]} is for the downstream tasks; --task lm reads "
                                f"the codes in --shards")
        return
    if args.train is None or args.test is None:
        raise AudiotokError(f"--task {args.task} needs --train and --test manifests")
    if args.shards is not None:
        raise AudiotokError(f"--shards is for --task lm; --task {args.task} reads --train "
                            f"and --test")


def _int_list(flag: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise AudiotokError(f"{flag}: expected whole numbers such as 1,7, got {text!r}"
                            ) from None


def cmd_probe(args) -> int:
    _check_args(args)
    check_device(args.device)
    if args.task == "lm":
        return _lm(args)
    from ..probe.downstream import ProbeConfig
    from ..probe.report import downstream_table
    from ..probe.run import downstream_probe
    from .eval_command import parse_counts

    codecs = list(args.codec)
    if not codecs:
        from ..codecs.loading import default_codec

        codecs = [default_codec()]
        print(f"audiotok: no --codec given: probing the bundled {codecs[0]}", file=sys.stderr)
    cfg = ProbeConfig(task=args.task, head=args.head, combine=args.combine, dim=args.dim,
                      hidden=args.dim, steps=args.steps or 400, batch_size=args.batch_size,
                      lr=args.lr or 2e-3, seed=args.seed, device=args.device)
    report = downstream_probe(args.train, args.test, codecs, parse_counts(args.n_codebooks),
                              cfg, args.label_key, baseline=not args.no_baseline)
    print(downstream_table(report))
    _write(report, args.output)
    return 0


def _lm(args) -> int:
    from ..probe.lm_probe import LMProbeConfig, lm_probe
    from ..probe.report import lm_table

    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    groups = _int_list("--groups", args.groups) if args.groups else None
    cfg = LMProbeConfig(layouts=layouts, groups=groups, dim=args.dim,
                        heads=max(1, args.dim // 32), context=args.context,
                        steps=args.steps or 500, batch_size=args.batch_size,
                        lr=args.lr or 3e-3, held_out=args.held_out, seed=args.seed,
                        device=args.device)
    report = lm_probe(args.shards, cfg)
    print(lm_table(report))
    _write(report, args.output)
    return 0


def _write(report: dict, out: Path | None) -> None:
    from ..probe.report import write_report

    if out is None:
        return
    paths = write_report(report, out)
    print(f"audiotok: wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
