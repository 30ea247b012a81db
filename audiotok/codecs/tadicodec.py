"""TaDiCodec: a single-codebook tokenizer at a very low frame rate, decoded by flow matching
conditioned on the tokens, the transcript and a prompt.

TaDiCodec (Yang et al. 2025, "TaDiCodec: Text-aware Diffusion Speech Tokenizer for Speech
Language Modeling", arXiv:2508.16790; the authors' code, HeCheng0625/Diffusion-Speech-Tokenizer,
models/tts/tadicodec/modeling_tadicodec.py) trains one stage end to end with no semantic
teacher: a transformer encodes the mel to 6.25 Hz latents, a single 2^14-entry codebook
quantizes them, and a diffusion transformer regenerates the mel from the upsampled codes, the
transcript (a prefix of the sequence) and a prompt (a clean prefix of the target mel). A
vocoder turns the mel into audio.

    encoder  wav -> log-mel [F, M] (50 Hz at hop 320, 16 kHz) -> Linear -> transformer
             -> mean over each `downsample` frames -> Linear -> z [B, D, F / downsample]
    decoder  z_q -> linear interpolation x upsample -> MLP: c [F, dim]
             text bytes -> Embedding -> MLP: prefix [L, dim]
             v(x_t, t) = Linear(transformer([prefix ; Linear(x_t) + c], AdaRMSNorm(t)))[L:]
             Euler sampling (steps, seed, guidance) -> mel -> vocoder (Vocos) -> wav

Training (`forward_train`): the flow-matching loss "decoder/flow" on the non-prompt frames
(modules/flow_matching.py) trains encoder, quantizer and decoder together; the vocoder learns
from the waveform losses on the input's own mel (teacher forcing), as the authors train their
Vocos apart. The codes, the transcript and the prompt are each dropped per item with
probabilities `cond_drop_p`, `text_drop_p`, `context_drop_p`, so that sampling may go without
any of them and use classifier-free guidance (conditional = codes + text, unconditional =
neither; the authors' `reverse_diffusion`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..modules import flow_matching as fm
from ..modules.chars import VOCAB_SIZE, text_ids
from ..modules.dit import DiffTransformer, TimeEmbedding
from ..modules.mel import LogMel
from .components import DECODERS, ENCODERS, frame_hop
from .contracts import Decoder, Encoder

# log-mel statistics (natural log, 1e-5 floor) of 16 kHz speech, to bring the flow's data
# near unit scale as the authors' mel_mean / mel_var do
MEL_MEAN, MEL_STD = -5.0, 2.5


def _positive(cfg, names) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")


def _probability(cfg, names) -> None:
    for name in names:
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")


@dataclass(frozen=True)
class TaDiEncoderConfig:
    """The paper's encoder: 8 layers of 1024 (16 heads) over 128-band mel at 50 Hz (24 kHz
    there), downsample 8 -> 6.25 Hz. mel_mean / mel_std normalise the log-mel."""

    n_mels: int = 128
    n_fft: int = 1280
    mel_hop: int = 320
    downsample: int = 8
    dim: int = 1024
    layers: int = 8
    heads: int = 16
    mel_mean: float = MEL_MEAN
    mel_std: float = MEL_STD

    def __post_init__(self):
        _positive(self, ("n_mels", "n_fft", "mel_hop", "downsample", "dim", "layers", "heads"))
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads}) "
                             f"with an even head size")
        if not self.mel_std > 0:
            raise ValueError(f"mel_std must be > 0, got {self.mel_std}")


class MelFeatures(nn.Module):
    """wav [B, C, T] -> normalised log-mel [B, T / hop, C * n_mels] (channel-major bands)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, mean: float,
                 std: float):
        super().__init__()
        self.log_mel = LogMel(sample_rate, n_fft, hop, n_mels)
        self.mean, self.std = mean, std

    def forward(self, wav: Tensor) -> Tensor:
        b, c, t = wav.shape
        mel = self.log_mel(wav.reshape(b * c, t)).reshape(b, c * self.log_mel.n_mels, -1)
        return ((mel - self.mean) / self.std).transpose(1, 2)

    def denormalise(self, x: Tensor) -> Tensor:
        """[B, F, C * M] normalised -> log-mel [B, C * M, F] (what the vocoder takes)."""
        return (x * self.std + self.mean).transpose(1, 2)


