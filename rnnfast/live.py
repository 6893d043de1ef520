"""Live state of the runs a grid is training: DIR/progress/<run_id>.json, one per run.

A worker training a run inside session(results_dir, run_id) (rnnfast.executors.execute)
rewrites its run's file at most once a second, after every epoch's evaluations and after
every checkpoint; the driver (rnnfast.monitor) and `rnnfast ls` read them. The file is JSON:

    format, run_id, pid, host
    started       Unix time the run (this attempt) started training
    updated       Unix time of this write
    epoch, epochs the epoch being trained (1-based) and the run's epochs
    step, total   updates done and the run's total
    step0         updates done when this attempt started (a resumed run's checkpoint)
    seconds       training seconds of this attempt (compile excluded): with step - step0,
                  the run's own speed, from which the time left is estimated
    loss          the mean loss of the latest interval of updates
    metrics       {name: value}, the latest evaluation's (validation loss, accuracy, ...)
    checkpoint    {epoch, step, time} of the latest checkpoint written, or null

A file is written beside the target and renamed over it (no fsync: it is rewritten within a
second and worth nothing after a crash), so a reader sees a whole file. The driver removes a
run's file once the run is stored; one left by a killed grid says where the run stopped until
the grid runs again.
"""

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

PROGRESS = "progress"  # DIR/progress/<run_id>.json
FORMAT = 1
WRITE_EVERY = 1.0  # seconds between two writes within an epoch


def progress_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / PROGRESS / f"{run_id}.json"


class Reporter:
    """One run's progress file: called by rnnfast.run_setup.steps() as the run trains."""

    def __init__(self, results_dir: str | Path, run_id: str) -> None:
        self.path = progress_path(results_dir, run_id)
        self.state: dict[str, Any] = {
            "format": FORMAT, "run_id": run_id, "pid": os.getpid(),
            "host": socket.gethostname(), "started": time.time(), "updated": None,
            "epoch": 1, "epochs": None, "step": 0, "total": None, "step0": 0, "seconds": 0.0,
            "loss": None, "metrics": {}, "checkpoint": None,
        }  # fmt: skip
        self._t0 = time.perf_counter()
        self._last = float("-inf")
        self._failed = False

    def begin(self, epoch: int, epochs: int, step: int, total: int) -> None:
        """Training starts (after the compile) at update `step` of `total`."""
        self._t0 = time.perf_counter()
        self.state.update(epoch=epoch, epochs=epochs, step=step, total=total, step0=step)
        self._write()

    def interval(self, epoch: int, step: int, loss: float) -> None:
        self.state.update(epoch=epoch, step=step, loss=loss)
        if time.perf_counter() - self._last >= WRITE_EVERY:
            self._write()

    def metric(self, name: str, value: float) -> None:
        self.state["metrics"][name] = value

    def epoch_end(self, epoch: int) -> None:
        """After the epoch's evaluations (their metrics given)."""
        self._write()

    def checkpoint(self, epoch: int, step: int) -> None:
        self.state["checkpoint"] = {"epoch": epoch, "step": step, "time": time.time()}
        self._write()

    def _write(self) -> None:
        if self._failed:
            return
        now = time.perf_counter()
        self._last = now
        self.state.update(updated=time.time(), seconds=now - self._t0)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.state, allow_nan=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:  # a full disk costs the live view, never the run
            self._failed = True
            with contextlib.suppress(OSError):
                tmp.unlink()


_CURRENT: ContextVar[Reporter | None] = ContextVar("rnnfast_live_reporter", default=None)


@contextlib.contextmanager
def session(results_dir: str | Path, run_id: str) -> Iterator[Reporter]:
    """The run trained inside (in this thread) reports to DIR/progress/<run_id>.json."""
    token = _CURRENT.set(Reporter(results_dir, run_id))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def current() -> Reporter | None:
    """The session's reporter, None outside one (rnnfast.train called directly)."""
    return _CURRENT.get()


def read(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """{run_id: state} of every readable progress file (one being replaced or damaged is
    left out: the next read finds it)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(results_dir) / PROGRESS).glob("*.json")):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and state.get("run_id") == path.stem:
            out[path.stem] = state
    return out


def remove(results_dir: str | Path, run_id: str) -> None:
    """The run is stored: its live state is over."""
    progress_path(results_dir, run_id).unlink(missing_ok=True)


def remove_stored(results_dir: str | Path, stored: set[str] | dict[str, Any]) -> None:
    """Remove the live states of stored runs, left by a driver killed between storing a run
    and removing its state."""
    for path in (Path(results_dir) / PROGRESS).glob("*.json"):
        if path.stem in stored:
            with contextlib.suppress(OSError):
                path.unlink()


def _process_alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed worker whose parent died may stay
    one where PID 1 does not reap, as in many containers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc: what kill said
        return True


def alive(state: dict[str, Any], stale_after: float = 120.0) -> bool:
    """Whether the run of this state is still training: on this host, its process lives
    (and wrote within 10 x stale_after seconds: a pid can be reused); elsewhere, it wrote
    within stale_after seconds."""
    age = time.time() - (state.get("updated") or 0)
    if state.get("host") == socket.gethostname() and isinstance(state.get("pid"), int):
        return _process_alive(state["pid"]) and age < 10 * stale_after
    return age < stale_after


def in_progress(results_dir: str | Path, stored: set[str]) -> list[dict[str, Any]]:
    """The runs of a results directory that are not stored but have a live state or a
    checkpoint (rnnfast.checkpoint), by run id: {run_id, training (bool: its process is
    alive), state (the live state or None), checkpoint (position {epoch, update, step,
    time} of the latest readable checkpoint, or None)}."""
    from rnnfast.checkpoint import position  # noqa: PLC0415
    from rnnfast.store import CHECKPOINTS  # noqa: PLC0415

    states = {rid: st for rid, st in read(results_dir).items() if rid not in stored}
    ck_dir = Path(results_dir) / CHECKPOINTS
    ids = {p.name.split(".")[0] for p in ck_dir.glob("*.npz")} - stored
    out = []
    for rid in sorted(ids | set(states)):
        ck = None
        for name in (f"{rid}.npz", f"{rid}.prev.npz"):
            if (ck := position(ck_dir / name)) is not None:
                break
        st = states.get(rid)
        out.append({"run_id": rid, "training": st is not None and alive(st), "state": st,
                    "checkpoint": ck})  # fmt: skip
    return out
