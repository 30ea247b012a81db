"""DataConfig: where the training audio is and how excerpts are cut, levelled and augmented.

    data:
      train: /corpora/speech            # folder (searched recursively) or manifest.jsonl
      val: null                         # null: hold out val_fraction of train, by path hash
      segment_seconds: 0.38             # the default: DAC's training excerpts
      loudness_db: -24.0                # LUFS per excerpt; null leaves levels alone
      augment: {gain_db: [-6, 6], polarity_prob: 0.5}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..strict_config import from_dict

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class AugmentConfig:
    """Random changes applied to training excerpts (never to validation).

    gain_db:       [low, high] uniform random gain in dB, applied after loudness
                   normalisation; [0, 0] disables it.
    polarity_prob: probability of flipping the sign of the waveform.
    audiotools:    optional descript-audiotools transforms, applied first, each
                   `{name: <class in audiotools.data.transforms>, <its arguments>}`, e.g.
                   `{name: LowPass, cutoff: [choice, [4000, 8000]], prob: 0.3}`. Their
                   random draws come from the excerpt's own seed, so they stay reproducible.
    """

    gain_db: list[float] = field(default_factory=lambda: [0.0, 0.0])
    polarity_prob: float = 0.0
    audiotools: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if len(self.gain_db) != 2 or self.gain_db[0] > self.gain_db[1]:
            raise ValueError(f"augment.gain_db must be [low, high], got {self.gain_db}")
        if not 0.0 <= self.polarity_prob <= 1.0:
            raise ValueError(f"augment.polarity_prob must be in [0, 1], got {self.polarity_prob}")
        for i, spec in enumerate(self.audiotools):
            if not isinstance(spec.get("name"), str):
                raise TypeError(f"augment.audiotools[{i}] needs a 'name' (a transform class)")

    @property
    def enabled(self) -> bool:
        return self.gain_db != [0.0, 0.0] or self.polarity_prob > 0 or bool(self.audiotools)


@dataclass
class DataConfig:
    """Training and validation data. Paths are folders or `.jsonl` manifests whose lines are
    `{"path": ..., "text": ..., "speaker": ..., "duration": ...}` (only "path" required;
    relative paths are relative to the manifest's folder)."""

    train: str
    val: str | None = None
    val_fraction: float = 0.05          # held out of `train` when `val` is None
    val_by_speaker: bool = False        # hold out whole speakers (manifest "speaker")
    segment_seconds: float = 0.38       # DAC's training excerpts
    val_segment_seconds: float = 4.0
    loudness_db: float | None = -24.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 4
    min_seconds: float = 0.0            # shorter files are skipped when indexing

    def __post_init__(self):
        if not self.train:
            raise ValueError("train must name a folder or a .jsonl manifest")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.segment_seconds <= 0 or self.val_segment_seconds <= 0:
            raise ValueError("segment_seconds and val_segment_seconds must be positive")
        if self.num_workers < 0 or self.min_seconds < 0:
            raise ValueError("num_workers and min_seconds must not be negative")
        if isinstance(self.augment, dict):  # built directly rather than through from_dict
            self.augment = from_dict(AugmentConfig, self.augment, "augment")
