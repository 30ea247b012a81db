"""Semantic distillation: frozen teachers (speech SSL, text LM, ASR encoder), training-only
heads and their losses, teacher feature caches, SSL k-means units and content probes.

    heads = DistillHeads(recipe.distill, recipe.model, codec.frame_rate)
    losses = heads(wav, codec(wav), batch)     # {"distill/<head>/<loss>": scalar}
"""

from .distill_config import DistillConfig, HeadConfig, TeacherConfig
from .distill_losses import LOSSES, cosine_loss, d_axis_loss, t_axis_loss
from .heads import DistillHeads
from .teacher_factory import build_teacher
from .teachers import SSLTeacher, WhisperTeacher, align_frames

__all__ = [
    "LOSSES", "DistillConfig", "DistillHeads", "HeadConfig", "SSLTeacher", "TeacherConfig",
    "WhisperTeacher", "align_frames", "build_teacher", "cosine_loss", "d_axis_loss",
    "t_axis_loss",
]
