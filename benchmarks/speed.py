"""Encode/decode speed and peak memory of our codec families next to the reference
implementations of the same architectures, in the same run, same threads, same clip.

    pip install encodec descript-audio-codec snac # the references (random weights, no download)
    pip install --no-deps moshi sentencepiece       # Mimi's (scripts/setup.sh does both)
    python benchmarks/speed.py [--threads 2] [--seconds 10] [--repeats 3] [--only dac_16k ...]

Pairs:

  dac_16k/24k/44k  ONE model: dac.DAC(...) with the released models' settings and random
                weights, saved as descript-audio-codec saves its releases (.pth); the
                reference runs it in descript-audio-codec, ours opens the same file with
                `audiotok.load_codec` (codecs/published/). Both encode the same clip and the
                codes are checked equal (column "same codes").
  encodec_24k   ONE model the same way: EncodecModel.encodec_model_24khz(pretrained=False)
                saved as its `.th` release is, run at 6 kbps (8 codebooks) by encodec and by
                audiotok.
  snac_24k      ONE model the same way: snac.SNAC(...) with hubertsiuzdak/snac_24khz's
                config.json, saved as its release folder is (config.json + pytorch_model.bin);
                the reference's per-level codes are compared in audiotok's one-rate layout
                (coarse levels repeated, quantizers/multiscale_rvq.py).
  mimi          ONE model the same way: moshi's loaders.get_mimi(None) (the release's
                architecture, random weights) saved as its safetensors release is; both run
                8 codebooks, as Moshi does.

and our other families alone (no reference package on PyPI builds them without a download):
the bundled audiotok/speech-16k itself (row speech_16k; recipes/speech_16k/8_stoi3.yaml is its
architecture), and the wavtokenizer_24k_75hz and mimi_24k designs with random weights.

Each row runs in a fresh process (--rounds of them, alternating ours and reference so slow
drifts of this machine hit both): threads set to --threads, a 1 s warm-up, then the best of
--repeats timings of encode (waveform -> codes) and decode (codes -> waveform) of a
--seconds speech-like clip. The reference runs under torch.inference_mode() too (its fastest
setting); its decode includes the codebook lookup, as ours does. RTF = time / audio
duration, the best over rounds. The ratio columns are ours / reference time (below 1 = ours
faster), one ratio per round from the processes run back to back, printed as the median and
its min-max over rounds: on a shared machine the spread says how far to trust the median.
Peak RSS is the process's high-water mark over the whole run (the highest over rounds).

"ours" is the audiotok of the checkout this script is in (its root goes first on the
children's PYTHONPATH, ahead of any installed copy). `--baseline DIR` adds another audiotok
checkout (say `git worktree add /tmp/base main`) as a third implementation in the same
alternation, so a change is measured before and after in one run against the same reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from codec_speed import best_time, signal, vm_kb  # same folder: shared helpers

ROOT = Path(__file__).resolve().parents[1]
PAIRS = {  # name: (our recipe, encode kwargs, reference builder name)
    "encodec_24k": ("recipes/designs/encodec_24k.yaml", {"n_codebooks": 8}, "encodec_24k"),
    "dac_16k": ("recipes/designs/dac_16k.yaml", {}, "dac_16k"),
    "dac_24k": ("recipes/designs/dac_24k.yaml", {}, "dac_24k"),
    "dac_44k": ("recipes/designs/dac_44k.yaml", {}, "dac_44k"),
    "snac_24k": ("", {}, "snac_24k"),  # no recipe: always the release folder
    "mimi": ("", {"n_codebooks": 8}, "mimi"),  # no recipe: always the moshi file
}
OURS_ONLY = {
    "speech_16k": "audiotok/speech-16k",  # the bundled model itself (recipes/speech_16k/)
    "wavtokenizer_24k_75hz": "recipes/designs/wavtokenizer_24k_75hz.yaml",
    "mimi_24k": "recipes/designs/mimi_24k.yaml",
}
# hubertsiuzdak/snac_24khz's config.json
SNAC_24K = {"sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8],
            "decoder_dim": 1024, "decoder_rates": [8, 8, 4, 2], "attn_window_size": None,
            "codebook_size": 4096, "codebook_dim": 8, "vq_strides": [4, 2, 1], "noise": True,
            "depthwise": True}
# released DAC models' settings (descript-audio-codec model cards / weight metadata)
DAC_SETTINGS = {
    "dac_16k": {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2],
                "n_codebooks": 12, "sample_rate": 16000},
    "dac_24k": {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2],
                "n_codebooks": 32, "sample_rate": 24000},
    "dac_44k": {"encoder_rates": [2, 4, 8, 8], "decoder_rates": [8, 8, 4, 2],
                "n_codebooks": 9, "sample_rate": 44100},
}


def vm_mb(field: str) -> float:
    return vm_kb(field) / 1024


def release_file(name: str, folder: Path) -> Path:
    """The random-weight model of row `name`, saved as its releases are: both sides load it."""
    torch.manual_seed(0)
    if name == "encodec_24k":
        from encodec import EncodecModel

        path = folder / f"{name}.th"
        torch.save(EncodecModel.encodec_model_24khz(pretrained=False).state_dict(), path)
        return path
    if name == "mimi":
        from moshi.models import loaders
        from safetensors.torch import save_file

        path = folder / "tokenizer-random.safetensors"
        state = loaders.get_mimi(None).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path
    if name == "snac_24k":
        import snac

        path = folder / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps(SNAC_24K))
        torch.save(snac.SNAC(**SNAC_24K).state_dict(), path / "pytorch_model.bin")
        return path
    import dac

    path = folder / f"{name}.pth"
    dac.DAC(encoder_dim=64, decoder_dim=1536, codebook_size=1024, codebook_dim=8,
            **DAC_SETTINGS[name]).save(str(path), package=False)
    return path


def ours(ref: str, kwargs: dict):
    from audiotok import load_codec

    codec = load_codec(ref)
    n = kwargs.get("n_codebooks")

    def encode(wav):
        return codec.encode(wav, n_codebooks=n)

    return codec, codec.sample_rate, encode, codec.decode


def reference(name: str, weights: Path | None):
    if name == "encodec_24k":
        from encodec import EncodecModel

        model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.set_target_bandwidth(6.0)

        def encode(wav):
            with torch.inference_mode():
                return model.encode(wav)[0][0]

        def decode(codes):
            with torch.inference_mode():
                return model.decode([(codes, None)])

        return model, 24000, encode, decode
    if name == "snac_24k":
        return reference_snac(weights)
    if name == "mimi":
        from moshi.models import loaders

        model = loaders.get_mimi(str(weights), num_codebooks=8)

        def encode(wav):
            with torch.inference_mode():
                return model.encode(wav)

        def decode(codes):
            with torch.inference_mode():
                return model.decode(codes)

        return model, 24000, encode, decode
    import dac

    model = dac.DAC.load(str(weights)).eval()

    def encode(wav):
        with torch.inference_mode():
            return model.encode(model.preprocess(wav, model.sample_rate))[1]

    def decode(codes):
        with torch.inference_mode():
            return model.decode(model.quantizer.from_codes(codes)[0])

    return model, model.sample_rate, encode, decode


def reference_snac(folder: Path):
    import snac

    model = snac.SNAC.from_pretrained(str(folder)).eval()
    strides = model.vq_strides

    def encode(wav):  # SNAC's list of per-level codes, in audiotok's one-rate layout
        with torch.inference_mode():
            codes = model.encode(model.preprocess(wav))
        return torch.stack([c.repeat_interleave(s, -1) for c, s in zip(codes, strides)], 1)

    def decode(codes):
        with torch.inference_mode():
            return model.decode([codes[:, k, ::s] for k, s in enumerate(strides)])

    return model, model.sampling_rate, encode, decode


def child(impl: str, name: str, seconds: float, repeats: int, weights: Path | None) -> dict:
    if impl == "ours":
        ref, kwargs = (PAIRS[name][0], PAIRS[name][1]) if name in PAIRS else (OURS_ONLY[name], {})
        if weights is not None:
            ref = str(weights)
        model, sr, encode, decode = ours(str(ROOT / ref) if ref.endswith(".yaml") else ref,
                                         kwargs)
    else:
        model, sr, encode, decode = reference(PAIRS[name][2], weights)
    wav = signal(seconds, sr)
    decode(encode(wav[..., :sr]))  # warm-up
    base = vm_mb("VmRSS")
    enc = best_time(lambda: encode(wav), repeats)
    codes = encode(wav)
    dec = best_time(lambda: decode(codes), repeats)
    grid = getattr(codes, "codes", codes)  # Tokens or the reference's own codes tensor
    digest = hashlib.sha256(grid.cpu().long().numpy().tobytes()).hexdigest() \
        if isinstance(grid, torch.Tensor) else None
    return {"params_M": sum(p.numel() for p in model.parameters()) / 1e6, "codes": digest,
            "encode_rtf": enc / seconds, "decode_rtf": dec / seconds,
            "rss_MB": base, "peak_MB": vm_mb("VmHWM")}


def run_child(impl, name, args, weights: Path | None) -> dict:
    # ours: this checkout; base: --baseline's; ref: the publisher's package (audiotok unused)
    root = args.baseline if impl == "base" else ROOT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run(
        [sys.executable, __file__, "--child", "ours" if impl == "base" else impl, name,
         "--threads", str(args.threads), "--seconds", str(args.seconds),
         "--repeats", str(args.repeats), *(["--weights", str(weights)] if weights else [])],
        check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last}
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratios(rounds: list[dict], refs: list[dict], key: str) -> str:
    """Median (min-max) over rounds of this implementation's time / the reference's."""
    r = [a[key] / b[key] for a, b in zip(rounds, refs) if "error" not in a and "error" not in b]
    if not r:
        return ""
    if len(r) == 1:
        return f"{r[0]:.2f}"
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"


def best(rounds: list[dict]) -> dict:
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1]
    return {**ok[0], "encode_rtf": min(r["encode_rtf"] for r in ok),
            "decode_rtf": min(r["decode_rtf"] for r in ok),
            "peak_MB": max(r["peak_MB"] for r in ok)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1,
                   help="fresh processes per implementation, alternating ours/ref")
    p.add_argument("--only", nargs="+", default=None, help="row names to run")
    p.add_argument("--baseline", type=Path, default=None,
                   help="another audiotok checkout, timed in the same rounds as 'base'")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    p.add_argument("--weights", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.child:
        print(json.dumps(child(*args.child, args.seconds, args.repeats, args.weights)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="speed-"))
    print(f"torch {torch.__version__}, {args.threads} threads, {args.seconds:g} s clip, "
          f"best of {args.repeats} x {args.rounds} alternating rounds; ratios: median "
          f"(min-max) over rounds")
    head = (f"{'model':22} {'impl':5} {'params':>8} {'enc RTF':>8} {'dec RTF':>8} "
            f"{'peak MB':>8} {'enc /ref':>17} {'dec /ref':>17} {'same codes':>10}")
    print(head)
    rows = []
    for name in list(PAIRS) + list(OURS_ONLY):
        if args.only and name not in args.only:
            continue
        impls = ["ours", "ref"] if name in PAIRS else ["ours"]
        if args.baseline and name in PAIRS:
            impls.insert(1, "base")
        weights = release_file(name, tmp) if name in PAIRS else None
        runs: dict[str, list[dict]] = {impl: [] for impl in impls}
        for _ in range(args.rounds):  # alternate the implementations so drift hits all alike
            for impl in impls:
                runs[impl].append(run_child(impl, name, args, weights))
        refs = runs.get("ref", [])
        for impl in impls:
            r = best(runs[impl])
            if "error" in r:
                print(f"{name:22} {impl:5} error: {r['error']}", flush=True)
                continue
            enc = dec = same = ""
            if impl != "ref" and refs:
                enc = ratios(runs[impl], refs, "encode_rtf")
                dec = ratios(runs[impl], refs, "decode_rtf")
                f = best(refs)
                same = ("n/a" if not weights or "error" in f else
                        "yes" if r["codes"] == f["codes"] else "NO")
            print(f"{name:22} {impl:5} {r['params_M']:>7.2f}M {r['encode_rtf']:>8.4f} "
                  f"{r['decode_rtf']:>8.4f} {r['peak_MB']:>8.0f} {enc:>17} {dec:>17} "
                  f"{same:>10}", flush=True)
            rows.append({"model": name, "impl": impl, **r, "rounds": runs[impl]})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
