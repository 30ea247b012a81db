"""Training a codec whose decoder makes audio at another rate than its encoder reads
(NeuCodec: 16 kHz in, 24 kHz out; `Codec.output_sample_rate`).

The data loads at the codec's output rate: that audio is the target the decoder must
produce, and every loss, discriminator and logged clip sees audio at that rate. The encoder's
input is the same excerpt resampled down to `codec.sample_rate` on the batch's device, with
a fixed filter (audio.py `resample_tensor`). Neuphonic have not published NeuCodec's
training code; its card says it "takes in 16 kHz input and outputs 24 kHz using an
upsampling decoder", which is this: a high-rate target, its downsampled copy as input.

Excerpts are cut to whole frames (groups of `frame_multiple` frames) at both rates, 480
samples at 24 kHz for 320 at 16 kHz, so that the input resamples to a whole number of
samples and the reconstruction spans the whole target (an encoder that codes whole frames
only, NeuCodec's, would otherwise leave a tail of the target the output cannot reach).
A codec with one rate trains on the batch as loaded: input and target are one tensor.
"""

from __future__ import annotations

from torch import Tensor

from ..audio import resample_tensor
from ..codecs.base import Codec, fit_length
from ..errors import ConfigError


def segment_multiple(codec: Codec) -> int:
    """Samples at the output rate that training excerpts are cut to a multiple of: whole
    frames at both rates for a codec with two, else 1 (`forward` pads to frames itself)."""
    if codec.output_sample_rate == codec.sample_rate:
        return 1
    return codec.output_hop_length * codec.frame_multiple


def check_segments(codec: Codec, data) -> None:
    """ConfigError unless the recipe's excerpts (`data.segment_seconds`, and
    `val_segment_seconds`) hold at least one whole frame at the output rate (a codec with
    one rate pads them to frames itself)."""
    step = segment_multiple(codec)
    if step == 1:
        return
    rate = codec.output_sample_rate
    for key in ("segment_seconds", "val_segment_seconds"):
        seconds = getattr(data, key)
        if round(seconds * rate) < step:
            raise ConfigError(f"data.{key} = {seconds} is shorter than one frame of this "
                              f"codec ({step} samples at {rate} Hz, {step / rate} s)")


def split_batch(codec: Codec, wav: Tensor) -> tuple[Tensor, Tensor]:
    """wav [B, C, T] at `codec.output_sample_rate` -> (input [B, C, T_in] at
    `codec.sample_rate`, target [B, C, T']): T' is T cut to whole frames at both rates
    (`segment_multiple`), T_in = `codec.input_samples(T')`. For a codec with one rate both
    are `wav` itself."""
    step = segment_multiple(codec)
    if step == 1:
        return wav, wav
    whole = wav.shape[-1] // step * step
    if whole == 0:
        raise ConfigError(f"training excerpts of {wav.shape[-1]} samples at "
                          f"{codec.output_sample_rate} Hz are shorter than one frame "
                          f"({step} samples); raise data.segment_seconds")
    target = wav[..., :whole]
    resampled = resample_tensor(target, codec.output_sample_rate, codec.sample_rate)
    # the filter's output is ceil(T' * in / out) samples: exactly T_in for whole frames
    return fit_length(resampled, codec.input_samples(whole)).to(wav.dtype), target
