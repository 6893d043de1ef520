"""rnnfast's CUDA backend (numba-cuda) against PyTorch with cuDNN, on one GPU, in one run.

Measured (float32; rnnfast backend="cuda"; PyTorch on "cuda", cuDNN, TF32 off unless --tf32):
- kernels: forward+backward of one LSTM / GRU layer at (T, B, I, H) = (28, 100, 28, 100),
  (100, 32, 256, 256), (50, 4, 512, 512). rnnfast takes and returns NumPy arrays, so its time
  includes the host<->device copies; PyTorch is timed device-resident and "+copies" (x, dout
  copied in; out, the final state, dx and the weight gradients copied out with .cpu()).
- dependency: one epoch of each point of the R2RT grids (published/dependency-r2rt-5x4 and
  -10x16, or --grid FILE...), rnnfast.train against a PyTorch loop doing the same work: the
  sequence generated on the host (rnnfast.tasks.dependency), nn.RNN + nn.Linear, cross-entropy,
  the same optimizer, clip, truncation and number of updates; then each grid's runs that share
  shapes at once (rnnfast.cuda.training.train_group) against the sum of PyTorch's run times.
- mnist: one epoch of published/mnist-rows-lstm100 (LSTM 100, Adam, batch 100, 550 updates,
  then the test accuracy), rnnfast.train against nn.LSTM + nn.Linear doing the same (loading
  the data, 550 updates, evaluating the 10,000 test images).

Both run in this one process. Each configuration is called once untimed first (compilation,
cuDNN plans: the warm-up column), then --repeats times (kernels 10x) alternately; the tables
give medians and PyTorch / rnnfast (> 1: rnnfast faster) from the same run.

    python benchmarks/bench_gpu.py [--repeats 3] [--only kernels|dependency|mnist]
                                   [--data-dir DIR] [--grid FILE ...] [--tf32]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_gpu.py --smoke

Without a GPU for both (numba-cuda, a CUDA device, a CUDA torch; the simulator does not count)
it prints why and exits 0. --smoke runs every path with tiny sizes on whatever there is (the
simulator, torch on the CPU; timings meaningless). Exit status 1 if a part failed.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "experiments" / "published"
GRIDS = [PUBLISHED / "dependency-r2rt-5x4.toml", PUBLISHED / "dependency-r2rt-10x16.toml"]
MNIST_GRID = PUBLISHED / "mnist-rows-lstm100.toml"
KERNEL_SHAPES = [(28, 100, 28, 100), (100, 32, 256, 256), (50, 4, 512, 512)]  # T, B, I, H
SMOKE_SHAPE = (3, 2, 4, 4)
SMOKE_DEPENDENCY = {"num_steps": 3, "hidden_size": 4, "batch_size": 2, "sequence_length": 12}
SMOKE_MNIST = {"hidden_size": 4, "batch_size": 2, "train_size": 4, "eval_batch": 4}  # 2 updates
ONE_EPOCH = {"epochs": 1, "backend": "cuda", "dtype": "float32"}
OPT_KEYS = ("momentum", "beta1", "beta2", "eps", "alpha", "initial_accumulator")


def skip_reason(smoke: bool) -> str | None:
    """Why this run cannot measure anything (None: it can)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0") and not smoke:
        return "NUMBA_ENABLE_CUDASIM is set: simulator timings mean nothing (--smoke tests paths)"
    try:
        from rnnfast.cuda import unavailable_reason
    except ImportError as e:
        return f"this rnnfast has no CUDA backend ({e})"
    reason = unavailable_reason()
    if reason is not None or smoke:
        return reason
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    return None


