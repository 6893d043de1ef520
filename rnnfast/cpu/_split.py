"""How many batch chunks a call runs in parallel, and one BLAS thread while it does.

The kernels can cut the batch into nchunks column ranges and run each range on its own Numba
thread (rnnfast/cpu/_chunks.py). The alternative, one time loop calling a multithreaded
OpenBLAS, makes the threads meet at every small per-step product; the chunks meet once per
forward and twice per backward. While chunks run, each calls BLAS single-threaded (two
threads each asking OpenBLAS for two would oversubscribe the cores), so one_blas_thread()
sets every BLAS library threadpoolctl finds to one thread around the call and restores the
previous counts after it, also on errors: well under 1 us for the two OpenBLAS copies of a
NumPy + SciPy process (direct ctypes calls; threadpoolctl's controllers took about 6 us and
threadpool_limits() about 8 us).
OpenBLAS (pthreads build) called from two threads at once gave the same results as from one
(tests/test_cpu_split.py).

Policy (split_chunks): nchunks = the Numba thread count (numba.get_num_threads(), or the
caller's limit), at most one chunk per MIN_CHUNK_COLUMNS batch columns, and 1 below
SPLIT_MIN_WORK work per call, T * G*H * (H + 8) * B (the recurrent product plus about 8 for
the element-wise work of each gate value). So nchunks is a function of the shapes and the
thread count, and the results depend on (shapes, nchunks) only: which columns a chunk owns and
the order in which the partial weight gradients are added are fixed by nchunks, never by
which thread runs a chunk. Measured crossover (2 cores, float32, forward + backward through
rnnfast.cpu, one process per shape, medians of 5 runs; serial vs 2 chunks). Since the layout
transposes go through register tiles (rnnfast/cpu/_transpose.py):

    rnn   T=10 B=200 H=8    work   256,000   0.059 vs 0.053 ms  (1.12x)
    rnn   T=10 B=200 H=12   work   480,000   0.079 vs 0.065 ms  (1.20x)
    rnn   T=10 B=200 H=16   work   768,000   0.104 vs 0.078 ms  (1.33x)
    rnn   T=10 B=64  H=32   work   819,200   0.089 vs 0.070 ms  (1.28x)
    rnn   T=20 B=200 H=16   work 1,536,000   0.221 vs 0.128 ms  (1.73x)
    rnn   T=10 B=200 H=64   work 9,216,000   0.71-0.95 vs 0.52 ms  (1.4-1.8x)
    lstm  T=28 B=100 H=100  work   121 M     8.8-11.5 vs 6.0-6.6 ms (1.3-1.8x)

These are from a "fast" period of this machine (a 2-vCPU VM): in slow periods, which come and
go over minutes, two chunks cost 20-40 us more per call while the serial path does not change,
and earlier measurements had the chunks losing up to H=12 (H=8: 0.87x, H=12: 0.81-1.05x).
So the threshold stays above H=12's work, where the chunks' gain is small against that risk.
The serial times at H >= 64 include OpenBLAS's own threads waking for the one-off GEMMs (the
range); the policy never picks the serial path there unless B < 2 * MIN_CHUNK_COLUMNS.

Small per-chunk batches lose (rnn B=4 H=256 with 2 columns a chunk: 0.80x), hence
MIN_CHUNK_COLUMNS. The fused training loop (rnnfast.training) uses a higher threshold.

Threading layer: Numba picks TBB, else OpenMP, else workqueue; TBB is not installed here, so
it is GNU OpenMP ("omp"). omp forks and joins in a few us (spinning workers); "workqueue"
(NUMBA_THREADING_LAYER=workqueue) took 0.1-0.2 ms per parallel region (rnn H=16: 0.58 vs
0.14 ms), so other layers get the threshold SPLIT_MIN_WORK_OTHER (per-call serial time about
2 ms: rnn T=10 B=200 H=64 0.66x, lstm T=28 B=32 H=100 1.29x). GNU OpenMP is not fork-safe: a
child forked after the parent ran a parallel region is killed by Numba at its first one
("Terminating: fork() called from a process already using GNU OpenMP"), so parallel_ok()
keeps such a child on the serial path (rnnfast's own executors use spawn anyway). workqueue
aborts on parallel launches from two threads at once; through rnnfast they cannot overlap:
the kernels hold the GIL and split calls hold _LOCK.
"""

