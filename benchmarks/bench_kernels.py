"""Forward+backward time of rnnfast vs PyTorch vs the NumPy reference, plus start-up costs.

    python benchmarks/bench_kernels.py                  # all shapes, float32, text table
    python benchmarks/bench_kernels.py --markdown       # the README's table
    python benchmarks/bench_kernels.py --quick --shapes lstm rnn:10:200:2:16
    python benchmarks/bench_kernels.py --busy 1 --no-startup   # one core kept busy

For each shape (cell T B I H) one step is forward + backward of sum(out * dout):
- rnnfast: rnnfast.forward + rnnfast.backward (gradients of every parameter, x and h0);
- PyTorch: nn.RNN/LSTM/GRU (same weights, torch.set_num_threads(--threads)), zero the
  gradients, forward, then backward of sum(out * dout) with requires_grad on x;
- reference: the same through backend "reference" (slow, so fewer repeats).

Each framework runs in its own worker process (benchmarks/_harness.py): one process holding
SciPy's OpenBLAS (rnnfast), NumPy's OpenBLAS (reference) and torch's OpenMP pool had their
spinning threads steal the 2 cores from each other (rnnfast's LSTM 28x100x100 step measured
9 ms alone, 21 ms mixed). The frameworks are still measured alternately in one run: per shape,
--rounds rounds in which every worker times its share of the calls in a row, with a --pause
between workers so the previous one's threads go idle; a busy machine slows all of them alike.
The table gives medians over all timed calls and the ratios torch/rnnfast and
reference/rnnfast (> 1: rnnfast is faster).

A shared machine: --busy N keeps N cores busy with spinning processes for the whole
measurement and adds a worker running rnnfast on one Numba and one BLAS thread (--single
adds it idle too): rnnfast / 1 thread says what rnnfast's threads cost or gain under that
load (the goal: at most 1.5x; rnnfast/cpu/_threads.py is the policy).

Start-up: two fresh processes with one new, empty NUMBA_CACHE_DIR time `import rnnfast` and the
first forward+backward of every cell (a small and a large hidden size each): the first process
compiles (cold), the second loads the cache it left (cached start-up; target < 1 s in all).
"""

import argparse
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# Workers are spawned processes that re-import this file (as __mp_main__): keep the imports
# at the top light; each framework is imported inside its own worker's setup/build.
import _harness

SHAPES = [
    ("rnn", 5, 200, 2, 4),
    ("rnn", 10, 200, 2, 16),
    ("rnn", 10, 200, 2, 64),
    ("lstm", 28, 100, 28, 100),
    ("gru", 28, 100, 28, 100),
    ("lstm", 100, 32, 64, 256),
]
CELLS = ("rnn", "lstm", "gru")
BACKENDS = ("cpu", "reference")  # rnnfast.api.BACKENDS, without importing rnnfast here
TORCH_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def parse_shapes(tokens: list[str] | None,
                 defaults: list | None = None) -> list[tuple[str, int, int, int, int]]:  # fmt: skip
    """Each token is a cell name (all default shapes of that cell) or cell:T:B:I:H."""
    defaults = SHAPES if defaults is None else defaults
    if not tokens:
        return list(defaults)
    shapes = []
    for token in tokens:
        parts = token.split(":")
        if parts[0] not in CELLS or len(parts) not in (1, 5):
            raise SystemExit(f"--shapes: expected a cell {CELLS} or cell:T:B:I:H, got {token!r}")
        if len(parts) == 1:
            shapes += [s for s in defaults if s[0] == parts[0] and s not in shapes]
            continue
        try:
            dims = tuple(int(p) for p in parts[1:])
        except ValueError:
            raise SystemExit(f"--shapes: T, B, I, H must be integers, got {token!r}") from None
        if min(dims) < 1:
            raise SystemExit(f"--shapes: T, B, I, H must be >= 1, got {token!r}")
        shapes.append((parts[0], *dims))
    return shapes


# ---------------------------------------------------------------- workloads (run in workers)


