"""Keep Numba's on-disk cache consistent with the sources of the compiled code.

Numba's cache=True keys a cached kernel on the source file of the compiled function only.
The drivers in rnnfast/cpu/ inline functions from rnnfast/cells/ and rnnfast/_blas.py and
read constants from rnnfast/codes.py, so an edit there (or a `git pull` in an editable
install) would leave stale machine code that Numba loads without complaint. Before the
kernels are imported, this module compares a fingerprint of the compiled code's sources
(KERNEL_SOURCES: path, size, mtime) with the one stored next to the cache; when they differ it
deletes rnnfast's cached kernels (*.nbi, *.nbc) so they recompile. Only those sources: an
edit of the command line or the store must not cost a cold compile of every kernel (minutes
on 2 cores). tests/test_cacheguard.py checks that every module holding jitted code, and every
rnnfast module such a module imports, is covered. Costs one stat per source file per process.
"""

import hashlib
import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_STAMP = "rnnfast-sources.fingerprint"
# Package-relative files and folders whose code is compiled or read by compiled code: the
# kernels and what they inline, the code numbers they branch on, the Data tuple they take,
# the parameter layout the CUDA entry points import. Not the pure-Python drivers beside them
# (rnnfast/cpu/__init__.py, trainer.py, _split.py, _workspace.py): tuning a thread policy
# must not cost a cold compile.
KERNEL_SOURCES = ("cells", "cuda", "cpu/_chunks.py", "cpu/_head.py", "cpu/_kernels.py",
                  "cpu/_linalg.py", "cpu/_train.py", "cpu/_transpose.py", "_blas.py",
                  "_finite.py", "codes.py", "optim.py", "params.py", "seqdata.py")  # fmt: skip


def kernel_sources(package: Path | None = None) -> list[Path]:
    """The .py files KERNEL_SOURCES names, sorted."""
    package = _PACKAGE if package is None else package
    files = []
    for name in KERNEL_SOURCES:
        p = package / name
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else []
    return sorted(files)


def fingerprint() -> str:
    h = hashlib.sha256()
    for path in kernel_sources():
        st = path.stat()
        h.update(f"{path.relative_to(_PACKAGE)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _cache_dirs() -> list[Path]:
    dirs = [p for p in _PACKAGE.rglob("__pycache__") if p.is_dir()]
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user and Path(user).is_dir():
        dirs += [p for p in Path(user).rglob("*") if p.is_dir() and "rnnfast" in p.parts]
    return dirs


def ensure_fresh() -> bool:
    """Purge cached kernels if the sources changed since they were cached; True if purged."""
    current = fingerprint()
    stamp = _PACKAGE / "__pycache__" / _STAMP
    try:
        if stamp.read_text() == current:
            return False
    except OSError:
        pass
    for d in _cache_dirs():
        for f in list(d.glob("*.nbi")) + list(d.glob("*.nbc")):
            try:
                f.unlink()
            except OSError:
                pass  # another process got there first, or a read-only install
    try:
        stamp.parent.mkdir(exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(current)
        os.replace(tmp, stamp)
    except OSError:
        pass
    return True
