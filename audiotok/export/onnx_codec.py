"""OnnxCodec: a folder written by `audiotok export --format onnx`, run by onnxruntime, with the
Codec inference interface.

    codec = audiotok.load_codec("speech_onnx/")       # recognised by its onnx.json
    tokens = codec.encode(wav)                        # Tokens with the torch codec's spec
    wav_hat = codec.decode(tokens)

Its tokens carry the spec and fingerprint of the torch weights the graphs came from, so token
files pass between the two freely. It pads to whole frames and chunks long inputs as
`Codec.encode` / `decode` do (codecs/chunking.py; through the step graphs for folders
exported with streaming graphs, as torch streams causal codecs); inference only, on the CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..codecs.base import (
    DEFAULT_CHUNK_SECONDS,
    check_tokens,
    chunk_frames,
    fit_length,
    input_lengths,
)
from ..codecs.chunking import UNBOUNDED_CONTEXT_SECONDS, decode_chunked, encode_chunked
from ..errors import AudiotokError
from ..tokens import CodecSpec, Tokens
from .onnx import FORMAT, FORMAT_VERSION, MANIFEST, pad_levels


def is_onnx_export(path) -> bool:
    """True for a folder that holds an ONNX export's manifest."""
    return (Path(path) / MANIFEST).is_file()


