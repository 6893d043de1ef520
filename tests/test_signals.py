"""A `rnnfast run grid` driver that dies leaves no process behind, and SIGTERM stops it as
Ctrl-C does (exit 143): #14 item 2.

Each test starts `python -m rnnfast run grid` in a new session (its workers and
multiprocessing's resource tracker share its process group) on a grid of two long runs that
checkpoint every epoch (1000 updates, a fraction of a second), waits until both workers train
(each has a checkpoint), then signals the driver. "No process left" means no live
(non-zombie) process in that process group; Linux only (/proc).
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_grids import dependency_grid

from rnnfast import runner, stopping
from rnnfast.grid import load_grid
from rnnfast.store import read_run, status_of

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# 1000 updates an epoch (sequence_length 1,000,000 / (200 * 5)), about 0.1 s idle
GRID = """
name = "signals"
task = "dependency"
[fixed]
cell = "rnn"
hidden_size = 4
num_steps = 5
batch_size = 200
epochs = {epochs}
checkpoint_every = 1000
[grid]
seed = [0, 1]
"""
STARTUP_S = 240.0  # spawn, imports and a cold Numba compile on a busy machine
GONE_S = 10.0  # the bound for every process of the tree to exit


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and (f := _stat(int(e.name))) and int(f[1]) == pid]  # fmt: skip


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Driver:
    """`python -m rnnfast run grid` in its own session, output to a log file."""

    def __init__(self, tmp_path: Path, epochs: int) -> None:
        self.grid = tmp_path / "signals.toml"
        self.grid.write_text(GRID.format(epochs=epochs))
        self.results = tmp_path / "res"
        self.log = tmp_path / "driver.log"
        self.proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        return [sys.executable, "-m", "rnnfast", "run", "grid", str(self.grid),
                "--results", str(self.results), "--workers", "2"]  # fmt: skip

    def start(self) -> "Driver":
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(self.args(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # fmt: skip
        return self

    def wait_until_both_workers_train(self) -> list[int]:
        """Both runs have checkpointed: the workers are past start-up and training. Returns
        the driver's child processes then (two workers and the resource tracker)."""
        checkpoints = self.results / "checkpoints"
        deadline = time.monotonic() + STARTUP_S
        while len(list(checkpoints.glob("*[0-9a-f].npz"))) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the runs did not start (exit {self.proc.poll()}):\n"
                            f"{self.log.read_text()}")  # fmt: skip
            time.sleep(0.05)
        return children(self.proc.pid)

    def wait_for_group_gone(self) -> float:
        """Seconds until no process of the driver's group is left; fails after GONE_S."""
        t0 = time.monotonic()
        while left := group_members(self.proc.pid):
            if time.monotonic() - t0 > GONE_S:
                described = [f"{pid}: {cmdline(pid)[:120]}" for pid in left]
                self.kill()
                pytest.fail(f"processes left {GONE_S:g} s after the driver: {described}")
            time.sleep(0.05)
        return time.monotonic() - t0

    def kill(self) -> None:
        """Test cleanup: the whole group, whatever is left of it."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


@pytest.fixture
def driver(tmp_path):
    made = []

    def make(epochs: int) -> Driver:
        made.append(Driver(tmp_path, epochs))
        return made[-1]

    yield make
    for d in made:
        d.kill()


def _assert_workers_and_tracker(kids: list[int]) -> None:
    lines = [cmdline(pid) for pid in kids]
    assert sum("spawn_main" in c for c in lines) == 2, lines
    assert sum("resource_tracker" in c for c in lines) == 1, lines


def test_kill_9_of_the_driver_leaves_no_process(driver):
    d = driver(epochs=1000).start()  # runs of about 100 s: they are in flight when killed
    _assert_workers_and_tracker(d.wait_until_both_workers_train())
    os.kill(d.proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
    assert d.proc.wait(timeout=10) == -signal.SIGKILL
    d.wait_for_group_gone()
    assert status_of(d.results) == {}  # nothing finished, nothing half-written
    assert len(list((d.results / "checkpoints").glob("*[0-9a-f].npz"))) == 2  # kept


@pytest.mark.parametrize("to", ["driver", "group"])
def test_sigterm_stops_like_ctrl_c_exit_143_then_the_grid_resumes(driver, to):
    """SIGTERM to the driver (kill PID), or to its whole group (as systemd or docker stop
    send it): exit 143, the one-line message, no process left, the checkpoints kept, and the
    next `run grid` resumes both runs from them."""
    d = driver(epochs=40).start()  # about 4 s a run, idle
    _assert_workers_and_tracker(d.wait_until_both_workers_train())
    if to == "driver":
        os.kill(d.proc.pid, signal.SIGTERM)
    else:
        os.killpg(d.proc.pid, signal.SIGTERM)
    code = d.proc.wait(timeout=30)
    text = d.log.read_text()
    assert code == 143, text
    lines = [line for line in text.splitlines() if line.strip()]
    interrupted = ("interrupted: finished runs are stored; run the same command again to "
                   "complete the rest")  # fmt: skip
    assert lines[-1] == interrupted, text
    assert lines[0] == "signals: 2 to run, 0 already done -> " + str(d.results), text
    assert "Traceback" not in text
    d.wait_for_group_gone()
    assert status_of(d.results) == {}
    assert len(list((d.results / "checkpoints").glob("*[0-9a-f].npz"))) == 2

    r = subprocess.run(d.args(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 ok, 0 diverged, 0 failed, 0 already done" in r.stdout
    assert "taking over" not in r.stderr  # the lock was released, not left stale
    for run_id in status_of(d.results):
        record, _ = read_run(d.results, run_id)
        assert "resumed" in record.provenance, r.stderr
        assert record.provenance["resumed"]["update"] >= 1000


# ---------------------------------------------------------------- a signal during a store write


TINY = dependency_grid("tiny", "hidden_size = 2\n")


@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, stopping.Terminated),
                                            (signal.SIGINT, KeyboardInterrupt)])  # fmt: skip
def test_a_stop_signal_during_a_write_takes_effect_once_it_is_stored(tmp_path, monkeypatch,
                                                                    signum, raised):  # fmt: skip
    """Inside stop_signals() the signal arrives while the first finished run is written: the
    write completes, then the plan stops (Terminated for SIGTERM, KeyboardInterrupt for
    Ctrl-C), and the handlers are Python's defaults again afterwards."""
    f = tmp_path / "tiny.toml"
    f.write_text(TINY)
    res = tmp_path / "res"
    real_write, written = runner.write_run, []

    def write_while_signalled(results_dir, record, curves):
        # never SIGTERM the test process without rnnfast's handler
        assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler)
        os.kill(os.getpid(), signum)
        time.sleep(0.2)  # a handler that raised at once would interrupt this sleep
        written.append(real_write(results_dir, record, curves))

    monkeypatch.setattr(runner, "write_run", write_while_signalled)
    plan = runner.make_plan(load_grid(f), res)
    with pytest.raises(raised) as stopped, stopping.stop_signals():
        runner.run_plan(plan, workers=1)
    assert type(stopped.value) is raised
    assert len(written) == 1 and written[0].exists()
    assert len(status_of(res)) == 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


