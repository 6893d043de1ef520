"""What mid-run checkpoints cost: MNIST rows epochs with and without them (issue #13: under 2 %).

The run: sequential MNIST by rows, LSTM 100 + linear head, Adam 1e-4, batch 100, the first
55,000 training images (550 updates an epoch) and the test accuracy after each epoch, trained
on the CPU as a grid's worker trains it: rnnfast.run_setup.steps() served by a CpuTrainer, with
the rnnfast.checkpoint.Checkpoints that rnnfast.cpu.trainer builds inside a checkpoint session.
Three workers, one per checkpoint_every, are timed alternately (benchmarks/_harness.py):

    never          inside a session, never due: the baseline
    every epoch    checkpoint_every = the updates of an epoch: one checkpoint at each epoch's
                   end, what the default "epoch" writes when an epoch lasts a minute or more
    every 200      one at every interval of rnnfast.run_setup.INTERVAL = 200 updates, the most
                   a user can ask for (any N <= 200 writes as often): 2 an epoch

Each timed call is one more epoch of one long run per worker (its updates, its test
evaluation and the checkpoints due in it), served request by request as CpuTrainer.drive
serves them: a fresh rnnfast.train per call would add its data loading and compile-cache
loading, seconds, to a difference of milliseconds, and the default policy writes nothing at
the end of a run's last epoch. The checkpoints' curve grows with the epochs done, as in a real
run.

Reported: the median epoch of each worker, the checkpoints written per timed epoch and the
mean seconds per write (Checkpoints.written and .seconds: the metadata, the SHA-256 of the
arrays and of the package source, the .npz written, fsynced and renamed), the size of the
latest checkpoint file, and the overhead: checkpoints per epoch x seconds per write / the
shortest of the three median epochs (the larger percentage; a disturbed baseline would give a
smaller one). The default "epoch" policy writes at an epoch's end at most once a minute, so with
epochs of e < 60 s one epoch in ceil(60 / e) pays a write; its row is derived from the
"every epoch" write time. The measured epoch differences ("vs never") check the overhead
figures but are within the epochs' noise at these sizes.

Checkpoints go to a temporary directory (removed at the end); --dir DIR puts it in DIR
instead, e.g. on the disk the results live on (the header names the file system: on tmpfs an
fsync costs nothing). MNIST: $RNNFAST_BENCH_MNIST, else $RNNFAST_DATA/mnist, else
../shared/data/mnist beside the repository. --quick: one timed epoch of 25,000 images, to check
that it runs (its figures mean little).

    python benchmarks/bench_checkpoint.py [--markdown] [--repeats 5] [--busy N] [--quick]
"""

import argparse
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
BATCH = 100  # the mnist task's default batch_size
FULL_TRAIN = 55_000  # the mnist task's default train_size: 550 updates an epoch
QUICK_TRAIN = 25_000  # 250 updates: every 200 still writes mid-epoch, every epoch at its end
WARMUP_EPOCHS = 1  # untimed epochs a worker serves first (compiled calls, caches, first write)
RUN_EPOCHS = 10_000  # each worker's run: far more epochs than any measurement serves


def mnist_dir() -> Path:
    """$RNNFAST_BENCH_MNIST (as bench_train.py), else $RNNFAST_DATA/mnist if that is a
    directory (where rnnfast looks), else ../shared/data/mnist (the tests' copy)."""
    own = os.environ.get("RNNFAST_BENCH_MNIST")
    if own:
        return Path(own)
    root = os.environ.get("RNNFAST_DATA")
    if root and (Path(root) / "mnist").is_dir():
        return Path(root) / "mnist"
    return SHARED_MNIST


def policies(train_size: int, interval: int) -> dict[str, tuple[str, int | str]]:
    """Worker name -> (label, checkpoint_every) for an epoch of train_size images, checkpoints
    being checked every `interval` updates (rnnfast.run_setup.INTERVAL)."""
    upe = train_size // BATCH
    return {
        "never": ("never", "never"),
        "epoch": (f"every epoch ({upe} updates)", upe),
        "interval": (f"every {interval} updates", interval),
    }


