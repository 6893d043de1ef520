"""A strict reader of the UEA/UCR time-series archive's ``.ts`` text format.

The format (timeseriesclassification.com; aeon/sktime's ``load_from_ts_file``), UTF-8 text with
unix or windows line endings:

    # comment lines start with '#'
    @problemName JapaneseVowels
    @timeStamps false              timestamped series are rejected here
    @missing false
    @univariate false
    @dimensions 12                 optional
    @equalLength false
    @seriesLength 29               optional, meaningful with @equalLength true
    @classLabel true 1 2 3 ...     or "@classLabel false" ...
    @targetLabel true              ... with a real-valued target (regression)
    @data
    1.86,1.89,...:-0.21,-0.19,...:1

Header keys and true/false are case-insensitive. After ``@data`` each non-blank line is one
case: its dimensions separated by ``:``, the values of a dimension by ``,``; the last
``:``-field is the class label (one of @classLabel's list) or the real target. All dimensions
of a case have the same length; cases may differ in length unless @equalLength is true.

Strict: anything the reader cannot represent exactly is a ValueError with a one-line message
naming the file and, where there is one, the line: missing values (``?``, NaN), inf,
timestamps, unlabelled data, unknown headers, a dimension or label that does not fit. The
result keeps each case as a (T_i, D) float64 array, time-major as rnnfast's sequences are.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_BOOL = {"true": True, "false": False}
_KNOWN_HEADERS = (
    "problemname",
    "timestamps",
    "missing",
    "univariate",
    "dimensions",
    "equallength",
    "serieslength",
    "classlabel",
    "targetlabel",
    "data",
)
_MISSING = "missing values are not supported; fill or drop them first"


@dataclass
class TsData:
    """The cases of one .ts file."""

    series: list[np.ndarray]  # one (T_i, D) float64 array per case, row t = step t
    lengths: np.ndarray  # (N,) int64, T_i
    labels: np.ndarray  # (N,) int64 class ids 0..K-1 (order of class_names), or float64 targets
    class_names: list[str] | None  # @classLabel's list; None for regression
    problem_name: str | None

    def padded(self, dtype=np.float64) -> np.ndarray:
        """(N, T_max, D) array, each case right-padded with zeros (``lengths`` says where)."""
        n = len(self.series)
        t_max = int(self.lengths.max()) if n else 0
        d = self.series[0].shape[1] if n else 0
        out = np.zeros((n, t_max, d), dtype=dtype)
        for i, s in enumerate(self.series):
            out[i, : s.shape[0]] = s
        return out


class _Header:
    """What the lines before @data said (None: not given)."""

    def __init__(self) -> None:
        self.problem_name: str | None = None
        self.univariate: bool | None = None
        self.dimensions: int | None = None
        self.equal_length: bool | None = None
        self.series_length: int | None = None
        self.class_names: list[str] | None = None
        self.class_label: bool | None = None
        self.target_label: bool | None = None
        self.seen: set[str] = set()


def read_ts(path: str | os.PathLike) -> TsData:
    """Read a .ts file (see the module docstring); ValueError, one line, on anything wrong."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except OSError as e:
        raise ValueError(f"{where}: cannot read ({e.strerror or e})") from None
    try:
        # utf-8-sig: files saved by some Windows editors start with a byte-order mark.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"{where} line {line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None

    # split("\n") rather than splitlines(): splitlines also breaks at \x0c, \x1c, \u2028 ...,
    # which would shift the line numbers the errors report.
    lines = text.split("\n")
    header = _Header()
    data_at = None
    for i, line in enumerate(lines):
        s = line.strip()  # also drops the \r of windows line endings
        if not s or s.startswith("#"):
            continue
        if not s.startswith("@"):
            raise ValueError(f"{where} line {i + 1}: data before @data")
        if _read_header_line(s, header, where, i + 1):
            data_at = i
            break
    if data_at is None:
        raise ValueError(f"{where}: no @data line")
    _check_header(header, where, data_at + 1)

    return _read_cases(lines, data_at + 1, header, where)


