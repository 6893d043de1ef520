"""A training run without its backend: the task's data, the parameters, the optimizer state and
the epoch schedule. The CPU driver (rnnfast/cpu/trainer.py) and the CUDA driver
(rnnfast/cuda/training.py) both build on it; neither knows any task.

The model is a stack of recurrent layers with a linear head (and, for token inputs fed
through an embedding, an embedding table before it). All trainable parameters live in one flat
vector theta = [recurrent (packed, rnnfast.params.packed_layout) | W_out | b_out | embedding],
which the compiled loops update in place, many updates per call.

Randomness: independent streams numpy.random.default_rng([seed, k, epoch]) for the
initialisation (k = 0), the data of each epoch (k = 1, tasks that generate data) and the batch
order of each epoch (k = 2), so a config and seed give bit-identical curves on one machine
(same dtype, same BLAS thread count), and adding epochs does not change the earlier ones. A
task may supply its own initialisation (addition's iamtrask).
"""

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rnnfast.codes import ACT_CODES, CELL_CODES
from rnnfast.optim import init_state, make_optimizer
from rnnfast.params import Spec, init_params, packed_layout
from rnnfast.seqdata import Data, Evaluation, batch_order, eval_order
from rnnfast.tasks import get_task

INTERVAL = 200  # updates per compiled call: Ctrl-C and progress are seen this often


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
    artifacts: dict[str, Any] = field(default_factory=dict)  # what the task keeps (vocabulary)


def _head_init(rng: np.random.Generator, C: int, F: int, bias: bool, dt) -> list[np.ndarray]:
    bound = 1.0 / np.sqrt(F)  # nn.Linear's default
    out = [rng.uniform(-bound, bound, (C, F)).astype(dt)]
    if bias:
        out.append(rng.uniform(-bound, bound, C).astype(dt))
    return out


