"""`export_onnx`: a codec -> a folder of ONNX graphs that onnxruntime (or any ONNX runtime,
from C++ or a browser) runs without torch or audiotok.

    DIR/encoder.onnx       wav float32 [B, C, T] -> codes int64 [B, K, T / hop]
    DIR/decoder.onnx       codes int64 [B, K, T'] -> wav float32 [B, C, T' * output_hop]
    DIR/encoder_step.onnx  (--streaming, causal codecs) wav [B, C, m * hop] + state ->
                           codes [B, K, m] + state
    DIR/decoder_step.onnx  codes [B, K, m] + state -> wav [B, C, m * output_hop] + state
    DIR/onnx.json          the codec spec (its fingerprint: the torch weights the graphs came
                           from), what the inputs need, the state tensors, and the check
                           figures measured at export

Contract for a client (the Python one is export/onnx_codec.py):
  * T must be a whole number of frames (times `frame_multiple`): pad the audio with zeros at
    the end, as `Codec.encode` does, and keep the true length. Exception: `pads_itself`
    (EnCodec's layout) takes any T, each layer padding as its publisher's does.
  * Codes hold all K levels; keep the first k rows for fewer codebooks (`n_codebooks`
    lists the counts the quantizer allows). To decode k < K levels, fill rows k..K-1 with -1.
  * Step graphs: every state input starts as zeros of the listed shape ("B" = batch) and
    each call's state outputs are the next call's inputs; m may change from call to call, but
    the first call must hold `first_frames` frames (EnCodec's reflect padding reads ahead at
    the start; a signal shorter than that goes through the offline graphs). The last piece
    is zero-padded to a whole frame, as offline encoding pads.

Every graph is checked at export against the torch codec at lengths other than the traced
one (tracing can fix a length into a graph) and the figures are written to onnx.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..errors import AudiotokError
from ..fileio import current_umask, write_error
from ..modules.noise import NoiseBlock
from .graphs import (
    DecodeGraph,
    DecodeStepGraph,
    EncodeGraph,
    EncodeStepGraph,
    absent_levels_as_zero,
)
from .tracing import OPSET, onnx_bytes

MANIFEST = "onnx.json"
FORMAT = "audiotok-onnx"
FORMAT_VERSION = 1
TRACE_FRAMES = 12       # frames (times frame_multiple) of the traced input
CHECK_FRAMES = (1, 5, 37)  # ... and of the inputs each graph is checked at
MIN_EQUAL_FRAMES = 0.99    # below this, an export is broken rather than rounded differently
MAX_AUDIO_DIFF = 1e-3


def check_exportable(codec) -> None:
    """AudiotokError, saying why, for codecs whose inference is not one encoder graph and one
    decoder graph."""
    name = f"codec '{codec.config.family}'"
    if codec.config.segment is not None:
        raise AudiotokError(f"cannot export {name} to ONNX: it codes loudness-normalised "
                            f"segments (EnCodec 48 kHz), not yet exported")
    if codec.global_branch is not None:
        raise AudiotokError(f"cannot export {name} to ONNX: it codes a vector per utterance "
                            f"beside the frames (a global branch), not yet exported")
    if codec.encoder.pad_samples or codec.encoder.takes_lengths:
        raise AudiotokError(f"cannot export {name} to ONNX: its encoder's feature extractor "
                            f"pads each item by its own length (X-Codec-2, NeuCodec)")
    if any(isinstance(m, NoiseBlock) for m in codec.decoder.modules()):
        raise AudiotokError(f"cannot export {name} to ONNX: its decoder draws random noise "
                            f"at inference (SNAC's noise blocks), which a graph would draw "
                            f"from another generator; not exported yet")
    for part in (codec.encoder, codec.decoder):  # what a family says it cannot export yet
        reason = part.onnx_blocker()
        if reason is not None:
            raise AudiotokError(f"cannot export {name} to ONNX: {reason}")
    if codec.decoder.supports_frame_offset:
        kind = type(codec.decoder).__name__
        raise AudiotokError(f"cannot export {name} to ONNX: its decoder ({kind}) depends on "
                            f"each chunk's absolute position and "
                            f"builds phase with FFTs, which have no ONNX form here yet")


def export_onnx(codec, output, streaming: bool = False, force: bool = False) -> Path:
    """Write the ONNX graphs of `codec` into folder `output` (atomically: a temporary folder
    renamed at the end). `streaming`: also the step graphs (causal codecs; AudiotokError
    otherwise). `force`: replace a folder that exists. Returns `output`."""
    codec = codec.eval()
    check_exportable(codec)
    output = Path(output)
    check_target(output, force)
    _require_onnxruntime()
    levels = allowed_levels(codec)
    files = {"encoder.onnx": _encoder_bytes(codec), "decoder.onnx": _decoder_bytes(codec)}
    manifest = _manifest(codec, levels)
    checks = _check_offline(codec, files, levels)
    if streaming:
        enc_step, dec_step = EncodeStepGraph(codec), DecodeStepGraph(codec)
        files["encoder_step.onnx"] = _encoder_step_bytes(codec, enc_step)
        files["decoder_step.onnx"] = _decoder_step_bytes(codec, dec_step)
        manifest["streaming"] = {
            "encoder": {"file": "encoder_step.onnx", "first_frames": enc_step.first_frames,
                        "state": _states(enc_step)},
            "decoder": {"file": "decoder_step.onnx", "first_frames": dec_step.first_frames,
                        "state": _states(dec_step)}}
        checks.update(_check_streaming(codec, manifest, files))
    manifest["checks"] = checks
    files[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    _write_folder(output, files, force)
    return output


def allowed_levels(codec) -> list[int]:
    """Codebook counts the quantizer encodes and decodes (grvq: multiples of its groups),
    after checking that the first k rows of all K levels are the codes of k levels, on which
    one encoder graph for every count relies."""
    with torch.no_grad():
        z = codec.encoder(_signal(codec, 2, 3))
    full = codec.quantizer.encode(z, None)
    allowed = []
    for k in range(1, codec.n_codebooks + 1):
        try:
            codes = codec.quantizer.encode(z, k)
            codec.quantizer.decode(codes)
        except ValueError:
            continue
        if not torch.equal(codes, full[:, :k]):
            raise AudiotokError(f"cannot export codec '{codec.config.family}' to ONNX: its "
                                f"quantizer's first {k} levels differ when all are coded")
        allowed.append(k)
    return allowed


def _signal(codec, batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """A deterministic test input [batch, C, frames * hop * frame_multiple]: noise under a
    few harmonics, so frames differ from one another."""
    g = torch.Generator().manual_seed(seed)
    n = frames * codec.frame_multiple * codec.hop_length
    t = torch.arange(n) / codec.sample_rate
    tone = sum(torch.sin(2 * torch.pi * 150 * h * t) / h for h in range(1, 6))
    noise = torch.randn(batch, codec.channels, n, generator=g)
    return (0.2 * tone + 0.05 * noise).float()


def _encoder_bytes(codec) -> bytes:
    wav = _signal(codec, 1, TRACE_FRAMES)
    return onnx_bytes(EncodeGraph(codec), (wav,), {"wav": {0: "batch", 2: "samples"}},
                      {"codes": {0: "batch", 2: "frames"}})


def _decoder_bytes(codec) -> bytes:
    codes = EncodeGraph(codec)(_signal(codec, 1, TRACE_FRAMES))
    with absent_levels_as_zero(codec.quantizer):
        return onnx_bytes(DecodeGraph(codec), (codes,), {"codes": {0: "batch", 2: "frames"}},
                          {"wav": {0: "batch", 2: "samples"}})


def _state_axes(graph, prefix: str) -> dict:
    return {f"{prefix}{s.name}": {s.shape.index("B"): "batch"} if "B" in s.shape else {}
            for s in graph.states}


def _encoder_step_bytes(codec, graph: EncodeStepGraph) -> bytes:
    wav = _signal(codec, 1, 2)
    states = tuple(s.zeros(1) for s in graph.states)
    inputs = {"wav": {0: "batch", 2: "samples"}, **_state_axes(graph, "state.")}
    outputs = {"codes": {0: "batch", 2: "frames"}, **_state_axes(graph, "next.")}
    return onnx_bytes(graph, (wav, *states), inputs, outputs)


def _decoder_step_bytes(codec, graph: DecodeStepGraph) -> bytes:
    codes = EncodeGraph(codec)(_signal(codec, 1, 2))
    states = tuple(s.zeros(1) for s in graph.states)
    inputs = {"codes": {0: "batch", 2: "frames"}, **_state_axes(graph, "state.")}
    outputs = {"wav": {0: "batch", 2: "samples"}, **_state_axes(graph, "next.")}
    with absent_levels_as_zero(codec.quantizer):
        return onnx_bytes(graph, (codes, *states), inputs, outputs)


def _states(graph) -> list[dict]:
    return [{"input": f"state.{s.name}", "output": f"next.{s.name}", "shape": list(s.shape),
             "dtype": s.dtype} for s in graph.states]


def _manifest(codec, levels: list[int]) -> dict:
    import onnxruntime

    enc_reach, dec_reach = codec.encoder.receptive_field(), codec.decoder.receptive_field()
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "audiotok_version": __version__, "torch_version": torch.__version__,
        "onnxruntime_version": onnxruntime.__version__, "opset": OPSET,
        "source": codec.ref, "spec": codec.spec.to_dict(),
        "output_sample_rate": codec.output_sample_rate, "frame_multiple": codec.frame_multiple,
        # the encoder pads every layer as its publisher does (EnCodec): it takes any length
        "pads_itself": bool(codec.encoder.pads_itself),
        "n_codebooks": levels,
        "encoder": {"file": "encoder.onnx",
                    "receptive_field": None if enc_reach is None else list(enc_reach)},
        "decoder": {"file": "decoder.onnx",
                    "receptive_field": None if dec_reach is None else list(dec_reach)},
        "streaming": None,
        "config": codec._config_dict(),
    }


def _check_offline(codec, files: dict, levels: list[int]) -> dict:
    """Run both graphs at CHECK_FRAMES lengths (batch 2) against the torch modules: the
    share of frames whose codes are all equal, and the largest audio difference decoding the
    same codes at every allowed codebook count."""
    from .onnx_codec import session

    enc, dec = session(files["encoder.onnx"]), session(files["decoder.onnx"])
    equal = total = 0
    diff = 0.0
    for frames in CHECK_FRAMES:
        wav = _signal(codec, 2, frames, seed=frames)
        if codec.encoder.pads_itself:  # any length: check a partial frame
            wav = wav[..., : wav.shape[-1] - codec.hop_length // 3]
        with torch.no_grad():
            ref = EncodeGraph(codec)(wav)
        got = enc.run(None, {"wav": wav.numpy()})[0]
        if got.shape != tuple(ref.shape):
            raise AudiotokError(f"the exported encoder gives codes of shape {got.shape} for "
                                f"{tuple(ref.shape)}: a length was fixed when tracing")
        equal += int((got == ref.numpy()).all(1).sum())
        total += ref.shape[0] * ref.shape[-1]
        for k in levels:
            with torch.no_grad():
                audio = codec.decoder(codec.quantizer.decode(ref[:, :k])).numpy()
            out = dec.run(None, {"codes": pad_levels(ref[:, :k].numpy(), codec.n_codebooks)})[0]
            if out.shape != audio.shape:
                raise AudiotokError(f"the exported decoder gives audio of shape {out.shape} "
                                    f"for {audio.shape}: a length was fixed when tracing")
            diff = max(diff, float(np.abs(out - audio).max()))
    checks = {"frames": total, "frames_equal": equal / total, "audio_max_diff": diff}
    _judge(codec, checks, "")
    return checks


STREAM_FRAMES = 45
STREAM_PIECES = (1, 3, 2, 7, 1, 5)  # frames per call, cycled: the step graphs take any count


def _check_streaming(codec, manifest: dict, files: dict) -> dict:
    """Drive the step graphs piece by piece (pieces of STREAM_PIECES frames, batch 2) and
    compare with the torch codec's offline encode and decode of the whole signal."""
    from .onnx_codec import session
    from .onnx_stream import StepRunner

    wav = _signal(codec, 2, STREAM_FRAMES, seed=1)
    with torch.no_grad():
        ref = EncodeGraph(codec)(wav)
        audio = codec.decoder(codec.quantizer.decode(ref)).numpy()
    enc = StepRunner(session(files["encoder_step.onnx"]), manifest["streaming"]["encoder"], 2)
    dec = StepRunner(session(files["decoder_step.onnx"]), manifest["streaming"]["decoder"], 2)
    hop, sizes = codec.hop_length, iter(STREAM_PIECES * STREAM_FRAMES)
    codes, at = [], 0
    while at < STREAM_FRAMES:
        m = min(max(next(sizes), enc.first_frames if at == 0 else 1), STREAM_FRAMES - at)
        codes.append(enc.run("wav", wav[..., at * hop:(at + m) * hop].numpy()))
        at += m
    out, at = [], 0
    while at < STREAM_FRAMES:
        m = min(max(next(sizes), dec.first_frames if at == 0 else 1), STREAM_FRAMES - at)
        out.append(dec.run("codes", ref[..., at:at + m].numpy()))  # the decoder alone
        at += m
    codes, out = np.concatenate(codes, -1), np.concatenate(out, -1)
    checks = {"stream_frames": int(ref.shape[0] * ref.shape[-1]),
              "stream_frames_equal": float((codes == ref.numpy()).all(1).mean()),
              "stream_audio_max_diff": float(np.abs(out - audio).max())}
    _judge(codec, checks, "stream_")
    return checks


