"""What `rnnfast run grid` shows while it trains.

For each run in flight: its epoch, updates, latest loss, latest evaluation metrics and time
left; for the grid: runs done and the time left. Both are estimated from the work done, not
from a count of runs: a run's own speed (updates per training second, from its live state,
rnnfast.live) gives its time left; a queued run is expected to take as long as the runs
already measured that differ from it only in values that do not change the cost (seed,
learning rate, ...: COST_NEUTRAL), else as long as the runs measured so far on average; the
grid's time left is the larger of the longest run in flight and all the work left shared over
the workers.

    monitor = GridMonitor(grid_name, specs, workers, results_dir)
    monitor.finished(record)     # the driver stored a run
    monitor.lines()              # the view now: a summary line, then one line per run in flight

LiveView draws it on a stream: redrawn in place every second on a terminal; on anything else
(a log, a pipe) as plain lines every `every` seconds, and one line per finished run in both.
"""

import contextlib
import shutil
import threading
import time
from collections.abc import Sequence
from typing import Any

from rnnfast.grid import RunSpec, format_point
from rnnfast.live import read as read_live

# config keys that leave a run's cost unchanged: runs differing only in them take equally long
COST_NEUTRAL = frozenset({"seed", "lr", "momentum", "beta1", "beta2", "eps", "alpha",
                          "initial_accumulator", "clip", "checkpoint_every",
                          "diverge_above"})  # fmt: skip
REDRAW_S = 1.0  # a terminal's view
PLAIN_EVERY_S = 30.0  # plain lines, by default


def cost_key(config: dict[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in config.items() if k not in COST_NEUTRAL))


