"""Token files: bit-packed round trips and every way a file can be wrong."""

import json
import struct
import zlib
from pathlib import Path

import pytest
import torch

from audiotok.errors import TokenFileError
from audiotok.tokens import CodecSpec, Tokens, read_header

DATA = Path(__file__).parent / "fixtures"  # ("data/" folders are git-ignored)


def make(sizes=(1024, 1024, 1024), frames=37, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, s, (batch, frames), generator=g) for s in sizes], 1)
    spec = CodecSpec("test", 16000, 1, 320, tuple(sizes), "abcd" * 4)
    return Tokens(codes, spec, lengths=torch.tensor([frames, frames - 5][:batch]))


@pytest.mark.parametrize("sizes", [(2,), (3, 5), (256,), (1024,) * 4, (4096,), (65536, 2),
                                   (1000, 100000)])
def test_round_trip_any_width(tmp_path, sizes):
    t = make(sizes)
    t.codes[0, 0, 0] = sizes[0] - 1  # the largest code must survive packing
    t.save(tmp_path / "a.atok")
    back = Tokens.load(tmp_path / "a.atok")
    assert torch.equal(back.codes, t.codes)
    assert back.spec == t.spec
    assert torch.equal(back.lengths, t.lengths)
    assert torch.equal(back.num_samples, t.num_samples)


def test_compact_storage(tmp_path):
    t = make((1024,) * 8, frames=1000, batch=1)
    t.save(tmp_path / "a.atok")
    size = (tmp_path / "a.atok").stat().st_size
    payload = 8 * 1000 * 10 / 8  # 10 bits per code
    assert payload <= size < payload + 1024


def test_bitrate_and_rates():
    t = make((1024,) * 4, batch=1)
    assert t.spec.frame_rate == 50
    assert t.tokens_per_second == 200
    assert t.bitrate == 2000
    assert t.spec.bitrate(2) == 1000


def test_truncated(tmp_path):
    make().save(tmp_path / "a.atok")
    data = (tmp_path / "a.atok").read_bytes()
    for cut in (3, 20, len(data) - 1):
        (tmp_path / "b.atok").write_bytes(data[:cut])
        with pytest.raises(TokenFileError, match="truncated|too short"):
            Tokens.load(tmp_path / "b.atok")


def test_corrupt_payload(tmp_path):
    make().save(tmp_path / "a.atok")
    data = bytearray((tmp_path / "a.atok").read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "b.atok").write_bytes(bytes(data))
    with pytest.raises(TokenFileError, match="checksum"):
        Tokens.load(tmp_path / "b.atok")


def test_other_version_and_magic(tmp_path):
    make().save(tmp_path / "a.atok")
    data = bytearray((tmp_path / "a.atok").read_bytes())
    struct.pack_into("<H", data, 4, 7)
    (tmp_path / "v.atok").write_bytes(bytes(data))
    with pytest.raises(TokenFileError, match="version 7; this audiotok reads versions 1, 2"):
        Tokens.load(tmp_path / "v.atok")
    (tmp_path / "m.atok").write_bytes(b"RIFF" + bytes(data[4:]))
    with pytest.raises(TokenFileError, match="bad magic"):
        Tokens.load(tmp_path / "m.atok")
    with pytest.raises(TokenFileError, match="no such token file"):
        Tokens.load(tmp_path / "missing.atok")


def test_out_of_range_codes_refused_on_load(tmp_path):
    t = make((1000,))  # 10 bits can hold 1023 > 999
    t.codes[0, 0, 3] = 1010
    t.save(tmp_path / "a.atok")
    with pytest.raises(TokenFileError, match="code 1010 at codebook level 0"):
        Tokens.load(tmp_path / "a.atok")


def test_header_only(tmp_path):
    make().save(tmp_path / "a.atok")
    h = read_header(tmp_path / "a.atok")
    assert h["shape"] == [2, 3, 37] and h["spec"]["family"] == "test"


