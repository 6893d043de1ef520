"""A run's memory, estimated from its resolved config before anything is allocated, and the
guard that refuses a run the machine cannot hold.

The estimate counts what the CPU training driver (rnnfast/cpu/trainer.py) keeps while it
trains, in the run's dtype (E bytes an element), with P the trainable parameters (recurrent
layers, head, embedding: rnnfast.run_setup's theta):

    parameters       theta, its gradient and the copy returned at the end       3 P E
    optimizer state  rnnfast.optim.init_state's slots per parameter (0 to 2)    k P E
    fused loop       saved + scratch buffers (rnnfast.cpu.trainer.train_sizes, which the
                     driver allocates), the carried state 5 (L D, B, H) and the head's
                     per-column arrays, for the training batch and each evaluation batch
    data             one epoch's training inputs and targets as the loops read them
                     (updates x batch x T steps) and the evaluation splits the task holds

The initialisation's passing copies, NumPy's and BLAS's own buffers and the interpreter are
not counted: the estimate is a floor, so a refusal is never wrong about the run itself.
backend="cuda" counts the host's share only (parameters, optimizer state, data).

Available memory is MemAvailable of /proc/meminfo (Linux; elsewhere unknown: not checked).
Override: the environment variable RNNFAST_MEMORY_LIMIT, a size ("64G", "512M", bytes) used
instead of what is available, or "off" to skip the check; the CLI's --memory-limit sets it
(for the run and the workers it starts).
"""

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnfast.optim import init_state, make_optimizer
from rnnfast.params import Spec, packed_layout
from rnnfast.tasks import get_task

ENV = "RNNFAST_MEMORY_LIMIT"
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)
_OPT_KEYS = ("momentum", "beta1", "beta2", "eps", "alpha", "initial_accumulator")


class MemoryLimitError(ValueError):
    """A run that needs more memory than the machine has available (one line)."""


@dataclass(frozen=True)
class Estimate:
    """Bytes a run needs, by part."""

    parameters: int
    optimizer: int
    buffers: int
    data: int

    @property
    def total(self) -> int:
        return self.parameters + self.optimizer + self.buffers + self.data

    def parts(self) -> str:
        names = ("parameters", "optimizer", "buffers", "data")
        return ", ".join(f"{n} {format_bytes(getattr(self, n))}" for n in names)


def format_bytes(n: float) -> str:
    """1.5 GB, 320 MB, 12 kB (powers of 1024, as free -h)."""
    for unit, scale in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def parse_size(text: str) -> int | None:
    """Bytes of "64G", "512M", "1.5T", "1000000"; None for "off"; ValueError otherwise."""
    if text.strip().lower() == "off":
        return None
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"{ENV}: expected a size such as 64G or 512M, or off; got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def set_limit(text: str) -> None:
    """Validate a --memory-limit value and put it in the environment (inherited by workers)."""
    parse_size(text)
    os.environ[ENV] = text


def available() -> tuple[int | None, str]:
    """(bytes a run may use, where the figure comes from); (None, why) when not checked."""
    text = os.environ.get(ENV, "").strip()
    if text:
        limit = parse_size(text)
        return limit, f"{ENV}={text}" if limit is not None else f"{ENV}=off"
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available"
    except OSError:
        pass
    return None, "unknown"


def _parameters(cfg: dict[str, Any], form) -> int:
    spec = Spec(cfg["cell"], form.input_size, cfg["hidden_size"], cfg["num_layers"],
                cfg["bidirectional"], cfg["bias"], np.dtype(cfg["dtype"]))  # fmt: skip
    entries, _ = packed_layout(spec)
    F = spec.directions * spec.hidden_size
    head = form.outputs * F + form.outputs  # the bias counted even when a task drops it
    embed = form.vocab * form.input_size if form.inputs == "embed" else 0
    return sum(n for *_, n in entries) + head + embed


def _optimizer_slots(cfg: dict[str, Any]) -> int:
    """State arrays per parameter, by rnnfast.optim's own rule (a 1-parameter state)."""
    hyper = {k: cfg[k] for k in _OPT_KEYS if cfg.get(k) is not None}
    opt = make_optimizer(cfg["optimizer"], cfg["lr"], **hyper)
    s1, s2 = init_state(opt.code, opt.hyper(), 1, np.zeros(1))
    return s1.size + s2.size


