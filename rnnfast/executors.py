"""Run a list of training runs: in a local process pool, or on a Dask cluster.

Each run executes `execute(spec)` in a worker: rnnfast.train plus provenance, returning a
RunRecord and the curve. Failures become records with status "failed" and the traceback; a
diverged run keeps its partial curve. Only the driver writes the store: it calls on_done for
each finished run as soon as it arrives, so Ctrl-C or a crash of the driver loses only the
runs in flight.

Threads: every worker is pinned to `threads` BLAS/Numba threads (environment variables
set before the worker imports Numba or OpenBLAS), with workers * threads <= cores by default,
because several processes each using all cores oversubscribe the machine; OpenBLAS was
measured 7x slower on medium matrices under such contention.

Orphans: a local pool's workers exit within a second or so of the driver's death by any
signal, kill -9 included (_die_with_driver), and multiprocessing's resource tracker then
exits by itself (it ends when the last holder of its pipe, driver or worker, is gone). A
worker left behind would go on training under PID 1, holding its memory, for nobody.
"""

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from time import perf_counter
from typing import Any

THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS")  # fmt: skip


@dataclass(frozen=True)
class Task:
    """What a worker needs for one run (picklable)."""

    run_id: str
    config: dict[str, Any]
    grid: str | None = None
    point: dict[str, Any] | None = None
    threads: int | None = None
    # the results directory to checkpoint to and resume from (rnnfast.checkpoint) and to
    # report live progress in (rnnfast.live); None: neither
    checkpoints: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")  # as store.utc_now()


def execute(task: Task):
    """Train one run; never raises for a failing run. Returns (RunRecord, curves or None).

    With task.checkpoints (a results directory) the run checkpoints to and resumes from
    DIR/checkpoints/<run_id>.npz (rnnfast.checkpoint; CUDA runs go through run_cuda)."""
    from rnnfast.provenance import collect, data_files  # noqa: PLC0415
    from rnnfast.store import RunRecord, model_of  # noqa: PLC0415

    started, t0 = _now(), perf_counter()
    curves, final, error, status, compile_time, model = None, {}, "", "failed", None, None
    resumed = None
    with thread_limits(task.threads), _checkpoint_session(task):
        try:
            from rnnfast.training import train  # noqa: PLC0415

            result = train(task.config)
            curves, final, status = result.curves, result.final, result.status
            error = result.message
            compile_time = result.info.get("compile_time")
            resumed = result.info.get("resumed")
            model = model_of(result)
        except Exception:  # a failing run is a result, not a crash of the grid
            error = traceback.format_exc()
        provenance = collect(task.threads)
        if resumed:
            provenance["resumed"] = resumed
        if files := data_files(task.config):
            provenance["data"] = files
    record = RunRecord(
        run_id=task.run_id, grid=task.grid, config=task.config, point=task.point or {},
        status=status, error=error, final=final, provenance=provenance, started=started,
        finished=_now(), wall_time=perf_counter() - t0, compile_time=compile_time, model=model,
    )  # fmt: skip
    return record, curves


@contextlib.contextmanager
def _checkpoint_session(task: Task):
    """Checkpoints (rnnfast.checkpoint) and live progress (rnnfast.live) in the task's
    results directory, if it has one."""
    if task.checkpoints is None:
        yield
        return
    from rnnfast import checkpoint, live  # noqa: PLC0415

    with (
        checkpoint.session(task.checkpoints, task.run_id),
        live.session(task.checkpoints, task.run_id),
    ):
        yield


@contextlib.contextmanager
def thread_limits(threads: int | None):
    """Cap this process's BLAS pools and this thread's Numba threads for one run, and restore
    them after. The environment variables set for workers the driver starts (_pin_threads)
    come too late for workers it does not start, such as an external Dask cluster's, which
    have loaded OpenBLAS and Numba already; this cap works in either. None: no change."""
    if threads is None:
        yield
        return
    import numba  # noqa: PLC0415
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(before)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _pin_threads(threads: int) -> None:
    """Runs in a worker before it imports Numba or SciPy's BLAS."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DRIVER_POLL_S = 0.5  # how often a worker checks that its driver is alive


def _start_worker(threads: int, driver_pid: int) -> None:
    """Initializer of a local pool's workers."""
    _pin_threads(threads)
    _die_with_driver(driver_pid)


