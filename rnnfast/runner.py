"""Run a grid into a results store: plan (what is done), execute (what is not), summarise.

    plan = make_plan(grid, results_dir, force=False, rerun_failed=False, rerun_stale=False)
    summary = run_plan(plan, executor="local", workers=2, on_progress=None,
                       keep_checkpoints=False)

Runs whose config has backend = "cuda" train in the driver process on the GPU, each group
of runs that share shapes in one launch per interval (rnnfast.executors.run_cuda).

A run is done when the store holds it with status "ok" or "diverged" (a diverged run is a
result: its partial curve is the answer). "failed" runs (an exception) are done too unless
rerun_failed; force reruns everything. The driver writes each finished run at once, so an
interrupted grid resumes where it stopped; a run in flight resumes from its last checkpoint
(DIR/checkpoints/, rnnfast.checkpoint), which is removed once the run is stored ok or
diverged (kept with keep_checkpoints, and for a failed run, which --rerun-failed resumes).

Which code made a run: every run records the rnnfast version and source_sha256 of the code
that trained it (rnnfast.provenance). A stored run made by other code (an upgrade, an edited
source) still counts as done, because the run id does not include the code; the plan lists
such runs (Plan.stale), the summary says how many, and rerun_stale trains them again.

Live progress: each run in flight keeps DIR/progress/<run_id>.json up to date (rnnfast.live);
the driver removes it once the run is stored.

A finished run that cannot be written (a full or read-only disk) is reported in one line and
listed in the summary as not stored; the grid goes on and tries the next writes, and the run's
checkpoints stay so the next run of the grid resumes it. check_writable() finds an unwritable
results directory before anything is trained.

Stopping: inside rnnfast.stopping.stop_signals() (the command line's driver), SIGTERM stops a
grid as Ctrl-C does, and either signal arriving while a finished run is being written takes
effect once it is stored.
"""

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rnnfast.checkpoint import remove as remove_checkpoints
from rnnfast.executors import (
    Task,
    check_scheduler_address,
    default_threads,
    run_cuda,
    run_dask,
    run_local,
)
from rnnfast.grid import Grid, RunSpec, format_point
from rnnfast.live import remove as remove_progress
from rnnfast.live import remove_stored as remove_stored_progress
from rnnfast.oserrors import describe
from rnnfast.provenance import code as provenance_code
from rnnfast.stopping import deferred_stop
from rnnfast.store import RunRecord, records_of, write_run
from rnnfast.warmup import warm_up


class ResultsDirError(Exception):
    """The results directory cannot be created or written (one line naming it)."""


def check_writable(results_dir: str | Path) -> None:
    """Create DIR/runs and a file in it, or raise ResultsDirError: run before training, so
    that no run is trained for a store that cannot take it."""
    runs = Path(results_dir) / "runs"
    try:
        runs.mkdir(parents=True, exist_ok=True)
        # a name the store ignores and clean_stale removes, should this process die here
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=runs)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ResultsDirError(f"cannot write the results directory {results_dir}: "
                              f"{describe(err)}") from None  # fmt: skip


@dataclass
class Plan:
    grid: Grid
    results_dir: Path
    todo: list[RunSpec]
    done: list[RunSpec]
    status: dict[str, str]  # run_id -> stored status, for every stored run of the grid
    # run_id -> the code of each stored run of the grid made by other code than this
    # rnnfast's (made_by): "rnnfast 0.4.0, sources 3f2a9c1b4d5e" or "unrecorded code"
    stale: dict[str, str] = field(default_factory=dict)

    @property
    def stale_kept(self) -> list[RunSpec]:
        """Done runs made by other code (not rerun: no --rerun-stale)."""
        return [s for s in self.done if s.run_id in self.stale]


@dataclass
class Summary:
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    skipped: int = 0
    stored_failed: int = 0  # of the skipped runs, those stored as failed (not rerun)
    # of the skipped runs, those made by other code: its description -> how many
    stale: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # run_id, point, error
    # runs trained but not written to the store (an OSError): run_id, point, error
    unstored: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 while any run of the grid is failed or diverged, this time or stored so, or
        could not be stored."""
        return 1 if self.failed or self.diverged or self.stored_failed or self.unstored else 0

    def format(self) -> str:
        lines = [f"{self.ok} ok, {self.diverged} diverged, {self.failed} failed, "
                 f"{self.skipped} already done"]  # fmt: skip
        if self.stored_failed:
            lines[0] += (f" (of which {self.stored_failed} stored as failed: rerun them with "
                         "--rerun-failed)")  # fmt: skip
        if self.unstored:
            lines[0] += (f"; {len(self.unstored)} could not be stored (run the grid again once "
                         "the results directory can be written)")  # fmt: skip
        if self.stale:
            lines.append(stale_line(self.stale))
        for run_id, point, error in self.failures:
            lines.append(f"  {run_id} ({point}): {headline(error)}")
        for run_id, point, error in self.unstored:
            lines.append(f"  {run_id} ({point}): not stored: {error}")
        return "\n".join(lines)


def headline(error: str) -> str:
    """One line for an error: a traceback's exception line ("ValueError: ..."), which is not
    its last line when the message has several; else the text's last line."""
    lines = error.strip().splitlines()
    if not lines:
        return ""
    if lines[0].startswith("Traceback"):
        frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
        after = lines[frames[-1] + 1 :] if frames else lines[1:]
        exc = next((line for line in after if line and not line[0].isspace()), None)
        if exc is not None:
            return exc
    return lines[-1]


