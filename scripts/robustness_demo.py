#!/usr/bin/env python
"""Does training with token perturbation make a codec's decoder robust to wrong tokens?

Trains the tiny recipe twice from the same seed on the same batches for the same number of
steps, once as `recipes/designs/robust_16k_tiny.yaml` has it (train.perturb) and once with
train.perturb=null, then scores both with `audiotok eval --perturb` on held-out clips: mel
distance, STOI and PESQ with 0 and with a fraction of the tokens replaced by near codes (the
audio analogue of RobusTok's pFID; Qiu et al. 2025, "Image Tokenizer Needs Post-Training").
With `--post-steps N` it also post-trains the decoder of the unperturbed model alone
(recipes/designs/robust_16k_post_tiny.yaml) for N steps, once on perturbed tokens ("post") and once
on clean ones ("post_plain"), and scores both.

    python scripts/robustness_demo.py OUT_DIR                 # espeak-ng speech corpus
    python scripts/robustness_demo.py OUT_DIR --data speech/ --eval-data heldout/ --steps 300

writes OUT_DIR/{perturbed,plain,post,post_plain}/ (runs, each with its model/),
OUT_DIR/report/ (the eval report) and OUT_DIR/summary.json, and prints per model the mel
distance at 0 and at each fraction and what it loses at each (mel_degradation). Without --data it speaks sentences of the GPL with espeak-ng voices: four voices to train on,
two others held out for the eval.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes" / "designs"
TRAIN_VOICES = ["en-us", "en+m3", "en+f2", "en-gb-x-rp"]
EVAL_VOICES = ["en-us+f3", "en+m7"]
TEXT = Path("/usr/share/common-licenses/GPL-3")


def speak_corpus(folder: Path, voices: list[str], lines: list[str]) -> Path:
    """One wav per (voice, line) via espeak-ng; RuntimeError when it is not installed."""
    folder.mkdir(parents=True, exist_ok=True)
    for voice in voices:
        for i, line in enumerate(lines):
            out = folder / f"{voice.replace('+', '_')}_{i:02d}.wav"
            try:
                subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(out), line],
                               check=True, capture_output=True)
            except FileNotFoundError:
                raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng); "
                                   "or give --data and --eval-data") from None
    return folder


def sentences(n: int, skip: int = 0) -> list[str]:
    text = TEXT.read_text() if TEXT.is_file() else ""
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 40]
    if len(lines) < skip + n:
        raise RuntimeError(f"{TEXT} has too few lines for the corpus; give --data")
    return lines[skip:skip + n]


def train(label: str, name: str, out: Path, data: str, steps: int, overrides: list[str]
          ) -> Path:
    """Train recipe `name` (in recipes/designs/) for `steps` steps into OUT/label; returns its
    exported model, OUT/label/model (which `audiotok eval` labels `label`)."""
    from audiotok.train import read_recipe
    from audiotok.train.trainer import Trainer

    recipe = read_recipe(RECIPES / f"{name}.yaml", [
        f"data.train={data}", f"train.run_dir={out / label}", f"train.steps={steps}",
        f"train.ckpt_every={steps}", "train.val_every=0", "train.log_every=25",
        "data.num_workers=0", *overrides])
    code = Trainer(recipe).fit()
    if code:
        raise RuntimeError(f"training {label} stopped with exit code {code}")
    return out / label / "model"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", default=None, help="training audio (default: espeak-ng corpus)")
    ap.add_argument("--eval-data", default=None, help="held-out clips (default: espeak-ng)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--post-steps", type=int, default=0,
                    help="also post-train the plain model's decoder this many steps")
    ap.add_argument("--perturb", default="0.05,0.1", help="eval fractions")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every run, e.g. model.encoder.n_filters=8")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data, eval_data = args.data, args.eval_data
    if data is None or eval_data is None:
        tmp = Path(tempfile.mkdtemp(prefix="corpus-", dir=out))
        if data is None:
            data = str(speak_corpus(tmp / "train", TRAIN_VOICES, sentences(16)))
        if eval_data is None:
            eval_data = str(speak_corpus(tmp / "eval", EVAL_VOICES, sentences(4, skip=40)))

    models = [train("perturbed", "robust_16k_tiny", out, data, args.steps, args.set),
              train("plain", "robust_16k_tiny", out, data, args.steps,
                    [*args.set, "train.perturb=null"])]
    if args.post_steps:  # the plain model's decoder, post-trained with and without
        start = f"train.init_from={models[1]}"
        models += [train("post", "robust_16k_post_tiny", out, data, args.post_steps,
                         [*args.set, start]),
                   train("post_plain", "robust_16k_post_tiny", out, data, args.post_steps,
                         [*args.set, start, "train.perturb=null"])]
    summary = evaluate(models, eval_data, args.perturb, out / "report")
    summary.update(steps=args.steps, post_steps=args.post_steps, overrides=args.set,
                   data=data, eval_data=eval_data)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("mel_distance", "mel_degradation")}, indent=2))
    return 0


def evaluate(models: list[Path], data: str, fractions: str, report: Path) -> dict:
    """Score every model at full depth, unperturbed and at `fractions` of near codes;
    {metric: {model: {fraction: mean}}}."""
    from audiotok import load_codec
    from audiotok.cli.eval_command import parse_fractions
    from audiotok.eval.evaluate import EvalConfig
    from audiotok.eval.evaluate import evaluate as run_eval
    from audiotok.eval.report import write_report

    depth = load_codec(models[0]).n_codebooks
    cfg = EvalConfig(codecs=[str(p) for p in models], data=data, n_codebooks=[depth],
                     perturb=parse_fractions([fractions]))
    result = run_eval(cfg, progress=False)
    write_report(result, report)
    summary: dict = {"mel_distance": {}, "stoi": {}, "pesq_wb": {}}
    for row in result.rows:
        for metric, table in summary.items():
            table.setdefault(row["codec"], {})[f"{row['perturb']:g}"] = \
                row["metrics"][metric]["mean"]
    # how much each model loses to the perturbation: mel distance at F minus at 0
    summary["mel_degradation"] = {m: {f: v - by["0"] for f, v in by.items() if f != "0"}
                                  for m, by in summary["mel_distance"].items()}
    return summary


if __name__ == "__main__":
    sys.exit(main())
