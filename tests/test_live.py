"""Live progress of a grid (rnnfast.live, rnnfast.monitor), runs in progress in `rnnfast ls`,
runs made by other code (--rerun-stale) and --keep-checkpoints.

    unit        the live state file, the time-left estimate, the terminal and plain views
    training    a run in a live session reports where it is and changes nothing it trains
    end to end  `rnnfast run grid` with stderr to a file prints plain progress lines; killed
                with SIGKILL, `rnnfast ls` lists its runs as interrupted with their last
                checkpoint; run again, they are stored and nothing is left in progress
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_grids import dependency_grid

from rnnfast import checkpoint, live
from rnnfast.cli import main
from rnnfast.grid import load_grid
from rnnfast.monitor import GridMonitor, LiveView, cost_key, duration
from rnnfast.store import RunRecord, read_run, write_run
from rnnfast.training import train

RNNFAST = Path(sys.executable).parent / "rnnfast"
REPO = Path(__file__).resolve().parent.parent
WAVES = REPO / "experiments" / "data" / "waves.npz"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---------------------------------------------------------------- the live state file


def test_reporter_writes_its_state_at_most_once_a_second_and_read_skips_bad_files(tmp_path):
    rep = live.Reporter(tmp_path, "run1")
    rep.begin(1, 3, 0, 300)
    state = live.read(tmp_path)["run1"]
    assert (state["epoch"], state["epochs"], state["step"], state["total"]) == (1, 3, 0, 300)
    assert state["pid"] == os.getpid() and state["loss"] is None
    rep.interval(1, 100, 0.75)  # within a second of the last write: kept, not written
    assert live.read(tmp_path)["run1"]["step"] == 0
    rep.metric("valid_accuracy", 0.5)
    rep.epoch_end(1)  # always written
    state = live.read(tmp_path)["run1"]
    assert (state["step"], state["loss"], state["metrics"]) == (100, 0.75, {"valid_accuracy": 0.5})
    rep.checkpoint(2, 100)
    assert live.read(tmp_path)["run1"]["checkpoint"]["step"] == 100
    # a damaged file, a file of another run, a directory: left out
    d = tmp_path / live.PROGRESS
    (d / "bad.json").write_text("{not json")
    (d / "other.json").write_text(json.dumps({"run_id": "someone-else"}))
    (d / "dir.json").mkdir()
    assert list(live.read(tmp_path)) == ["run1"]
    live.remove_stored(tmp_path, {"someone-else", "other"})
    assert not (d / "other.json").exists() and (d / "run1.json").exists()
    live.remove(tmp_path, "run1")
    assert "run1" not in live.read(tmp_path)
    assert live.read(tmp_path / "nowhere") == {}


def test_a_reporter_that_cannot_write_never_stops_the_run(tmp_path):
    (tmp_path / live.PROGRESS).write_text("a file where the directory should be")
    rep = live.Reporter(tmp_path, "run1")
    rep.begin(1, 1, 0, 10)  # no exception
    rep.epoch_end(1)
    assert live.read(tmp_path) == {}


def test_alive_by_pid_on_this_host_and_by_time_elsewhere():
    now = time.time()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = {"host": os.uname().nodename, "pid": os.getpid(), "updated": now}
    assert live.alive(me)
    assert not live.alive({**me, "pid": dead.pid})
    assert live.alive({"host": "elsewhere", "pid": 1, "updated": now - 10})
    assert not live.alive({"host": "elsewhere", "pid": 1, "updated": now - 1000})


# ---------------------------------------------------------------- a run in a session


def _waves(n: int = 120):
    with np.load(WAVES) as f:
        return f["x"][:n], f["y"][:n]


def test_a_run_in_a_live_session_reports_its_progress_and_trains_the_same(tmp_path):
    config = {"task": "sequences", "cell": "gru", "hidden_size": 8, "batch_size": 10,
              "epochs": 3, "seed": 4, "checkpoint_every": 5}  # fmt: skip
    plain = train(config, data=_waves())
    with checkpoint.session(tmp_path, "r1"), live.session(tmp_path, "r1"):
        reported = train(config, data=_waves())
    assert reported.curves.equals(plain.curves)
    assert all(np.array_equal(reported.params[k], plain.params[k]) for k in plain.params)
    state = live.read(tmp_path)["r1"]
    total = int(plain.final["updates"])
    assert (state["epoch"], state["epochs"], state["step"], state["total"]) == (3, 3, total, total)
    assert state["step0"] == 0 and state["seconds"] > 0
    assert set(state["metrics"]) == {"valid_loss", "valid_accuracy"}
    assert state["metrics"]["valid_accuracy"] == plain.final["valid_accuracy"]
    assert 0 < state["checkpoint"]["step"] < total  # checkpoints are not written after the end
    assert np.isfinite(state["loss"])


# ---------------------------------------------------------------- the estimate and the views

GRID = dependency_grid("est", grid="hidden_size = [2, 4]\nseed = [0, 1, 2]")


def _specs(tmp_path):
    f = tmp_path / "est.toml"
    f.write_text(GRID)
    specs = load_grid(f).points()
    by = {(s.config["hidden_size"], s.config["seed"]): s for s in specs}
    return specs, by


def _state(run_id: str, **kw) -> dict:
    st = {"format": 1, "run_id": run_id, "pid": os.getpid(), "host": os.uname().nodename,
          "started": time.time(), "updated": time.time(), "epoch": 2, "epochs": 3, "step": 50,
          "total": 100, "step0": 0, "seconds": 10.0, "loss": 0.5,
          "metrics": {"valid_accuracy": 0.75}, "checkpoint": None}  # fmt: skip
    return {**st, **kw}


def _put(results: Path, state: dict) -> None:
    d = results / live.PROGRESS
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{state['run_id']}.json").write_text(json.dumps(state))


def _record(spec, wall: float, compile_time: float | None, status: str = "ok") -> RunRecord:
    return RunRecord(run_id=spec.run_id, grid="est", config=spec.config, point={},
                     status=status, final={"loss": 0.25, "updates": 100}, wall_time=wall,
                     compile_time=compile_time)  # fmt: skip


def test_time_left_comes_from_the_work_done_and_runs_of_the_same_cost(tmp_path):
    specs, by = _specs(tmp_path)
    assert cost_key(by[2, 0].config) == cost_key(by[2, 1].config)  # the seed costs nothing
    assert cost_key(by[2, 0].config) != cost_key(by[4, 0].config)
    m = GridMonitor("est", specs, 2, tmp_path)
    # in flight: half done in 10 s -> 10 s left, 20 s in all
    _put(tmp_path, _state(by[2, 0].run_id))
    # a state of an earlier attempt (a killed grid's) is not this grid's
    _put(tmp_path, _state(by[4, 2].run_id, started=m.t_start - 60))
    m.finished(_record(by[2, 1], 42.0, 2.0))  # 40 s of training
    m.finished(_record(by[4, 1], 10.0, None))
    left, grid_left = m.time_left(m.in_flight())
    assert left == {by[2, 0].run_id: pytest.approx(10.0)}
    # queued: (2, 2) as its kind, (20 + 40) / 2 = 30; (4, 0) and (4, 2) as theirs, 10 each;
    # the work left, 10 + 30 + 10 + 10, over 2 workers
    assert grid_left == pytest.approx(30.0)
    lines = m.lines()
    assert lines[0] == "est: 2 of 6 runs done, 1 training, about 30 s left"
    assert len(lines) == 2
    assert lines[1].startswith(f"  {by[2, 0].run_id[:10]} hidden_size=2, seed=0: ")
    assert lines[1].endswith("epoch 2/3, 10 s left, loss 0.5, valid_accuracy 0.75")
    # the longest run in flight bounds the grid from below
    _put(tmp_path, _state(by[2, 0].run_id, step=1, total=1000, seconds=1.0))
    assert m.time_left(m.in_flight())[1] == pytest.approx(999.0)


def test_no_estimate_before_anything_is_measured_and_failures_counted(tmp_path):
    specs, by = _specs(tmp_path)
    m = GridMonitor("est", specs, 2, tmp_path)
    _put(tmp_path, _state(by[2, 0].run_id, step=0))  # started, no update yet
    assert m.lines()[0] == "est: 0 of 6 runs done, 1 training"
    m.finished(_record(by[2, 1], 5.0, 1.0, status="failed"))  # a failed run measures nothing
    assert m.measured == {}
    assert m.lines()[0] == "est: 1 of 6 runs done (1 failed, 0 diverged), 1 training"
    line = m.finished_line(_record(by[4, 0], 12.5, 1.0))
    assert line == f"ok {by[4, 0].run_id[:10]} hidden_size=4, seed=0: loss 0.25, 12 s"


def test_duration():
    assert [duration(s) for s in (0.04, 4.2, 45, 250, 7500)] == [
        "0.0 s", "4.2 s", "45 s", "4 min 10 s", "2 h 05 min"]  # fmt: skip


def test_plain_view_prints_lines_only_while_runs_train_and_a_line_per_finished_run(tmp_path):
    specs, by = _specs(tmp_path)
    out = io.StringIO()
    m = GridMonitor("est", specs, 2, tmp_path)
    with LiveView(m, out, terminal=False, every=0.05) as view:
        time.sleep(0.3)
        assert out.getvalue() == ""  # nothing in flight: nothing to log
        _put(tmp_path, _state(by[2, 0].run_id))
        time.sleep(0.3)
        view.finished(_record(by[2, 1], 3.0, 1.0))
    text = out.getvalue()
    assert "\x1b" not in text
    assert "est: 0 of 6 runs done, 1 training" in text
    assert "hidden_size=2, seed=0: epoch 2/3" in text
    assert f"ok {by[2, 1].run_id[:10]} hidden_size=2, seed=1: loss 0.25, 3.0 s\n" in text


def test_terminal_view_redraws_its_block_in_place_and_clears_it_at_the_end(tmp_path):
    specs, by = _specs(tmp_path)
    out = io.StringIO()
    m = GridMonitor("est", specs, 2, tmp_path)
    _put(tmp_path, _state(by[2, 0].run_id))
    with LiveView(m, out, terminal=True, every=0.05) as view:
        time.sleep(0.4)
        view.finished(_record(by[2, 1], 3.0, 1.0))
    text = out.getvalue()
    assert text.count("\x1b[2F\x1b[J") >= 2  # the two-line block, moved up over and erased
    assert text.endswith("\x1b[2F\x1b[J")  # erased at the end: the summary follows
    assert f"ok {by[2, 1].run_id[:10]}" in text


# ---------------------------------------------------------------- end to end

WAVES_GRID = f"""
name = "waves"
task = "sequences"
[fixed]
data = "{WAVES}"
hidden_size = 16
batch_size = 10
epochs = 300
checkpoint_every = 50
[grid]
seed = [0, 1]
"""


def _wait_for(predicate, timeout: float, p: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert p.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_grid_progress_lines_then_kill_9_then_ls_shows_interrupted_runs_then_resume(tmp_path):
    f = tmp_path / "waves.toml"
    f.write_text(WAVES_GRID)
    res, log = tmp_path / "res", tmp_path / "grid.log"
    ids = [s.run_id for s in load_grid(f).points()]
    cmd = [RNNFAST, "run", "grid", f, "--results", res, "--workers", "2",
           "--progress-every", "0.2"]  # fmt: skip
    with open(log, "w") as err:
        p = subprocess.Popen([str(c) for c in cmd], stderr=err, stdout=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    ck = [res / "checkpoints" / f"{rid}.npz" for rid in ids]
    try:
        _wait_for(lambda: all(c.exists() for c in ck) and "2 training, about" in log.read_text(),
                  240, p, log)  # fmt: skip
        r = invoke("ls", res)
        assert r.exit_code == 0, r.output
        assert "in progress: 2 runs" in r.output and r.output.count("  training  ") == 2
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    text = log.read_text()
    # plain lines: the grid's summary and each run in flight, with its epoch and time left
    assert "waves: 0 of 2 runs done, 2 training, about " in text
    assert "\x1b" not in text
    for rid in ids:
        assert f"  {rid[:10]} seed=" in text
    time.sleep(1.0)
    r = invoke("ls", res)
    assert r.exit_code == 0, r.output
    assert r.output.count("  interrupted  ") == 2, r.output
    assert r.output.count("last checkpoint: update ") == 2, r.output
    # run again: resumed from the checkpoints, stored, nothing left in progress
    r2 = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.strip().endswith("2 ok, 0 diverged, 0 failed, 0 already done")
    for rid in ids:
        assert f"ok {rid[:10]} seed=" in r2.stderr
        assert read_run(res, rid)[0].provenance["resumed"]["update"] > 0
    assert list((res / live.PROGRESS).iterdir()) == []
    assert list((res / "checkpoints").glob("*.npz")) == []  # (a killed writer's .tmp may stay)
    assert "in progress" not in invoke("ls", res).output


# ---------------------------------------------------------------- other code; --keep-checkpoints

TINY = dependency_grid("tiny", "epochs = 2\ncheckpoint_every = 10\n", "seed = [0, 1, 2]")


def _restamp(res: Path, run_id: str, **provenance) -> None:
    record, curves = read_run(res, run_id)
    record.provenance = {k: v for k, v in {**record.provenance, **provenance}.items()
                         if v is not None}  # fmt: skip
    write_run(res, record, curves)


def test_runs_made_by_other_code_are_reported_and_rerun_with_rerun_stale(tmp_path):
    f = tmp_path / "tiny.toml"
    f.write_text(TINY)
    res = tmp_path / "res"
    ids = [s.run_id for s in load_grid(f).points()]
    r = invoke("run", "grid", f, "--results", res, "--keep-checkpoints", "-q")
    assert r.exit_code == 0, r.output
    assert "note:" not in r.output
    assert all((res / "checkpoints" / f"{rid}.npz").is_file() for rid in ids)
    _restamp(res, ids[0], rnnfast="0.0.9", source_sha256="ab" * 32)
    _restamp(res, ids[1], source_sha256=None)  # a run stored before runs recorded their code
    r = invoke("run", "grid", f, "--results", res)
    assert r.exit_code == 0, r.output
    assert ("note: 2 stored runs of this grid were made by other code than this rnnfast's "
            "(1 by rnnfast 0.0.9, sources abababababab; 1 by unrecorded code); rerun them "
            "with --rerun-stale") in r.output  # fmt: skip
    dry = invoke("run", "grid", f, "--results", res, "--dry-run").output.splitlines()
    assert dry[0].endswith("(made by rnnfast 0.0.9, sources abababababab)")
    assert dry[1].endswith("(made by unrecorded code)")
    assert "made by" not in dry[2]
    before = {rid: read_run(res, rid)[0].finished for rid in ids}
    r = invoke("run", "grid", f, "--results", res, "--rerun-stale", "-q")
    assert r.exit_code == 0, r.output
    assert "2 ok, 0 diverged, 0 failed, 1 already done" in r.output and "note:" not in r.output
    after = {rid: read_run(res, rid)[0] for rid in ids}
    assert [after[rid].finished != before[rid] for rid in ids] == [True, True, False]
    current = after[ids[2]].provenance["source_sha256"]
    assert after[ids[0]].provenance["source_sha256"] == current
    # without --keep-checkpoints a stored run's checkpoints are removed
    assert not (res / "checkpoints" / f"{ids[0]}.npz").exists()
    assert (res / "checkpoints" / f"{ids[2]}.npz").exists()
