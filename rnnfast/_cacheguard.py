"""Keep Numba's on-disk cache consistent with the source of the whole package.

Numba's cache=True keys a cached kernel on the source file of the compiled function only.
The drivers in rnnfast/cpu/ inline functions from rnnfast/cells/ and rnnfast/_blas.py, so an
edit there (or a `git pull` in an editable install) would leave stale machine code that Numba
loads without complaint. Before the kernels are imported, this module compares a fingerprint
of every .py file of the package (path, size, mtime) with the one stored next to the cache;
when they differ it deletes rnnfast's cached kernels (*.nbi, *.nbc) so they recompile.
Costs one stat per source file per process.
"""

import hashlib
import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_STAMP = "rnnfast-sources.fingerprint"


def fingerprint() -> str:
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
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
