"""Forward+backward over variable-length sequences: rnnfast with lengths vs PyTorch packed.

    python benchmarks/bench_lengths.py                   # all shapes, float32, text table
    python benchmarks/bench_lengths.py --markdown        # a markdown table
    python benchmarks/bench_lengths.py --quick --shapes rnn:20:50:4:8 --busy 1

Shapes (cell T B I H; one layer, unidirectional): LSTM and GRU with 100 units on T = 100
steps of 32 features, batch 64 (a medium sequence-set model), and a tanh RNN with 16 units on
T = 50 steps of 12 features (as bench_train's sequence set), batch 200 (a small model, where
per-step overhead dominates). Each sequence's length is drawn uniformly from [T/4, T]
(numpy.random.default_rng(--seed)), so about 5/8 of the padded batch is real work. One step
is forward + backward of sum(out * dout) (gradients of every parameter and x), float32:

- rnnfast lengths: rnnfast.forward(..., lengths=lengths) + rnnfast.backward (--backend);
- rnnfast padded: the same without lengths, on the whole padded batch;
- torch packed: pack_padded_sequence(x, lengths, enforce_sorted=False) -> nn.LSTM/GRU/RNN ->
  pad_packed_sequence(total_length=T), backward (what a PyTorch user writes for such data);
- torch padded: the module on the padded batch, lengths ignored (wrong at the padded steps,
  but what many do; the cost of computing the padding).

Each framework variant runs in its own worker process and all are measured alternately in one
run (benchmarks/_harness.py, as bench_kernels.py: --rounds rounds, a --pause between
workers, medians over all timed calls); PyTorch uses torch.set_num_threads(--threads). The
ratios "torch packed / rnnfast lengths" and "torch padded / rnnfast lengths" come from that
one run (> 1: rnnfast is faster).

Shared machines (DESIGN.md, kernel rule 9): --busy N starts N processes that each keep one
core busy for the whole measurement; run once idle and once with --busy 1 and compare.
"""

import argparse
import functools
import importlib.util
import time

# Workers are spawned processes that re-import this file (as __mp_main__): keep the imports
# at the top light; each framework is imported inside its own worker's setup/build.
import _harness
from bench_kernels import TORCH_CLASSES, format_load, parse_shapes, setup_rnnfast, setup_torch

SHAPES = [
    ("lstm", 100, 64, 32, 100),
    ("gru", 100, 64, 32, 100),
    ("rnn", 50, 200, 12, 16),
]
CELLS = ("rnn", "lstm", "gru")
BACKENDS = ("cpu", "reference")
COLUMNS = {  # workload -> table heading
    "rnnfast-lengths": "rnnfast lengths (ms)",
    "rnnfast-padded": "rnnfast padded (ms)",
    "torch-packed": "torch packed (ms)",
    "torch-padded": "torch padded (ms)",
}


# ---------------------------------------------------------------- workloads (run in workers)


def draw_lengths(rng, T: int, B: int):
    """(B,) int64 uniform in [T/4, T] (at least 1)."""
    import numpy as np

    return rng.integers(max(1, T // 4), T + 1, size=B, dtype=np.int64)


def make_inputs(shape: tuple[str, int, int, int, int], dtype: str, seed: int):
    """Parameters (seed 0, PyTorch layout), x (T, B, I) zero-padded past each sequence's
    length, dout (T, B, H) and lengths (B,) uniform in [T/4, T]; the same in every worker."""
    import numpy as np

    import rnnfast

    cell, T, B, I, H = shape
    params = rnnfast.init_params(cell, I, H, dtype=dtype, seed=0)
    rng = np.random.default_rng(seed)
    lengths = draw_lengths(rng, T, B)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0  # right-padded, as pad_sequences makes
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    return params, x, dout, lengths


def build_rnnfast(backend: str, seed: int, with_lengths: bool, shape, dtype: str):
    import rnnfast

    cell = shape[0]
    params, x, dout, lengths = make_inputs(shape, dtype, seed)
    lengths = lengths if with_lengths else None

    def step() -> None:
        _, _, cache = rnnfast.forward(cell, params, x, lengths=lengths, backend=backend)
        rnnfast.backward(cell, params, cache, dout, backend=backend)

    return step


def build_torch(seed: int, packed: bool, shape, dtype: str):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    cell, T = shape[0], shape[1]
    params, x, dout, lengths = make_inputs(shape, dtype, seed)
    I, H = params["weight_ih_l0"].shape[1], params["weight_hh_l0"].shape[1]
    module = getattr(torch.nn, TORCH_CLASSES[cell])(I, H, dtype=getattr(torch, dtype))
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tdout = torch.from_numpy(dout.copy())
    tlengths = torch.from_numpy(lengths)  # int64 on the CPU, as pack_padded_sequence wants

    def step() -> None:
        module.zero_grad()
        tx.grad = None
        if packed:
            seq = pack_padded_sequence(tx, tlengths, enforce_sorted=False)
            out, _ = pad_packed_sequence(module(seq)[0], total_length=T)
        else:
            out, _ = module(tx)
        (out * tdout).sum().backward()

    return step


def register_workloads(
    backend: str, seed: int, torch_threads: int | None, blas_threads: int | None
) -> list[str]:
    """Register the workers this run needs in _harness.REGISTRY; return their names."""
    env = {"OPENBLAS_NUM_THREADS": str(blas_threads)} if blas_threads else {}
    forbid = ("torch",) if backend == "cpu" else ("torch", "rnnfast.cpu")
    for name, with_lengths in (("rnnfast-lengths", True), ("rnnfast-padded", False)):
        _harness.register(
            name,
            functools.partial(build_rnnfast, backend, seed, with_lengths),
            setup=functools.partial(setup_rnnfast, backend),
            forbid=forbid,
            env=env,
        )
    names = ["rnnfast-lengths", "rnnfast-padded"]
    if torch_threads is not None:
        for name, packed in (("torch-packed", True), ("torch-padded", False)):
            _harness.register(
                name,
                functools.partial(build_torch, seed, packed),
                setup=functools.partial(setup_torch, torch_threads),
                forbid=("rnnfast.cpu",),
            )
            names.append(name)
    return names


# ---------------------------------------------------------------- driver


def format_table(rows: list[dict], names: list[str], markdown: bool) -> str:
    def ratio(name: str, t: dict) -> str:
        return f"{t[name] / t['rnnfast-lengths']:.2f}x" if name in t else "-"

    header = ["cell", "T", "B", "I", "H", "mean length"] + [COLUMNS[n] for n in names]
    header += ["rnnfast padded / lengths"]
    torch_ok = "torch-packed" in names
    header += (
        ["torch packed / rnnfast lengths", "torch padded / rnnfast lengths"] if torch_ok else []
    )
    body = []
    for row in rows:
        t = row["times"]
        line = [*map(str, row["shape"]), f"{row['mean_length']:.1f}"]
        line += [f"{t[n] * 1e3:.3f}" for n in names]
        line += [ratio("rnnfast-padded", t)]
        line += [ratio("torch-packed", t), ratio("torch-padded", t)] if torch_ok else []
        body.append(line)
    if markdown:
        lines = [header, ["---"] + ["---:"] * (len(header) - 1), *body]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *body]
    )