def duration(seconds: float) -> str:
    """4.2 s, 45 s, 4 min 10 s, 2 h 05 min."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _number(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class GridMonitor:
    """The grid's state as seen by its driver: the runs it stored, the live state of the
    runs in flight. finished() and lines() may be called from different threads."""

    def __init__(self, name: str, specs: Sequence[RunSpec], workers: int, results_dir) -> None:
        self.name, self.workers, self.results_dir = name, max(1, workers), results_dir
        self.specs = {s.run_id: s for s in specs}
        self.t_start = time.time()
        self.done: dict[str, Any] = {}  # run_id -> RunRecord
        self.measured: dict[str, list[float]] = {}  # cost key -> seconds of whole runs
        self._lock = threading.Lock()

    def finished(self, record) -> None:
        with self._lock:
            self.done[record.run_id] = record
            spec = self.specs.get(record.run_id)
            if spec is not None and record.status == "ok":
                seconds = record.wall_time - (record.compile_time or 0.0)
                self.measured.setdefault(cost_key(spec.config), []).append(max(seconds, 0.0))

    def in_flight(self) -> dict[str, dict[str, Any]]:
        """{run_id: live state} of the grid's runs training now (this driver's attempt)."""
        states = read_live(self.results_dir)
        with self._lock:
            return {rid: st for rid, st in states.items()
                    if rid in self.specs and rid not in self.done
                    and (st.get("started") or 0) >= self.t_start - 1.0}  # fmt: skip

    @staticmethod
    def _speed(state: dict[str, Any]) -> float | None:
        """Updates per training second of a run in flight, None before it is measured."""
        done, seconds = state["step"] - state["step0"], state.get("seconds") or 0.0
        return done / seconds if done > 0 and seconds > 0 else None

    def time_left(self, flying: dict[str, dict[str, Any]]) -> tuple[dict[str, float], float | None]:
        """({run_id: seconds left} of measured runs in flight, the grid's seconds left or None
        while some run's cost cannot be estimated yet)."""
        left: dict[str, float] = {}
        whole: dict[str, list[float]] = {k: list(v) for k, v in self.measured.items()}
        for rid, st in flying.items():
            speed = self._speed(st)
            if speed is not None and st.get("total"):
                left[rid] = (st["total"] - st["step"]) / speed
                key = cost_key(self.specs[rid].config)
                whole.setdefault(key, []).append(st["total"] / speed)
        everything = [s for v in whole.values() for s in v]
        if not everything:
            return left, None
        overall = sum(everything) / len(everything)
        queued = 0.0
        for rid, spec in self.specs.items():
            if rid in self.done or rid in left:
                continue
            same = whole.get(cost_key(spec.config))
            queued += sum(same) / len(same) if same else overall
        longest = max(left.values(), default=0.0)
        return left, max(longest, (sum(left.values()) + queued) / self.workers)

    def lines(self) -> list[str]:
        flying = self.in_flight()
        with self._lock:
            left, grid_left = self.time_left(flying)
            n_done = len(self.done)
            failed = sum(r.status == "failed" for r in self.done.values())
            diverged = sum(r.status == "diverged" for r in self.done.values())
        head = f"{self.name}: {n_done} of {len(self.specs)} runs done"
        if failed or diverged:
            head += f" ({failed} failed, {diverged} diverged)"
        head += f", {len(flying)} training"
        if grid_left is not None and n_done < len(self.specs):
            head += f", about {duration(grid_left)} left"
        out = [head]
        for rid, st in sorted(flying.items()):
            out.append("  " + self._run_line(rid, st, left.get(rid)))
        return out

    def _run_line(self, rid: str, st: dict[str, Any], left: float | None) -> str:
        """Time left before the metrics: a terminal's narrow line cuts the metrics first."""
        parts = [f"epoch {st.get('epoch')}/{st.get('epochs')}"]
        if left is not None:
            parts.append(f"{duration(left)} left")
        if st.get("loss") is not None:
            parts.append(f"loss {_number(st['loss'])}")
        parts += [f"{name} {_number(v)}" for name, v in (st.get("metrics") or {}).items()]
        return f"{rid[:10]} {format_point(self.specs[rid].point)}: {', '.join(parts)}"

    def finished_line(self, record) -> str:
        spec = self.specs.get(record.run_id)
        point = format_point(spec.point) if spec is not None else ""
        finals = ", ".join(f"{k} {_number(v)}" for k, v in record.final.items() if k != "updates")
        text = f"{record.status} {record.run_id[:10]} {point}"
        return f"{text}: {finals}, {duration(record.wall_time)}" if finals else text


class LiveView:
    """Draws a GridMonitor on a stream from a background thread (see the module docstring).

    with LiveView(monitor, stream, terminal=stream.isatty()) as view:
        ...                      # view.finished(record) for each stored run
    """

    def __init__(self, monitor: GridMonitor, stream, terminal: bool,
                 every: float | None = None) -> None:  # fmt: skip
        """every: seconds between two views (default: REDRAW_S on a terminal, else
        PLAIN_EVERY_S)."""
        self.monitor, self.stream, self.terminal = monitor, stream, terminal
        self.every = every if every is not None else REDRAW_S if terminal else PLAIN_EVERY_S
        self._drawn = 0  # lines of the block on screen (terminal)
        self._write = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rnnfast-live")

    def __enter__(self) -> "LiveView":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._write:
            self._clear()

    def finished(self, record) -> None:
        self.monitor.finished(record)
        line = self.monitor.finished_line(record)
        block = self.monitor.lines() if self.terminal else []
        with self._write:
            self._clear()
            self._emit([line], cut=False)  # a log line, not redrawn: it may wrap
            self._emit(block)
            self._drawn = len(block)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                lines = self.monitor.lines()
            except Exception:  # noqa: BLE001 - the view must never stop the grid
                continue
            if not self.terminal and len(lines) == 1:
                continue  # nothing in flight (setting up, compiling, finishing): nothing new
            with self._write:
                self._clear()
                self._emit(lines)
                if self.terminal:
                    self._drawn = len(lines)

    def _clear(self) -> None:
        if self.terminal and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up, then erase the block
            self._drawn = 0

    def _emit(self, lines: list[str], cut: bool = True) -> None:
        width = shutil.get_terminal_size().columns if self.terminal and cut else 0
        with contextlib.suppress(OSError, ValueError):  # a closed pipe costs the view only
            for line in lines:
                if width and len(line) >= width:
                    line = line[: width - 2] + "…"  # one screen line each: the redraw counts
                self.stream.write(line + "\n")
            self.stream.flush()