# ---------------------------------------------------------------- the portable fallback

GRANDCHILD = """
import os, subprocess, sys
code = "import os; from rnnfast.executors import _watch_driver; _watch_driver(os.getppid())"
child = subprocess.Popen([sys.executable, "-c", code])
print(child.pid, flush=True)
child.wait()
"""


def test_the_watchdog_alone_ends_a_worker_whose_driver_was_killed():
    """Without PR_SET_PDEATHSIG (macOS, or a kernel that refuses it): a process polling its
    driver with _watch_driver exits soon after the driver's kill -9."""
    middle = subprocess.Popen([sys.executable, "-c", GRANDCHILD], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)  # fmt: skip
    try:
        watcher = int(middle.stdout.readline())
        time.sleep(1.0)  # past its start-up: now polling
        assert (_stat(watcher) or ["Z"])[0] != "Z", "the watcher did not start"
        os.kill(middle.pid, signal.SIGKILL)
        middle.wait()
        t0 = time.monotonic()
        while (fields := _stat(watcher)) is not None and fields[0] != "Z":
            assert time.monotonic() - t0 < GONE_S, "the watcher outlived its driver"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(middle.pid, signal.SIGKILL)
        middle.wait()


def test_a_worker_whose_driver_is_already_gone_exits_at_start():
    code = "from rnnfast.executors import _die_with_driver; _die_with_driver(1); print('alive')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (1, "")
