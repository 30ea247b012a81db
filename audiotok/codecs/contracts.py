"""The encoder and decoder contracts: what each half of a codec family provides, and the
optional behaviour it declares, so that `Codec` calls hooks instead of probing for them.

A family is one file: a config dataclass and a class per half, registered on the class,

    @ENCODERS.register("mine", MyEncoderConfig)
    class MyEncoder(Encoder): ...

and one recipe naming it. Each class is checked once, when it registers
(`check_declarations`): a flag promising a hook the class does not implement, or a hook no
flag declares, is a TypeError naming both. Flags are class attributes; a family whose
capability depends on its config sets the instance attribute in its constructor (SEANet's
`pads_itself`, TaDiCodec's `takes_text`), within what its class declares.

Encoder: built as ``cls(cfg, channels=C, latent_dim=D, sample_rate=SR)``, the constructor
taking the wiring it names.
    hop_length: int         samples per output frame (set by the constructor)
    forward(wav [B, C, T]) -> z [B, D, T // hop_length]; T a multiple of hop_length (times
        `frame_multiple`) unless `pads_itself`
    receptive_field() -> (left, right) | None: input samples before/after a frame's window
        that can change that frame (an upper bound is fine); None = unbounded (LSTM, full
        attention). Required.

Decoder: built as ``cls(cfg, channels=C, latent_dim=D, hop_length=H, sample_rate=SR)``.
    forward(z [B, D, T']) -> wav [B, C, T' * H] (at `sample_rate`, when it sets one)
    receptive_field() -> (left, right) | None in frames: how many neighbouring frames on
        each side can change the samples of a frame; None = unbounded. Required.

Global encoders (GLOBAL_ENCODERS, codecs/global_branch.py) are built as
``cls(cfg, channels=C, sample_rate=SR, dim=D)`` and map wav [B, C, T] -> [B, D], one
vector per item over all of its samples.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

from torch import Tensor, nn

from ..registry import Component

TOKENS_ONLY = "has no decoder: it makes tokens only (labels for SSL training), not audio"

Reach = tuple[int, int]


def _overrides(cls: type, base: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(base, name)


def _takes(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _agree(cls: type, flag: str, declared: bool, has: bool, hook: str) -> None:
    """TypeError unless flag `flag` is set exactly when the class has `hook`."""
    if bool(declared) != has:
        does = "defines" if has else "does not define"
        raise TypeError(f"{cls.__qualname__}: {flag} is {bool(declared)} but it {does} "
                        f"{hook}; declare one with the other")


class _Half(nn.Module, Component):
    """What encoders and decoders share."""

    # frames processed as one group (SNAC's attention windows): inputs are padded to, and
    # chunks cut at, multiples of it
    frame_multiple: int = 1
    # streams layer by layer through `stream_stages()` (SEANet, Mimi): long inputs then go
    # through the streaming path, carrying each layer's state across chunks; others stream
    # as one stage that recomputes its receptive field (codecs/streaming.py)
    streams_in_stages: ClassVar[bool] = False

    def receptive_field(self) -> Reach | None:
        raise NotImplementedError

    def lookahead(self) -> int | None:
        """The right reach away from the signal's start, where it differs from
        `receptive_field` (reflect padding reads ahead only at the start; streaming holds the
        first frames back for it; an LSTM's unbounded reach lies all in the past); None if
        unbounded to the right."""
        reach = self.receptive_field()
        return None if reach is None else reach[1]

    def stream_stages(self) -> list:
        """The streaming stages, layer by layer (codecs/streaming.py); only for classes that
        set `streams_in_stages`, and only called on causal configurations."""
        raise NotImplementedError(f"{type(self).__name__} streams as one stage")

    def onnx_blocker(self) -> str | None:
        """Why this part has no ONNX graph yet, in a few words (export/onnx.py), or None."""
        return None

    @classmethod
    def check_declarations(cls, config_cls: type) -> None:
        if not _overrides(cls, _Half, "receptive_field"):
            raise TypeError(f"{cls.__qualname__} must define receptive_field()")
        _agree(cls, "streams_in_stages", cls.streams_in_stages,
               _overrides(cls, _Half, "stream_stages"), "stream_stages()")


class Encoder(_Half):
    """wav [B, C, T] -> latents [B, D, T / hop_length]; see the module docstring."""

    hop_length: int
    # frames the waveform itself with its publisher's per-layer padding (EnCodec's
    # checkpoints, X-Codec-2): `Codec` passes any length as it is, in one piece
    pads_itself: bool = False
    # forward takes `lengths` [B], each item's valid samples (X-Codec-2's feature extractor
    # pads each item of a batch apart); only for encoders that pad themselves
    takes_lengths: ClassVar[bool] = False
    # samples appended before rounding up to whole frames (X-Codec-2 appends one zero: a
    # whole number of frames gains one more code); negative drops a frame (NeuCodec)
    pad_samples: int = 0
    # feature streams side by side on the channel axis, one code row each for quantizers
    # that code them apart (the SSL layers of ssl_kmeans)
    n_streams: int = 1

    @classmethod
    def check_declarations(cls, config_cls: type) -> None:
        super().check_declarations(config_cls)
        _agree(cls, "takes_lengths", cls.takes_lengths, _takes(cls.forward, "lengths"),
               "forward(..., lengths)")
        if cls.takes_lengths and cls.pads_itself is False:
            raise TypeError(f"{cls.__qualname__} sets takes_lengths but not pads_itself: only "
                            f"an encoder that frames the waveform itself sees the lengths")


class Decoder(_Half):
    """latents [B, D, T'] -> wav [B, C, T' * hop_length]; see the module docstring."""

    # the rate it decodes at, where not the codec's (NeuCodec: 24 kHz from 16 kHz codes)
    sample_rate: int | None = None
    # losses `forward_train` returns besides the audio; the trainer accepts recipe weights
    # for them. A decoder with losses of its own defines forward_train and names them here
    loss_names: tuple[str, ...] = ()
    # conditioned on a transcript: forward_train (and sample) take `text`
    takes_text: bool = False
    # forward takes `frame_offset`, the first frame's index in the whole signal (output
    # that depends on absolute position: the spectral decoder's harmonic phase)
    supports_frame_offset: ClassVar[bool] = False
    # samples its output (flow matching): `sample` takes steps, seed, text and prompt, with
    # `cfg.steps` the default steps (codecs/sampling.py)
    stochastic: ClassVar[bool] = False
    # no decoder at all: the codec makes tokens only, and decoding is a one-line error
    tokens_only: ClassVar[bool] = False

    def forward_train(self, z: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Training: (wav, losses named in `loss_names`) for z [B, D, T'] and the padded
        input target [B, C, T' * hop]; plain decoders decode and add nothing."""
        return self(z), {}

    def sample(self, z: Tensor, steps: int, seed: int, text: list[str | None] | None = None,
               prompt: Tensor | None = None) -> Tensor:
        """Stochastic decoders: z [B, D, T'] -> wav, `steps` steps from noise of `seed`."""
        raise NotImplementedError(f"{type(self).__name__} is deterministic")

    @classmethod
    def check_declarations(cls, config_cls: type) -> None:
        super().check_declarations(config_cls)
        name = cls.__qualname__
        _agree(cls, "supports_frame_offset", cls.supports_frame_offset,
               _takes(cls.forward, "frame_offset"), "forward(..., frame_offset)")
        _agree(cls, "stochastic", cls.stochastic, _overrides(cls, Decoder, "sample"),
               "sample()")
        if cls.stochastic and "steps" not in getattr(config_cls, "__dataclass_fields__", {}):
            raise TypeError(f"{name} sets stochastic but its config {config_cls.__qualname__} "
                            f"has no `steps` (the default sampling steps)")
        _agree(cls, "loss_names", bool(cls.loss_names),
               _overrides(cls, Decoder, "forward_train"), "forward_train()")
        # a property (set from the config) declares that it may take text
        _agree(cls, "takes_text", cls.takes_text is not False,
               _takes(cls.forward_train, "text"), "forward_train(..., text)")
        if cls.tokens_only and (cls.stochastic or cls.loss_names):
            raise TypeError(f"{name} sets tokens_only: it cannot also sample or train losses")
