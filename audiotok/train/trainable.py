"""`train.trainable: decoder`: RobusTok's post-training (Qiu et al. 2025, sec. 3.3) fine-tunes
the decoder alone so it decodes well the tokens a generator produces, with the encoder and
quantizer frozen (their configs/post-train.yaml: `enc_tuning_method: frozen`, `finetune:
true`), so the tokens of every corpus already tokenized stay valid."""

from __future__ import annotations

from ..codecs.base import Codec
from ..quantizers.base import hold_state


def freeze_all_but_decoder(codec: Codec) -> None:
    """Encoder and quantizer: no gradients, and no codebook updates (EMA, usage, dead-code
    restarts) even in training mode; quantizer dropout still draws, so every bitrate the
    codec serves keeps being decoded in training."""
    for module in (codec.encoder, codec.quantizer):
        module.requires_grad_(False)
    hold_state(codec.quantizer)
