"""`rnnfast run grid` and the commands around it, end to end: real (tiny) runs in spawned
worker processes, results in tmp_path.

    run grid   store every run, skip finished ones, --dry-run, --force, -p, --rerun-failed,
               failed and diverged runs, bad grid files (exit 2, one line)
    ls, show, check, plot, store compact, run one
    kill -9 of the driver and Ctrl-C mid-grid, then resume (subprocesses)

Each `run grid` starts a worker pool (about a second once Numba's cache is warm), so the
assertions are grouped into few invocations.
"""

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tiny_grids import TINY_DEPENDENCY

from rnnfast.cli import main
from rnnfast.grid import load_grid
from rnnfast.store import load_results, read_run, status_of

RNNFAST = Path(sys.executable).parent / "rnnfast"  # the console script of this venv
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY_DEP = TINY_DEPENDENCY  # 40 updates: a run takes milliseconds once compiled
TINY_UPDATES = 40

GRID_2x2 = f"""
name = "tiny"
task = "dependency"
[fixed]
{TINY_DEP}
[grid]
hidden_size = [2, 4]
seed = [0, 1]
"""

BAND_OK = """
[[expect]]
metric = "loss"
min = 0.0
max = 2.0
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def ids_of(grid_file: Path, overrides=None) -> list[str]:
    return [s.run_id for s in load_grid(grid_file, overrides).points()]


def stats(results: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of every file under DIR/runs: a rewrite changes the inode."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (results / "runs").iterdir()}


def finished(results: Path, run_id: str) -> datetime:
    return datetime.fromisoformat(read_run(results, run_id)[0].finished)


def strict_load(results: Path):
    """load_results with every warning (an unreadable file skipped) turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_results(results)


def one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    assert "Traceback" not in output
    return lines[0]


# ---------------------------------------------------------------- a finished grid, shared


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """The 2 x 2 grid run once (2 workers): (grid file with an [[expect]] band, results)."""
    d = tmp_path_factory.mktemp("finished")
    f = write(d / "tiny.toml", GRID_2x2 + BAND_OK)
    res = d / "res"
    r = invoke("run", "grid", f, "--results", res, "--workers", 2)
    assert r.exit_code == 0, r.output
    return f, res


# ---------------------------------------------------------------- run grid


def test_run_grid_stores_every_run_skips_done_dry_run_overrides_and_force(tmp_path):
    f = write(tmp_path / "tiny.toml", GRID_2x2)
    res = tmp_path / "res"
    ids = ids_of(f)
    assert len(set(ids)) == 4

    r = invoke("run", "grid", f, "--results", res, "--workers", 2)
    assert r.exit_code == 0, r.output
    assert "tiny: 4 to run, 0 already done" in r.stderr
    assert "4 ok, 0 diverged, 0 failed, 0 already done" in r.stdout
    assert status_of(res) == dict.fromkeys(sorted(ids), "ok")
    runs, curves = strict_load(res)
    assert sorted(runs["run_id"]) == sorted(ids)
    assert sorted(set(zip(runs["hidden_size"], runs["seed"], strict=True))) == [
        (2, 0), (2, 1), (4, 0), (4, 1)]  # fmt: skip
    assert runs["final.loss"].map(math.isfinite).all()
    assert (curves[curves.metric == "loss"].groupby("run_id").size() == TINY_UPDATES).all()
    first = stats(res)
    assert sorted(first) == sorted(f"{i}.parquet" for i in ids)

    # again: everything is skipped, nothing is rewritten
    r = invoke("run", "grid", f, "--results", res, "--workers", 2)
    assert r.exit_code == 0, r.output
    assert "tiny: 0 to run, 4 already done" in r.stderr
    assert "0 ok, 0 diverged, 0 failed, 4 already done" in r.stdout
    assert stats(res) == first

    # --dry-run with an override adding seed 2: lists all 6, marks the 2 new ones, writes nothing
    r = invoke("run", "grid", f, "--results", res, "--dry-run", "-p", "seed=0,1,2")
    assert r.exit_code == 0, r.output
    new = [i for i in ids_of(f, {"seed": [0, 1, 2]}) if i not in ids]
    assert len(new) == 2
    listed = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()[:-1]}
    assert listed == {**dict.fromkeys(ids, "done"), **dict.fromkeys(new, "to")}
    assert all("seed=2" in line for line in r.stdout.splitlines() if line.split()[0] in new)
    assert r.stdout.splitlines()[-1] == f"2 to run, 4 done, in {res}"
    assert stats(res) == first
    fresh = tmp_path / "fresh"
    r = invoke("run", "grid", f, "--results", fresh, "--dry-run")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("to run  not run") == 4
    assert not fresh.exists()

    # -p seed=0,1,2 runs only the two new points
    r = invoke("run", "grid", f, "--results", res, "--workers", 2, "-p", "seed=0,1,2")
    assert r.exit_code == 0, r.output
    assert "2 ok, 0 diverged, 0 failed, 4 already done" in r.stdout
    assert status_of(res) == dict.fromkeys(sorted(ids + new), "ok")
    assert read_run(res, new[0])[0].config["seed"] == 2
    assert {k: v for k, v in stats(res).items() if k in first} == first

    # --force reruns the file's 4 points: new files, later finish times
    before = {i: finished(res, i) for i in ids}
    r = invoke("run", "grid", f, "--results", res, "--workers", 2, "--force")
    assert r.exit_code == 0, r.output
    assert "tiny: 4 to run, 0 already done" in r.stderr
    assert "4 ok, 0 diverged, 0 failed, 0 already done" in r.stdout
    after = stats(res)
    for i in ids:
        assert after[f"{i}.parquet"] != first[f"{i}.parquet"]
        assert finished(res, i) > before[i]
    assert all(after[f"{i}.parquet"] == stats(res)[f"{i}.parquet"] for i in new)