import os
import threading

import numba

SPLIT_MIN_WORK = 600_000  # work per call T * G*H * (H + 8) * B below which nchunks = 1 (omp)
SPLIT_MIN_WORK_OTHER = 20_000_000  # the same for other threading layers (workqueue)
MIN_CHUNK_COLUMNS = 4  # batch columns per chunk at least
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_LOCK = threading.RLock()
_PID = os.getpid()  # the process that imported rnnfast (a forked child inherits it)
_blas = None  # (get, set) thread-count calls of the loaded BLAS libraries, found once


def parallel_ok() -> bool:
    """False in a child forked from a process using GNU OpenMP (Numba's "omp" layer aborts a
    parallel region there): such a child runs everything serially."""
    return os.getpid() == _PID or numba.threading_layer() != "omp"


def split_chunks(
    cell: str,
    hidden_size: int,
    batch: int,
    steps: int,
    threads: int | None = None,
    min_work: int | None = None,
) -> int:
    """Batch chunks for a call over (steps, batch) (1: the serial path); threads caps the
    Numba thread count, min_work replaces SPLIT_MIN_WORK (the omp layer's threshold)."""
    work = steps * _GATES[cell] * hidden_size * (hidden_size + 8) * batch
    min_work = SPLIT_MIN_WORK if min_work is None else min_work
    if numba.threading_layer() != "omp":
        min_work = max(min_work, SPLIT_MIN_WORK_OTHER)
    if work < min_work or not parallel_ok():
        return 1
    n = numba.get_num_threads()
    if threads is not None:
        n = min(n, threads)
    return max(1, min(n, batch // MIN_CHUNK_COLUMNS))


def _openblas_calls(c) -> tuple | None:
    """(get, set) as direct ctypes calls for an OpenBLAS on its own pthreads pool (the
    common build; the symbol may carry SciPy's prefix and a 64-bit suffix), else None."""
    lib = getattr(c, "dynlib", None)
    if lib is None or c.internal_api != "openblas" or c.threading_layer == "openmp":
        return None
    for prefix in ("", "scipy_"):
        for suffix in ("", "64_", "_64"):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                return get, put
    return None


def _blas_controllers() -> list[tuple]:
    """(get_num_threads, set_num_threads) per loaded BLAS library, found once. OpenBLAS is
    called through ctypes directly: threadpoolctl's controllers cost about 6 us per limit
    and restore (a quarter of rnn T=10 B=200 H=16's forward + backward), and since
    threadpoolctl 3.6 they ignore calls from any thread but the first one that set a limit."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415

        calls = []
        for c in ThreadpoolController().lib_controllers:
            if c.user_api == "blas":
                calls.append(_openblas_calls(c) or (c.get_num_threads, c.set_num_threads))
        _blas = calls
    return _blas


class one_blas_thread:  # noqa: N801 (used like a function: with one_blas_thread(): ...)
    """Every loaded BLAS library on one thread inside the block (nothing if not active).
    A class, not @contextmanager: the generator machinery alone cost about 2 us a call."""

    __slots__ = ("active", "prev")

    def __init__(self, active: bool = True) -> None:
        self.active = active

    def __enter__(self) -> None:
        if not self.active:
            return
        _LOCK.acquire()
        try:
            libs = _blas_controllers()
            self.prev = [get() for get, _ in libs]
            for (_, put), n in zip(libs, self.prev, strict=True):
                if n != 1:
                    put(1)
        except BaseException:
            self._restore()
            raise

    def __exit__(self, *exc) -> None:
        if self.active:
            self._restore()

    def _restore(self) -> None:
        try:
            for (_, put), n in zip(_blas, getattr(self, "prev", ()), strict=False):
                if n != 1:
                    put(n)
        finally:
            _LOCK.release()