def stale_line(counts: dict[str, int]) -> str:
    """The summary's line on stored runs made by other code ({description: count})."""
    n = sum(counts.values())
    which = "; ".join(f"{c} by {code}" for code, c in sorted(counts.items()))
    runs, were, them = ("runs", "were", "them") if n != 1 else ("run", "was", "it")
    return (f"note: {n} stored {runs} of this grid {were} made by other code than this "
            f"rnnfast's ({which}); rerun {them} with --rerun-stale")  # fmt: skip


def default_results_dir(grid: Grid) -> Path:
    return Path("results") / grid.name


def made_by(record: dict, code: tuple[str, str | None]) -> str | None:
    """None when a stored run's record says `code` (version, source_sha256) made it, else a
    description of the code that did. The sources decide (they hold the version too).
    Nothing is stale when this code's sources cannot be read (source_sha256 None): there is
    nothing to compare with."""
    _, source = code
    prov = record.get("provenance") or {}
    if source is None or prov.get("source_sha256") == source:
        return None
    if not prov.get("source_sha256"):
        return "unrecorded code"
    return f"rnnfast {prov.get('rnnfast')}, sources {str(prov['source_sha256'])[:12]}"


def make_plan(grid: Grid, results_dir: str | Path | None = None, *, force: bool = False,
              rerun_failed: bool = False, rerun_stale: bool = False) -> Plan:  # fmt: skip
    """What to run: runs not stored, and stored ones that force, rerun_failed (status
    "failed") or rerun_stale (made by other code: made_by) ask for again."""
    rdir = Path(results_dir) if results_dir is not None else default_results_dir(grid)
    stored = records_of(rdir) if rdir.exists() else {}
    code = provenance_code()
    todo, done = [], []
    status, stale = {}, {}
    for spec in grid.points():
        rec = stored.get(spec.run_id)
        if rec is not None:
            status[spec.run_id] = rec["status"]
            if (other := made_by(rec, code)) is not None:
                stale[spec.run_id] = other
        if (force or rec is None or (rerun_failed and rec["status"] == "failed")
                or (rerun_stale and spec.run_id in stale)):  # fmt: skip
            todo.append(spec)
        else:
            done.append(spec)
    return Plan(grid, rdir, todo, done, status, stale)


Progress = Callable[[RunRecord, Summary], None]


def _warn(message: str) -> None:
    print(f"rnnfast: {message}", file=sys.stderr, flush=True)


def run_plan(plan: Plan, *, executor: str = "local", workers: int | None = None,
             scheduler: str | None = None, threads: int | None = None,
             on_progress: Progress | None = None,
             keep_checkpoints: bool = False) -> Summary:  # fmt: skip
    """Execute plan.todo; each finished run is written to the store before the next result
    is handled. Returns the summary (also when some runs fail)."""
    if executor not in ("local", "dask"):
        raise ValueError(f"executor: expected 'local' or 'dask', got {executor!r}")
    if executor == "dask" and scheduler is not None:
        check_scheduler_address(scheduler)  # before any run trains (cuda runs come first)
    stale: dict[str, int] = {}
    for spec in plan.stale_kept:
        stale[plan.stale[spec.run_id]] = stale.get(plan.stale[spec.run_id], 0) + 1
    summary = Summary(
        skipped=len(plan.done),
        stored_failed=sum(plan.status.get(s.run_id) == "failed" for s in plan.done),
        stale=stale,
    )
    if not plan.todo:
        return summary
    n = workers or os.cpu_count() or 1
    n = max(1, min(n, len(plan.todo)))  # cuda runs ignore workers and threads
    # workers of an external Dask cluster are pinned only if asked (--threads): their cores
    # are not this machine's
    threads = threads or (None if scheduler else default_threads(n))
    points = {s.run_id: format_point(s.point) for s in plan.todo}
    ckdir = str(plan.results_dir.absolute())  # Dask workers may run elsewhere: a full path
    tasks = [Task(s.run_id, s.config, plan.grid.name, s.point, threads, ckdir)
             for s in plan.todo]  # fmt: skip

    def on_done(record: RunRecord, curves) -> None:
        point = points[record.run_id]
        try:
            with deferred_stop():
                write_run(plan.results_dir, record, curves)
        except OSError as err:  # full or read-only disk: keep going, the next may succeed
            summary.unstored.append((record.run_id, point, describe(err)))
            _warn(f"run {record.run_id} ({point}) finished {record.status} but could not be "
                  f"stored: {describe(err)}")  # fmt: skip
            if on_progress is not None:
                on_progress(record, summary)
            return
        with contextlib.suppress(OSError):  # the run is stored: its live state is over
            remove_progress(plan.results_dir, record.run_id)
        if record.status in ("ok", "diverged") and not keep_checkpoints:
            try:
                remove_checkpoints(plan.results_dir, record.run_id)
            except OSError as err:  # the run is stored; its checkpoints only take space
                _warn(f"run {record.run_id}: could not remove its checkpoints: {describe(err)}")
        if record.status == "ok":
            summary.ok += 1
        elif record.status == "diverged":
            summary.diverged += 1
            summary.failures.append((record.run_id, point, record.error))
        else:
            summary.failed += 1
            summary.failures.append((record.run_id, point, record.error))
        if on_progress is not None:
            on_progress(record, summary)

    check_writable(plan.results_dir)
    remove_stored_progress(plan.results_dir, plan.status)
    on_gpu = [t for t in tasks if t.config.get("backend") == "cuda"]
    tasks = [t for t in tasks if t.config.get("backend") != "cuda"]
    if on_gpu:  # in this process: one launch trains each group of runs that share shapes
        run_cuda(on_gpu, on_done)
    if tasks and executor == "local":
        warm_up(tasks)  # compile the kernels here once, not in every worker at once
        run_local(tasks, n, on_done)
    elif tasks:
        run_dask(tasks, on_done, scheduler=scheduler, workers=workers)
    return summary
