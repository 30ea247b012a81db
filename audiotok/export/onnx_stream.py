"""Driving the streaming step graphs from Python: the reference client of their contract
(export/onnx.py), and what `OnnxCodec.stream()` and long inputs use.

    stream = load_codec("mimi_onnx/").stream()   # a folder exported with --streaming
    for chunk in chunks:                         # wav [B, C, n], any n >= 0
        codes = stream.encode(chunk)             # long [B, K, m]: the frames now complete
    codes = stream.flush()                       # the zero-padded last frame
    wav = stream.decode(codes)                   # [B, C, m * output_hop]

A C++ or browser client does what `StepRunner` does: zero state tensors of the shapes in
onnx.json, then each call feeds the previous call's `next.*` outputs back as `state.*`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class StepRunner:
    """One step graph with its state: `run(name, x)` feeds x as input `name` (whole frames)
    with the current state, keeps the new state and returns the graph's first output."""

    def __init__(self, session, spec: dict, batch: int):
        self.session, self.spec, self.batch = session, spec, batch
        self.reset()

    def reset(self) -> None:
        self.state = {s["input"]: np.zeros([self.batch if d == "B" else d for d in s["shape"]],
                                           dtype=s["dtype"]) for s in self.spec["state"]}

    def run(self, name: str, x: np.ndarray) -> np.ndarray:
        outputs = [o.name for o in self.session.get_outputs()]
        results = self.session.run(outputs, {name: x, **self.state})
        by_name = dict(zip(outputs, results))
        self.state = {s["input"]: by_name[s["output"]] for s in self.spec["state"]}
        return results[0]


class OnnxStream:
    """Causal streaming through an exported folder's step graphs; the interface of
    codecs/streaming.py's StreamingCodec. One stream (a batch advancing together) at a time."""

    def __init__(self, codec, n_codebooks: int | None = None):
        if codec.manifest["streaming"] is None:
            raise ValueError(f"{codec.ref}: exported without streaming graphs (audiotok "
                             f"export --streaming writes them)")
        self.codec = codec
        self.n_codebooks = codec.quantizer.check_n_codebooks(n_codebooks)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next encode/decode starts a new signal."""
        self._encoder: StepRunner | None = None
        self._decoder: StepRunner | None = None
        self._pending: np.ndarray | None = None  # samples short of a whole frame

    def encode(self, wav: Tensor) -> Tensor:
        """wav [B, C, n], n >= 0 -> codes long [B, K, m]: the m frames completed by this call."""
        self.codec.check_wav(wav, allow_empty=True)
        x = wav.detach().cpu().float().numpy()
        if self._pending is not None:
            if self._pending.shape[0] != x.shape[0]:
                raise ValueError(f"batch size changed mid-stream ({self._pending.shape[0]} -> "
                                 f"{x.shape[0]}); call reset() to start a new stream")
            x = np.concatenate([self._pending, x], -1)
        hop = self.codec.hop_length
        whole = x.shape[-1] // hop * hop
        self._pending = x[..., whole:]
        if whole == 0:
            return torch.zeros(x.shape[0], self.n_codebooks, 0, dtype=torch.long)
        if self._encoder is None:
            self._encoder = StepRunner(self.codec.sessions["encoder_step"],
                                       self.codec.manifest["streaming"]["encoder"], x.shape[0])
        elif self._encoder.batch != x.shape[0]:
            raise ValueError(f"batch size changed mid-stream ({self._encoder.batch} -> "
                             f"{x.shape[0]}); call reset() to start a new stream")
        codes = self._encoder.run("wav", np.ascontiguousarray(x[..., :whole]))
        return torch.from_numpy(codes[:, : self.n_codebooks]).long()

    def flush(self) -> Tensor:
        """End the signal: zero-pad the last partial frame like `encode` of the whole and
        return its code (long [B, K, 0 or 1]); the encoder side then starts a new signal."""
        pending, self._pending = self._pending, None
        codes = torch.zeros(0 if pending is None else pending.shape[0], self.n_codebooks, 0,
                            dtype=torch.long)
        if pending is not None and pending.shape[-1]:
            pad = self.codec.hop_length - pending.shape[-1]
            codes = self.encode(torch.from_numpy(np.pad(pending, ((0, 0), (0, 0), (0, pad)))))
        self._encoder, self._pending = None, None
        return codes

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, m] (k allowed by the codec) -> wav [B, C, m * output_hop], equal
        to the same span of decoding the whole."""
        x = self.codec.padded_codes(codes)
        if x.shape[-1] == 0:
            return torch.zeros(x.shape[0], self.codec.channels, 0)
        if self._decoder is None:
            self._decoder = StepRunner(self.codec.sessions["decoder_step"],
                                       self.codec.manifest["streaming"]["decoder"], x.shape[0])
        elif self._decoder.batch != x.shape[0]:
            raise ValueError(f"batch size changed mid-stream ({self._decoder.batch} -> "
                             f"{x.shape[0]}); call reset() to start a new stream")
        return torch.from_numpy(self._decoder.run("codes", x))

    def end_decode(self) -> Tensor:
        """End the decoded signal (the step graphs hold nothing back: an empty wav); the
        decoder side then starts a new signal."""
        batch = 0 if self._decoder is None else self._decoder.batch
        self._decoder = None
        return torch.zeros(batch, self.codec.channels, 0)
