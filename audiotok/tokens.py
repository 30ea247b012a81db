"""Tokens: integer codes plus the spec of the codec that made them, and the token file format.

File layout (little-endian), version 1:
    magic    b"ATOK"                   4 bytes
    version  uint16                    format version
    hlen     uint32                    header length in bytes
    header   UTF-8 JSON                spec, shape, lengths, bits per code, crc32 of payload
    payload  codes [B, K, T], row-major, bit-packed at `bits` bits per code

Codes take ceil(log2(max codebook size)) bits each, so a 1024-entry codebook costs 10 bits
per code on disk, the same as its nominal bitrate (DAC's .dac files store uint16).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import TokenFileError
from .fileio import atomic_write_bytes

MAGIC = b"ATOK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sHI")
_PACK_CHUNK = 1 << 20  # codes per packing step: bounds the temporary bit matrix to ~32 MB


@dataclass(frozen=True)
class CodecSpec:
    """What a decoder must agree with to read these codes."""

    family: str
    sample_rate: int
    channels: int
    hop_length: int
    codebook_sizes: tuple[int, ...]
    fingerprint: str = ""

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def bitrate(self, n_codebooks: int | None = None) -> float:
        """Nominal bits per second when the first `n_codebooks` levels are kept."""
        sizes = self.codebook_sizes[: n_codebooks or len(self.codebook_sizes)]
        return self.frame_rate * sum(math.log2(s) for s in sizes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codebook_sizes"] = list(self.codebook_sizes)
        d["frame_rate"] = self.frame_rate
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CodecSpec:
        keys = ("family", "sample_rate", "channels", "hop_length", "codebook_sizes", "fingerprint")
        try:
            return cls(**{k: d[k] for k in keys if k in d}).normalised()
        except (TypeError, KeyError) as e:
            raise TokenFileError(f"invalid codec spec in token header: {e}") from None

    def normalised(self) -> CodecSpec:
        return replace(self, codebook_sizes=tuple(int(s) for s in self.codebook_sizes))

    def describe(self) -> str:
        fp = self.fingerprint[:12] or "unknown"
        return f"'{self.family}' ({self.sample_rate} Hz, hop {self.hop_length}, weights {fp})"


@dataclass
class Tokens:
    """Codes from `Codec.encode`.

    codes:       long [B, K, T']   K <= number of levels of the codec
    spec:        the codec that made them
    lengths:     long [B]          valid frames per item (padded batches)
    num_samples: long [B]          input samples per item, so decode can trim the padding
    codec_ref:   where the codec came from (directory or name), so `decode` can find it
    """

    codes: Tensor
    spec: CodecSpec
    lengths: Tensor | None = None
    num_samples: Tensor | None = None
    codec_ref: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T], got shape {tuple(self.codes.shape)}")
        b, _, t = self.codes.shape
        if self.lengths is None:
            self.lengths = torch.full((b,), t, dtype=torch.long)
        if self.num_samples is None:
            self.num_samples = self.lengths * self.spec.hop_length

    @property
    def n_codebooks(self) -> int:
        return self.codes.shape[1]

    @property
    def tokens_per_second(self) -> float:
        return self.spec.frame_rate * self.n_codebooks

    @property
    def bitrate(self) -> float:
        return self.spec.bitrate(self.n_codebooks)

    def to(self, device) -> Tokens:
        return replace(self, codes=self.codes.to(device))

    def check_range(self) -> None:
        """Raise if any code is negative or beyond its level's codebook size."""
        if self.n_codebooks > len(self.spec.codebook_sizes):
            raise TokenFileError(
                f"tokens have {self.n_codebooks} codebooks but the codec has "
                f"{len(self.spec.codebook_sizes)}"
            )
        for k in range(self.n_codebooks):
            size = self.spec.codebook_sizes[k]
            row = self.codes[:, k]
            lo, hi = int(row.min()), int(row.max())
            if lo < 0 or hi >= size:
                bad = lo if lo < 0 else hi
                raise TokenFileError(
                    f"code {bad} at codebook level {k} is out of range [0, {size})"
                )

    # ---------------------------------------------------------------- file format
    def save(self, path) -> None:
        """Write atomically: a crash leaves either the old file or the new one."""
        codes = self.codes.detach().cpu().numpy()
        bits = max(1, math.ceil(math.log2(max(self.spec.codebook_sizes))))
        payload = _pack(codes.reshape(-1), bits)
        header = {
            "spec": self.spec.to_dict(),
            "shape": list(codes.shape),
            "lengths": self.lengths.tolist(),
            "num_samples": self.num_samples.tolist(),
            "bits": bits,
            "crc32": zlib.crc32(payload),
            "codec_ref": self.codec_ref,
            "meta": self.meta,
        }
        head = json.dumps(header).encode()
        atomic_write_bytes(Path(path), _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head
                           + payload)

    @classmethod
    def load(cls, path) -> Tokens:
        path = Path(path)
        if not path.is_file():
            raise TokenFileError(f"{path}: no such token file")
        data = path.read_bytes()
        header, payload = _split(data, path)
        shape = header["shape"]
        n = int(np.prod(shape))
        bits = int(header["bits"])
        need = math.ceil(n * bits / 8)
        if len(payload) != need:
            raise TokenFileError(
                f"{path}: truncated or padded token file: expected {need} bytes of codes, "
                f"found {len(payload)}"
            )
        if zlib.crc32(payload) != header["crc32"]:
            raise TokenFileError(f"{path}: corrupt token file (checksum mismatch)")
        codes = torch.from_numpy(_unpack(payload, n, bits).reshape(shape).astype(np.int64))
        tokens = cls(
            codes=codes, spec=CodecSpec.from_dict(header["spec"]),
            lengths=torch.tensor(header["lengths"], dtype=torch.long),
            num_samples=torch.tensor(header["num_samples"], dtype=torch.long),
            codec_ref=header.get("codec_ref"), meta=header.get("meta") or {},
        )
        tokens.check_range()
        return tokens


def read_header(path) -> dict:
    """The JSON header of a token file, without reading the codes."""
    path = Path(path)
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX.size)
        if len(prefix) == _PREFIX.size:
            _, _, hlen = _PREFIX.unpack(prefix)
            prefix += f.read(hlen)
    header, _ = _split(prefix, path)
    return header