def _tiny_mnist(directory: Path) -> Path:
    """Six training and four test images in MNIST's IDX format."""
    from rnnfast.tasks.idx import write_idx
    from rnnfast.tasks.mnist_data import FILES

    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 6, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 4, dtype=np.uint8),
    }
    directory.mkdir(parents=True)
    for key, a in arrays.items():
        write_idx(directory / FILES[key].name, a, gzip=False)
    return directory


def test_failed_run_is_stored_with_traceback_grid_continues_and_rerun_failed(tmp_path):
    """train_size = 100 passes validation but the data has only 6 images: train raises inside
    the worker. That point comes first; the grid goes on to the second."""
    data = _tiny_mnist(tmp_path / "mnist")
    f = write(tmp_path / "m.toml", f"""
name = "mnist-fail"
task = "mnist"
[fixed]
data_dir = "{data}"
hidden_size = 4
batch_size = 2
epochs = 1
[grid]
train_size = [100, 4]
""")  # fmt: skip
    res = tmp_path / "res"
    bad, good = ids_of(f)

    r = invoke("run", "grid", f, "--results", res, "--workers", 1)
    assert r.exit_code == 1, r.output
    assert "1 ok, 0 diverged, 1 failed, 0 already done" in r.stdout
    summary = [line for line in r.stdout.splitlines() if bad in line]
    assert len(summary) == 1 and "train_size=100" in summary[0], r.stdout
    assert "Traceback" not in r.output  # the traceback is stored, not printed
    assert status_of(res) == {bad: "failed", good: "ok"}
    rec, curve = read_run(res, bad)
    assert rec.status == "failed" and rec.final == {} and curve.empty
    assert rec.error.startswith("Traceback (most recent call last)")
    assert "ValueError: train_size: expected an int in [1, 6]" in rec.error
    rec, curve = read_run(res, good)
    assert rec.status == "ok" and set(curve["metric"]) == {"loss", "test_accuracy"}
    first = stats(res)

    # a failed run counts as done, but the grid is not done well: exit code 1, and it says so
    r = invoke("run", "grid", f, "--results", res, "--workers", 1)
    assert r.exit_code == 1, r.output
    assert "0 to run, 2 already done" in r.stderr
    assert ("0 ok, 0 diverged, 0 failed, 2 already done (of which 1 stored as failed: rerun "
            "them with --rerun-failed)") in r.stdout  # fmt: skip
    assert stats(res) == first
    # ... unless --rerun-failed: only it runs again (and fails again)
    r = invoke("run", "grid", f, "--results", res, "--workers", 1, "--rerun-failed")
    assert r.exit_code == 1, r.output
    assert "mnist-fail: 1 to run, 1 already done" in r.stderr
    assert "0 ok, 0 diverged, 1 failed, 1 already done" in r.stdout
    after = stats(res)
    assert after[f"{good}.parquet"] == first[f"{good}.parquet"]
    assert after[f"{bad}.parquet"] != first[f"{bad}.parquet"]


