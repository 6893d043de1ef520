"""Numba's cache must not serve kernels compiled from an older version of an inlined file."""

import os
import re
from pathlib import Path

from rnnfast import _cacheguard


def _fake_package(tmp_path):
    pkg = tmp_path / "rnnfast"
    (pkg / "cells").mkdir(parents=True)
    (pkg / "cpu" / "__pycache__").mkdir(parents=True)
    (pkg / "cells" / "_math.py").write_text("x = 1\n")
    (pkg / "cpu" / "_kernels.py").write_text("y = 2\n")
    return pkg


def _cached(pkg):
    c = pkg / "cpu" / "__pycache__"
    (c / "_kernels.forward_kernel-1.py311.nbi").write_text("index")
    (c / "_kernels.forward_kernel-1.py311.1.nbc").write_text("code")
    return c


def test_purges_when_any_source_changes(tmp_path, monkeypatch):
    pkg = _fake_package(tmp_path)
    monkeypatch.setattr(_cacheguard, "_PACKAGE", pkg)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    cache = _cached(pkg)
    assert _cacheguard.ensure_fresh()  # no stamp yet: purge, then stamp
    assert not list(cache.glob("*.nb*"))
    _cached(pkg)
    assert not _cacheguard.ensure_fresh()  # unchanged sources keep the cache
    assert len(list(cache.glob("*.nb*"))) == 2
    src = pkg / "cells" / "_math.py"
    src.write_text("x = 3\n")  # an inlined file changes, not the cached function's file
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _cacheguard.ensure_fresh()
    assert not list(cache.glob("*.nb*"))


def test_purges_a_user_cache_dir(tmp_path, monkeypatch):
    pkg = _fake_package(tmp_path / "src")
    user = tmp_path / "numba-cache"
    mirrored = user / "work" / "rnnfast" / "cpu"
    mirrored.mkdir(parents=True)
    (mirrored / "k.nbi").write_text("index")
    other = user / "someone-else"
    other.mkdir()
    (other / "k.nbi").write_text("index")
    monkeypatch.setattr(_cacheguard, "_PACKAGE", pkg)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(user))
    assert _cacheguard.ensure_fresh()
    assert not (mirrored / "k.nbi").exists()
    assert (other / "k.nbi").exists()  # only rnnfast's entries are touched


def test_an_edit_outside_the_kernels_keeps_the_cache(tmp_path, monkeypatch):
    pkg = _fake_package(tmp_path)
    (pkg / "cli.py").write_text("z = 1\n")
    monkeypatch.setattr(_cacheguard, "_PACKAGE", pkg)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    _cacheguard.ensure_fresh()
    cache = _cached(pkg)
    cli = pkg / "cli.py"
    cli.write_text("z = 22\n")
    st = cli.stat()
    os.utime(cli, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not _cacheguard.ensure_fresh()
    assert len(list(cache.glob("*.nb*"))) == 2


_JITTED = re.compile(r"@(?:numba\.)?(?:njit|jit|cuda\.jit|intrinsic|overload|vectorize)\b|"
                     r"\b(?:njit|cuda\.jit)\(")  # fmt: skip
_IMPORT = re.compile(r"^from (rnnfast(?:\.\w+)*) import|^import (rnnfast(?:\.\w+)*)", re.M)


def test_every_module_with_compiled_code_is_fingerprinted():
    """A module defining jitted functions, and each rnnfast module it imports (whose functions
    it may inline or whose constants it may freeze into machine code), is in KERNEL_SOURCES."""
    package = Path(_cacheguard.__file__).resolve().parent
    covered = set(_cacheguard.kernel_sources(package))
    jitted = [p for p in package.rglob("*.py") if _JITTED.search(p.read_text())]
    assert package / "cpu" / "_kernels.py" in jitted
    for path in jitted:
        assert path in covered, path
        for m in _IMPORT.finditer(path.read_text()):
            parts = (m.group(1) or m.group(2)).split(".")[1:]
            target = package.joinpath(*parts)
            module = target / "__init__.py" if target.is_dir() else target.with_suffix(".py")
            assert module in covered, f"{path.relative_to(package)} imports {module}"
