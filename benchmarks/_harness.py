"""Interleaved timing of workloads, each framework in its own persistent worker process.

Why: one process that runs rnnfast (SciPy's OpenBLAS), the NumPy reference (NumPy's OpenBLAS)
and PyTorch (its OpenMP pool) holds three thread pools. After each call a pool's threads spin
for a while (OpenBLAS about 0.1 s, measured here) and take the cores from whichever framework
runs next: on 2 cores rnnfast's LSTM 28x100x100 step took 9 ms alone and 21 ms in such a
process, and PyTorch's was inflated too. Here each framework runs in a worker of its own
(multiprocessing "spawn": a fresh interpreter that inherits the environment and sys.path and
re-imports the main script as __mp_main__, so keep that script's top-level imports light),
and the driver only sends tasks and collects times:

    for shape in shapes:
        for round in range(rounds):           # machine drift hits every framework alike
            for worker in workers (order rotated each round):
                sleep(pause) if another worker ran last   # its spinning threads go idle
                timings[shape][worker] += worker.run(Task(...))  # k timed calls in a row

Per (shape, workload) the caller takes the median over all timed calls (Timing.median). The
Timing also says how many cores other processes kept busy, on average, while the shape was
measured (Timing.other_load: /proc/stat minus the CPU time of the driver and its workers), so
a shared machine shows up there and not silently in the medians.

A workload is a name plus picklable, module-level callables (a function or a
functools.partial of one; they are pickled by reference and imported in the worker):

    build(shape, dtype) -> step    step() runs one timed call; built once per shape per worker
    setup() -> dict[str, str]      optional, runs once at worker start: imports, thread
                                   settings; returns what to report (versions, threads)

    register("numpy-dot", build_dot, forbid=("torch",), env={"OPENBLAS_NUM_THREADS": "1"})
    with Workers(["numpy-dot", "torch-dot"]) as workers:
        timings = measure(workers, shapes, "float32", {"numpy-dot": 30, "torch-dot": 30})
        timings[shapes[0]]["numpy-dot"].median

forbid lists modules the worker must never import (checked after setup and after each
warm-up); env is applied to the worker's environment before it starts (BLAS libraries read
their thread counts when they load).
"""

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Step = Callable[[], None]
Builder = Callable[[Any, str], Step]


