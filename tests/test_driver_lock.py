"""One driver per results directory (rnnfast.driver_lock, `run grid`): #14 item 5.

A second driver refuses with one line naming the owner (exit 2); a lock left by a driver that
died is taken over with a one-line notice; the lock is released after a normal run, Ctrl-C,
SIGTERM and an exception; filesystems without flock fall back on the owner data.
"""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_grids import dependency_grid

from rnnfast import driver_lock, runner, stopping
from rnnfast.cli import main
from rnnfast.driver_lock import LOCK_FILE, DriverLock, LockHeld
from rnnfast.store import status_of

HOST = socket.gethostname()


def grid_file(tmp_path: Path, epochs: int = 1) -> Path:
    f = tmp_path / "locked.toml"
    f.write_text(dependency_grid("locked", f"hidden_size = 2\nepochs = {epochs}\n"))
    return f


def run_grid(f: Path, res: Path, *extra):
    return CliRunner().invoke(main, ["run", "grid", str(f), "--results", str(res),
                                     "--workers", "1", *map(str, extra)])  # fmt: skip


def owner(res: Path) -> dict | None:
    text = (res / LOCK_FILE).read_text()
    return json.loads(text) if text else None


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def assert_released(res: Path, capsys) -> None:
    """The file says nobody owns it, and the next driver takes it without a notice."""
    assert (res / LOCK_FILE).read_text() == ""
    capsys.readouterr()
    with DriverLock(res):
        assert owner(res)["pid"] == os.getpid()
    assert capsys.readouterr().err == ""
    assert (res / LOCK_FILE).read_text() == ""


# ---------------------------------------------------------------- two drivers


def test_a_second_driver_refuses_naming_the_first_which_releases_on_sigterm(tmp_path, capsys):
    f = grid_file(tmp_path, epochs=100_000)  # runs that outlast the test
    res = tmp_path / "res"
    first = subprocess.Popen([sys.executable, "-m", "rnnfast", "run", "grid", str(f),
                              "--results", str(res), "--workers", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (res / LOCK_FILE).exists() or not owner(res):
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.01)
        mine = owner(res)
        assert (mine["pid"], mine["host"]) == (first.pid, HOST)

        r = run_grid(f, res)
        assert r.exit_code == 2
        assert r.output.strip().splitlines() == [
            f"Error: {res}: in use by another `rnnfast run grid` (pid {first.pid} on host "
            f"{HOST}, started {mine['started']}); wait for it to finish, or use another "
            "results directory"
        ]
        r = run_grid(f, res, "--dry-run")  # reads only: no lock needed
        assert r.exit_code == 0 and "2 to run, 0 done" in r.stdout, r.output

        os.kill(first.pid, signal.SIGTERM)
        assert first.wait(timeout=60) == 143
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert_released(res, capsys)


def test_a_driver_in_this_process_holds_it_too(tmp_path):
    """flock belongs to an open file, not a process: a second DriverLock here is refused."""
    res = tmp_path / "res"
    with DriverLock(res):
        with pytest.raises(LockHeld, match=f"pid {os.getpid()} on host {HOST}"):
            DriverLock(res).acquire()
        r = run_grid(grid_file(tmp_path), res)
        assert r.exit_code == 2 and f"pid {os.getpid()}" in r.output
        assert status_of(res) == {}


def test_dry_run_takes_no_lock_and_creates_nothing(tmp_path):
    res = tmp_path / "new"
    r = run_grid(grid_file(tmp_path), res, "--dry-run")
    assert r.exit_code == 0, r.output
    assert not res.exists()


# ---------------------------------------------------------------- stale locks


def test_the_lock_of_a_dead_driver_is_taken_over_with_a_one_line_notice(tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    pid = dead_pid()
    stale = {"pid": pid, "host": HOST, "started": "2026-01-01T00:00:00+00:00"}
    (res / LOCK_FILE).write_text(json.dumps(stale))
    r = run_grid(grid_file(tmp_path), res)
    assert r.exit_code == 0, r.output
    notices = [line for line in r.stderr.splitlines() if "taking over" in line]
    assert notices == [
        f"rnnfast: {res / LOCK_FILE}: taking over from pid {pid} on host {HOST}, started "
        "2026-01-01T00:00:00+00:00, which ended without releasing it"
    ]
    assert "2 ok" in r.stdout
    assert (res / LOCK_FILE).read_text() == ""


# ---------------------------------------------------------------- released, however the run ends


def test_released_after_a_normal_run(tmp_path, capsys):
    res = tmp_path / "res"
    r = run_grid(grid_file(tmp_path), res)
    assert r.exit_code == 0 and "2 ok" in r.stdout, r.output
    assert_released(res, capsys)


@pytest.mark.parametrize(
    "raised, code, message",
    [(KeyboardInterrupt(), 130, "interrupted: finished runs are stored"),
     (stopping.Terminated(), 143, "interrupted: finished runs are stored"),
     (RuntimeError("the cluster went away"), 1, "Error: the cluster went away")],
)  # fmt: skip
def test_released_after_ctrl_c_sigterm_and_an_exception(tmp_path, capsys, monkeypatch,
                                                        raised, code, message):  # fmt: skip
    def stopped(plan, **options):
        assert owner(plan.results_dir)["pid"] == os.getpid()  # held while the plan runs
        raise raised

    monkeypatch.setattr(runner, "run_plan", stopped)
    res = tmp_path / "res"
    r = run_grid(grid_file(tmp_path), res)
    assert r.exit_code == code
    assert message in r.output and "Traceback" not in r.output
    assert_released(res, capsys)


def test_released_after_an_exception_in_the_library(tmp_path, capsys):
    res = tmp_path / "res"
    with pytest.raises(ValueError, match="inside"), DriverLock(res):
        raise ValueError("inside")
    assert_released(res, capsys)


# ---------------------------------------------------------------- filesystems without flock


@pytest.fixture
def no_flock(monkeypatch):
    """flock failing as on a filesystem that does not support it."""

    def flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    fake = types.SimpleNamespace(LOCK_EX=2, LOCK_NB=4, flock=flock)
    monkeypatch.setattr(driver_lock, "fcntl", fake)


def test_without_flock_the_owner_data_is_the_lock(tmp_path, no_flock, capsys):
    res = tmp_path / "res"
    res.mkdir()
    path = res / LOCK_FILE
    sleeper = subprocess.Popen(["sleep", "60"])
    try:  # a live owner on this host holds it
        path.write_text(json.dumps({"pid": sleeper.pid, "host": HOST, "started": "s"}))
        with pytest.raises(LockHeld, match=f"pid {sleeper.pid} on host {HOST}, started s"):
            DriverLock(res).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    # an owner on another host cannot be checked: it holds it until its file is removed
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "s"}))
    with pytest.raises(LockHeld, match=f"if that driver is gone, delete {path}"):
        DriverLock(res).acquire()
    # a dead owner on this host is stale: taken over with the notice
    path.write_text(json.dumps({"pid": dead_pid(), "host": HOST, "started": "s"}))
    capsys.readouterr()
    with DriverLock(res):
        assert "taking over from pid" in capsys.readouterr().err
        assert owner(res)["pid"] == os.getpid()
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            DriverLock(res).acquire()  # and now this process holds it
    assert path.read_text() == ""
    with DriverLock(res):  # released: no notice
        pass
    assert capsys.readouterr().err == ""
