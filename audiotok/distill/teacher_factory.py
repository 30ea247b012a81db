"""`build_teacher`: a recipe's teacher config -> the teacher it names.

It sits above the teachers it makes (teachers.py, cache.py, text.py import only downwards),
so none of them has to import it back."""

from __future__ import annotations

from .cache import CachedTeacher
from .distill_config import TeacherConfig
from .teachers import SSLTeacher, WhisperTeacher
from .text import TextTeacher


def build_teacher(cfg: TeacherConfig, sample_rate: int, frame_rate: float):
    """The teacher for `cfg`, for a codec at `sample_rate` Hz and `frame_rate` frames/s."""
    if cfg.type == "ssl" and cfg.cache is not None:
        return CachedTeacher(cfg, frame_rate)
    if cfg.type == "ssl":
        return SSLTeacher(cfg, sample_rate)
    if cfg.type == "asr":
        return WhisperTeacher(cfg, sample_rate)
    return TextTeacher(cfg, frame_rate)
