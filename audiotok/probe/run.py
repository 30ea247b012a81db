"""The downstream probe over every system: read and check the manifests, encode each clip
once per codec and codebook count (and the log-mel baseline), train a head per system.

    report = downstream_probe("train.jsonl", "test.jsonl", ["audiotok/speech-16k"], [2, 8],
                              ProbeConfig(task="speaker"))
    report["rows"][0]["value"]
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict

from ..errors import AudiotokError
from .data import ClipSet, load_split
from .downstream import ProbeConfig, fit_and_score
from .features import System, codec_systems, mel_system


def open_systems(codecs: list[str], counts: list[int] | None, baseline: bool, device: str
                 ) -> list[System]:
    """Every codec opened (and every count checked) before any clip is encoded."""
    from ..codec_backend import open_codec
    from ..eval.evaluate import codec_labels

    systems = []
    for ref, label in zip(codecs, codec_labels(codecs)):
        systems += codec_systems(open_codec(ref, device), label, counts, device)
    if baseline:
        systems.append(mel_system())
    if not systems:
        raise AudiotokError("nothing to probe: give a --codec or keep the log-mel baseline")
    return systems


def downstream_probe(train_manifest, test_manifest, codecs: list[str],
                     counts: list[int] | None, cfg: ProbeConfig, label_key: str | None = None,
                     baseline: bool = True, log=None) -> dict:
    """The report: task, data, chance levels and one row per system (`ProbeResult`)."""
    log = log or (lambda msg: print(f"audiotok: {msg}", file=sys.stderr))
    train, test = load_split(train_manifest, test_manifest, cfg.task, label_key)
    systems = open_systems(codecs, counts, baseline, cfg.device)
    rows = []
    for system in systems:
        train_x = [system.features(c.path) for c in train.clips]
        test_x = [system.features(c.path) for c in test.clips]
        result = fit_and_score(system, train_x, _targets(train), test_x, _targets(test), cfg)
        rows.append(result.to_dict())
        log(f"probe {cfg.task}: {system.name}: {result.metric} {result.value:.3f} "
            f"(training loss {result.loss_start:.3f} -> {result.loss_end:.3f})")
    return {"task": cfg.task, "label_key": label_key, "config": asdict(cfg),
            "train": _describe(train, cfg.task), "test": _describe(test, cfg.task),
            "chance": _chance(train, test, cfg.task), "rows": rows}


def _targets(clips: ClipSet) -> list[str]:
    return [c.target for c in clips.clips]


def _describe(clips: ClipSet, task: str) -> dict:
    out = {"manifest": clips.source, "clips": len(clips.clips)}
    if task != "ctc":
        out["classes"] = len(clips.classes)
    return out


def _chance(train: ClipSet, test: ClipSet, task: str) -> dict:
    """What a head that ignores its input scores: the training set's majority class, and a
    uniform guess; for CTC an empty transcript (CER 1)."""
    if task == "ctc":
        return {"empty_transcript_cer": 1.0}
    majority = Counter(_targets(train)).most_common(1)[0][0]
    hits = sum(c.target == majority for c in test.clips)
    return {"majority_class": majority, "majority_accuracy": hits / len(test.clips),
            "uniform_accuracy": 1 / len(train.classes)}
