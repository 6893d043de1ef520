"""rnnfast.executors: execute() in-process, the local spawn pool (threads pinned, on_done in
the driver, a worker dying mid-run), and Dask: a LocalCluster it starts, one the test
starts (scheduler address), and `rnnfast run grid --executor dask`.

Worker deaths are injected through pickling (train configs cannot make a worker die): a
Task subclass whose __reduce__ makes a worker process that unpickles it call os._exit, always
or once (a marker file records the first death). Unpickled in the process that pickled it
(Dask's scheduler, which lives in this process for a LocalCluster), it stays a
KillsItsWorker. Spawned and Dask worker processes inherit this process's sys.path, so they
can import this module to unpickle it.
"""

import math
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from time import perf_counter

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_grids import dependency_grid

from rnnfast.cli import main
from rnnfast.config import resolve
from rnnfast.executors import (
    DASK_CONNECT_S,
    Task,
    check_scheduler_address,
    default_threads,
    execute,
    run_dask,
    run_local,
)
from rnnfast.grid import load_grid
from rnnfast.store import load_results, status_of, write_run

TINY = {"task": "dependency", "sequence_length": 4000, "batch_size": 20, "num_steps": 5}
TINY_UPDATES = 40  # 4000 / (20 * 5)


def tiny_task(i: int, threads: int | None = None, **extra) -> Task:
    config = resolve({**TINY, "hidden_size": 2 + i % 3, "seed": i, **extra})
    return Task(f"run-{i}", config, "g", {"seed": i}, threads)


def _unpickle(marker: str, pickled_by: int, state: dict) -> Task:
    """Runs where the task is unpickled: in a worker (a process other than the one that
    pickled it) it dies, always or once (marker a file path)."""
    if os.getpid() == pickled_by:  # e.g. Dask's scheduler, in this process: pass it on
        return KillsItsWorker(**state, marker=marker)
    if marker == "always" or not os.path.exists(marker):
        if marker != "always":
            Path(marker).touch()
        os._exit(3)
    return Task(**state)


@dataclass(frozen=True)
class KillsItsWorker(Task):
    """A Task whose unpickling kills the worker process: marker "always", or a file path
    (dies the first time, creating the file; unpickles to a plain Task after that)."""

    marker: str = "always"

    def __reduce__(self):
        state = {f.name: getattr(self, f.name) for f in fields(Task)}
        return _unpickle, (self.marker, os.getpid(), state)


class Collector:
    """on_done: writes each run to a store and records where it was called."""

    def __init__(self, results: Path) -> None:
        self.results, self.calls = results, []

    def __call__(self, record, curves) -> None:
        self.calls.append((record, curves, os.getpid(), threading.current_thread().name))
        write_run(self.results, record, curves)

    @property
    def records(self) -> dict:
        return {rec.run_id: rec for rec, *_ in self.calls}

    def assert_driver_once_each(self, tasks) -> None:
        assert sorted(rec.run_id for rec, *_ in self.calls) == sorted(t.run_id for t in tasks)
        assert {pid for *_, pid, _ in self.calls} == {os.getpid()}
        assert {name for *_, name in self.calls} == {threading.main_thread().name}


# ---------------------------------------------------------------- execute, in this process


def test_execute_ok_returns_record_curve_and_provenance(tmp_path):
    task = tiny_task(0, threads=1)
    record, curves = execute(task)
    assert record.status == "ok" and record.error == ""
    assert (record.run_id, record.grid, record.point) == ("run-0", "g", {"seed": 0})
    assert record.config == task.config
    assert record.final["updates"] == TINY_UPDATES and math.isfinite(record.final["loss"])
    loss = curves[curves.metric == "loss"]
    assert loss["step"].tolist() == list(range(1, TINY_UPDATES + 1))
    assert loss["value"].mean() == pytest.approx(record.final["loss"])
    prov = record.provenance
    assert {"git_commit", "git_dirty", "rnnfast", "numba", "numpy", "python", "os"} <= set(prov)
    assert prov["cpu_count"] == os.cpu_count() and "cpu" in prov
    assert prov["numba_threads"] == 1 and "thread_env" in prov
    start, end = datetime.fromisoformat(record.started), datetime.fromisoformat(record.finished)
    assert start.tzinfo is not None and start <= end
    assert 0 < record.wall_time <= (end - start).total_seconds() + 1.0
    assert record.compile_time is not None and record.compile_time >= 0
    # it is storable as it is
    write_run(tmp_path, record, curves)
    assert status_of(tmp_path) == {"run-0": "ok"}


