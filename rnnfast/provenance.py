"""Where and with what a run ran: code version, library versions, machine, threads, GPU.

collect() returns a flat, JSON-serialisable dict (only "thread_env" and "blas" nest):

    rnnfast, git_commit, git_dirty            the package version; the commit and dirty flag
                                              of the git checkout holding the package (None
                                              when it is not in one, or git is missing/slow)
    source_sha256                             SHA-256 of the package's .py sources (each
                                              relative path and content, sorted): which code
                                              made a run, also after a non-editable install
    python, numpy, numba, scipy, pandas, pyarrow, numba_cuda   versions (None if absent)
    os, platform, machine, hostname
    cpu, cpu_count, cpu_affinity              CPU model, logical cores, cores this process may use
    numba_threads, numba_threading_layer      threads Numba's parallel code uses (threads= when
                                              the caller pinned it); layer once initialised
    thread_env                                NUMBA/OMP/OPENBLAS/MKL_NUM_THREADS as set
    blas, blas_threads                        threadpoolctl's view of the BLAS/OpenMP pools
                                              (None without threadpoolctl); largest BLAS pool
    gpu                                       nvidia-smi's GPU names joined by ", ", else None
    data.<key>.name / .size / .sha256         each data file a run's config names (data_files)

Nothing here raises: every probe falls back to None. git and nvidia-smi run once per process
(cached), each with a short timeout.
"""

import functools
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent
TIMEOUT_S = 5.0
_THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_VERSIONS = ("numpy", "numba", "scipy", "pandas", "pyarrow", "numba-cuda")


def _run(args: list[str], cwd: Path | None = None) -> str | None:
    """stdout of a command, or None if it is missing, fails or times out."""
    try:
        p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S,
                           stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_info(package_dir: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout that tracks package_dir/__init__.py, else (None, None).

    Requiring the package's own file to be tracked keeps an installed copy inside some
    unrelated repository (a venv under a checkout) from claiming that repository's commit.
    Dirty means modified tracked files or untracked, non-ignored files.
    """
    if _run(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=package_dir) is None:
        return None, None
    commit = _run(["git", "rev-parse", "HEAD"], cwd=package_dir)
    if commit is None:
        return None, None
    status = _run(["git", "status", "--porcelain"], cwd=package_dir)
    return commit.strip(), (None if status is None else bool(status.strip()))


@functools.lru_cache(maxsize=1)
def source_sha256(package_dir: Path = _PACKAGE_DIR) -> str | None:
    """SHA-256 over the package's .py files (relative path and bytes, in sorted order)."""
    h = hashlib.sha256()
    try:
        for path in sorted(package_dir.rglob("*.py")):
            h.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    except OSError:
        return None
    return h.hexdigest()


def code() -> tuple[str, str | None]:
    """(rnnfast version, source_sha256): the code running now, as a run records it."""
    from rnnfast import __version__  # noqa: PLC0415

    return __version__, source_sha256()


@functools.lru_cache(maxsize=1)
def gpu_name() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    names = [line.strip() for line in (out or "").splitlines() if line.strip()]
    return ", ".join(names) or None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        out = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if out and out.strip():
            return out.strip()
    return platform.processor() or None


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _VERSIONS:
        try:
            out[name.replace("-", "_")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name.replace("-", "_")] = None
    return out


def _numba_threads(threads: int | None) -> tuple[int | None, str | None]:
    try:
        import numba  # noqa: PLC0415
        from numba.np.ufunc import parallel  # noqa: PLC0415
    except ImportError:
        return threads, None
    if not parallel._is_initialized:  # asking would start the thread pool: report the config
        return (threads if threads is not None else numba.config.NUMBA_NUM_THREADS), None
    try:
        return (threads if threads is not None else numba.get_num_threads(),
                numba.threading_layer())  # fmt: skip
    except Exception:  # noqa: BLE001 - provenance never fails a run
        return threads, None


def _blas() -> tuple[list[dict[str, Any]] | None, int | None]:
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415

        pools = threadpool_info()
    except Exception:  # noqa: BLE001 - optional dependency; any failure means "unknown"
        return None, None
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer",
            "architecture", "filepath")  # fmt: skip
    pools = [{k: p.get(k) for k in keys if k in p} for p in pools]
    blas = [p["num_threads"] for p in pools if p.get("user_api") == "blas"]
    return pools, (max(blas) if blas else None)


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def collect(threads: int | None = None) -> dict[str, Any]:
    """Provenance of the current process; threads = the Numba thread count pinned, if known."""
    from rnnfast import __version__  # noqa: PLC0415

    commit, dirty = git_info(_PACKAGE_DIR)
    numba_threads, layer = _numba_threads(threads)
    blas, blas_threads = _blas()
    return {
        "rnnfast": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "source_sha256": source_sha256(),
        "python": platform.python_version(),
        **_versions(),
        "os": platform.system(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": _affinity(),
        "numba_threads": numba_threads,
        "numba_threading_layer": layer,
        "thread_env": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
        "blas": blas,
        "blas_threads": blas_threads,
        "gpu": gpu_name(),
    }


_SHA_CACHE: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, cached by path, size and modification time; ValueError (one
    line naming the file) if it cannot be read."""
    p = Path(path).resolve()
    try:
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if key not in _SHA_CACHE:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            _SHA_CACHE[key] = h.hexdigest()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    return _SHA_CACHE[key]


def data_files(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {name, size, sha256}} of the data files a resolved config names (its task's
    data_files, keyed by the config key that names each); {} when none or unreadable."""
    from rnnfast.tasks import get_task  # noqa: PLC0415

    try:
        task = get_task(config["task"])
        files = set(task.data_files(config))
        out = {}
        for key in task.location_keys:
            path = config.get(key)
            if path is not None and path in files:
                out[key] = {"name": Path(path).name, "size": Path(path).stat().st_size,
                            "sha256": file_sha256(path)}  # fmt: skip
        return out
    except (ValueError, OSError, KeyError):
        return {}