def format_header(args, info: dict[str, dict[str, str]]) -> str:
    versions = [v for i in info.values() for v in i.get("versions", "").split(", ") if v]
    threads = "; ".join(f"{n}: {i.get('threads', '?')}" for n, i in info.items())
    envs = {i.get("env", "?") for i in info.values()}
    busy = f"; {args.busy} core(s) kept busy (--busy)" if args.busy else "; no --busy load"
    return "\n".join(
        [
            f"backend {args.backend}, {args.dtype}; {', '.join(dict.fromkeys(versions))}; "
            f"{_harness.cpu_info()}{busy}",
            f"threads: {threads}; thread variables: {' / '.join(sorted(envs))}",
            f"one worker process per column, interleaved: median of {args.repeats} calls in "
            f"{args.rounds} rounds per shape, {args.pause:g} s pause between workers; "
            f"forward+backward per call; lengths uniform in [T/4, T], seed {args.seed}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    import numpy as np

    t_start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backend", choices=BACKENDS, default="cpu")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.15,
        help="seconds between workers, for spinning BLAS threads to idle (default 0.15)",
    )
    parser.add_argument("--shapes", nargs="+", metavar="SHAPE", help="cell or cell:T:B:I:H")
    parser.add_argument("--seed", type=int, default=0, help="seed of the lengths and data")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="OPENBLAS_NUM_THREADS for the rnnfast workers (default: inherit)",
    )
    parser.add_argument("--busy", type=int, default=0, help="cores to keep busy (default 0)")
    parser.add_argument("--quick", action="store_true", help="5 repeats, 1 warm-up call")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 5, 1
    if args.repeats < 1 or args.warmup < 0 or args.rounds < 1 or args.pause < 0:
        parser.error("--repeats and --rounds must be >= 1, --warmup and --pause >= 0")
    if args.threads < 1 or (args.blas_threads is not None and args.blas_threads < 1):
        parser.error("--threads and --blas-threads must be >= 1")
    if args.busy < 0:
        parser.error("--busy must be >= 0")
    args.rounds = min(args.rounds, args.repeats)
    shapes = parse_shapes(args.shapes, SHAPES)

    torch_threads = None
    if args.no_torch:
        print("torch columns skipped (--no-torch)")
    elif importlib.util.find_spec("torch") is None:
        print("torch is not installed: torch columns skipped")
    else:
        torch_threads = args.threads
    names = register_workloads(args.backend, args.seed, torch_threads, args.blas_threads)

    def progress(shape) -> None:
        if not args.markdown:
            print("  measured " + " ".join(map(str, shape)), flush=True)

    with _harness.exits_cleanly():
        with _harness.Workers(names) as workers, _harness.BusyCores(args.busy):
            print(format_header(args, workers.info), flush=True)
            times = _harness.measure(
                workers,
                shapes,
                args.dtype,
                {n: args.repeats for n in names},
                rounds=args.rounds,
                pause=args.pause,
                warmup=args.warmup,
                progress=progress,
            )
    rows = []
    for s in shapes:
        lengths = draw_lengths(np.random.default_rng(args.seed), s[1], s[2])  # as the workers
        medians = {n: t.median for n, t in times[s].items()}
        rows.append({"shape": s, "mean_length": float(lengths.mean()), "times": medians})
    print()
    print(format_table(rows, names, args.markdown))
    print()
    load = format_load(shapes, times)
    if args.busy:
        load += f" (this includes the {args.busy} core(s) of --busy)"
    print(load)
    print(f"\nbenchmark wall time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
