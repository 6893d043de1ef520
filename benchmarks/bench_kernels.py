"""Forward+backward time of rnnfast vs PyTorch vs the NumPy reference, plus start-up costs.

    python benchmarks/bench_kernels.py                  # all shapes, float32, text table
    python benchmarks/bench_kernels.py --markdown       # the README's table
    python benchmarks/bench_kernels.py --quick --shapes lstm rnn:10:200:2:16

For each shape (cell T B I H) one step is forward + backward of sum(out * dout):
- rnnfast: rnnfast.forward + rnnfast.backward (gradients of every parameter, x and h0);
- PyTorch: nn.RNN/LSTM/GRU (same weights, torch.set_num_threads(--threads)), zero the
  gradients, forward, then backward of sum(out * dout) with requires_grad on x;
- reference: the same through backend "reference" (slow, so fewer repeats).
The three are measured alternately in one run (rnnfast, torch, reference, rnnfast, torch, ...)
after a warm-up, so a busy machine slows all of them alike; the table gives medians and the
ratios torch/rnnfast and reference/rnnfast (> 1: rnnfast is faster).

Start-up: two fresh processes with one new, empty NUMBA_CACHE_DIR time `import rnnfast` and the
first forward+backward of every cell (a small and a large hidden size each): the first process
compiles (cold), the second loads the cache it left (cached start-up; target < 1 s in all).
"""

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

import rnnfast

SHAPES = [
    ("rnn", 5, 200, 2, 4),
    ("rnn", 10, 200, 2, 16),
    ("rnn", 10, 200, 2, 64),
    ("lstm", 28, 100, 28, 100),
    ("gru", 28, 100, 28, 100),
    ("lstm", 100, 32, 64, 256),
]
CELLS = ("rnn", "lstm", "gru")
TORCH_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def parse_shapes(tokens: list[str] | None) -> list[tuple[str, int, int, int, int]]:
    """Each token is a cell name (all default shapes of that cell) or cell:T:B:I:H."""
    if not tokens:
        return list(SHAPES)
    shapes = []
    for token in tokens:
        parts = token.split(":")
        if parts[0] not in CELLS or len(parts) not in (1, 5):
            raise SystemExit(f"--shapes: expected a cell {CELLS} or cell:T:B:I:H, got {token!r}")
        if len(parts) == 1:
            shapes += [s for s in SHAPES if s[0] == parts[0] and s not in shapes]
            continue
        try:
            dims = tuple(int(p) for p in parts[1:])
        except ValueError:
            raise SystemExit(f"--shapes: T, B, I, H must be integers, got {token!r}") from None
        if min(dims) < 1:
            raise SystemExit(f"--shapes: T, B, I, H must be >= 1, got {token!r}")
        shapes.append((parts[0], *dims))
    return shapes


def rnnfast_step(backend: str, cell: str, params: dict, x: np.ndarray, dout: np.ndarray):
    def step() -> None:
        _, _, cache = rnnfast.forward(cell, params, x, backend=backend)
        rnnfast.backward(cell, params, cache, dout, backend=backend)

    return step


def torch_step(torch, cell: str, params: dict, x: np.ndarray, dout: np.ndarray):
    I, H = params["weight_ih_l0"].shape[1], params["weight_hh_l0"].shape[1]
    dtype = torch.float32 if x.dtype == np.float32 else torch.float64
    module = getattr(torch.nn, TORCH_CLASSES[cell])(I, H, dtype=dtype)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tdout = torch.from_numpy(dout.copy())

    def step() -> None:
        module.zero_grad()
        tx.grad = None
        out, _ = module(tx)
        (out * tdout).sum().backward()

    return step


def bench_shape(
    shape: tuple[str, int, int, int, int],
    dtype: np.dtype,
    backend: str,
    torch,
    repeats: int,
    ref_repeats: int,
    warmup: int,
) -> dict[str, float]:
    cell, T, B, I, H = shape
    params = rnnfast.init_params(cell, I, H, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    steps: dict[str, Callable[[], None]] = {"rnnfast": rnnfast_step(backend, cell, params, x, dout)}
    if torch is not None:
        steps["torch"] = torch_step(torch, cell, params, x, dout)
    if ref_repeats > 0:
        steps["reference"] = rnnfast_step("reference", cell, params, x, dout)
    for name, step in steps.items():
        for _ in range(warmup if name != "reference" else 1):
            step()
    # the reference runs in every stride-th round only, spread over the whole run
    stride = max(1, -(-repeats // max(ref_repeats, 1)))
    times: dict[str, list[float]] = {name: [] for name in steps}
    gc.collect()
    for r in range(repeats):
        for name, step in steps.items():
            if name == "reference" and (r % stride or len(times[name]) >= ref_repeats):
                continue
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


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


def format_table(rows: list[dict], markdown: bool, torch_ok: bool, ref_ok: bool) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1e3:.3f}"

    def ratio(a: float | None, b: float) -> str:
        return "-" if a is None else f"{a / b:.2f}x"

    header = ["cell", "T", "B", "I", "H", "rnnfast (ms)"]
    header += ["PyTorch (ms)"] if torch_ok else []
    header += ["NumPy ref (ms)"] if ref_ok else []
    header += ["PyTorch / rnnfast"] if torch_ok else []
    header += ["ref / rnnfast"] if ref_ok else []
    body = []
    for row in rows:
        t = row["times"]
        line = [*map(str, row["shape"]), ms(t["rnnfast"])]
        line += [ms(t.get("torch"))] if torch_ok else []
        line += [ms(t.get("reference"))] if ref_ok else []
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backend", choices=sorted(rnnfast.api.BACKENDS), default="cpu")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument(
        "--ref-repeats", type=int, default=None, help="reference runs (default repeats/5, >= 3)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--shapes", nargs="+", metavar="SHAPE", help="cell or cell:T:B:I:H")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="5 repeats, 2 reference runs")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.ref_repeats, args.warmup = 5, 2, 1
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    ref_repeats = args.ref_repeats if args.ref_repeats is not None else max(3, args.repeats // 5)
    ref_repeats = 0 if args.no_reference else min(ref_repeats, args.repeats)
    shapes = parse_shapes(args.shapes)
    dtype = np.dtype(args.dtype)

    torch = None
    if args.no_torch:
        print("torch columns skipped (--no-torch)")
    else:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            print("torch is not installed: torch columns skipped")
    import numba

    versions = f"numpy {np.__version__}, numba {numba.__version__}"
    versions += f", torch {torch.__version__} ({args.threads} threads)" if torch else ""
    print(
        f"rnnfast {rnnfast.__version__} backend {args.backend}, {args.dtype}; {versions}; "
        f"{os.cpu_count()} CPUs; median of {args.repeats} rounds "
        f"({ref_repeats} for the reference), forward+backward per call"
    )

    rows = []
    for shape in shapes:
        times = bench_shape(
            shape, dtype, args.backend, torch, args.repeats, ref_repeats, args.warmup
        )
        rows.append({"shape": shape, "times": times})
        if not args.markdown:
            print("  measured " + " ".join(map(str, shape)), flush=True)
    print()
    print(format_table(rows, args.markdown, torch is not None, ref_repeats > 0))

    if not args.no_startup:
        print()
        cold, cached = startup(args.dtype, args.backend)
        print(format_startup("cold compile (empty NUMBA_CACHE_DIR)", cold))
        print(format_startup("cached start-up (same cache dir)  ", cached))
        verdict = "OK" if cached["total"] < 1.0 else "OVER the 1 s target"
        print(f"cached import + first forward/backward: {cached['total']:.2f} s: {verdict}")


if __name__ == "__main__":
    main()