@ENCODERS.register("tadicodec", TaDiEncoderConfig)
class TaDiEncoder(Encoder):
    """wav [B, C, T] -> z [B, latent_dim, T / hop_length] (encoder contract)."""

    def __init__(self, cfg: TaDiEncoderConfig, channels: int, latent_dim: int,
                 sample_rate: int):
        super().__init__()
        self.cfg = cfg
        self.hop_length = cfg.mel_hop * cfg.downsample
        try:
            self.mel = MelFeatures(sample_rate, cfg.n_fft, cfg.mel_hop, cfg.n_mels,
                                   cfg.mel_mean, cfg.mel_std)
        except ValueError as e:
            raise ConfigError(f"encoder n_fft: {e}") from None
        self.inp = nn.Linear(channels * cfg.n_mels, cfg.dim)
        self.transformer = DiffTransformer(cfg.dim, cfg.layers, cfg.heads, conditioned=False)
        self.out = nn.Linear(cfg.dim, latent_dim)

    def receptive_field(self) -> None:
        return None  # full attention

    def forward(self, wav: Tensor) -> Tensor:
        h = self.transformer(self.inp(self.mel(wav)))  # [B, F, dim]
        # the authors interpolate to F / 8 (each output reads two middle frames); a mean
        # over the whole group keeps every frame in and the grid aligned with the hop
        b, f, d = h.shape
        h = h[:, : f // self.cfg.downsample * self.cfg.downsample]
        h = h.reshape(b, -1, self.cfg.downsample, d).mean(2)
        return self.out(h).transpose(1, 2)



def _default_vocoder() -> dict:
    return {"type": "vocos", "dim": 512, "intermediate_dim": 1536, "num_layers": 8,
            "attention": False}


@dataclass(frozen=True)
class TaDiDecoderConfig:
    """Defaults are the paper's decoder (16 layers of 1024, 16 heads; code and prompt
    dropped with p 0.2 each, sigma 1e-5; 32 Euler steps, guidance 2.0 rescaled 0.75 at
    inference: the authors' `TaDiCodecPipline.__call__`).

    n_mels, n_fft:    the mel the flow generates, at a hop of hop_length / upsample; set them
                      as the encoder has them.
    text:             condition on the transcript (character bytes, modules/chars.py).
    max_text_len:     bytes of transcript kept.
    text_drop_p:      transcript dropped per item in training (ours: the authors' public
                      code drops codes and prompt; guidance needs text-free training too).
    prompt_range:     prompt length, as fractions of the frames [low, high).
    steps:            default Euler steps of `sample` (decode overrides it).
    guidance_scale:   classifier-free guidance (1 = off: one pass per step instead of two).
    vocoder:          a decoder spec taking the log-mel (C * n_mels latents) to audio.
    """

    n_mels: int = 128
    n_fft: int = 1280
    upsample: int = 8
    dim: int = 1024
    layers: int = 16
    heads: int = 16
    text: bool = True
    max_text_len: int = 512
    cond_drop_p: float = 0.2
    text_drop_p: float = 0.2
    context_drop_p: float = 0.2
    prompt_range: list[float] = field(default_factory=lambda: [0.1, 0.4])
    sigma: float = 1e-5
    steps: int = 32
    guidance_scale: float = 2.0
    guidance_rescale: float = 0.75
    mel_mean: float = MEL_MEAN
    mel_std: float = MEL_STD
    vocoder: dict = field(default_factory=_default_vocoder)

    def __post_init__(self):
        _positive(self, ("n_mels", "n_fft", "upsample", "dim", "layers", "heads",
                         "max_text_len", "steps"))
        _probability(self, ("cond_drop_p", "text_drop_p", "context_drop_p", "guidance_rescale"))
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads}) "
                             f"with an even head size")
        lo_hi = list(self.prompt_range)
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] < 1.0:
            raise ValueError(f"prompt_range must be [low, high] with 0 <= low <= high < 1, "
                             f"got {self.prompt_range}")
        if not 0.0 <= self.sigma < 1.0:
            raise ValueError(f"sigma must be in [0, 1), got {self.sigma}")
        if not self.guidance_scale >= 1.0:
            raise ValueError(f"guidance_scale must be >= 1, got {self.guidance_scale}")
        if not self.mel_std > 0:
            raise ValueError(f"mel_std must be > 0, got {self.mel_std}")
        if isinstance(self.vocoder, dict) and self.vocoder.get("type") in ("tadicodec",
                                                                           "mel_vae"):
            raise ValueError("vocoder must take mel frames to audio, not tokens")
        try:
            vocoder = DECODERS.normalise(self.vocoder, "vocoder")
        except ConfigError as e:
            raise ConfigError(e if str(e).startswith("vocoder") else f"vocoder: {e}") from None
        object.__setattr__(self, "vocoder", vocoder)


