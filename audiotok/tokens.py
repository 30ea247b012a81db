"""Tokens: integer codes plus the spec of the codec that made them, and the token file format.

File layout (little-endian), version 3:
    magic    b"ATOK"                   4 bytes
    version  uint16                    format version
    hlen     uint32                    header length in bytes
    hcrc     uint32                    crc32 of magic, version, hlen and header
    header   UTF-8 JSON                spec, shape, lengths, bits per code, crc32 of payload
    payload  codes [B, K, T], row-major, bit-packed at `bits` bits per code, then (only when
             the header has "global_shape") global codes [B, G], row-major, bit-packed at
             `global_bits` bits per code, starting on the next whole byte

Version 3 added the per-utterance codes (`Tokens.global_codes`, FreeCodec's timbre: the
header's "global_shape" and "global_bits", the spec's "global_codebook_sizes"). Files without
them are still written as version 2, byte for byte as before, so older audiotok reads them.
Version 1 (audiotok before the header checksum) is version 2 without `hcrc`; it is still
read. Every header field is checked for type and range on reading and writing, so a flipped
bit anywhere is either caught by a checksum or refused by the checks, never decoded into
audio of the wrong length.

Codes take ceil(log2(max codebook size)) bits each, so a 1024-entry codebook costs 10 bits
per code on disk, the same as its nominal bitrate (DAC's .dac files store uint16).
"""

from __future__ import annotations

