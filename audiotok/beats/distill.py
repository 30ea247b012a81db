"""Stage tokenizer: the self-distilled tokenizer (BEATs, Chen et al. 2022, sec. 3.2.2).

    wav -> tokenizer encoder -> l2-normalised latents -> nearest unit codeword (EMA codebook)
        -> estimator (linear to the teacher's width + 3 Transformer layers)
        -> 1 - cos with the SSL teacher's last layer on the same patches ("distill/cosine",
           eq. 2's first term), plus "vq/commit" from the quantizer

The estimator is a training-only part: the exported tokenizer is encoder + codebook.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..codecs.base import Codec
from ..distill.distill_losses import cosine_loss
from ..errors import ConfigError
from ..modules.beats_transformer import Backbone, BackboneConfig
from .beats_recipe import EstimatorConfig
from .ssl_model import SSLModel


class Estimator(nn.Module):
    """z_q [B, C, N] (codebook space) -> predicted teacher features [B, N, D]."""

    def __init__(self, cfg: EstimatorConfig, code_dim: int, teacher: BackboneConfig):
        super().__init__()
        self.proj = nn.Linear(code_dim, teacher.dim)
        self.backbone = Backbone(BackboneConfig(**{**teacher.__dict__, "layers": cfg.layers}))

    def forward(self, z_q: Tensor) -> Tensor:
        return self.backbone(self.proj(z_q.transpose(1, 2)))


class TokenizerDistiller(nn.Module):
    """The trained parts of stage tokenizer in one module (one DistributedDataParallel)."""

    def __init__(self, tokenizer: Codec, cfg: EstimatorConfig, teacher: SSLModel):
        super().__init__()
        if tokenizer.hop_length != teacher.hop_length or \
                tokenizer.frame_multiple != teacher.cfg.per_stretch:
            raise ConfigError(f"model: the tokenizer's patches ({tokenizer.hop_length} samples "
                              f"each, {tokenizer.frame_multiple} per stretch) differ from the "
                              f"teacher's ({teacher.hop_length}, {teacher.cfg.per_stretch}); "
                              f"set model.encoder.mel_bins / patch to the teacher's")
        self.tokenizer = tokenizer
        self.estimator = Estimator(cfg, tokenizer.config.latent_dim, teacher.cfg.encoder)

    def forward(self, wav: Tensor, target: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """wav [B, C, T] (whole stretches), target [B, N, D] -> (losses, metrics)."""
        q = self.tokenizer.quantizer(self.tokenizer.encoder(wav))
        pred = self.estimator(q.z_q)
        return {"distill/cosine": cosine_loss(pred.float(), target.float()), **q.losses}, \
            q.metrics
