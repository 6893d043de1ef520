"""What goes wrong around a command is one line, never a traceback: exit 2 for bad input
(paths no file can have, pathological grid files), 1 for failures (out of memory, an OSError
no command handled), 130 for Ctrl-C at any moment of `rnnfast run grid`, also while it loads.

    paths        under a regular file, names too long, --curves in a missing directory
                 (refused before training: the run is not trained and then lost)
    memory       `run one` of a size that cannot be allocated
    Ctrl-C       in process, and through the console script while the grid is loading
    OSError      the catch-all names the path; other exceptions keep their traceback
    grid files   nested too deeply, huge integers, not UTF-8, a directory, unreadable
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_grids import dependency_grid

from rnnfast import memory, training
from rnnfast.cli import main

RNNFAST = Path(sys.executable).parent / "rnnfast"  # the console script of this venv
TINY = ["sequence_length=4000", "batch_size=20", "num_steps=5", "hidden_size=2", "epochs=1"]
GRID = dependency_grid("tiny", "hidden_size = 2\n", grid=None)
LONG = "n" * 300  # past NAME_MAX (255 bytes) on every common file system


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a command trains anything."""

    def refuse(*args, **kwargs):
        raise AssertionError("trained although the command had to stop first")

    monkeypatch.setattr(training, "train", refuse)


# ---------------------------------------------------------------- paths