def _split(data: bytes, path: Path) -> tuple[dict, bytes]:
    if len(data) < _PREFIX.size:
        raise TokenFileError(f"{path}: not a token file (too short)")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise TokenFileError(f"{path}: not an audiotok token file (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise TokenFileError(
            f"{path}: token file format version {version}; this audiotok reads version "
            f"{FORMAT_VERSION}"
        )
    end = _PREFIX.size + hlen
    if len(data) < end:
        raise TokenFileError(f"{path}: truncated token file (header cut short)")
    try:
        header = json.loads(data[_PREFIX.size:end])
        header["shape"], header["bits"], header["crc32"], header["spec"]
    except (ValueError, KeyError, TypeError) as e:
        raise TokenFileError(f"{path}: corrupt token header ({e})") from None
    return header, data[end:]


def _pack(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative ints < 2**bits into a little-endian bit stream."""
    out = []
    for start in range(0, values.size, _PACK_CHUNK):  # chunks of 8k codes stay byte-aligned
        v = values[start:start + _PACK_CHUNK].astype("<u4").view(np.uint8).reshape(-1, 4)
        b = np.unpackbits(v, axis=1, bitorder="little")[:, :bits]
        out.append(np.packbits(b.reshape(-1), bitorder="little").tobytes())
    return b"".join(out)


def _unpack(payload: bytes, n: int, bits: int) -> np.ndarray:
    raw = np.frombuffer(payload, dtype=np.uint8)
    out = np.empty(n, dtype=np.uint32)
    step_bytes = _PACK_CHUNK * bits // 8
    for i, start in enumerate(range(0, n, _PACK_CHUNK)):
        count = min(_PACK_CHUNK, n - start)
        chunk = raw[i * step_bytes: i * step_bytes + math.ceil(count * bits / 8)]
        b = np.unpackbits(chunk, bitorder="little")[: count * bits].reshape(count, bits)
        b = np.pad(b, ((0, 0), (0, 32 - bits)))
        out[start:start + count] = np.packbits(b, axis=1, bitorder="little").view("<u4")[:, 0]
    return out