def _loop_bytes(cfg: dict[str, Any], form, B: int, per_step_head: bool) -> int:
    """Bytes of the fused loop's buffers for batch columns B, as rnnfast.cpu.trainer's
    _Buffers allocates them (without dtheta: counted with the parameters)."""
    from rnnfast.cells import CELL_CODES  # noqa: PLC0415
    from rnnfast.cpu.trainer import train_chunks, train_sizes  # noqa: PLC0415

    spec = Spec(cfg["cell"], form.input_size, cfg["hidden_size"], cfg["num_layers"],
                cfg["bidirectional"], cfg["bias"], np.dtype(cfg["dtype"]))  # fmt: skip
    L, D, H, T, I0 = spec.num_layers, spec.directions, spec.hidden_size, form.steps, form.input_size
    nchunks = train_chunks(cfg, spec, T, B)
    saved, scratch = train_sizes(CELL_CODES[spec.cell], L, D, T, B, I0, H, nchunks)
    ncols = T * B if per_step_head else B
    state = 5 * L * D * B * H  # h, c, dh0, dc0 and one zero array for dh_n and dc_n
    head = 3 * form.outputs * ncols + 2 * ncols  # Z, dZ, y_real; m, s
    embed = I0 * T * B if form.inputs == "embed" else 0  # dX or dx3
    floats = int(saved) + int(scratch) + state + head + embed
    return floats * spec.dtype.itemsize + (ncols + B) * 8  # int64 y_class and lens


def _data_bytes(td, itemsize: int) -> int:
    """One epoch's training data as the loops read it, and the evaluation splits held."""
    f = td.form
    steps = td.updates_per_epoch * f.batch * f.steps
    x_item = {"dense": itemsize * f.input_size, "quantized": f.input_size}.get(f.inputs, 4)
    y_item = itemsize * f.outputs if f.targets == "reals" else 4
    targets = steps if f.per_step else td.updates_per_epoch * f.batch
    held = 0
    for ev in td.evaluations:
        s = ev.split
        held += s.x.nbytes + s.y.nbytes + (0 if s.lengths is None else s.lengths.nbytes)
    return steps * x_item + targets * y_item + held


def _eval_batches(td) -> set[int]:
    f = td.form
    if f.mode == "set":
        return {min(ev.batch or f.batch, ev.split.count) for ev in td.evaluations}
    return {int(ev.split.x.shape[0]) for ev in td.evaluations}


def estimate(cfg: dict[str, Any], task_data: Any) -> Estimate:
    """The memory a run of the resolved config cfg needs, given its task's prepared data
    (rnnfast.tasks.Task.prepare): see the module docstring for what is counted."""
    f = task_data.form
    E = np.dtype(cfg["dtype"]).itemsize
    P = _parameters(cfg, f)
    buffers = 0
    if cfg["backend"] == "cpu":
        true = f.mode == "stream" and f.truncation == "true"
        per_step = f.per_step and not true  # the head reads every column (HEAD_ALL)
        buffers = _loop_bytes(cfg, f, f.batch_columns, per_step)
        for batch in _eval_batches(task_data):  # evaluations read a stream tf-style
            buffers += _loop_bytes(cfg, f, batch, f.per_step)
    return Estimate(3 * P * E, _optimizer_slots(cfg) * P * E, buffers, _data_bytes(task_data, E))


def check(cfg: dict[str, Any], data: Any = None, task_data: Any = None) -> Estimate | None:
    """Raise MemoryLimitError (one line: the estimate and what is available) when a run of
    the resolved config cfg needs more memory than the machine has; returns the estimate
    (None when the check is off or the available memory unknown). task_data: the task's
    prepared data if already at hand, else it is prepared here (lazily for generated data)."""
    limit, source = available()
    if limit is None:
        return None
    if task_data is None:
        task_data = get_task(cfg["task"]).prepare(cfg, data)
    est = estimate(cfg, task_data)
    if est.total > limit:
        raise MemoryLimitError(
            f"memory: the run needs about {format_bytes(est.total)} ({est.parts()}), "
            f"more than the {format_bytes(limit)} {source}; use a smaller hidden_size, "
            f"batch_size or num_steps, or set {ENV}=off (or --memory-limit) to run it anyway"
        )
    return est
