"""IDX files (the format of the MNIST data): read and write, gzip-compressed or raw.

Layout, all integers big-endian (http://yann.lecun.com/exdb/mnist/):

    offset 0     2 bytes    zero
    offset 2     1 byte     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                            0x0D float32, 0x0E float64
    offset 3     1 byte     number of dimensions D (1..4 accepted here)
    offset 4     4*D bytes  the D sizes, uint32 each
    offset 4+4D             prod(sizes) items of the type, C order, nothing after them

Gzip is recognised by its magic bytes 1f 8b, not by the file name. Every format error is a
ValueError whose message starts with the file's path; a missing file is FileNotFoundError.
"""

from __future__ import annotations

import gzip as _gzip
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian dtype as stored in the file.
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_DTYPE = {dt.newbyteorder("="): code for code, dt in TYPE_CODES.items()}

MAX_DIMS = 4


def is_gzip(path: str | os.PathLike) -> bool:
    """True if the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def read_payload(path: str | os.PathLike) -> bytes:
    """The file's IDX bytes: decompressed if it is gzip, as stored otherwise."""
    data = Path(path).read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return _gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt gzip data ({type(e).__name__}: {e})") from e


def parse_idx(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode uncompressed IDX bytes into a native-byte-order array (a copy, writable).

    ``path`` only names the source in error messages.
    """
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the header")
    zero, code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file: magic starts with {zero.hex()}, expected 0000"
            " (a compressed file other than gzip?)"
        )
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in TYPE_CODES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}, expected one of {known}")
    if not 1 <= ndim <= MAX_DIMS:
        raise ValueError(f"{path}: IDX header gives {ndim} dimensions, expected 1..{MAX_DIMS}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated IDX header: expected {header} bytes for {ndim} dimensions,"
            f" got {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = TYPE_CODES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes after the data"
        raise ValueError(
            f"{path}: {what}: shape {shape} of {dtype.newbyteorder('=')} needs {expected}"
            f" bytes of data after the {header}-byte header, got {got}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a native-byte-order NumPy array."""
    return parse_idx(read_payload(path), path)


def encode_idx(array: np.ndarray) -> bytes:
    """The uncompressed IDX bytes of ``array`` (dtype uint8, int8, int16, int32, float32 or
    float64, 1 to 4 dimensions)."""
    arr = np.asarray(array)
    code = _CODE_OF_DTYPE.get(arr.dtype.newbyteorder("="))
    if code is None:
        allowed = ", ".join(str(dt.newbyteorder("=")) for dt in TYPE_CODES.values())
        raise ValueError(f"IDX cannot store dtype {arr.dtype}; expected one of {allowed}")
    if not 1 <= arr.ndim <= MAX_DIMS:
        raise ValueError(f"IDX arrays need 1..{MAX_DIMS} dimensions, got shape {arr.shape}")
    if any(d > 0xFFFFFFFF for d in arr.shape):
        raise ValueError(f"IDX sizes are uint32; shape {arr.shape} is too large")
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.ascontiguousarray(arr, dtype=TYPE_CODES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, gzip: bool = False) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed if asked; atomic (temp file + rename)."""
    data = encode_idx(array)
    if gzip:
        data = _gzip.compress(data, compresslevel=6, mtime=0)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