def compare(fns: dict, repeats: int, sync) -> tuple[dict, dict, dict]:
    """(first results, warm-up s, median s) per name: one untimed call each, then `repeats`
    timed calls each, alternated (order flipped every repeat)."""
    first, warm, times = {}, {}, {n: [] for n in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        first[name] = fn()
        sync()
        warm[name] = time.perf_counter() - t0
    for r in range(repeats):
        for name in list(fns)[:: 1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    return first, warm, {n: statistics.median(t) for n, t in times.items()}


def kernel_fns(cell: str, shape: tuple, tc, dev: str) -> dict:
    import rnnfast

    T, B, I, H = shape
    params = rnnfast.init_params(cell, I, H, dtype=np.float32, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    dout = rng.standard_normal((T, B, H), dtype=np.float32)

    def fast() -> None:
        _, _, cache = rnnfast.forward(cell, params, x, backend="cuda")
        rnnfast.backward(cell, params, cache, dout, backend="cuda")

    if tc is None:
        return {"rnnfast": fast}
    module = getattr(tc.nn, cell.upper())(I, H).to(dev)
    module.load_state_dict({k: tc.from_numpy(v) for k, v in params.items()})
    tx, tdout = tc.from_numpy(x).to(dev).requires_grad_(True), tc.from_numpy(dout).to(dev)

    def resident() -> None:
        module.zero_grad(set_to_none=True)
        tx.grad = None
        out, _ = module(tx)
        out.backward(tdout)

    def copies() -> None:
        module.zero_grad(set_to_none=True)
        xi = tc.from_numpy(x).to(dev).requires_grad_(True)
        out, state = module(xi)
        out.backward(tc.from_numpy(dout).to(dev))
        state = state if isinstance(state, tuple) else (state,)
        for t in (out, *state, xi.grad, *(p.grad for p in module.parameters())):
            t.detach().cpu()

    return {"rnnfast": fast, "torch": resident, "torch+copies": copies}


def torch_optimizer(tc, cfg: dict, params: list):
    from rnnfast.optim import make_optimizer

    o = make_optimizer(cfg["optimizer"], cfg["lr"], **{k: cfg.get(k) for k in OPT_KEYS})
    if o.name == "sgd":
        return tc.optim.SGD(params, lr=o.lr, momentum=o.momentum)
    if o.name == "adagrad":
        return tc.optim.Adagrad(
            params, lr=o.lr, eps=o.eps, initial_accumulator_value=o.initial_accumulator
        )
    if o.name == "adam":
        return tc.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    return tc.optim.RMSprop(params, lr=o.lr, alpha=o.alpha, eps=o.eps)


def torch_model(tc, cfg: dict, inputs: int, classes: int, dev: str):
    """(recurrent module, head, optimizer, update(loss)) as the config describes."""
    kw = {"nonlinearity": cfg["nonlinearity"]} if cfg["cell"] == "rnn" else {}
    tc.manual_seed(cfg["seed"])
    rnn = getattr(tc.nn, cfg["cell"].upper())(
        inputs, cfg["hidden_size"], cfg["num_layers"], bias=cfg["bias"], **kw
    ).to(dev)
    head = tc.nn.Linear(cfg["hidden_size"], classes).to(dev)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch_optimizer(tc, cfg, params)

    def update(loss) -> None:
        opt.zero_grad()
        loss.backward()
        if cfg["clip"]:
            tc.nn.utils.clip_grad_norm_(params, cfg["clip"])
        opt.step()

    return rnn, head, update


def torch_dependency(cfg: dict, tc, dev: str):
    """One epoch of the dependency task in PyTorch; returns the number of updates."""
    from rnnfast.tasks import dependency

    rnn, head, update = torch_model(tc, cfg, 2, 2, dev)
    loss_fn, n, B, epoch = tc.nn.CrossEntropyLoss(), cfg["num_steps"], cfg["batch_size"], [0]

    def run() -> int:
        epoch[0] += 1
        rng = np.random.default_rng([cfg["seed"], 1, epoch[0]])
        x, y = dependency.generate(
            cfg["sequence_length"], cfg["lags"], cfg["shifts"], cfg["base"], rng
        )
        xb, yb = dependency.batchify(x, y, B)  # (B, columns) int8
        xs = tc.nn.functional.one_hot(tc.from_numpy(xb.astype(np.int64)).to(dev), 2).float()
        ys = tc.from_numpy(yb.astype(np.int64)).to(dev)
        if cfg["truncation"] == "true":  # (B, cols, 2, n): the n steps ending at each column
            windows = tc.nn.functional.pad(xs, (0, 0, n - 1, 0)).unfold(1, n, 1)
        state, updates = None, xb.shape[1] // n
        for u in range(updates):
            cols = slice(u * n, (u + 1) * n)
            if cfg["truncation"] == "true":  # B * n windows of n steps, the head on the last
                out, _ = rnn(windows[:, cols].permute(3, 0, 1, 2).reshape(n, B * n, 2))
                logits, target = head(out[-1]), ys[:, cols].reshape(-1)
            else:  # TF-style chunks, the state carried (detached) from the previous chunk
                out, state = rnn(xs[:, cols].transpose(0, 1), state)
                state = (
                    tuple(s.detach() for s in state) if cfg["cell"] == "lstm" else state.detach()
                )
                logits, target = head(out).reshape(-1, 2), ys[:, cols].transpose(0, 1).reshape(-1)
            update(loss_fn(logits, target))
        return updates

    return run


def torch_mnist(cfg: dict, tc, dev: str):
    """One MNIST epoch in PyTorch (load, shuffle, updates, test accuracy); returns updates."""
    from rnnfast.seqdata import batch_order
    from rnnfast.tasks import mnist
    from rnnfast.tasks.mnist_data import load_mnist

    T, I = mnist.shape_of(cfg["variant"])
    rnn, head, update = torch_model(tc, cfg, I, 10, dev)
    loss_fn, B, E, epoch = tc.nn.CrossEntropyLoss(), cfg["batch_size"], cfg["eval_batch"], [0]

    def run() -> int:
        epoch[0] += 1
        m = mnist.prepare(load_mnist(cfg["data_dir"]), cfg["variant"], cfg["train_size"])
        images = tc.from_numpy(m.train_images).to(dev).view(-1, T, I).float() / 255
        labels = tc.from_numpy(m.train_labels).to(dev)
        rng = np.random.default_rng([cfg["seed"], 2, epoch[0]])
        order = batch_order(len(m.train_labels), B, rng)
        for idx in tc.from_numpy(order).to(dev):
            out, _ = rnn(images[idx].transpose(0, 1))
            update(loss_fn(head(out[-1]), labels[idx]))
        test = tc.from_numpy(m.test_images).to(dev).view(-1, T, I).float() / 255
        test_labels, correct = tc.from_numpy(m.test_labels).to(dev), 0
        with tc.no_grad():
            for i in range(0, len(test), E):
                out, _ = rnn(test[i : i + E].transpose(0, 1))
                correct += (head(out[-1]).argmax(1) == test_labels[i : i + E]).sum()
        float(correct)
        return len(order)

    return run


def train_row(label: str, cfg: dict, torch_run, repeats: int, sync, rows: list) -> dict:
    """Time rnnfast.train(cfg) against torch_run; add a row; return the medians."""
    import rnnfast

    fns = {"rnnfast": lambda: rnnfast.train(cfg)}
    fns.update({"torch": torch_run} if torch_run is not None else {})
    first, warm, med = compare(fns, repeats, sync)
    got = first["rnnfast"].final["updates"]
    if "torch" in first and first["torch"] != got:
        print(f"  note {label}: rnnfast made {got} updates, PyTorch {first['torch']}")
    rows.append((label, warm, med))
    return med


def bench_dependency(args, tc, dev: str, sync, rows: list) -> None:
    from rnnfast.config import resolve
    from rnnfast.cuda.training import group_key, train_group
    from rnnfast.grid import load_grid

    for path in args.grid[:1] if args.smoke else args.grid:
        grid = load_grid(path)
        specs = grid.points()[:1] if args.smoke else grid.points()
        groups: dict = {}
        for spec in specs:
            cfg = resolve({**spec.config, **(SMOKE_DEPENDENCY if args.smoke else {}), **ONE_EPOCH})
            label = f"{grid.name} " + " ".join(f"{k}={v}" for k, v in spec.point.items())
            run = torch_dependency(cfg, tc, dev) if tc is not None else None
            med = train_row(label, cfg, run, args.repeats, sync, rows)
            groups.setdefault(group_key(cfg), []).append((cfg, med.get("torch")))
        for members in groups.values():
            cfgs = [c for c, _ in members]
            _, warm, med = compare({"rnnfast": lambda c=cfgs: train_group(c)}, args.repeats, sync)
            if tc is not None:
                med["torch"] = sum(t for _, t in members)  # the runs one after another
            rows.append((f"{grid.name}: its {len(cfgs)} at once (train_group)", warm, med))


def bench_mnist(args, tc, dev: str, sync, rows: list) -> None:
    if not args.smoke:
        if not Path(args.data_dir).is_dir():
            print(f"mnist: no MNIST in {args.data_dir} (--data-dir or RNNFAST_DATA): skipped")
            return
        return mnist_row(args.data_dir, {}, args.repeats, tc, dev, sync, rows)
    from rnnfast.tasks.idx import write_idx

    with tempfile.TemporaryDirectory(prefix="bench-gpu-mnist-") as tmp:  # 4 + 4 random images
        rng = np.random.default_rng(0)
        for split in ("train", "t10k"):
            images = rng.integers(0, 256, (4, 28, 28), np.uint8)
            write_idx(Path(tmp) / f"{split}-images-idx3-ubyte", images)
            write_idx(Path(tmp) / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, 4, np.uint8))
        mnist_row(tmp, SMOKE_MNIST, args.repeats, tc, dev, sync, rows)


def mnist_row(data_dir: str, extra: dict, repeats: int, tc, dev: str, sync, rows: list) -> None:
    from rnnfast.config import resolve
    from rnnfast.grid import load_grid

    cfg = resolve({**load_grid(MNIST_GRID).points()[0].config, **extra, **ONE_EPOCH})
    cfg["data_dir"] = str(data_dir)
    run = torch_mnist(cfg, tc, dev) if tc is not None else None
    train_row(f"mnist rows {cfg['cell']} {cfg['hidden_size']}", cfg, run, repeats, sync, rows)


def bench_kernels(args, tc, dev: str, sync, rows: list) -> None:
    for cell in ("lstm", "gru"):
        for T, B, I, H in [SMOKE_SHAPE] if args.smoke else KERNEL_SHAPES:
            _, warm, med = compare(kernel_fns(cell, (T, B, I, H), tc, dev), 10 * args.repeats, sync)
            rows.append((f"{cell} T={T} B={B} I={I} H={H}", warm, med))


PARTS = {  # part: (function, table title, unit)
    "kernels": (bench_kernels, "forward+backward, one layer (rnnfast: with its copies)", "ms"),
    "dependency": (bench_dependency, "dependency task, one epoch: train, train_group", "s"),
    "mnist": (bench_mnist, "MNIST rows, one epoch (and the test accuracy): train", "s"),
}


def print_table(title: str, rows: list, unit: str) -> None:
    """rows: (label, warm-up s, median s per name); columns for the names of rows[0]."""
    scale, others = (1e3 if unit == "ms" else 1.0), [n for n in rows[0][2] if n != "rnnfast"]
    lines = [["", "warm-up s rnnfast/torch", f"rnnfast {unit}", *(f"{n} {unit}" for n in others)]]
    lines[0] += [f"{n}/rnnfast" for n in others]
    for label, warm, med in rows:
        w = "/".join("-" if v is None else f"{v:.2f}" for v in (warm["rnnfast"], warm.get("torch")))
        r = med["rnnfast"]
        times = [f"{t * scale:.3f}" for t in (r, *(med[n] for n in others))]
        lines.append([label, w, *times, *(f"{med[n] / r:.2f}x" for n in others)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    print(f"\n{title}")
    for line in lines:
        cells = enumerate(zip(line, widths, strict=True))
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in cells), flush=True)


def versions(tc) -> str:
    import numba

    import rnnfast

    try:
        numba_cuda = metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        numba_cuda = "?"
    text = f"rnnfast {rnnfast.__version__}, numba {numba.__version__}, numba-cuda {numba_cuda}"
    if tc is not None:
        cudnn, tf32 = tc.backends.cudnn, "on" if tc.backends.cudnn.allow_tf32 else "off"
        text += f", torch {tc.__version__} (cuDNN {cudnn.version()}, enabled {cudnn.enabled}, "
        text += f"TF32 {tf32})"
    return text


def main(argv: list[str] | None = None) -> int:
    data = os.environ.get("RNNFAST_DATA")
    data = Path(data) / "mnist" if data else ROOT.parent / "shared" / "data" / "mnist"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs (kernels: 10x calls)")
    ap.add_argument("--only", choices=list(PARTS))
    ap.add_argument("--data-dir", default=str(data), help=f"MNIST (default {data})")
    ap.add_argument("--grid", nargs="+", default=[str(g) for g in GRIDS], help="dependency grids")
    ap.add_argument("--tf32", action="store_true", help="let cuDNN use TF32 (default: off)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, any device: test the paths")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    reason = skip_reason(args.smoke)
    if reason is not None:
        print(f"bench_gpu: skipped: {reason}")
        return 0
    args.repeats = 1 if args.smoke else args.repeats
    import rnnfast.cuda

    tc = None
    if importlib.util.find_spec("torch") is not None:
        import torch as tc

        tc.backends.cudnn.allow_tf32 = tc.backends.cuda.matmul.allow_tf32 = args.tf32
    dev = "cuda" if tc is not None and tc.cuda.is_available() else "cpu"
    sync = tc.cuda.synchronize if dev == "cuda" else lambda: None
    device = tc.cuda.get_device_name() if dev == "cuda" else rnnfast.cuda.device_name()
    print(f"# {device}; PyTorch on {dev}; {versions(tc)}")
    print(f"# float32; medians of {args.repeats} epochs / {10 * args.repeats} kernel calls, "
          "alternated, after one untimed warm-up call each; ratio > 1: rnnfast faster")  # fmt: skip
    if args.smoke:
        print("# --smoke: tiny sizes, every code path; THE TIMINGS ARE MEANINGLESS")
    failed = []
    for part, (bench, title, unit) in PARTS.items():
        if args.only not in (None, part):
            continue
        rows: list = []
        try:
            bench(args, tc, dev, sync, rows)
        except Exception as e:
            failed.append(f"{part}: {type(e).__name__}: {e}")
            traceback.print_exc()
        if rows:
            print_table(f"{title} vs PyTorch", rows, unit)
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