@pytest.mark.parametrize(
    "extra, status, error",
    [
        ({"task": "mnist", "train_size": 10, "data_dir": "EMPTY"}, "failed",
         "FileNotFoundError: MNIST data not found in"),
        ({"lr": -1.0}, "failed", "ValueError: lr: expected a number > 0"),
        ({"optimizer": "sgd", "nonlinearity": "relu", "hidden_size": 64, "lr": 1e4}, "diverged",
         "loss is nan at update"),
    ],
)  # fmt: skip
def test_execute_never_raises(tmp_path, extra, status, error):
    config = {**TINY, **extra}
    if config["task"] == "mnist":  # keys of another task are not allowed
        config = {"task": "mnist", **{k: v for k, v in extra.items() if k != "task"}}
        config["data_dir"] = str(tmp_path)  # empty
    record, curves = execute(Task("bad", config))
    assert record.status == status
    assert error in record.error
    assert record.started and record.finished and record.provenance["git_commit"] is not None
    if status == "failed":
        assert record.error.startswith("Traceback (most recent call last)")
        assert curves is None and record.final == {}
    else:  # the partial curve, ending at the non-finite loss
        loss = curves[curves.metric == "loss"]["value"].to_numpy()
        assert 1 < len(loss) < TINY_UPDATES and not np.isfinite(loss[-1])
    write_run(tmp_path / "res", record, curves)
    assert status_of(tmp_path / "res") == {"bad": status}


# ---------------------------------------------------------------- run_local: a spawn pool


def test_run_local_two_workers_pins_threads_and_calls_on_done_in_the_driver(tmp_path):
    threads = 1 if default_threads(2) != 1 else 2  # not what the workers would get anyway
    tasks = [tiny_task(i, threads) for i in range(4)]
    env_before = {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = Collector(tmp_path)
    run_local(tasks, 2, done)
    done.assert_driver_once_each(tasks)
    assert {k: os.environ.get(k) for k in env_before} == env_before  # the driver's restored
    for rec, curves, *_ in done.calls:
        assert rec.status == "ok", rec.error
        env = rec.provenance["thread_env"]
        assert env["NUMBA_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == str(threads)
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == str(threads)
        assert rec.provenance["numba_threads"] == threads
        assert len(curves[curves.metric == "loss"]) == TINY_UPDATES
    runs, _ = load_results(tmp_path)
    assert sorted(runs["run_id"]) == [f"run-{i}" for i in range(4)]
    # the same numbers as in this process: the pool changes where, not what
    record, _ = execute(tasks[1])
    assert done.records["run-1"].final == pytest.approx(record.final, rel=1e-6)


def test_run_local_retries_a_run_whose_worker_died(tmp_path):
    marker = tmp_path / "died-once"
    tasks = [tiny_task(0), KillsItsWorker(**vars(tiny_task(1)), marker=str(marker))]
    done = Collector(tmp_path / "res")
    run_local(tasks, 1, done)
    assert marker.exists()  # a worker did die
    done.assert_driver_once_each(tasks)
    assert {r: rec.status for r, rec in done.records.items()} == {"run-0": "ok", "run-1": "ok"}
    # a run that kills its worker every time: recorded as failed after the retry; the run
    # before it (same single worker) is unaffected
    tasks = [tiny_task(2), KillsItsWorker(**vars(tiny_task(3)))]
    done = Collector(tmp_path / "res2")
    run_local(tasks, 1, done, retries=1)
    done.assert_driver_once_each(tasks)
    ok, lost = done.records["run-2"], done.records["run-3"]
    assert ok.status == "ok"
    assert lost.status == "failed" and "worker process died" in lost.error
    assert status_of(tmp_path / "res2") == {"run-2": "ok", "run-3": "failed"}
    assert [c for rec, c, *_ in done.calls if rec.run_id == "run-3"] == [None]


# ---------------------------------------------------------------- dask


@pytest.fixture
def distributed():
    return pytest.importorskip("distributed")


def test_run_dask_local_cluster_results_come_back_to_the_driver(tmp_path, distributed):
    """A LocalCluster of 2 process workers started by run_dask; one run kills its worker
    once: Dask restarts the worker and reruns it."""
    marker = tmp_path / "died-once"
    tasks = [tiny_task(i, threads=1) for i in range(3)]
    tasks.append(KillsItsWorker(**vars(tiny_task(3, threads=1)), marker=str(marker)))
    done = Collector(tmp_path / "res")
    run_dask(tasks, done, workers=2)
    done.assert_driver_once_each(tasks)
    assert marker.exists()
    assert {r: rec.status for r, rec in done.records.items()} == dict.fromkeys(
        [t.run_id for t in tasks], "ok")  # fmt: skip
    for rec in done.records.values():
        assert rec.provenance["thread_env"]["NUMBA_NUM_THREADS"] == "1"
    runs, curves = load_results(tmp_path / "res")
    assert sorted(runs["run_id"]) == sorted(t.run_id for t in tasks)
    assert (curves[curves.metric == "loss"].groupby("run_id").size() == TINY_UPDATES).all()


GRID = dependency_grid("dask-grid", grid="hidden_size = [2, 4]\nseed = [0, 1]")


def test_existing_scheduler_via_run_dask_and_the_cli(tmp_path, distributed):
    f = tmp_path / "g.toml"
    f.write_text(GRID)
    ids = [s.run_id for s in load_grid(f).points()]
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        tasks = [tiny_task(i) for i in range(2)]
        done = Collector(tmp_path / "direct")
        run_dask(tasks, done, scheduler=address)
        done.assert_driver_once_each(tasks)
        assert status_of(tmp_path / "direct") == {"run-0": "ok", "run-1": "ok"}

        res = tmp_path / "cli"
        r = CliRunner().invoke(main, ["run", "grid", str(f), "--results", str(res),
                                      "--executor", "dask", "--scheduler", address])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "4 ok, 0 diverged, 0 failed, 0 already done" in r.stdout
        assert status_of(res) == dict.fromkeys(sorted(ids), "ok")
        # the cluster outlives the runs: run_dask closed its client, not the cluster
        assert cluster.scheduler_address == address and len(cluster.workers) == 1

        # the worker was started without rnnfast's environment (Dask's own sets 1 BLAS
        # thread); a task's threads still set its BLAS pool, at run time
        pinned = Collector(tmp_path / "pinned")
        run_dask([tiny_task(7, threads=2)], pinned, scheduler=address)
        prov = pinned.records["run-7"].provenance
        assert pinned.records["run-7"].status == "ok"
        assert prov["blas_threads"] == 2 and prov["numba_threads"] == 2


def test_cli_run_grid_dask_local_cluster(tmp_path, distributed):
    f = tmp_path / "g.toml"
    f.write_text(GRID)
    res = tmp_path / "res"
    threads = 1 if default_threads(2) != 1 else 2  # --threads, not the default
    args = ["run", "grid", str(f), "--results", str(res), "--executor", "dask", "--workers", "2"]
    r = CliRunner().invoke(main, [*args, "--threads", str(threads)])
    assert r.exit_code == 0, r.output
    assert "4 ok, 0 diverged, 0 failed, 0 already done" in r.stdout
    ids = [s.run_id for s in load_grid(f).points()]
    assert status_of(res) == dict.fromkeys(sorted(ids), "ok")
    runs, _ = load_results(res)
    # the workers' environment holds --threads, and the provenance says the same
    assert (runs["prov.thread_env.NUMBA_NUM_THREADS"] == str(threads)).all()
    assert (runs["prov.thread_env.OPENBLAS_NUM_THREADS"] == str(threads)).all()
    assert (runs["prov.numba_threads"] == threads).all()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "4 already done" in r.stdout, r.output


# ---------------------------------------------------------------- dask: a bad scheduler address


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://host:1",
                                     "tcp://[::1]:8786"])  # fmt: skip
