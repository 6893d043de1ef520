"""Command line: `rnnfast --version`, `demo`, `run one`/`grid`, `ls`, `show`, `check`, `plot`,
`store compact`, `export`, `evaluate`, `sample`, `data mnist`, `tasks`.

Parsing only; the work is in the library.
"""

import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rnnfast import __version__
from rnnfast.codes import ACT_CODES, CELL_CODES
from rnnfast.oserrors import describe

if TYPE_CHECKING:
    from rnnfast.demo import DemoReport

# The demo's --backend choices: rnnfast.api.BACKENDS (tests/test_cli.py checks that they
# agree), spelled here because importing rnnfast.api loads Numba, and this module must load
# in a blink: a Ctrl-C before main() runs could only end in a traceback.
DEMO_BACKENDS = ("cpu", "cuda", "reference")


class _Main(click.Group):
    """The `rnnfast` group: a Ctrl-C is one line "interrupted" (exit 130), and an OSError that
    no command handled is one line naming its path (exit 1). Other exceptions are bugs and
    keep their traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            ctx.exit(130)
        except OSError as err:
            raise click.ClickException(describe(err)) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rnnfast", message="%(prog)s %(version)s")
def main() -> None:
    """rnnfast: fast, PyTorch-compatible RNN, LSTM and GRU kernels on the CPU."""


@main.command()
@click.option("--cell", type=click.Choice(sorted(CELL_CODES)), default="lstm", show_default=True)
@click.option(
    "--nonlinearity",
    type=click.Choice(list(ACT_CODES)),
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
@click.option("--backend", type=click.Choice(DEMO_BACKENDS), default="cpu", show_default=True)
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
    from rnnfast.demo import DemoConfig, run_demo  # noqa: PLC0415

    if cell != "rnn" and nonlinearity != "tanh":
        raise InputError(f"--nonlinearity: {cell} has fixed activations; only rnn takes "
                         f"{nonlinearity!r}")  # fmt: skip
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
    try:
        report = run_demo(cfg)
    except RuntimeError as err:  # rnnfast.cuda.CudaUnavailable: what is missing, one line
        raise click.ClickException(str(err)) from None
    _print_report(report)
    if not report.ok:
        raise click.ClickException(
            f"backend {backend!r} differs from the reference by {report.max_error:.3g} "
            f"(tolerance {report.tolerance:g})"
        )


def _print_report(r: "DemoReport") -> None:
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


_MEMORY_HELP = (
    "Refuse runs estimated to need more memory than SIZE (e.g. 64G), instead of "
    "the memory available; off: no check. Sets RNNFAST_MEMORY_LIMIT."
)


def _set_memory_limit(value: str | None) -> None:
    if value is not None:
        from rnnfast.memory import set_limit  # noqa: PLC0415

        try:
            set_limit(value)
        except ValueError as err:
            raise InputError(f"--memory-limit: {str(err).partition(': ')[2]}") from None


@main.group()
def run() -> None:
    """Train models: one run from KEY=VALUE settings."""


@run.command("one")
@click.option(
    "--task",
    required=True,
    help="A built-in task (`rnnfast tasks` lists them) or package.module:Name (imports your "
    "module).",
)
@click.argument("settings", nargs=-1)
@click.option(
    "--curves",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the curve (step, epoch, metric, value) to this .csv or .parquet file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--memory-limit", metavar="SIZE|off", help=_MEMORY_HELP)
def run_one(
    task: str,
    settings: tuple[str, ...],
    curves: Path | None,
    as_json: bool,
    quiet: bool,
    memory_limit: str | None,
) -> None:
    """Train one model on a task and print its final metrics.

    SETTINGS are KEY=VALUE pairs with rnnfast.train's keys, e.g.

        rnnfast run one --task dependency num_steps=10 hidden_size=16 epochs=3 seed=1
    """
    from rnnfast.config import parse_assignments, resolve  # noqa: PLC0415
    from rnnfast.training import train  # noqa: PLC0415
    from rnnfast.warmup import compile_notice, estimate  # noqa: PLC0415

    _set_memory_limit(memory_limit)
    try:
        config = {"task": task, **parse_assignments(settings)}
        resolve(config)
    except ValueError as err:
        raise InputError(str(err)) from None
    if curves is not None and curves.suffix not in (".csv", ".parquet"):
        raise InputError(f"--curves {curves}: expected a .csv or .parquet file")
    if curves is not None:  # now, not after training: the run would be lost
        check_path(curves, "--curves", parent_must_exist=True)
    show = not quiet and sys.stderr.isatty()
    bar = click.progressbar(length=1, label=task, file=sys.stderr, show_eta=True)
    state = {"done": 0}

    def progress(done: int, total: int) -> None:
        bar.length = total
        bar.update(done - state["done"])
        state["done"] = done

    try:
        with bar if show else contextlib.nullcontext():
            # one line on stderr if the kernels compile (the run sets itself up once: its
            # evaluations are not known here, so the estimate includes them)
            with compile_notice(estimate(evaluates=True)):
                result = train(config, progress=progress if show else None)
    except (ValueError, FileNotFoundError) as err:  # the config's data: bad input
        raise InputError(str(err)) from None
    except OverflowError as err:  # sizes whose products do not fit 64-bit integers
        raise InputError(f"the run's sizes are too large to compute with ({err}); use "
                         "smaller values") from None  # fmt: skip
    except MemoryError as err:  # also NumPy's ArrayMemoryError
        raise click.ClickException(_out_of_memory(err)) from None
    except RuntimeError as err:  # no cuda
        raise click.ClickException(str(err)) from None
    unwritten = None
    if curves is not None:
        try:
            if curves.suffix == ".csv":
                result.curves.to_csv(curves, index=False)
            else:
                result.curves.to_parquet(curves, index=False)
        except OSError as err:  # a full disk: the metrics below are still printed
            unwritten = f"--curves: not written: {describe(err)}"
    summary = {"status": result.status, "message": result.message, **result.final,
               "wall_time_s": round(result.wall_time, 3)}  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            if value != "":
                click.echo(f"{key}: {value}")
    if unwritten is not None:
        raise click.ClickException(unwritten)
    if result.status != "ok":
        sys.exit(1)


def _out_of_memory(err: MemoryError) -> str:
    """One line for a run that ran out of memory: the allocation that failed (NumPy's
    ArrayMemoryError has its shape and dtype), and the memory check that let the run start."""
    from rnnfast import memory  # noqa: PLC0415

    shape, dtype = getattr(err, "shape", None), getattr(err, "dtype", None)
    what = "memory"
    if shape is not None and dtype is not None:
        size = math.prod(shape) * dtype.itemsize
        what = f"{memory.format_bytes(size)} (an array of shape {tuple(shape)}, {dtype})"
    limit, source = memory.available()
    if limit is None:
        guard = (f"the memory check was off ({source}): leave it on (--memory-limit SIZE, or "
                 f"{memory.ENV} unset) to refuse such a run before training")  # fmt: skip
    else:
        guard = (f"the memory check (its estimate is a floor) let it start under the "
                 f"{memory.format_bytes(limit)} {source}: set --memory-limit or {memory.ENV} "
                 "lower to refuse such runs before training")  # fmt: skip
    return (f"memory: the run could not allocate {what}; use a smaller hidden_size, "
            f"batch_size or num_steps; {guard}")  # fmt: skip


@main.command("tasks")
def tasks_cmd() -> None:
    """List the built-in tasks with their own config keys."""
    from rnnfast.tasks import builtin_names, get_task  # noqa: PLC0415

    for name in builtin_names():
        task = get_task(name)
        click.echo(f"{name}: {task.description}")
        click.echo(f"    keys: {', '.join(task.keys) or '(none)'}")
        click.echo(f"    metrics: {', '.join(task.metrics)}")


class _Datasets(click.Group):
    """`rnnfast data`: one command a data set of rnnfast.tasks.DATASETS, made when first asked
    for (rnnfast.tasks loads NumPy, which `import rnnfast.cli` must not: see DEMO_BACKENDS)."""

    def _made(self) -> None:
        if not self.commands:
            from rnnfast.tasks import DATASETS  # noqa: PLC0415  (a dict: imports no task module)

            for name, (_, title) in DATASETS.items():
                self.add_command(_dataset_command(name, title))

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._made()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._made()
        return super().get_command(ctx, cmd_name)


@main.group(cls=_Datasets)
def data() -> None:
    """Get the data sets the tasks use."""


def _dataset_command(name: str, title: str) -> click.Command:
    doc = f"""Download {title} (checksums verified), or install it from local files.

    rnnfast data {name}
    rnnfast data {name} --from DIR
    """

    @click.command(name, help=doc)
    @click.option(
        "--from",
        "source",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help=f"Install the {title} files (gzip or raw) from this directory instead of "
        "downloading them.",
    )
    @click.option(
        "--dest",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Where to put them (default: $RNNFAST_DATA/{name}, else the user cache directory).",
    )
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
    def command(source: Path | None, dest: Path | None, quiet: bool) -> None:
        from rnnfast.tasks import dataset_module  # noqa: PLC0415

        if dest is not None:
            check_path(dest, "--dest")
        module = dataset_module(name)
        try:
            if source is not None:
                where = module.install_from(source, dest)
            else:
                where = module.download(dest, progress=not quiet)
        except (ValueError, OSError) as err:
            raise click.ClickException(str(err)) from None
        click.echo(f"{title} is in {where}")

    return command


class InputError(click.ClickException):
    """Bad input (a grid file, an option): one line, exit code 2, no traceback."""

    exit_code = 2


def _fs_limit(directory: Path, name: str, fallback: int) -> int:
    try:
        return os.pathconf(directory, name)
    except (OSError, ValueError, AttributeError):  # no such limit, or no pathconf (Windows)
        return fallback


def check_path(path: Path, what: str = "", *, parent_must_exist: bool = False) -> None:
    """Refuse, before any work, a path that no file can have: one too long, or with a part
    longer than its file system allows, or under a regular file; with parent_must_exist (a
    file written without creating directories), also one in a missing or unwritable
    directory. One line naming `what` (the option) and the path: InputError, exit 2."""
    prefix = f"{what} {path}" if what else str(path)

    def refuse(why: str) -> InputError:
        return InputError(f"{prefix}: {why}")

    here = Path(path.anchor) if path.is_absolute() else Path(".")
    longest = _fs_limit(here, "PC_PATH_MAX", 4096)
    if len(os.fsencode(os.path.abspath(path))) >= longest:
        raise refuse(f"the path is too long (the limit is {longest - 1} bytes); choose a "
                     "shorter one")  # fmt: skip
    parts = path.parts[1:] if path.is_absolute() else path.parts
    name_max = _fs_limit(here, "PC_NAME_MAX", 255)
    existing = True  # `here`: the deepest existing directory, whose file system has name_max
    for i, part in enumerate(parts):
        if len(os.fsencode(part)) > name_max:
            raise refuse(f"the name {part[:20]}... is too long ({len(os.fsencode(part))} "
                         f"bytes, at most {name_max}); choose a shorter one")  # fmt: skip
        if not existing:
            continue
        existing = os.path.lexists(here / part)
        if existing and not os.path.isdir(here / part):
            if i < len(parts) - 1:
                raise refuse(f"{here / part} is a file, not a directory; choose another path")
        elif existing:
            here = here / part
            name_max = _fs_limit(here, "PC_NAME_MAX", 255)  # a mount point: its own limit
    parent = path.parent
    if parent_must_exist and not parent.is_dir():
        raise refuse(f"the directory {parent} does not exist; create it first")
    if parent_must_exist and not os.access(parent, os.W_OK):
        raise refuse(f"cannot write in {parent} (permission denied); choose another directory")


def _load_grid(file: Path, overrides: tuple[str, ...] = (), **options):
    from rnnfast.config import parse_value  # noqa: PLC0415
    from rnnfast.grid import load_grid  # noqa: PLC0415

    axes: dict[str, list] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"-p {item}: expected KEY=V1,V2,...")
        parsed = parse_value(value)
        axes[key.strip()] = parsed if isinstance(parsed, list) else [parsed]
    try:
        return load_grid(file, axes or None, **options)
    except ValueError as err:
        raise InputError(str(err)) from None
    except OSError as err:
        raise InputError(f"{file}: {err.strerror or err}") from None


@run.command("grid")
@click.argument("file", type=click.Path(path_type=Path))  # a directory: one line from _load_grid
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              help="Results directory (default: results/<grid name>).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), help="Parallel runs (default: cores).")
@click.option("--threads", type=click.IntRange(min=1),
              help="BLAS/Numba threads per run (default: cores // workers).")  # fmt: skip
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local",
              show_default=True)  # fmt: skip
@click.option("--scheduler", metavar="ADDR",
              help="Dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="List the runs and whether each is done.")
@click.option("--force", is_flag=True, help="Rerun runs that are already stored.")
@click.option("--rerun-failed", is_flag=True, help="Rerun runs stored as failed.")
@click.option("-p", "overrides", multiple=True, metavar="KEY=V1,V2",
              help="Replace (or add) a grid axis; repeatable.")  # fmt: skip
@click.option("--backend", type=click.Choice(["cpu", "cuda"]),
              help="Train every run on this backend (sets the config key; cuda: runs that "
              "share shapes train together, one launch per interval).")  # fmt: skip
@click.option("--rerun-stale", is_flag=True,
              help="Rerun stored runs made by other code (another rnnfast version or edited "
              "sources).")  # fmt: skip
@click.option("--keep-checkpoints", is_flag=True,
              help="Keep each finished run's last checkpoints (DIR/checkpoints/).")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No live progress.")
@click.option("--progress-every", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, metavar="SECONDS",
              help="When stderr is not a terminal: print progress lines this often.")  # fmt: skip
@click.option("--max-runs", type=click.IntRange(min=1),
              help="Refuse a grid of more points than this (default 100,000), before "
              "expanding it.")  # fmt: skip
@click.option("--memory-limit", metavar="SIZE|off", help=_MEMORY_HELP)
def run_grid(file: Path, results: Path | None, workers: int | None, threads: int | None,
             executor: str, scheduler: str | None, dry_run: bool, force: bool,
             rerun_failed: bool, overrides: tuple[str, ...], backend: str | None,
             rerun_stale: bool, keep_checkpoints: bool, quiet: bool, progress_every: float,
             max_runs: int | None, memory_limit: str | None) -> None:  # fmt: skip
    """Run every point of a grid file; finished runs are kept and skipped next time.

    While it runs, stderr shows each run in flight (epoch, loss, latest metrics, time left)
    and the grid's time left; a killed grid resumes its runs in flight from their last
    checkpoints when run again.

    rnnfast run grid experiments/published/dependency-r2rt-5x4.toml --workers 2
    rnnfast run grid experiments/dependency-explore.toml -p seed=0 --dry-run
    rnnfast run grid experiments/published/dependency-r2rt-10x16.toml --backend cuda
    """
    from rnnfast.runner import make_plan, run_plan  # noqa: PLC0415

    if scheduler is not None and executor != "dask":
        raise InputError("--scheduler: only with --executor dask")
    if backend is not None:
        overrides = (*overrides, f"backend={backend}")
    _set_memory_limit(memory_limit)
    limits = {"max_runs": max_runs} if max_runs is not None else {}
    grid = _load_grid(file, overrides, check_memory=not dry_run, **limits)
    if not dry_run and any(s.config["backend"] == "cuda" for s in grid.points()):
        from rnnfast.cuda import unavailable_reason  # noqa: PLC0415

        reason = unavailable_reason()
        if reason is not None:
            raise InputError(reason)
    if results is not None:
        check_path(results, "--results")
    else:
        from rnnfast.runner import default_results_dir  # noqa: PLC0415

        check_path(default_results_dir(grid), "the results directory")
    if dry_run:
        from rnnfast.grid import format_point  # noqa: PLC0415

        plan = make_plan(grid, results, force=force, rerun_failed=rerun_failed,
                         rerun_stale=rerun_stale)  # fmt: skip
        todo = {s.run_id for s in plan.todo}
        for spec in grid.points():
            state = plan.status.get(spec.run_id, "not run")
            mark = "to run" if spec.run_id in todo else "done"
            made = f"  (made by {plan.stale[spec.run_id]})" if spec.run_id in plan.stale else ""
            click.echo(f"{spec.run_id}  {mark:<6}  {state:<8}  {format_point(spec.point)}{made}")
        click.echo(f"{len(plan.todo)} to run, {len(plan.done)} done, in {plan.results_dir}")
        return
    from rnnfast import runner, stopping  # noqa: PLC0415
    from rnnfast.driver_lock import DriverLock, LockHeld  # noqa: PLC0415

    if scheduler is not None:  # a typo fails here, not after a connection timeout
        try:
            runner.check_scheduler_address(scheduler)
        except ValueError as err:
            raise InputError(str(err)) from None
        except RuntimeError as err:  # no dask.distributed
            raise click.ClickException(str(err)) from None
    # writable and ours (one driver per directory) before anything is planned or trained
    results_dir = results if results is not None else runner.default_results_dir(grid)
    lock = DriverLock(results_dir)
    try:
        runner.check_writable(results_dir)
        lock.acquire()
    except (runner.ResultsDirError, LockHeld) as err:
        raise InputError(str(err)) from None
    except OSError as err:  # the lock file itself
        raise InputError(f"{lock.path}: {err.strerror or err}") from None
    with lock, stopping.stop_signals():  # SIGTERM stops the grid as Ctrl-C does
        try:
            plan = make_plan(grid, results_dir, force=force, rerun_failed=rerun_failed,
                             rerun_stale=rerun_stale)  # fmt: skip
            click.echo(f"{grid.name}: {len(plan.todo)} to run, {len(plan.done)} already done "
                       f"-> {plan.results_dir}", err=True)  # fmt: skip
            view = None
            if not quiet and plan.todo:
                from rnnfast.monitor import GridMonitor, LiveView  # noqa: PLC0415

                n = min(workers or os.cpu_count() or 1, len(plan.todo))
                monitor = GridMonitor(grid.name, plan.todo, n, plan.results_dir)
                terminal = sys.stderr.isatty()
                view = LiveView(monitor, sys.stderr, terminal,
                                None if terminal else progress_every)  # fmt: skip

            with view if view is not None else contextlib.nullcontext():
                summary = run_plan(plan, executor=executor, workers=workers,
                                   scheduler=scheduler, threads=threads,
                                   on_progress=(lambda record, _: view.finished(record))
                                   if view is not None else None,
                                   keep_checkpoints=keep_checkpoints)  # fmt: skip
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Terminated)
            click.echo("\ninterrupted: finished runs are stored; run the same command again "
                       "to complete the rest", err=True)  # fmt: skip
            sys.exit(143 if isinstance(stop, stopping.Terminated) else 130)
        except runner.ResultsDirError as err:
            raise InputError(str(err)) from None
        except ValueError as err:  # a scheduler address run_dask refuses
            raise InputError(str(err)) from None
        except RuntimeError as err:
            raise click.ClickException(str(err)) from None
    click.echo(summary.format())
    if summary.exit_code:
        sys.exit(summary.exit_code)


def _results_dirs(path: Path) -> list[Path]:
    """path itself if it holds runs, else its subdirectories that do."""
    from rnnfast.store import results_dirs  # noqa: PLC0415

    return results_dirs(path)


@main.command("ls")
@click.argument("directory", required=False, default="results",
                type=click.Path(file_okay=False, path_type=Path))  # fmt: skip
def ls(directory: Path) -> None:
    """List stored runs with their status, grid point and final metrics, and the runs in
    progress (training now, or interrupted) with their last checkpoint.

    rnnfast ls results/dependency-r2rt-5x4
    """
    from rnnfast.store import load_results  # noqa: PLC0415

    check_path(directory)
    dirs = _results_dirs(directory)
    if not dirs:
        raise InputError(f"{directory}: no stored runs here (expected DIR/runs/ or a "
                         "directory of results directories)")  # fmt: skip
    for d in dirs:
        runs, _ = load_results(d)
        click.echo(f"{d}: {len(runs)} runs")
        _ls_in_progress(d, set(runs.run_id) if not runs.empty else set())
        if runs.empty:
            continue
        varying = [c for c in _config_columns(runs) if runs[c].astype(str).nunique() > 1]
        finals = [c for c in runs.columns if c.startswith("final.") and c != "final.updates"]
        table = runs[["run_id", "status", *varying, *finals]].copy()
        table.columns = [c.removeprefix("final.") for c in table.columns]
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _ls_in_progress(d: Path, stored: set[str]) -> None:
    """The runs of d that are not stored but training or resumable (rnnfast.live)."""
    import time  # noqa: PLC0415

    from rnnfast.live import in_progress  # noqa: PLC0415
    from rnnfast.monitor import duration  # noqa: PLC0415

    runs = in_progress(d, stored)
    if not runs:
        return
    click.echo(f"  in progress: {len(runs)} run{'s' if len(runs) != 1 else ''} (an interrupted "
               "run resumes from its checkpoint when its grid runs again)")  # fmt: skip
    for r in runs:
        st, ck = r["state"] or {}, r["checkpoint"]
        parts = [r["run_id"], "training" if r["training"] else "interrupted"]
        if st:
            parts.append(f"epoch {st.get('epoch')}/{st.get('epochs')}, update "
                         f"{st.get('step')}/{st.get('total')}")  # fmt: skip
            if st.get("loss") is not None:
                parts.append(f"loss {st['loss']:.4g}")
        if ck is not None:
            parts.append(f"last checkpoint: update {ck['step']}, "
                         f"{duration(time.time() - ck['time'])} ago")  # fmt: skip
        else:
            parts.append("no checkpoint yet")
        click.echo("  " + "  ".join(parts))


def _config_columns(runs) -> list[str]:
    from rnnfast.config import known_keys  # noqa: PLC0415

    keys = set(known_keys())
    return [c for c in runs.columns if c in keys]


@main.command("show")
@click.argument("run_id")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default="results",
              show_default=True, help="A results directory, or a directory of them.")  # fmt: skip
def show(run_id: str, results: Path) -> None:
    """Print one run's record (config, status, provenance) and a summary of its curve.

    rnnfast show 3f2a9c --results results/dependency-r2rt-5x4
    """
    from rnnfast.store import find_run  # noqa: PLC0415

    check_path(results, "--results")
    try:
        _, record, curves = find_run(results, run_id)
    except ValueError as err:
        raise InputError(str(err)) from None
    click.echo(json.dumps(record.as_dict(), indent=2, default=str))
    if not curves.empty:
        click.echo("curve:")
        for metric, rows in curves.groupby("metric", observed=True):
            click.echo(f"  {metric}: {len(rows)} points, steps {rows.step.min()}-"
                       f"{rows.step.max()}, last value {rows.value.iloc[-1]:.6g}")  # fmt: skip


@main.command("check")
@click.argument("file", type=click.Path(path_type=Path))  # a directory: one line from _load_grid
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              help="Results directory (default: results/<grid name>).")  # fmt: skip
def check(file: Path, results: Path | None) -> None:
    """Compare stored runs with the grid file's [[expect]] bands; exit 1 if any fails.

    rnnfast check experiments/published/dependency-r2rt-5x4.toml
    """
    from rnnfast.grid import check as check_bands  # noqa: PLC0415
    from rnnfast.runner import default_results_dir  # noqa: PLC0415
    from rnnfast.store import load_results  # noqa: PLC0415

    grid = _load_grid(file)
    if not grid.expect:
        raise InputError(f"{file}: no [[expect]] bands to check")
    if results is not None:
        check_path(results, "--results")
    try:
        runs, curves = load_results(results if results is not None else default_results_dir(grid))
    except ValueError as err:  # no such results directory: nothing was run there
        raise InputError(f"{err} (run the grid first, or give --results)") from None
    report = check_bands(grid, runs, curves)
    click.echo(report.format())
    if not report.ok:
        sys.exit(1)


@main.command("plot")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--metric", default="loss", show_default=True)
@click.option("--x", "x", type=click.Choice(["step", "epoch"]), default="step", show_default=True)
@click.option("--hue", help="Config key: one line per value (default: the most varied key).")
@click.option("--col", help="Config key: one column of panels per value.")
@click.option("--row", help="Config key: one row of panels per value.")
@click.option("--smooth", type=click.IntRange(min=1),
              help="Trailing mean over N points (default: none, or up to 100 for more than 8 "
              "long lines; 1: raw values).")  # fmt: skip
@click.option("--no-reference", is_flag=True, help="Omit the task's analytic loss levels.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="FILE.png, .svg or .pdf")  # fmt: skip
def plot(directory: Path, metric: str, x: str, hue: str | None, col: str | None,
         row: str | None, smooth: int | None, no_reference: bool,
         output: Path) -> None:  # fmt: skip
    """Plot a metric against updates: mean +- std over seeds, one line per --hue value.

        rnnfast plot results/dependency-explore --hue num_steps --col hidden_size \\
            --smooth 100 -o dependency.png
    """
    from rnnfast.plot import plot_curves, results_dir, save_figure  # noqa: PLC0415
    from rnnfast.store import load_results  # noqa: PLC0415

    check_path(output, "-o")  # save_figure creates its directory
    try:
        runs, curves = load_results(results_dir(directory))
        fig = plot_curves(runs, curves, metric=metric, x=x, hue=hue, col=col, row=row,
                          smooth=smooth, reference=not no_reference)  # fmt: skip
        path = save_figure(fig, output)
    except ValueError as err:
        raise InputError(str(err)) from None
    click.echo(f"wrote {path}")


@main.group()
def store() -> None:
    """Maintain results directories."""


@store.command("compact")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def store_compact(directory: Path) -> None:
    """Merge a results directory's per-run files into one Parquet file.

    rnnfast store compact results/dependency-explore
    """
    from rnnfast.store import compact  # noqa: PLC0415

    path = compact(directory)
    click.echo(f"compacted into {path}" if path else "nothing to compact")


# ---------------------------------------------------------------- trained models

_RESULTS = click.option("--results", type=click.Path(file_okay=False, path_type=Path),
                        default="results", show_default=True,
                        help="A results directory, or a directory of them.")  # fmt: skip


def _model(results: Path, run_id: str):
    from rnnfast.models import load_model  # noqa: PLC0415

    check_path(results, "--results")
    try:
        return load_model(results, run_id)
    except ValueError as err:
        raise InputError(str(err)) from None


@main.command("export")
@click.argument("run_id")
@_RESULTS
@click.option("--format", "fmt", type=click.Choice(["npz", "torch"]), default="npz",
              show_default=True,
              help="npz: parameter arrays by name plus rnnfast.json; torch: a state dict for "
              "torch.load(FILE, weights_only=True).")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write.")  # fmt: skip
def export_cmd(run_id: str, results: Path, fmt: str, output: Path) -> None:
    """Write a run's trained model to a file.

    rnnfast export 3f2a9c --results results/mnist-rows --format torch -o lstm.pt
    """
    from rnnfast.models import export  # noqa: PLC0415

    check_path(output, "-o", parent_must_exist=True)
    model = _model(results, run_id)
    try:
        path = export(model, output, fmt)
    except ValueError as err:
        raise InputError(str(err)) from None
    except RuntimeError as err:  # no torch
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise InputError(f"{output}: {err.strerror or err}") from None
    click.echo(f"wrote {path}")


@main.command("evaluate")
@click.argument("run_id")
@_RESULTS
@click.option("--data", "data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Data of the form the run trained on, read as its task reads "
              "`data`.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate_cmd(run_id: str, results: Path, data: Path, as_json: bool) -> None:
    """Compute a run's task metrics (loss; accuracy for classes) of its model on other data.

    rnnfast evaluate 3f2a9c --results results/vowels --data test.ts
    """
    check_path(data, "--data")
    model = _model(results, run_id)
    try:
        metrics = model.evaluate(data)
    except ValueError as err:
        raise InputError(str(err)) from None
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            click.echo(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")


@main.command("sample")
@click.argument("run_id")
@_RESULTS
@click.option("--prime", default="", help="Text to start from (characters of the run's text).")
@click.option("--length", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Lower: more conservative.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def sample_cmd(run_id: str, results: Path, prime: str, length: int, temperature: float,
               seed: int) -> None:  # fmt: skip
    """Generate text from a character-level text run (the same seed gives the same text).

    rnnfast sample 3f2a9c --results results/shakespeare --prime "ROMEO:" --length 300
    """
    model = _model(results, run_id)
    try:
        text = model.sample(prime, length, temperature, seed)
    except ValueError as err:
        raise InputError(str(err)) from None
    click.echo(prime + text)