@dataclass(frozen=True)
class Workload:
    """How a worker builds and names one framework's timed call."""

    name: str
    build: Builder
    setup: Callable[[], dict[str, str]] | None = None
    forbid: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One batch for a worker: untimed warm-up calls, then `repeats` timed calls.

    The warm-up is `warmup` calls, continued (if warmup > 0) until `warmup_s` seconds have
    passed, so that even a tiny workload has its threads awake and its caches hot again.
    """

    workload: str
    shape: Hashable
    dtype: str
    repeats: int
    warmup: int
    warmup_s: float = 0.0


@dataclass
class Timing:
    """Timed calls of one workload at one shape, and what else ran meanwhile."""

    times: list[float] = field(default_factory=list)  # seconds per timed call
    # average cores busy with other processes while the shape was measured (None: unknown)
    other_load: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)


class WorkerError(RuntimeError):
    """A worker raised (the message holds its traceback) or died."""

    def __init__(self, workload: str, detail: str):
        super().__init__(f"worker {workload!r} failed:\n{detail}")
        self.workload = workload
        self.detail = detail


REGISTRY: dict[str, Workload] = {}
# a worker's environment for one Numba, one BLAS and one OpenMP thread
SINGLE_THREAD_ENV = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def register(
    name: str,
    build: Builder,
    *,
    setup: Callable[[], dict[str, str]] | None = None,
    forbid: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> Workload:
    """Add (or replace) the workload `name` in REGISTRY and return it."""
    workload = Workload(name, build, setup, tuple(forbid), dict(env or {}))
    REGISTRY[name] = workload
    return workload


# ---------------------------------------------------------------- worker side


def _forbidden_modules(forbid: tuple[str, ...]) -> list[str]:
    return sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbid))


@contextlib.contextmanager
def exits_cleanly():
    """A benchmark's measurement: a worker's failure exits 1 and Ctrl-C exits 130, each with
    one line (the workers are stopped by their own context managers)."""
    try:
        yield
    except WorkerError as e:
        print(f"\n{e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("\ninterrupted: workers stopped", file=sys.stderr)
        raise SystemExit(130) from None


def _check_forbidden(workload: Workload, when: str) -> None:
    found = _forbidden_modules(workload.forbid)
    if found:
        raise RuntimeError(f"{when}, the worker imported forbidden modules: {', '.join(found)}")


def _worker_main(workload: Workload, conn, max_cached: int) -> None:
    # Ctrl-C goes to the whole process group: the driver handles it and terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        info = dict(workload.setup()) if workload.setup is not None else {}
        _check_forbidden(workload, "after setup")
        conn.send(("ready", info))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    steps: OrderedDict[tuple, Step] = OrderedDict()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the driver went away
            return
        if task is None:
            return
        try:
            key = (task.shape, task.dtype)
            if key not in steps:
                steps[key] = workload.build(task.shape, task.dtype)
                while len(steps) > max_cached:
                    steps.popitem(last=False)
            steps.move_to_end(key)
            step = steps[key]
            # collect first and keep the collector off while timing: a collection between
            # the warm-up and the timed calls evicted the caches and let the thread pool
            # fall asleep (the timed calls then measured its wake-up)
            gc.collect()
            gc.disable()
            try:
                t0, n = time.perf_counter(), 0
                while n < task.warmup or (n and time.perf_counter() - t0 < task.warmup_s):
                    step()
                    n += 1
                _check_forbidden(workload, f"after building {task.shape}")
                times = []
                for _ in range(task.repeats):
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
            finally:
                gc.enable()
            conn.send(("ok", times))
        except BaseException:
            conn.send(("error", traceback.format_exc()))
            return


# ---------------------------------------------------------------- driver side


class Workers:
    """One persistent spawn-context worker process per workload; a context manager.

    Leaving the `with` block (normally, by an exception or by Ctrl-C) stops every worker;
    run() raises WorkerError with the worker's traceback if a worker raised or died.
    """

    def __init__(
        self,
        names: Iterable[str],
        registry: Mapping[str, Workload] | None = None,
        *,
        max_cached: int = 2,
        start_timeout: float = 300.0,
    ):
        registry = REGISTRY if registry is None else registry
        self.workloads = {name: registry[name] for name in names}
        self.max_cached = max_cached
        self.start_timeout = start_timeout
        self.info: dict[str, dict[str, str]] = {}
        self._procs: dict[str, Any] = {}
        self._conns: dict[str, Any] = {}

    def __enter__(self) -> "Workers":
        try:
            self.start()
        except BaseException:
            self.close(terminate=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(terminate=exc_type is not None)

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        for name, workload in self.workloads.items():
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(workload, child, self.max_cached),
                name=f"bench-{name}",
                daemon=True,
            )
            with _environ(workload.env):
                proc.start()
            child.close()
            self._procs[name], self._conns[name] = proc, parent
        for name in self.workloads:  # the workers start (import) in parallel
            self.info[name] = self._recv(name, "ready", self.start_timeout)

    def run(self, task: Task, timeout: float | None = None) -> list[float]:
        """Send `task` to its worker; return the times (s) of its timed calls."""
        self._conns[task.workload].send(task)
        return self._recv(task.workload, "ok", timeout)

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by this process and the workers (None where unknown)."""
        total = time.process_time()
        tick = os.sysconf("SC_CLK_TCK")
        for proc in self._procs.values():
            try:
                with open(f"/proc/{proc.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return None
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return total

    def _recv(self, name: str, expected: str, timeout: float | None) -> Any:
        conn, proc = self._conns[name], self._procs[name]
        deadline = None if timeout is None else time.monotonic() + timeout
        while not conn.poll(0.2):
            if not proc.is_alive() and not conn.poll(0):
                raise WorkerError(name, f"the process exited with code {proc.exitcode}")
            if deadline is not None and time.monotonic() > deadline:
                raise WorkerError(name, f"no answer within {timeout:.0f} s")
        try:
            kind, payload = conn.recv()
        except EOFError:
            proc.join(2.0)
            raise WorkerError(name, f"the process exited with code {proc.exitcode}") from None
        if kind == "error":
            raise WorkerError(name, payload)
        if kind != expected:
            raise WorkerError(name, f"expected a {expected!r} message, got {kind!r}")
        return payload

    def close(self, terminate: bool = False) -> None:
        """Stop the workers: politely (None, then join) unless terminate, then by force."""
        for name, proc in self._procs.items():
            if not terminate and proc.is_alive():
                try:
                    self._conns[name].send(None)
                except OSError:
                    pass
        for proc in self._procs.values():
            if not terminate:
                proc.join(5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        for conn in self._conns.values():
            conn.close()
        self._procs.clear()
        self._conns.clear()


class _environ:
    """Temporarily set environment variables (inherited by processes started meanwhile)."""

    def __init__(self, env: Mapping[str, str]):
        self.env = dict(env)
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for key, value in self.env.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = str(value)

    def __exit__(self, *exc) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def split_calls(n: int, rounds: int) -> list[int]:
    """n calls spread over `rounds` rounds as evenly as possible (some 0 when n < rounds)."""
    return [(r + 1) * n // rounds - r * n // rounds for r in range(rounds)]


def measure(
    workers: Workers,
    shapes: Iterable[Hashable],
    dtype: str,
    calls: Mapping[str, int],
    *,
    rounds: int = 5,
    pause: float = 0.15,
    warmup: int | Mapping[str, int] = 3,
    batch_warmup: int | Mapping[str, int] = 1,
    warmup_s: float = 0.02,
    progress: Callable[[Hashable], None] | None = None,
) -> dict[Hashable, dict[str, Timing]]:
    """Timing of calls[name] timed calls per shape and workload, interleaved over rounds.

    In each round every workload runs its share of calls as one batch (order rotated each
    round); the first batch of a shape has `warmup` untimed calls (compilation, caches), later
    ones `batch_warmup` (wake the thread pool after the pause); either is one number or one
    per workload, and a non-zero warm-up lasts at least `warmup_s` seconds. Before each batch
    the driver sleeps `pause` seconds if another worker ran last.
    """
    names = [n for n in workers.workloads if calls.get(n, 0) > 0]
    plan = {name: split_calls(calls[name], rounds) for name in names}
    results: dict[Hashable, dict[str, Timing]] = {}
    last = None
    for shape in shapes:
        timings = {name: Timing() for name in names}
        busy0, ours0, wall0 = _busy_cpu_seconds(), workers.cpu_seconds(), time.perf_counter()
        started: set[str] = set()
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)] if names else []
            for name in order:
                k = plan[name][r]
                if k == 0:
                    continue
                if last is not None and last != name:
                    time.sleep(pause)
                w = _per(name, batch_warmup if name in started else warmup)
                timings[name].times += workers.run(Task(name, shape, dtype, k, w, warmup_s))
                started.add(name)
                last = name
        busy1, ours1, wall = _busy_cpu_seconds(), workers.cpu_seconds(), time.perf_counter() - wall0
        if None not in (busy0, busy1, ours0, ours1):
            other = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall
            for timing in timings.values():
                timing.other_load = other
        results[shape] = timings
        if progress is not None:
            progress(shape)
    return results


def _per(name: str, value: int | Mapping[str, int]) -> int:
    return value[name] if isinstance(value, Mapping) else value


# ---------------------------------------------------------------- machine and thread info


class BusyCores:
    """N processes that each spin on one core until the block ends (a shared machine)."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "BusyCores":
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:  # only the processes started here
            proc.terminate()
        for proc in self.procs:
            proc.wait(5.0)


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat), None if unknown."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_info() -> str:
    """'MODEL, N cores (M usable)' from /proc/cpuinfo where present."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    text = f"{model or 'unknown CPU'}, {cores} cores"
    return text + (f" ({usable} usable)" if usable != cores else "")


_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OMP_WAIT_POLICY",
)


def thread_env() -> str:
    """The thread-related environment variables that are set, or 'none set'."""
    found = [f"{k}={os.environ[k]}" for k in _THREAD_VARS if k in os.environ]
    return " ".join(found) or "none set"


def openblas_threads() -> list[str]:
    """'<owner> OpenBLAS <version>: N threads' for each OpenBLAS loaded in this process.

    Reads /proc/self/maps (Linux) and asks each library through ctypes, so it works without
    threadpoolctl; owner is the wheel's .libs directory (numpy, scipy) where recognisable.
    """
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return []
    found = []
    for path in paths:
        base = os.path.basename(path)
        if "openblas" not in base.lower() or ".so" not in base:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        threads = config = None
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                cfg = getattr(lib, f"{prefix}_get_config{suffix}", None)
                if get is not None and threads is None:
                    threads = get()
                if cfg is not None and config is None:
                    cfg.restype = ctypes.c_char_p
                    config = cfg().decode(errors="replace")
        owner = os.path.basename(os.path.dirname(path)).removesuffix(".libs")
        version = config.split()[1] if config and len(config.split()) > 1 else "?"
        found.append(f"{owner} OpenBLAS {version}: {threads} threads")
    return found
