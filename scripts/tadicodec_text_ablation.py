#!/usr/bin/env python
"""How much the transcript helps TaDiCodec reconstruct: train the tiny recipe on a small
espeak-ng corpus with transcripts, then decode the same tokens with the same steps and seed
three ways (the true transcript, none, another utterance's) and compare mel distances.

    python scripts/tadicodec_text_ablation.py OUT_DIR [--steps 600] [--sample-steps 8]

The corpus: SENTENCES spoken by VOICES (espeak-ng, resampled to 16 kHz by the loader), each
utterance shorter than the training excerpt, so every excerpt holds a whole utterance and
its whole transcript. HELD_OUT sentences (every voice) are kept out of training. Two
distances per decode, averaged over utterances:
  flow mel L1   |sampled log-mel - true log-mel|, the decoder's own output (no vocoder)
  audio mel     audiotok.waveform_metrics.mel_distance of the vocoded audio against the input
Prints a table and writes OUT_DIR/ablation.json.

Measured (800 training steps of batch 8, no discriminator, 8 Euler steps, seed 0, one CPU
thread, ~40 min; 80 training / 16 held-out clips; tokens 6.25 Hz x 8 bits in every row):

                 flow mel L1 (train / held out)   audio mel distance (train / held out)
    true text    1.887 / 1.921                    5.129 / 5.204
    no text      2.139 / 2.113                    5.255 / 5.253
    wrong text   1.908 / 1.952                    5.156 / 5.229

Any transcript lowers the flow's error by 9-12 %, but another utterance's does nearly as
well as the true one (1-2 % apart): at this size and training the gain is mostly from having
a prefix at all (the model trained with text 80 % of the time), little from its content.
The vocoder's own error dominates the audio distances. One run, one seed: no error bars.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

SENTENCES = [
    "the cat sat on the mat", "a red fox runs fast", "open the door please",
    "she sells sea shells", "we will meet at noon", "turn left at the bridge",
    "my dog likes to swim", "bring me a cup of tea", "the sun is very hot",
    "read the book again", "call me after lunch", "the bus is late today",
    "he plays the violin", "put the box on the shelf", "rain falls on the roof",
    "they sing a happy song", "I lost my blue pen", "the river is wide",
    "cook the rice slowly", "birds fly to the south",
]
HELD_OUT = ["paint the fence white", "the train leaves at nine", "fish swim in the lake",
            "close the window now"]
VOICES = ["en", "en-us", "en+f3", "en+m3"]


def build_corpus(out: Path, sentences=SENTENCES + HELD_OUT, voices=VOICES) -> Path:
    """Speak every sentence in every voice -> out/clips/*.wav and out/corpus.jsonl (path,
    text, speaker); returns the manifest."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    lines = []
    for s_i, text in enumerate(sentences):
        for voice in voices:
            path = clips / f"s{s_i:02d}_{voice.replace('+', '_')}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "190", "-w", str(path), text],
                           check=True, capture_output=True)
            lines.append(json.dumps({"path": str(path), "text": text, "speaker": voice}))
    manifest = out / "corpus.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def split_manifest(manifest: Path, held_out: list[str]) -> tuple[Path, list[dict]]:
    """-> (manifest of the training utterances, entries of the held-out ones)."""
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    train = [e for e in entries if e["text"] not in held_out]
    path = manifest.with_name("train.jsonl")
    path.write_text("".join(json.dumps(e) + "\n" for e in train))
    return path, [e for e in entries if e["text"] in held_out]


def train(manifest: Path, run_dir: Path, steps: int, seed: int = 0):
    from audiotok.train import read_recipe
    from audiotok.train.trainer import Trainer

    recipe_path = (Path(__file__).resolve().parent.parent / "recipes" / "designs"
                   / "tadicodec_16k_tiny.yaml")
    r = read_recipe(recipe_path, [
        f"data.train={manifest}", f"train.run_dir={run_dir}", f"train.steps={steps}",
        "train.batch_size=8", "train.val_every=0", f"train.ckpt_every={steps}",
        "train.log_every=50", f"train.seed={seed}", "data.num_workers=0",
        "data.segment_seconds=2.5", "data.val_segment_seconds=2.5",
        # no discriminator: the vocoder learns from the mel loss alone (faster on a CPU)
        f"train.disc_start_step={steps}", "optim.schedule=constant"])
    trainer = Trainer(r)
    trainer.fit()
    return trainer.codec.eval()


@torch.no_grad()
def distances(codec, entries: list[dict], sample_steps: int, seed: int) -> dict:
    """Mean mel distances of each decode condition over `entries`."""
    from audiotok.audio import load_audio
    from audiotok.waveform_metrics import mel_distance

    dec = codec.decoder
    wrong = {e["text"]: entries[(i + len(entries) // 2) % len(entries)]["text"]
             for i, e in enumerate(entries)}
    # another sentence, never the same one (entries cycle through voices per sentence)
    texts = sorted({e["text"] for e in entries})
    for t in texts:
        if wrong[t] == t:
            wrong[t] = texts[(texts.index(t) + 1) % len(texts)]
    sums: dict[str, list[float]] = {}
    for e in entries:
        wav, _ = load_audio(e["path"], codec.sample_rate, codec.channels)
        wav = wav[None]
        tokens = codec.encode(wav)
        true_mel = dec.mel(codec._pad_to_frames(wav))
        z = codec.quantizer.decode(tokens.codes)
        for name, text in (("true text", e["text"]), ("no text", None),
                           ("wrong text", wrong[e["text"]])):
            mel = dec.sample_mel(z, sample_steps, seed, None if text is None else [text])
            flow = float((mel - true_mel).abs().mean() * dec.cfg.mel_std)  # in log-mel units
            audio = codec.decode(tokens, steps=sample_steps, seed=seed, text=text)
            audio_md = float(mel_distance(wav, audio, codec.sample_rate).mean())
            sums.setdefault(f"{name}/flow_mel_l1", []).append(flow)
            sums.setdefault(f"{name}/audio_mel_distance", []).append(audio_md)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=600, help="training steps")
    p.add_argument("--sample-steps", type=int, default=8, help="Euler steps when decoding")
    p.add_argument("--seed", type=int, default=0, help="decoding seed")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    manifest = build_corpus(args.out)
    train_manifest, held = split_manifest(manifest, HELD_OUT)
    run = args.out / "run"
    shutil.rmtree(run, ignore_errors=True)
    codec = train(train_manifest, run, args.steps)
    seen = [json.loads(line) for line in train_manifest.read_text().splitlines()]
    result = {"training_steps": args.steps, "sample_steps": args.sample_steps,
              "seed": args.seed, "tokens_per_second": codec.frame_rate,
              "bits_per_token": 8,
              "train utterances": distances(codec, seen, args.sample_steps, args.seed),
              "held-out utterances": distances(codec, held, args.sample_steps, args.seed)}
    (args.out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    for split in ("train utterances", "held-out utterances"):
        print(f"{split}: {len(seen) if split.startswith('train') else len(held)} clips")
        for cond in ("true text", "no text", "wrong text"):
            r = result[split]
            print(f"  {cond:10s}  flow mel L1 {r[cond + '/flow_mel_l1']:.3f}   audio mel "
                  f"distance {r[cond + '/audio_mel_distance']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
