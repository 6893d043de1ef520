"""The benchmark harness (benchmarks/_harness.py) with trivial workloads: no timing asserted.

Workers are spawned processes that unpickle the builders below by reference, so they are
module-level functions of this file.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _harness  # noqa: E402
from _harness import WorkerError, Workers, Workload, measure, split_calls  # noqa: E402


def setup_report() -> dict[str, str]:
    return {"pid": str(os.getpid()), "var": os.environ.get("RNNFAST_HARNESS_TEST", "unset")}


def build_sum(shape: int, dtype: str):
    def step() -> None:
        sum(range(shape * 100))

    return step


def build_fail(shape: int, dtype: str):
    raise ValueError(f"no workload for shape {shape}")


def build_exit(shape: int, dtype: str):
    os._exit(3)


def build_import_colorsys(shape: int, dtype: str):
    import colorsys  # noqa: F401

    return build_sum(shape, dtype)


def registry(**builders) -> dict[str, Workload]:
    return {name: Workload(name, build, setup_report) for name, build in builders.items()}


def test_split_calls():
    assert split_calls(6, 5) == [1, 1, 1, 1, 2]
    assert split_calls(2, 5) == [0, 0, 1, 0, 1]
    assert sum(split_calls(31, 4)) == 31


def test_measure_counts_and_isolation():
    reg = registry(a=build_sum, b=build_sum)
    with Workers(["a", "b"], reg) as workers:
        pids = {workers.info[n]["pid"] for n in ("a", "b")}
        times = measure(workers, [1, 2], "float32", {"a": 4, "b": 2}, rounds=3, pause=0.0)
    assert len(pids) == 2 and str(os.getpid()) not in pids
    assert set(times) == {1, 2}
    for shape in (1, 2):
        assert len(times[shape]["a"].times) == 4 and len(times[shape]["b"].times) == 2
        assert all(t > 0 for timing in times[shape].values() for t in timing.times)
        assert times[shape]["a"].median > 0
        load = times[shape]["a"].other_load
        assert load is None or load >= 0


def test_env_reaches_the_worker_only():
    reg = {"a": Workload("a", build_sum, setup_report, env={"RNNFAST_HARNESS_TEST": "7"})}
    before = os.environ.get("RNNFAST_HARNESS_TEST")
    with Workers(["a"], reg) as workers:
        assert workers.info["a"]["var"] == "7"
    assert os.environ.get("RNNFAST_HARNESS_TEST") == before


def test_worker_exception_carries_its_traceback():
    with Workers(["bad"], registry(bad=build_fail)) as workers:
        with pytest.raises(WorkerError, match="no workload for shape 5") as info:
            workers.run(_harness.Task("bad", 5, "float32", 1, 0))
    assert "Traceback" in info.value.detail and info.value.workload == "bad"


def test_worker_death_is_reported():
    with Workers(["dead"], registry(dead=build_exit)) as workers:
        with pytest.raises(WorkerError, match="exited with code 3"):
            workers.run(_harness.Task("dead", 1, "float32", 1, 0))


def test_forbidden_import_is_an_error():
    reg = {"a": Workload("a", build_import_colorsys, forbid=("colorsys",))}
    with Workers(["a"], reg) as workers:
        with pytest.raises(WorkerError, match="forbidden modules: colorsys"):
            workers.run(_harness.Task("a", 1, "float32", 1, 1))


def test_workers_are_stopped_when_the_driver_raises():
    with pytest.raises(KeyboardInterrupt):
        with Workers(["a"], registry(a=build_sum)) as workers:
            procs = list(workers._procs.values())
            raise KeyboardInterrupt
    assert procs and not any(p.is_alive() for p in procs)