def test_missing_data_fails_in_the_worker_and_the_summary_names_the_exception(tmp_path):
    """FileNotFoundError with a several-line message (how to get MNIST): the summary shows
    the exception's first line, not the message's last."""
    empty = tmp_path / "empty"
    empty.mkdir()
    f = write(tmp_path / "m.toml", f"""
name = "no-data"
task = "mnist"
[fixed]
data_dir = "{empty}"
[grid]
seed = [0]
""")  # fmt: skip
    res = tmp_path / "res"
    (run_id,) = ids_of(f)
    r = invoke("run", "grid", f, "--results", res, "--workers", 1)
    assert r.exit_code == 1, r.output
    assert "0 ok, 0 diverged, 1 failed, 0 already done" in r.stdout
    assert f"  {run_id} (seed=0): FileNotFoundError: MNIST data not found in {empty}" in r.stdout
    rec, curve = read_run(res, run_id)
    assert rec.status == "failed" and curve.empty
    assert "rnnfast data mnist" in rec.error  # the whole message is stored


def test_diverged_run_keeps_its_partial_curve_and_exits_1(tmp_path):
    f = write(tmp_path / "d.toml", f"""
name = "diverge"
task = "dependency"
[fixed]
{TINY_DEP}
optimizer = "sgd"
nonlinearity = "relu"
hidden_size = 64
[grid]
lr = [0.1, 1e4]
""")  # fmt: skip
    res = tmp_path / "res"
    good, bad = ids_of(f)
    r = invoke("run", "grid", f, "--results", res, "--workers", 2)
    assert r.exit_code == 1, r.output
    assert "1 ok, 1 diverged, 0 failed, 0 already done" in r.stdout
    line = next(x for x in r.stdout.splitlines() if bad in x)
    assert "lr=10000.0" in line and "loss is nan at update" in line
    assert status_of(res) == {good: "ok", bad: "diverged"}
    rec, curve = read_run(res, bad)
    loss = curve[curve.metric == "loss"]["value"].to_numpy()
    assert 1 < len(loss) < TINY_UPDATES  # stopped early, the curve up to there kept
    assert not np.isfinite(loss[-1]) and np.isfinite(loss[:-1]).all()
    assert rec.final["updates"] == len(loss) and "update" in rec.error
    # a diverged run is a result: not rerun
    r = invoke("run", "grid", f, "--results", res, "--workers", 2)
    assert r.exit_code == 0 and "0 to run, 2 already done" in r.stderr, r.output


DEP_HEAD = 'name = "bad"\ntask = "dependency"\n'


