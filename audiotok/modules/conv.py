"""Convolutions that pad themselves (causal or centred) and report their reach.

Codecs pad their input to a multiple of the hop length, so every strided conv here maps
L samples to exactly L / stride frames and every transposed conv maps L frames to L * stride
samples; this makes frame t own input samples [t * hop, (t + 1) * hop) at every depth, which
is what exact chunked encoding relies on (see codecs/chunking.py).

Reach: a layer whose output j is computed from inputs [j*s - left, j*s + right] has reach
(left, right, s). `chain_reach` composes reaches through a stack (EnCodec's SConv1d pads the
same way; the arithmetic is ours).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

Reach = tuple[int, int, int]  # (left, right, stride) in input units


def chain_reach(reaches) -> Reach:
    """Compose (left, right, stride) of layers applied in order."""
    left = right = 0
    scale = 1
    for a, b, s in reaches:
        left += a * scale
        right += b * scale
        scale *= s
    return left, right, scale


def module_reach(modules, steady: bool = False) -> Reach:
    """Chain the reach of every child that has one (activations have none). `steady`: the
    reach away from the signal's start, where reflect padding reads no samples ahead (for
    streaming, which holds back only the first frames for it)."""
    return chain_reach((m.reach(steady=True) if steady and _knows_steady(m) else m.reach())
                       for m in modules if hasattr(m, "reach"))


def _knows_steady(m: nn.Module) -> bool:
    import inspect

    return "steady" in inspect.signature(m.reach).parameters


def pad1d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """F.pad of the last axis that also reflects inputs shorter than the pad (zero-extends
    them first). x [B, C, L] or [B, C, 1, L]."""
    rest = (0, 0) * (x.dim() - 3)
    if mode != "reflect":
        return F.pad(x, (left, right, *rest), mode=mode)
    if torch.jit.is_tracing():
        return _reflect_by_index(x, left, right)
    length = x.shape[-1]
    extra = max(left, right) - length + 1
    if extra > 0:
        x = F.pad(x, (0, extra, *rest))
        return F.pad(x, (left, right, *rest), mode="reflect")[..., : length + left + right]
    return F.pad(x, (left, right, *rest), mode="reflect")


# Inference fast path (autograd off, float32 on CPU). Weight norm would be recomputed from
# g and v on every call (descript-audio-codec and EnCodec do so); here each layer folds it
# once into a plain weight, kept until one of its parameters changes (data pointer and
# version counter, as Codec.fingerprint) or the layer goes back to training. A transposed
# conv also keeps that weight reordered for oneDNN, which otherwise reorders it on every call
# (75 MB for DAC's first decoder layer); its deconvolution reads channels-last input anyway,
# so the same kernel runs and the result is the plain path's bit for bit.
#
# Layers with `exact` off (a codec's decoder) also run regular convs on channels-last memory:
# activations travel between layers as [B, C, L] views with strides (C*L, 1, C), which
# elementwise layers keep and oneDNN reads and writes without reordering them into its
# blocked layout and back, and its channels-last kernels are faster on narrow layers (measured
# on a 2-core AVX-512 CPU: DAC's 64-channel k=7 conv over 80k samples 88 -> 52 ms). They sum
# in another order, so results differ from the plain path's in the last bits (decoded audio
# by ~5e-7), which would flip near-tied codes (one code in EnCodec's parity test): encoders
# keep `exact` so published codecs give their publishers' codes. Training (autograd on)
# takes the plain path unchanged.
def fast_path(x: Tensor) -> bool:
    # not while tracing: ONNX export (audiotok/export) records the plain layers
    return (not torch.is_grad_enabled() and not torch.jit.is_tracing() and x.device.type == "cpu"
            and x.dtype == torch.float32 and torch.backends.mkldnn.is_available())


class FoldedWeight:
    """A conv's weight with weight norm applied, computed once and reused until one of the
    layer's weight parameters changes. `form` names what `prepare` makes of it (another
    layout), so a layer asked for another form computes that one."""

    def __init__(self):
        self.key: tuple | None = None
        self.weight: Tensor | None = None

    def get(self, layer: nn.Module, form: str = "plain", prepare=None) -> Tensor:
        params = [p for name, p in layer.named_parameters() if name != "bias"]
        try:
            key = (form, *((p.data_ptr(), p._version) for p in params))
        except RuntimeError:  # parameters made under inference_mode have no version counter
            key = None
        if key is None or key != self.key:
            weight = layer.weight.detach()
            weight = prepare(weight) if prepare is not None else weight
            if key is None:
                return weight
            self.key, self.weight = key, weight
        return self.weight

    def clear(self) -> None:
        self.key = self.weight = None


def allow_reordered_sums(module: nn.Module) -> None:
    """Let every conv in `module` use the channels-last kernels at inference (`exact` off):
    for layers whose rounding decides no codes, such as a decoder's."""
    for m in module.modules():
        if isinstance(m, (Conv1d, ConvTranspose1d)):
            m.exact = False


