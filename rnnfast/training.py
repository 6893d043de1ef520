"""rnnfast.train(config): a task, a model and an optimizer -> a loss curve.

The model is a stack of recurrent layers (rnnfast's kernels) with a linear head. All
trainable parameters live in one flat vector theta = [recurrent (packed) | W_out | b_out],
which the compiled loop (rnnfast/cpu/_train.py) updates in place, many updates per call.
Python runs once per interval of updates, to hand out data, collect losses and check for
Ctrl-C.

Randomness: independent streams numpy.random.default_rng([seed, k, epoch]) for the
initialisation (k = 0), the data of each epoch (k = 1) and the batch order of each epoch
(k = 2), so a config and seed give bit-identical curves on one machine (same dtype, same
BLAS thread count), and adding epochs does not change the earlier ones. init="iamtrask"
(addition) instead uses the post's legacy RandomState(seed) stream for weights and data.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rnnfast.cells import ACT_CODES, CELL_CODES
from rnnfast.config import resolve
from rnnfast.cpu import _layout
from rnnfast.cpu._chunks import train_sizes
from rnnfast.cpu._head import HEAD_ALL, HEAD_LAST, LOSS_CE, LOSS_MSE
from rnnfast.cpu._split import one_blas_thread, split_chunks
from rnnfast.cpu._train import (
    TASK_ADDITION,
    TASK_DEPENDENCY,
    TASK_MNIST,
    evaluate_mnist,
    train_updates,
)
from rnnfast.optim import init_state, make_optimizer
from rnnfast.params import Spec, init_params
from rnnfast.tasks import addition, dependency, mnist

INTERVAL = 200  # updates per compiled call: Ctrl-C and progress are seen this often
# Per-step products below this many multiply-adds run on one BLAS thread (config threads=None).
# Measured (bench_train.py, 2 cores): OpenBLAS splits e.g. the 64x64x200 products of the
# dependency task over 2 threads, which gained little on an idle machine and was 5-7x slower
# whenever another process was busy (a thread waiting for a descheduled one at every step).
SINGLE_THREAD_BELOW = 2_000_000
# Batch chunks in the fused loop from this much work per update (T * G*H * (H + 8) * B, as in
# rnnfast.cpu._split), higher than for a kernel call: an update of the dependency task with
# n = 10, H = 16 (768,000) took 101 us serial and 113 us in 2 chunks; n = 20 (1.5 M) 230 vs
# 201 us, H = 64 (9.2 M) 811 vs 568 us, MNIST rows LSTM 100 (121 M) 7.9-12.3 vs 7.4-7.6 ms.
TRAIN_SPLIT_MIN_WORK = 1_200_000


def train_chunks(cfg: dict, spec: Spec, steps: int, batch: int) -> int:
    """Batch chunks the fused loop's layers run in parallel: rnnfast.cpu._split's policy,
    with the config's threads (if set) as the thread count and TRAIN_SPLIT_MIN_WORK."""
    return split_chunks(spec.cell, spec.hidden_size, batch, steps, cfg["threads"],
                        TRAIN_SPLIT_MIN_WORK)  # fmt: skip


def blas_threads(cfg: dict, spec: Spec, steps: int, batch: int) -> int | None:
    """BLAS threads for a run: 1 when the batch runs in chunks (the chunks are the threads),
    else the config's threads, else 1 for small models, else None (the library default: all
    cores)."""
    if train_chunks(cfg, spec, steps, batch) > 1:
        return 1
    if cfg["threads"] is not None:
        return cfg["threads"]
    per_step = spec.gates * spec.hidden_size * spec.hidden_size * batch
    return 1 if per_step < SINGLE_THREAD_BELOW else None


@dataclass
class TrainResult:
    config: dict[str, Any]
    curves: pd.DataFrame  # long form: step, epoch, metric, value
    final: dict[str, float]
    params: dict[str, np.ndarray]  # recurrent (PyTorch keys) + "head.weight", "head.bias"
    status: str = "ok"  # or "diverged"
    message: str = ""
    wall_time: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Setup:
    task_code: int
    T: int
    B: int
    I0: int
    C: int
    loss: int
    head: int
    reduction_sum: bool
    carry: bool
    true_style: bool
    updates_per_epoch: int


