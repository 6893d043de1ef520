"""The MNIST files: where they live, loading and checking them, installing and downloading them.

A data directory holds the four official IDX files, each gzip-compressed or raw, named as
published (``train-images-idx3-ubyte.gz`` or ``train-images-idx3-ubyte``; the dotted spelling
``train-images.idx3-ubyte`` of some copies is accepted too). Files are verified by the SHA-256 of
their decompressed IDX bytes, so a re-compressed copy of the official data still verifies.

Where the data is looked for (``locate``): the ``data_dir`` argument (the config key) if given,
else ``$RNNFAST_DATA/mnist``, else a per-user cache directory: ``$XDG_CACHE_HOME/rnnfast/mnist``
or ``~/.cache/rnnfast/mnist`` on Linux, ``~/Library/Caches/rnnfast/mnist`` on macOS and
``%LOCALAPPDATA%\\rnnfast\\mnist`` on Windows. ``download`` and ``install_from`` put files there.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from rnnfast.tasks.idx import is_gzip, parse_idx, read_payload


@dataclass(frozen=True)
class MnistFile:
    key: str  # key in load_mnist's result
    name: str  # official file name without .gz
    sha256: str  # of the decompressed IDX bytes
    shape: tuple[int, ...]  # of the official file (load_mnist accepts any count N)


FILES: dict[str, MnistFile] = {
    f.key: f
    for f in (
        MnistFile(
            "train_images",
            "train-images-idx3-ubyte",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            (60000, 28, 28),
        ),
        MnistFile(
            "train_labels",
            "train-labels-idx1-ubyte",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            (60000,),
        ),
        MnistFile(
            "test_images",
            "t10k-images-idx3-ubyte",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            (10000, 28, 28),
        ),
        MnistFile(
            "test_labels",
            "t10k-labels-idx1-ubyte",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            (10000,),
        ),
    )
}

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_CHUNK = 1 << 16


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum."""


# ---------------------------------------------------------------------------- locating files


def default_dir() -> Path:
    """$RNNFAST_DATA/mnist if RNNFAST_DATA is set, else the per-user cache directory."""
    root = os.environ.get("RNNFAST_DATA")
    if root:
        return Path(root).expanduser() / "mnist"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "rnnfast" / "mnist"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "rnnfast" / "mnist"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "rnnfast" / "mnist"


def locate(data_dir: str | os.PathLike | None = None) -> Path:
    """The MNIST directory: ``data_dir`` if given, else ``default_dir()``. Not created here."""
    return Path(data_dir).expanduser() if data_dir is not None else default_dir()


def _candidates(spec: MnistFile) -> list[str]:
    dotted = spec.name.replace("-idx", ".idx")  # train-images.idx3-ubyte
    return [spec.name + ".gz", spec.name, dotted + ".gz", dotted]


def find_file(directory: Path, spec: MnistFile) -> Path | None:
    """The file of ``spec`` in ``directory`` (first existing spelling), or None."""
    for name in _candidates(spec):
        p = directory / name
        if p.is_file():
            return p
    return None


def _how_to_get() -> str:
    return (
        "Get the data with one of:\n"
        "  rnnfast data mnist              download it from the public mirrors (needs network)\n"
        "  rnnfast data mnist --from DIR   install the four files from a local directory DIR\n"
        f"(both install into {default_dir()}), or point to a directory holding the four files:\n"
        "  the config key / argument data_dir=DIR, or RNNFAST_DATA=ROOT (files in ROOT/mnist)."
    )


def _find_all(directory: Path) -> dict[str, Path]:
    found = {key: find_file(directory, spec) for key, spec in FILES.items()}
    missing = [FILES[k].name + "[.gz]" for k, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"MNIST data not found in {directory}: missing {', '.join(missing)}.\n" + _how_to_get()
        )
    return found  # type: ignore[return-value]


# ---------------------------------------------------------------------------- checksums


def _expected(checksums: Mapping[str, str] | None) -> dict[str, str]:
    sums = {k: spec.sha256 for k, spec in FILES.items()}
    for k, v in (checksums or {}).items():
        if k not in FILES:
            raise ValueError(f"checksums: unknown key {k!r}, expected one of {list(FILES)}")
        sums[k] = v.lower()
    return sums


def payload_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the file's decompressed IDX bytes."""
    return hashlib.sha256(read_payload(path)).hexdigest()


def _check_sha(path: Path, expected: str, data: bytes | None = None) -> None:
    """Raise ValueError naming ``path`` unless its decompressed bytes (``data`` if given,
    else read from ``path``) have the SHA-256 ``expected``."""
    got = hashlib.sha256(read_payload(path) if data is None else data).hexdigest()
    if got != expected:
        raise ValueError(
            f"{path}: SHA-256 of the decompressed data is {got}, expected {expected}"
            " (corrupt, tampered with, or not the official MNIST file)"
        )


# ---------------------------------------------------------------------------- loading


def _check_arrays(arrays: dict[str, np.ndarray], paths: dict[str, Path]) -> None:
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        ipath, lpath = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(
                f"{ipath}: expected images of shape (N, 28, 28) and dtype uint8,"
                f" got {images.shape} {images.dtype}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{lpath}: expected labels of shape (N,) and dtype uint8,"
                f" got {labels.shape} {labels.dtype}"
            )
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(
                f"{ipath} holds {len(images)} images but {lpath} holds {len(labels)} labels;"
                " expected the same number, at least one"
            )
        if labels.max() > 9:
            bad = int(np.argmax(labels > 9))
            raise ValueError(f"{lpath}: label {labels[bad]} at index {bad}, expected 0..9")


