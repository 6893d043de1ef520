"""The command line through click's CliRunner, and the README/.ci/run promise."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import rnnfast
from rnnfast.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-T", "3", "-B", "2", "-I", "2", "-H", "3", "--repeats", "2"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"rnnfast {rnnfast.__version__}"


def test_help_lists_demo(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output
    result = runner.invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--cell", "--hidden-size", "--seq-len", "--batch", "--dtype", "--backend"):
        assert option in result.output


@pytest.mark.parametrize(
    "extra",
    [
        ["--cell", "lstm"],
        ["--cell", "gru", "--layers", "2", "--bidirectional", "--dtype", "float64"],
        ["--cell", "rnn", "--nonlinearity", "relu"],
    ],
    ids=["lstm", "gru-2-bi-f64", "rnn-relu"],
)
def test_demo_runs(runner, backend, extra):
    result = runner.invoke(main, ["demo", *TINY, "--backend", backend, *extra])
    assert result.exit_code == 0, result.output
    assert f"backend={backend}" in result.output
    assert re.search(r"forward [0-9.]+ ms, backward [0-9.]+ ms", result.output)
    assert "|out| = " in result.output and "|dx| = " in result.output
    if backend == "reference":
        assert "reference check: skipped" in result.output
    else:
        assert re.search(r"reference check: .*: OK", result.output)


@pytest.mark.parametrize(
    "args, option",
    [
        (["--cell", "transformer"], "--cell"),
        (["--hidden-size", "0"], "--hidden-size"),
        (["--seq-len", "-1"], "--seq-len"),
        (["--batch", "x"], "--batch"),
        (["--input-size", "0"], "--input-size"),
        (["--layers", "0"], "--layers"),
        (["--dtype", "float16"], "--dtype"),
        (["--backend", "gpu"], "--backend"),
        (["--repeats", "0"], "--repeats"),
        (["--cell", "lstm", "--nonlinearity", "relu"], "--nonlinearity"),
    ],
)
def test_demo_bad_options_exit_2(runner, args, option):
    result = runner.invoke(main, ["demo", *args])
    assert result.exit_code == 2
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and option in error_lines[0], result.output


def test_demo_choices_are_the_librarys(runner):
    """The CLI spells them to load without Numba (rnnfast.cli.DEMO_BACKENDS)."""
    from rnnfast.api import BACKENDS  # noqa: PLC0415
    from rnnfast.cli import DEMO_BACKENDS  # noqa: PLC0415
    from rnnfast.params import GATES, NONLINEARITIES  # noqa: PLC0415

    params = {p.name: p for p in main.commands["demo"].params}
    assert list(params["backend"].type.choices) == sorted(BACKENDS) == list(DEMO_BACKENDS)
    assert list(params["cell"].type.choices) == sorted(GATES)
    assert list(params["nonlinearity"].type.choices) == list(NONLINEARITIES)


def test_data_lists_the_data_sets(runner):
    result = runner.invoke(main, ["data", "--help"])
    assert result.exit_code == 0
    assert "mnist" in result.output and "Download MNIST" in result.output
    result = runner.invoke(main, ["data", "mnist", "--help"])
    assert result.exit_code == 0 and "rnnfast data mnist --from DIR" in result.output


def test_unknown_command_exit_2(runner):
    result = runner.invoke(main, ["nope"])
    assert result.exit_code == 2


def test_readme_quick_start_matches_ci():
    """The README's test command is exactly the one .ci/run runs."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r'pip install "\.\[test\]" && ([^#\n]+)', readme)
    assert match, "README quick start lost its test command"
    test_command = match.group(1).strip().strip("`")
    assert test_command in ci
    assert "rnnfast demo" in readme