@pytest.fixture
def where(tmp_path, monkeypatch):
    """tmp_path as the working directory, holding a regular file `afile` and grid.toml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "grid.toml").write_text(GRID)
    return tmp_path


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "one", "--task", "dependency", *TINY, "--curves", "afile/c.csv"],
         "--curves afile/c.csv: afile is a file, not a directory"),
        (["run", "one", "--task", "dependency", *TINY, "--curves", f"{LONG}.csv"],
         f"--curves {LONG}.csv: the name nnnnnnnnnnnnnnnnnnnn... is too long (304 bytes, at "
         "most 255)"),
        (["run", "one", "--task", "dependency", *TINY, "--curves", "missing/c.parquet"],
         "--curves missing/c.parquet: the directory missing does not exist; create it first"),
        (["run", "grid", "grid.toml", "--results", "afile/res"],
         "--results afile/res: afile is a file, not a directory"),
        (["run", "grid", "grid.toml", "--results", f"out/{LONG}", "--dry-run"],
         f"--results out/{LONG}: the name nnnnnnnnnnnnnnnnnnnn... is too long"),
        (["run", "grid", "grid.toml", "--results", "x/" * 2100],
         "the path is too long"),
        (["ls", LONG], f"{LONG}: the name nnnnnnnnnnnnnnnnnnnn... is too long"),
        (["show", "abc", "--results", f"afile/{LONG}"], "afile is a file, not a directory"),
        (["plot", ".", "-o", "afile/plot.png"], "-o afile/plot.png: afile is a file"),
        (["export", "abc", "-o", "missing/model.npz"],
         "-o missing/model.npz: the directory missing does not exist"),
        (["evaluate", "abc", "--data", f"{LONG}.ts"], f"--data {LONG}.ts: the name"),
        (["data", "mnist", "--dest", "afile/mnist"], "--dest afile/mnist: afile is a file"),
    ],
)  # fmt: skip
def test_a_path_no_file_can_have_is_one_line_exit_2_before_any_work(where, no_training, args,
                                                                    expected):  # fmt: skip
    line = one_line_error(invoke(*args), 2)
    assert expected in line
    assert sorted(p.name for p in where.iterdir()) == ["afile", "grid.toml"]  # nothing made


def test_run_grid_default_results_directory_under_a_file(where):
    (where / "results").write_text("a file where results/<grid name> would go")
    line = one_line_error(invoke("run", "grid", "grid.toml", "--dry-run"), 2)
    assert "the results directory results/tiny: results is a file, not a directory" in line


def test_run_one_curves_that_cannot_be_written_still_prints_the_metrics(where, monkeypatch):
    import pandas as pd  # noqa: PLC0415

    def full_disk(self, path, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    r = invoke("run", "one", "--task", "dependency", *TINY, "--curves", "c.csv")
    assert r.exit_code == 1, r.output
    assert "status: ok" in r.stdout and "loss: " in r.stdout  # the run is not lost
    assert r.stderr.strip().splitlines() == [
        "Error: --curves: not written: c.csv: No space left on device (free some space or "
        "choose another directory)"
    ]


# ---------------------------------------------------------------- memory


def test_run_one_of_a_size_that_cannot_be_allocated(monkeypatch):
    # the check off, a real allocation: 10^7 x 10^7 float64 recurrent weights (728 TB)
    monkeypatch.setenv(memory.ENV, "off")  # restored after the test (--memory-limit sets it)
    r = invoke("run", "one", "--task", "dependency", "hidden_size=10000000", "-q",
               "--memory-limit", "off")  # fmt: skip
    line = one_line_error(r, 1)
    assert line.startswith("Error: memory: the run could not allocate 728 TB (an array of "
                           "shape (10000000, 10000000), float64)")  # fmt: skip
    assert "the memory check was off (RNNFAST_MEMORY_LIMIT=off)" in line
    assert "--memory-limit" in line


def test_run_one_out_of_memory_under_the_check_names_the_limit(monkeypatch):
    monkeypatch.setenv(memory.ENV, "64G")

    def out_of_memory(*args, **kwargs):
        raise MemoryError  # plain, as Python's own allocations raise it: no size known

    monkeypatch.setattr(training, "train", out_of_memory)
    line = one_line_error(invoke("run", "one", "--task", "dependency", "-q"), 1)
    assert "could not allocate memory" in line
    assert "let it start under the 64 GB RNNFAST_MEMORY_LIMIT=64G" in line
    assert "set --memory-limit or RNNFAST_MEMORY_LIMIT lower" in line


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_while_a_grid_loads_is_one_line_exit_130(where, monkeypatch):
    import rnnfast.grid  # noqa: PLC0415

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnfast.grid, "load_grid", interrupted)
    r = invoke("run", "grid", "grid.toml")
    assert r.exit_code == 130, r.output
    assert r.output.strip() == "interrupted"


def test_importing_the_command_line_loads_neither_numpy_nor_numba():
    """Python and click start (about 0.1 s) before the command can catch a Ctrl-C: the
    rest of the start, Numba's half second included, happens inside it."""
    code = ("import sys, rnnfast.cli; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'numpy', 'numba', 'pandas', 'llvmlite'}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


SLOW_TASK = """
import pathlib, time
from rnnfast.tasks import Task

pathlib.Path(__file__).with_name("loading").touch()  # the driver is loading the grid
time.sleep(120)


class Slow(Task):
    pass
"""


def test_ctrl_c_of_the_console_script_while_the_grid_loads(tmp_path):
    """The real `rnnfast` process, interrupted while it imports the grid's plug-in task (the
    first second or two of `run grid`, before the runner has a handler of its own)."""
    (tmp_path / "slowtask.py").write_text(SLOW_TASK)
    (tmp_path / "grid.toml").write_text('name = "slow"\ntask = "slowtask:Slow"\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    p = subprocess.Popen([RNNFAST, "run", "grid", "grid.toml"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "loading").exists():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.strip() == "interrupted" and out == ""


# ---------------------------------------------------------------- the OSError catch-all


def test_an_oserror_no_command_handled_is_one_line_naming_the_path(where, monkeypatch):
    import rnnfast.store  # noqa: PLC0415

    (where / "res" / "runs").mkdir(parents=True)

    def unreadable(directory):
        raise PermissionError(errno.EACCES, "Permission denied", str(directory / "runs"))

    monkeypatch.setattr(rnnfast.store, "load_results", unreadable)
    line = one_line_error(invoke("ls", "res"), 1)
    assert line == ("Error: res/runs: Permission denied (check its permissions or choose "
                    "another path)")  # fmt: skip

    def rename(directory):
        raise OSError(errno.EXDEV, "Invalid cross-device link", "a.tmp", None, "b.parquet")

    monkeypatch.setattr(rnnfast.store, "load_results", rename)
    assert one_line_error(invoke("ls", "res"), 1) == (
        "Error: a.tmp -> b.parquet: Invalid cross-device link"
    )


def test_a_bug_keeps_its_traceback(where, monkeypatch):
    import rnnfast.store  # noqa: PLC0415

    (where / "res" / "runs").mkdir(parents=True)

    def bug(directory):
        return 1 / 0

    monkeypatch.setattr(rnnfast.store, "load_results", bug)
    r = invoke("ls", "res")
    assert isinstance(r.exception, ZeroDivisionError)  # not turned into a line


# ---------------------------------------------------------------- pathological grid files

HEAD = 'name = "bad"\ntask = "dependency"\n[fixed]\n'


@pytest.mark.parametrize(
    "content, expected",
    [
        (HEAD + "lags = " + "[" * 5000 + "]" * 5000, "arrays or tables nested too deeply"),
        (HEAD + "lags = " + "{a = " * 5000 + "1" + "}" * 5000, "nested too deeply"),
        (HEAD + "lags = " + "[" * 300 + "]" * 300,
         "[fixed] lags: expected a non-empty list of integers >= 1, got [[[[["),
        (HEAD + "hidden_size = 1" + "0" * 5000, "a value too large to read (Exceeds the limit"),
        (HEAD + "hidden_size = 1" + "0" * 30,
         "[fixed] hidden_size: expected an integer >= 1 and <= 2**63 - 1, got 1000"),
        (HEAD + "lr = 1" + "0" * 400, "[fixed] lr: expected a finite number, got 1000"),
        (HEAD + "hidden_size = 1099511627776", "memory: 1 of 1 runs need more than"),
        ((HEAD + "# caf\xe9\n").encode("latin-1"), "expected UTF-8 text (TOML)"),
        (None, "a directory; expected a grid file (TOML)"),
    ],
    ids=["deep-arrays", "deep-tables", "nested-300", "4000-digits", "past-int64",
         "float-overflow", "2**40-units", "latin-1", "directory"],
)  # fmt: skip
def test_a_pathological_grid_file_is_one_line_naming_it(tmp_path, monkeypatch, content,
                                                         expected):  # fmt: skip
    monkeypatch.setenv(memory.ENV, "64G")  # the same verdict on any machine
    f = tmp_path / "bad.toml"
    if content is None:
        f.mkdir()
    elif isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content + "\n")
    line = one_line_error(invoke("run", "grid", f, "--results", tmp_path / "res"), 2)
    assert line.startswith(f"Error: {f}: ") and expected in line
    assert len(line) < 400  # a shortened value, not 5000 digits


def test_an_unreadable_grid_file_is_one_line_naming_it(tmp_path, monkeypatch):
    f = tmp_path / "locked.toml"
    f.write_text(GRID)

    def locked(self):  # chmod 000 does not stop root, who may run the tests
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", locked)
    line = one_line_error(invoke("check", f), 2)
    assert line == f"Error: {f}: cannot read the file: Permission denied"


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "one", "--task", "dependency", "hidden_size=-1"],
     "Error: hidden_size: expected an integer >= 1, got -1"),
    (["run", "one", "--task", "dependency", "no_such_key=1"], "Error: no_such_key: unknown key"),
    (["run", "one", "--task", "dependency", "--curves", "out.txt"],
     "Error: --curves out.txt: expected a .csv or .parquet file"),
    (["run", "one", "--task", "dependency", "--memory-limit", "lots"],
     "Error: --memory-limit: expected a size such as 64G or 512M, or off; got 'lots'"),
    (["demo", "--cell", "lstm", "--nonlinearity", "relu"],
     "Error: --nonlinearity: lstm has fixed activations; only rnn takes 'relu'"),
])  # fmt: skip
def test_bad_settings_and_options_are_one_line_without_usage(args, expected, no_training):
    assert one_line_error(invoke(*args), 2) == expected
