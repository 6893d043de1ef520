"""The IDX reader and writer: round trips, gzip detection by content, and every rejection."""

import gzip
import struct

import numpy as np
import pytest

from rnnfast.tasks.idx import encode_idx, is_gzip, parse_idx, read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(0,), (7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]


def sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path, dtype, shape, compress):
    a = sample(dtype, shape)
    path = write_idx(tmp_path / "a.idx", a, gzip=compress)
    assert is_gzip(path) == compress
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == shape
    np.testing.assert_array_equal(a, b)
    b[...] = 0  # a writable copy
    assert not list(tmp_path.glob("*.part"))


def test_big_endian_on_disk_and_input(tmp_path):
    a = np.array([1, -2, 300], dtype=">i2")
    data = encode_idx(a)
    assert data == bytes([0, 0, 0x0B, 1, 0, 0, 0, 3]) + a.astype(">i2").tobytes()
    assert data == encode_idx(a.astype("<i2"))
    np.testing.assert_array_equal(parse_idx(data), a)


def test_gzip_detected_by_content_not_name(tmp_path):
    a = sample(np.uint8, (4, 3))
    gz = write_idx(tmp_path / "looks-raw", a, gzip=True)
    raw = write_idx(tmp_path / "looks-compressed.gz", a, gzip=False)
    np.testing.assert_array_equal(read_idx(gz), a)
    np.testing.assert_array_equal(read_idx(raw), a)


def test_known_header(tmp_path):
    # MNIST's label file header: magic 0x00000801, then 60000.
    path = tmp_path / "labels"
    path.write_bytes(struct.pack(">II", 0x801, 3) + bytes([5, 0, 4]))
    np.testing.assert_array_equal(read_idx(path), [5, 0, 4])


def write_raw(tmp_path, data, compress=False, name="bad.idx"):
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


GOOD = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))  # header 16 bytes


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "data, match",
    [
        (GOOD[:-1], "truncated: shape \\(2, 3, 4\\) of uint8 needs 24 bytes .* got 23"),
        (GOOD[:16], "truncated: .*needs 24 bytes .* got 0"),
        (GOOD[:10], "truncated IDX header: expected 16 bytes for 3 dimensions, got 10"),
        (GOOD[:3], "shorter than the header"),
        (b"", "shorter than the header"),
        (GOOD + b"\x00", "trailing bytes after the data: .*needs 24 bytes .* got 25"),
        (b"\x00\x01" + GOOD[2:], "magic starts with 0001, expected 0000"),
        (b"PK\x03\x04" + GOOD[4:], "magic starts with 504b"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX type code 0x0A"),
        (GOOD[:2] + b"\x10" + GOOD[3:], "unknown IDX type code 0x10"),
        (GOOD[:3] + b"\x00" + GOOD[4:], "0 dimensions, expected 1..4"),
        (GOOD[:3] + b"\x05" + GOOD[4:], "5 dimensions, expected 1..4"),
    ],
)
def test_rejects_malformed(tmp_path, data, match, compress):
    path = write_raw(tmp_path, data, compress)
    with pytest.raises(ValueError, match=match) as e:
        read_idx(path)
    assert str(e.value).startswith(str(path))


def test_rejects_wider_type_truncation(tmp_path):
    data = encode_idx(np.zeros((5, 2), np.float64))
    path = write_raw(tmp_path, data[:-4])
    with pytest.raises(ValueError, match="of float64 needs 80 bytes .* got 76"):
        read_idx(path)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda gz: gz[: len(gz) // 2],  # truncated stream
        lambda gz: gz[:12] + bytes(b ^ 0xFF for b in gz[12:30]) + gz[30:],  # corrupt deflate
        lambda gz: gz[:-8] + b"\x00" * 4 + gz[-4:],  # wrong CRC
        lambda gz: gz[:2] + b"\x07" + gz[3:],  # unknown compression method
        lambda gz: gz + b"garbage",  # trailing junk after the gzip member
    ],
    ids=["truncated", "deflate", "crc", "method", "trailing"],
)
def test_rejects_corrupt_gzip(tmp_path, mangle):
    gz = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)), mtime=0)
    path = write_raw(tmp_path, mangle(gz), name="data.gz")
    with pytest.raises(ValueError, match="corrupt gzip") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros(3, np.uint16), "cannot store dtype uint16"),
        (np.zeros(3, np.int64), "cannot store dtype int64"),
        (np.zeros(3, bool), "cannot store dtype bool"),
        (np.float32(1.0), "1..4 dimensions, got shape \\(\\)"),
        (np.zeros((1,) * 5, np.uint8), "1..4 dimensions"),
    ],
)
def test_write_rejects(tmp_path, array, match):
    with pytest.raises(ValueError, match=match):
        write_idx(tmp_path / "x", array)
    assert not list(tmp_path.iterdir())
