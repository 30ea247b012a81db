"""Streaming encode/decode for causal codecs: audio in, codes out (and back) piece by piece.

    stream = codec.stream()                 # ValueError unless the codec is causal
    for chunk in chunks:                    # wav [B, C, n], any n >= 0
        codes = stream.encode(chunk)        # long [B, K, m]: the frames now final
    codes = stream.flush()                  # the zero-padded last frame, as `codec.encode` does
    wav = stream.decode(codes)              # [B, C, m * hop] for codes [B, K, m]

Why it is exact: a causal codec's frame t depends only on samples before the end of its own
window (encoder reach right <= hop - 1) and its samples only on frames <= t (decoder reach
right == 0), so a frame is final as soon as it is complete. Each stage below keeps just enough
of the past to cover its left reach, so every new frame is computed from the same inputs as in
`codec.encode(whole)` / `codec.decode(tokens)`: the codes are equal, the audio equal up to float
rounding (the same argument as codecs/chunking.py, with the right context being empty).

Two refinements keep it exact for EnCodec's layout: an LSTM stage carries its hidden and cell
state (its reach is unbounded but all in the past), and a conv with reflect padding, which at
the start of a signal mirrors samples ahead, holds back its first frames until those samples
have arrived (`first_needs`; later frames need only their own), so a stream's first outputs
come a few frames late and `flush()` / `end_decode()` push out what a very short signal left.

Cost: a convolutional stage recomputes its left reach (plus one frame) on every call, so a call
costs O(reach + new frames) and memory stays bounded. A transformer stage keeps a key/value
cache of `context - 1` frames per layer, so a call costs O(context * new frames) in attention.
Encoders/decoders that split themselves into stages (`stream_stages()`: SEANet layer by layer,
Mimi = SEANet layers + transformer + resampling conv) stream cheaply; any other causal codec
(DAC) runs as one stage, recomputing its whole receptive field on every call (for a windowed
transformer inside it that would be layers * context frames per call).

Measured on one CPU thread for the untrained `mimi-like` preset (codecs/presets.py; 24 kHz,
80 ms frames): about 22 ms to encode and 25 ms to decode each 80 ms frame, so it streams in
real time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..modules.conv import ConvTranspose1d
from ..modules.lstm import SLSTM
from ..modules.snake import Snake1d

Stage = Callable[[Tensor], Tensor]


class EncodeStage:
    """Streams `fn`: x [B, C, L] (L a multiple of `stride`) -> [B, D, L / stride], causal.

    Input is buffered until whole strides are available; each call runs `fn` on the last
    `history` output frames' worth of input plus the new whole frames and returns the new
    frames (None when none is complete). `first_needs`: input samples the first frame
    depends on; more than a stride when reflect padding at the signal's start mirrors samples
    ahead (EnCodec), and then nothing is returned until that many have arrived (later frames
    need no more than their own samples; `finish` handles a signal that ends sooner).
    """

    def __init__(self, fn: Stage, stride: int, history: int, first_needs: int | None = None):
        self.fn, self.stride, self.history = fn, stride, history
        self.first_needs = max(first_needs or stride, stride)
        self.reset()

    def reset(self) -> None:
        self.buffer: Tensor | None = None  # input from frame `self.start` on
        self.start = 0                     # absolute index of the buffer's first frame
        self.done = 0                      # frames already returned

    def __call__(self, x: Tensor) -> Tensor | None:
        self.buffer = x if self.buffer is None else torch.cat([self.buffer, x], -1)
        complete = self.start + self.buffer.shape[-1] // self.stride
        if complete == self.done or (self.done == 0 and
                                     self.buffer.shape[-1] < self.first_needs):
            return None
        return self._emit(complete)

    def finish(self) -> Tensor | None:
        """The signal has ended: the complete frames still held back for `first_needs`,
        computed on the short signal as a whole-signal run computes them (or None)."""
        if self.buffer is None:
            return None
        complete = self.start + self.buffer.shape[-1] // self.stride
        return self._emit(complete) if complete > self.done else None

    def _emit(self, complete: int) -> Tensor:
        y = self.fn(self.buffer[..., : (complete - self.start) * self.stride])
        y = y[..., self.done - self.start:]
        self.done = complete
        keep_from = max(self.done - self.history, self.start)
        self.buffer = self.buffer[..., (keep_from - self.start) * self.stride:]
        self.start = keep_from
        return y


class DecodeStage:
    """Streams `fn`: z [B, D, m] -> [B, C, m * stride], causal: keeps `history` past frames and
    returns the samples of the new frames only."""

    def __init__(self, fn: Stage, stride: int, history: int):
        self.fn, self.stride, self.history = fn, stride, history
        self.reset()

    def reset(self) -> None:
        self.past: Tensor | None = None

    def __call__(self, z: Tensor) -> Tensor:
        full = z if self.past is None else torch.cat([self.past, z], -1)
        y = self.fn(full)[..., (full.shape[-1] - z.shape[-1]) * self.stride:]
        self.past = full[..., max(full.shape[-1] - self.history, 0):]
        return y


class PointwiseStage:
    """A layer that treats every position alone (activations): nothing to remember."""

    def __init__(self, fn: Stage):
        self.fn = fn

    def reset(self) -> None:
        pass

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


class RecurrentStage:
    """Streams a unidirectional SLSTM, carrying its hidden and cell states."""

    def __init__(self, lstm: SLSTM):
        self.lstm = lstm
        self.reset()

    def reset(self) -> None:
        self.state = None

    def __call__(self, x: Tensor) -> Tensor:
        y, self.state = self.lstm.step(x, self.state)
        return y


class TransformerStage:
    """Streams a CausalTransformer with its key/value cache (see modules/transformer.py)."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.reset()

    def reset(self) -> None:
        self.state = None

    def __call__(self, x: Tensor) -> Tensor:
        y, self.state = self.transformer.step(x, self.state)
        return y


