"""Token files: bit-packed round trips and every way a file can be wrong."""

import struct

import pytest
import torch

from audiotok.errors import TokenFileError
from audiotok.tokens import CodecSpec, Tokens, read_header


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
    with pytest.raises(TokenFileError, match="version 7; this audiotok reads version 1"):
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
