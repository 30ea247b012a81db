"""Voice conversion through a codec's per-utterance codes (FreeCodec's timbre): decode the
frame codes (content, prosody) of clip A with the global codes of clip B, and measure

    SIM(x, B)     Resemblyzer speaker similarity (audiotok/eval/speaker.py) of x to clip B
    spectrum      mean distance of x's long-term average log spectrum to B's (dB), a
                  measure that owes nothing to Resemblyzer, which a codec may use as its
                  timbre encoder (the `ge2e` global encoder)
    content kept  fraction of A's content codes (the last frame stream) that re-encoding
                  the converted audio gives back; A's own reconstruction gives the ceiling

for every ordered pair of clips from different speakers (the speaker is the file name's part
before the first "__", or its parent folder). `--unseen SPK ...` also reports the pairs that
involve speakers the codec did not train on.

    python benchmarks/voice_conversion.py CODEC_DIR CLIP [CLIP ...] [--unseen SPK ...]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from audiotok import load_codec
from audiotok.audio import load_audio
from audiotok.eval.speaker import cosine, load_speaker_model


def speaker_of(path: Path) -> str:
    return path.name.split("__")[0] if "__" in path.name else path.parent.name


def long_term_spectrum(wav: np.ndarray) -> np.ndarray:
    """Long-term average log power spectrum in dB [257] (32 ms windows every 8 ms at 16 kHz)."""
    x = torch.from_numpy(wav).float()
    spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True)
    return (10 * torch.log10(spec.abs().pow(2).mean(-1) + 1e-10)).numpy()


def spectrum_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute dB difference of the two spectra, after removing their mean (level)."""
    d = long_term_spectrum(a) - long_term_spectrum(b)
    return float(np.abs(d - d.mean()).mean())


def summary(rows: list[tuple], label: str) -> None:
    r = np.array(rows, dtype=float)
    print(f"{label}: {len(rows)} ordered pairs of different speakers")
    print(f"  SIM to B:  A's reconstruction {r[:, 0].mean():.3f}   A with B's timbre "
          f"{r[:, 1].mean():.3f}   (moved toward B in {np.mean(r[:, 1] > r[:, 0]):.0%})")
    print(f"  SIM to A:  A's reconstruction {r[:, 2].mean():.3f}   A with B's timbre "
          f"{r[:, 3].mean():.3f}")
    print(f"  spectrum to B (dB):  A's reconstruction {r[:, 6].mean():.2f}   A with B's "
          f"timbre {r[:, 7].mean():.2f}   (moved toward B in {np.mean(r[:, 7] < r[:, 6]):.0%})")
    print(f"  content codes kept: A's reconstruction {r[:, 4].mean():.3f}   converted "
          f"{r[:, 5].mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("codec")
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--unseen", nargs="*", default=[], help="speakers not trained on")
    args = ap.parse_args()
    torch.set_num_threads(1)
    codec = load_codec(args.codec).eval()
    judge = load_speaker_model("resemblyzer")
    wavs = {p: load_audio(p, codec.sample_rate, codec.channels)[0] for p in args.clips}
    tokens = {p: codec.encode(w[None]) for p, w in wavs.items()}
    own = {p: judge.embed(w[0].numpy()) for p, w in wavs.items()}

    def decode(a: Path, b: Path) -> np.ndarray:
        return codec.decode(tokens[a].with_global(tokens[b]))[0, 0].numpy()

    def kept(a: Path, audio: np.ndarray) -> float:
        again = codec.encode(torch.from_numpy(audio)[None, None]).codes[0, -1]
        ref = tokens[a].codes[0, -1]
        n = min(len(again), len(ref))
        return float((again[:n] == ref[:n]).float().mean())

    rows, unseen = [], []
    for a, b in itertools.permutations(args.clips, 2):
        if speaker_of(a) == speaker_of(b):
            continue
        same, conv = decode(a, a), decode(a, b)
        e_same, e_conv = judge.embed(same), judge.embed(conv)
        target = wavs[b][0].numpy()
        row = (cosine(e_same, own[b]), cosine(e_conv, own[b]), cosine(e_same, own[a]),
               cosine(e_conv, own[a]), kept(a, same), kept(a, conv),
               spectrum_distance(same, target), spectrum_distance(conv, target))
        rows.append(row)
        if {speaker_of(a), speaker_of(b)} & set(args.unseen):
            unseen.append(row)
    summary(rows, "all")
    if unseen:
        summary(unseen, "with an unseen speaker")


if __name__ == "__main__":
    main()
