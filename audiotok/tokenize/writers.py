"""Shard formats: Parquet (opens with `datasets`/pyarrow/pandas), WebDataset tar, and `.npy`
per utterance with a JSONL index. Each shard is written under a temp name and renamed into
place when complete, so a reader (or a resumed job) never sees half a shard.

Every record has the same fields in every format:
    id           utterance id (path relative to the input folder, or the manifest's id)
    codes        [K, T] uint16 (int32 when a codebook has more than 65536 entries)
    n_frames     T
    num_samples  audio samples at the codec's rate (decode trims to this)
    codec        the codec spec: family, sample_rate, hop_length, frame_rate,
                 codebook_sizes, fingerprint (+ global_codebook_sizes)
    global_codes [G] the utterance's per-utterance codes (Tokens.global_codes: FreeCodec's
                 timbre), only for codecs with a global branch (spec global_codebook_sizes):
                 a list<uint16> column in Parquet, a list in the WebDataset/npy JSON
    ...          every metadata key of the manifest line (text, speaker, path, ...)
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import atomic_path

PARQUET_ROW_GROUP = 256  # rows per row group: streaming readers hold one group at a time


@dataclass
class Record:
    """One tokenized utterance; `key` is its position in the job (the WebDataset key)."""

    id: str
    codes: np.ndarray  # [K, T]
    num_samples: int
    meta: dict = field(default_factory=dict)
    key: int = 0
    global_codes: np.ndarray | None = None  # [G], codecs with a global branch only

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[1])


def codes_dtype(codebook_sizes) -> np.dtype:
    return np.dtype(np.uint16 if max(codebook_sizes) <= 1 << 16 else np.int32)


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def _fields(rec: Record, spec: dict) -> dict:
    out = {"id": rec.id, "n_frames": rec.n_frames, "num_samples": rec.num_samples,
           "codec": spec, **rec.meta}
    if rec.global_codes is not None:
        out["global_codes"] = [int(c) for c in rec.global_codes]
    return out


def _from_fields(fields: dict, codes: np.ndarray) -> Record:
    meta = {k: v for k, v in fields.items() if k not in (
        "id", "n_frames", "num_samples", "codec", "codes", "file", "global_codes")}
    g = fields.get("global_codes")
    return Record(fields["id"], codes, int(fields["num_samples"]), meta,
                  global_codes=None if g is None else np.asarray(g, dtype=codes.dtype))


class ParquetFormat:
    """`shard-NNNNN.parquet`: one row per utterance, codes as list<list<uint16>> [K][T]."""

    name, suffix = "parquet", ".parquet"

    def write(self, path: Path, records: list[Record], spec: dict, columns: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        dtype = codes_dtype(spec["codebook_sizes"])
        data = {
            "id": pa.array([r.id for r in records], pa.string()),
            "codes": _nested_codes(records, dtype),
            "n_frames": pa.array([r.n_frames for r in records], pa.int32()),
            "num_samples": pa.array([r.num_samples for r in records], pa.int64()),
            "codec": pa.array([json.dumps(spec, sort_keys=True)] * len(records), pa.string()),
        }
        if spec.get("global_codebook_sizes"):
            data["global_codes"] = pa.array([r.global_codes.astype(dtype) for r in records],
                                            pa.list_(pa.from_numpy_dtype(dtype)))
        for key, kind in columns.items():
            data[key] = _meta_column([r.meta.get(key) for r in records], kind)
        table = pa.table(data).replace_schema_metadata(
            {"audiotok": json.dumps({"codec": spec, "columns": columns})})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, row_group_size=PARQUET_ROW_GROUP, compression="zstd")

    def read(self, path: Path) -> Iterator[Record]:
        import pyarrow.parquet as pq

        meta = json.loads(pq.read_schema(path).metadata[b"audiotok"])
        dtype = codes_dtype(meta["codec"]["codebook_sizes"])
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_ROW_GROUP):
            for row in batch.to_pylist():
                fields = {k: _decode_meta(v, meta["columns"].get(k)) for k, v in row.items()}
                yield _from_fields(fields, np.array(row["codes"], dtype=dtype))


def _nested_codes(records: list[Record], dtype: np.dtype):
    """[K][T] lists built from flat buffers (no per-code Python objects)."""
    import pyarrow as pa

    values = (np.concatenate([r.codes.astype(dtype).ravel() for r in records]) if records
              else np.zeros(0, dtype))
    inner = np.repeat([r.n_frames for r in records], [r.codes.shape[0] for r in records])
    inner_offsets = np.concatenate([[0], np.cumsum(inner)]).astype(np.int32)
    outer_offsets = np.concatenate([[0], np.cumsum([r.codes.shape[0] for r in records])])
    levels = pa.ListArray.from_arrays(pa.array(inner_offsets), pa.array(values))
    return pa.ListArray.from_arrays(pa.array(outer_offsets.astype(np.int32)), levels)


def _meta_column(values: list, kind: str):
    import pyarrow as pa

    if kind == "json":
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
             "bool": pa.bool_()}
    return pa.array(values, types[kind])


def _decode_meta(value, kind: str | None):
    return json.loads(value) if kind == "json" and value is not None else value


class WebDatasetFormat:
    """`shard-NNNNN.tar`: members `<key>.codes.npy` and `<key>.json` per utterance, where
    key is the utterance's position in the job (ids may contain dots and slashes, which
    WebDataset would read as extensions and folders)."""

    name, suffix = "webdataset", ".tar"

    def write(self, path: Path, records: list[Record], spec: dict, columns: dict) -> None:
        dtype = codes_dtype(spec["codebook_sizes"])
        with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for rec in records:
                buf = io.BytesIO()
                np.save(buf, rec.codes.astype(dtype))
                _add_member(tar, f"{rec.key:010d}.codes.npy", buf.getvalue())
                _add_member(tar, f"{rec.key:010d}.json", json.dumps(_fields(rec, spec)).encode())

    def read(self, path: Path) -> Iterator[Record]:
        with tarfile.open(path) as tar:
            codes = None
            for member in tar:
                data = tar.extractfile(member).read()
                if member.name.endswith(".codes.npy"):
                    codes = np.load(io.BytesIO(data))
                else:  # the .json follows its .codes.npy
                    yield _from_fields(json.loads(data), codes)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


class NpyFormat:
    """`codes/<id>.npy` per utterance plus `shards/shard-NNNNN.jsonl` listing the shard's
    records (`file` points at the .npy); `index.jsonl` joins them when the job is done."""

    name, suffix = "npy", ".jsonl"

    def write(self, path: Path, records: list[Record], spec: dict, columns: dict) -> None:
        out = path.parent.parent
        dtype = codes_dtype(spec["codebook_sizes"])
        lines = []
        for rec in records:
            rel = f"codes/{rec.id}.npy"
            with atomic_path(out / rel) as tmp, open(tmp, "wb") as f:
                np.save(f, rec.codes.astype(dtype))
            lines.append(json.dumps({**_fields(rec, spec), "file": rel}) + "\n")
        with atomic_path(path) as tmp:
            tmp.write_text("".join(lines))

    def read(self, path: Path) -> Iterator[Record]:
        out = path.parent.parent
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = json.loads(line)
                yield _from_fields(fields, np.load(out / fields["file"]))


FORMATS = {f.name: f for f in (ParquetFormat(), WebDatasetFormat(), NpyFormat())}


def read_records(out: Path, index: dict) -> Iterator[Record]:
    """Every record of a finished job (`index` from state.read_index), shard by shard."""
    fmt = FORMATS[index["format"]]
    for shard in index["shards"]:
        yield from fmt.read(Path(out) / shard["file"])


def shard_path(out: Path, fmt: str, shard: int) -> Path:
    """Where shard `shard` lives (for npy: its record list; the codes are beside it)."""
    name = shard_name(shard) + FORMATS[fmt].suffix
    return out / "shards" / name if fmt == "npy" else out / name
