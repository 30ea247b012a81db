"""Mel-VAE decoder: tokens -> log-mel spectrogram -> a vocoder -> audio.

CLaM-TTS (Kim et al. 2024, sec. 3.1) codes mel spectrograms, not waveforms: its Mel-VAE
reconstructs the mel from the quantized latents, trained with lambda_r |y - y_hat| (plus a
commitment and adversarial terms), and a separately trained vocoder (BigVGAN) turns the mel into
audio. Here the mel half is ConvNeXt stacks (as the ConvNeXt blocks CLaM-TTS puts at the end of
its decoder) and the vocoder is any registered decoder taking mel frames as its latents: the
Vocos decoder (Vocos itself is a mel vocoder, Siuzdak 2023) or the Griffin-Lim magnitude
decoder. So the codec keeps the audio-in, audio-out API, and `forward_train` adds the mel loss:

    z [B, D, T'] -> conv k=7 -> LayerNorm -> N x ConvNeXt                       (token rate)
        -> transposed conv x upsample -> M x ConvNeXt -> LayerNorm -> Linear     (mel rate)
        -> log-mel [B, C * n_mels, T' * upsample] -> vocoder -> wav [B, C, T' * hop_length]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..errors import ConfigError
from ..modules.mel import LOG_FLOOR, LogMel
from .components import DECODERS, frame_hop
from .contracts import Decoder
from .stft_encoder import convnext_blocks
from .vocos import init_backbone


def _default_vocoder() -> dict:
    return {"type": "vocos", "dim": 256, "intermediate_dim": 768, "num_layers": 4,
            "attention": False}


@dataclass(frozen=True)
class MelVAEDecoderConfig:
    """n_mels, n_fft:   the mel the decoder predicts and is scored on (modules/mel.py), at a
                       hop of the codec's hop length / `upsample`; set them as the mel encoder
                       has them (stft encoder `n_mels`, `n_fft`, `hop_length`).
    upsample:          mel frames per token.
    dim, intermediate_dim, num_layers:  ConvNeXt stack at the token rate.
    fine_dim, fine_layers:              ConvNeXt stack at the mel rate.
    vocoder:           a decoder spec ({"type": ..., **config}) that maps the mel, as latents
                       of n_mels * channels, to audio at the mel hop.
    teacher_forcing:   in training, the vocoder hears the input's own mel instead of the
                       predicted one, so the waveform losses train the vocoder alone and the
                       mel model learns from "decoder/mel" (and the quantizer losses) alone,
                       as CLaM-TTS trains BigVGAN apart from its Mel-VAE. Outside training the
                       predicted mel is always what is vocoded.
    """

    n_mels: int = 80
    n_fft: int = 640
    upsample: int = 10
    dim: int = 384
    intermediate_dim: int = 1152
    num_layers: int = 4
    fine_dim: int = 256
    fine_layers: int = 2
    vocoder: dict = field(default_factory=_default_vocoder)
    teacher_forcing: bool = False

    def __post_init__(self):
        for name in ("n_mels", "upsample", "dim", "intermediate_dim", "num_layers", "fine_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fine_layers < 0:
            raise ValueError(f"fine_layers must be >= 0, got {self.fine_layers}")
        if isinstance(self.vocoder, dict) and self.vocoder.get("type") == "mel_vae":
            raise ValueError("vocoder must take mel frames to audio; mel_vae takes tokens")
        try:
            vocoder = DECODERS.normalise(self.vocoder, "vocoder")
        except ConfigError as e:  # an unknown type's message does not say where it was
            raise ConfigError(e if str(e).startswith("vocoder") else f"vocoder: {e}") from None
        object.__setattr__(self, "vocoder", vocoder)


def _channel_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    return norm(x.transpose(1, 2)).transpose(1, 2)


@DECODERS.register("mel_vae", MelVAEDecoderConfig)
class MelVAEDecoder(Decoder):
    """z [B, latent_dim, T'] -> wav [B, channels, T' * hop_length] (decoder contract)."""

    # the losses `forward_train` returns (plus the vocoder's own, in the instance's
    # `loss_names`); the trainer accepts recipe weights for them
    loss_names = ("decoder/mel",)

    def __init__(self, cfg: MelVAEDecoderConfig, channels: int, latent_dim: int,
                 hop_length: int, sample_rate: int):
        super().__init__()
        self.cfg, self.channels = cfg, channels
        self.mel_hop = frame_hop(cfg.upsample, hop_length)
        try:
            self.log_mel = LogMel(sample_rate, cfg.n_fft, self.mel_hop, cfg.n_mels)
        except ValueError as e:
            raise ConfigError(f"decoder n_fft: {e}") from None
        self.embed = nn.Conv1d(latent_dim, cfg.dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(convnext_blocks(cfg.dim, cfg.num_layers,
                                                    cfg.intermediate_dim / cfg.dim))
        self.up_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.up = nn.ConvTranspose1d(cfg.dim, cfg.fine_dim, cfg.upsample, stride=cfg.upsample)
        self.fine_blocks = nn.ModuleList(convnext_blocks(cfg.fine_dim, cfg.fine_layers, 3.0))
        self.final_norm = nn.LayerNorm(cfg.fine_dim, eps=1e-6)
        self.proj = nn.Linear(cfg.fine_dim, channels * cfg.n_mels)
        for m in (self.embed, self.blocks, self.fine_blocks):
            m.apply(init_backbone)
        # start near a quiet mel (log 1e-3) rather than at 0 (|mel| = 1, loud)
        nn.init.constant_(self.proj.bias, math.log(LOG_FLOOR) / 2)
        try:
            self.vocoder = DECODERS.build(cfg.vocoder, "decoder.vocoder", channels=channels,
                                          latent_dim=channels * cfg.n_mels,
                                          hop_length=self.mel_hop, sample_rate=sample_rate)
        except ValueError as e:
            raise ConfigError(f"decoder.vocoder: {e}") from None
        if (self.vocoder.sample_rate or sample_rate) != sample_rate:
            raise ConfigError("decoder.vocoder must decode at the codec's sample rate")
        self.loss_names = (*MelVAEDecoder.loss_names, *self.vocoder.loss_names)

    def receptive_field(self) -> tuple[int, int] | None:
        """Token frames each side that can change a frame's samples: embed (3), 3 per coarse
        block, then 3 mel frames per fine block plus the vocoder's reach in mel frames."""
        voc = self.vocoder.receptive_field()
        if voc is None:
            return None
        up = self.cfg.upsample
        coarse = 3 + 3 * len(self.blocks) + 1
        fine = 3 * len(self.fine_blocks)
        return coarse + math.ceil((fine + voc[0]) / up), coarse + math.ceil((fine + voc[1]) / up)

    def mel(self, z: Tensor) -> Tensor:
        """z [B, D, T'] -> predicted log-mel [B, C * n_mels, T' * upsample]."""
        x = _channel_norm(self.norm, self.embed(z))
        for block in self.blocks:
            x = block(x)
        x = self.up(_channel_norm(self.up_norm, x))
        for block in self.fine_blocks:
            x = block(x)
        return self.proj(self.final_norm(x.transpose(1, 2))).transpose(1, 2)

    def target_mel(self, wav: Tensor) -> Tensor:
        """wav [B, C, T] -> its log-mel [B, C * n_mels, T / mel hop], channel-major."""
        b, c, t = wav.shape
        mel = self.log_mel(wav.reshape(b * c, t))
        return mel.reshape(b, c * self.cfg.n_mels, -1)

    def forward(self, z: Tensor) -> Tensor:
        return self.vocoder(self.mel(z))

    def forward_train(self, z: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(wav, losses) for a training step on target [B, C, T' * hop]:

        decoder/mel   L1 between predicted and target log-mel, CLaM-TTS's lambda_r |y - y_hat|
                      (sec. 3.1), plus the vocoder's own losses if it has any."""
        mel = self.mel(z)
        ref = self.target_mel(target)
        losses = {"decoder/mel": (mel.float() - ref).abs().mean()}
        heard = ref.to(mel.dtype) if self.cfg.teacher_forcing and self.training else mel
        wav, vocoder_losses = self.vocoder.forward_train(heard, target)
        return wav, {**losses, **vocoder_losses}