@pytest.mark.parametrize(
    "text, args, expected",
    [
        (DEP_HEAD + "[fixed]\nhiden_size = 3\n", [],
         "[fixed] hiden_size: unknown key (did you mean 'hidden_size'?)"),
        (DEP_HEAD + "[fixed\nlr = 0.1\n", [], "TOML syntax error"),
        (DEP_HEAD + "[fixed]\nlr = nan\n", [], "[fixed] lr: expected a finite number, got nan"),
        (DEP_HEAD + "[grid]\nseed = []\n", [], "[grid] seed: expected a non-empty list"),
        (DEP_HEAD + "[grid]\nseed = [0, 0]\n", [], "seed: expected distinct values"),
        ('name = "bad"\ntask = "dependancy"\n', [], "task: expected one of"),
        (DEP_HEAD, ["-p", "seed"], "-p seed: expected KEY=V1,V2,..."),
        (DEP_HEAD, ["-p", "seed=-1"], "-p seed[0]: expected an integer >= 0"),
        (DEP_HEAD, ["-p", "hiden_size=2"], "-p hiden_size: unknown key"),
        (DEP_HEAD, ["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler: only with --executor"),
        (None, [], "cannot read the file: No such file or directory"),
    ],
)  # fmt: skip
def test_bad_grid_file_or_option_is_one_line_exit_2(tmp_path, text, args, expected):
    f = tmp_path / "bad.toml"
    if text is not None:
        f.write_text(text)
    res = tmp_path / "res"
    r = invoke("run", "grid", f, "--results", res, *args)
    assert r.exit_code == 2, r.output
    line = one_line_error(r.output)
    assert expected in line
    if "TOML" in expected:
        assert "line 3" in line
    assert not res.exists()


# ---------------------------------------------------------------- ls, show, check, plot, compact


def test_ls_a_results_dir_and_a_parent_of_results_dirs(finished_grid, tmp_path):
    f, res = finished_grid
    ids = ids_of(f)
    r = invoke("ls", res)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == f"{res}: 4 runs"
    assert lines[1].split() == ["run_id", "status", "seed", "hidden_size", "loss"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert sorted(rows) == sorted(ids) and all(row[1] == "ok" for row in rows.values())

    parent = tmp_path / "all"
    shutil.copytree(res, parent / "a")
    shutil.copytree(res, parent / "b")
    (parent / "not-results").mkdir()
    r = invoke("ls", parent)
    assert r.exit_code == 0, r.output
    assert f"{parent / 'a'}: 4 runs" in r.output and f"{parent / 'b'}: 4 runs" in r.output
    assert "not-results" not in r.output
    assert all(r.output.count(i) == 2 for i in ids)

    r = invoke("ls", parent / "not-results")
    assert r.exit_code == 2
    assert "no stored runs" in one_line_error(r.output)


def test_show_by_prefix(finished_grid):
    f, res = finished_grid
    run_id = ids_of(f)[0]
    r = invoke("show", run_id[:6], "--results", res)
    assert r.exit_code == 0, r.output
    text, _, curve = r.output.partition("curve:\n")
    rec = json.loads(text)
    assert rec["run_id"] == run_id and rec["status"] == "ok" and rec["grid"] == "tiny"
    assert rec["config"]["sequence_length"] == 4000 and "git_commit" in rec["provenance"]
    assert f"loss: {TINY_UPDATES} points, steps 1-{TINY_UPDATES}" in curve
    # the parent directory works too
    assert invoke("show", run_id[:6], "--results", res.parent).exit_code == 0
    for prefix, what in (("zzzz", "no run"), ("", "is ambiguous")):
        r = invoke("show", prefix, "--results", res)
        assert r.exit_code == 2
        assert what in one_line_error(r.output)


def test_check_pass_outside_and_missing(finished_grid, tmp_path):
    f, res = finished_grid
    r = invoke("check", f, "--results", res)
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == "PASS: 4 ok, 0 outside, 0 missing"
    assert all(i in r.output for i in ids_of(f))

    # the same runs against a band they violate (run ids depend on the config only)
    tight = write(tmp_path / "tight.toml", GRID_2x2 + BAND_OK.replace("2.0", "0.1"))
    r = invoke("check", tight, "--results", res)
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1] == "FAIL: 0 ok, 4 outside, 0 missing"

    # a grid with a point never run: that one is missing
    more = write(tmp_path / "more.toml", GRID_2x2.replace("[0, 1]", "[0, 1, 2]") + BAND_OK)
    r = invoke("check", more, "--results", res)
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1] == "FAIL: 4 ok, 0 outside, 2 missing"
    assert r.output.count("not stored") == 2

    r = invoke("check", write(tmp_path / "noband.toml", GRID_2x2), "--results", res)
    assert r.exit_code == 2 and "no [[expect]] bands" in one_line_error(r.output)


