"""Mid-run checkpoints of CUDA runs (rnnfast.cuda.training.train_group given each run's
rnnfast.checkpoint.Target, as `rnnfast run grid --backend cuda` trains them), on the CUDA
simulator: a resumed run's curve, final metrics and weights are bit-identical to an
uninterrupted run's, whichever runs share its launches.

    in process   a group of two runs (seeds) resumed from every checkpoint they wrote; a
                 group where one run resumes and the other starts; CPU and CUDA checkpoints
                 are never used for each other
    subprocess   `rnnfast run grid --backend cuda` killed with SIGKILL after its first
                 checkpoint, run again to the end; checkpoints removed

The simulator runs every GPU thread in Python (about half a second an update on the 2-core
machine), so the runs are tiny.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnfast import checkpoint, live, run_setup
from rnnfast.config import resolve
from rnnfast.cuda import unavailable_reason
from rnnfast.executors import Task, execute
from rnnfast.grid import load_grid, run_id
from rnnfast.store import read_model, read_run

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"{unavailable_reason()}")

# 24 / (2 * 3) = 4 updates an epoch, 2 epochs. With INTERVAL patched to 2 and a checkpoint
# every 2 updates: checkpoints in the middle of epoch 1 (step 2), at its end (4) and in the
# middle of epoch 2 (6). An LSTM with Adam: the carried h and c and both optimizer states
# must come back.
BASE = {"task": "dependency", "cell": "lstm", "hidden_size": 2, "num_steps": 3, "batch_size": 2,
        "sequence_length": 24, "epochs": 2, "optimizer": "adam", "lr": 0.05,
        "dtype": "float64", "checkpoint_every": 2}  # fmt: skip
CONFIGS = [dict(BASE, seed=1), dict(BASE, seed=2)]
STEPS = [2, 4, 6]


def _rid(config: dict, backend: str = "cuda") -> str:
    return run_id(resolve(dict(config, backend=backend)))


def _group(configs: list[dict], results: Path | None):
    from rnnfast.cuda.training import train_group

    targets = reporters = None
    if results is not None:
        targets = [checkpoint.Target(results, _rid(c)) for c in configs]
        reporters = [live.Reporter(results, _rid(c)) for c in configs]
    return train_group(configs, checkpoints=targets, live=reporters)


def _same(a, b) -> None:
    """Two TrainResults: the same curve, final metrics and weights, bit for bit."""
    assert a.status == b.status == "ok", (a.message, b.message)
    pd.testing.assert_frame_equal(a.curves, b.curves, check_exact=True)
    assert a.curves["value"].to_numpy().tobytes() == b.curves["value"].to_numpy().tobytes()
    assert a.final == b.final
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype, k
        assert a.params[k].tobytes() == b.params[k].tobytes(), k


@pytest.fixture(scope="module")
def plain():
    """The group trained without checkpoints, at the default interval (200 updates)."""
    return _group(CONFIGS, None)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The group trained with checkpoints at INTERVAL = 2: (results, {run_id: copies of its
    checkpoints in order})."""
    res = tmp_path_factory.mktemp("written") / "res"
    into = res.parent / "copies"
    into.mkdir()
    copies: dict[str, list[Path]] = {}
    write = checkpoint.write_file

    def spy(path, meta, arrays):
        write(path, meta, arrays)
        mine = copies.setdefault(meta["run_id"], [])
        mine.append(into / f"{meta['run_id']}.{len(mine)}.npz")
        shutil.copyfile(path, mine[-1])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_setup, "INTERVAL", 2)
        mp.setattr(checkpoint, "write_file", spy)
        results = _group(CONFIGS, res)
    return results, copies


def _place(copy: Path, results: Path, rid: str) -> Path:
    return Path(shutil.copyfile(copy, results / "checkpoints" / f"{rid}.npz"))


def _fresh(results: Path) -> Path:
    d = results / "checkpoints"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return results


def test_checkpointing_changes_nothing_and_writes_cuda_checkpoints(plain, written):
    results, copies = written
    for a, b in zip(results, plain, strict=True):
        _same(a, b)  # INTERVAL = 2 and the saves included
        assert "resumed" not in a.info and a.info["cuda_group_size"] == 2
    assert sorted(copies) == sorted(_rid(c) for c in CONFIGS)
    for rid, mine in copies.items():
        metas = [checkpoint.read_file(c)[0] for c in mine]
        assert [m["position"]["step"] for m in metas] == STEPS
        assert all(m["run_id"] == rid for m in metas)
        assert {m["layout"]["backend"] for m in metas} == {"cuda"}
        assert {m["layout"]["device"] for m in metas} == {"CUDA simulator"}
    # each run saved its own rows of the device arrays
    (a0, b0) = (checkpoint.read_file(copies[_rid(c)][0])[1] for c in CONFIGS)
    assert a0["theta"].shape == b0["theta"].shape and not np.array_equal(a0["theta"], b0["theta"])
    assert np.any(a0["h"] != 0) and np.any(a0["c"] != 0) and np.any(a0["s2"] != 0)
    # each run reported its progress: where it ended and its last checkpoint
    states = live.read(next(iter(copies.values()))[0].parent.parent / "res")
    assert sorted(states) == sorted(copies)
    for st in states.values():
        assert (st["epoch"], st["epochs"], st["step"], st["total"]) == (2, 2, 8, 8)
        assert st["checkpoint"]["step"] == STEPS[-1] and np.isfinite(st["loss"])


