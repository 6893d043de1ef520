"""Compile the CPU kernels once per machine, before the workers start, and say so.

Numba compiles a kernel the first time a process calls it and caches it on disk
(cache=True). A grid's workers used to each compile the same kernels at the same moment (on
2 cores: both cores for minutes, the progress bar at 0). warm_up() compiles, or loads, the
training loop for the grid's first CPU run in the driver, under that run's thread limits (the
loop's serial or chunked variant depends on them), so every worker loads it from the cache
in about a second. Runs whose kernels differ (another dtype, task or variant) still compile in
their worker, as before.

While the driver compiles the training loop (a cache miss: it is cold), a second process
compiles what the loop's backward half calls (rnnfast.cpu._train.compile_backward_half),
and the evaluation loop, into the cache, from which the driver then loads them: the loop's
callees compile on both cores (measured, dependency 5x4 on 2 cores: 44 s -> 31 s).

compile_notice() prints "compiling kernels for first use (about N s)" on stderr when an
rnnfast kernel really compiles (Numba's "numba:compile" event fires on a cache miss only), so
a warm cache stays quiet.
"""

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

# Cold compile of one run's kernels, measured on the 2-core development machine (Numba
# 0.68, idle): the fused training loop (rnnfast.cpu._train, serial variant) and, for tasks
# with validation or test splits, the evaluation loop that shares most of its callees.
LOOP_SECONDS = 35
EVALUATE_SECONDS = 10


def estimate(evaluates: bool) -> int:
    """Seconds a cold compile of one run's kernels takes, roughly."""
    return LOOP_SECONDS + (EVALUATE_SECONDS if evaluates else 0)


@contextlib.contextmanager
def _on_compile(wanted, act) -> Iterator[None]:
    """While active: act() once, when Numba starts compiling (not loading) a function for
    which wanted(py_func) is true."""
    from numba.core import event  # noqa: PLC0415

    class Once(event.Listener):
        done = False

        def on_start(self, ev) -> None:
            fn = getattr(ev.data.get("dispatcher"), "py_func", None)
            if not self.done and fn is not None and wanted(fn):
                self.done = True
                act()

        def on_end(self, ev) -> None:
            pass

    listener = Once()
    event.register("numba:compile", listener)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)


def compile_notice(seconds: int, stream=None):
    """While active: the first compile of an rnnfast kernel in this process prints one line
    on stream (default stderr)."""
    out = sys.stderr if stream is None else stream

    def say() -> None:
        lead = "\n" if out.isatty() else ""  # below a progress bar drawn on this line
        out.write(f"{lead}compiling kernels for first use (about {seconds} s)\n")
        out.flush()

    return _on_compile(lambda fn: fn.__module__.startswith("rnnfast."), say)


def _is_training_loop(fn) -> bool:
    return fn.__module__ == "rnnfast.cpu._train" and fn.__qualname__.endswith(".updates")


@contextlib.contextmanager
def _second_process(config: dict[str, Any], threads: int | None) -> Iterator[None]:
    """While active: when the training loop starts compiling, a second process compiles its
    backward half's callees (and the evaluation loop); stopped at the end (its work is in the
    cache by then, or no longer needed)."""
    procs = []

    def start() -> None:
        if (os.cpu_count() or 1) < 2:
            return
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_compile_second_half, args=(config, threads), daemon=True)
        proc.start()
        procs.append(proc)

    try:
        with _on_compile(_is_training_loop, start):
            yield
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def _compile_second_half(config: dict[str, Any], threads: int | None) -> None:
    """The second process: the same run's setup, then the loop's backward half and the
    evaluation loop, compiled into the cache and not run."""
    from rnnfast.config import resolve  # noqa: PLC0415
    from rnnfast.cpu._train import compile_backward_half  # noqa: PLC0415
    from rnnfast.cpu.trainer import CpuTrainer, _dealt  # noqa: PLC0415
    from rnnfast.executors import thread_limits  # noqa: PLC0415
    from rnnfast.run_setup import RunSetup  # noqa: PLC0415

    with thread_limits(threads):
        tr = CpuTrainer(RunSetup(resolve(config)))
        s, b = tr.setup, tr.buf
        data = _dealt(s.epoch_data(1), tr.nchunks)
        compile_backward_half(s.model, s.form_vec, s.theta, s.woff, tr.optim, data, b.state,
                              b.work, tr.nchunks)  # fmt: skip
        if s.data.evaluations:
            tr.evaluate(0, n_updates=0)


def warm_up(tasks: Iterable[Any], stream=None) -> None:
    """Compile (or load from the cache) the kernels of the first CPU task (an
    rnnfast.executors.Task) in this process, as its worker would."""
    task = next((t for t in tasks if t.config.get("backend") != "cuda"), None)
    if task is not None:
        warm_up_config(task.config, task.threads, stream)


def warm_up_config(config: dict[str, Any], threads: int | None = None, stream=None) -> None:
    """Compile (or load) the CPU kernels a run of config uses, under `threads` (as
    rnnfast.executors.thread_limits). Anything that goes wrong here (a bad config, missing
    data, a run too large for memory: checked before allocating, as rnnfast.train does) is
    left to the run itself to report."""
    from rnnfast.config import resolve  # noqa: PLC0415
    from rnnfast.cpu.trainer import CpuTrainer  # noqa: PLC0415
    from rnnfast.executors import thread_limits  # noqa: PLC0415
    from rnnfast.memory import check as check_memory  # noqa: PLC0415
    from rnnfast.run_setup import RunSetup  # noqa: PLC0415

    try:
        cfg = resolve(config)
        if cfg["backend"] == "cuda":
            return
        check_memory(cfg, None)
        with thread_limits(threads):
            setup = RunSetup(cfg)
            seconds = estimate(bool(setup.data.evaluations))
            with compile_notice(seconds, stream), _second_process(config, threads):
                CpuTrainer(setup).warm_up()
    except Exception:  # noqa: BLE001, S110  (the run reports it, in its own record)
        pass