def default_overhead(write_s: float, epoch_s: float, min_s: float) -> tuple[float, float]:
    """(checkpoints per epoch, fraction of an epoch) of the default "epoch" policy: one write
    at the end of the first epoch that ends min_s (rnnfast.config.EPOCH_MIN_SECONDS) or more
    after the last write."""
    per_epoch = 1.0 / max(1, math.ceil(min_s / epoch_s))
    return per_epoch, per_epoch * write_s / epoch_s


def file_system(path: Path) -> str:
    """The type of the file system holding path (/proc/mounts), or 'unknown'."""
    best, kind = "", "unknown"
    target = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1]
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


# ---------------------------------------------------------------- worker side


class EpochAtATime:
    """Serves a run's steps() requests as CpuTrainer.drive does, one epoch per epoch() call:
    its updates, its evaluations and the checkpoint due after them (written while the
    generator moves on to the next epoch's first request)."""

    def __init__(self, trainer, requests) -> None:
        self.trainer, self.requests = trainer, requests
        self.pending = next(requests)
        self.epochs = 0
        self.eval_seconds = 0.0

    def epoch(self) -> None:
        tr, served = self.trainer, False
        while True:
            req = self.pending
            if req[0] == "updates" and req[2] == 0 and served:  # the next epoch begins
                break
            if req[0] == "updates":
                _, data, u, n, step, losses, errors, reset = req
                if reset:
                    tr.reset_state()
                answer = tr.run_updates(data, u, n, step, losses, errors)
                if answer < n:
                    raise RuntimeError(f"the run diverged at update {step + answer + 1}")
            elif req[0] == "evaluate":
                t0 = time.perf_counter()
                answer = tr.evaluate(req[1])
                self.eval_seconds += time.perf_counter() - t0
            else:  # "sync": the run's end
                raise RuntimeError(f"the run ended after {self.epochs} epochs: raise RUN_EPOCHS")
            served = True
            self.pending = self.requests.send(answer)
        self.epochs += 1


def setup_rnnfast() -> dict[str, str]:
    import numba

    import rnnfast

    return {
        "versions": f"rnnfast {rnnfast.__version__}, numba {numba.__version__}",
        "threads": ", ".join(_harness.openblas_threads()),
        "env": _harness.thread_env(),
    }


def build_epochs(name: str, every, shape, dtype: str):
    """One epoch per call of a run that checkpoints every `every` into ROOT/<name>/; after each
    epoch ROOT/<name>.json lists, per epoch so far, its checkpoints, their seconds, the test
    evaluation's seconds and the latest checkpoint's size (the driver reads it at the end)."""
    from threadpoolctl import threadpool_limits

    from rnnfast import checkpoint
    from rnnfast.config import resolve
    from rnnfast.cpu.trainer import CpuTrainer, _checkpoints, blas_threads
    from rnnfast.run_setup import RunSetup, steps

    data_dir, train_size, root = shape
    cfg = resolve({"task": "mnist", "hidden_size": 100, "dtype": dtype, "data_dir": data_dir,
                   "train_size": train_size, "epochs": RUN_EPOCHS,
                   "checkpoint_every": every})  # fmt: skip
    setup = RunSetup(cfg)
    tr = CpuTrainer(setup)
    compile_time = tr.warm_up()
    threads = blas_threads(cfg, setup.spec, setup.T, setup.B)  # as rnnfast.train applies it
    if threads is not None:
        threadpool_limits(limits=threads, user_api="blas")
    with checkpoint.session(Path(root) / name, name):  # as a grid's worker trains it
        ck = _checkpoints(tr, threads)  # the trainer's own: its live arrays and layout
    if ck is None or ck.resume is not None:
        raise RuntimeError(f"{name}: expected a fresh checkpointed run in {root}")
    server = EpochAtATime(tr, steps(setup, compile_time, None, time.perf_counter(), ck))
    stats, epochs = Path(root) / f"{name}.json", []

    def step() -> None:
        written, seconds, evals = ck.written, ck.seconds, server.eval_seconds
        server.epoch()
        epochs.append({
            "written": ck.written - written, "seconds": ck.seconds - seconds,
            "eval_seconds": server.eval_seconds - evals,
            "bytes": ck.target.path.stat().st_size if ck.written else 0,
        })  # fmt: skip
        stats.write_text(json.dumps(epochs))

    return step