def test_plot_png_and_bad_hue(finished_grid, tmp_path):
    _, res = finished_grid
    out = tmp_path / "x.png"
    r = invoke("plot", res, "--hue", "hidden_size", "-o", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == PNG_MAGIC
    bad = tmp_path / "y.png"
    r = invoke("plot", res, "--hue", "hiden_size", "-o", bad)
    assert r.exit_code == 2
    assert "hue" in one_line_error(r.output) and "hiden_size" in r.output
    assert not bad.exists()


def test_plot_a_parent_folder_plots_its_one_grid_or_names_its_grids(finished_grid, tmp_path):
    _, res = finished_grid
    out = tmp_path / "one.png"
    r = invoke("plot", res.parent, "-o", out)  # holds res (and the grid file) only
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == PNG_MAGIC
    parent = tmp_path / "results"
    for name in ("tiny-a", "tiny-b"):
        shutil.copytree(res, parent / name)
    r = invoke("plot", parent, "-o", tmp_path / "two.png")
    assert r.exit_code == 2
    assert one_line_error(r.output) == (
        f"Error: {parent}: holds 2 results directories (grids tiny-a, tiny-b); plot one of "
        f"them, e.g. {parent / 'tiny-a'}"
    )
    r = invoke("plot", tmp_path / "results" / "tiny-a" / "runs", "-o", tmp_path / "no.png")
    assert r.exit_code == 2 and "no stored runs here" in one_line_error(r.output)
    assert not (tmp_path / "two.png").exists() and not (tmp_path / "no.png").exists()


def test_size_guards_are_one_line_exit_2_before_any_run(tmp_path, monkeypatch):
    from rnnfast import memory  # noqa: PLC0415

    monkeypatch.setenv(memory.ENV, "off")  # restored afterwards: --memory-limit sets it
    f = write(tmp_path / "tiny.toml", GRID_2x2)
    res = tmp_path / "res"
    r = invoke("run", "grid", f, "--results", res, "--max-runs", 3)
    assert r.exit_code == 2
    assert one_line_error(r.output) == (
        f"Error: {f}: [grid] 4 runs (2 hidden_size x 2 seed): more than the limit of 3; split "
        "the grid or raise it (--max-runs)"
    )
    r = invoke("run", "grid", f, "--results", res, "--memory-limit", "1K")
    assert r.exit_code == 2
    line = one_line_error(r.output)
    assert line.startswith(f"Error: {f}: memory: 4 of 4 runs need more than the 1 kB ")
    assert "the largest, at grid point hidden_size=4, seed=0, about " in line
    assert not res.exists()
    r = invoke("run", "one", "--task", "dependency", "hidden_size=50", "--memory-limit", "1M")
    assert r.exit_code == 2
    assert one_line_error(r.output).startswith("Error: memory: the run needs about ")
    r = invoke("run", "grid", f, "--results", res, "--memory-limit", "lots")
    assert r.exit_code == 2 and "--memory-limit" in r.output and not res.exists()


def test_store_compact_keeps_every_run(finished_grid, tmp_path):
    f, src = finished_grid
    res = tmp_path / "res"
    shutil.copytree(src, res)
    runs0, curves0 = strict_load(res)
    r = invoke("store", "compact", res)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("compacted into")
    assert not list((res / "runs").glob("*.parquet"))
    assert len(list(res.glob("compact-*.parquet"))) == 1
    r = invoke("ls", res)
    assert r.exit_code == 0 and r.output.startswith(f"{res}: 4 runs"), r.output
    assert all(i in r.output for i in ids_of(f))
    runs1, curves1 = strict_load(res)
    key = ["run_id", "status", "final.loss"]
    pd.testing.assert_frame_equal(
        runs1[key].sort_values("run_id", ignore_index=True),
        runs0[key].sort_values("run_id", ignore_index=True),
    )
    pd.testing.assert_frame_equal(curves1, curves0)
    assert invoke("check", f, "--results", res).exit_code == 0


# ---------------------------------------------------------------- run one


def test_run_one_json_curves_and_bad_key(tmp_path):
    args = ["run", "one", "--task", "dependency", "sequence_length=4000", "batch_size=20"]
    out = tmp_path / "curve.parquet"
    r = invoke(*args, "--json", "--curves", out)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["updates"] == TINY_UPDATES
    assert math.isfinite(summary["loss"])
    curve = pd.read_parquet(out)
    assert list(curve.columns) == ["step", "epoch", "metric", "value"]
    loss = curve[curve.metric == "loss"]
    assert loss["step"].tolist() == list(range(1, TINY_UPDATES + 1))
    assert loss["value"].tail(TINY_UPDATES).mean() == pytest.approx(summary["loss"])

    r = invoke(*args, "hiden_size=3")
    assert r.exit_code == 2
    assert "hiden_size" in r.output and "Traceback" not in r.output


# ---------------------------------------------------------------- kill -9 and Ctrl-C, then resume

# ~0.2-0.5 s a run once compiled (2000 updates): slow enough to interrupt mid-grid.
SLOW_GRID = """
name = "interrupted"
task = "dependency"
[fixed]
sequence_length = 200000
batch_size = 20
num_steps = 5
hidden_size = 2
epochs = 25
[grid]
seed = [0, 1, 2, 3, 4, 5]
"""
# 25 epochs of 2000 updates: about 0.5-1 s per run, so a signal sent when the first run is
# stored lands while later runs are still to do, on an idle machine as on a busy one
SLOW_UPDATES = 50_000


def _start_driver(f: Path, res: Path, log: Path) -> subprocess.Popen:
    """The console script in a new session (process group): killpg reaches its workers."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT dumps every thread's stack
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(RNNFAST), "run", "grid", str(f), "--results", str(res),
                                 "--workers", "1"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=env, preexec_fn=_default_sigint)  # fmt: skip


def _default_sigint() -> None:
    """A command started with & by a non-interactive shell (as CI may run the tests) inherits
    SIGINT ignored, and Python then never raises KeyboardInterrupt; a user's terminal does not
    do that, so the driver under test gets the default disposition back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_first_run(p: subprocess.Popen, res: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not list((res / "runs").glob("*.parquet")) if (res / "runs").is_dir() else True:
        if p.poll() is not None or time.monotonic() > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            pytest.fail(f"no run stored (driver exit code {p.poll()})")
        time.sleep(0.005)


def _group_alive(pgid: int) -> bool:
    """Whether a non-zombie process of the process group is left (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _assert_complete_runs_only(res: Path) -> dict[str, str]:
    stored = status_of(res)
    runs, curves = strict_load(res)
    assert sorted(runs["run_id"]) == sorted(stored)
    assert set(stored.values()) <= {"ok"}
    assert (curves[curves.metric == "loss"].groupby("run_id").size() == SLOW_UPDATES).all()
    for p in (res / "runs").iterdir():  # only finished runs and (ignored) temporaries
        assert p.stem in stored or (p.name.startswith(".") and p.suffix == ".tmp"), p
    return stored


def test_kill_9_of_the_driver_then_resume(tmp_path):
    f = write(tmp_path / "slow.toml", SLOW_GRID)
    res = tmp_path / "res"
    ids = ids_of(f)
    p = _start_driver(f, res, tmp_path / "log")
    _wait_for_first_run(p, res)
    os.killpg(p.pid, signal.SIGKILL)  # the driver and its workers
    assert p.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while Path("/proc").is_dir() and _group_alive(p.pid):
        assert time.monotonic() < deadline, "worker processes survived"
        time.sleep(0.05)

    stored = _assert_complete_runs_only(res)
    assert 1 <= len(stored) < len(ids), "killed too late to test anything"
    kept = stats(res)

    r = subprocess.run([str(RNNFAST), "run", "grid", str(f), "--results", str(res),
                        "--workers", "1"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    n = len(stored)
    assert f"{len(ids) - n} ok, 0 diverged, 0 failed, {n} already done" in r.stdout
    assert status_of(res) == dict.fromkeys(sorted(ids), "ok")
    _assert_complete_runs_only(res)
    now = stats(res)
    assert all(now[k] == v for k, v in kept.items() if k.endswith(".parquet"))


@pytest.mark.parametrize("to", ["driver", "group"])
def test_ctrl_c_keeps_finished_runs_then_resume(tmp_path, to):
    """SIGINT to the driver alone, or to its whole process group as a terminal's Ctrl-C."""
    f = write(tmp_path / "slow.toml", SLOW_GRID)
    res = tmp_path / "res"
    ids = ids_of(f)
    log = tmp_path / "log"
    p = _start_driver(f, res, log)
    _wait_for_first_run(p, res)
    if to == "driver":
        os.kill(p.pid, signal.SIGINT)
    else:
        os.killpg(p.pid, signal.SIGINT)
    try:
        code = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGABRT)  # faulthandler: where it hangs, into the log
        time.sleep(2)
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"the driver did not exit within 60 s of SIGINT:\n{log.read_text()}")
    text = log.read_text()
    assert code == 130, text
    assert "interrupted: finished runs are stored" in text
    assert "Traceback" not in text  # no thread or worker tracebacks on Ctrl-C
    stored = _assert_complete_runs_only(res)
    assert 1 <= len(stored) < len(ids)

    r = invoke("run", "grid", f, "--results", res, "--workers", 1)
    assert r.exit_code == 0, r.output
    assert f"{len(stored)} already done" in r.stdout
    assert status_of(res) == dict.fromkeys(sorted(ids), "ok")