def channels_last_2d(x: Tensor) -> Tensor:
    """x [B, C, L] -> [B, C, 1, L] in channels-last memory (a view when it already is)."""
    x = x.unsqueeze(2)
    return x if x.is_contiguous(memory_format=torch.channels_last) else \
        x.contiguous(memory_format=torch.channels_last)


def _transpose_conv_fast(x: Tensor, layer: nn.ConvTranspose1d, folded: FoldedWeight,
                         exact: bool) -> Tensor:
    """layer(x) through oneDNN with the prepacked weight: x [B, C_in, L] -> [B, C_out, L']."""
    mkldnn = torch.ops.mkldnn
    args = ([0, layer.padding[0]], [0, layer.output_padding[0]], [1, layer.stride[0]],
            [1, layer.dilation[0]], layer.groups)
    x4 = channels_last_2d(x)

    def pack(w: Tensor) -> Tensor:
        return mkldnn._reorder_convolution_transpose_weight(w.unsqueeze(2), *args,
                                                            list(x4.shape))
    weight = folded.get(layer, "mkldnn", pack)
    y = mkldnn._convolution_transpose_pointwise(x4, weight, layer.bias, *args, "none", [], "")
    y = y.squeeze(2)
    return y.contiguous() if exact else y  # an exact conv next reads PyTorch's layout


def _reflect_by_index(x: Tensor, left: int, right) -> Tensor:
    """`pad1d`'s reflect padding as a gather, for ONNX export: the branch on the input's length
    above would be fixed by the trace (and ONNX's reflect Pad refuses inputs shorter than the
    pad), while these indices follow the traced length (and a traced `right`, EnCodec's
    per-layer padding). Same values for any length: the input is taken as zero-extended to
    max(left, right) + 1 samples when shorter, as above."""
    length = torch.as_tensor(x.shape[-1])  # a traced size: the arithmetic stays in the graph
    n = torch.maximum(length, torch.clamp(torch.as_tensor(right), min=left) + 1)
    index = (torch.arange(length + left + right, device=x.device) - left).abs()
    index = torch.where(index >= n, 2 * (n - 1) - index, index)
    picked = x.index_select(-1, torch.minimum(index, length - 1))
    return torch.where(index < length, picked, torch.zeros_like(picked))


def _zero_bias(layer: nn.Module) -> None:
    # PyTorch's default bias init gives every output channel a random offset; through a deep
    # stack whose activations shrink at init, that offset dominates the latents (measured on
    # tiny SEANet: spread 0.002 against an offset of norm 0.3), so every frame lands on the
    # same codeword. DAC zero-initialises conv biases for the same reason.
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _output_norm(channels: int, norm: str) -> nn.Module:
    """EnCodec's "time_group_norm" (its 48 kHz model): GroupNorm with one group over the
    channels and the whole time axis, after the convolution; identity for other norms."""
    return nn.GroupNorm(1, channels) if norm == "time_group_norm" else nn.Identity()


def _normed(layer: nn.Module, norm: str) -> nn.Module:
    if norm == "time_group_norm":
        return layer  # the norm is a layer of its own (_output_norm)
    if norm == "weight_norm":
        return weight_norm(layer)
    if norm == "none":
        return layer
    raise ValueError(f"unknown norm '{norm}' (choose weight_norm, none or time_group_norm)")


