"""Command line: `rnnfast --version`, `rnnfast demo`. Parsing only; the work is in the library."""

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