def test_check_without_a_results_directory_is_one_line(finished_grid, tmp_path):
    f, _ = finished_grid  # a grid with [[expect]] bands
    r = invoke("check", f, "--results", tmp_path / "nothing")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"Error: {tmp_path / 'nothing'}: no such directory (run the grid first, or give --results)"
    ]


# ---------------------------------------------------------------- a store that cannot be written

# (paths no directory can have, such as a name too long, are refused earlier, by check_path)
UNWRITABLE = {"runs is a file": "File exists", "read-only file system": "Read-only file system"}
if os.geteuid() != 0:  # root writes through a read-only mode
    UNWRITABLE["read-only directory"] = "Permission denied"


@pytest.mark.parametrize("how", sorted(UNWRITABLE))
def test_unwritable_results_directory_is_one_line_exit_2_before_training(tmp_path, monkeypatch,
                                                                         how):  # fmt: skip
    import rnnfast.runner  # noqa: PLC0415

    monkeypatch.setattr(rnnfast.runner, "run_local", lambda *a, **k: pytest.fail("trained"))
    f = write(tmp_path / "tiny.toml", GRID_2x2)
    res = tmp_path / "res"
    res.mkdir()
    if how == "runs is a file":
        write(res / "runs", "")
    elif how == "read-only directory":
        res.chmod(0o500)
    else:

        def read_only(*args, dir, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", f"{dir}/probe")

        monkeypatch.setattr(rnnfast.runner.tempfile, "mkstemp", read_only)
    r = invoke("run", "grid", f, "--results", res)
    assert r.exit_code == 2
    line = one_line_error(r.output)
    assert line.startswith(f"Error: cannot write the results directory {res}: {res}/runs")
    assert UNWRITABLE[how] in line
    assert not (res / "driver.lock").exists()  # refused before the lock, too


def test_a_run_that_cannot_be_stored_is_reported_and_the_others_are_kept(tmp_path, monkeypatch):
    """The first write fails as on a full disk: one line names the run and the error, the
    runs in flight and after it are stored, the summary lists it, exit 1; its checkpoint
    stays, and the next `run grid` resumes and stores it."""
    import rnnfast.runner  # noqa: PLC0415
    from rnnfast.grid import format_point  # noqa: PLC0415

    grid = GRID_2x2.replace("num_steps = 5", "num_steps = 5\nepochs = 2\ncheckpoint_every = 10")
    f = write(tmp_path / "tiny.toml", grid)
    res = tmp_path / "res"
    real_write, lost = rnnfast.runner.write_run, []

    def full_disk(results_dir, record, curves):
        if lost:
            return real_write(results_dir, record, curves)
        lost.append(record.run_id)
        raise OSError(errno.ENOSPC, "No space left on device", f"{results_dir}/runs/x.tmp")

    monkeypatch.setattr(rnnfast.runner, "write_run", full_disk)
    r = invoke("run", "grid", f, "--results", res, "--workers", 2)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    (run_id,) = lost
    point = format_point(next(s.point for s in load_grid(f).points() if s.run_id == run_id))
    why = f"{res}/runs/x.tmp: No space left on device (free some space or choose another directory)"
    assert f"rnnfast: run {run_id} ({point}) finished ok but could not be stored: {why}" in (
        r.stderr.splitlines())  # fmt: skip
    assert r.stdout.splitlines() == [
        "3 ok, 0 diverged, 0 failed, 0 already done; 1 could not be stored (run the grid again "
        "once the results directory can be written)",
        f"  {run_id} ({point}): not stored: {why}",
    ]
    ids = ids_of(f)
    assert status_of(res) == {i: "ok" for i in ids if i != run_id}
    # only the unstored run keeps its checkpoints (the stored ones' are removed)
    assert {p.name.split(".")[0] for p in (res / "checkpoints").glob("*.npz")} == {run_id}

    monkeypatch.setattr(rnnfast.runner, "write_run", real_write)
    r = invoke("run", "grid", f, "--results", res, "--workers", 1)
    assert r.exit_code == 0, r.output
    assert "1 ok, 0 diverged, 0 failed, 3 already done" in r.stdout
    assert status_of(res) == dict.fromkeys(sorted(ids), "ok")
    assert read_run(res, run_id)[0].provenance["resumed"]["update"] > 0