class Conv1d(nn.Module):
    """Conv1d with built-in causal or centred padding: L -> L / stride outputs.

    x [B, C_in, L] -> [B, C_out, L // stride]; L must be a multiple of stride.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True, causal: bool = False,
                 pad_mode: str = "zeros", norm: str = "weight_norm",
                 extra_padding: bool = False):
        super().__init__()
        conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride, dilation=dilation, groups=groups,
                         bias=bias)
        _zero_bias(conv)
        self.conv = _normed(conv, norm)
        self.norm = _output_norm(out_ch, norm)
        total = (kernel_size - 1) * dilation + 1 - stride
        if total < 0:
            raise ValueError(f"kernel {kernel_size} is smaller than stride {stride}")
        self.pad_left = total if causal else total - total // 2
        self.pad_right = total - self.pad_left
        self.stride = stride
        self.span = (kernel_size - 1) * dilation
        self.pad_mode = "constant" if pad_mode == "zeros" else pad_mode
        # Symmetric zero padding is done by the convolution itself (oneDNN pads on the fly),
        # saving a padded copy of the input per layer; same result, ~9% of DAC's encode time.
        # EnCodec's SConv1d: any input length, padded on the right (in pad_mode) up to the
        # next whole output frame, so L -> ceil(L / stride) (Defossez et al.'s
        # get_extra_padding_for_conv1d; on for EnCodec's checkpoints, which never pad the
        # input to whole frames first)
        self.extra_padding = extra_padding
        self.kernel_span = self.span + 1
        self.builtin_pad = (self.pad_mode == "constant" and self.pad_left == self.pad_right
                            and not extra_padding)
        if self.builtin_pad:
            conv.padding = (self.pad_left,)
        self.folded = FoldedWeight()
        # False: inference may use oneDNN's channels-last kernels (see fast_path), for layers
        # whose rounding decides no codes (Codec marks its decoder so)
        self.exact = True

    def train(self, mode: bool = True):
        if mode:  # training recomputes the weight on every call: drop the inference copy
            self.folded.clear()
        return super().train(mode)

    def reach(self, steady: bool = False) -> Reach:
        """(left, right, stride); `steady`: away from the start of the signal (see below)."""
        right = self.span - self.pad_left
        if self.pad_mode == "reflect" and not steady:
            # at the start of a signal the left pad mirrors samples up to pad_left ahead
            right = max(right, self.pad_left)
        return self.pad_left, right, self.stride

    def _right_pad(self, x: Tensor):
        right = self.pad_right
        if self.extra_padding:
            total = self.pad_left + self.pad_right
            if torch.jit.is_tracing():  # ONNX export: the same in integer graph arithmetic
                length = torch.as_tensor(x.shape[-1])
                # ceil((L - span + total) / stride), with a numerator kept >= 0: ONNX's
                # integer division truncates where torch's floors
                frames = (length - self.kernel_span + total + self.stride - 1) // self.stride
                right = right + frames * self.stride + self.kernel_span - total - length
            else:
                frames = (x.shape[-1] - self.kernel_span + total) / self.stride + 1
                ideal = (math.ceil(frames) - 1) * self.stride + (self.kernel_span - total)
                right += ideal - x.shape[-1]
        return right

    def forward(self, x: Tensor) -> Tensor:
        if fast_path(x):
            return self._infer(x)
        if self.builtin_pad:
            return self.norm(self.conv(x))
        right = self._right_pad(x)
        return self.norm(self.conv(pad1d(x, self.pad_left, right, self.pad_mode)))

    def _infer(self, x: Tensor) -> Tensor:
        conv = self.conv
        right = self._right_pad(x)
        if self.exact:
            if not self.builtin_pad:
                x = pad1d(x, self.pad_left, right, self.pad_mode)
            return self.norm(conv._conv_forward(x, self.folded.get(conv), conv.bias))
        x4 = channels_last_2d(x)
        if not self.builtin_pad:
            x4 = pad1d(x4, self.pad_left, right, self.pad_mode)
        weight = self.folded.get(conv, "channels_last", channels_last_2d)
        y = F.conv2d(x4, weight, conv.bias, (1, self.stride), (0, conv.padding[0]),
                     (1, conv.dilation[0]), conv.groups)
        return self.norm(y.squeeze(2))


class ConvTranspose1d(nn.Module):
    """Transposed conv that trims its overlap: x [B, C_in, L] -> [B, C_out, L * stride]."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int,
                 causal: bool = False, norm: str = "weight_norm", trim: int | None = None,
                 groups: int = 1, bias: bool = True, output_padding: int = 0):
        super().__init__()
        convtr = nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride, groups=groups, bias=bias)
        _zero_bias(convtr)
        self.convtr = _normed(convtr, norm)
        # EnCodec normalises the untrimmed output, so the trim cannot be the layer's padding
        self.norm = _output_norm(out_ch, norm)
        total = kernel_size - stride
        if total < 0:
            raise ValueError(f"kernel {kernel_size} is smaller than stride {stride}")
        # causal: trim the overlap on the right so no output depends on later frames
        self.trim_right = total if causal else total // 2
        self.trim_left = total - self.trim_right
        if trim is not None:
            # a publisher's nn.ConvTranspose1d(padding=trim): `trim` off both ends, so the
            # output is L * stride + total - 2 * trim long (descript-audio-codec's odd
            # strides come out one sample short); kept for bit-exact releases
            self.trim_left = self.trim_right = trim
        if output_padding:
            # nn.ConvTranspose1d(padding=trim, output_padding=p) keeps p of the right trim
            # (SNAC pads odd strides so: L * stride outputs exactly); the layer computes them
            if trim is None or not 0 < output_padding < stride:
                raise ValueError("output_padding needs a trim and 0 < output_padding < stride")
            convtr.padding, convtr.output_padding = (trim,), (output_padding,)
            self.trim_right = trim - output_padding
        # equal trims are the layer's own padding: no full-size output to slice and copy
        self.builtin_trim = (self.trim_left == self.trim_right or bool(output_padding)) \
            and norm != "time_group_norm"
        if self.builtin_trim and not output_padding:
            convtr.padding = (self.trim_left,)
        self.stride = stride
        self.kernel_size = kernel_size
        self.folded = FoldedWeight()
        self.exact = True  # as Conv1d.exact

    def train(self, mode: bool = True):
        if mode:
            self.folded.clear()
        return super().train(mode)

    def frame_reach(self) -> tuple[int, int]:
        """Input frames on each side of frame t that can touch frame t's output samples (exact).

        Input i writes untrimmed outputs [i*s, i*s + k - 1], i.e. trimmed outputs shifted by
        -trim_left; output frame t is [t*s, t*s + s - 1]. They overlap iff
        t - (k-1-trim_left)/s <= i <= t + (s-1+trim_left)/s. A causal layer (trim_left 0)
        therefore has right reach 0.
        """
        s, k = self.stride, self.kernel_size
        return (k - 1 - self.trim_left) // s, (s - 1 + self.trim_left) // s

    def forward(self, x: Tensor) -> Tensor:
        if fast_path(x):
            y = self.norm(_transpose_conv_fast(x, self.convtr, self.folded, self.exact))
        else:
            y = self.norm(self.convtr(x))
        if self.builtin_trim:
            return y
        return y[..., self.trim_left: y.shape[-1] - self.trim_right]


