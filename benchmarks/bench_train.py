"""One training epoch: rnnfast's fused loop against an idiomatic PyTorch trainer.

Workloads (float32, the same data, model and optimizer in both):
- dependency (R2RT): a fresh 1,000,000-step sequence, batch 200, rows walked in chunks of
  num_steps, state carried (TF-style truncation), vanilla tanh RNN + linear head, softmax
  cross-entropy, Adagrad lr 0.1 (initial accumulator 0.1): one epoch = data generation and
  every update, for (num_steps, hidden) = (5, 4), (10, 16), (20, 16), (10, 64);
- mnist rows: LSTM 100 + linear head on the last step, Adam 1e-4, batch 100, 550 updates on
  the first 55,000 training images (already in memory), a fresh shuffle; no test evaluation.

PyTorch: nn.RNN / nn.LSTM + nn.Linear, torch.optim, one forward/backward/step per update
(torch.set_num_threads(2)). Each framework runs in its own worker process and the two are
measured alternately (benchmarks/_harness.py). Prints times and the PyTorch/rnnfast ratios.

    python benchmarks/bench_train.py [--markdown] [--repeats 3] [--only dependency|mnist]
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
]
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
    data = os.environ.get("RNNFAST_BENCH_MNIST", str(MNIST_DIR))
    return {"task": "mnist", "hidden_size": b, "dtype": dtype, "data_dir": data}


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
    from rnnfast.training import _Trainer, blas_threads

    cfg = resolve(_config(shape, dtype))
    tr = _Trainer(cfg)
    tr.warm_up()
    threads = blas_threads(cfg, tr.spec, tr.setup.T, tr.setup.B)  # as rnnfast.train applies it
    if threads is not None:
        threadpool_limits(limits=threads, user_api="blas")
    U = tr.setup.updates_per_epoch
    losses, errors = np.empty(U), np.empty(U)
    state = {"epoch": 0}

    def step() -> None:
        state["epoch"] += 1
        data = tr.epoch_data(state["epoch"])
        tr.h_state[:] = 0
        tr.c_state[:] = 0
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
        order = mnist.batch_order(len(labels), 100, np.random.default_rng([0, 2, state["epoch"]]))
        for idx in torch.from_numpy(order):
            out, _ = lstm(images[idx].transpose(0, 1))  # (28, 100, 28)
            loss = loss_fn(head(out[-1]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per workload")
    ap.add_argument("--only", choices=["dependency", "mnist"])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    shapes = [s for s in SHAPES if args.only in (None, s[0])]
    if ("mnist", 28, 100) in shapes and not Path(
        _config(shapes[-1], "float32")["data_dir"]
    ).is_dir():
        print(f"no MNIST in {MNIST_DIR} (set RNNFAST_BENCH_MNIST): skipping the mnist epoch")
        shapes = [s for s in shapes if s[0] != "mnist"]
    _harness.register("rnnfast", build_rnnfast, setup=setup_rnnfast, forbid=("torch",))
    _harness.register(
        "torch",
        build_torch,
        setup=functools.partial(setup_torch, args.threads),
        forbid=("rnnfast.cpu",),
    )
    with _harness.Workers(["rnnfast", "torch"]) as workers:
        print(f"# {_harness.cpu_info()}")
        for name, info in workers.info.items():
            print(f"# {name}: " + "; ".join(f"{k} {v}" for k, v in info.items()))
        timings = _harness.measure(
            workers,
            shapes,
            args.dtype,
            {"rnnfast": args.repeats, "torch": args.repeats},
            rounds=args.repeats,
            warmup=1,
            batch_warmup=0,
            progress=lambda s: print(f"  measured {s}", file=sys.stderr),
        )
    rows = []
    for shape in shapes:
        r, t = timings[shape]["rnnfast"].median, timings[shape]["torch"].median
        label = (
            f"{shape[0]} n={shape[1]} H={shape[2]}"
            if shape[0] == "dependency"
            else "mnist rows LSTM 100"
        )
        rows.append((label, r, t, t / r, ANCHORS[shape], timings[shape]["rnnfast"].other_load))
    if args.markdown:
        print("| epoch | rnnfast (s) | PyTorch (s) | PyTorch / rnnfast | PyTorch anchor (s) |")
        print("|---|---:|---:|---:|---:|")
        for label, r, t, ratio, anchor, _ in rows:
            print(f"| {label} | {r:.3f} | {t:.3f} | {ratio:.1f}x | {anchor:.2f} |")
    else:
        head = ("epoch", "rnnfast s", "PyTorch s", "ratio", "anchor s", "other load")
        print(f"{head[0]:<26}" + "".join(f" {h:>10}" for h in head[1:]))
        for label, r, t, ratio, anchor, load in rows:
            other = f"{load:.2f}" if load is not None else "?"
            print(f"{label:<26} {r:>10.3f} {t:>10.3f} {ratio:>9.1f}x {anchor:>10.2f} {other:>10}")


if __name__ == "__main__":
    main()
