"""Training on the GPU: many runs that share shapes, one kernel launch per interval.

    results = train_group(configs)        # list of TrainResult, in the order of configs

Runs may differ in seed, learning rate, optimizer hyperparameters and clip; everything
that fixes shapes or the program (task, model, batch, truncation, epochs, optimizer, dtype,
data) must be equal (group_key). Each run is set up exactly as on the CPU (rnnfast.training:
same initial parameters, data and batch order for the seed) and gets its own curve and
result; the parameters, optimizer state and carried state live on the device for the
whole training, and each interval of updates is one launch of R blocks
(rnnfast/cuda/_train_kernel.py) that returns only the losses. MNIST test accuracy is
computed on the host from the run's parameters, once per epoch.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rnnfast.config import resolve
from rnnfast.cuda import require

# keys a group's runs may differ in: they are per-run values inside the kernel
PER_RUN_KEYS = frozenset({"seed", "lr", "momentum", "beta1", "beta2", "eps", "alpha",
                          "initial_accumulator", "clip", "threads"})  # fmt: skip


def group_key(cfg: dict[str, Any]) -> tuple:
    """Runs with equal keys can train in one launch (cfg: a resolved config)."""
    return tuple(sorted((k, repr(v)) for k, v in cfg.items() if k not in PER_RUN_KEYS))


def _stack(arrays: Sequence[np.ndarray], shared: bool) -> np.ndarray:
    """(R, ...) from per-run arrays of one shape, or (1, ...) when they are shared."""
    if shared:
        return np.ascontiguousarray(arrays[0][None])
    return np.ascontiguousarray(np.stack(arrays))


class _Group:
    """The device side of R runs: parameters, optimizer state, buffers; one launch per call."""

    def __init__(self, trainers: list) -> None:
        from numba import cuda  # noqa: PLC0415

        from rnnfast.cuda._api import MAX_THREADS  # noqa: PLC0415
        from rnnfast.cuda._layers import layout  # noqa: PLC0415

        self.cuda, self.trainers = cuda, trainers
        tr0 = trainers[0]
        s, spec, dt = tr0.setup, tr0.spec, tr0.dt
        R, n = len(trainers), tr0.theta.size
        L, D, H = spec.num_layers, spec.directions, spec.hidden_size
        cell = int(tr0.model[0])
        self.off = layout(cell, L, D, s.T, s.B, s.I0, H)
        self.threads = min(MAX_THREADS, max(32, (H * s.B + 31) // 32 * 32))
        ncols = s.T * s.B if s.head == 0 else s.B

        def full(arr_of_run):  # (R, n) from per-run state (size n, or 0 when unused)
            out = np.zeros((R, n), dt)
            for r, tr in enumerate(trainers):
                a = arr_of_run(tr)
                if a.size == n:
                    out[r] = a
            return out

        to = cuda.to_device
        self.theta = to(np.stack([tr.theta for tr in trainers]))
        self.s1, self.s2 = to(full(lambda tr: tr.s1)), to(full(lambda tr: tr.s2))
        self.hyper = to(np.stack([tr.hyper for tr in trainers]).astype(np.float64))
        self.clip = to(np.array([float(tr.cfg["clip"] or 0.0) for tr in trainers]))
        self.model, self.task, self.woff = to(tr0.model), to(tr0.task), to(tr0.woff)
        shape = (R, L * D, s.B, H)
        self.h_state, self.c_state = cuda.device_array(shape, dt), cuda.device_array(shape, dt)
        self.zeros = to(np.zeros(shape[1:], dt))
        self.trash = cuda.device_array((R, 2, *shape[1:]), dt)
        self.bufs = to(np.zeros((R, int(self.off[-1])), dt))
        self.d_off = to(self.off)
        self.dtheta = cuda.device_array((R, n), dt)
        self.Z = cuda.device_array((R, s.C * ncols), dt)
        self.dZ = cuda.device_array((R, s.C * ncols), dt)
        self.y_class = to(np.zeros((R, ncols), np.int64))
        self.y_real = to(np.zeros((R, ncols), dt))
        self.done = cuda.device_array(R, np.int64)
        self.data_epoch = None

    def upload(self, datas: list[tuple], key) -> None:
        """The runs' epoch data (rnnfast.training._Trainer.epoch_data), once per epoch."""
        if self.data_epoch == key:
            return
        kind = self.trainers[0].cfg["task"]
        parts = list(zip(*datas, strict=True))  # (u8s, labs, idxs, f1s, f2s, f3s)
        shared = {"dependency": (False, False, True, True, True, True),
                  "mnist": (True, True, False, True, True, True),
                  "addition": (True, True, True, False, False, False)}[kind]  # fmt: skip
        self.data = [
            self.cuda.to_device(_stack(p, sh)) for p, sh in zip(parts, shared, strict=True)
        ]
        self.data_epoch = key

    def warm_up(self) -> None:
        """Compile the kernel (or load it from the cache) with a launch of zero updates."""
        dt = self.trainers[0].dt
        e8, eo, ef = (
            np.zeros((1, 1, 1), np.uint8),
            np.zeros((1, 1, 1), np.int64),
            np.zeros((1, 1, 1), dt),
        )
        self.data = [self.cuda.to_device(a) for a in (e8, e8, eo, ef, ef, ef)]
        self.run([0], 0, 0, 0, False)
        self.data_epoch = None

    def run(self, active: list[int], u0: int, n: int, step0: int, reset: bool):
        """Updates u0..u0+n-1 for the active runs; returns (losses, errors, done) (R, ...)."""
        R = len(self.trainers)
        losses = self.cuda.device_array((R, max(n, 1)), np.float64)
        errors = self.cuda.device_array((R, max(n, 1)), np.float64)
        runs = self.cuda.to_device(np.array(active, np.int64))
        from rnnfast.cuda._train_kernel import train_kernel  # noqa: PLC0415

        code = self.trainers[0].opt.code
        train_kernel[len(active), self.threads](
            self.model, self.task, runs, self.theta, self.woff, code, self.hyper, self.s1,
            self.s2, step0, self.clip, *self.data, u0, n, reset, self.h_state, self.c_state,
            self.zeros, self.trash, self.bufs, self.d_off, self.dtheta, self.Z, self.dZ,
            self.y_class, self.y_real, losses, errors, self.done,
        )  # fmt: skip
        return losses.copy_to_host(), errors.copy_to_host(), self.done.copy_to_host()

    def sync(self, r: int) -> None:
        """Run r's parameters back into its host trainer."""
        self.trainers[r].theta[:] = self.theta[r].copy_to_host()