def load_mnist(data_dir: str | os.PathLike | None = None, verify: bool = False) -> dict:
    """Load MNIST from ``locate(data_dir)``.

    Returns {"train_images": (N, 28, 28) uint8, "train_labels": (N,) uint8, "test_images",
    "test_labels"}; the official files give N = 60000 and 10000. Any directory with the four
    files in this format works (tiny test fixtures included). ``verify=True`` also checks the
    SHA-256 of the official files. Raises FileNotFoundError (saying how to get the data) when
    files are missing and ValueError naming the file when one is malformed.
    """
    directory = locate(data_dir)
    paths = _find_all(directory)
    arrays = {}
    for key, path in paths.items():
        data = read_payload(path)
        if verify:
            _check_sha(path, FILES[key].sha256, data)
        arrays[key] = parse_idx(data, path)
    _check_arrays(arrays, paths)
    return arrays


# ---------------------------------------------------------------------------- installing


def _temp_in(directory: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    return Path(tmp)


def _put_in_place(tmp: Path, directory: Path, spec: MnistFile) -> Path:
    """Rename a verified temp file to its canonical name; drop other spellings of the same file
    so that they cannot shadow it."""
    target = directory / (spec.name + (".gz" if is_gzip(tmp) else ""))
    os.chmod(tmp, 0o644)  # mkstemp made it 0600; data files are meant to be shared
    os.replace(tmp, target)
    for name in _candidates(spec):
        other = directory / name
        if other != target and other.is_file():
            other.unlink()
    return target


def install_from(
    src_dir: str | os.PathLike,
    dest: str | os.PathLike | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Copy the four MNIST files from ``src_dir`` into ``locate(dest)`` after verifying them.

    Each file (gzip or raw, kept as it is) is copied to a temp name in the destination, its
    decompressed SHA-256 checked, and only when all four pass are they renamed into place.
    ``checksums`` ({key: sha256}) overrides the official sums (for tests). Returns the directory.
    """
    src, directory = Path(src_dir).expanduser(), locate(dest)
    sources = _find_all(src)
    sums = _expected(checksums)
    directory.mkdir(parents=True, exist_ok=True)
    if src.resolve() == directory.resolve():
        for key, path in sources.items():
            _check_sha(path, sums[key])
        return directory
    temps: dict[str, Path] = {}
    try:
        for key, path in sources.items():
            temps[key] = _temp_in(directory, FILES[key].name)
            shutil.copyfile(path, temps[key])
            try:
                _check_sha(temps[key], sums[key])
            except ValueError as e:  # name the source, not the temp copy
                raise ValueError(str(e).replace(str(temps[key]), str(path))) from None
        for key in list(temps):
            _put_in_place(temps.pop(key), directory, FILES[key])
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return directory


# ---------------------------------------------------------------------------- downloading


def _show_progress(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


def _fetch(url: str, out: Path, label: str, timeout: float, progress: bool) -> None:
    """Stream ``url`` into ``out``; raise OSError on a network error or a short read."""
    req = urllib.request.Request(url, headers={"User-Agent": "rnnfast"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(out, "wb") as f:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        show = _show_progress(progress) and total is not None
        bar = click.progressbar(length=total, label=label, file=sys.stderr) if show else None
        received = 0
        with bar if bar is not None else contextlib.nullcontext():
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")


def download(
    dest: str | os.PathLike | None = None,
    mirrors: Sequence[str] = MIRRORS,
    progress: bool = True,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download the four MNIST files into ``locate(dest)`` and return that directory.

    For each file, the mirrors (base URLs; http, https or file) are tried in order. A download
    goes to a temp file in the destination, is verified by the SHA-256 of its decompressed
    content and only then renamed into place; files already present and valid are skipped.
    Progress bars go to stderr when ``progress`` and stderr is a terminal. ``checksums``
    ({key: sha256}) overrides the official sums (for tests). Raises DownloadError listing every
    attempt when no mirror delivers a file.
    """
    directory = locate(dest)
    directory.mkdir(parents=True, exist_ok=True)
    sums = _expected(checksums)
    for key, spec in FILES.items():
        present = find_file(directory, spec)
        if present is not None:
            try:
                _check_sha(present, sums[key])
                continue
            except ValueError:
                pass  # replaced below
        filename = spec.name + ".gz"
        tried = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            tmp = _temp_in(directory, spec.name)
            try:
                _fetch(url, tmp, filename, timeout, progress)
                _check_sha(tmp, sums[key])
                _put_in_place(tmp, directory, spec)
                break
            except (OSError, ValueError, http.client.HTTPException) as e:
                reason = str(e).replace(f"{tmp}: ", "").replace(str(tmp), "the download")
                tried.append(f"  {url}: {reason or type(e).__name__}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise DownloadError(
                f"could not download {filename} into {directory}; tried:\n"
                + "\n".join(tried or ["  (no mirrors given)"])
                + "\nWithout network, install local copies of the four files with"
                " `rnnfast data mnist --from DIR`, or point data_dir / RNNFAST_DATA at a"
                " directory holding them."
            )
    return directory
