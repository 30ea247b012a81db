"""Labelled clips for the downstream probes, read from JSONL manifests and checked before any
audio is encoded: every line has the key the task needs, training holds at least two classes,
the test set holds no class training never saw, CTC has enough transcribed speech.

    train, test = load_split("train.jsonl", "test.jsonl", task="label", label_key="emotion")
    train.clips[0].target          # "happy"; for --task ctc the normalised transcript
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.manifest import manifest_entries
from ..errors import AudiotokError

TASKS = ("speaker", "label", "ctc")
# CTC learns an alignment from scratch: below this much transcribed speech a BiLSTM stays on
# the all-blank output and the CER says nothing about the tokens
MIN_CTC_CLIPS = 20
MIN_CTC_CHARS = 200


@dataclass(frozen=True)
class Clip:
    path: str
    name: str          # the path as listed
    target: str        # class, or the normalised transcript for CTC
    language: str | None = None


@dataclass
class ClipSet:
    source: str
    clips: list[Clip]

    @property
    def classes(self) -> list[str]:
        return sorted({c.target for c in self.clips})


def task_key(task: str, label_key: str | None) -> str:
    """The manifest key a task reads."""
    if task not in TASKS:
        raise AudiotokError(f"unknown probe task '{task}' (use {', '.join(TASKS)} or lm)")
    if task == "label":
        if not label_key:
            raise AudiotokError("--task label needs --label-key (the manifest key holding "
                                "the class, e.g. emotion)")
        return label_key
    if label_key:
        raise AudiotokError(f"--label-key is for --task label; --task {task} reads "
                            f"\"{'speaker' if task == 'speaker' else 'text'}\"")
    return "speaker" if task == "speaker" else "text"


def read_clips(manifest, key: str, task: str) -> ClipSet:
    """Every line of `manifest` with its `key` (a class, or text for CTC)."""
    path = Path(manifest)
    if not path.is_file():
        raise AudiotokError(f"{path}: no such manifest")
    if path.suffix.lower() != ".jsonl":
        raise AudiotokError(f"{path}: expected a .jsonl manifest (one JSON object per line "
                            f"with \"path\" and \"{key}\")")
    clips = []
    for number, entry in manifest_entries(path):
        where = f"{path} line {number}"
        value = entry.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            flag = f"--label-key {key}" if task == "label" else f"--task {task}"
            raise AudiotokError(f"{where}: no \"{key}\" ({flag} needs one on every line)")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise AudiotokError(f"{where}: \"{key}\" must be a string or an integer, got "
                                f"{value!r}")
        audio = Path(entry["path"])
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise AudiotokError(f"{where}: {audio}: no such file")
        language = entry.get("language")
        target = _transcript(str(value), language) if task == "ctc" else str(value)
        if not target:
            raise AudiotokError(f"{where}: \"text\" is empty once normalised ({value!r})")
        clips.append(Clip(str(audio), entry["path"], target,
                          None if language is None else str(language)))
    if not clips:
        raise AudiotokError(f"{path}: the manifest lists no clips")
    return ClipSet(str(path), clips)


def _transcript(text: str, language: str | None) -> str:
    """What CTC is trained on and scored against: the eval's ASR normalisation (Whisper's,
    which drops punctuation and case), so a CER here reads like `audiotok eval --asr`'s."""
    from ..eval.text import normalise

    return normalise(text, language)


def load_split(train, test, task: str, label_key: str | None = None
               ) -> tuple[ClipSet, ClipSet]:
    """Both manifests, checked for what `task` needs (one-line AudiotokError otherwise)."""
    key = task_key(task, label_key)
    train_set, test_set = read_clips(train, key, task), read_clips(test, key, task)
    if task == "ctc":
        chars = sum(len(c.target.replace(" ", "")) for c in train_set.clips)
        if len(train_set.clips) < MIN_CTC_CLIPS or chars < MIN_CTC_CHARS:
            raise AudiotokError(
                f"{train}: too little data for CTC: {len(train_set.clips)} transcribed clips "
                f"and {chars} characters; need at least {MIN_CTC_CLIPS} clips and "
                f"{MIN_CTC_CHARS} characters")
        return train_set, test_set
    classes = train_set.classes
    if len(classes) < 2:
        raise AudiotokError(f"{train}: --task {task} needs at least 2 classes of \"{key}\", "
                            f"found {len(classes)} ({classes[0]!r})")
    unseen = sorted(set(test_set.classes) - set(classes))
    if unseen:
        raise AudiotokError(f"{test}: {len(unseen)} \"{key}\" value(s) never seen in {train} "
                            f"(a probe cannot predict them), e.g. {unseen[0]!r}")
    return train_set, test_set