import json
import math
import os
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
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
GLOBAL_CODES_VERSION = 3  # the first version that holds per-utterance codes
_PREFIX_V1 = struct.Struct("<4sHI")
_PREFIX = struct.Struct("<4sHII")
_CRC_BLOCK = 1 << 20  # bytes per step when checking a payload's crc32 from disk
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
    # multi-rate codecs (SNAC): level k holds each code strides[k] times in a row, so it
    # carries frame_rate / strides[k] codes a second; () = every level at the frame rate
    level_strides: tuple[int, ...] = ()
    # segmented codecs (EnCodec 48 kHz, codecs/segments.py): (samples per segment, samples
    # between segment starts); every segment has its own frames; () = one uniform frame grid
    segment: tuple[int, ...] = ()
    # codecs with a global branch (FreeCodec's timbre): entries of each of the G codes that
    # every utterance gets once (Tokens.global_codes); () = none
    global_codebook_sizes: tuple[int, ...] = ()

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def frames_for(self, samples: int) -> int:
        """Frames that `samples` input samples take (at least one)."""
        if self.segment:
            from .codecs.segments import frames_for

            return frames_for(samples, self.hop_length, *self.segment)
        return max(1, -(-samples // self.hop_length))

    def strides(self) -> tuple[int, ...]:
        """Frames per code of each level (1 for single-rate codecs)."""
        return self.level_strides or (1,) * len(self.codebook_sizes)

    @property
    def global_bits(self) -> float:
        """Bits of the per-utterance codes, paid once per utterance (not in `bitrate`)."""
        return sum(math.log2(size) for size in self.global_codebook_sizes)

    def bitrate(self, n_codebooks: int | None = None) -> float:
        """Nominal bits per second when the first `n_codebooks` levels are kept (the frame
        streams; per-utterance codes add `global_bits` per utterance)."""
        n = n_codebooks or len(self.codebook_sizes)
        return sum(self.frame_rate / s * math.log2(size)
                   for size, s in zip(self.codebook_sizes[:n], self.strides()[:n]))

    def tokens_per_second(self, n_codebooks: int | None = None) -> float:
        """Distinct codes per second in the first `n_codebooks` levels."""
        return sum(self.frame_rate / s
                   for s in self.strides()[: n_codebooks or len(self.codebook_sizes)])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codebook_sizes"] = list(self.codebook_sizes)
        for key in ("level_strides", "segment", "global_codebook_sizes"):
            if getattr(self, key):
                d[key] = list(getattr(self, key))
            else:  # written as before multi-rate and segmented codecs existed
                del d[key]
        d["frame_rate"] = self.frame_rate
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CodecSpec:
        keys = ("family", "sample_rate", "channels", "hop_length", "codebook_sizes", "fingerprint",
                "level_strides", "segment", "global_codebook_sizes")
        try:
            return cls(**{k: d[k] for k in keys if k in d}).normalised()
        except (TypeError, KeyError) as e:
            raise TokenFileError(f"invalid codec spec in token header: {e}") from None

    def normalised(self) -> CodecSpec:
        return replace(self, codebook_sizes=tuple(int(s) for s in self.codebook_sizes),
                       level_strides=tuple(int(s) for s in self.level_strides),
                       segment=tuple(int(s) for s in self.segment),
                       global_codebook_sizes=tuple(int(s) for s in self.global_codebook_sizes))

    def describe(self) -> str:
        fp = self.fingerprint[:12] or "unknown"
        return f"'{self.family}' ({self.sample_rate} Hz, hop {self.hop_length}, weights {fp})"


@dataclass
class Tokens:
    """Codes from `Codec.encode`.

    codes:       long [B, K, T']   K <= number of levels of the codec; for a multi-rate codec
                                   (spec.level_strides, SNAC) level k repeats each of its codes
                                   strides[k] times, see `level_codes()`
    spec:        the codec that made them
    lengths:     long [B]          valid frames per item (padded batches)
    num_samples: long [B]          input samples per item, so decode can trim the padding
    codec_ref:   where the codec came from (directory or name), so `decode` can find it
    scales:      float [B, S] or None: segmented codecs' per-segment loudness (EnCodec 48
                 kHz, spec.segment); codes without them decode at unit loudness
    global_codes: long [B, G] or None: codes each utterance gets once, beside the frame
                 streams, from codecs with a global branch (FreeCodec's timbre; sizes in
                 spec.global_codebook_sizes). Swap them between clips with `with_global`.
    """

    codes: Tensor
    spec: CodecSpec
    lengths: Tensor | None = None
    num_samples: Tensor | None = None
    codec_ref: str | None = None
    meta: dict = field(default_factory=dict)
    scales: Tensor | None = None
    global_codes: Tensor | None = None

    def __post_init__(self):
        if self.codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T], got shape {tuple(self.codes.shape)}")
        b, _, t = self.codes.shape
        if self.global_codes is not None and (
                self.global_codes.dim() != 2 or self.global_codes.shape[0] != b):
            raise ValueError(f"global_codes must be [B={b}, G], got shape "
                             f"{tuple(self.global_codes.shape)}")
        if self.lengths is None:
            self.lengths = torch.full((b,), t, dtype=torch.long)
        if self.num_samples is None:
            self.num_samples = self.lengths * self.spec.hop_length

    @property
    def n_codebooks(self) -> int:
        return self.codes.shape[1]

    @property
    def tokens_per_second(self) -> float:
        return self.spec.tokens_per_second(self.n_codebooks)

    def level_codes(self) -> list[Tensor]:
        """Each level at its own rate: long [B, ceil(T / strides[k])] per level k (a
        multi-rate codec's levels repeat each code strides[k] times in `codes`; this is the
        list SNAC's own `encode` returns). Single-rate codecs: the rows of `codes`."""
        strides = self.spec.strides()
        return [self.codes[:, k, ::strides[k]] for k in range(self.n_codebooks)]

    @property
    def bitrate(self) -> float:
        return self.spec.bitrate(self.n_codebooks)

    def to(self, device) -> Tokens:
        g = None if self.global_codes is None else self.global_codes.to(device)
        return replace(self, codes=self.codes.to(device), global_codes=g)

    def with_global(self, other: Tokens | Tensor) -> Tokens:
        """These frame codes with another clip's per-utterance codes: `other` is Tokens of the
        same codec (or global codes long [B, G]), with B items or one for every item.

        FreeCodec: the content and prosody of these tokens in the timbre of `other`
        (voice conversion), `codec.decode(tokens_a.with_global(tokens_b))`."""
        if isinstance(other, Tokens):
            if (other.spec.global_codebook_sizes != self.spec.global_codebook_sizes
                    or other.spec.fingerprint != self.spec.fingerprint):
                raise TokenFileError(f"global codes of codec {other.spec.describe()} cannot "
                                     f"go with tokens of {self.spec.describe()}")
            other = other.global_codes
        if other is None or not self.spec.global_codebook_sizes:
            raise TokenFileError(f"codec {self.spec.describe()} has no per-utterance codes "
                                 f"to swap")
        b = self.codes.shape[0]
        if other.dim() != 2 or other.shape[0] not in (1, b):
            raise ValueError(f"global codes must be [1 or {b}, G], got {tuple(other.shape)}")
        g = other.to(self.codes.device).long().expand(b, -1).clone()
        out = replace(self, global_codes=g)
        out.check_range()
        return out

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
        if self.global_codes is not None:
            sizes = self.spec.global_codebook_sizes
            if not 1 <= self.global_codes.shape[1] <= len(sizes):
                raise TokenFileError(f"tokens have {self.global_codes.shape[1]} global codes "
                                     f"but the codec has {len(sizes)}")
            for g in range(self.global_codes.shape[1]):
                col = self.global_codes[:, g]
                lo, hi = int(col.min()), int(col.max())
                if lo < 0 or hi >= sizes[g]:
                    raise TokenFileError(f"global code {lo if lo < 0 else hi} at position {g} "
                                         f"is out of range [0, {sizes[g]})")

    # ---------------------------------------------------------------- file format
    def save(self, path) -> None:
        """Write atomically: a crash leaves either the old file or the new one."""
        codes = self.codes.detach().cpu().numpy()
        bits = max(1, math.ceil(math.log2(max(self.spec.codebook_sizes))))
        payload = _pack(codes.reshape(-1), bits)
        extra = {}
        if self.global_codes is not None:
            g = self.global_codes.detach().cpu().numpy()
            extra = {"global_shape": list(g.shape),
                     "global_bits": _bits(self.spec.global_codebook_sizes)}
            payload += _pack(g.reshape(-1), extra["global_bits"])
        version = GLOBAL_CODES_VERSION if extra else 2
        header = {
            "spec": self.spec.to_dict(),
            "shape": list(codes.shape),
            "lengths": self.lengths.tolist(),
            "num_samples": self.num_samples.tolist(),
            "bits": bits,
            "crc32": zlib.crc32(payload),
            "codec_ref": self.codec_ref,
            "meta": self.meta,
            **extra,
        }
        if self.scales is not None:  # float32 values: JSON's doubles hold them exactly
            header["scales"] = self.scales.detach().cpu().float().tolist()
        check_header(header, Path(path))
        head = json.dumps(header).encode()
        start = _PREFIX_V1.pack(MAGIC, version, len(head))
        prefix = _PREFIX.pack(MAGIC, version, len(head), zlib.crc32(head, zlib.crc32(start)))
        atomic_write_bytes(Path(path), prefix + head + payload)

    @classmethod
    def load(cls, path) -> Tokens:
        path = Path(path)
        if not path.is_file():
            raise TokenFileError(f"{path}: no such token file")
        data = path.read_bytes()
        header, payload = _split(data, path)
        _check_payload(header, len(payload), zlib.crc32(payload), path)
        n = math.prod(header["shape"])
        codes = torch.from_numpy(
            _unpack(payload, n, header["bits"]).reshape(header["shape"]).astype(np.int64))
        global_codes = None
        if "global_shape" in header:
            g = math.prod(header["global_shape"])
            rest = payload[_payload_bytes(n, header["bits"]):]
            global_codes = torch.from_numpy(_unpack(rest, g, header["global_bits"]).reshape(
                header["global_shape"]).astype(np.int64))
        tokens = cls(
            codes=codes, spec=CodecSpec.from_dict(header["spec"]),
            lengths=torch.tensor(header["lengths"], dtype=torch.long),
            num_samples=torch.tensor(header["num_samples"], dtype=torch.long),
            codec_ref=header.get("codec_ref"), meta=header.get("meta") or {},
            scales=None if header.get("scales") is None
            else torch.tensor(header["scales"], dtype=torch.float32),
            global_codes=global_codes,
        )
        tokens.check_range()
        return tokens


def read_header(path, verify_payload: bool = False) -> dict:
    """The checked JSON header of a token file, without reading the codes into memory.

    `verify_payload`: also check the payload's size and crc32, reading it from disk in
    blocks (memory stays bounded however large the file)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) >= _PREFIX_V1.size and prefix[:4] == MAGIC:
                _, version, hlen = _PREFIX_V1.unpack_from(prefix)
                size = _PREFIX.size if version >= 2 else _PREFIX_V1.size
                if size + hlen > os.fstat(f.fileno()).st_size:  # read no more than is there
                    raise TokenFileError(f"{path}: truncated token file (header cut short)")
                prefix += f.read(max(0, size + hlen - len(prefix)))
            header, rest = _split(prefix, path)
            if verify_payload:
                f.seek(len(prefix) - len(rest))
                crc, length = 0, 0
                while block := f.read(_CRC_BLOCK):
                    crc, length = zlib.crc32(block, crc), length + len(block)
                _check_payload(header, length, crc, path)
    except IsADirectoryError:
        raise TokenFileError(f"{path}: is a directory, not a token file") from None
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such token file") from None
    return header


def _split(data: bytes, path: Path) -> tuple[dict, bytes]:
    """Check the prefix and header of a file's bytes -> (header, payload bytes)."""
    if len(data) < _PREFIX_V1.size:
        raise TokenFileError(f"{path}: not a token file (too short)")
    magic, version, hlen = _PREFIX_V1.unpack_from(data)
    if magic != MAGIC:
        raise TokenFileError(f"{path}: not an audiotok token file (bad magic {magic!r})")
    if version not in READABLE_VERSIONS:
        raise TokenFileError(
            f"{path}: token file format version {version}; this audiotok reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    start = _PREFIX.size if version >= 2 else _PREFIX_V1.size
    end = start + hlen
    if len(data) < end:
        raise TokenFileError(f"{path}: truncated token file (header cut short)")
    head = data[start:end]
    if version >= 2:
        (hcrc,) = struct.unpack_from("<I", data, _PREFIX_V1.size)
        if zlib.crc32(head, zlib.crc32(data[:_PREFIX_V1.size])) != hcrc:
            raise TokenFileError(f"{path}: corrupt token file (header checksum mismatch)")
    try:
        header = json.loads(head)
    except ValueError as e:
        raise TokenFileError(f"{path}: corrupt token header ({e})") from None
    check_header(header, path)
    if "global_shape" in header and version < GLOBAL_CODES_VERSION:
        raise TokenFileError(f"{path}: invalid token header: a version {version} file cannot "
                             f"hold global codes")
    return header, data[end:]


def check_header(h, path) -> None:
    """Raise TokenFileError unless every field of a token header has its type and range, and
    lengths, sample counts and shape agree with each other and with the spec."""
    def fail(what: str):
        raise TokenFileError(f"{path}: invalid token header: {what}")

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(h, dict):
        fail("not a JSON object")
    for key in ("spec", "shape", "lengths", "num_samples", "bits", "crc32"):
        if key not in h:
            fail(f"'{key}' is missing")
    spec = h["spec"]
    if not isinstance(spec, dict):
        fail("'spec' is not an object")
    if not isinstance(spec.get("family"), str) or not isinstance(spec.get("fingerprint", ""),
                                                                 str):
        fail("spec 'family' and 'fingerprint' must be strings")
    for key in ("sample_rate", "channels", "hop_length"):
        if not whole(spec.get(key)) or spec[key] < 1:
            fail(f"spec '{key}' must be a positive integer, got {spec.get(key)!r}")
    sizes = spec.get("codebook_sizes")
    if not isinstance(sizes, list) or not sizes or not all(whole(s) and s >= 2 for s in sizes):
        fail(f"spec 'codebook_sizes' must be a list of integers >= 2, got {sizes!r}")
    strides = spec.get("level_strides", [1] * len(sizes))
    if not (isinstance(strides, list) and len(strides) == len(sizes)
            and all(whole(s) and s >= 1 for s in strides)):
        fail(f"spec 'level_strides' must be {len(sizes)} positive integers, got {strides!r}")
    shape = h["shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(whole(d) and d >= 1
                                                                for d in shape)):
        fail(f"'shape' must be [B, K, T] of positive integers, got {shape!r}")
    b, k, t = shape
    if k > len(sizes):
        fail(f"{k} codebook levels but the codec has {len(sizes)}")
    if h["bits"] != max(1, math.ceil(math.log2(max(sizes)))) or not whole(h["bits"]):
        fail(f"'bits' is {h['bits']!r}, codebooks of up to {max(sizes)} entries take "
             f"{max(1, math.ceil(math.log2(max(sizes))))}")
    if not whole(h["crc32"]) or not 0 <= h["crc32"] < 2**32:
        fail(f"'crc32' must be an unsigned 32-bit integer, got {h['crc32']!r}")
    for key in ("lengths", "num_samples"):
        v = h[key]
        if not (isinstance(v, list) and len(v) == b and all(whole(x) and x >= 1 for x in v)):
            fail(f"'{key}' must be {b} positive integer(s), got {v!r}")
    segment = spec.get("segment", [])
    if not (isinstance(segment, list) and len(segment) in (0, 2)
            and all(whole(s) and s >= 1 for s in segment)):
        fail(f"spec 'segment' must be [samples, stride] of positive integers, got {segment!r}")
    grid = CodecSpec(spec["family"], spec["sample_rate"], spec["channels"],
                     spec["hop_length"], tuple(sizes), segment=tuple(segment))
    for i, (frames, samples) in enumerate(zip(h["lengths"], h["num_samples"])):
        if frames > t:
            fail(f"item {i} has {frames} frames but the codes hold {t}")
        if frames != grid.frames_for(samples):
            fail(f"item {i}: {samples} samples take {grid.frames_for(samples)} frames of "
                 f"{spec['hop_length']}, the header says {frames}")
    scales = h.get("scales")
    if scales is not None:
        if not segment:
            fail("'scales' given for a codec without segments")
        need = len(range(0, max(h["num_samples"]), segment[1]))
        n = len(scales[0]) if isinstance(scales, list) and scales and isinstance(
            scales[0], list) else -1
        if not (n >= need and isinstance(scales, list) and len(scales) == b and all(
                isinstance(row, list) and len(row) == n and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) and v > 0 for v in row) for row in scales)):
            fail(f"'scales' must be {b} list(s) of at least {need} positive finite numbers, "
                 f"one per segment")
    _check_global(h, spec, b, fail)
    if h.get("codec_ref") is not None and not isinstance(h["codec_ref"], str):
        fail(f"'codec_ref' must be a string, got {h['codec_ref']!r}")
    if h.get("meta") is not None and not isinstance(h["meta"], dict):
        fail(f"'meta' must be an object, got {h['meta']!r}")


