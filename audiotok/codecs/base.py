"""The Codec: encoder + quantizer + decoder assembled from a typed config.

    codec = Codec(CodecConfig(...))            # or load_codec(dir | recipe.yaml | name)
    tokens = codec.encode(wav)                 # wav [B, C, T] at codec.sample_rate
    wav_hat = codec.decode(tokens)             # [B, C, max(num_samples)]
    out = codec(wav)                           # training: CodecOutput with named losses
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .._version import __version__
from ..errors import AudiotokError, ConfigError, TokenFileError
from ..fileio import atomic_path
from ..modules.conv import allow_reordered_sums
from ..quantizers import QUANTIZERS, QuantizerOutput
from ..quantizers.perturb import Perturbation, perturb_codes
from ..strict_config import from_dict, to_dict
from ..tokens import CodecSpec, Tokens
from .chunking import UNBOUNDED_CONTEXT_SECONDS, decode_chunked, encode_chunked
from .components import DECODERS, ENCODERS
from .contracts import TOKENS_ONLY
from .global_branch import GlobalBranch, GlobalBranchConfig, condition
from .sampling import META_KEY as SAMPLING_KEY
from .sampling import decode_sampled, default_sampling, sampling_options
from .streaming import StreamingCodec, check_streamable

CHECKPOINT_FORMAT = 1
DEFAULT_CHUNK_SECONDS = 10.0


@dataclass
class CodecConfig:
    """A codec's model part: saved verbatim (defaults filled in) into config.json."""

    # the codec's family (its design, as codecs/__init__.py says), or a name of its own; saved
    # in config.json and in every token file's spec, so the key keeps its name
    family: str = "custom"
    sample_rate: int = 16000
    channels: int = 1
    latent_dim: int = 64
    encoder: dict = field(default_factory=lambda: {"type": "seanet"})
    quantizer: dict = field(default_factory=lambda: {"type": "rvq"})
    decoder: dict = field(default_factory=lambda: {"type": "seanet"})
    # code fixed-length segments each at its own loudness (EnCodec 48 kHz; codecs/segments.py)
    segment: dict | None = None
    # one vector per utterance coded into Tokens.global_codes (codecs/global_branch.py)
    global_branch: dict | None = None

    def __post_init__(self):
        if self.sample_rate <= 0 or self.channels <= 0 or self.latent_dim <= 0:
            raise ValueError("sample_rate, channels and latent_dim must be positive")
        if self.segment is not None:
            from .segments import SegmentConfig

            self.segment = to_dict(from_dict(SegmentConfig, self.segment, "segment"))
        if self.global_branch is not None:
            if self.segment is not None:
                raise ConfigError("global_branch and segment cannot be combined: a segmented "
                                  "codec codes each segment apart")
            self.global_branch = to_dict(from_dict(GlobalBranchConfig, self.global_branch,
                                                   "global_branch"))
        self.encoder = ENCODERS.normalise(self.encoder, "encoder")
        self.quantizer = QUANTIZERS.normalise(self.quantizer, "quantizer")
        self.decoder = DECODERS.normalise(self.decoder, "decoder")


@dataclass
class CodecOutput:
    """Result of `Codec.forward` (training).

    audio:   [B, C, T_out] reconstruction at `output_sample_rate`, cut or padded to
             T_out = `output_samples(T)` for an input of T samples (T_out = T for codecs
             that decode at the rate they encode)
    codes:   [B, K, T']
    latents: [B, D, T']  encoder output before quantization
    z_q:     [B, D, T']  quantized latents
    losses / metrics: named scalars from the quantizer ("vq/commit", "usage/0", ...) and
              the decoder's own losses, if it has any ("decoder/magnitude")
    semantic: [B, D, T'] the z_q distillation heads read (semantic levels of a split RVQ,
              level 0 of an RVQ), or None
    semantic_audio: [B, C, T_out] the decoder's output from `semantic` alone, when asked for
              (LM-SPT distills through an ASR encoder run on it), else None
    """

    audio: Tensor
    codes: Tensor
    latents: Tensor
    z_q: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)
    semantic: Tensor | None = None
    semantic_audio: Tensor | None = None