def test_save_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temp files."""
    t = make()
    t.save(tmp_path / "a.atok")
    before = (tmp_path / "a.atok").read_bytes()
    import os

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        make(seed=1).save(tmp_path / "a.atok")
    assert (tmp_path / "a.atok").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.atok"]


def test_written_files_get_normal_permissions(tmp_path):
    import os

    make().save(tmp_path / "a.atok")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.atok").stat().st_mode & 0o777 == 0o666 & ~mask


# ---------------------------------------------------------------- header integrity
def test_every_single_bit_flip_is_refused(tmp_path):
    """A flipped bit anywhere (prefix, header checksum, header, payload) is an error, never a
    file that decodes: the header checksum covers prefix and header, crc32 the payload."""
    make(frames=9).save(tmp_path / "a.atok")
    data = (tmp_path / "a.atok").read_bytes()
    bad = tmp_path / "b.atok"
    accepted = []
    for pos in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            bad.write_bytes(bytes(flipped))
            for read in (Tokens.load, lambda p: read_header(p, verify_payload=True)):
                try:
                    read(bad)
                    accepted.append((pos, bit))
                except TokenFileError:
                    pass
    assert not accepted, accepted[:5]


def _write_v1(path, header: dict, payload: bytes) -> None:
    """A file as audiotok wrote it before the header checksum (format version 1)."""
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<4sHI", b"ATOK", 1, len(head)) + head + payload)


def _write_v2(path, header: dict, payload: bytes) -> None:
    """A version 2 file with a valid header checksum, as a buggy writer could make it."""
    head = json.dumps(header).encode()
    start = struct.pack("<4sHI", b"ATOK", 2, len(head))
    crc = zlib.crc32(head, zlib.crc32(start))
    path.write_bytes(start + struct.pack("<I", crc) + head + payload)


def _v1_parts(tmp_path):
    data = (DATA / "v1_speech16k.atok").read_bytes()
    (hlen,) = struct.unpack_from("<I", data, 6)
    return json.loads(data[10:10 + hlen]), data[10 + hlen:]


def test_version_1_files_still_read(tmp_path):
    """tests/fixtures/v1_speech16k.atok was written by audiotok before format version 2: the
    bundled codec's codes for 8123 samples of the sample clip."""
    t = Tokens.load(DATA / "v1_speech16k.atok")
    assert t.codes.shape == (1, 9, 26) and t.num_samples.tolist() == [8123]
    assert t.lengths.tolist() == [26] and t.codec_ref == "audiotok/speech-16k"
    assert read_header(DATA / "v1_speech16k.atok", verify_payload=True)["shape"] == [1, 9, 26]
    t.save(tmp_path / "v2.atok")  # rewritten in the current format, same content
    back = Tokens.load(tmp_path / "v2.atok")
    assert torch.equal(back.codes, t.codes) and back.spec == t.spec
    assert (tmp_path / "v2.atok").read_bytes()[4:6] == struct.pack("<H", 2)


BAD_HEADERS = [
    ({"lengths": "abc"}, "'lengths' must be 1 positive integer"),
    ({"lengths": [27]}, "item 0 has 27 frames but the codes hold 26"),
    ({"lengths": [25]}, "8123 samples take 26 frames of 320, the header says 25"),
    ({"num_samples": [-5]}, "'num_samples' must be 1 positive integer"),
    ({"num_samples": [10 ** 12]}, "the header says 26"),
    ({"num_samples": [8123, 8123]}, "'num_samples' must be 1 positive integer"),
    ({"num_samples": [8123.0]}, "'num_samples' must be 1 positive integer"),
    ({"spec.hop_length": 0}, "spec 'hop_length' must be a positive integer"),
    ({"spec.sample_rate": "16000"}, "spec 'sample_rate' must be a positive integer"),
    ({"spec.channels": True}, "spec 'channels' must be a positive integer"),
    ({"spec.codebook_sizes": [1024, "x"]}, "'codebook_sizes' must be a list"),
    ({"spec.codebook_sizes": [1024] * 3}, "9 codebook levels but the codec has 3"),
    ({"spec.family": None}, "'family' and 'fingerprint' must be strings"),
    ({"spec": [1]}, "'spec' is not an object"),
    ({"shape": [1, 9]}, "'shape' must be [B, K, T]"),
    ({"shape": [1, 9, -26]}, "'shape' must be [B, K, T]"),
    ({"bits": 12}, "'bits' is 12"),
    ({"bits": "10"}, "'bits' is '10'"),
    ({"crc32": -1}, "'crc32' must be an unsigned 32-bit integer"),
    ({"codec_ref": 5}, "'codec_ref' must be a string"),
    ({"meta": []}, "'meta' must be an object"),
    ({"num_samples": None}, "'num_samples' must be 1 positive integer"),
    ({"-lengths": None}, "'lengths' is missing"),
]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("change, match", BAD_HEADERS, ids=[m for _, m in BAD_HEADERS])
def test_invalid_header_fields_are_one_line_errors(tmp_path, version, change, match):
    header, payload = _v1_parts(tmp_path)
    for key, value in change.items():
        if key.startswith("-"):
            del header[key[1:]]
        elif key.startswith("spec."):
            header["spec"][key[5:]] = value
        else:
            header[key] = value
    path = tmp_path / "bad.atok"
    (_write_v1 if version == 1 else _write_v2)(path, header, payload)
    for read in (Tokens.load, read_header):
        with pytest.raises(TokenFileError, match="invalid token header") as err:
            read(path)
        assert match in str(err.value) and "\n" not in str(err.value)


def test_saving_an_inconsistent_header_is_refused(tmp_path):
    t = make(batch=1)
    t.num_samples = torch.tensor([5])  # 5 samples cannot take 37 frames
    with pytest.raises(TokenFileError, match="the header says 37"):
        t.save(tmp_path / "a.atok")
    assert not list(tmp_path.iterdir())


def test_header_length_beyond_the_file(tmp_path):
    make().save(tmp_path / "a.atok")
    data = bytearray((tmp_path / "a.atok").read_bytes())
    struct.pack_into("<I", data, 6, 2**32 - 1)
    (tmp_path / "b.atok").write_bytes(bytes(data))
    for read in (Tokens.load, read_header):
        with pytest.raises(TokenFileError, match="header cut short"):
            read(tmp_path / "b.atok")