def _check_global(h: dict, spec: dict, b: int, fail) -> None:
    """The per-utterance codes' fields: sizes in the spec, [B, G] shape and bits."""
    sizes = spec.get("global_codebook_sizes", [])
    if not (isinstance(sizes, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                            and s >= 2 for s in sizes)):
        fail(f"spec 'global_codebook_sizes' must be a list of integers >= 2, got {sizes!r}")
    if "global_shape" not in h:
        if "global_bits" in h:
            fail("'global_bits' given without 'global_shape'")
        return
    shape = h["global_shape"]
    if not sizes:
        fail("'global_shape' given for a codec without global codes")
    if not (isinstance(shape, list) and len(shape) == 2 and shape[0] == b
            and isinstance(shape[1], int) and 1 <= shape[1] <= len(sizes)):
        fail(f"'global_shape' must be [{b}, G] with 1 <= G <= {len(sizes)}, got {shape!r}")
    if h.get("global_bits") != _bits(sizes):
        fail(f"'global_bits' is {h.get('global_bits')!r}, global codebooks of up to "
             f"{max(sizes)} entries take {_bits(sizes)}")


def _bits(sizes) -> int:
    return max(1, math.ceil(math.log2(max(sizes))))


def _payload_bytes(n: int, bits: int) -> int:
    return math.ceil(n * bits / 8)


def _check_payload(header: dict, length: int, crc: int, path: Path) -> None:
    need = _payload_bytes(math.prod(header["shape"]), header["bits"])
    if "global_shape" in header:
        need += _payload_bytes(math.prod(header["global_shape"]), header["global_bits"])
    if length != need:
        raise TokenFileError(
            f"{path}: truncated or padded token file: expected {need} bytes of codes, "
            f"found {length}"
        )
    if crc != header["crc32"]:
        raise TokenFileError(f"{path}: corrupt token file (checksum mismatch)")


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