def _die_with_driver(driver_pid: int) -> None:
    """Exit this worker process when the driver (its parent) dies, however it dies.

    On Linux the kernel sends SIGKILL at the parent's death (PR_SET_PDEATHSIG). That fires
    when the *thread* that started this process exits; a spawn-context pool starts its workers
    from the thread that calls submit(), the driver's main thread in run_local (only a pool
    with max_tasks_per_child, not used here, also spawns from its manager thread: read in
    concurrent.futures.process of Python 3.11), so it fires when the driver dies.
    Elsewhere, and as a fallback, a daemon thread polls the parent pid: a dead parent makes
    this process a child of init (or of a subreaper). A driver that died before this ran is
    caught by the first check."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != driver_pid:
        os._exit(1)
    threading.Thread(target=_watch_driver, args=(driver_pid,), daemon=True,
                     name="rnnfast-driver-watch").start()  # fmt: skip


def _watch_driver(driver_pid: int) -> None:
    # Python code: while a compiled kernel holds the GIL this waits for it (milliseconds)
    while os.getppid() == driver_pid:
        time.sleep(DRIVER_POLL_S)
    os._exit(1)  # no cleanup: the run's checkpoints are written atomically


@contextlib.contextmanager
def _environment(threads: int):
    """The same variables in the driver while it spawns workers (they inherit them), so even
    libraries a worker loads while unpickling its first task see them."""
    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    _pin_threads(threads)
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


OnDone = Callable[[Any, Any], None]


def run_local(tasks: Iterable[Task], workers: int, on_done: OnDone, *, retries: int = 1) -> None:
    """Run tasks in a spawn-started process pool; on_done(record, curves) in the driver.

    A worker killed mid-run (BrokenProcessPool) is replaced and its unfinished runs are
    resubmitted up to `retries` times each; then they are recorded as failed.
    """
    pending = list(tasks)
    attempts: dict[str, int] = {}
    while pending:
        threads = pending[0].threads or default_threads(workers)
        with (
            _environment(threads),
            ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                initializer=_start_worker,
                                initargs=(threads, os.getpid())) as pool,
        ):  # fmt: skip
            try:
                # inside the try: submit() starts the workers, and a Ctrl-C or SIGTERM then
                # must not leave the pool's exit waiting for the runs already queued
                futures = {pool.submit(execute, t): t for t in pending}
                pending = []
                not_done = set(futures)
                while not_done:
                    done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                    for fut in done:
                        try:
                            record, curves = fut.result()
                        except BrokenProcessPool:
                            task = futures[fut]
                            attempts[task.run_id] = attempts.get(task.run_id, 0) + 1
                            if attempts[task.run_id] <= retries:
                                pending.append(task)
                            else:
                                on_done(*_lost(task, "its worker process died"))
                            continue
                        on_done(record, curves)
            except BaseException:
                # No fut.cancel() here: on Python 3.11 the pool's manager thread then fails
                # with InvalidStateError (printed as a thread traceback) when it marks the
                # cancelled futures broken. Terminating the workers breaks the pool, which
                # fails every pending future by itself.
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()  # Ctrl-C: do not wait for runs in flight
                raise


def run_cuda(tasks: Iterable[Task], on_done: OnDone) -> None:
    """Train CUDA runs in this process, each group of runs that share shapes in one launch
    per interval (rnnfast.cuda.training). A group's runs are stored when the group ends; a
    failing group records each of its runs as failed with the traceback.

    A task with task.checkpoints (a results directory) checkpoints to and resumes from
    DIR/checkpoints/<run_id>.npz as execute()'s do, and reports its live progress to
    DIR/progress/<run_id>.json; its target and reporter are passed to train_group explicitly
    (one thread trains the whole group). Runs of a group that resume from
    different positions train one after another (rnnfast.cuda.training), so the provenance's
    cuda_group_size is the number of runs that shared the launches."""
    from pathlib import Path  # noqa: PLC0415

    from rnnfast.checkpoint import Target  # noqa: PLC0415
    from rnnfast.cuda import device_name  # noqa: PLC0415
    from rnnfast.cuda.training import group_key, train_group  # noqa: PLC0415
    from rnnfast.live import Reporter  # noqa: PLC0415
    from rnnfast.provenance import collect  # noqa: PLC0415
    from rnnfast.store import RunRecord, model_of  # noqa: PLC0415

    groups: dict[tuple, list[Task]] = {}
    for task in tasks:
        groups.setdefault(group_key(task.config), []).append(task)
    for group in groups.values():
        started, t0 = _now(), perf_counter()
        targets = [None if t.checkpoints is None else Target(Path(t.checkpoints), t.run_id)
                   for t in group]  # fmt: skip
        reporters = [None if t.checkpoints is None else Reporter(t.checkpoints, t.run_id)
                     for t in group]  # fmt: skip
        try:
            results = train_group([t.config for t in group], checkpoints=targets,
                                  live=reporters)  # fmt: skip
            error, device = "", device_name()
        except Exception:  # a failing group is a result for each of its runs
            results, error, device = [None] * len(group), traceback.format_exc(), None
        wall = (perf_counter() - t0) / len(group)  # the launches are shared
        for task, res in zip(group, results, strict=True):
            provenance = collect(task.threads)
            provenance["cuda_device"] = device
            provenance["cuda_group_size"] = res.info["cuda_group_size"] if res else len(group)
            if res and res.info.get("resumed"):
                provenance["resumed"] = res.info["resumed"]
            record = RunRecord(
                run_id=task.run_id, grid=task.grid, config=task.config, point=task.point or {},
                status=res.status if res else "failed", error=res.message if res else error,
                final=res.final if res else {}, provenance=provenance, started=started,
                finished=_now(), wall_time=wall,
                compile_time=res.info.get("compile_time") if res else None,
                model=model_of(res) if res else None,
            )  # fmt: skip
            on_done(record, res.curves if res else None)


def _lost(task: Task, why: str):
    from rnnfast.provenance import collect  # noqa: PLC0415
    from rnnfast.store import RunRecord  # noqa: PLC0415

    now = _now()
    record = RunRecord(run_id=task.run_id, grid=task.grid, config=task.config,
                       point=task.point or {}, status="failed", error=why, final={},
                       provenance=collect(task.threads), started=now, finished=now,
                       wall_time=0.0, compile_time=None)  # fmt: skip
    return record, None


NO_DASK = "the dask executor needs dask.distributed: pip install 'rnnfast[dask]'"
DASK_CONNECT_S = 5  # a scheduler that does not answer by then is reported, not waited for


def check_scheduler_address(address: str) -> None:
    """ValueError (one line) for a string that cannot be a Dask scheduler's address: a known
    protocol and, but for inproc, HOST:PORT. RuntimeError without dask.distributed."""
    try:
        from distributed.comm import parse_address  # noqa: PLC0415
        from distributed.comm.addressing import parse_host_port  # noqa: PLC0415
        from distributed.comm.registry import backends  # noqa: PLC0415
    except ImportError as err:
        raise RuntimeError(NO_DASK) from err
    try:
        protocol, location = parse_address(address)
        if protocol not in backends:
            known = ", ".join(sorted(backends))
            raise ValueError(f"unknown protocol {protocol!r}; known: {known}")
        if protocol != "inproc":
            host, port = parse_host_port(location)
            if not host or not 0 < port < 65536:
                raise ValueError("expected HOST:PORT")
    except ValueError as err:
        raise ValueError(f"scheduler {address!r}: expected a Dask scheduler address such as "
                         f"tcp://HOST:8786 ({err})") from None  # fmt: skip


def run_dask(tasks: Iterable[Task], on_done: OnDone, *, scheduler: str | None = None,
             workers: int | None = None, retries: int = 1) -> None:  # fmt: skip
    """Run tasks on a Dask distributed cluster (scheduler address), or a LocalCluster of
    process workers. Results travel back to the driver, so workers need no shared disk.

    A malformed scheduler address raises ValueError, one that does not answer within
    DASK_CONNECT_S seconds RuntimeError, each one line."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed  # noqa: PLC0415
    except ImportError as err:
        raise RuntimeError(NO_DASK) from err
    tasks = list(tasks)
    cluster = None
    if scheduler is None:
        n = workers or os.cpu_count() or 1
        # the tasks' pinned count (--threads), as run_local does: provenance reports it
        pinned = tasks[0].threads if tasks else None
        threads = pinned or default_threads(n)
        env = {var: str(threads) for var in THREAD_VARS}
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, env=env)  # fmt: skip
        client = Client(cluster)
    else:
        check_scheduler_address(scheduler)
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_S)
        except OSError:  # TimeoutError included: refused, unknown host, nobody answering
            raise RuntimeError(
                f"dask scheduler {scheduler}: no answer within {DASK_CONNECT_S} s; start it "
                "(`dask scheduler`) or check the address"
            ) from None
    try:
        futures = [client.submit(execute, t, key=f"rnnfast-{t.run_id}", pure=False,
                                 retries=retries) for t in tasks]  # fmt: skip
        by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        for fut in as_completed(futures):
            try:
                record, curves = fut.result()
            except Exception as err:  # the task itself never raises: a worker was lost
                record, curves = _lost(by_key[fut.key], f"dask: {type(err).__name__}: {err}")
            on_done(record, curves)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