def session(model, threads: int | None = None):
    """An onnxruntime CPU session for a model file or bytes, with `threads` intra-op threads
    (default: torch's thread count, so `--workers` and OMP_NUM_THREADS share cores the same
    way for both backends)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise AudiotokError("running ONNX graphs needs onnxruntime: pip install "
                            "'audiotok[onnx]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's
    model = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class Levels:
    """The quantizer's side of the interface that callers use before encoding: codebook
    sizes and the counts an encode may keep."""

    def __init__(self, codebook_sizes: list[int], allowed: list[int]):
        self.codebook_sizes, self.allowed = list(codebook_sizes), list(allowed)

    @property
    def n_codebooks(self) -> int:
        return len(self.codebook_sizes)

    def check_n_codebooks(self, n_codebooks: int | None) -> int:
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        if n not in self.allowed:
            raise ValueError(f"n_codebooks must be one of {self.allowed}, got {n_codebooks}")
        return n


class Graph:
    """One exported graph's contract: `hop_length` and `receptive_field()` as the encoder and
    decoder contracts state them (codecs/contracts.py), read from the manifest."""

    def __init__(self, info: dict, hop_length: int):
        self.info, self.hop_length = info, hop_length

    def receptive_field(self) -> tuple[int, int] | None:
        reach = self.info.get("receptive_field")
        return None if reach is None else (int(reach[0]), int(reach[1]))


class OnnxCodec:
    """See the module docstring. Build with `load_codec(folder)` or `OnnxCodec.open(folder)`."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder, self.manifest = folder, manifest
        self.spec = CodecSpec.from_dict(manifest["spec"])
        self.ref: str | None = str(folder.resolve())
        self.provenance = None
        self.quantizer = Levels(self.spec.codebook_sizes, manifest["n_codebooks"])
        self.encoder = Graph(manifest["encoder"], self.spec.hop_length)
        self.decoder = Graph(manifest["decoder"], self.spec.hop_length)
        self.sessions = _Sessions(folder, manifest)

    @classmethod
    def open(cls, folder) -> OnnxCodec:
        folder = Path(folder)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise AudiotokError(f"{folder / MANIFEST}: unreadable ({e})") from None
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise AudiotokError(f"{folder}: ONNX export format {manifest.get('format')} "
                                f"{manifest.get('format_version')}; this audiotok reads "
                                f"{FORMAT} {FORMAT_VERSION}")
        files = [manifest["encoder"]["file"], manifest["decoder"]["file"]]
        if manifest.get("streaming"):
            files += [manifest["streaming"][s]["file"] for s in ("encoder", "decoder")]
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise AudiotokError(f"{folder}: incomplete ONNX export (missing {missing[0]})")
        return cls(folder, manifest)

    # ------------------------------------------------------------------ properties
    sample_rate = property(lambda self: self.spec.sample_rate)
    channels = property(lambda self: self.spec.channels)
    hop_length = property(lambda self: self.spec.hop_length)
    frame_rate = property(lambda self: self.spec.frame_rate)
    codebook_sizes = property(lambda self: list(self.spec.codebook_sizes))
    n_codebooks = property(lambda self: len(self.spec.codebook_sizes))
    codebook_size = property(lambda self: max(self.spec.codebook_sizes))
    frame_multiple = property(lambda self: int(self.manifest["frame_multiple"]))
    output_sample_rate = property(lambda self: int(self.manifest["output_sample_rate"]))

    @property
    def output_hop_length(self) -> int:
        return self.hop_length * self.output_sample_rate // self.sample_rate

    def output_samples(self, num_samples):
        return num_samples * self.output_sample_rate // self.sample_rate

    def fingerprint(self) -> str:
        """The fingerprint of the torch weights the graphs were exported from."""
        return self.spec.fingerprint

    def bitrate(self, n_codebooks: int | None = None) -> float:
        return self.spec.bitrate(n_codebooks)

    @property
    def streams(self) -> bool:
        return self.manifest.get("streaming") is not None

    # what callers written for a torch Codec ask of it
    def to(self, device) -> OnnxCodec:
        if torch.device(device).type != "cpu":
            raise AudiotokError(f"the onnxruntime backend runs on the CPU, not {device}")
        return self

    def eval(self) -> OnnxCodec:
        return self

    def _device(self) -> torch.device:
        return torch.device("cpu")

    # ------------------------------------------------------------------ inference
    def encode(self, wav: Tensor, n_codebooks: int | None = None, lengths: Tensor | None = None,
               chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS) -> Tokens:
        """wav [B, C, T] at `sample_rate` -> Tokens with codes long [B, K, ceil(T / hop)]
        (rounded up to whole groups of `frame_multiple`); as `Codec.encode`."""
        self.check_wav(wav)
        n = self.quantizer.check_n_codebooks(n_codebooks)
        num_samples = input_lengths(lengths, wav)
        wav = wav.detach().cpu().float()
        n_frames = max(1, -(-wav.shape[-1] // self.hop_length))
        chunk_frames = self._chunk_frames(chunk_seconds, n_frames)
        if self.manifest.get("pads_itself") and chunk_frames >= n_frames:
            # EnCodec's layout takes the waveform as it is, in one piece (as Codec.encode)
            return self._tokens(self._run_encoder(wav)[:, :n], num_samples)
        x = self._pad_to_frames(wav)
        if chunk_frames < n_frames and self.streams:
            stream = self.stream()
            step = chunk_frames * self.hop_length
            codes = torch.cat([stream.encode(x[..., i:i + step])
                               for i in range(0, x.shape[-1], step)] + [stream.flush()], -1)
        else:
            reach = self.encoder.receptive_field()
            if reach is None:
                reach = (int(UNBOUNDED_CONTEXT_SECONDS * self.sample_rate),) * 2
            if chunk_seconds is None:
                chunk_frames = x.shape[-1] // self.hop_length
            codes = encode_chunked(self._run_encoder, x, self.hop_length, reach, chunk_frames,
                                   self.frame_multiple)
        return self._tokens(codes[:, :n], num_samples)

    def decode(self, tokens: Tokens, chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS
               ) -> Tensor:
        """Tokens -> wav [B, C, max(num_samples)] at `output_sample_rate`; refuses tokens of
        another codec (as `Codec.decode`)."""
        self.check_tokens(tokens)
        codes = tokens.codes.cpu()
        group = self.frame_multiple
        if codes.shape[-1] % group:  # as Codec.decode: the last frame stands in
            tail = codes[..., -1:].expand(*codes.shape[:-1], -codes.shape[-1] % group)
            codes = torch.cat([codes, tail], -1)
        length = self.output_samples(int(tokens.num_samples.max()))
        chunk_frames = self._chunk_frames(chunk_seconds, codes.shape[-1])
        if chunk_frames < codes.shape[-1] and self.streams:
            stream = self.stream(codes.shape[1])
            wav = torch.cat([stream.decode(codes[..., i:i + chunk_frames])
                             for i in range(0, codes.shape[-1], chunk_frames)]
                            + [stream.end_decode()], -1)
            return fit_length(wav, length)
        reach = self.decoder.receptive_field()
        if reach is None:
            reach = (math.ceil(UNBOUNDED_CONTEXT_SECONDS * self.frame_rate),) * 2
        wav = decode_chunked(self._run_decoder, codes, self.output_hop_length, reach,
                             chunk_frames, group)
        return fit_length(wav, length)

    def stream(self, n_codebooks: int | None = None):
        """An OnnxStream over the step graphs (export/onnx_stream.py); ValueError for a folder
        exported without them."""
        from .onnx_stream import OnnxStream

        return OnnxStream(self, n_codebooks)

    def _run_encoder(self, wav: Tensor) -> Tensor:
        codes = self.sessions["encoder"].run(None, {"wav": wav.numpy()})[0]
        return torch.from_numpy(codes)

    def _run_decoder(self, codes: Tensor, start: int) -> Tensor:
        wav = self.sessions["decoder"].run(None, {"codes": self.padded_codes(codes)})[0]
        return torch.from_numpy(wav)

    def padded_codes(self, codes: Tensor) -> np.ndarray:
        """codes long [B, k, T] -> int64 [B, K, T] with -1 rows for the absent levels (the
        decoder graphs' input); ValueError for a count the quantizer does not decode."""
        if not isinstance(codes, Tensor) or codes.dim() != 3 or codes.dtype.is_floating_point:
            raise ValueError("codes must be an integer tensor [B, K, T]")
        k = codes.shape[1]
        if k not in self.quantizer.allowed:
            raise ValueError(f"codes have {k} rows; this codec decodes {self.quantizer.allowed}")
        sizes = torch.tensor(self.codebook_sizes[:k])[None, :, None]
        if codes.numel() and ((codes < 0) | (codes >= sizes)).any():
            raise ValueError("codes out of range for this codec's codebooks")
        return pad_levels(codes.cpu().long().numpy(), self.n_codebooks)

    def _tokens(self, codes: Tensor, num_samples: Tensor) -> Tokens:
        num_samples = torch.minimum(num_samples, torch.tensor(codes.shape[-1] * self.hop_length))
        frames = torch.tensor([self.spec.frames_for(int(n)) for n in num_samples],
                              dtype=torch.long)
        return Tokens(codes=codes.long().clone(), spec=self.spec, lengths=frames,
                      num_samples=num_samples, codec_ref=self.ref)

    def _pad_to_frames(self, wav: Tensor) -> Tensor:
        step = self.hop_length * self.frame_multiple
        padded = max(1, -(-wav.shape[-1] // step)) * step
        return torch.nn.functional.pad(wav, (0, padded - wav.shape[-1]))

    def _chunk_frames(self, chunk_seconds: float | None, n_frames: int) -> int:
        return chunk_frames(chunk_seconds, n_frames, self.frame_rate)

    def check_tokens(self, tokens: Tokens) -> None:
        """Raise TokenFileError unless `tokens` were made by these weights (through torch or
        these graphs) and are in range."""
        check_tokens(self.spec, tokens)

    def check_wav(self, wav: Tensor, allow_empty: bool = False) -> None:
        if not isinstance(wav, Tensor) or wav.dim() != 3:
            shape = tuple(wav.shape) if isinstance(wav, Tensor) else type(wav).__name__
            raise ValueError(f"wav must be a tensor [B, C, T], got {shape}")
        if wav.shape[1] != self.channels:
            raise ValueError(f"codec expects {self.channels} channel(s), got {wav.shape[1]}")
        if wav.shape[-1] == 0 and not allow_empty:
            raise AudiotokError("audio has no samples")
        if not torch.isfinite(wav).all():
            raise AudiotokError("audio contains NaN or infinite samples")


class _Sessions(dict):
    """Graph name -> onnxruntime session, each opened on first use (a folder's step graphs
    cost nothing until streamed)."""

    def __init__(self, folder: Path, manifest: dict):
        super().__init__()
        self.files = {"encoder": manifest["encoder"]["file"],
                      "decoder": manifest["decoder"]["file"]}
        if manifest.get("streaming"):
            self.files.update({f"{side}_step": manifest["streaming"][side]["file"]
                               for side in ("encoder", "decoder")})
        self.folder = folder

    def __missing__(self, name: str):
        self[name] = session(self.folder / self.files[name])
        return self[name]
