"""Write an `EvalResult` to a folder: report.json (every number), report.md and report.html
(one table row per system, and with a content probe a "Content per level" table), quality.png
(PESQ-WB and STOI against bitrate), with `--perturb` robustness.png (mel distance, STOI and
PESQ-WB against the fraction of tokens perturbed) and spectrogram comparisons of the first
clip. Every file is written atomically."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

from ..fileio import atomic_path, atomic_write_bytes
from .evaluate import EvalResult

COLUMNS = (("kbps", "kbps", 3), ("tokens/s", "tokens_per_second", 1),
           ("PESQ-WB", "pesq_wb", 2), ("PESQ-NB", "pesq_nb", 2), ("STOI", "stoi", 3),
           ("SI-SDR (dB)", "si_sdr", 2), ("mel dist", "mel_distance", 3),
           ("delay (ms)", "delay_ms", 1))
ROW_KEYS = ("kbps", "tokens_per_second", "delay_ms", "perturb")  # in the row, not its metrics
# shown when some row has perturbed tokens: the nominal fraction (audiotok eval --perturb)
PERTURB_COLUMN = ("perturbed", "perturb", 2)
# panels of robustness.png
ROBUSTNESS_PLOTS = (("mel_distance", "mel distance (lower is better)"), ("stoi", "STOI"),
                    ("pesq_wb", "PESQ-WB"))
# the judges' columns, shown when any row has them (audiotok.eval.judges)
JUDGE_COLUMNS = (("WER", "wer", 3), ("CER", "cer", 3), ("SIM", "sim", 3),
                 ("DNSMOS", "dnsmos_ovrl", 2), ("DNSMOS SIG", "dnsmos_sig", 2))
# panels of quality.png: (metric, axis label); the judges' only when measured
PLOTS = (("pesq_wb", "PESQ-WB"), ("stoi", "STOI"), ("wer", "WER (lower is better)"),
         ("sim", "speaker similarity"), ("dnsmos_ovrl", "DNSMOS OVRL"))


def write_report(result: EvalResult, out_dir) -> list[Path]:
    """Write every report file into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"config": result.config, "pooled": result.rows, "excluded": result.excluded,
            "clips": result.clips}
    atomic_write_bytes(out / "report.json",
                       json.dumps(data, indent=2, allow_nan=False, default=_jsonable).encode())
    table = markdown_table(result.rows)
    atomic_write_bytes(out / "report.md", _markdown(result, table).encode())
    written = [out / "report.json", out / "report.md"]
    written.append(_plot_quality(result.rows, out / "quality.png"))
    if _perturbed(result.rows):
        written.append(_plot_robustness(result.rows, out / "robustness.png"))
    written += _plot_spectrograms(result, out)
    atomic_write_bytes(out / "report.html", _html(result, out / "quality.png").encode())
    written.append(out / "report.html")
    return written


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _cell(row: dict, key: str, digits: int) -> str:
    stat = None if key in ROW_KEYS else row["metrics"].get(key)
    value = row.get(key) if key in ROW_KEYS else (stat or {}).get("mean")
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.{digits}f}"
    missing = 0 if stat is None else stat["n_undefined"]
    return text + (f" ({missing} n/a)" if missing else "")


def columns(rows: list[dict]) -> tuple:
    """The fixed columns (after "perturbed" where tokens were perturbed), then each judge's
    where some row measured it."""
    head = (PERTURB_COLUMN,) if _perturbed(rows) else ()
    return head + COLUMNS + tuple(c for c in JUDGE_COLUMNS
                                  if any(c[1] in r["metrics"] for r in rows))


def _perturbed(rows: list[dict]) -> bool:
    return any(r.get("perturb") for r in rows)


def table_rows(rows: list[dict]) -> list[list[str]]:
    cols = columns(rows)
    header = ["system"] + [c[0] for c in cols] + ["clips"]
    body = [[_system(r)] + [_cell(r, key, d) for _, key, d in cols] + [str(r["n_clips"])]
            for r in rows]
    return [header] + body


def _system(row: dict) -> str:
    """The row's name; a diffusion decoder's with the sampling it decoded with."""
    s = row.get("sampling")
    return row["name"] if not s else f"{row['name']} ({s['steps']} steps, seed {s['seed']})"


def markdown_table(rows: list[dict]) -> str:
    header, *body = table_rows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _probes(rows: list[dict]) -> dict[str, dict]:
    """{codec label: its content_probe}, in row order (every row of a codec holds the same)."""
    out: dict[str, dict] = {}
    for r in rows:
        if r.get("content_probe") and r["codec"] not in out:
            out[r["codec"]] = r["content_probe"]
    return out


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def probe_table_rows(rows: list[dict]) -> list[list[str]]:
    """Header and one row per (codec, level) of the content probes; [] without any."""
    probes = _probes(rows)
    if not probes:
        return []
    speakers = any("speaker_mi_bits" in lv for p in probes.values() for lv in p["levels"])
    header = ["codec", "level", "MI units (bits above chance)", "NMI units"]
    header += ["MI speaker (bits)"] if speakers else []
    body = []
    for codec, p in probes.items():
        for lv in p["levels"]:
            cells = [codec, str(lv["level"]), _num(lv["mi_above_chance_bits"]), _num(lv["nmi"])]
            cells += [_num(lv.get("speaker_mi_bits"))] if speakers else []
            body.append(cells)
    return [header] + body