def _judge(codec, checks: dict, prefix: str) -> None:
    share, diff = checks[f"{prefix}frames_equal"], checks[f"{prefix}audio_max_diff"]
    if share < MIN_EQUAL_FRAMES or diff > MAX_AUDIO_DIFF:
        raise AudiotokError(f"the exported {prefix.rstrip('_') or 'offline'} graphs of codec "
                            f"'{codec.config.family}' disagree with torch: "
                            f"{share:.2%} of frames equal, audio within {diff:.2g}")


def pad_levels(codes: np.ndarray, n_codebooks: int) -> np.ndarray:
    """codes int64 [B, k, T] -> [B, n_codebooks, T], the missing levels -1 (absent)."""
    b, k, t = codes.shape
    out = np.full((b, n_codebooks, t), -1, dtype=np.int64)
    out[:, :k] = codes
    return out


def _require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise AudiotokError("ONNX export checks its graphs with onnxruntime, which is not "
                            "installed: pip install 'audiotok[onnx]'") from None


def check_target(output: Path, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise AudiotokError(f"{output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise AudiotokError(f"{output} exists and is not empty; pass --force to replace it")
    parent = output.resolve().parent
    while not parent.exists():  # missing folders are made: the first that exists decides
        parent = parent.parent
    if not parent.is_dir():
        raise AudiotokError(f"{output}: cannot write ({parent} is a file)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AudiotokError(f"{output}: cannot write ({parent}: permission denied)")


def _write_folder(output: Path, files: dict[str, bytes], force: bool) -> None:
    """Write `files` into a temporary folder beside `output`, then rename it into place (an
    existing `output` is moved aside first and removed after)."""
    parent = output.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=parent))
    except OSError as e:
        raise write_error(output, e) from None
    old = None
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; give the usual permissions
        if output.exists():
            old = parent / f".{output.name}.old-{os.getpid()}"
            os.replace(output, old)
        os.replace(tmp, output)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not output.exists():
            os.replace(old, output)
        raise write_error(output, e) from None
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