# ---------------------------------------------------------------- driver side


def _totals(epochs: list[dict]) -> dict:
    """The timed epochs' sums (the untimed warm-up epochs left out: a run's first write also
    imports and opens what later ones find ready) and the latest checkpoint's size."""
    timed, first = epochs[WARMUP_EPOCHS:], epochs[0]
    out = {k: sum(e[k] for e in timed) for k in ("written", "seconds", "eval_seconds")}
    first_write = first["seconds"] / first["written"] if first["written"] else None
    return {**out, "epochs": len(timed), "bytes": epochs[-1]["bytes"], "first_write": first_write}


def _table(labels, timings, totals, min_s: float) -> list[tuple]:
    """(label, epoch s, vs never, checkpoints/epoch, write s, bytes, overhead) rows for the
    workers' labels (policies()) and the default policy at most once in min_s seconds."""
    never = timings["never"].median
    epoch_s = min(t.median for t in timings.values())  # the shortest: the larger percentage
    rows = []
    for name, (label, _) in labels.items():
        t = totals[name]
        per_epoch = t["written"] / t["epochs"]
        write = t["seconds"] / t["written"] if t["written"] else None
        median = timings[name].median
        overhead = per_epoch * write / epoch_s if write is not None else None
        rows.append((label, median, median / never - 1, per_epoch, write, t["bytes"] or None,
                     overhead))  # fmt: skip
    _, _, _, _, write, size, _ = rows[list(labels).index("epoch")]
    if write is not None:  # a checkpoint at each epoch's end: always, unless the run failed
        per_epoch, overhead = default_overhead(write, epoch_s, min_s)
        rows.append(('"epoch" (the default)', None, None, per_epoch, write, size, overhead))
    return rows


def _cells(row: tuple) -> list[str]:
    """A row's values as text: seconds, percentages, milliseconds, bytes; '-' for none."""
    label, epoch, rel, per, write, size, over = row
    fmt = lambda v, scale, spec, unit="": "-" if v is None else format(v * scale, spec) + unit  # noqa: E731
    return [label, fmt(epoch, 1, ".3f"), fmt(rel, 100, "+.1f", "%"), f"{per:.3g}",
            fmt(write, 1e3, ".1f"), fmt(size, 1, ","), fmt(over, 100, ".3f")]  # fmt: skip