def make_inputs(shape: tuple[str, int, int, int, int], dtype: str):
    """Parameters (seed 0, PyTorch layout), x (T, B, I) and dout (T, B, H); same everywhere."""
    import numpy as np

    import rnnfast

    cell, T, B, I, H = shape
    params = rnnfast.init_params(cell, I, H, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    return params, x, dout


def setup_rnnfast(backend: str) -> dict[str, str]:
    import numpy as np

    import rnnfast

    info = {"versions": f"rnnfast {rnnfast.__version__}, numpy {np.__version__}"}
    threads = []
    if backend == "cpu":
        import numba
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS np.dot in @njit calls)

        import rnnfast.cpu  # noqa: F401

        info["versions"] += f", scipy {scipy.__version__}, numba {numba.__version__}"
        threads.append(f"NUMBA_NUM_THREADS {numba.config.NUMBA_NUM_THREADS}")
    else:
        import rnnfast.reference  # noqa: F401
    info["threads"] = ", ".join(_harness.openblas_threads() + threads)
    info["env"] = _harness.thread_env()
    return info


def build_rnnfast(backend: str, shape: tuple[str, int, int, int, int], dtype: str):
    import rnnfast

    cell = shape[0]
    params, x, dout = make_inputs(shape, dtype)

    def step() -> None:
        _, _, cache = rnnfast.forward(cell, params, x, backend=backend)
        rnnfast.backward(cell, params, cache, dout, backend=backend)

    return step


def setup_torch(threads: int) -> dict[str, str]:
    import torch

    torch.set_num_threads(threads)
    return {
        "versions": f"torch {torch.__version__}",
        "threads": (
            f"torch.set_num_threads({threads}): {torch.get_num_threads()} intra-op, "
            f"{torch.get_num_interop_threads()} inter-op threads"
        ),
        "env": _harness.thread_env(),
    }


def build_torch(shape: tuple[str, int, int, int, int], dtype: str):
    import torch

    cell = shape[0]
    params, x, dout = make_inputs(shape, dtype)
    I, H = params["weight_ih_l0"].shape[1], params["weight_hh_l0"].shape[1]
    module = getattr(torch.nn, TORCH_CLASSES[cell])(I, H, dtype=getattr(torch, dtype))
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tdout = torch.from_numpy(dout.copy())

    def step() -> None:
        module.zero_grad()
        tx.grad = None
        out, _ = module(tx)
        (out * tdout).sum().backward()

    return step


def register_workloads(
    backend: str,
    torch_threads: int | None,
    reference: bool,
    blas_threads: int | None,
    single: bool = False,
) -> list[str]:
    """Register the workers this run needs in _harness.REGISTRY; return their names. single
    adds "rnnfast-1t": rnnfast on one Numba and one BLAS thread (its own single-thread time,
    the yardstick of a busy machine)."""
    env = {"OPENBLAS_NUM_THREADS": str(blas_threads)} if blas_threads else {}
    forbid = ("torch",) if backend == "cpu" else ("torch", "rnnfast.cpu")
    _harness.register(
        "rnnfast",
        functools.partial(build_rnnfast, backend),
        setup=functools.partial(setup_rnnfast, backend),
        forbid=forbid,
        env=env,
    )
    names = ["rnnfast"]
    if single:
        _harness.register(
            "rnnfast-1t",
            functools.partial(build_rnnfast, backend),
            setup=functools.partial(setup_rnnfast, backend),
            forbid=forbid,
            env=_harness.SINGLE_THREAD_ENV,
        )
        names.append("rnnfast-1t")
    if torch_threads is not None:
        _harness.register(
            "torch",
            build_torch,
            setup=functools.partial(setup_torch, torch_threads),
            forbid=("rnnfast.cpu",),
        )
        names.append("torch")
    if reference:
        _harness.register(
            "reference",
            functools.partial(build_rnnfast, "reference"),
            setup=functools.partial(setup_rnnfast, "reference"),
            forbid=("torch", "rnnfast.cpu"),
            env=env,
        )
        names.append("reference")
    return names


_STARTUP_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import rnnfast
result = {"import": time.perf_counter() - t0}
dtype, backend = sys.argv[1], sys.argv[2]
for cell in ("rnn", "lstm", "gru"):
    t = time.perf_counter()
    for H in (8, 256):  # small and large hidden size, in case the kernels differ by size
        params = rnnfast.init_params(cell, 4, H, dtype=dtype, seed=0)
        x = np.ones((3, 2, 4), dtype)
        _, _, cache = rnnfast.forward(cell, params, x, backend=backend)
        rnnfast.backward(cell, params, cache, np.ones((3, 2, H), dtype), backend=backend)
    result[cell] = time.perf_counter() - t
