"""Streaming step forms of causal layers, with their state as explicit tensors.

codecs/streaming.py streams a causal codec in torch by keeping, per layer, Python-side buffers
of whatever length arrived. A graph that a C++ or browser client drives needs the opposite:
fixed-size state tensors in, the same tensors out. Each step layer here takes x (m new frames
at its input rate; m may change between calls) and its state list, and returns y and the new
state; a zero state is the start of a signal:

    Conv1d (causal, zero padding)  history: the last pad_left input samples [B, C_in, L]
    ConvTranspose1d (causal)       overlap: the last k - s outputs still to be summed with
                                   the next call's, bias not yet added [B, C_out, k - s]
    SLSTM (unidirectional)         h, c [layers, B, C]
    CausalTransformer              keys, values of the last context - 1 frames per layer
                                   [B, H, context - 1, head_dim], and position int64 []
                                   (frames seen; earlier key slots are masked out)
    residual blocks, activations   their parts' states / nothing

Why zeros are the start of a signal: the offline layers pad with zeros on the left (causal,
constant padding), and a zero history is that padding; a transposed conv's first frames
overlap nothing; an LSTM's state starts at zero; the transformer masks key slots before
position 0. Convolutions with replicate or reflect padding (Mimi's downsampling, EnCodec's
layout) read the signal's first samples (reflect: the ones after the first) instead of a
history: they carry `started` and take their padding from the first call's input, which
must therefore hold `first_frames` frames (torch's streaming holds those frames back; an
ONNX client waits for them, or decodes a shorter signal with the offline graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..codecs.seanet import SEANetResBlock
from ..codecs.streaming import (
    STATELESS,
    DecodeStage,
    EncodeStage,
    PointwiseStage,
    RecurrentStage,
    TransformerStage,
)
from ..errors import AudiotokError
from ..modules.conv import Conv1d, ConvTranspose1d
from ..modules.lstm import SLSTM
from ..modules.transformer import (
    CausalTransformer,
    apply_rope,
    publisher_rope_freqs,
    rope_tables,
)


@dataclass(frozen=True)
class StateSpec:
    """One state tensor: `shape` names the batch axis "B"; zeros start a signal."""

    name: str
    shape: tuple
    dtype: str = "float32"

    def zeros(self, batch: int) -> Tensor:
        shape = [batch if d == "B" else d for d in self.shape]
        return torch.zeros(shape, dtype=getattr(torch, self.dtype))


class StepLayer(nn.Module):
    """forward(x, states) -> (y, new states), states as listed in `states`."""

    states: list[StateSpec]

    def first_frames(self, rate: Fraction) -> tuple[int, Fraction]:
        """(frames the first call must hold, samples per frame after this layer), for an
        input of `rate` samples per codec frame."""
        return 1, rate


class ConvStep(StepLayer):
    """A causal Conv1d: x [B, C, m * stride] -> [B, C_out, m].

    Zero padding is a zero history. Replicate padding (Mimi's downsampling conv) repeats the
    signal's first sample and reflect padding (EnCodec) mirrors the samples after it: the
    layer then also carries `started` (int64 [], 0 until its first call), and its first call
    takes its padding from its input instead of the state. Whole frames in, so EnCodec's
    per-layer right padding (`extra_padding`) adds nothing here."""

    def __init__(self, conv: Conv1d):
        super().__init__()
        if conv.pad_right:
            raise AudiotokError("a non-causal convolution (it reads samples ahead)")
        if conv.pad_mode not in ("constant", "replicate", "reflect"):
            raise AudiotokError(f"a convolution with {conv.pad_mode} padding")
        if not isinstance(conv.norm, nn.Identity):
            raise AudiotokError("a convolution with a norm over the whole signal")
        self.conv, self.context, self.stride = conv.conv, conv.pad_left, conv.stride
        self.mode = conv.pad_mode if self.context else "constant"
        self.states = [StateSpec("history", ("B", self.conv.in_channels, self.context))] \
            if self.context else []
        if self.mode != "constant":
            self.states.append(StateSpec("started", (), "int64"))

    def first_frames(self, rate: Fraction) -> tuple[int, Fraction]:
        # reflect padding reads `context` samples after the first one
        need = math.ceil((self.context + 1) / rate) if self.mode == "reflect" else 1
        return need, rate / self.stride

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        new = []
        if self.context:
            history = states[0]
            if self.mode != "constant":
                # (zero-extended: the graph computes this on later calls too, then unused)
                first = x[..., :1].expand(-1, -1, self.context) if self.mode == "replicate" \
                    else F.pad(x, (0, self.context))[..., 1:self.context + 1].flip(-1)
                history = torch.where(states[1] > 0, history, first)
            x = torch.cat([history, x], -1)
            new = [x[..., -self.context:]]
            if self.mode != "constant":
                new.append(torch.ones_like(states[1]))
        c = self.conv
        return F.conv1d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups), new


class TransposedConvStep(StepLayer):
    """A causal ConvTranspose1d: x [B, C, m] -> [B, C_out, m * stride]."""

    def __init__(self, layer: ConvTranspose1d):
        super().__init__()
        overlap = layer.kernel_size - layer.stride
        if layer.trim_left or layer.trim_right != overlap:
            raise AudiotokError("a non-causal transposed convolution")
        if not isinstance(layer.norm, nn.Identity):
            raise AudiotokError("a transposed convolution with a norm over the whole signal")
        self.convtr, self.overlap, self.stride = layer.convtr, overlap, layer.stride
        self.states = [StateSpec("overlap", ("B", self.convtr.out_channels, overlap))] \
            if overlap else []

    def first_frames(self, rate: Fraction) -> tuple[int, Fraction]:
        return 1, rate * self.stride

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        c = self.convtr
        y = F.conv_transpose1d(x, c.weight, None, c.stride, 0, 0, c.groups)
        new = []
        if self.overlap:
            y = torch.cat([y[..., :self.overlap] + states[0], y[..., self.overlap:]], -1)
            y, new = y[..., :-self.overlap], [y[..., -self.overlap:]]
        if c.bias is not None:
            y = y + c.bias[:, None]
        return y, new


class SequenceStep(StepLayer):
    """Step layers applied in order; their states concatenated, each named by its index."""

    def __init__(self, layers: list[StepLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.states = [StateSpec(f"{i}.{s.name}", s.shape, s.dtype)
                       for i, layer in enumerate(layers) for s in layer.states]

    def first_frames(self, rate: Fraction) -> tuple[int, Fraction]:
        most = 1
        for layer in self.layers:
            need, rate = layer.first_frames(rate)
            most = max(most, need)
        return most, rate

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        new, at = [], 0
        for layer in self.layers:
            n = len(layer.states)
            x, s = layer(x, states[at:at + n])
            new += s
            at += n
        return x, new


class PointwiseStep(StepLayer):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn, self.states = fn, []

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        return self.fn(x), []


class ResidualStep(StepLayer):
    """SEANet's residual block: shortcut(x) + block(x), both streamed."""

    def __init__(self, block: SEANetResBlock):
        super().__init__()
        self.parts = SequenceStep([step_layer(block.shortcut),
                                   SequenceStep([step_layer(m) for m in block.block])])
        self.states = self.parts.states

    def first_frames(self, rate: Fraction) -> tuple[int, Fraction]:
        return max(layer.first_frames(rate)[0] for layer in self.parts.layers), rate

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        shortcut, block = self.parts.layers
        n = len(shortcut.states)
        a, sa = shortcut(x, states[:n])
        b, sb = block(x, states[n:])
        return a + b, sa + sb


class LSTMStep(StepLayer):
    """A unidirectional SLSTM carrying (h, c)."""

    def __init__(self, slstm: SLSTM):
        super().__init__()
        if slstm.bidirectional:
            raise AudiotokError("a bidirectional LSTM (it reads the future)")
        self.slstm = slstm
        lstm = slstm.lstm
        shape = (lstm.num_layers, "B", lstm.hidden_size)
        self.states = [StateSpec("h", shape), StateSpec("c", shape)]

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        seq = x.permute(2, 0, 1)  # [n, B, C]
        y, (h, c) = self.slstm.lstm(seq, (states[0], states[1]))
        if self.slstm.skip:
            y = y + seq
        return y.permute(1, 2, 0), [h, c]


class TransformerStep(StepLayer):
    """CausalTransformer.step with fixed-size key/value caches: x [B, D, n] -> [B, D, n]."""

    def __init__(self, transformer: CausalTransformer):
        super().__init__()
        cfg = transformer.cfg
        if not cfg.causal:
            raise AudiotokError("a non-causal transformer")
        if cfg.context < 2:
            raise AudiotokError("a transformer whose frames see only themselves (context 1)")
        self.transformer, self.cfg, self.window = transformer, cfg, cfg.context - 1
        heads, head_dim = cfg.heads, cfg.dim // cfg.heads
        cache = ("B", heads, self.window, head_dim)
        self.states = [StateSpec(f"{i}.{kind}", cache) for i in range(cfg.layers)
                       for kind in ("keys", "values")]
        self.states.append(StateSpec("position", (), "int64"))
        if cfg.rope and cfg.rope_style != "audiotok":
            self.register_buffer("freqs", publisher_rope_freqs(
                cfg.rope_style, head_dim, cfg.max_period, None), persistent=False)

    def forward(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        position = states[-1]
        h = x.transpose(1, 2)
        n, w = h.shape[1], self.window
        query = torch.arange(n, device=x.device)[:, None]
        slot = torch.arange(w + n, device=x.device)[None, :]
        # query i is slot w + i; it sees slots i..w + i that hold frames at positions >= 0
        mask = (slot >= query) & (slot <= query + w) & (slot + position >= w)
        rope = self._rope(w + n, position, x) if self.cfg.rope else None
        new = []
        for i, layer in enumerate(self.transformer.layers):
            h, keys, values = self._layer(layer, h, states[2 * i], states[2 * i + 1], mask, rope)
            new += [keys, values]
        return h.transpose(1, 2), new + [position + n]

    def _rope(self, length, position: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        if cfg.rope_style == "audiotok":  # relative positions: only differences matter
            return rope_tables(length, cfg.dim // cfg.heads, cfg.max_period, x.device, x.dtype)
        # publisher styles: float32 angles of absolute positions, as publisher_rope_tables
        frames = (position - self.window + torch.arange(length, device=x.device)).float()
        angles = frames[:, None] * self.freqs
        return angles.cos().to(x.dtype), angles.sin().to(x.dtype)

    def _layer(self, layer, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor,
               rope) -> tuple[Tensor, Tensor, Tensor]:
        attn = layer.attn
        b, n, _ = x.shape
        q, k, v = attn.qkv(layer.norm1(x)).view(b, n, 3, attn.heads, attn.head_dim) \
            .permute(2, 0, 3, 1, 4)
        k, v = torch.cat([keys, k], -2), torch.cat([values, v], -2)
        if rope is not None:
            cos, sin = rope
            q, k_rot = apply_rope(q, cos[-n:], sin[-n:]), apply_rope(k, cos, sin)
        else:
            k_rot = k
        y = F.scaled_dot_product_attention(q, k_rot, v, attn_mask=mask)
        x = x + layer.scale1(attn.out(y.transpose(1, 2).reshape(b, n, -1)))
        x = x + layer.scale2(layer.mlp(layer.norm2(x)))
        return x, k[..., -self.window:, :], v[..., -self.window:, :]


_STEPS = {Conv1d: ConvStep, ConvTranspose1d: TransposedConvStep, SEANetResBlock: ResidualStep,
          SLSTM: LSTMStep, CausalTransformer: TransformerStep}


def step_layer(module: nn.Module) -> StepLayer:
    """The step form of one layer; AudiotokError naming what cannot stream."""
    if isinstance(module, STATELESS):
        return PointwiseStep(module)
    for kind, build in _STEPS.items():
        if isinstance(module, kind):
            return build(module)
    raise AudiotokError(f"no streaming step form for {type(module).__name__}")


def stage_module(stage) -> nn.Module:
    """The layer a codecs/streaming.py stage streams."""
    if isinstance(stage, (EncodeStage, DecodeStage, PointwiseStage)):
        return stage.fn
    if isinstance(stage, RecurrentStage):
        return stage.lstm
    if isinstance(stage, TransformerStage):
        return stage.transformer
    raise AudiotokError(f"unknown streaming stage {type(stage).__name__}")
