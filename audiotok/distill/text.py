"""A frozen BERT-style text LM as a teacher for the excerpt's transcript (DM-Codec).

DM-Codec (Ahasan et al. 2024, "DM-Codec: Distilling Multimodal Representations for Speech
Tokenization", sec. 3) distills a BERT's hidden states (averaged over layers) of the
utterance's transcript into the first RVQ level. Text has no timing, so something must map
tokens to frames; DM-Codec pads the token sequence to the frame count. Here, without forced
alignment either, the file's tokens are spread uniformly over the file's duration (token j
covers [j, j + 1) * duration / n_tokens) and each codec frame of the excerpt takes the token
under its centre. This is an approximation: speaking rate varies, pauses hold no words, and
transcripts longer than the model's 512 tokens are truncated. Excerpts of files without a
transcript get no target (their items are left out of the loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import AudiotokError
from ..modules.ssl import average_layers, load_frozen, pick_layers
from .distill_config import TeacherConfig


class TextTeacher:
    def __init__(self, cfg: TeacherConfig, frame_rate: float):
        from transformers import AutoTokenizer

        self.cfg = cfg
        self.frame_rate = frame_rate
        self.model = load_frozen(cfg.path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.path)
        except (OSError, ValueError) as e:
            raise AudiotokError(f"teacher '{cfg.path}': no tokenizer ({e})") from None
        config = self.model.config
        self.layers = pick_layers(cfg.layers, config.num_hidden_layers, cfg.path)
        self.dim = config.hidden_size

    def to(self, device) -> TextTeacher:
        self.model.to(device)
        return self

    def token_states(self, texts: list[str], device) -> list[Tensor]:
        """Each text -> [n_tokens, D] layer-averaged hidden states, special tokens dropped."""
        enc = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt",
                             return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask").bool()
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.no_grad():
            out = self.model(**enc, output_hidden_states=True)
        states = average_layers(out.hidden_states, self.layers).float()
        keep = enc["attention_mask"].bool() & ~special.to(device)
        return [s[k] for s, k in zip(states, keep)]

    def targets(self, wav: Tensor, batch: dict | None, n_frames: int) -> tuple[Tensor, Tensor]:
        """-> ([B', n_frames, D] for the items with a non-empty transcript, keep bool [B])."""
        if batch is None or "text" not in batch:
            raise AudiotokError("a text teacher needs the batch's transcripts (a manifest "
                                "with 'text')")
        texts = [t if isinstance(t, str) and t.strip() else None for t in batch["text"]]
        keep = torch.tensor([t is not None for t in texts], device=wav.device)
        if not keep.any():
            return wav.new_zeros(0, n_frames, self.dim), keep
        states = self.token_states([t for t in texts if t is not None], wav.device)
        rows = keep.nonzero().flatten().tolist()
        centres = (torch.arange(n_frames, dtype=torch.float64) + 0.5) / self.frame_rate
        feats = []
        for s, i in zip(states, rows):
            if len(s) == 0:  # all special tokens (e.g. punctuation only stripped away)
                s = s.new_zeros(1, self.dim)
            duration = max(float(batch["duration"][i]), 1e-3)
            pos = (float(batch["start"][i]) + centres) / duration * len(s)
            idx = pos.floor().long().clamp(0, len(s) - 1).to(s.device)
            feats.append(s[idx])
        return torch.stack(feats), keep