def _read_header_line(s: str, h: _Header, where: str, n: int) -> bool:
    """Record one header line in ``h``; True if it is @data."""
    at = f"{where} line {n}"
    tokens = s.split()
    key = tokens[0][1:].lower()
    args = tokens[1:]
    if key not in _KNOWN_HEADERS:
        raise ValueError(f"{at}: unknown header {tokens[0]}")
    if key in h.seen:
        raise ValueError(f"{at}: {tokens[0]} given twice")
    h.seen.add(key)

    def flag() -> bool:
        if not args or args[0].lower() not in _BOOL:
            raise ValueError(f"{at}: {tokens[0]} needs true or false, got {' '.join(args)!r}")
        if key != "classlabel" and len(args) > 1:
            raise ValueError(f"{at}: {tokens[0]} takes one value, got {' '.join(args)!r}")
        return _BOOL[args[0].lower()]

    def count() -> int:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise ValueError(f"{at}: {tokens[0]} needs a positive integer, got {' '.join(args)!r}")
        return int(args[0])

    if key == "data":
        if args:
            raise ValueError(f"{at}: @data takes no values; the cases start on the next line")
        return True
    if key == "problemname":
        if not args:
            raise ValueError(f"{at}: {tokens[0]} needs a name")
        h.problem_name = " ".join(args)
    elif key == "timestamps":
        if flag():
            raise ValueError(f"{at}: timestamped series are not supported")
    elif key == "missing":
        # @missing true is allowed: only an actual '?' or NaN in the data is rejected.
        flag()
    elif key == "univariate":
        h.univariate = flag()
    elif key == "dimensions":
        h.dimensions = count()
    elif key == "equallength":
        h.equal_length = flag()
    elif key == "serieslength":
        h.series_length = count()
    elif key == "classlabel":
        h.class_label = flag()
        names = args[1:]
        if h.class_label:
            if not names:
                raise ValueError(f"{at}: @classLabel true needs the list of class labels")
            dup = sorted({c for c in names if names.count(c) > 1})
            if dup:
                raise ValueError(f"{at}: @classLabel lists {', '.join(dup)} more than once")
            h.class_names = names
        elif names:
            raise ValueError(f"{at}: @classLabel false takes no labels, got {' '.join(names)!r}")
    elif key == "targetlabel":
        h.target_label = flag()
    return False


def _check_header(h: _Header, where: str, n: int) -> None:
    at = f"{where} line {n}"
    if h.class_label and h.target_label:
        raise ValueError(f"{at}: both @classLabel true and @targetLabel true")
    if not h.class_label and not h.target_label:
        raise ValueError(
            f"{at}: neither @classLabel true nor @targetLabel true; unlabelled data is not"
            " supported"
        )
    if h.univariate and h.dimensions is not None and h.dimensions != 1:
        raise ValueError(f"{at}: @univariate true but @dimensions {h.dimensions}")


