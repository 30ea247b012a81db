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
        self.first_frames = int(spec.get("first_frames", 1))
        self.reset()

    def reset(self) -> None:
        self.state = {s["input"]: np.zeros([self.batch if d == "B" else d for d in s["shape"]],
                                           dtype=s["dtype"]) for s in self.spec["state"]}
        self.started = False

    def run(self, name: str, x: np.ndarray) -> np.ndarray:
        outputs = [o.name for o in self.session.get_outputs()]
        results = self.session.run(outputs, {name: x, **self.state})
        by_name = dict(zip(outputs, results))
        self.state = {s["input"]: by_name[s["output"]] for s in self.spec["state"]}
        self.started = True
        return results[0]


class OnnxStream:
    """Causal streaming through an exported folder's step graphs; the interface of
    codecs/streaming.py's StreamingCodec. One stream (a batch advancing together) at a time.

    Input is held until whole frames (and, at the start of a signal, the step graph's
    `first_frames`) have arrived; a signal that ends sooner goes through the offline graphs
    at `flush()` / `end_decode()`, as torch's streaming computes it on the short signal."""

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
        self._samples: np.ndarray | None = None  # audio not yet encoded
        self._codes: np.ndarray | None = None    # codes held for the decoder's first call

    def encode(self, wav: Tensor) -> Tensor:
        """wav [B, C, n], n >= 0 -> codes long [B, K, m]: the m frames completed by this call."""
        self.codec.check_wav(wav, allow_empty=True)
        x = _append(self._samples, wav.detach().cpu().float().numpy())
        hop = self.codec.hop_length
        runner = self._runner("encoder", x.shape[0])
        whole = x.shape[-1] // hop * hop
        if runner.started or whole >= runner.first_frames * hop:
            self._samples = x[..., whole:]
            codes = runner.run("wav", np.ascontiguousarray(x[..., :whole])) if whole else None
        else:
            self._samples, codes = x, None
        if codes is None:
            return torch.zeros(x.shape[0], self.n_codebooks, 0, dtype=torch.long)
        return torch.from_numpy(codes[:, : self.n_codebooks]).long()

    def flush(self) -> Tensor:
        """End the signal: zero-pad the last partial frame like `encode` of the whole and
        return the codes still held (long [B, K, m]); the encoder side then starts a new
        signal."""
        x, runner = self._samples, self._encoder
        self._samples, self._encoder = None, None
        if x is None or x.shape[-1] == 0:
            return torch.zeros(0 if x is None else x.shape[0], self.n_codebooks, 0,
                               dtype=torch.long)
        x = np.pad(x, ((0, 0), (0, 0), (0, -x.shape[-1] % self.codec.hop_length)))
        if runner is not None and runner.started:
            codes = runner.run("wav", x)
        else:  # shorter than the first call needs: the offline graph, as a whole signal
            codes = self.codec.sessions["encoder"].run(None, {"wav": x})[0]
        return torch.from_numpy(codes[:, : self.n_codebooks]).long()

    def decode(self, codes: Tensor) -> Tensor:
        """codes long [B, k, m] (k allowed by the codec) -> wav [B, C, m' * output_hop]: the
        samples of these frames, equal to the same span of decoding the whole; at the start
        of a signal held back until `first_frames` frames have arrived (then caught up)."""
        x = _append(self._codes, self.codec.padded_codes(codes))
        runner = self._runner("decoder", x.shape[0])
        if not runner.started and x.shape[-1] < runner.first_frames:
            self._codes = x
            return torch.zeros(x.shape[0], self.codec.channels, 0)
        self._codes = None
        if x.shape[-1] == 0:
            return torch.zeros(x.shape[0], self.codec.channels, 0)
        return torch.from_numpy(runner.run("codes", x))

    def end_decode(self) -> Tensor:
        """End the decoded signal: the samples of frames still held back (a signal shorter
        than the step graph's first call, decoded offline), usually none; the decoder side
        then starts a new signal."""
        x, runner = self._codes, self._decoder
        self._codes, self._decoder = None, None
        if x is not None and x.shape[-1]:
            return torch.from_numpy(self.codec.sessions["decoder"].run(None, {"codes": x})[0])
        return torch.zeros(0 if runner is None else runner.batch, self.codec.channels, 0)

    def _runner(self, side: str, batch: int) -> StepRunner:
        runner = getattr(self, f"_{side}")
        if runner is None:
            runner = StepRunner(self.codec.sessions[f"{side}_step"],
                                self.codec.manifest["streaming"][side], batch)
            setattr(self, f"_{side}", runner)
        elif runner.batch != batch:
            raise ValueError(f"batch size changed mid-stream ({runner.batch} -> {batch}); "
                             f"call reset() to start a new stream")
        return runner


def _append(held: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    if held is None:
        return x
    if held.shape[0] != x.shape[0]:
        raise ValueError(f"batch size changed mid-stream ({held.shape[0]} -> {x.shape[0]}); "
                         f"call reset() to start a new stream")
    return np.concatenate([held, x], -1)