STATELESS = (nn.ELU, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Identity, Snake1d)


def sequential_stages(layers) -> list:
    """Per-layer stages for a causal conv stack: every layer keeps only its own reach of
    history, so a call costs O(new samples) at every depth instead of recomputing the stack's
    whole receptive field. Layers: ConvTranspose1d, modules with `reach()` (convs, residual
    blocks) and per-sample activations; anything else is a TypeError."""
    stages: list = []
    for layer in layers:
        if isinstance(layer, ConvTranspose1d):
            stages.append(DecodeStage(layer, layer.stride, layer.frame_reach()[0] + 1))
        elif hasattr(layer, "reach"):
            left, right, stride = layer.reach()
            stages.append(EncodeStage(layer, stride, math.ceil(left / stride) + 1, right + 1))
        elif isinstance(layer, SLSTM) and not layer.bidirectional:
            stages.append(RecurrentStage(layer))
        elif isinstance(layer, STATELESS):
            stages.append(PointwiseStage(layer))
        else:
            raise TypeError(f"cannot stream layer {type(layer).__name__} on its own")
    return stages


def encoder_stages(encoder, hop: int) -> list:
    """The encoder's own stages (`streams_in_stages`), else itself as one stage."""
    if encoder.streams_in_stages:
        return encoder.stream_stages()
    left, _ = encoder.receptive_field()
    return [EncodeStage(encoder, hop, math.ceil(left / hop) + 1)]


def decoder_stages(decoder, hop: int) -> list:
    """The decoder's own stages (`streams_in_stages`), else itself as one stage."""
    if decoder.streams_in_stages:
        return decoder.stream_stages()
    left, _ = decoder.receptive_field()
    return [DecodeStage(decoder, hop, left + 1)]


def _reach(part) -> tuple[int, int] | None:
    """A part's (left, right) reach for streaming: right away from the signal's start
    (`lookahead()`: the first frames are held back for reflect padding), left inf for
    recurrent causal stacks (an LSTM, carried as state); None when unbounded to the right."""
    right = part.lookahead()
    if right is None:
        return None
    reach = part.receptive_field()
    return (math.inf if reach is None else reach[0], right)


def check_streamable(codec) -> None:
    """Raise ValueError, saying why, unless every frame of `codec` is final once complete."""
    name, hop = f"codec '{codec.config.family}'", codec.hop_length
    enc, dec = _reach(codec.encoder), _reach(codec.decoder)
    fix = "build a causal configuration (causal: true, pad_mode: constant, lstm_layers: 0)"
    if enc is None:
        raise ValueError(f"cannot stream {name}: its encoder's receptive field is unbounded "
                         f"(a bidirectional LSTM or attention over the whole sequence), so no "
                         f"code is final before the input ends; {fix}")
    if enc[1] > hop - 1:
        raise ValueError(f"cannot stream {name}: its encoder looks {enc[1] - hop + 1} samples "
                         f"past the end of each frame (non-causal convolutions or reflect "
                         f"padding), so a code would change when later audio arrives; {fix}")
    if dec is None:
        raise ValueError(f"cannot stream {name}: its decoder's receptive field is unbounded "
                         f"(a bidirectional LSTM or attention over the whole sequence); {fix}")
    if dec[1] > 0:
        raise ValueError(f"cannot stream {name}: its decoder uses {dec[1]} later frame(s) for "
                         f"each frame's samples (non-causal layers), so audio would change "
                         f"when later codes arrive; {fix}")