def train_group(configs: Sequence[dict[str, Any]],
                progress: Callable[[int, int], None] | None = None) -> list:  # fmt: skip
    """Train runs that share shapes together on the GPU; see the module docstring.

    progress(updates_done, updates_total) is called after every interval (counting the
    updates of the group's first run)."""
    from rnnfast.training import _Trainer, steps  # noqa: PLC0415

    require()
    if not configs:
        return []
    t_start = time.perf_counter()
    cfgs = [resolve(dict(c, backend="cuda")) for c in configs]
    keys = {group_key(c) for c in cfgs}
    if len(keys) > 1:
        diff = sorted({k for c in cfgs for k, v in c.items() if k not in PER_RUN_KEYS
                       and v != cfgs[0][k]})  # fmt: skip
        raise ValueError(
            f"configs: runs trained together may differ only in {sorted(PER_RUN_KEYS)}; "
            f"these keys differ: {diff}"
        )
    trainers = [_Trainer(c) for c in cfgs]
    t0 = time.perf_counter()
    group = _Group(trainers)
    group.warm_up()
    compile_time = time.perf_counter() - t0
    gens = [steps(c, tr, compile_time, progress if i == 0 else None, t_start)
            for i, (c, tr) in enumerate(zip(cfgs, trainers, strict=True))]  # fmt: skip
    reqs: dict[int, tuple] = {r: next(g) for r, g in enumerate(gens)}
    results: list = [None] * len(gens)

    def answer(r: int, value) -> None:
        try:
            reqs[r] = gens[r].send(value)
        except StopIteration as stop:
            results[r] = stop.value
            del reqs[r]

    while reqs:
        for r in [r for r, q in reqs.items() if q[0] != "updates"]:
            group.sync(r)
            answer(r, trainers[r].test_accuracy() if reqs[r][0] == "accuracy" else None)
        updates = {r: q for r, q in reqs.items() if q[0] == "updates"}
        if not updates:
            continue
        # runs still training are in lockstep: the same epoch, update range and step
        r0 = min(updates)
        _, _, u0, n, step0, _, _, reset = updates[r0]
        active = [r for r, q in updates.items() if q[2:5] == (u0, n, step0)]
        first = updates[r0][1]  # a diverged run's row gets any run's data: it is not read
        group.upload([updates[r][1] if r in updates else first for r in range(len(gens))],
                     step0 - u0)  # fmt: skip
        losses, errors, done = group.run(active, u0, n, step0, reset)
        for r in active:
            k = int(done[r])
            updates[r][5][: min(k + 1, n)] = losses[r, : min(k + 1, n)]
            updates[r][6][: min(k + 1, n)] = errors[r, : min(k + 1, n)]
            answer(r, k)
    return results
