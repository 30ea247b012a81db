"""X-Codec-2.0 (Ye et al. 2025, "Llasa: Scaling Train-Time and Inference-Time Compute for
Llama-based Speech Synthesis", sec. 2.1): the 16 kHz, 50 tokens/s codec behind Llasa.

Encoder: a BigCodec-style acoustic CNN (DAC's layout with anti-aliased SnakeBeta, see
codecs/dac.py) and a frozen w2v-BERT 2.0 semantic model, whose hidden states pass through a
small conv adapter; the two streams are concatenated and fused by one linear layer:

    wav -> feature extractor (transformers' Xcodec2FeatureExtractor: one zero appended, padded
           to whole frames; 80 Kaldi fbanks per 10 ms, normalised, stacked in pairs)
        -> [adapter(w2v-BERT(fbank)), acoustic CNN(wav)] -> Linear -> z [B, D_sem + D_ac, T']

Quantizer: one FSQ codebook of 4^8 = 65536 entries (quantizers/fsq.py with X-Codec-2's
projection and bound options). Decoder: Linear, a Vocos-style backbone whose middle is a
non-causal transformer (RMSNorm, SiLU MLP), then an iSTFT head (n_fft = 4 hop):

    z -> Linear -> conv k=7 -> 2 x ResBlock(GroupNorm 32) -> N x transformer layer
      -> 2 x ResBlock -> LayerNorm -> iSTFT head -> wav

The publisher's decoder applies RoPE with positions taken from the head index (transformers'
Xcodec2Decoder keeps the original code's position ids `arange(num_heads)`), the same angle at
every time step for a head's queries and keys; a rotation common to q and k cancels in q . k,
so it carries no position information and audiotok leaves it out (the scores then differ at
float32 rounding only).

Both halves see the whole utterance (w2v-BERT's attention, the decoder's GroupNorm and
attention): receptive fields are unbounded, so long files are chunked with a fixed context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import AudiotokError
from ..modules.attention import ConvResBlock
from ..modules.istft import ISTFTHead, check_stft_sizes
from ..modules.transformer import CausalTransformer, TransformerConfig
from ..strict_config import from_dict
from .components import DECODERS, ENCODERS
from .contracts import Decoder, Encoder
from .dac import DACEncoder, DACEncoderConfig


@dataclass
class XCodec2EncoderConfig:
    """acoustic: DAC encoder settings of the acoustic CNN (X-Codec-2: d_model 48, strides
        [2, 2, 4, 4, 5], activation snake_beta_aa, norm none); acoustic_dim its output width
        (1024). semantic: the w2v-BERT 2.0 config as a dict (transformers'
        Wav2Vec2BertConfig: 16 of its 24 layers in the release), built with
        `AutoModel.from_config`; its weights come from the checkpoint."""

    acoustic: dict = field(default_factory=lambda: {
        "d_model": 48, "strides": [2, 2, 4, 4, 5], "activation": "snake_beta_aa",
        "norm": "none"})
    acoustic_dim: int = 1024
    semantic: dict = field(default_factory=lambda: {"model_type": "wav2vec2-bert",
                                                    "num_hidden_layers": 16})
    # "neucodec": NeuCodec's inputs (transformers' NeuCodecFeatureExtractor: the fbanks of
    # the padded waveform without X-Codec-2's extra half hop on each side, so one frame
    # fewer) and the two branches trimmed to the shorter: floor(T / hop) codes
    features: str = "xcodec2"

    def __post_init__(self):
        if self.features not in ("xcodec2", "neucodec"):
            raise ValueError(f"features must be 'xcodec2' or 'neucodec', got "
                             f"{self.features!r}")
        if self.acoustic_dim < 1:
            raise ValueError(f"acoustic_dim must be >= 1, got {self.acoustic_dim}")
        if self.semantic.get("model_type") != "wav2vec2-bert":
            raise ValueError(f"semantic must be a wav2vec2-bert config (the features are "
                             f"w2v-BERT's fbanks), got model_type "
                             f"{self.semantic.get('model_type')!r}")


class SemanticAdapter(nn.Module):
    """X-Codec-2's SemanticEncoder: conv, ReLU, a residual (conv, ReLU, conv), conv; all k=3.
    x [B, C, T'] -> same shape."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1, bias=False)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.conv3 = nn.Conv1d(dim, dim, 3, padding=1)
        self.conv4 = nn.Conv1d(dim, dim, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv1(x))
        x = x + self.conv3(torch.relu(self.conv2(x)))
        return self.conv4(x)


def semantic_model(config: dict) -> nn.Module:
    """w2v-BERT 2.0 with random weights, built by transformers from `config` (the codec's
    weights then replace them)."""
    from transformers import AutoConfig, AutoModel

    settings = {k: v for k, v in config.items() if k != "model_type"}
    return AutoModel.from_config(AutoConfig.for_model(config["model_type"], **settings))


@ENCODERS.register("xcodec2", XCodec2EncoderConfig)
class XCodec2Encoder(Encoder):
    """wav [B, 1, T] -> z [B, latent_dim, floor(T / hop) + 1] (NeuCodec: floor(T / hop)) for
    any T: the publisher's own padding, so `Codec.encode` passes the waveform as it is, with
    the items' lengths."""

    pads_itself = True
    takes_lengths = True

    def __init__(self, cfg: XCodec2EncoderConfig, channels: int, latent_dim: int,
                 sample_rate: int):
        super().__init__()
        if channels != 1:
            raise ValueError(f"X-Codec-2 encodes mono audio, got {channels} channels")
        self.acoustic = DACEncoder(from_dict(DACEncoderConfig, cfg.acoustic, "encoder.acoustic"),
                                   1, cfg.acoustic_dim)
        self.semantic = semantic_model(cfg.semantic)
        # frozen, as the publisher runs it under no_grad: fine-tuning leaves it as released
        self.semantic.requires_grad_(False)
        width = self.semantic.config.hidden_size
        self.adapter = SemanticAdapter(width)
        self.fuse = nn.Linear(width + cfg.acoustic_dim, latent_dim)
        self.hop_length = self.acoustic.hop_length
        self.sample_rate = sample_rate
        self.kind = cfg.features
        # the feature extractor appends one zero before padding to whole
        # frames (floor(T / hop) + 1 codes); NeuCodec then drops the last (floor(T / hop))
        self.pad_samples = 1 if cfg.features == "xcodec2" else 1 - self.hop_length
        self._features = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.semantic.eval()  # no dropout in the frozen semantic model
        return self

    def receptive_field(self) -> None:
        return None  # w2v-BERT attends to the whole utterance

    def features(self, wav: Tensor, lengths: Tensor | None):
        """The publisher's inputs, computed by transformers' own Xcodec2FeatureExtractor so
        that they are its values bit for bit: each item (cut to its length) gets one zero
        appended, the batch is zero-padded to whole frames of its longest item, and the
        fbank features of each item are normalised over that item alone."""
        if self._features is None:
            from transformers import NeuCodecFeatureExtractor, Xcodec2FeatureExtractor

            kind = Xcodec2FeatureExtractor if self.kind == "xcodec2" else \
                NeuCodecFeatureExtractor
            self._features = kind(sampling_rate=self.sample_rate, hop_length=self.hop_length)
        sizes = [wav.shape[-1]] * wav.shape[0] if lengths is None else lengths.tolist()
        if self.kind == "neucodec" and min(sizes) < self.hop_length:
            raise AudiotokError(f"NeuCodec needs at least {self.hop_length} samples per item "
                                f"(one frame), got {min(sizes)}")
        items = [wav[i, 0, :n].detach().float().cpu() for i, n in enumerate(sizes)]
        out = self._features(items, sampling_rate=self.sample_rate, return_tensors="pt")
        return {k: v.to(wav.device) for k, v in out.items()}

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        inputs = self.features(wav, lengths)
        with torch.no_grad():
            hidden = self.semantic(inputs["input_features"],
                                   attention_mask=inputs["input_features_mask"])
        semantic = self.adapter(hidden.last_hidden_state.transpose(1, 2))
        acoustic = self.acoustic(inputs["input_values"].to(wav.dtype))
        if self.kind == "neucodec":  # its semantic branch is one frame short
            frames = min(semantic.shape[-1], acoustic.shape[-1])
            semantic, acoustic = semantic[..., :frames], acoustic[..., :frames]
        # channels-last through the fusing Linear, as the publisher (the quantizer's linear
        # projection reads this layout back without a copy)
        z = self.fuse(torch.cat([semantic, acoustic], 1).transpose(1, 2))
        return z.transpose(1, 2)


@dataclass
class XCodec2DecoderConfig:
    """X-Codec-2's released decoder: dim 1024, 12 layers of 16 heads, MLP 4096, RMSNorm eps
    1e-6, dropout 0.1 in its ResBlocks (training only). n_fft None means 4 * hop_length."""

    dim: int = 1024
    layers: int = 12
    heads: int = 16
    dim_feedforward: int = 4096
    norm_eps: float = 1e-6
    norm_groups: int = 32
    dropout: float = 0.1
    n_fft: int | None = None
    # the rate of the audio it makes, when not the codec's input rate (NeuCodec: 24 kHz from
    # 16 kHz input; the iSTFT hop scales with it); None = the codec's sample rate
    sample_rate: int | None = None

    def __post_init__(self):
        if self.norm_groups < 1 or self.dim % self.norm_groups:
            raise ValueError(f"dim ({self.dim}) must be divisible by norm_groups "
                             f"({self.norm_groups})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@DECODERS.register("xcodec2", XCodec2DecoderConfig)
class XCodec2Decoder(Decoder):
    """z [B, latent_dim, T'] -> wav [B, channels, T' * hop_length] (decoder contract; at
    `sample_rate`, whose hop is hop_length scaled by the ratio of the rates)."""

    def __init__(self, cfg: XCodec2DecoderConfig, channels: int, latent_dim: int,
                 hop_length: int, sample_rate: int):
        super().__init__()
        self.sample_rate = cfg.sample_rate or sample_rate  # the decoder contract's output rate
        if (hop_length * self.sample_rate) % sample_rate:
            raise ValueError(f"a hop of {hop_length} samples at {sample_rate} Hz is no whole "
                             f"number of samples at {self.sample_rate} Hz")
        hop_length = hop_length * self.sample_rate // sample_rate
        n_fft = 4 * hop_length if cfg.n_fft is None else cfg.n_fft
        check_stft_sizes(n_fft, hop_length)
        self.fc = nn.Linear(latent_dim, cfg.dim)
        self.embed = nn.Conv1d(cfg.dim, cfg.dim, kernel_size=7, padding=3)

        def blocks():
            return nn.ModuleList(ConvResBlock(cfg.dim, cfg.dropout, norm="group",
                                              groups=cfg.norm_groups) for _ in range(2))

        self.prior = blocks()
        self.transformer = CausalTransformer(TransformerConfig(
            dim=cfg.dim, layers=cfg.layers, heads=cfg.heads,
            dim_feedforward=cfg.dim_feedforward, rope=False, layer_scale=None, causal=False,
            norm="rms", norm_eps=cfg.norm_eps, activation="silu"))
        self.post = blocks()
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = ISTFTHead(cfg.dim, n_fft, hop_length, channels)

    def receptive_field(self) -> None:
        return None  # GroupNorm statistics and attention span the whole sequence

    def forward(self, z: Tensor) -> Tensor:
        x = self.embed(self.fc(z.transpose(1, 2)).transpose(1, 2))
        for block in self.prior:
            x = block(x)
        x = self.transformer(x)
        for block in self.post:
            x = block(x)
        return self.head(self.final_norm(x.transpose(1, 2)))
