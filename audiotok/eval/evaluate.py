"""Evaluate codecs (and classic baselines) on a folder or manifest of clips.

    result = evaluate(EvalConfig(codecs=["runs/tiny/model"], data="speech/",
                                 n_codebooks=[2, 8], baselines=["opus", "codec2"]))
    write_report(result, "report/")                     # audiotok.eval.report

Each clip is read mono at its own rate; each system (a codec at one codebook count, or a
baseline at one bitrate) encodes and decodes it, and the output is scored against the clip
resampled to that system's rate after delay alignment. Clips that cannot be scored at all
(unreadable, silent, too short for PESQ) are listed with the reason; a metric undefined on
one clip is left out of that metric's mean only, and counted.

With `asr`, `speaker_model` or `mos`, each output (and the original, its own "original" row)
is also judged by those models: WER/CER of the ASR's transcript against the manifest's `text`,
speaker similarity to the original, DNSMOS (audiotok.eval.judges).

With `perturb` (fractions such as [0.05, 0.1]), every codec system also runs with that
fraction of its tokens replaced before decoding (near or random codes, seeded per clip:
audiotok.quantizers.perturb), as its own row ("perturb" > 0): how the codec's quality holds
when an LM gets some tokens wrong, the audio analogue of RobusTok's pFID (Qiu et al. 2025).
With one seed, the tokens changed at a fraction include those changed at any lower one.

With `probe_units` (a file from `audiotok kmeans`), every neural codec's codes at all its levels
are also paired with the SSL k-means units of each scored clip, and each row of that codec gets
"content_probe": per-level mutual information with the units (and with the manifest's
speakers, where given); see audiotok.distill.probe.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio, resample
from ..errors import AudioError, AudiotokError
from ..quantizers.base import encodable_counts
from . import baselines as _baselines
from . import quality_metrics as M
from .robustness import check_perturb, perturbed_tokens

METRICS = ("pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance")
MIN_SECONDS = 0.25  # PESQ refuses shorter signals (BufferTooShortError)
MAX_SHIFT_SECONDS = 0.05
BASELINE_GROUPS = {
    "opus": [f"opus@{k}" for k in _baselines.OPUS_KBPS],
    "codec2": [f"codec2@{m}" for m in _baselines.CODEC2_MODES],
}
_TOOLS = {"opus": ("opusenc", "opusdec"), "codec2": ("c2enc", "c2dec")}


@dataclass
class EvalConfig:
    """codecs: refs for `load_codec`; data: folder or .jsonl manifest; n_codebooks: counts to
    try (None: every level of each codec); baselines: "opus", "codec2" or one setting such
    as "opus@8" / "codec2@700C"."""

    codecs: list[str]
    data: str
    n_codebooks: list[int] | None = None
    baselines: list[str] = field(default_factory=list)
    max_clips: int | None = None
    device: str = "cpu"
    probe_units: str | None = None
    asr: str | None = None            # audiotok.eval.asr.load_asr
    speaker_model: str | None = None  # audiotok.eval.speaker.load_speaker_model
    mos: str | None = None            # audiotok.eval.mos.load_mos
    perturb: list[float] = field(default_factory=list)  # fractions of tokens replaced
    perturb_mode: str = "near"        # near | random (audiotok.quantizers.perturb)
    perturb_neighbours: int = 16
    perturb_seed: int = 0


@dataclass
class SystemOutput:
    """One clip through one system: wav float64 [T] at `sample_rate`; codes long [K, T'] for a
    neural codec (None for a baseline)."""

    wav: np.ndarray
    sample_rate: int
    kbps: float
    tokens_per_second: float | None = None
    codes: torch.Tensor | None = None
    perturbed: float | None = None  # fraction of the codes changed before decoding


@dataclass
class System:
    """A codec at one codebook count or a baseline at one setting. run(wav [T], sr)."""

    name: str
    kind: str  # "codec" | "baseline"
    run: Callable[[np.ndarray, int], SystemOutput]
    codec: str | None = None
    n_codebooks: int | None = None
    codebook_sizes: list[int] | None = None
    perturb: float | None = None  # fraction of tokens perturbed; None for baselines
    # a diffusion decoder's sampling (codecs/sampling.py): {"steps", "seed", "text": False}
    sampling: dict | None = None


@dataclass
class EvalResult:
    """clips: per-clip scores {clip, path, duration, sample_rate, systems: {name: {...}}};
    rows: one pooled row per system; excluded: [{clip, reason}]; examples: the first clip's
    reference and each system's output, for spectrograms."""

    config: dict
    rows: list[dict]
    clips: list[dict]
    excluded: list[dict]
    examples: dict = field(default_factory=dict)


def parse_baselines(names: list[str]) -> list[str]:
    """"opus" / "codec2" / "opus@6" / "codec2@700C" -> concrete settings, in order."""
    out: list[str] = []
    for name in names:
        coder, _, setting = name.partition("@")
        if coder not in BASELINE_GROUPS:
            raise AudiotokError(f"unknown baseline '{name}'; choose from "
                                f"{', '.join(BASELINE_GROUPS)} (optionally @setting, e.g. "
                                f"opus@8, codec2@700C)")
        if setting and coder == "opus":
            try:
                float(setting)
            except ValueError:
                raise AudiotokError(f"baseline '{name}': opus takes a bitrate in kbps, "
                                    f"e.g. opus@8") from None
        if setting and coder == "codec2" and setting not in _baselines.CODEC2_FRAME:
            raise AudiotokError(f"baseline '{name}': unknown Codec2 mode; choose from "
                                f"{', '.join(_baselines.CODEC2_FRAME)}")
        for s in [name] if setting else BASELINE_GROUPS[coder]:
            if s not in out:
                out.append(s)
    for coder in {s.partition("@")[0] for s in out}:
        for tool in _TOOLS[coder]:
            if shutil.which(tool) is None:
                raise AudiotokError(f"baseline {coder} needs '{tool}', which is not installed "
                                    f"({_baselines.TOOL_PACKAGE[tool]})")
    return out


def _baseline_system(setting: str) -> System:
    coder, _, value = setting.partition("@")

    def run(wav: np.ndarray, sr: int) -> SystemOutput:
        out = (_baselines.opus(wav, sr, float(value)) if coder == "opus"
               else _baselines.codec2(wav, sr, value))
        return SystemOutput(out.wav.astype(np.float64), sr, out.kbps)

    return System(setting, "baseline", run)


def _codec_input(codec, wav: np.ndarray, sr: int, device: str) -> torch.Tensor:
    """Mono float64 [T] at `sr` -> [1, C, T'] float32 at the codec's rate and channels."""
    x = resample(wav[None], sr, codec.sample_rate) if sr != codec.sample_rate else wav[None]
    x = np.repeat(x, codec.channels, axis=0) if codec.channels > 1 else x
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(device)


def _codec_systems(codec, label: str, cfg: EvalConfig) -> list[System]:
    """One system per codebook count, and with `cfg.perturb` one per count and fraction (its
    tokens perturbed before decoding, named e.g. "tiny@8~0.1"); the encoding of a clip is
    shared by a count's systems."""
    counts = cfg.n_codebooks or encodable_counts(codec.quantizer)
    for n in counts:
        codec.quantizer.check_n_codebooks(n)  # a clear error before any clip is processed
    if cfg.perturb and cfg.perturb_mode == "near":
        try:
            codec.quantizer.code_vectors()
        except NotImplementedError as e:
            raise AudiotokError(f"--perturb-mode near: {e}; use --perturb-mode random") from None
    systems = []
    for n in counts:
        encoded: dict = {}  # the last clip's tokens: (clip array, Tokens)

        def run(wav: np.ndarray, sr: int, n: int = n, fraction: float = 0.0,
                encoded: dict = encoded) -> SystemOutput:
            if encoded.get("wav") is not wav:
                encoded.update(wav=wav, tokens=codec.encode(_codec_input(codec, wav, sr,
                                                                          cfg.device), n))
            tokens, changed = encoded["tokens"], None
            if fraction:
                tokens, changed = perturbed_tokens(codec, tokens, fraction, wav, cfg)
            y = codec.decode(tokens)[0].mean(0).double().cpu().numpy()
            return SystemOutput(y, codec.output_sample_rate, tokens.bitrate / 1000,
                                tokens.tokens_per_second, tokens.codes[0].cpu(), changed)
        from ..codecs.sampling import default_sampling

        sampling = default_sampling(getattr(codec, "decoder", None))
        for fraction in [0.0, *cfg.perturb]:
            name = f"{label}@{n}" + (f"~{fraction:g}" if fraction else "")
            systems.append(System(name, "codec", functools.partial(run, fraction=fraction),
                                  codec=label, n_codebooks=n,
                                  codebook_sizes=list(codec.codebook_sizes[:n]),
                                  perturb=fraction,
                                  # decoded from the tokens alone: no transcript, no prompt
                                  sampling=None if sampling is None else
                                  {**sampling.to_meta(), "text": False, "prompt": False}))
    return systems


def _label(ref: str) -> str:
    """The folder or file stem; for a training run's export (runs/NAME/model), the run's name."""
    path = Path(ref.rstrip("/"))
    if path.name == "model" and path.parent.name:
        return path.parent.name
    return path.stem or ref


def codec_labels(refs: list[str]) -> list[str]:
    """Short, unique names for codecs (`_label`), numbered when repeated."""
    stems = [_label(r) for r in refs]
    return [s if stems.count(s) == 1 else f"{s}-{i + 1}" for i, s in enumerate(stems)]


def score(ref: np.ndarray, out: SystemOutput) -> dict:
    """Metrics of one output against the reference (both mono, ref at out.sample_rate)."""
    sr = out.sample_rate
    a = M.align(ref, out.wav, int(MAX_SHIFT_SECONDS * sr))
    res: dict = {"kbps": out.kbps, "tokens_per_second": out.tokens_per_second,
                 "delay": a.delay, "delay_ms": 1000 * a.delay / sr, "undefined": {}}
    if out.perturbed is not None:
        res["perturbed_fraction"] = out.perturbed
    for name, s in (("pesq_wb", M.pesq_wb(a.ref, a.est, sr)),
                    ("pesq_nb", M.pesq_nb(a.ref, a.est, sr)),
                    ("stoi", M.stoi(a.ref, a.est, sr))):
        res[name] = s.value
        if s.value is None:
            res["undefined"][name] = s.reason
    res["si_sdr"] = M.si_sdr(a.ref, a.est)
    res["mel_distance"] = M.mel_distance(a.ref, a.est, sr)
    return res


def _load_clip(path: str) -> tuple[np.ndarray, int]:
    """Mono float64 [T] at the file's rate; AudioError with the reason when unusable."""
    wav, sr = load_audio(path, channels=1)
    x = wav[0].double().numpy()
    if not np.any(np.abs(x) > 1e-6):
        raise AudioError("silent clip (all samples zero): PESQ/STOI are undefined")
    if x.size < MIN_SECONDS * sr:
        raise AudioError(f"too short ({x.size / sr:.3f} s; PESQ needs {MIN_SECONDS} s)")
    return x, sr


@dataclass
class _Probe:
    """A codec's content probe: its label, the codec and the pooled counts."""

    label: str
    codec: object
    counts: object  # audiotok.distill.probe.ContentProbe


def evaluate(cfg: EvalConfig, progress: bool = True) -> EvalResult:
    import time

    from tqdm import tqdm

    from ..codecs import load_codec
    from ..data.manifest import index_files
    from .judges import Judges

    if not cfg.codecs and not cfg.baselines:
        raise AudiotokError("nothing to evaluate: give --codec and/or --baselines")
    if cfg.probe_units and not cfg.codecs:
        raise AudiotokError("--probe-units probes neural codecs: give at least one --codec")
    if cfg.perturb and not cfg.codecs:
        raise AudiotokError("--perturb perturbs neural codecs' tokens: give at least one "
                            "--codec")
    check_perturb(cfg)
    settings = parse_baselines(cfg.baselines)
    labeller = None
    if cfg.probe_units:  # a bad units file fails before any codec loads or clip is read
        from ..distill.probe import UnitLabeller

        labeller = UnitLabeller(cfg.probe_units, cfg.device)
    start = time.perf_counter()
    # judges load before the clips are read: a bad model name fails first
    judges = Judges.load(cfg.asr, cfg.speaker_model, cfg.mos, cfg.device)
    index = index_files(cfg.data)
    items = index.items[: cfg.max_clips] if cfg.max_clips else index.items
    systems, probes = [], []
    for ref, label in zip(cfg.codecs, codec_labels(cfg.codecs)):
        codec = load_codec(ref, device=cfg.device)
        systems += _codec_systems(codec, label, cfg)
        if labeller is not None:
            from ..distill.probe import ContentProbe

            probes.append(_Probe(label, codec,
                                 ContentProbe(codec.codebook_sizes, labeller.n_units)))
    systems += [_baseline_system(s) for s in settings]

    base = Path(cfg.data) if Path(cfg.data).is_dir() else Path(cfg.data).parent
    excluded = [_skipped(s, base) for s in index.skipped]
    clips, examples, codes = [], {}, {s.name: [] for s in systems if s.kind == "codec"}
    for item in tqdm(items, desc="eval", unit="clip", file=sys.stderr, disable=not progress):
        try:
            wav, sr = _load_clip(item.path)
        except AudioError as e:
            excluded.append({"clip": item.name, "reason": _strip_path(str(e), item.path)})
            continue
        clip = {"clip": item.name, "path": item.path, "duration": wav.size / sr,
                "sample_rate": sr, "systems": {}}
        outputs = {}
        for system in systems:
            out = outputs[system.name] = system.run(wav, sr)
            ref = wav if out.sample_rate == sr else resample(wav[None], sr, out.sample_rate)[0]
            clip["systems"][system.name] = score(ref, out)
            if out.codes is not None:
                codes[system.name].append(out.codes)
            if not clips:
                examples.setdefault("reference", {})[out.sample_rate] = ref
                examples[system.name] = (out.wav, out.sample_rate)
        if judges:
            clip["original"], judged = judges.score_clip(wav, sr, outputs, item.text,
                                                         item.language)
            for name, extra in judged.items():
                clip["systems"][name]["undefined"].update(extra.pop("undefined"))
                clip["systems"][name].update(extra)
        if probes:  # only clips that were scored
            _probe_clip(probes, labeller, wav, sr, item.speaker, codes, cfg.device)
        clips.append(clip)
    rows = [_pool(s, clips, codes.get(s.name, [])) for s in systems]
    if judges:
        from .judges import pool

        for row in rows:
            row["metrics"].update(pool([c["systems"][row["name"]] for c in clips]))
        rows.insert(0, _original_row([c["original"] for c in clips]))
    for probe in probes:
        result = _finite(probe.counts.result())
        result.update(units_file=str(cfg.probe_units), teacher=labeller.meta["teacher"])
        for row in rows:
            if row["kind"] == "codec" and row["codec"] == probe.label:
                row["content_probe"] = result
    config = {"codecs": list(cfg.codecs), "data": str(cfg.data), "n_codebooks": cfg.n_codebooks,
              "baselines": settings, "max_clips": cfg.max_clips, "probe_units": cfg.probe_units,
              "perturb": ({"fractions": list(cfg.perturb), "mode": cfg.perturb_mode,
                           "neighbours": cfg.perturb_neighbours, "seed": cfg.perturb_seed}
                          if cfg.perturb else None),
              "max_shift_seconds": MAX_SHIFT_SECONDS, "min_seconds": MIN_SECONDS,
              "n_clips_found": len(index.items) + len(index.skipped),
              "n_clips_scored": len(clips), **judges.describe(),
              "timing": _timing(time.perf_counter() - start, clips, judges)}
    return EvalResult(config, rows, clips, excluded, examples)


def _original_row(scores: list[dict]) -> dict:
    """The original audio judged as a system: what the ASR and MOS models make of the input
    itself (no bitrate, no signal metrics)."""
    from .judges import pool

    metrics = {m: {"mean": None, "n": 0, "n_undefined": 0} for m in METRICS}
    metrics.update(pool(scores))
    return {"name": "original", "kind": "reference", "codec": None, "n_codebooks": None,
            "perturb": None,
            "n_clips": len(scores), "kbps": None, "tokens_per_second": None,
            "delay_ms": None, "metrics": metrics}


def _timing(wall: float, clips: list[dict], judges) -> dict:
    """Seconds spent per second of audio scored, overall and in each judge."""
    audio = sum(c["duration"] for c in clips)
    per = (lambda s: s / audio if audio else None)
    return {"wall_seconds": wall, "audio_seconds": audio, "seconds_per_audio_second": per(wall),
            **{f"{k}_seconds": v for k, v in judges.seconds.items() if v}}


def _probe_clip(probes: list[_Probe], labeller, wav: np.ndarray, sr: int, speaker: str | None,
                codes: dict[str, list[torch.Tensor]], device: str) -> None:
    """Add one scored clip to every codec's probe: the teacher runs once; each codec's codes
    at all levels are reused from its full-depth system when evaluated, else encoded."""
    feats = labeller.features(torch.from_numpy(wav), sr)
    for probe in probes:
        codec = probe.codec
        full = codes.get(f"{probe.label}@{codec.n_codebooks}")
        if full:
            clip_codes = full[-1]
        else:
            clip_codes = codec.encode(_codec_input(codec, wav, sr, device)).codes[0].cpu()
        probe.counts.add(clip_codes, labeller.assign(feats, clip_codes.shape[-1]), speaker)


def _finite(x):
    """NaN/inf -> None, recursively (report.json is strict JSON)."""
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _skipped(message: str, base: Path) -> dict:
    """index_files' "path: reason" -> {clip, reason}, the clip named relative to `base` like
    the scored ones."""
    clip, _, reason = message.partition(": ")
    try:
        clip = Path(clip).relative_to(base).as_posix()
    except ValueError:
        pass
    return {"clip": clip, "reason": reason or message}


def _strip_path(message: str, path: str) -> str:
    return message[len(path) + 2:] if message.startswith(path + ": ") else message


def _pool(system: System, clips: list[dict], codes: list[torch.Tensor]) -> dict:
    """Means over the scored clips; each metric counts the clips where it was undefined."""
    scores = [c["systems"][system.name] for c in clips]
    row = {"name": system.name, "kind": system.kind, "codec": system.codec,
           "n_codebooks": system.n_codebooks, "perturb": system.perturb,
           "n_clips": len(scores),
           "kbps": _mean([s["kbps"] for s in scores]),
           "tokens_per_second": _mean([s["tokens_per_second"] for s in scores]),
           # the median of the clips' delays, in ms (a codec's delay is one number; the
           # spread of the per-clip values is the alignment's own error)
           "delay_ms": float(np.median([s["delay_ms"] for s in scores])) if scores else None,
           "metrics": {}}
    if system.perturb:  # the fraction actually changed (each token draws independently)
        row["perturbed_fraction"] = _mean([s.get("perturbed_fraction") for s in scores])
    if system.sampling is not None:
        row["sampling"] = system.sampling
    for m in METRICS:
        values = [s[m] for s in scores if s[m] is not None]
        row["metrics"][m] = {"mean": _mean(values), "n": len(values),
                             "n_undefined": len(scores) - len(values)}
    if codes:
        # Clips are concatenated along time: one spurious bigram per clip boundary.
        pooled = torch.cat(codes, dim=-1)
        row["token_stats"] = {
            "entropy_bits": M.code_entropy(pooled, system.codebook_sizes),
            "bigram_conditional_entropy_bits":
                M.bigram_conditional_entropy(pooled, system.codebook_sizes),
            "usage": M.codebook_usage(pooled, system.codebook_sizes),
            "n_frames": int(pooled.shape[-1])}
    return row


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