@torch.no_grad()
def fan_in_init(module: nn.Module) -> None:
    """Redraw every conv weight in `module` from N(0, 1/fan_in) (gain 1; PyTorch's default
    draws std 1/sqrt(3 fan_in)). Deep SEANet+LSTM encoders otherwise shrink speech to latents
    of spread ~3e-4 at init, below Adam's first bias steps, and a single-codebook VQ then
    sends every frame to a handful of codes (measured on wavtokenizer_tiny: level perplexity
    3-4 after 100 steps with the default, 20-44 with this). Works through weight norm: the
    assignment goes through its right inverse."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            shape = m.weight.shape
            fan_in = (shape[1] if isinstance(m, nn.Conv1d) else shape[0]) * shape[2]
            weight = torch.randn(shape, device=m.weight.device) / math.sqrt(fan_in)
            if hasattr(m, "parametrizations"):  # weight norm: set g and v from the weight
                m.weight = weight
            else:
                m.weight.copy_(weight)


def decoder_frame_reach(layers) -> tuple[int, int]:
    """Frames on each side of frame t that can change frame t's samples.

    `layers`: an upsampling stack in order; each item is a ConvTranspose1d, a module with
    `reach()`, an explicit (left, right, stride) tuple, or anything else (no reach:
    activations). Walks the stack backwards from the output samples of frame 0, widening the
    interval of positions they depend on at every layer, so the result is exact given the
    layers' own reaches (summing per-layer frame bounds would overcount by up to a frame per
    layer). No safety margin: a causal stack reports right == 0 (streaming relies on it) and
    codecs/chunking.py adds its own margin.
    """
    return _frame_reach(layers, False)


def steady_decoder_frame_reach(layers) -> tuple[int, int]:
    """decoder_frame_reach away from the signal's start (reflect padding reads no later
    frames there; streaming holds back only the first samples for it)."""
    return _frame_reach(layers, True)


def _frame_reach(layers, steady: bool) -> tuple[int, int]:
    items = [m for m in layers
             if isinstance(m, (tuple, ConvTranspose1d)) or hasattr(m, "reach")]
    lo, hi = 0, 0  # frame 0's positions at the current depth, from the output backwards
    hi = math.prod(m.stride for m in items if isinstance(m, ConvTranspose1d)) - 1
    for m in reversed(items):
        if isinstance(m, ConvTranspose1d):
            # output p reads inputs i with p + trim_left - (k - 1) <= i * s <= p + trim_left
            lo = -((m.kernel_size - 1 - m.trim_left - lo) // m.stride)
            hi = (hi + m.trim_left) // m.stride
        else:
            if isinstance(m, tuple):
                a, b, s = m
            else:
                a, b, s = m.reach(steady=True) if steady and _knows_steady(m) else m.reach()
            lo, hi = lo * s - a, hi * s + b
    return -lo, hi