def _read_cases(lines: list[str], start: int, h: _Header, where: str) -> TsData:
    classify = bool(h.class_label)
    class_ids = {c: k for k, c in enumerate(h.class_names)} if classify else {}
    want_dims = 1 if h.univariate else h.dimensions  # None: the first case decides
    dims_from = "@univariate true" if h.univariate else f"@dimensions {h.dimensions}"
    want_len = h.series_length if h.equal_length else None
    len_from = "@seriesLength"

    series: list[np.ndarray] = []
    labels: list[float | int] = []
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if not s or s.startswith("#"):
            continue
        at = f"{where} line {i + 1}"
        if s.startswith("@"):
            raise ValueError(f"{at}: header {s.split()[0]} after @data")
        # Before splitting at ':', which timestamps like (2007-01-01 00:00:00,1.0) contain.
        if "(" in (s.rpartition(":")[0] or s):
            raise ValueError(f"{at}: timestamped series are not supported")
        fields = s.split(":")
        if len(fields) < 2:
            what = "class label" if classify else "target"
            raise ValueError(f"{at}: no {what} (expected VALUES:LABEL, no ':' on the line)")
        label = fields[-1].strip()
        if classify:
            if label == "?":
                raise ValueError(f"{at}: class label: {_MISSING}")
            if label not in class_ids:
                hint = " (a line without its label?)" if "," in label else ""
                listed = " ".join(h.class_names or [])
                raise ValueError(
                    f"{at}: class label {label!r} is not in @classLabel's list ({listed}){hint}"
                )
            labels.append(class_ids[label])
        else:
            labels.append(_target(label, at))

        dims = fields[:-1]
        if want_dims is None:
            want_dims, dims_from = len(dims), f"as the first case, line {i + 1}"
        if len(dims) != want_dims:
            raise ValueError(
                f"{at}: expected {want_dims} dimensions, got {len(dims)} ({dims_from})"
            )
        x = _case(dims, at)
        if want_len is None and h.equal_length:
            want_len, len_from = x.shape[0], f"the first case (line {i + 1})"
        if want_len is not None and x.shape[0] != want_len:
            raise ValueError(
                f"{at}: @equalLength true but the series has {x.shape[0]} steps,"
                f" {len_from} {want_len}"
            )
        series.append(x)

    if not series:
        raise ValueError(f"{where}: no cases after @data (line {start})")
    return TsData(
        series=series,
        lengths=np.array([x.shape[0] for x in series], dtype=np.int64),
        labels=np.array(labels, dtype=np.int64 if classify else np.float64),
        class_names=list(h.class_names) if classify and h.class_names else None,
        problem_name=h.problem_name,
    )


def _case(dims: list[str], at: str) -> np.ndarray:
    """The (T, D) float64 array of one case's dimension fields."""
    parts = []
    for d, field in enumerate(dims):
        if not field.strip():
            raise ValueError(f"{at}: dimension {d + 1} is an empty series")
        parts.append(field.split(","))
    t = len(parts[0])
    for d, p in enumerate(parts[1:], start=2):
        if len(p) != t:
            raise ValueError(
                f"{at}: dimensions of unequal length: dimension 1 has {t} values,"
                f" dimension {d} has {len(p)}"
            )
    flat = [v for p in parts for v in p]
    body = ":".join(dims)
    x = None
    # float() and numpy's string cast also take '1_000' and non-ASCII digits; the format has
    # neither, so such lines go through the strict per-value pass.
    if body.isascii() and "_" not in body:
        try:
            # One conversion for the whole case: numpy parses the strings itself (fast).
            x = np.array(flat, dtype=np.float64)
        except ValueError:
            pass
    if x is None:
        # Slow path, only to name the offending value (or to parse what numpy refused).
        x = np.array(
            [
                _value(v, f"{at}: dimension {j // t + 1}, value {j % t + 1}")
                for j, v in enumerate(flat)
            ],
            dtype=np.float64,
        )
    if not np.isfinite(x).all():
        j = int(np.flatnonzero(~np.isfinite(x))[0])
        _value(flat[j], f"{at}: dimension {j // t + 1}, value {j % t + 1}")
    # Stored dimension-major (D, T); rnnfast's sequences are time-major (T, D).
    return np.ascontiguousarray(x.reshape(len(parts), t).T)


def _value(v: str, at: str) -> float:
    """Parse one number strictly: ASCII decimal/exponent notation, finite, not missing."""
    s = v.strip()
    if s == "?" or s.lower() in ("nan", "+nan", "-nan"):
        raise ValueError(f"{at}: {_MISSING}")
    if not s:
        raise ValueError(f"{at}: empty value")
    # float() alone would also take '1_000' and non-ASCII digits; the format has neither.
    try:
        if not s.isascii() or "_" in s:
            raise ValueError
        x = float(s)
    except ValueError:
        raise ValueError(f"{at}: {v.strip()!r} is not a number") from None
    if math.isnan(x):
        raise ValueError(f"{at}: {_MISSING}")
    if not math.isfinite(x):
        raise ValueError(f"{at}: non-finite value {s!r}")
    return x


def _target(label: str, at: str) -> float:
    return _value(label, f"{at}: target")
