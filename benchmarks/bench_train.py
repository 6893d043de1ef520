"""One training epoch: rnnfast's fused loop against an idiomatic PyTorch trainer.

Workloads (float32, the same data, model and optimizer in both):
- dependency (R2RT): a fresh 1,000,000-step sequence, batch 200, rows walked in chunks of
  num_steps, state carried (TF-style truncation), vanilla tanh RNN + linear head, softmax
  cross-entropy, Adagrad lr 0.1 (initial accumulator 0.1): one epoch = data generation and
  every update, for (num_steps, hidden) = (5, 4), (10, 16), (20, 16), (10, 64);
- mnist rows: LSTM 100 + linear head on the last step, Adam 1e-4, batch 100, 550 updates on
  the first 55,000 training images (already in memory), a fresh shuffle; no test evaluation;
- sequences (your own data): 2,000 sequences of 50 steps x 12 float features, 10 classes, a
  class per sequence, LSTM 64 or GRU 64, Adam 1e-3, batch 32, a fresh shuffle (62 updates);
- text: a character-level LSTM (128 or 256) on experiments/data/grammar.txt (one-hot input,
  30 characters), num_steps 50, batch 32, state carried, Adam 2e-3, clip 5 (78 updates).

A shared machine: --busy N keeps N cores busy with spinning processes for the whole
measurement, and a third worker runs rnnfast on one Numba and one BLAS thread (--single adds it
idle too): "rnnfast / 1 thread" says what rnnfast's threads cost or gain under that load (the
goal: at most 1.5x; rnnfast/cpu/_threads.py is the policy).

PyTorch: nn.RNN / nn.LSTM + nn.Linear, torch.optim, one forward/backward/step per update
(torch.set_num_threads(2)). Each framework runs in its own worker process and the two are
measured alternately (benchmarks/_harness.py). Prints times and the PyTorch/rnnfast ratios.

    python benchmarks/bench_train.py [--markdown] [--repeats 3] [--only TASK] [--busy N]
"""

import argparse
import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
SHAPES = [
    ("dependency", 5, 4),
    ("dependency", 10, 16),
    ("dependency", 20, 16),
    ("dependency", 10, 64),
    ("mnist", 28, 100),
    ("sequences", "lstm", 64),
    ("sequences", "gru", 64),
    ("text", "lstm", 128),
    ("text", "lstm", 256),
]
TEXT = Path(__file__).resolve().parents[1] / "experiments" / "data" / "grammar.txt"
ANCHORS = {
    ("dependency", 5, 4): 0.80,
    ("dependency", 10, 16): 0.62,
    ("dependency", 20, 16): 0.45,
    ("dependency", 10, 64): 1.13,
    ("mnist", 28, 100): 5.4,
}  # PyTorch, REFERENCES.md section 5


def _config(shape, dtype: str) -> dict:
    task, a, b = shape
    if task == "dependency":
        return {"task": "dependency", "num_steps": a, "hidden_size": b, "dtype": dtype}
    if task == "sequences":
        return {"task": "sequences", "cell": a, "hidden_size": b, "batch_size": 32,
                "valid_fraction": 0.0, "lr": 1e-3, "dtype": dtype}  # fmt: skip
    if task == "text":
        return {"task": "text", "cell": a, "hidden_size": b, "num_steps": 50, "batch_size": 32,
                "data": str(TEXT), "valid_fraction": 0.05, "lr": 2e-3, "clip": 5.0,
                "dtype": dtype}  # fmt: skip
    data = os.environ.get("RNNFAST_BENCH_MNIST", str(MNIST_DIR))
    return {"task": "mnist", "hidden_size": b, "dtype": dtype, "data_dir": data}


def _sequence_set(dtype: str):
    """2,000 sequences of 50 steps x 12 features, 10 classes (a fixed random set)."""
    import numpy as np

    rng = np.random.default_rng(12)
    y = rng.integers(0, 10, 2000)
    x = rng.normal(0, 1, (2000, 50, 12)).astype(dtype)
    x[:, :, 0] += y[:, None] / 5
    return x, y


def _label(shape) -> str:
    task, a, b = shape
    if task == "dependency":
        return f"dependency n={a} H={b}"
    if task == "mnist":
        return "mnist rows LSTM 100"
    if task == "sequences":
        return f"sequences {a.upper()} {b}"
    return f"text {a.upper()} {b}"


def setup_rnnfast() -> dict[str, str]:
    import numba

    import rnnfast

    return {
        "versions": f"rnnfast {rnnfast.__version__}, numba {numba.__version__}",
        "threads": ", ".join(_harness.openblas_threads()),
        "env": _harness.thread_env(),
    }