def _probe_notes(rows: list[dict]) -> list[str]:
    notes = []
    for codec, p in _probes(rows).items():
        note = (f"{codec}: {p['frames']} frames, {p['units']} units, H(units) = "
                f"{_num(p['unit_entropy_bits'])} bits")
        if "speakers" in p:
            note += f", {p['speakers']} speakers over {p['speaker_frames']} frames"
        notes.append(note)
    return notes


PROBE_TEXT = ("Plug-in mutual information between each quantizer level's codes and the SSL "
              "k-means units of `{units}` (teacher `{teacher}`) under the same frames, minus "
              "the same estimate with the units shifted by half a clip (chance); NMI = "
              "I(codes; units) / H(units), not chance-corrected. MI with the manifest's "
              "speakers where given. Content-carrying levels score high on units.")


def _probe_text(rows: list[dict]) -> str:
    p = next(iter(_probes(rows).values()))
    return PROBE_TEXT.format(units=p.get("units_file", "?"),
                             teacher=(p.get("teacher") or {}).get("path", "?"))


def _markdown(result: EvalResult, table: str) -> str:
    cfg = result.config
    parts = ["# audiotok eval", "",
             (f"Data: `{cfg['data']}`: {cfg['n_clips_scored']} clips scored of "
              f"{cfg['n_clips_found']} found. Means over scored clips; \"n/a\" counts clips "
              f"where a metric is undefined. Outputs are delay-aligned per clip (on band "
              f"energies, then the waveform); \"delay\" is the median over the clips."),
             "", *_judges_text(cfg), *_perturb_text(cfg), table, "",
             "![quality](quality.png)", ""]
    if _perturbed(result.rows):
        parts += ["![robustness](robustness.png)", ""]
    probe = probe_table_rows(result.rows)
    if probe:
        header, *body = probe
        parts += ["## Content per level", "", _probe_text(result.rows), ""]
        parts += [f"- {n}" for n in _probe_notes(result.rows)] + [""]
        parts += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        parts += ["| " + " | ".join(r) + " |" for r in body] + [""]
    if result.excluded:
        parts += ["## Excluded clips", ""]
        parts += [f"- `{e['clip']}`: {e['reason']}" for e in result.excluded]
        parts.append("")
    return "\n".join(parts)


def _perturb_text(cfg: dict) -> list[str]:
    """A paragraph on the perturbed rows, when there are any."""
    p = cfg.get("perturb")
    if not p:
        return []
    how = (f"one of the {p['neighbours']} codewords nearest its own" if p["mode"] == "near"
           else "another code of its level, uniformly")
    text = (f"Rows `CODEC@K~F` decode the codec's tokens with each token replaced, with "
            f"probability F, by {how} (seed {p['seed']} with each clip's samples): quality "
            f"under an LM's token errors. report.json gives the fraction actually changed "
            f"(`perturbed_fraction`).")
    return [text, ""]


def _judges_text(cfg: dict) -> list[str]:
    """A paragraph naming the judge models and the time spent, when any was used."""
    said = []
    if cfg.get("asr"):
        said.append(f"WER/CER: ASR `{cfg['asr']}` (greedy), transcripts normalised as "
                    f"Whisper's normaliser does, edits pooled over all words; against the "
                    f"manifest's text, else against the original's transcript")
    if cfg.get("speaker_model"):
        said.append(f"SIM: cosine of `{cfg['speaker_model']}` speaker embeddings of original "
                    f"and output")
    if cfg.get("mos"):
        said.append(f"DNSMOS: `{cfg['mos']}` (P.835 OVRL and SIG columns)")
    if not said:
        return []
    timing = cfg.get("timing") or {}
    if timing.get("seconds_per_audio_second") is not None:
        said.append(f"the eval took {timing['seconds_per_audio_second']:.2f} s per second "
                    f"of audio")
    return ["; ".join(said) + ". The \"original\" row is the input audio judged the same "
            "way.", ""]


