"""The recipe's `distill` section: named heads, each with its frozen teacher and losses.

    distill:
      heads:
        hubert:                          # losses come out as distill/hubert/<loss>
          teacher: {type: ssl, path: facebook/hubert-base-ls960, layers: []}
          losses: [d_axis]               # weight them in losses.weights by that name

Heads are a mapping (not a list) so an overlay or `--set distill.heads.hubert.teacher.path=...`
changes one field of one head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TEACHER_TYPES = ("ssl", "text", "asr")
LOSS_KINDS = ("cosine", "d_axis", "t_axis", "mse")
INPUTS = ("semantic", "reconstruction")


@dataclass
class TeacherConfig:
    """A frozen `transformers` model.

    type:        ssl  - speech SSL model (HuBERT, WavLM, wav2vec 2.0) on the input audio
                 text - BERT-style LM on the manifest transcript of the excerpt's file
                 asr  - Whisper encoder (from a WhisperModel checkpoint)
    path:        local directory or hub id, opened with `AutoModel.from_pretrained`
    layers:      hidden_states indices averaged into the target (0 = the input embeddings,
                 i = output of layer i); [] = every layer from 1 on
    sample_rate: the audio teachers' input rate (the codec's audio is resampled to it)
    normalize:   zero-mean unit-variance input per utterance (what the model's feature
                 extractor does when `do_normalize` is set, e.g. WavLM-Large)
    cache:       folder written by `audiotok distill-cache` (ssl teachers): features are read
                 from it instead of running the model
    """

    type: str
    path: str
    layers: list[int] = field(default_factory=list)
    sample_rate: int = 16000
    normalize: bool = False
    cache: str | None = None

    def __post_init__(self):
        if self.type not in TEACHER_TYPES:
            raise ValueError(f"teacher type must be one of {', '.join(TEACHER_TYPES)}, "
                             f"got '{self.type}'")
        if not self.path:
            raise ValueError("teacher path must name a local directory or a hub id")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if any(i < 0 for i in self.layers):
            raise ValueError(f"layers must be hidden-state indices >= 0, got {self.layers}")
        if self.cache is not None and self.type != "ssl":
            raise ValueError("only ssl teachers read a feature cache")


@dataclass
class HeadConfig:
    """One distillation target.

    input:  semantic       - project the quantizer's semantic z_q (level 0 of an RVQ, the
                             semantic levels of a split RVQ) to the teacher's width and compare
                             with the teacher's features of the input (SpeechTokenizer, Mimi)
            reconstruction - run the teacher on the audio decoded from the semantic levels
                             alone and compare with its features of the input (LM-SPT); no
                             projection, gradients flow through the frozen teacher
    losses: cosine (1 - cos per frame, Mimi), d_axis (SpeechTokenizer), t_axis
            (SpeechTokenizer's L1 + log-sigmoid cosine per frame), mse
    """

    teacher: TeacherConfig
    losses: list[str] = field(default_factory=lambda: ["d_axis"])
    input: str = "semantic"

    def __post_init__(self):
        bad = [k for k in self.losses if k not in LOSS_KINDS]
        if bad or not self.losses:
            raise ValueError(f"losses must be a non-empty list from {', '.join(LOSS_KINDS)}, "
                             f"got {self.losses}")
        if self.input not in INPUTS:
            raise ValueError(f"input must be one of {', '.join(INPUTS)}, got '{self.input}'")
        if self.input == "reconstruction" and self.teacher.type == "text":
            raise ValueError("a text teacher cannot read reconstructed audio")
        if self.input == "reconstruction" and self.teacher.cache is not None:
            raise ValueError("reconstructions change every step: they cannot come from a cache")


@dataclass
class DistillConfig:
    heads: dict[str, HeadConfig] = field(default_factory=dict)

    def __post_init__(self):
        if not self.heads:
            raise ValueError("distill.heads must name at least one head")
        for name in self.heads:
            if not name or "/" in name:
                raise ValueError(f"head name must be non-empty without '/', got '{name}'")

    def loss_names(self) -> list[str]:
        """The names the heads' losses are logged and weighted by."""
        return [f"distill/{name}/{kind}" for name, head in self.heads.items()
                for kind in head.losses]
