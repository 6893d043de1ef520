"""Compile the CPU kernels once per machine, before the workers start, and say so.

Numba compiles a kernel the first time a process calls it and caches it on disk
(cache=True). A grid's workers used to each compile the same kernels at the same moment (on
2 cores: both cores for minutes, the progress bar at 0). warm_up() compiles, or loads, the
training loop for the grid's first CPU run in the driver, under that run's thread limits (the
loop's serial or chunked variant depends on them), so every worker loads it from the cache
in about a second. Runs whose kernels differ (another dtype, task or variant) still compile in
their worker, as before.

compile_notice() prints "compiling kernels for first use (about N s)" on stderr when an
rnnfast kernel really compiles (Numba's "numba:compile" event fires on a cache miss only), so
a warm cache stays quiet.
"""

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any

# Cold compile of one run's kernels, measured on the 2-core development machine (Numba
# 0.68, idle): the fused training loop (rnnfast.cpu._train, serial variant; 31-36 s for
# dependency 5x4, about 35 s of `rnnfast run grid` on its Quick start grid) and, for tasks
# with validation or test splits, the evaluation loop after it (5 s: it shares the loop's
# compiled callees).
LOOP_SECONDS = 35
EVALUATE_SECONDS = 5


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
            with compile_notice(estimate(bool(setup.data.evaluations)), stream):
                CpuTrainer(setup).warm_up()
    except Exception:  # noqa: BLE001, S110  (the run reports it, in its own record)
        pass