def _html(result: EvalResult, plot: Path) -> str:
    header, *body = table_rows(result.rows)
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in body)
    img = base64.b64encode(plot.read_bytes()).decode()
    robust = plot.parent / "robustness.png"
    robustness = ""
    if _perturbed(result.rows) and robust.is_file():
        robustness = (f"<p>{esc(' '.join(_perturb_text(result.config))).replace('`', '')}</p>"
                      f"<p><img alt='quality vs perturbed tokens' src='data:image/png;base64,"
                      f"{base64.b64encode(robust.read_bytes()).decode()}'></p>")
    excluded = "".join(f"<li><code>{esc(e['clip'])}</code>: {esc(e['reason'])}</li>"
                       for e in result.excluded)
    probe = probe_table_rows(result.rows)
    content = ""
    if probe:
        p_head, *p_body = probe
        content = ("<h2>Content per level</h2><p>"
                   + esc(_probe_text(result.rows)).replace("`", "") + "</p><ul>"
                   + "".join(f"<li>{esc(n)}</li>" for n in _probe_notes(result.rows))
                   + "</ul><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in p_head)
                   + "</tr>" + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r)
                                       + "</tr>" for r in p_body) + "</table>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>audiotok eval</title>"
            f"<style>table{{border-collapse:collapse}}td,th{{border:1px solid #999;"
            f"padding:2px 8px;text-align:right}}</style></head><body><h1>audiotok eval</h1>"
            f"<p>Data: <code>{esc(result.config['data'])}</code>, "
            f"{result.config['n_clips_scored']} clips scored.</p>"
            f"<table><tr>{head}</tr>{rows}</table>"
            f"<p><img alt='quality vs bitrate' src='data:image/png;base64,{img}'></p>"
            + robustness + content + (f"<h2>Excluded clips</h2><ul>{excluded}</ul>" if excluded else "")
            + "</body></html>\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    fig.clear()
    return path


def _plot_quality(rows: list[dict], path: Path) -> Path:
    """PESQ-WB, STOI and the judges' WER, SIM and DNSMOS against kbps: a line per codec over
    its codebook counts, baselines as labelled points, the original as a dashed line."""
    plt = _pyplot()
    panels = [p for p in PLOTS if p[0] in ("pesq_wb", "stoi")
              or any(p[0] in r["metrics"] for r in rows)]
    n_rows = (len(panels) + 2) // 3 if len(panels) > 2 else 1
    n_cols = 2 if len(panels) == 2 else 3
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.5 * n_cols, 4.2 * n_rows),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (metric, label) in zip(axes.flat, panels):
        original = next((r for r in rows if r["kind"] == "reference"), None)
        level = ((original or {}).get("metrics", {}).get(metric) or {}).get("mean")
        if level is not None:
            ax.axhline(level, linestyle="--", color="black", linewidth=1, label="original")
        codecs = dict.fromkeys(r["codec"] for r in rows if r["kind"] == "codec")
        for codec in codecs:
            pts = sorted((r["kbps"], _mean_of(r, metric)) for r in rows
                         if r["codec"] == codec and not r.get("perturb")
                         and _mean_of(r, metric) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=codec)
        for r in rows:
            y = _mean_of(r, metric)
            if r["kind"] == "baseline" and y is not None:
                ax.scatter([r["kbps"]], [y], marker="s", color="gray")
                ax.annotate(r["name"], (r["kbps"], y), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        ax.set_xlabel("kbps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if codecs or level is not None:
            ax.legend(fontsize=8)
    fig.suptitle("quality vs bitrate")
    _save(fig, path)
    plt.close(fig)
    return path


def _plot_robustness(rows: list[dict], path: Path) -> Path:
    """Mel distance, STOI and PESQ-WB against the fraction of tokens perturbed: a line per
    codec and codebook count, from its unperturbed row (0) through its perturbed ones."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(ROBUSTNESS_PLOTS), figsize=(5.5 * len(ROBUSTNESS_PLOTS),
                                                                 4.2), squeeze=False)
    systems = dict.fromkeys((r["codec"], r["n_codebooks"]) for r in rows if r["kind"] == "codec")
    for ax, (metric, label) in zip(axes[0], ROBUSTNESS_PLOTS):
        for codec, n in systems:
            pts = sorted((r["perturb"] or 0.0, _mean_of(r, metric)) for r in rows
                         if (r["codec"], r["n_codebooks"]) == (codec, n)
                         and _mean_of(r, metric) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{codec}@{n}")
        ax.set_xlabel("fraction of tokens perturbed")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if systems:
            ax.legend(fontsize=8)
    fig.suptitle("quality vs perturbed tokens")
    _save(fig, path)
    plt.close(fig)
    return path


def _mean_of(row: dict, metric: str):
    return (row["metrics"].get(metric) or {}).get("mean")


def _plot_spectrograms(result: EvalResult, out: Path) -> list[Path]:
    """One PNG per codec (reference above each codebook count) and one for the baselines,
    for the first scored clip."""
    ex = result.examples
    if not ex:
        return []
    groups: dict[str, list[str]] = {}
    for r in result.rows:
        groups.setdefault(r["codec"] or "baselines", []).append(r["name"])
    plt = _pyplot()
    paths = []
    for group, names in groups.items():
        names = [n for n in names if n in ex]
        if not names:
            continue
        ref_sr = ex[names[0]][1]
        panels = [("reference", ex["reference"][ref_sr], ref_sr)]
        panels += [(n, *ex[n]) for n in names]
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.8 * len(panels)), sharex=True,
                                 squeeze=False)
        for ax, (title, wav, sr) in zip(axes[:, 0], panels):
            ax.specgram(np.asarray(wav, dtype=np.float64) + 1e-9, NFFT=512, noverlap=384,
                        Fs=sr, cmap="magma")
            ax.set_title(title, fontsize=9)
            ax.set_ylabel("Hz")
        axes[-1, 0].set_xlabel("s")
        path = out / f"spectrogram_{_safe(group)}.png"
        paths.append(_save(fig, path))
        plt.close(fig)
    return paths


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
