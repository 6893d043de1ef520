"""Command line: `rnnfast --version`, `demo`, `run one`, `data mnist`.

Parsing only; the work is in the library.
"""

import contextlib
import json
import sys
from pathlib import Path

import click

from rnnfast import __version__
from rnnfast.api import BACKENDS
from rnnfast.demo import DemoConfig, DemoReport, run_demo
from rnnfast.params import GATES, NONLINEARITIES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rnnfast", message="%(prog)s %(version)s")
def main() -> None:
    """rnnfast: fast, PyTorch-compatible RNN, LSTM and GRU kernels on the CPU."""


@main.command()
@click.option("--cell", type=click.Choice(sorted(GATES)), default="lstm", show_default=True)
@click.option(
    "--nonlinearity",
    type=click.Choice(NONLINEARITIES),
    default="tanh",
    show_default=True,
    help="Activation of the rnn cell (lstm and gru take only tanh).",
)
@click.option("--seq-len", "-T", type=click.IntRange(min=1), default=28, show_default=True)
@click.option("--batch", "-B", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--input-size", "-I", type=click.IntRange(min=1), default=28, show_default=True)
@click.option("--hidden-size", "-H", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--bidirectional/--unidirectional", default=False, show_default=True)
@click.option(
    "--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True
)
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="cpu", show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def demo(
    cell: str,
    nonlinearity: str,
    seq_len: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    layers: int,
    bidirectional: bool,
    dtype: str,
    backend: str,
    repeats: int,
    seed: int,
) -> None:
    """Time forward+backward of one model and check it against the NumPy reference."""
    if cell != "rnn" and nonlinearity != "tanh":
        raise click.BadParameter(
            f"{cell} has fixed activations; only rnn takes {nonlinearity!r}",
            param_hint="'--nonlinearity'",
        )
    cfg = DemoConfig(
        cell=cell,
        seq_len=seq_len,
        batch=batch,
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=layers,
        bidirectional=bidirectional,
        nonlinearity=nonlinearity,
        dtype=dtype,
        backend=backend,
        repeats=repeats,
        seed=seed,
    )
    report = run_demo(cfg)
    _print_report(report)
    if not report.ok:
        raise click.ClickException(
            f"backend {backend!r} differs from the reference by {report.max_error:.3g} "
            f"(tolerance {report.tolerance:g})"
        )


def _print_report(r: DemoReport) -> None:
    c = r.config
    click.echo(
        f"{c.cell} T={c.seq_len} B={c.batch} I={c.input_size} H={c.hidden_size} "
        f"layers={c.num_layers} bidirectional={c.bidirectional} dtype={c.dtype} "
        f"backend={c.backend}"
    )
    click.echo(f"first forward+backward (compile or cache load): {r.first_call_s * 1e3:.1f} ms")
    click.echo(
        f"forward {r.forward_s * 1e3:.3f} ms, backward {r.backward_s * 1e3:.3f} ms "
        f"(median of {c.repeats})"
    )
    click.echo("norms: " + ", ".join(f"|{k}| = {v:.6g}" for k, v in r.norms.items()))
    if not r.errors:
        click.echo("reference check: skipped (the backend is the reference)")
        return
    worst = max(r.errors, key=r.errors.__getitem__)
    verdict = "OK" if r.ok else "FAILED"
    click.echo(
        f"reference check: max |diff| / max(1, |ref|) = {r.max_error:.3g} (in {worst}), "
        f"tolerance {r.tolerance:g}: {verdict}"
    )


@main.group()
def run() -> None:
    """Train models: one run from KEY=VALUE settings."""


@run.command("one")
@click.option("--task", type=click.Choice(["dependency", "mnist", "addition"]), required=True)
@click.argument("settings", nargs=-1)
@click.option(
    "--curves",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the curve (step, epoch, metric, value) to this .csv or .parquet file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run_one(
    task: str, settings: tuple[str, ...], curves: Path | None, as_json: bool, quiet: bool
) -> None:
    """Train one model on a task and print its final metrics.

    SETTINGS are KEY=VALUE pairs with rnnfast.train's keys, e.g.

        rnnfast run one --task dependency num_steps=10 hidden_size=16 epochs=3 seed=1
    """
    from rnnfast.config import parse_assignments, resolve  # noqa: PLC0415
    from rnnfast.training import train  # noqa: PLC0415

    try:
        config = {"task": task, **parse_assignments(settings)}
        resolve(config)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    if curves is not None and curves.suffix not in (".csv", ".parquet"):
        raise click.BadParameter("expected a .csv or .parquet file", param_hint="'--curves'")
    show = not quiet and sys.stderr.isatty()
    bar = click.progressbar(length=1, label=task, file=sys.stderr, show_eta=True)
    state = {"done": 0}

    def progress(done: int, total: int) -> None:
        bar.length = total
        bar.update(done - state["done"])
        state["done"] = done

    try:
        with bar if show else contextlib.nullcontext():
            result = train(config, progress=progress if show else None)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    if curves is not None:
        if curves.suffix == ".csv":
            result.curves.to_csv(curves, index=False)
        else:
            result.curves.to_parquet(curves, index=False)
    summary = {"status": result.status, "message": result.message, **result.final,
               "wall_time_s": round(result.wall_time, 3)}  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            if value != "":
                click.echo(f"{key}: {value}")
    if result.status != "ok":
        sys.exit(1)


@main.group()
def data() -> None:
    """Get the data sets the tasks use."""


@data.command("mnist")
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Install the four MNIST IDX files (gzip or raw) from this directory instead of "
    "downloading them.",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put them (default: $RNNFAST_DATA/mnist, else the user cache directory).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def data_mnist(source: Path | None, dest: Path | None, quiet: bool) -> None:
    """Download MNIST (checksums verified), or install it from local files.

    rnnfast data mnist
    rnnfast data mnist --from ~/Downloads/mnist
    """
    from rnnfast.tasks import mnist_data  # noqa: PLC0415

    try:
        if source is not None:
            where = mnist_data.install_from(source, dest)
        else:
            where = mnist_data.download(dest, progress=not quiet)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"MNIST is in {where}")