def _spec(cfg: dict, I0: int) -> Spec:
    return Spec(cfg["cell"], I0, cfg["hidden_size"], cfg["num_layers"], cfg["bidirectional"],
                cfg["bias"], np.dtype(cfg["dtype"]))  # fmt: skip


def _head_init(rng: np.random.Generator, C: int, F: int, bias: bool, dt) -> list[np.ndarray]:
    bound = 1.0 / np.sqrt(F)  # nn.Linear's default
    out = [rng.uniform(-bound, bound, (C, F)).astype(dt)]
    if bias:
        out.append(rng.uniform(-bound, bound, C).astype(dt))
    return out


class _Trainer:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.dt = np.dtype(cfg["dtype"])
        task = cfg["task"]
        self.data: tuple = ()
        if task == "dependency":
            n = cfg["num_steps"]
            true_style = cfg["truncation"] == "true"
            rows = cfg["sequence_length"] // cfg["batch_size"]
            self.setup = _Setup(TASK_DEPENDENCY, n, cfg["batch_size"] * (n if true_style else 1),
                                2, 2, LOSS_CE, HEAD_LAST if true_style else HEAD_ALL, False,
                                True, true_style, rows // n)  # fmt: skip
        elif task == "mnist":
            from rnnfast.tasks.mnist_data import load_mnist  # noqa: PLC0415

            self.mnist = mnist.prepare(load_mnist(cfg["data_dir"]), cfg["variant"],
                                       train_size=cfg["train_size"],
                                       permutation_seed=cfg["permutation_seed"])  # fmt: skip
            m = self.mnist
            if cfg["batch_size"] > len(m.train_labels):
                raise ValueError(
                    f"batch_size: expected at most train_size={len(m.train_labels)}, "
                    f"got {cfg['batch_size']}"
                )
            self.setup = _Setup(TASK_MNIST, m.steps, cfg["batch_size"], m.input_size, 10,
                                LOSS_CE, HEAD_LAST, False, False, False,
                                len(m.train_labels) // cfg["batch_size"])  # fmt: skip
        else:
            self.setup = _Setup(TASK_ADDITION, cfg["bits"], 1, 2, 1, LOSS_MSE, HEAD_ALL, True,
                                False, False, cfg["updates"])  # fmt: skip
        s = self.setup
        self.spec = _spec(cfg, s.I0)
        self.entries, self.woff = _layout(self.spec)
        F = self.spec.directions * self.spec.hidden_size
        self._init_params(F)
        self.n_rnn = sum(n for *_, n in self.entries)
        self.wo = self.n_rnn
        self.bo = self.wo + s.C * F if cfg["task"] != "addition" else -1
        opt_hyper = {k: cfg[k] for k in ("momentum", "beta1", "beta2", "eps", "alpha",
                                         "initial_accumulator") if cfg[k] is not None}  # fmt: skip
        if cfg["optimizer"] == "adagrad":
            opt_hyper.setdefault("initial_accumulator", 0.1)
        self.opt = make_optimizer(cfg["optimizer"], cfg["lr"], **opt_hyper)
        self.hyper = self.opt.hyper()
        self.s1, self.s2 = init_state(self.opt.code, self.hyper, self.theta.size, self.theta)
        self.nchunks = train_chunks(cfg, self.spec, s.T, s.B)
        self._alloc()

    def _init_params(self, F: int) -> None:
        cfg, s = self.cfg, self.setup
        if cfg["task"] == "addition" and cfg["init"] == "iamtrask":
            rs, w_in, w_out, w_hh = addition.iamtrask_init(cfg["seed"], s.I0, cfg["hidden_size"], 1)
            a, b = addition.sample_pairs(rs, cfg["updates"], cfg["largest"])
            rnn = {"weight_ih_l0": w_in.T.astype(self.dt), "weight_hh_l0": w_hh.T.astype(self.dt)}
            head = [w_out.T.astype(self.dt)]
        else:
            rng = np.random.default_rng([cfg["seed"], 0])
            rnn = init_params(cfg["cell"], s.I0, cfg["hidden_size"], num_layers=cfg["num_layers"],
                              bidirectional=cfg["bidirectional"], bias=cfg["bias"], dtype=self.dt,
                              seed=int(rng.integers(2**63)))  # fmt: skip
            head = _head_init(rng, s.C, F, cfg["task"] != "addition", self.dt)
            if cfg["task"] == "addition":
                seed32 = np.random.default_rng([cfg["seed"], 1, 0]).integers(2**31)
                drs = np.random.RandomState(seed32)
                a, b = addition.sample_pairs(drs, cfg["updates"], cfg["largest"])
        if cfg["task"] == "addition":
            bits = cfg["bits"]
            self.data = (addition.to_bits(a, bits).astype(self.dt),
                         addition.to_bits(b, bits).astype(self.dt),
                         addition.to_bits(a + b, bits).astype(self.dt))  # fmt: skip
        self.theta = np.concatenate([rnn[k].ravel() for k, *_ in self.entries]
                                    + [h.ravel() for h in head]).astype(self.dt)  # fmt: skip

    def _alloc(self) -> None:
        s, spec, dt = self.setup, self.spec, self.dt
        L, D, H = spec.num_layers, spec.directions, spec.hidden_size
        cell = CELL_CODES[spec.cell]
        n_saved, n_scratch = train_sizes(cell, L, D, s.T, s.B, s.I0, H, self.nchunks)
        self.saved = np.zeros(int(n_saved), dt)
        self.scratch = np.zeros(int(n_scratch), dt)
        ncols = s.T * s.B if s.head == HEAD_ALL else s.B
        self.Z = np.zeros(s.C * ncols, dt)
        self.dZ = np.zeros(s.C * ncols, dt)
        self.work_m = np.zeros(ncols, dt)
        self.work_s = np.zeros(ncols, dt)
        self.y_class = np.zeros(ncols, np.int64)
        self.y_real = np.zeros(ncols, dt)
        self.dtheta = np.zeros_like(self.theta)
        shape = (L * D, s.B, H)
        self.h_state = np.zeros(shape, dt)
        self.c_state = np.zeros(shape, dt)
        self.dzero = np.zeros(shape, dt)
        self.dh0 = np.zeros(shape, dt)
        self.dc0 = np.zeros(shape, dt)
        self.model = np.array([cell, ACT_CODES[self.cfg["nonlinearity"]], L, D, s.T, s.B, s.I0,
                               H, s.C, self.wo, self.bo], np.int64)  # fmt: skip
        self.task = np.array([s.task_code, s.loss, s.head, s.reduction_sum, s.carry,
                              s.true_style], np.int64)  # fmt: skip

    def warm_up(self) -> float:
        """Compile (or load from Numba's cache) the kernels this run uses; seconds taken."""
        t0 = time.perf_counter()
        e8, eo, ef = (
            np.zeros((1, 1), np.uint8),
            np.zeros((1, 1), np.int64),
            np.zeros((1, 1), self.dt),
        )
        nothing = np.zeros(0)
        self.run_updates((e8, e8, eo, ef, ef, ef), 0, 0, 0, nothing, nothing)
        if self.cfg["task"] == "mnist":
            m = self.mnist
            evaluate_mnist(self.model, self.theta, self.woff, m.test_images[:0], e8, m.steps,
                           m.input_size, 1, np.zeros(1, self.dt), ef.ravel(), eo.ravel(),
                           np.zeros((1, 1, 1), self.dt), np.zeros((1, 1, 1), self.dt),
                           1)  # fmt: skip
        return time.perf_counter() - t0

    def epoch_data(self, epoch: int) -> tuple:
        """(u8 rows/images, labels, order, f1, f2, f3) for one epoch."""
        cfg, dt = self.cfg, self.dt
        e8 = np.zeros((1, 1), np.uint8)
        eo = np.zeros((1, 1), np.int64)
        ef = np.zeros((1, 1), dt)
        if cfg["task"] == "dependency":
            rng = np.random.default_rng([cfg["seed"], 1, epoch])
            x, y = dependency.generate(cfg["sequence_length"], tuple(cfg["lags"]),
                                       tuple(cfg["shifts"]), cfg["base"], rng)  # fmt: skip
            xb, yb = dependency.batchify(x, y, cfg["batch_size"])
            xb = np.ascontiguousarray(xb, dtype=np.uint8)
            return (xb, np.ascontiguousarray(yb, dtype=np.uint8), eo, ef, ef, ef)
        if cfg["task"] == "mnist":
            m = self.mnist
            rng = np.random.default_rng([cfg["seed"], 2, epoch])
            order = mnist.batch_order(len(m.train_labels), cfg["batch_size"], rng)
            labels = m.train_labels.astype(np.uint8).reshape(1, -1)
            return (m.train_images, labels, order, ef, ef, ef)
        return (e8, e8, eo, *self.data)

    def run_updates(self, data: tuple, u0: int, n: int, step0: int, losses, errors) -> int:
        d_u8, d_lab, d_idx, f1, f2, f3 = data
        return train_updates(
            self.model, self.task, self.theta, self.woff, self.opt.code, self.hyper, self.s1,
            self.s2, step0, self.cfg["clip"], d_u8, d_lab, d_idx, f1, f2, f3, u0, n,
            self.h_state, self.c_state, self.saved, self.scratch, self.dtheta, self.Z, self.dZ,
            self.work_m, self.work_s, self.y_class, self.y_real, self.dzero, self.dh0, self.dc0,
            losses, errors, self.nchunks,
        )  # fmt: skip

    def test_accuracy(self) -> float:
        m, spec = self.mnist, self.spec
        batch = min(self.cfg["eval_batch"], len(m.test_labels))
        L, D, H = spec.num_layers, spec.directions, spec.hidden_size
        nc = train_chunks(self.cfg, spec, m.steps, batch)
        n_saved, _ = train_sizes(CELL_CODES[spec.cell], L, D, m.steps, batch, m.input_size, H, nc)
        saved = np.zeros(int(n_saved), self.dt)
        Z = np.zeros(10 * batch, self.dt)
        y = np.zeros(batch, np.int64)
        h0 = np.zeros((L * D, batch, H), self.dt)
        labels = m.test_labels.astype(np.uint8).reshape(1, -1)
        with one_blas_thread(nc > 1):
            correct = evaluate_mnist(self.model, self.theta, self.woff, m.test_images, labels,
                                     m.steps, m.input_size, batch, saved, Z, y, h0, h0.copy(),
                                     nc)  # fmt: skip
        return correct / len(m.test_labels)

    def params(self) -> dict[str, np.ndarray]:
        out = {k: self.theta[p : p + n].reshape(shape).copy() for k, shape, p, n in self.entries}
        F = self.spec.directions * self.spec.hidden_size
        C = self.setup.C
        out["head.weight"] = self.theta[self.wo : self.wo + C * F].reshape(C, F).copy()
        if self.bo >= 0:
            out["head.bias"] = self.theta[self.bo : self.bo + C].copy()
        return out


def train(config: dict[str, Any], *, progress=None) -> TrainResult:
    """Train a model on a task; see rnnfast.config for the keys and their defaults.

    progress, if given, is called as progress(updates_done, updates_total) after every
    interval of updates. backend="cuda" trains on the GPU (rnnfast.cuda.training).
    """
    t_start = time.perf_counter()
    cfg = resolve(config)
    if cfg["backend"] == "cuda":
        from rnnfast.cuda.training import train_group  # noqa: PLC0415

        return train_group([cfg], progress=progress)[0]
    tr = _Trainer(cfg)
    compile_time = tr.warm_up()
    threads = blas_threads(cfg, tr.spec, tr.setup.T, tr.setup.B)
    if threads is None:
        return drive(tr, steps(cfg, tr, compile_time, progress, t_start))
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    with threadpool_limits(limits=threads, user_api="blas"):
        return drive(tr, steps(cfg, tr, compile_time, progress, t_start))


def drive(tr: "_Trainer", gen) -> TrainResult:
    """Serve steps()'s requests on the CPU (see steps)."""
    try:
        req = next(gen)
        while True:
            if req[0] == "updates":
                _, data, u, n, step, losses, errors, reset = req
                if reset:
                    tr.h_state[:] = 0
                    tr.c_state[:] = 0
                answer = tr.run_updates(data, u, n, step, losses, errors)
            elif req[0] == "accuracy":
                answer = tr.test_accuracy()
            else:  # "sync": tr.theta is already current
                answer = None
            req = gen.send(answer)
    except StopIteration as stop:
        return stop.value


def steps(cfg: dict, tr: "_Trainer", compile_time: float, progress, t_start: float):
    """The epochs of one run as a generator of requests to a backend, which answers by send():

        ("updates", data, u, n, step, losses, errors, reset) -> updates run (n, or fewer if
            a loss was not finite); run updates u..u+n-1 of the epoch's data, after
            update number `step`, writing losses/errors[:n]; reset: zero the carried state
        ("accuracy",) -> test accuracy of the current parameters (mnist)
        ("sync",) -> None, once tr.theta holds the current parameters

    Returns (StopIteration.value) the TrainResult. The CPU serves it with drive(); the CUDA
    backend serves many runs' generators in lockstep, one launch per interval.
    """
    s = tr.setup
    epochs = cfg["epochs"] if cfg["task"] != "addition" else 1
    total = epochs * s.updates_per_epoch
    steps_, epoch_col, metric, value = [], [], [], []
    status, message, step = "ok", "", 0
    final: dict[str, float] = {}
    all_losses: list[np.ndarray] = []
    for epoch in range(1, epochs + 1):
        data = tr.epoch_data(epoch)
        losses = np.empty(s.updates_per_epoch)
        errors = np.empty(s.updates_per_epoch)
        u = 0
        while u < s.updates_per_epoch:
            n = min(INTERVAL, s.updates_per_epoch - u)
            reset = s.carry and u == 0
            done = yield ("updates", data, u, n, step, losses[u:], errors[u:], reset)
            step += done
            u += done
            if done < n:
                status = "diverged"
                message = f"loss is {losses[u]} at update {step + 1} (epoch {epoch})"
                u += 1  # keep the non-finite loss in the curve
                step += 1
                break
            if progress is not None:
                progress(step, total)
        first = step - u + 1
        rng_steps = np.arange(first, step + 1)
        steps_.append(rng_steps)
        epoch_col.append(np.full(u, epoch))
        metric.append(np.full(u, "loss", dtype=object))
        value.append(losses[:u])
        all_losses.append(losses[:u])
        if cfg["task"] == "addition":
            steps_.append(rng_steps)
            epoch_col.append(np.full(u, epoch))
            metric.append(np.full(u, "error", dtype=object))
            value.append(errors[:u])
            final["error"] = float(errors[u - 1])
        if status != "ok":
            break
        if cfg["task"] == "mnist":
            acc = yield ("accuracy",)
            steps_.append(np.array([step]))
            epoch_col.append(np.array([epoch]))
            metric.append(np.array(["test_accuracy"], dtype=object))
            value.append(np.array([acc]))
            final["test_accuracy"] = acc
    yield ("sync",)
    curves = pd.DataFrame({
        "step": np.concatenate(steps_).astype(np.int64),
        "epoch": np.concatenate(epoch_col).astype(np.int64),
        "metric": pd.Categorical(np.concatenate(metric)),
        "value": np.concatenate(value).astype(np.float64),
    })  # fmt: skip
    losses_all = np.concatenate(all_losses)
    final["loss"] = float(np.mean(losses_all[-100:]))
    final["updates"] = int(step)
    info = {"updates_per_epoch": s.updates_per_epoch, "batch_size_effective": s.B,
            "compile_time": compile_time, "backend": cfg["backend"]}  # fmt: skip
    if cfg["task"] == "dependency":
        info["expected_cross_entropies"] = dependency.expected_cross_entropies(
            tuple(cfg["lags"]), tuple(cfg["shifts"]), cfg["base"]
        )
    return TrainResult(cfg, curves, final, tr.params(), status, message,
                       time.perf_counter() - t_start, info)  # fmt: skip