class Codec(nn.Module):
    """An encoder, a quantizer and a decoder (and optionally a global branch), each built
    from its registry; what a family can do it declares on its encoder and decoder classes
    (codecs/contracts.py), which this class reads, holding no family's logic itself."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        # checks a part makes of the others (pitch coding needs all three), before building
        ENCODERS.check_codec(config.encoder, config)
        QUANTIZERS.check_codec(config.quantizer, config)
        DECODERS.check_codec(config.decoder, config)
        wiring = {"channels": config.channels, "latent_dim": config.latent_dim,
                  "sample_rate": config.sample_rate}
        self.encoder = ENCODERS.build(config.encoder, "encoder", **wiring)
        self.quantizer = QUANTIZERS.build(config.quantizer, "quantizer", dim=config.latent_dim)
        self.quantizer.check_encoder(self.encoder)  # ssl_kmeans: one k-means per SSL layer
        self.global_branch: GlobalBranch | None = None
        if config.global_branch is not None:
            self.global_branch = GlobalBranch(GlobalBranchConfig(**config.global_branch),
                                              config.channels, config.sample_rate)
            # the decoder reads the frame latents with the utterance's vector appended
            wiring = {**wiring, "latent_dim": config.latent_dim + self.global_branch.cfg.dim}
        try:
            self.decoder = DECODERS.build(config.decoder, "decoder",
                                          hop_length=self.encoder.hop_length, **wiring)
        except ValueError as e:
            raise ConfigError(f"decoder: {e}") from None
        # codes come from the encoder alone, so only the decoder may round differently from
        # the plain layout (audio to ~1e-7; modules/conv.py fast_path)
        allow_reordered_sums(self.decoder)
        self.ref: str | None = None  # where it was loaded from; written into token files
        self._fingerprint: tuple[tuple, str] | None = None
        # the config as its config.json holds it, for a loaded codec: the fingerprint hashes
        # that, so a field added to audiotok later (filled in with its default) does not
        # change the fingerprint of a codec saved before, nor orphan its token files
        self.config_record: dict | None = None
        # where published weights came from (codecs/published/): source, sha256, licence
        self.provenance: dict | None = None

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def hop_length(self) -> int:
        return self.encoder.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def output_sample_rate(self) -> int:
        """Rate of decoded audio: the decoder's own where it declares one (NeuCodec decodes
        to 24 kHz what it encodes at 16 kHz), else `sample_rate`."""
        return int(self.decoder.sample_rate or self.sample_rate)

    @property
    def output_hop_length(self) -> int:
        """Decoded samples per frame (at `output_sample_rate`)."""
        return self.hop_length * self.output_sample_rate // self.sample_rate

    def output_samples(self, num_samples):
        """Decoded samples (at `output_sample_rate`) for `num_samples` input samples."""
        return num_samples * self.output_sample_rate // self.sample_rate

    def input_samples(self, num_samples: int) -> int:
        """Input samples (at `sample_rate`) spanning `num_samples` samples at
        `output_sample_rate`; ValueError unless that is a whole number (training resamples
        its targets to this length, codecs/base.py `forward`)."""
        samples, rest = divmod(num_samples * self.sample_rate, self.output_sample_rate)
        if rest:
            raise ValueError(f"{num_samples} samples at {self.output_sample_rate} Hz are no "
                             f"whole number of samples at {self.sample_rate} Hz")
        return samples

    @property
    def tokens_only(self) -> bool:
        """True for codecs without a decoder (BEATs' tokenizers): `decode` refuses."""
        return self.decoder.tokens_only

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.quantizer.codebook_sizes)

    @property
    def n_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def codebook_size(self) -> int:
        return max(self.codebook_sizes)

    @property
    def frame_multiple(self) -> int:
        """Frames that parts of the codec process as one group (SNAC: attention windows,
        pooled quantizer levels): inputs are padded to, and chunks cut at, multiples of it."""
        return math.lcm(*(int(m.frame_multiple)
                          for m in (self.encoder, self.quantizer, self.decoder)))

    @property
    def spec(self) -> CodecSpec:
        q = self.quantizer
        strides = tuple(q.level_strides) if q.multi_rate else ()
        return CodecSpec(self.config.family, self.sample_rate, self.channels, self.hop_length,
                         tuple(self.codebook_sizes), self.fingerprint(), strides,
                         self.segment_layout or (), tuple(self.global_codebook_sizes))

    @property
    def global_codebook_sizes(self) -> list[int]:
        """Entries of each per-utterance code (Tokens.global_codes); [] for codecs without
        a global branch."""
        return [] if self.global_branch is None else self.global_branch.codebook_sizes

    @property
    def segment_layout(self) -> tuple[int, int] | None:
        """(samples per segment, samples between their starts) of a segmented codec, or None."""
        if self.config.segment is None:
            return None
        from .segments import SegmentConfig, layout

        return layout(SegmentConfig(**self.config.segment), self.sample_rate)

    def bitrate(self, n_codebooks: int | None = None) -> float:
        return self.spec.bitrate(n_codebooks)

    def _config_dict(self) -> dict:
        if self.config_record is not None:
            return self.config_record
        config = to_dict(self.config)
        for key in ("segment", "global_branch"):  # as written before these options existed
            if config.get(key) is None:
                config.pop(key, None)
        return config

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of config + weights; cached until a weight changes."""
        state = self.state_dict()
        key = tuple((k, v.data_ptr(), v._version) for k, v in state.items())
        if self._fingerprint is None or self._fingerprint[0] != key:
            h = hashlib.sha256(json.dumps(self._config_dict(), sort_keys=True).encode())
            for name in sorted(state):
                t = state[name].detach().cpu().contiguous()
                h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
                # reshape: a 0-dim counter (BatchNorm's num_batches_tracked) views as bytes too
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            self._fingerprint = (key, h.hexdigest()[:16])
        return self._fingerprint[1]

    # ------------------------------------------------------------------ training
    def forward(self, wav: Tensor, n_codebooks: int | None = None,
                semantic_audio: bool = False, text: list[str | None] | None = None,
                perturb: Perturbation | None = None
                ) -> CodecOutput:
        """wav [B, C, T] at `sample_rate` -> CodecOutput with audio [B, C, output_samples(T)]
        at `output_sample_rate`; T is padded to whole frames (by the encoder itself for
        `pads_itself` encoders, as in `encode`), the output cut back to the input's span.

        A codec that decodes at another rate (NeuCodec: 16 kHz in, 24 kHz out) is trained
        against a target at its output rate, which the trainer resamples to make `wav`
        (train/rates.py). `semantic_audio` also decodes the semantic part alone, inside this
        call so that DistributedDataParallel sees every use of the decoder's weights.
        `text`: each item's transcript, for decoders conditioned on it (`takes_text`).
        `perturb` has the decoder read perturbed codes (`_perturbed`); the codes, losses and
        semantic part returned stay those of the quantizer."""
        self._check_training_input(wav)
        length = self.output_samples(wav.shape[-1])
        # an encoder with its publisher's own padding frames the waveform as `encode` does
        x = wav if self.encoder.pads_itself else self._pad_to_frames(wav)
        scale = None
        if self.config.segment is not None and self.config.segment["normalize"]:
            from .segments import unit_loudness

            x, scale = unit_loudness(x)  # train on what inference codes (codecs/segments.py)
        latents = self.encoder(x)
        q = self.quantizer(latents, n_codebooks)
        losses, metrics = dict(q.losses), dict(q.metrics)
        z_q = q.z_q
        if perturb is not None:
            z_q, metrics["perturb/changed"] = self._perturbed(q, perturb)
        vector = None
        if self.global_branch is not None:
            g = self.global_branch(x)
            vector = g.z_q
            for name, value in g.losses.items():  # one "vq/commit" for the recipe to weigh
                losses[name] = losses[name] + value if name in losses else value
            metrics.update({f"global/{k}": v for k, v in g.metrics.items()})
        z_q = z_q if vector is None else condition(z_q, vector)
        # decoders with losses of their own (the spectral decoder's magnitude loss) see the
        # padded input through `forward_train`; the others just decode
        if text is not None and not self.decoder.takes_text:
            raise ValueError("text: this codec's decoder is not conditioned on a transcript")
        extra = {} if text is None else {"text": list(text)}
        audio, decoder_losses = self.decoder.forward_train(z_q, x, **extra)
        losses.update(decoder_losses)
        audio = fit_length(audio if scale is None else audio * scale, length)
        sem_audio = None
        if semantic_audio:
            if q.semantic is None:
                raise ValueError(f"{type(self.quantizer).__name__} has no semantic levels to "
                                 f"decode alone (use an rvq or split_rvq quantizer)")
            sem = self.decoder(q.semantic if vector is None else condition(q.semantic, vector))
            sem_audio = fit_length(sem if scale is None else sem * scale, length)
        return CodecOutput(audio, q.codes, latents, z_q, losses, metrics, q.semantic,
                           sem_audio)

    def _perturbed(self, q: QuantizerOutput, perturb: Perturbation) -> tuple[Tensor, Tensor]:
        """z_q of the codes with a fraction replaced (quantizers/perturb.py), and the fraction
        of codes changed. As RobusTok's `add_perturbation` (z + (perturbed - z).detach()),
        the value is the perturbed codes' latent and the gradient the straight-through one
        of the unperturbed z_q: z_q + decode(perturbed) - decode(codes). Rows an item left
        out under quantizer dropout are not perturbed, so for every residual quantizer (whose
        decode sums its rows) this is the perturbed sum of the rows the item used."""
        codes = perturb_codes(self.quantizer, q.codes, perturb, q.active)
        with torch.no_grad():
            delta = self.quantizer.decode(codes) - self.quantizer.decode(q.codes)
        changed = (codes != q.codes).float().mean()
        return q.z_q + delta.to(q.z_q.dtype), changed

    def _check_training_input(self, wav: Tensor) -> None:
        """Shape checks only: `_check_wav`'s finiteness test would wait for the device on
        every training step."""
        if not isinstance(wav, Tensor) or wav.dim() != 3 or wav.shape[1] != self.channels \
                or wav.shape[-1] == 0:
            shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
            raise ValueError(f"wav must be a tensor [B, {self.channels}, T > 0] at "
                             f"{self.sample_rate} Hz, got {shape}")
        if self.output_sample_rate != self.sample_rate and self.decoder.loss_names:
            raise ValueError(f"{type(self.decoder).__name__}'s own losses compare its output "
                             f"with the input, which a codec decoding at "
                             f"{self.output_sample_rate} Hz from {self.sample_rate} Hz "
                             f"does not allow")

    def _pad_to_frames(self, wav: Tensor) -> Tensor:
        """wav [B, C, T] padded with zeros at the end to whole groups of frames (SNAC's
        `preprocess`: hop * lcm(window, strides) samples; whole frames for most codecs)."""
        group = self.frame_multiple
        frames = max(1, math.ceil(self._frames(wav.shape[-1]) / group)) * group
        return nn.functional.pad(wav, (0, frames * self.hop_length - wav.shape[-1]))

    def _frames(self, num_samples):
        """Frames (codes) that `num_samples` samples give: ceil(T / hop), or for encoders that
        append `pad_samples` before rounding up to whole frames, as X-Codec-2 appends one
        zero (so a whole number of frames gains one more), ceil((T + pad) / hop). Works on
        ints and on tensors of lengths."""
        pad = int(self.encoder.pad_samples)
        return (num_samples + pad + self.hop_length - 1) // self.hop_length

    # ------------------------------------------------------------------ inference
    def encode(self, wav: Tensor, n_codebooks: int | None = None, lengths: Tensor | None = None,
               chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS) -> Tokens:
        """wav [B, C, T] at `sample_rate` -> Tokens with codes long [B, K, ceil(T / hop)]
        (codecs with a `frame_multiple` > 1: rounded up to a multiple of it; encoders with
        `pad_samples`: ceil((T + pad_samples) / hop), X-Codec-2's floor(T / hop) + 1).

        `lengths` [B] gives the valid samples of each item of a padded batch. Long inputs are
        encoded `chunk_seconds` at a time (None: all at once); for convolutional encoders the
        codes are identical either way.

        A codec with a global branch (FreeCodec's timbre) also returns `global_codes` long
        [B, G], each item's from all of its valid samples (never chunked).
        """
        tokens = self._encode_frames(wav, n_codebooks, lengths, chunk_seconds)
        if self.global_branch is not None:
            with torch.inference_mode():
                codes = self.global_branch.encode(wav, tokens.num_samples)
            tokens.global_codes = codes.clone()
        return tokens

    def _encode_frames(self, wav: Tensor, n_codebooks: int | None = None,
                       lengths: Tensor | None = None,
                       chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS) -> Tokens:
        """`encode` without the global codes (the corpus tokenizer batches frames apart)."""
        self._check_wav(wav)
        n = self.quantizer.check_n_codebooks(n_codebooks)
        num_samples = input_lengths(lengths, wav)

        def run(chunk: Tensor, **kwargs) -> Tensor:
            return self.quantizer.encode(self.encoder(chunk, **kwargs), n)

        if self.config.segment is not None:  # segments bound memory: no chunking needed
            from . import segments

            self._chunk_frames(chunk_seconds, 1)  # still refuse a bad value
            with torch.inference_mode():
                codes, scales = segments.encode(self, wav, n, *self.segment_layout,
                                                self.config.segment["normalize"])
            return self._tokens(codes.clone(), num_samples,
                                None if scales is None else scales.clone())
        n_frames = max(1, self._frames(wav.shape[-1]))
        chunk_frames = self._chunk_frames(chunk_seconds, n_frames)
        if self.encoder.pads_itself and chunk_frames >= n_frames:
            # an encoder with its publisher's per-layer padding takes the waveform as it is
            # (in one piece: chunks would need whole frames); one whose publisher pads each
            # item of a batch apart (X-Codec-2's feature extractor) also takes their lengths
            with torch.inference_mode():
                codes = run(wav, lengths=num_samples) if self.encoder.takes_lengths \
                    else run(wav)
                return self._tokens(codes.clone(), num_samples)
        x = self._pad_to_frames(wav)
        if chunk_frames < n_frames and self._streams_by_stage():
            return self._encode_streaming(x, n, chunk_frames, num_samples)
        reach = self.encoder.receptive_field()
        if reach is None:
            reach = (int(UNBOUNDED_CONTEXT_SECONDS * self.sample_rate),) * 2
        if chunk_seconds is None:
            chunk_frames = x.shape[-1] // self.hop_length
        with torch.inference_mode():
            codes = encode_chunked(run, x, self.hop_length, reach, chunk_frames,
                                   self.frame_multiple)
        codes = codes.clone()  # a normal tensor: users may edit codes in place
        return self._tokens(codes, num_samples)

    def _tokens(self, codes: Tensor, num_samples: Tensor, scales: Tensor | None = None
                ) -> Tokens:
        # an encoder that codes whole frames only (NeuCodec: floor(T / hop)) leaves the tail
        # of a partial frame uncoded: the tokens describe the samples they hold
        num_samples = torch.minimum(num_samples, self._frames(num_samples) * self.hop_length)
        spec = self.spec
        # frames that hold the signal (token files check it); an encoder with `pad_samples`
        # (X-Codec-2) may return one code more, which covers its padding only
        frames = torch.tensor([spec.frames_for(int(n)) for n in num_samples], dtype=torch.long)
        sampling = default_sampling(self.decoder)  # how a diffusion decoder will decode
        meta = {} if sampling is None else {SAMPLING_KEY: sampling.to_meta()}
        return Tokens(codes=codes.long(), spec=spec, lengths=frames,
                      num_samples=num_samples, codec_ref=self.ref, scales=scales, meta=meta)

    def decode(self, tokens: Tokens, chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS, *,
               steps: int | None = None, seed: int | None = None,
               text: str | list[str | None] | None = None, prompt: Tensor | None = None
               ) -> Tensor:
        """Tokens -> wav [B, C, max(num_samples)] (at `output_sample_rate`: scaled to it);
        refuses tokens of another codec, and every call on a tokens-only codec (no decoder).

        Diffusion decoders (codecs/sampling.py) sample: `steps` Euler steps from noise of
        `seed` (defaults: the tokens' "sampling" metadata, else the decoder's), conditioned on
        `text` (one transcript, or one per item) and `prompt` (wav [B, C, P], a clean prefix);
        they decode in one piece (no chunks). Other decoders refuse these options."""
        if self.tokens_only:
            raise AudiotokError(f"codec '{self.config.family}' {TOKENS_ONLY}")
        self.check_tokens(tokens)
        sampling = sampling_options(self.decoder, tokens.meta, steps, seed, text, prompt)
        codes = tokens.codes.to(self._device())
        vector = self._global_vector(tokens)
        if sampling is not None:
            self._chunk_frames(chunk_seconds, 1)  # still refuse a bad value
            wav = decode_sampled(self, codes, sampling, text, prompt, vector)
            return fit_length(wav, self.output_samples(int(tokens.num_samples.max()))).clone()
        if self.config.segment is not None:
            from . import segments

            self._chunk_frames(chunk_seconds, 1)
            with torch.inference_mode():
                wav = segments.decode(self, codes, tokens.scales,
                                      int(tokens.num_samples.max()), *self.segment_layout)
            return wav.clone()
        group = self.frame_multiple
        if codes.shape[-1] % group:
            # codes cut short of the whole groups that encode gives (SNAC): the last frame
            # stands in for the missing ones, which only the padding after the signal used
            tail = codes[..., -1:].expand(*codes.shape[:-1], -codes.shape[-1] % group)
            codes = torch.cat([codes, tail], -1)

        # decoders whose output depends on absolute position (the spectral decoder's
        # harmonic phase) take the chunk's first token index
        offset = self.decoder.supports_frame_offset

        def run(chunk: Tensor, start: int) -> Tensor:
            z = self.quantizer.decode(chunk)
            if vector is not None:
                z = condition(z, vector)
            return self.decoder(z, frame_offset=start) if offset else self.decoder(z)

        chunk_frames = self._chunk_frames(chunk_seconds, codes.shape[-1])
        if chunk_frames < codes.shape[-1] and self._streams_by_stage():
            stream = self.stream(codes.shape[1])
            wav = torch.cat([stream.decode(codes[..., i:i + chunk_frames])
                             for i in range(0, codes.shape[-1], chunk_frames)]
                            + [stream.end_decode()], -1)
            return fit_length(wav, int(tokens.num_samples.max())).clone()
        reach = self.decoder.receptive_field()
        if reach is None:
            reach = (math.ceil(UNBOUNDED_CONTEXT_SECONDS * self.frame_rate),) * 2
        with torch.inference_mode():
            wav = decode_chunked(run, codes, self.output_hop_length, reach, chunk_frames,
                                 group)
        return fit_length(wav, self.output_samples(int(tokens.num_samples.max()))).clone()

    def _global_vector(self, tokens: Tokens) -> Tensor | None:
        """The decoder's per-utterance vector [B, dim] from `tokens.global_codes`; None for
        codecs without a global branch."""
        if self.global_branch is None:
            return None
        if tokens.global_codes is None:
            raise TokenFileError(f"codec {self.spec.describe()} decodes with per-utterance "
                                 f"codes; these tokens have none (take them from another "
                                 f"clip with tokens.with_global(other))")
        with torch.inference_mode():
            return self.global_branch.decode(tokens.global_codes.to(self._device()))

    def _streams_by_stage(self) -> bool:
        """True for causal codecs that stream layer by layer (SEANet/Mimi `stream_stages`):
        long inputs then go through the streaming path, which carries each layer's state
        across chunks instead of recomputing a (possibly long) left context per chunk."""
        if self.global_branch is not None:
            return False
        if not (self.encoder.streams_in_stages and self.decoder.streams_in_stages):
            return False
        try:
            check_streamable(self)
        except ValueError:
            return False
        return True

    def _encode_streaming(self, x: Tensor, n: int, chunk_frames: int, num_samples: Tensor
                          ) -> Tokens:
        stream = self.stream(n)
        step = chunk_frames * self.hop_length
        codes = torch.cat([stream.encode(x[..., i:i + step]) for i in range(0, x.shape[-1], step)]
                          + [stream.flush()], -1)
        return self._tokens(codes, num_samples)

    def stream(self, n_codebooks: int | None = None) -> StreamingCodec:
        """A StreamingCodec (codecs/streaming.py): encode audio and decode codes piece by piece
        with results equal to `encode`/`decode` of the whole. ValueError unless causal."""
        if self.global_branch is not None:
            raise ValueError("a codec with a global branch codes each utterance's vector from "
                             "all of its samples: it does not stream")
        return StreamingCodec(self, n_codebooks)

    def check_tokens(self, tokens: Tokens) -> None:
        """Raise TokenFileError unless `tokens` were made by this codec and are in range."""
        check_tokens(self.spec, tokens)

    def _chunk_frames(self, chunk_seconds: float | None, n_frames: int) -> int:
        return chunk_frames(chunk_seconds, n_frames, self.frame_rate)

    def _check_wav(self, wav: Tensor) -> None:
        if not isinstance(wav, Tensor) or wav.dim() != 3:
            shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
            raise ValueError(f"wav must be a tensor [B, C, T], got {shape}")
        if wav.shape[1] != self.channels:
            raise ValueError(f"codec expects {self.channels} channel(s), got {wav.shape[1]}")
        if wav.shape[-1] == 0:
            raise AudiotokError("audio has no samples")
        if not torch.isfinite(wav).all():
            raise AudiotokError("audio contains NaN or infinite samples")

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, path, dtype: torch.dtype | None = None) -> Path:
        """Write `config.json` + `model.safetensors` into directory `path` (atomically each).

        `dtype=torch.float16` stores floating-point weights at half size (the bundled model
        ships this way); loading casts them back to the codec's dtype, and the recorded
        fingerprint is that of the weights as they will load, so it still verifies.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        spec = self.spec.to_dict()
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
            with torch.random.fork_rng():  # building the copy must not move the caller's RNG
                reloaded = Codec(self.config)
            reloaded.config_record = self.config_record
            reloaded.load_state_dict(state, strict=True)
            spec["fingerprint"] = reloaded.fingerprint()
        with atomic_path(path / "model.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        meta = {
            "format_version": CHECKPOINT_FORMAT,
            "audiotok_version": __version__,
            "config": self._config_dict(),
            "spec": spec,
        }
        if self.provenance:
            meta["provenance"] = self.provenance
        with atomic_path(path / "config.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, path, device="cpu") -> Codec:
        from .loading import load_pretrained

        return load_pretrained(path, device)

    @classmethod
    def from_config(cls, config: dict | CodecConfig) -> Codec:
        if isinstance(config, dict):
            config = from_dict(CodecConfig, config, "model")
        return cls(config)


def chunk_frames(chunk_seconds: float | None, n_frames: int, frame_rate: float) -> int:
    """Frames per chunk for `chunk_seconds` (None: the whole signal); ValueError unless a
    positive finite number."""
    if chunk_seconds is None:
        return max(n_frames, 1)
    if not chunk_seconds > 0 or not math.isfinite(chunk_seconds):  # NaN fails both
        raise ValueError(f"chunk_seconds must be a positive finite number (or None), got "
                         f"{chunk_seconds}")
    return max(1, int(chunk_seconds * frame_rate))


def check_tokens(mine: CodecSpec, tokens: Tokens) -> None:
    """Raise TokenFileError unless `tokens` were made by the codec of spec `mine` (the same
    weights, where both record a fingerprint) and are in range."""
    theirs = tokens.spec
    same_shape = (theirs.sample_rate, theirs.hop_length, tuple(theirs.codebook_sizes),
                  theirs.strides(), theirs.segment, theirs.global_codebook_sizes) == (
        mine.sample_rate, mine.hop_length, tuple(mine.codebook_sizes), mine.strides(),
        mine.segment, mine.global_codebook_sizes)
    if not same_shape or (theirs.fingerprint and theirs.fingerprint != mine.fingerprint):
        raise TokenFileError(
            f"tokens were made by codec {theirs.describe()}, not by this codec "
            f"{mine.describe()}"
        )
    tokens.check_range()


def fit_length(wav: Tensor, length: int) -> Tensor:
    """wav [..., T] cut or padded with silence at the end to `length` samples. Decoders that
    reproduce a publisher's padding (DAC's odd strides) end a few samples short of
    T' * hop; the missing tail is silence, as in the publisher's own output."""
    if wav.shape[-1] >= length:
        return wav[..., :length]
    return nn.functional.pad(wav, (0, length - wav.shape[-1]))


def input_lengths(lengths: Tensor | None, wav: Tensor) -> Tensor:
    b, _, t = wav.shape
    if lengths is None:
        return torch.full((b,), t, dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    if lengths.shape != (b,) or (lengths < 1).any() or (lengths > t).any():
        raise ValueError(f"lengths must be [B] in [1, {t}], got {lengths.tolist()}")
    return lengths