class StreamingCodec:
    """Causal streaming over a Codec; see the module docstring. Not thread-safe; one stream
    (a batch of B signals advancing together) at a time. Build with `codec.stream()`."""

    def __init__(self, codec, n_codebooks: int | None = None):
        check_streamable(codec)
        self.codec = codec
        self.n_codebooks = codec.quantizer.check_n_codebooks(n_codebooks)
        self.hop = codec.hop_length
        self.encoder = encoder_stages(codec.encoder, self.hop)
        self.decoder = decoder_stages(codec.decoder, self.hop)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next encode/decode starts a new signal."""
        self._reset_encoder()
        for stage in self.decoder:
            stage.reset()
        self._decode_batch: int | None = None

    def _reset_encoder(self) -> None:
        for stage in self.encoder:
            stage.reset()
        self._samples = 0
        self._encode_batch: int | None = None

    def encode(self, wav: Tensor) -> Tensor:
        """wav [B, C, n], n >= 0 -> codes long [B, K, m]: the m frames completed by this call."""
        self._check_wav(wav)
        self._encode_batch = self._check_batch(self._encode_batch, wav.shape[0])
        self._samples += wav.shape[-1]
        with torch.inference_mode():
            z = _run(self.encoder, wav.to(self.codec._device()))
            codes = None if z is None else self.codec.quantizer.encode(z, self.n_codebooks)
        if codes is None:
            return torch.zeros(wav.shape[0], self.n_codebooks, 0, dtype=torch.long,
                               device=self.codec._device())
        return codes.long().clone()

    def flush(self) -> Tensor:
        """End the signal: zero-pad the last partial frame like `codec.encode` and return its
        code (long [B, K, 0 or 1]); the encoder side then starts a new signal."""
        pad = -self._samples % self.hop
        batch = self._encode_batch
        codes = torch.zeros(batch or 0, self.n_codebooks, 0, dtype=torch.long,
                            device=self.codec._device())
        if pad and batch is not None:
            codes = self.encode(torch.zeros(batch, self.codec.channels, pad))
        with torch.inference_mode():
            z = _finish(self.encoder)
            if z is not None:
                held = self.codec.quantizer.encode(z, self.n_codebooks).long()
                codes = torch.cat([codes, held], -1)
        self._reset_encoder()
        return codes.clone()

    def end_decode(self) -> Tensor:
        """End the decoded signal: the samples held back at its start (reflect-padded
        decoders, when it was shorter than their first frame needs; usually none), as
        wav [B, C, n]; the decoder side then starts a new signal."""
        batch = self._decode_batch or 0
        with torch.inference_mode():
            wav = _finish(self.decoder)
        for stage in self.decoder:
            stage.reset()
        self._decode_batch = None
        if wav is None:
            return torch.zeros(batch, self.codec.channels, 0, device=self.codec._device())
        return wav.clone()

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, K, m] (K <= n_codebooks, may vary between calls) -> wav [B, C, m * hop]:
        the samples of these frames, equal to the same span of `codec.decode` of the whole.
        Decoders with reflect padding (EnCodec) hold back their first few samples until the
        frames after them arrive, then catch up; `end_decode()` returns any still held."""
        self._check_codes(codes)
        self._decode_batch = self._check_batch(self._decode_batch, codes.shape[0])
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], self.codec.channels, 0, device=self.codec._device())
        with torch.inference_mode():
            z = self.codec.quantizer.decode(codes.to(self.codec._device()))
            wav = _run(self.decoder, z)
        if wav is None:  # held back (see above)
            return torch.zeros(codes.shape[0], self.codec.channels, 0,
                               device=self.codec._device())
        return wav.clone()

    def _check_wav(self, wav: Tensor) -> None:
        if not isinstance(wav, Tensor) or wav.dim() != 3:
            shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
            raise ValueError(f"wav must be a tensor [B, C, n], got {shape}")
        if wav.shape[1] != self.codec.channels:
            raise ValueError(f"codec expects {self.codec.channels} channel(s), got {wav.shape[1]}")
        if not torch.isfinite(wav).all():
            raise ValueError("audio contains NaN or infinite samples")

    def _check_codes(self, codes: Tensor) -> None:
        if not isinstance(codes, Tensor) or codes.dim() != 3 or codes.dtype.is_floating_point:
            raise ValueError("codes must be an integer tensor [B, K, m]")
        k = codes.shape[1]
        if not 1 <= k <= self.codec.n_codebooks:
            raise ValueError(f"codes have {k} rows; this codec decodes 1 to "
                             f"{self.codec.n_codebooks}")
        sizes = torch.tensor(self.codec.codebook_sizes[:k], device=codes.device)[None, :, None]
        if codes.numel() and ((codes < 0) | (codes >= sizes)).any():
            raise ValueError("codes out of range for this codec's codebooks")

    @staticmethod
    def _check_batch(current: int | None, batch: int) -> int:
        if current is not None and batch != current:
            raise ValueError(f"batch size changed mid-stream ({current} -> {batch}); "
                             f"call reset() to start a new stream")
        return batch


def _finish(stages: list) -> Tensor | None:
    """Push out what stages hold back at the end of a signal, stage by stage."""
    x = None
    for stage in stages:
        y = stage(x) if x is not None else None
        held = stage.finish() if hasattr(stage, "finish") else None
        parts = [t for t in (y, held) if t is not None]
        x = torch.cat(parts, -1) if parts else None
    return x


def _run(stages: list, x: Tensor) -> Tensor | None:
    for stage in stages:
        x = stage(x)
        if x is None:
            return None
    return x
