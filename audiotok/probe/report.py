"""Probe reports: a Markdown table for stdout, `probe.json`, and `probe.png` (the score
against kbps per codec, the log-mel baseline and chance as lines). Files are written only
once every probe has finished, each atomically, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..fileio import atomic_path, atomic_write_bytes

METRIC_NAMES = {"accuracy": "accuracy", "cer": "CER"}


def downstream_table(report: dict) -> str:
    rows = report["rows"]
    metric = METRIC_NAMES[rows[0]["metric"]] if rows else "score"
    lines = [f"| system | n_codebooks | kbps | {metric} | train loss start -> end |",
             "|---|---|---|---|---|"]
    for r in rows:
        kbps = "-" if r["kbps"] is None else f"{r['kbps']:.2f}"
        n = "-" if r["n_codebooks"] is None else str(r["n_codebooks"])
        lines.append(f"| {r['name']} | {n} | {kbps} | {r['value']:.3f} | "
                     f"{r['loss_start']:.3f} -> {r['loss_end']:.3f} |")
    chance = report["chance"]
    if "majority_accuracy" in chance:
        lines.append(f"| chance (majority class) | - | - | {chance['majority_accuracy']:.3f} | "
                     f"- |")
    return "\n".join(lines)


def lm_table(report: dict) -> str:
    lines = ["| layout | bits/token | bits/s | context (s) | training bits/code start -> end |",
             "|---|---|---|---|---|"]
    for name, row in report["baselines"].items():
        lines.append(f"| {name.replace('_', ' ')} (context-free) | {row['bits_per_token']:.3f} "
                     f"| {row['bits_per_second']:.1f} | - | - |")
    for name, row in report["layouts"].items():
        label = f"group {row['groups']}" if name == "group" else name
        context = ", ".join(f"{c:.2f}" for c in row["context_seconds"])
        curve = "; ".join(f"{c['bits_per_code_start']:.2f} -> {c['bits_per_code_end']:.2f}"
                          for c in row["training"])
        lines.append(f"| {label} LM | {row['bits_per_token']:.3f} | "
                     f"{row['bits_per_second']:.1f} | {context} | {curve} |")
    return "\n".join(lines)


def write_report(report: dict, out: Path, plot: bool = True) -> list[Path]:
    """probe.json (and probe.png for a downstream task) into `out`."""
    out = Path(out)
    written = []
    if plot and report.get("rows"):
        written.append(_plot(report, out / "probe.png"))
    atomic_write_bytes(out / "probe.json", (json.dumps(report, indent=1) + "\n").encode())
    return [out / "probe.json", *written]


def _plot(report: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report["rows"]
    fig = Figure(figsize=(6, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for codec in dict.fromkeys(r["codec"] for r in rows if r["codec"]):
        pts = sorted((r["kbps"], r["value"]) for r in rows if r["codec"] == codec)
        ax.plot(*zip(*pts), marker="o", label=codec)
    for r in rows:
        if r["kind"] == "continuous":
            ax.axhline(r["value"], linestyle="--", color="black", linewidth=1, label=r["name"])
    chance = report["chance"].get("majority_accuracy")
    if chance is not None:
        ax.axhline(chance, linestyle=":", color="gray", linewidth=1, label="chance")
    ax.set_xlabel("kbps")
    ax.set_ylabel(METRIC_NAMES[rows[0]["metric"]])
    ax.set_title(f"probe: {report['task']}" + (f" ({report['label_key']})"
                                               if report.get("label_key") else ""))
    ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path