def test_check_scheduler_address_accepts(address, distributed):
    check_scheduler_address(address)


@pytest.mark.parametrize(
    "address, why",
    [("nonsense", "missing port number in address 'nonsense'"),
     ("tcp://host", "missing port number in address 'host'"),
     ("tcp://host:port", "invalid literal for int() with base 10: 'port'"),
     ("tcp://host:70000", "expected HOST:PORT"),
     ("foo://host:1", "unknown protocol 'foo'; known: inproc, tcp, tls")],  # and others
)  # fmt: skip
def test_malformed_scheduler_address_is_one_line_exit_2_at_once(tmp_path, distributed,
                                                                address, why):  # fmt: skip
    f = tmp_path / "g.toml"
    f.write_text(GRID)
    res = tmp_path / "res"
    r = CliRunner().invoke(main, ["run", "grid", str(f), "--results", str(res),
                                  "--executor", "dask", "--scheduler", address])  # fmt: skip
    assert r.exit_code == 2
    (line,) = r.output.splitlines()
    assert line.startswith(f"Error: scheduler {address!r}: expected a Dask scheduler address "
                           f"such as tcp://HOST:8786 ({why}")  # fmt: skip
    assert line.endswith(")")
    assert not res.exists()  # refused before anything was made or trained


def test_unreachable_scheduler_fails_within_seconds_in_one_line_exit_1(tmp_path, distributed):
    """A subprocess, so that anything Dask logs to the real stderr is seen too."""
    f = tmp_path / "g.toml"
    f.write_text(GRID)
    res = tmp_path / "res"
    t0 = perf_counter()
    r = subprocess.run([sys.executable, "-m", "rnnfast", "run", "grid", str(f), "--results",
                        str(res), "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    elapsed = perf_counter() - t0
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [
        f"dask-grid: 4 to run, 0 already done -> {res}",
        f"Error: dask scheduler tcp://127.0.0.1:1: no answer within {DASK_CONNECT_S} s; start "
        "it (`dask scheduler`) or check the address",
    ]
    assert elapsed < DASK_CONNECT_S + 10  # the imports, then the connection timeout
    assert status_of(res) == {}