@pytest.mark.parametrize("k", range(len(STEPS)))
def test_resume_from_every_checkpoint_is_bit_identical(tmp_path, plain, written, k):
    """Both runs resume from their k-th checkpoint (the default interval from there)."""
    _, copies = written
    res = _fresh(tmp_path / "res")
    for c in CONFIGS:
        _place(copies[_rid(c)][k], res, _rid(c))
    again = _group(CONFIGS, res)
    for a, b in zip(again, plain, strict=True):
        assert a.info["resumed"]["update"] == STEPS[k]
        assert a.info["cuda_group_size"] == 2
        _same(a, b)


def test_one_run_resumes_and_the_other_starts(tmp_path, plain, written):
    """Runs at different positions train in two lockstep sets, each exactly as alone."""
    _, copies = written
    res = _fresh(tmp_path / "res")
    _place(copies[_rid(CONFIGS[1])][-1], res, _rid(CONFIGS[1]))
    first, second = _group(CONFIGS, res)
    assert "resumed" not in first.info and second.info["resumed"]["update"] == STEPS[-1]
    assert first.info["cuda_group_size"] == second.info["cuda_group_size"] == 1
    _same(first, plain[0])
    _same(second, plain[1])


def test_cpu_and_cuda_checkpoints_are_not_used_for_each_other(tmp_path, capfd, plain, written):
    """A valid checkpoint of the same run id but the other backend: one line, from the start."""
    _, copies = written
    cpu_cfg = resolve(dict(CONFIGS[0], backend="cpu"))
    cpu_rid, cuda_rid = _rid(CONFIGS[0], "cpu"), _rid(CONFIGS[0])
    assert cpu_rid != cuda_rid  # the backend is part of a run's identity anyway
    cpu_res = _fresh(tmp_path / "cpu")
    cpu_plain = execute(Task(cpu_rid, cpu_cfg, checkpoints=str(cpu_res)))
    # the CPU's one checkpoint at its default interval: the end of epoch 1
    meta, arrays = checkpoint.read_file(cpu_res / "checkpoints" / f"{cpu_rid}.npz")
    assert "backend" not in meta["layout"] and meta["position"]["step"] == 4

    # a CPU checkpoint renamed for the CUDA run
    res = _fresh(tmp_path / "res")
    target = res / "checkpoints" / f"{cuda_rid}.npz"
    checkpoint.write_file(target, {**meta, "run_id": cuda_rid}, arrays)
    capfd.readouterr()
    (got,) = _group(CONFIGS[:1], res)
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0], lines
    assert "written by the cpu backend, and this run trains on cuda" in lines[0]
    assert "resumed" not in got.info
    _same(got, plain[0])

    # and a CUDA checkpoint renamed for the CPU run
    meta, arrays = checkpoint.read_file(written[1][cuda_rid][1])
    target = _fresh(cpu_res) / "checkpoints" / f"{cpu_rid}.npz"
    checkpoint.write_file(target, {**meta, "run_id": cpu_rid}, arrays)
    record, curves = execute(Task(cpu_rid, cpu_cfg, checkpoints=str(cpu_res)))
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "written by the cuda backend, and this run trains on cpu" in lines[0]
    assert "resumed" not in record.provenance
    pd.testing.assert_frame_equal(curves, cpu_plain[1], check_exact=True)
    assert record.final == cpu_plain[0].final


# ---------------------------------------------------------------- kill -9, then run grid again

GRID = """
name = "ckcuda"
task = "dependency"
[fixed]
{fixed}
"""


def _position(path: Path) -> int:
    try:
        return checkpoint.read_file(path)[0]["position"]["step"]
    except (ValueError, OSError):  # not there yet, or being replaced: ask again
        return -1


def test_kill_9_then_resume_is_bit_identical(tmp_path, plain):
    """The default interval: the one checkpoint is at the end of epoch 1 (step 4); the run is
    killed in epoch 2 and the next `run grid` finishes it from there."""
    fixed = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in CONFIGS[0].items()
                      if k != "task")  # fmt: skip
    f = tmp_path / "g.toml"
    f.write_text(GRID.format(fixed=fixed))
    (spec,) = load_grid(f).points()
    rid = _rid(spec.config)  # --backend cuda sets the key, part of the run's identity
    res, log = tmp_path / "res", tmp_path / "log.txt"
    ck = res / "checkpoints" / f"{rid}.npz"
    cmd = [sys.executable, "-m", "rnnfast", "run", "grid", str(f), "--results", str(res),
           "--backend", "cuda", "-q"]  # fmt: skip
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    with open(log, "a") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while _position(ck) < 1:
        if p.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            pytest.fail(f"no checkpoint (exit {p.poll()}):\n{log.read_text()}")
        time.sleep(0.005)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert _position(ck) == 4 and not list(res.glob("runs/*.parquet"))  # nothing stored yet

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((res / "checkpoints").glob("*.npz")) == []  # removed once stored
    rec, curves = read_run(res, rid)
    assert rec.provenance["resumed"]["update"] == 4
    assert rec.provenance["cuda_group_size"] == 1
    ref = plain[0]
    assert list(curves["step"]) == list(ref.curves["step"])
    assert list(curves["metric"].astype(str)) == list(ref.curves["metric"].astype(str))
    assert curves["value"].to_numpy().tobytes() == ref.curves["value"].to_numpy().tobytes()
    assert rec.final == ref.final
    params = read_model(res, rid)["params"]
    assert params.keys() == ref.params.keys()
    assert all(params[k].tobytes() == ref.params[k].tobytes() for k in params)
