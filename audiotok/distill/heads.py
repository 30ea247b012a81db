"""Distillation heads: training-only projections from the codec's semantic z_q to each
teacher's width, and the named losses between them.

    heads = DistillHeads(recipe.distill, recipe.model, frame_rate)    # loads the teachers
    out = codec(wav, semantic_audio=heads.needs_semantic_audio)
    losses = heads(wav, out, batch)      # {"distill/hubert/d_axis": tensor, ...}

The projections are this module's only parameters (they train with the codec and are saved in
the training checkpoint, never in the exported codec). Teachers are held in a plain dict, so
their weights are in no state dict and no optimiser.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..codecs.base import CodecConfig, CodecOutput
from ..errors import ConfigError
from .distill_config import DistillConfig
from .distill_losses import LOSSES
from .teacher_factory import build_teacher

SEMANTIC_QUANTIZERS = ("rvq", "split_rvq")


class DistillHeads(nn.Module):
    def __init__(self, cfg: DistillConfig, model: CodecConfig, frame_rate: float):
        super().__init__()
        if model.quantizer["type"] not in SEMANTIC_QUANTIZERS:
            raise ConfigError(f"distillation needs a quantizer with a semantic level "
                              f"({' or '.join(SEMANTIC_QUANTIZERS)}), not "
                              f"'{model.quantizer['type']}'")
        self.cfg = cfg
        self.proj = nn.ModuleDict()
        self.teachers = {name: build_teacher(head.teacher, model.sample_rate, frame_rate)
                         for name, head in cfg.heads.items()}
        for name, head in cfg.heads.items():
            if head.input == "semantic":
                # SpeechTokenizer: a linear map from RVQ-1's output to HuBERT's width
                self.proj[name] = nn.Linear(model.latent_dim, self.teachers[name].dim)

    @property
    def needs_semantic_audio(self) -> bool:
        return any(h.input == "reconstruction" for h in self.cfg.heads.values())

    @property
    def loss_names(self) -> list[str]:
        return self.cfg.loss_names()

    def to(self, *args, **kwargs) -> DistillHeads:
        """Moves the teachers too (they are not submodules)."""
        super().to(*args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            for teacher in self.teachers.values():
                teacher.to(device)
        return self

    def forward(self, wav: Tensor, out: CodecOutput, batch: dict | None = None
                ) -> dict[str, Tensor]:
        """wav [B, C, T] (the codec's input), its CodecOutput, the loader's batch (names,
        transcripts, offsets) -> named scalar losses. A head whose teacher has no target for
        any item of the batch (no transcripts) contributes nothing this step."""
        if out.semantic is None:
            raise ConfigError("the codec's quantizer returned no semantic latents")
        n_frames = out.semantic.shape[-1]
        losses = {}
        for name, head in self.cfg.heads.items():
            teacher = self.teachers[name]
            target, keep = teacher.targets(wav, batch, n_frames)
            if not bool(keep.any()):
                continue
            if head.input == "semantic":
                pred = self.proj[name](out.semantic.transpose(1, 2).float())
            else:
                if out.semantic_audio is None:
                    raise ConfigError(f"head '{name}' reads reconstructions: call the codec "
                                      f"with semantic_audio=True")
                pred = teacher.audio_features(out.semantic_audio, n_frames)
            pred, target = pred[keep].float(), target.float()
            for kind in head.losses:
                losses[f"distill/{name}/{kind}"] = LOSSES[kind](pred, target)
        return losses