def _mlp(d_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))


@DECODERS.register("tadicodec", TaDiDecoderConfig)
class TaDiDecoder(Decoder):
    """z [B, latent_dim, T'] -> wav [B, channels, T' * hop_length] (decoder contract; a
    sample with `steps` steps and seed 0, no text, no prompt); `sample` takes all options."""

    loss_names = ("decoder/flow",)  # plus the vocoder's own, in the instance's `loss_names`
    stochastic = True

    def __init__(self, cfg: TaDiDecoderConfig, channels: int, latent_dim: int,
                 hop_length: int, sample_rate: int):
        super().__init__()
        self.cfg = cfg
        self.mel_hop = frame_hop(cfg.upsample, hop_length)
        try:
            self.mel = MelFeatures(sample_rate, cfg.n_fft, self.mel_hop, cfg.n_mels,
                                   cfg.mel_mean, cfg.mel_std)
        except ValueError as e:
            raise ConfigError(f"decoder n_fft: {e}") from None
        bands = channels * cfg.n_mels
        self.cond = _mlp(latent_dim, cfg.dim)
        self.text_embed = nn.Embedding(VOCAB_SIZE, cfg.dim) if cfg.text else None
        self.text_mlp = _mlp(cfg.dim, cfg.dim) if cfg.text else None
        self.time = TimeEmbedding(cfg.dim)
        self.inp = nn.Linear(bands, cfg.dim)
        self.transformer = DiffTransformer(cfg.dim, cfg.layers, cfg.heads, conditioned=True)
        self.out = nn.Linear(cfg.dim, bands)
        try:
            self.vocoder = DECODERS.build(cfg.vocoder, "decoder.vocoder", channels=channels,
                                          latent_dim=bands, hop_length=self.mel_hop,
                                          sample_rate=sample_rate)
        except ValueError as e:
            raise ConfigError(f"decoder.vocoder: {e}") from None
        if (self.vocoder.sample_rate or sample_rate) != sample_rate:
            raise ConfigError("decoder.vocoder must decode at the codec's sample rate")
        self.loss_names = (*TaDiDecoder.loss_names, *self.vocoder.loss_names)

    @property
    def takes_text(self) -> bool:
        """True when conditioned on text: the trainer then hands it the transcripts."""
        return self.text_embed is not None

    def receptive_field(self) -> None:
        return None  # full attention over the utterance and its transcript

    # ------------------------------------------------------------------ conditions
    def code_condition(self, z: Tensor) -> Tensor:
        """z_q [B, D, T'] -> [B, T' * upsample, dim] (linear interpolation, as the authors)."""
        up = F.interpolate(z.float(), scale_factor=self.cfg.upsample, mode="linear")
        return self.cond(up.transpose(1, 2).to(z.dtype))

    def text_prefix(self, texts: list[str | None] | None, batch: int, device
                    ) -> tuple[Tensor | None, Tensor | None]:
        """-> (prefix [B, L, dim], mask bool [B, L]) or (None, None) without any text."""
        if self.text_embed is None or texts is None or not any(texts):
            return None, None
        if len(texts) != batch:
            raise ValueError(f"text: {len(texts)} transcripts for a batch of {batch}")
        ids, mask = text_ids(texts, self.cfg.max_text_len, device)
        return self.text_mlp(self.text_embed(ids)), mask

    def velocity(self, xt: Tensor, t: Tensor, cond: Tensor, prefix: Tensor | None,
                 mask: Tensor | None) -> Tensor:
        """x_t [B, F, M], t [B], cond [B, F, dim] -> predicted velocity [B, F, M]."""
        h = self.inp(xt) + cond
        if prefix is not None:
            h = torch.cat([prefix, h], 1)
            mask = torch.cat([mask, mask.new_ones(h.shape[0], xt.shape[1])], 1)
        h = self.transformer(h, self.time(t), mask)
        return self.out(h[:, h.shape[1] - xt.shape[1]:])

    # ------------------------------------------------------------------ training
    def forward_train(self, z: Tensor, target: Tensor, text: list[str | None] | None = None
                      ) -> tuple[Tensor, dict[str, Tensor]]:
        """(wav, losses) for z_q [B, D, T'] and target [B, C, T' * hop]: "decoder/flow" (the
        flow-matching MSE on non-prompt frames) plus the vocoder's own losses. In training
        the wav is the vocoder on the target's own mel; in eval, on a sample (default steps,
        seed 0, the given text, no prompt)."""
        x = self.mel(target)  # [B, F, M]
        b, f, _ = x.shape
        cfg = self.cfg
        cond = self.code_condition(z)[:, :f]
        heard = text
        if self.training:  # conditions dropped for guidance; eval scores them all kept
            keep_code = torch.rand(b, device=x.device) >= cfg.cond_drop_p
            cond = cond * keep_code[:, None, None].to(cond.dtype)
            if text is not None:
                drop = (torch.rand(b) < cfg.text_drop_p).tolist()
                heard = [None if d else s for s, d in zip(text, drop)]
        prefix, mask = self.text_prefix(heard, b, x.device)
        prompt = fm.frame_mask(fm.prompt_lengths(b, f, cfg.context_drop_p, *cfg.prompt_range,
                                                 x.device), f)
        t = torch.rand(b, device=x.device).clamp(min=1e-5)
        xt, v_target = fm.noisy(x, t, torch.randn_like(x), cfg.sigma, prompt)
        v = self.velocity(xt, t, cond, prefix, mask)
        losses = {"decoder/flow": fm.masked_mse(v, v_target, ~prompt)}
        mel = self.mel.denormalise(x) if self.training else \
            self.mel.denormalise(self.sample_mel(z, cfg.steps, 0, text)[:, :f])
        wav, vocoder_losses = self.vocoder.forward_train(mel.to(z.dtype), target)
        return wav, {**losses, **vocoder_losses}

    # ------------------------------------------------------------------ sampling
    def sample_mel(self, z: Tensor, steps: int, seed: int,
                   text: list[str | None] | None = None, prompt: Tensor | None = None
                   ) -> Tensor:
        """z_q [B, D, T'] -> normalised mel [B, T' * upsample, M] after `steps` Euler steps
        from noise drawn with `seed`; prompt [B, P, M] (normalised, P < frames) is kept."""
        cond = self.code_condition(z)
        b, f, _ = cond.shape
        gen = torch.Generator(device=z.device).manual_seed(seed)
        noise = torch.randn(b, f, self.out.out_features, generator=gen, device=z.device,
                            dtype=cond.dtype)
        prefix, mask = self.text_prefix(text, b, z.device)
        scale = self.cfg.guidance_scale
        none = torch.zeros_like(cond)

        def velocity(xt: Tensor, t: Tensor) -> Tensor:
            v = self.velocity(xt, t, cond, prefix, mask)
            if scale == 1.0:
                return v
            # unconditional: neither codes nor text (the authors' reverse_diffusion)
            return fm.guided(v, self.velocity(xt, t, none, None, None), scale,
                             self.cfg.guidance_rescale)

        return fm.euler_sample(velocity, noise, steps, prompt)

    def sample(self, z: Tensor, steps: int, seed: int, text: list[str | None] | None = None,
               prompt: Tensor | None = None) -> Tensor:
        """z_q [B, D, T'] -> wav [B, C, T' * hop]; prompt wav [B, C, P] at the codec's rate
        whose mel (its first floor(P / mel hop) frames, fewer than the codes' frames) is
        given clean to the flow, as the paper's in-context prompt."""
        mel_prompt = None
        if prompt is not None:
            mel_prompt = self.mel(prompt[..., : prompt.shape[-1] // self.mel_hop * self.mel_hop])
            frames = z.shape[-1] * self.cfg.upsample
            if mel_prompt.shape[1] >= frames:
                raise ValueError(f"prompt: {mel_prompt.shape[1]} mel frames, but the tokens "
                                 f"span {frames}; give a shorter prefix")
            if mel_prompt.shape[1] == 0:
                mel_prompt = None
        mel = self.sample_mel(z, steps, seed, text, mel_prompt)
        return self.vocoder(self.mel.denormalise(mel))

    def forward(self, z: Tensor) -> Tensor:
        return self.sample(z, self.cfg.steps, 0)