print(json.dumps(result))
"""


def startup(dtype: str, backend: str) -> tuple[dict, dict]:
    """(cold, cached) start-up timings from two fresh processes sharing one new cache dir."""
    cache_dir = tempfile.mkdtemp(prefix="rnnfast-numba-cache-")
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    runs = []
    try:
        for _ in range(2):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _STARTUP_SCRIPT, dtype, backend],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"start-up measurement failed:\n{proc.stderr}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["total"] = sum(result.values())
            result["process"] = wall
            runs.append(result)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return runs[0], runs[1]


def format_table(
    rows: list[dict], markdown: bool, torch_ok: bool, ref_ok: bool, single_ok: bool = False
) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1e3:.3f}"

    def ratio(a: float | None, b: float) -> str:
        return "-" if a is None else f"{a / b:.2f}x"

    header = ["cell", "T", "B", "I", "H", "rnnfast (ms)"]
    header += ["rnnfast 1 thread (ms)"] if single_ok else []
    header += ["PyTorch (ms)"] if torch_ok else []
    header += ["NumPy ref (ms)"] if ref_ok else []
    header += ["rnnfast / 1 thread"] if single_ok else []
    header += ["PyTorch / rnnfast"] if torch_ok else []
    header += ["ref / rnnfast"] if ref_ok else []
    body = []
    for row in rows:
        t = row["times"]
        line = [*map(str, row["shape"]), ms(t["rnnfast"])]
        line += [ms(t.get("rnnfast-1t"))] if single_ok else []
        line += [ms(t.get("torch"))] if torch_ok else []
        line += [ms(t.get("reference"))] if ref_ok else []
        line += [ratio(t["rnnfast"], t["rnnfast-1t"])] if single_ok else []
        line += [ratio(t.get("torch"), t["rnnfast"])] if torch_ok else []
        line += [ratio(t.get("reference"), t["rnnfast"])] if ref_ok else []
        body.append(line)
    if markdown:
        align = ["---"] + ["---:"] * (len(header) - 1)
        lines = [header, align, *body]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *body]
    )


def format_startup(name: str, r: dict) -> str:
    cells = ", ".join(f"{cell} {r[cell]:.2f} s" for cell in CELLS)
    return (
        f"{name}: import rnnfast {r['import']:.2f} s, first forward+backward {cells}; "
        f"total {r['total']:.2f} s (whole process {r['process']:.2f} s)"
    )


def format_header(args, info: dict[str, dict[str, str]], repeats: dict[str, int]) -> str:
    labels = {"rnnfast": "rnnfast worker", "rnnfast-1t": "rnnfast 1-thread worker",
              "torch": "PyTorch worker", "reference": "ref worker"}  # fmt: skip
    versions = [v for i in info.values() for v in i.get("versions", "").split(", ") if v]
    versions = ", ".join(dict.fromkeys(versions))  # each once, in order
    threads = "; ".join(f"{labels.get(n, n)}: {i.get('threads', '?')}" for n, i in info.items())
    envs = {i.get("env", "?") for i in info.values()}
    ref = f" ({repeats['reference']} for the reference)" if "reference" in repeats else ""
    return "\n".join(
        [
            f"backend {args.backend}, {args.dtype}; {versions}; {_harness.cpu_info()}",
            f"threads: {threads}; thread variables: {' / '.join(sorted(envs))}",
            f"one worker process per framework, interleaved: median of {args.repeats} calls"
            f"{ref} in {args.rounds} rounds per shape, {args.pause:g} s pause between workers; "
            "forward+backward per call",
        ]
    )


def format_load(shapes: list, times: dict) -> str:
    """One line: how busy other processes kept the CPUs while each shape was measured."""
    loads = {s: next(iter(times[s].values())).other_load for s in shapes}
    known = {s: v for s, v in loads.items() if v is not None}
    if not known:
        return "load from other processes: unknown (no /proc/stat)"
    worst = max(known, key=known.get)
    text = (
        f"load from other processes while measuring: mean {statistics.mean(known.values()):.2f}, "
        f"max {known[worst]:.2f} cores ({' '.join(map(str, worst))})"
    )
    if known[worst] > 0.2:
        text += ": the machine was shared, the timings of those shapes are unreliable"
    return text


def main(argv: list[str] | None = None) -> None:
    t_start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backend", choices=BACKENDS, default="cpu")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls (default 30)")
    parser.add_argument(
        "--ref-repeats", type=int, default=None, help="reference calls (default repeats/5, >= 3)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.15,
        help="seconds between workers, for spinning BLAS threads to idle (default 0.15)",
    )
    parser.add_argument("--shapes", nargs="+", metavar="SHAPE", help="cell or cell:T:B:I:H")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="OPENBLAS_NUM_THREADS for the rnnfast and reference workers (default: inherit)",
    )
    parser.add_argument("--quick", action="store_true", help="5 repeats, 2 reference runs")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="keep this many cores busy with spinning processes while measuring (a shared "
        "machine); adds rnnfast on one thread, the yardstick under load (default 0)",
    )
    parser.add_argument(
        "--single", action="store_true", help="also time rnnfast on one thread when idle"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.ref_repeats, args.warmup = 5, 2, 1
    if args.repeats < 1 or args.warmup < 0 or args.rounds < 1 or args.pause < 0:
        parser.error("--repeats and --rounds must be >= 1, --warmup and --pause >= 0")
    if args.threads < 1 or (args.blas_threads is not None and args.blas_threads < 1):
        parser.error("--threads and --blas-threads must be >= 1")
    if args.busy < 0:
        parser.error("--busy must be >= 0")
    single = args.single or args.busy > 0
    args.rounds = min(args.rounds, args.repeats)
    ref_repeats = args.ref_repeats if args.ref_repeats is not None else max(3, args.repeats // 5)
    ref_repeats = 0 if args.no_reference else min(ref_repeats, args.repeats)
    shapes = parse_shapes(args.shapes)

    torch_threads = None
    if args.no_torch:
        print("torch columns skipped (--no-torch)")
    elif importlib.util.find_spec("torch") is None:
        print("torch is not installed: torch columns skipped")
    else:
        torch_threads = args.threads
    names = register_workloads(
        args.backend, torch_threads, ref_repeats > 0, args.blas_threads, single
    )
    repeats = {"rnnfast": args.repeats, "rnnfast-1t": args.repeats, "torch": args.repeats,
               "reference": ref_repeats}  # fmt: skip
    repeats = {n: repeats[n] for n in names}

    def progress(shape) -> None:
        if not args.markdown:
            print("  measured " + " ".join(map(str, shape)), flush=True)

    with _harness.exits_cleanly():
        with _harness.Workers(names) as workers, _harness.BusyCores(args.busy):
            print(format_header(args, workers.info, repeats), flush=True)
            if args.busy:
                print(f"{args.busy} core(s) kept busy by spinning processes (--busy)")
            times = _harness.measure(
                workers,
                shapes,
                args.dtype,
                repeats,
                rounds=args.rounds,
                pause=args.pause,
                # the slow reference: one untimed call first, none before later batches
                warmup={n: min(args.warmup, 1) if n == "reference" else args.warmup for n in names},
                batch_warmup={n: 0 if n == "reference" else 1 for n in names},
                progress=progress,
            )
    rows = [{"shape": s, "times": {n: t.median for n, t in times[s].items()}} for s in shapes]
    print()
    print(format_table(rows, args.markdown, torch_threads is not None, ref_repeats > 0, single))
    print()
    print(format_load(shapes, times))

    if not args.no_startup:
        print()
        cold, cached = startup(args.dtype, args.backend)
        print(format_startup("cold compile (empty NUMBA_CACHE_DIR)", cold))
        print(format_startup("cached start-up (same cache dir)  ", cached))
        verdict = "OK" if cached["total"] < 1.0 else "OVER the 1 s target"
        print(f"cached import + first forward/backward: {cached['total']:.2f} s: {verdict}")
    print(f"\nbenchmark wall time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