def _print(rows, markdown: bool) -> None:
    if markdown:
        print("| checkpoint_every | epoch (s) | vs never | checkpoints / epoch | write (ms) "
              "| file (bytes) | overhead (% of an epoch) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print("| " + " | ".join(_cells(row)) + " |")
        return
    head = ["checkpoint_every", "epoch s", "vs never", "ckpt/epoch", "write ms", "file bytes",
            "overhead %"]  # fmt: skip
    for cells in [head] + [_cells(row) for row in rows]:
        print(f"{cells[0]:<28}" + "".join(f" {c:>11}" for c in cells[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per worker (default 5)")
    ap.add_argument("--train-size", type=int, default=FULL_TRAIN,
                    help=f"training images, {BATCH} an update (default {FULL_TRAIN})")  # fmt: skip
    ap.add_argument("--quick", action="store_true",
                    help=f"a smoke test: 1 timed epoch of {QUICK_TRAIN} images")  # fmt: skip
    ap.add_argument("--busy", type=int, default=0, help="cores kept busy meanwhile (default 0)")
    ap.add_argument("--dir", type=Path, help="where the checkpoints go (default: a temporary "
                    "directory)")  # fmt: skip
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.train_size = 1, QUICK_TRAIN
    if args.repeats < 1 or args.busy < 0:
        ap.error("--repeats must be >= 1 and --busy >= 0")
    if not BATCH <= args.train_size <= 60_000:
        ap.error(f"--train-size must be in [{BATCH}, 60000] (MNIST's training images)")
    data = mnist_dir()
    if not data.is_dir():
        print(f"bench_checkpoint: no MNIST in {data}: set RNNFAST_BENCH_MNIST or RNNFAST_DATA "
              "to a directory holding its four IDX files", file=sys.stderr)  # fmt: skip
        raise SystemExit(1)
    try:
        root = Path(tempfile.mkdtemp(prefix="rnnfast-bench-checkpoint-", dir=args.dir))
    except OSError as e:
        print(f"bench_checkpoint: cannot create a directory in {args.dir or tempfile.gettempdir()}"
              f": {e.strerror or e}", file=sys.stderr)  # fmt: skip
        raise SystemExit(1) from None
    try:
        _run(args, data, root)
    finally:
        _remove(root)


def _run(args, data: Path, root: Path) -> None:
    from rnnfast.config import EPOCH_MIN_SECONDS
    from rnnfast.run_setup import INTERVAL

    labels = policies(args.train_size, INTERVAL)
    names = list(labels)
    for name, (_, every) in labels.items():
        _harness.register(name, functools.partial(build_epochs, name, every),
                          setup=setup_rnnfast, forbid=("torch",))  # fmt: skip
    shape = (str(data), args.train_size, str(root))
    with _harness.exits_cleanly():
        with _harness.Workers(names) as workers, _harness.BusyCores(args.busy):
            print(f"# {_harness.cpu_info()}")
            if args.busy:
                print(f"# {args.busy} core(s) kept busy by spinning processes (--busy)")
            print(f"# {workers.info['never']['versions']}; {workers.info['never']['threads']}; "
                  f"env {workers.info['never']['env']}")  # fmt: skip
            print(f"# MNIST rows LSTM 100, {args.train_size:,} images ({args.train_size // BATCH}"
                  f" updates an epoch), {args.dtype}; checkpoints in {root} "
                  f"({file_system(root)})", flush=True)  # fmt: skip
            timings = _harness.measure(
                workers, [shape], args.dtype, {n: args.repeats for n in names},
                rounds=args.repeats, warmup=WARMUP_EPOCHS, batch_warmup=0, warmup_s=0.0,
                progress=lambda s: print("  measured", file=sys.stderr),
            )[shape]  # fmt: skip
    totals = {n: _totals(json.loads((root / f"{n}.json").read_text())) for n in names}
    evals = totals["never"]["eval_seconds"] / totals["never"]["epochs"]
    load = timings["never"].other_load
    first = totals["epoch"]["first_write"] or 0.0  # the first epoch's end always writes
    print(f"# medians of {args.repeats} epochs each (after {WARMUP_EPOCHS} untimed), alternated; "
          f"checkpoints counted in the timed epochs; the test evaluation takes {evals:.2f} s "
          f"of each epoch; a run's first write {first * 1e3:.1f} ms (once: imports, caches); "
          f"overheads against the shortest median epoch; other load "
          f"{'unknown' if load is None else f'{load:.2f} cores'}")  # fmt: skip
    _print(_table(labels, timings, totals, EPOCH_MIN_SECONDS), args.markdown)


def _remove(root: Path) -> None:
    """Delete the directory this run made (mkdtemp), checkpoints and counts."""
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