def build_rnnfast(shape, dtype: str):
    import numpy as np
    from threadpoolctl import threadpool_limits

    from rnnfast.config import resolve
    from rnnfast.cpu.trainer import CpuTrainer, blas_threads
    from rnnfast.run_setup import RunSetup

    cfg = resolve(_config(shape, dtype))
    setup = RunSetup(cfg, _sequence_set(dtype) if shape[0] == "sequences" else None)
    tr = CpuTrainer(setup)
    tr.warm_up()
    threads = blas_threads(cfg, setup.spec, setup.T, setup.B)  # as rnnfast.train applies it
    if threads is not None:
        threadpool_limits(limits=threads, user_api="blas")
    U = setup.updates_per_epoch
    losses, errors = np.empty(U), np.empty(U)
    state = {"epoch": 0}

    def step() -> None:
        state["epoch"] += 1
        data = setup.epoch_data(state["epoch"])
        tr.reset_state()
        tr.run_updates(data, 0, U, 0, losses, errors)

    return step


def setup_torch(threads: int) -> dict[str, str]:
    import torch

    torch.set_num_threads(threads)
    return {
        "versions": f"torch {torch.__version__}",
        "threads": f"torch.set_num_threads({threads})",
        "env": _harness.thread_env(),
    }


def build_torch(shape, dtype: str):
    import numpy as np
    import torch

    torch.manual_seed(0)
    tdt = getattr(torch, dtype)
    task, a, H = shape
    if task == "dependency":
        from rnnfast.tasks import dependency

        n, B = a, 200
        rnn = torch.nn.RNN(2, H, dtype=tdt)
        head = torch.nn.Linear(H, 2, dtype=tdt)
        params = list(rnn.parameters()) + list(head.parameters())
        opt = torch.optim.Adagrad(params, lr=0.1, initial_accumulator_value=0.1)
        loss_fn = torch.nn.CrossEntropyLoss()
        state = {"epoch": 0}

        def step() -> None:
            state["epoch"] += 1
            rng = np.random.default_rng([0, 1, state["epoch"]])
            x, y = dependency.generate(1_000_000, (3, 8), (0.5, -0.25), 0.5, rng)
            xb, yb = dependency.batchify(x, y, B)
            xs = torch.nn.functional.one_hot(torch.from_numpy(xb.astype(np.int64)), 2).to(tdt)
            ys = torch.from_numpy(yb.astype(np.int64))
            h = torch.zeros(1, B, H, dtype=tdt)
            for u in range(xb.shape[1] // n):
                xc = xs[:, u * n : (u + 1) * n].transpose(0, 1)  # (n, B, 2)
                yc = ys[:, u * n : (u + 1) * n].transpose(0, 1)
                out, h = rnn(xc, h)
                h = h.detach()
                loss = loss_fn(head(out).reshape(-1, 2), yc.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()

        return step
    if task == "sequences":
        return _torch_sequences(shape, dtype)
    if task == "text":
        return _torch_text(shape, dtype)
    from rnnfast.seqdata import batch_order
    from rnnfast.tasks import mnist
    from rnnfast.tasks.mnist_data import load_mnist

    m = mnist.prepare(load_mnist(_config(shape, dtype)["data_dir"]), "rows")
    images = torch.from_numpy(m.train_images.reshape(-1, 28, 28)).to(tdt) / 255
    labels = torch.from_numpy(m.train_labels)
    lstm = torch.nn.LSTM(28, H, dtype=tdt)
    head = torch.nn.Linear(H, 10, dtype=tdt)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    state = {"epoch": 0}

    def step() -> None:
        state["epoch"] += 1
        order = batch_order(len(labels), 100, np.random.default_rng([0, 2, state["epoch"]]))
        for idx in torch.from_numpy(order):
            out, _ = lstm(images[idx].transpose(0, 1))  # (28, 100, 28)
            loss = loss_fn(head(out[-1]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return step


def _torch_sequences(shape, dtype: str):
    """nn.LSTM / nn.GRU (batch_first) + nn.Linear on the last step, Adam, a fresh shuffle."""
    import torch

    tdt = getattr(torch, dtype)
    _, cell, H = shape
    x, y = _sequence_set(dtype)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(12, H, batch_first=True, dtype=tdt)
    head = torch.nn.Linear(H, 10, dtype=tdt)
    opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        perm = torch.randperm(len(ys))
        for k in range(len(ys) // 32):
            idx = perm[k * 32 : (k + 1) * 32]
            out, _ = rnn(xs[idx])
            loss = loss_fn(head(out[:, -1]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return step


def _torch_text(shape, dtype: str):
    """A char-rnn: one-hot characters, nn.LSTM + nn.Linear at every step, windows of 50 over
    32 rows with the state carried (detached), Adam, gradient clipping at norm 5."""
    import numpy as np
    import torch

    tdt = getattr(torch, dtype)
    _, _, H = shape
    text = TEXT.read_text(encoding="utf-8")
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], np.int64)[: int(len(text) * 0.95)]
    V, B, n = len(vocab), 32, 50
    cols = (len(ids) - 1) // B
    xs = torch.from_numpy(ids[: B * cols].reshape(B, cols))
    ys = torch.from_numpy(ids[1 : B * cols + 1].reshape(B, cols))
    lstm = torch.nn.LSTM(V, H, dtype=tdt)
    head = torch.nn.Linear(H, V, dtype=tdt)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        state = None
        for u in range(cols // n):
            xc = torch.nn.functional.one_hot(xs[:, u * n : (u + 1) * n].T, V).to(tdt)
            out, state = lstm(xc, state)
            state = tuple(s.detach() for s in state)
            loss = loss_fn(head(out).reshape(-1, V), ys[:, u * n : (u + 1) * n].T.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per workload")
    ap.add_argument("--only", choices=["dependency", "mnist", "sequences", "text"])
    ap.add_argument("--busy", type=int, default=0, help="cores kept busy meanwhile (default 0)")
    ap.add_argument("--single", action="store_true", help="also time rnnfast on one thread")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    shapes = [s for s in SHAPES if args.only in (None, s[0])]
    mnist_dir = Path(_config(("mnist", 28, 100), "float32")["data_dir"])
    if ("mnist", 28, 100) in shapes and not mnist_dir.is_dir():
        print(f"no MNIST in {mnist_dir} (set RNNFAST_BENCH_MNIST): skipping the mnist epoch")
        shapes = [s for s in shapes if s[0] != "mnist"]
    if args.busy < 0:
        ap.error("--busy must be >= 0")
    _harness.register("rnnfast", build_rnnfast, setup=setup_rnnfast, forbid=("torch",))
    names = ["rnnfast", "torch"]
    if args.single or args.busy:
        _harness.register("rnnfast-1t", build_rnnfast, setup=setup_rnnfast, forbid=("torch",),
                          env=_harness.SINGLE_THREAD_ENV)  # fmt: skip
        names.append("rnnfast-1t")
    _harness.register(
        "torch",
        build_torch,
        setup=functools.partial(setup_torch, args.threads),
        forbid=("rnnfast.cpu",),
    )
    with _harness.Workers(names) as workers, _harness.BusyCores(args.busy):
        print(f"# {_harness.cpu_info()}")
        if args.busy:
            print(f"# {args.busy} core(s) kept busy by spinning processes (--busy)")
        for name, info in workers.info.items():
            print(f"# {name}: " + "; ".join(f"{k} {v}" for k, v in info.items()))
        timings = {}
        for shape in shapes:
            calls = {name: args.repeats for name in names}
            timings.update(_harness.measure(
                workers, [shape], args.dtype, calls, rounds=args.repeats, warmup=1,
                batch_warmup=0, progress=lambda s: print(f"  measured {s}", file=sys.stderr),
            ))  # fmt: skip
    rows = []
    for shape in shapes:
        tm = timings[shape]
        r, t = tm["rnnfast"].median, tm["torch"].median
        one = tm["rnnfast-1t"].median if "rnnfast-1t" in tm else None
        rows.append((_label(shape), r, one, t, ANCHORS.get(shape), tm["rnnfast"].other_load))
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    if args.markdown:
        print("| epoch | rnnfast (s) | rnnfast 1 thread (s) | PyTorch (s) | rnnfast / 1 thread "
              "| PyTorch / rnnfast | PyTorch anchor (s) |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, r, one, t, anchor, _ in rows:
            rel = r / one if one else None
            print(f"| {label} | {r:.3f} | {fmt(one, '.3f')} | {t:.3f} | {fmt(rel, '.2f')}x | "
                  f"{t / r:.2f}x | {fmt(anchor, '.2f')} |")  # fmt: skip
    else:
        head = ("epoch", "rnnfast s", "1 thread s", "PyTorch s", "r/1thread", "torch/r",
                "anchor s", "other load")  # fmt: skip
        print(f"{head[0]:<26}" + "".join(f" {h:>10}" for h in head[1:]))
        for label, r, one, t, anchor, load in rows:
            rel = r / one if one else None
            cols = (fmt(one, ">10.3f"), f"{t:>10.3f}", fmt(rel, ">9.2f") + "x",
                    f"{t / r:>9.2f}x", fmt(anchor, ">10.2f"), fmt(load, ">10.2f"))  # fmt: skip
            print(f"{label:<26} {r:>10.3f} " + " ".join(cols))


if __name__ == "__main__":
    main()