class RunSetup:
    """A resolved config and its task data -> theta, optimizer state, compiled-loop vectors."""

    def __init__(self, cfg: dict[str, Any], data: Any = None) -> None:
        self.cfg = cfg
        self.dt = np.dtype(cfg["dtype"])
        self.task = get_task(cfg["task"])
        self.data = self.task.prepare(cfg, data)
        f = self.form = self.data.form
        self.T, self.B, self.I0, self.C = f.steps, f.batch_columns, f.input_size, f.outputs
        self.spec = Spec(cfg["cell"], self.I0, cfg["hidden_size"], cfg["num_layers"],
                         cfg["bidirectional"], cfg["bias"], self.dt)  # fmt: skip
        self.entries, self.woff = packed_layout(self.spec)
        F = self.spec.directions * self.spec.hidden_size
        self.n_rnn = sum(n for *_, n in self.entries)
        self.wo = self.n_rnn
        self.bo = self.wo + self.C * F if self.data.head_bias else -1
        head_end = self.wo + self.C * F + (self.C if self.data.head_bias else 0)
        self.eo = head_end if f.inputs == "embed" else -1
        self.theta = self._init_theta(F)
        opt_hyper = {k: cfg[k] for k in ("momentum", "beta1", "beta2", "eps", "alpha",
                                         "initial_accumulator") if cfg[k] is not None}  # fmt: skip
        if cfg["optimizer"] == "adagrad":
            opt_hyper.setdefault("initial_accumulator", 0.1)
        self.opt = make_optimizer(cfg["optimizer"], cfg["lr"], **opt_hyper)
        self.hyper = self.opt.hyper()
        self.s1, self.s2 = init_state(self.opt.code, self.hyper, self.theta.size, self.theta)
        L, D, H = self.spec.num_layers, self.spec.directions, self.spec.hidden_size
        self.model = np.array([CELL_CODES[cfg["cell"]], ACT_CODES[cfg["nonlinearity"]], L, D,
                               self.T, self.B, self.I0, H, self.C, self.wo, self.bo],
                              np.int64)  # fmt: skip
        self.form_vec = f.vector(self.eo)
        # evaluations read a stream "tf"-style (every target once, the state carried): the
        # forward pass is the same, and their rows are not T shifted copies of each other
        self.eval_form = dataclasses.replace(f, truncation="tf")
        self.eval_form_vec = self.eval_form.vector(self.eo)
        self._eval_cache: dict[int, tuple] = {}
        self._epoch_cache: tuple = (None, None)  # (epoch, Data)
        self._split_cache: tuple = (None, None)  # (the task's Split, its Data)

    def _init_theta(self, F: int) -> np.ndarray:
        cfg, f = self.cfg, self.form
        rng = np.random.default_rng([cfg["seed"], 0])
        if self.data.init is not None:
            rnn, head = self.data.init(cfg, self.dt)
        else:
            rnn = init_params(cfg["cell"], self.I0, cfg["hidden_size"],
                              num_layers=cfg["num_layers"], bidirectional=cfg["bidirectional"],
                              bias=cfg["bias"], dtype=self.dt,
                              seed=int(rng.integers(2**63)))  # fmt: skip
            head = _head_init(rng, self.C, F, self.data.head_bias, self.dt)
        parts = [rnn[k].ravel() for k, *_ in self.entries] + [h.ravel() for h in head]
        if f.inputs == "embed":  # nn.Embedding's default: N(0, 1)
            parts.append(rng.standard_normal((f.vocab, self.I0)).astype(self.dt).ravel())
        return np.concatenate(parts).astype(self.dt)

    @property
    def updates_per_epoch(self) -> int:
        return self.data.updates_per_epoch

    def epoch_data(self, epoch: int) -> Data:
        """The compiled loops' data for one epoch (set mode: batches reshuffled by the seed).

        Cached: the last epoch's data is handed out again for the same epoch (the warm-up and
        epoch 1), and a task's unchanged split is converted to the run's dtype only once."""
        if self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        split = self.data.train(epoch)
        order = None
        if self.form.mode == "set":
            if self.form.shuffle:
                rng = np.random.default_rng([self.cfg["seed"], 2, epoch])
                order = batch_order(split.count, self.form.batch, rng)
            else:
                U = split.count // self.form.batch
                order = np.arange(U * self.form.batch, dtype=np.int64).reshape(U, -1)
        if self._split_cache[0] is split:
            data = self._split_cache[1]
            if order is not None:
                data = data._replace(order=split.batches(order))
        else:
            data = split.data(self.form, self.dt, order)
            self._split_cache = (split, data)
        self._epoch_cache = (epoch, data)
        return data

    def eval_data(self, k: int) -> tuple[Data, int, int, int]:
        """(data, updates, sequences counted, batch columns) of evaluation k, cached."""
        if k not in self._eval_cache:
            ev: Evaluation = self.data.evaluations[k]
            split, f = ev.split, self.form
            if f.mode == "set":
                batch = min(ev.batch or f.batch, split.count)
                order = eval_order(split.count, batch)
                self._eval_cache[k] = (split.data(f, self.dt, order, split.count), len(order),
                                       split.count, batch)  # fmt: skip
            else:
                data = split.data(f, self.dt)
                self._eval_cache[k] = (data, split.count // f.steps, 0, split.x.shape[0])
        return self._eval_cache[k]

    def params(self) -> dict[str, np.ndarray]:
        out = {k: self.theta[p : p + n].reshape(shape).copy() for k, shape, p, n in self.entries}
        F = self.spec.directions * self.spec.hidden_size
        C = self.C
        out["head.weight"] = self.theta[self.wo : self.wo + C * F].reshape(C, F).copy()
        if self.bo >= 0:
            out["head.bias"] = self.theta[self.bo : self.bo + C].copy()
        if self.eo >= 0:
            V = self.form.vocab
            out["embedding.weight"] = self.theta[self.eo : self.eo + V * self.I0].reshape(
                V, self.I0).copy()  # fmt: skip
        return out


def _metric_values(ev: Evaluation, loss_sum: float, correct: int, counted: int):
    loss = loss_sum / max(counted, 1)
    values = {"loss": loss, "accuracy": correct / max(counted, 1), "bpc": loss / math.log(2)}
    return [(f"{ev.name}_{m}", values[m]) for m in ev.metrics]


class _Curve:
    """The curve so far as lists of arrays (long form), and the losses of the epochs done."""

    def __init__(self, resume=None) -> None:
        self.step: list[np.ndarray] = []
        self.epoch: list[np.ndarray] = []
        self.metric: list[np.ndarray] = []
        self.value: list[np.ndarray] = []
        self.losses: list[np.ndarray] = []  # per epoch; final "loss" = mean of the last 100
        if resume is not None:
            for k, v in resume.curve.items():
                getattr(self, k).append(v)
            self.losses.append(resume.loss_tail)

    def add(self, steps_, epoch, metric, value) -> None:
        self.step.append(steps_)
        self.epoch.append(epoch)
        self.metric.append(metric)
        self.value.append(value)

    def snapshot(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(curve arrays, last 100 losses); the lists become those (same values) so that
        snapshots stay linear in the curve's length."""
        out = {}
        for k in ("step", "epoch", "metric", "value"):
            parts = getattr(self, k)
            if len(parts) != 1:
                parts[:] = [np.concatenate(parts) if parts else np.zeros(0, _EMPTY[k])]
            out[k] = parts[0]
        tail = np.concatenate(self.losses)[-100:] if self.losses else np.zeros(0)
        self.losses[:] = [tail]
        return out, tail


_EMPTY = {"step": np.int64, "epoch": np.int64, "metric": object, "value": np.float64}


def _starting_loss(resume) -> float | None:
    """The loss of a resumed run's first update (None before it ran): in the checkpoint's
    losses of epoch 1, else in its curve. A task whose curve lacks "loss" (a plug-in's
    train_metrics) resumes past epoch 1 without the divergence rule."""
    if resume is None or resume.step == 0:
        return None
    if resume.epoch == 1:
        return float(resume.losses[0])
    c = resume.curve
    first = np.flatnonzero((c["metric"] == "loss") & (c["step"] == 1))
    return float(c["value"][first[0]]) if first.size else None


def steps(setup: RunSetup, compile_time: float, progress, t_start: float, checkpoints=None,
          live=None):  # fmt: skip
    """The epochs of one run as a generator of requests to a backend, which answers by send():

        ("updates", data, u, n, step, losses, errors, reset) -> updates run (n, or fewer if
            a loss was not finite); run updates u..u+n-1 of the epoch's data, after
            update number `step`, writing losses/errors[:n]; reset: zero the carried state
        ("evaluate", k) -> (loss sum, correct, counted) of the current parameters on the
            task's evaluation k
        ("sync",) -> None, once setup.theta holds the current parameters

    Returns (StopIteration.value) the TrainResult. The CPU serves it with its driver; the CUDA
    backend serves many runs' generators in lockstep, one launch per interval.

    checkpoints (rnnfast.checkpoint.Checkpoints, or None): its .resume, if any, is where the
    run continues (the backend's arrays already restored); its due(step, end_of_epoch) is
    asked after each interval inside an epoch and after each epoch's evaluations (but the
    last), and save(...) called when due. Both points lie on interval boundaries, so a resumed
    run makes the same calls as an uninterrupted one.

    live (rnnfast.live.Reporter): told where training starts, each interval's mean loss,
    each evaluation's metrics, each epoch's end and each checkpoint written, for the grid's
    live view; it never changes what is trained.

    Divergence: a non-finite loss stops the backend at that update; with cfg["diverge_above"]
    set, a loss above that multiple of the starting loss (the first update's) stops the run
    after the interval holding it. Either way the run is "diverged", its message names the
    update, and its curve ends with that update (the parameters are those at the end of the
    interval for the second rule).
    """
    cfg, td = setup.cfg, setup.data
    upe = td.updates_per_epoch
    total = td.epochs * upe
    resume = checkpoints.resume if checkpoints is not None else None
    curve = _Curve(resume)
    status, message = "ok", ""
    step = resume.step if resume is not None else 0
    final: dict[str, float] = dict(resume.final) if resume is not None else {}
    multiple = cfg.get("diverge_above")  # None: no limit but the finite one
    start_loss = _starting_loss(resume) if multiple is not None else None

    def point(name: str, epoch: int, at: int, v: float) -> None:
        curve.add(np.array([at]), np.array([epoch]), np.array([name], dtype=object), np.array([v]))
        final[name] = v
        if live is not None:
            live.metric(name, v)

    def save(epoch: int, u: int, losses: np.ndarray, errors: np.ndarray) -> None:
        arrays, tail = curve.snapshot()
        checkpoints.save(epoch, u, step, arrays, losses[:u], errors[:u], tail, final)
        if live is not None:
            live.checkpoint(epoch, step)

    first_epoch = resume.epoch if resume is not None else 1
    if live is not None:
        live.begin(first_epoch, td.epochs, step, total)
    for epoch in range(first_epoch, td.epochs + 1):
        data = setup.epoch_data(epoch)
        losses = np.empty(upe)
        errors = np.empty(upe)
        u = 0
        if resume is not None and epoch == resume.epoch:
            u = resume.update
            losses[:u], errors[:u] = resume.losses, resume.errors
        while u < upe:
            n = min(INTERVAL, upe - u)
            reset = setup.form.carry and u == 0
            done = yield ("updates", data, u, n, step, losses[u:], errors[u:], reset)
            if multiple is not None and done and step == 0:  # the run's first interval
                start_loss = float(losses[0])
            if start_loss is not None:
                above = np.flatnonzero(losses[u : u + done] > multiple * start_loss)
                if above.size:
                    first = int(above[0])
                    step += first + 1
                    u += first + 1
                    status = "diverged"
                    message = (f"loss {losses[u - 1]:.6g} at update {step} (epoch {epoch}) is "
                               f"above diverge_above = {multiple:g} times the starting loss "
                               f"{start_loss:.6g}")  # fmt: skip
                    break
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
            if live is not None:
                live.interval(epoch, step, float(np.mean(losses[u - done : u])))
            if checkpoints is not None and u < upe and checkpoints.due(step, False):
                save(epoch, u, losses, errors)
        rng_steps = np.arange(step - u + 1, step + 1)
        curve.losses.append(losses[:u])
        for name in td.train_metrics:
            curve.add(rng_steps, np.full(u, epoch), np.full(u, name, dtype=object),
                      (losses if name == "loss" else errors)[:u])  # fmt: skip
            if name != "loss":
                final[name] = float(errors[u - 1])
        if status != "ok":
            break
        for k, ev in enumerate(td.evaluations):
            if ev.every_epoch:
                for name, v in _metric_values(ev, *(yield ("evaluate", k))):
                    point(name, epoch, step, v)
        if live is not None:
            live.epoch_end(epoch)
        if checkpoints is not None and epoch < td.epochs and checkpoints.due(step, True):
            save(epoch + 1, 0, losses, errors)
    if status == "ok":
        for k, ev in enumerate(td.evaluations):
            if not ev.every_epoch:
                for name, v in _metric_values(ev, *(yield ("evaluate", k))):
                    final[name] = v
    yield ("sync",)
    curves = pd.DataFrame({
        "step": np.concatenate(curve.step).astype(np.int64),
        "epoch": np.concatenate(curve.epoch).astype(np.int64),
        "metric": pd.Categorical(np.concatenate(curve.metric)),
        "value": np.concatenate(curve.value).astype(np.float64),
    })  # fmt: skip
    losses_all = np.concatenate(curve.losses)
    final["loss"] = float(np.mean(losses_all[-100:]))
    final["updates"] = int(step)
    info = {"updates_per_epoch": upe, "batch_size_effective": setup.B,
            "compile_time": compile_time, "backend": cfg["backend"],
            "form": dataclasses.asdict(setup.form), **td.info}  # fmt: skip
    if resume is not None:
        info["resumed"] = {"checkpoint": str(resume.path), "epoch": resume.epoch,
                           "update": resume.step}  # fmt: skip
    return TrainResult(cfg, curves, final, setup.params(), status, message,
                       time.perf_counter() - t_start, info, dict(td.artifacts))  # fmt: skip
