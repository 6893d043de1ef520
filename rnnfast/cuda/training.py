"""Training on the GPU: many runs that share shapes, one kernel launch per interval.

    results = train_group(configs, data=None, checkpoints=None)   # TrainResults, in order

Runs may differ in seed, learning rate, optimizer hyperparameters, clip, diverge_above and
checkpoint_every (PER_RUN_KEYS);
everything that fixes shapes or the program (task, model, batch, truncation, epochs,
optimizer, dtype, data) must be equal (group_key). Each run is set up exactly as on the CPU
(rnnfast.run_setup.RunSetup: same initial parameters, data and batch order for the seed) and
follows the same epoch schedule (rnnfast.run_setup.steps), so it gets the CPU's curve and
result; the parameters, optimizer state and carried state live on the device for the whole
training.

The driver serves the runs' steps() generators in lockstep: each interval of updates is one
launch of R blocks (rnnfast/cuda/_train_kernel.py: train_kernel) that returns only the
losses; each evaluation is one launch of eval_kernel over every run's batch columns that
returns (loss sum, correct, counted) per run, as the CPU's evaluate; "sync" copies a run's
parameters back to its RunSetup. Nothing here knows a task: the kernels read the general form
(rnnfast.seqdata), and a run's data arrays go to the device once per epoch (when they change),
stacked (R, ...) or as one shared copy (1, ...) when every run's array is equal.

Checkpoints (rnnfast.checkpoint; `rnnfast run grid` passes each run's Target): every run
checkpoints by its own Checkpoints, in the CPU's file format, its live arrays being its rows
of the device arrays (copied to the host when a save is due). Each run's checkpoint is loaded
before the runs are launched, and runs that continue from the same position (the start
included) train in lockstep together, one such set after another. A block's arithmetic
depends only on its own run (the block size and every sum's order follow from the shapes),
so a run's curve and parameters do not depend on which runs share its launches, and a
resumed run is bit-identical to an uninterrupted one on the same device.
"""

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rnnfast import checkpoint
from rnnfast.codes import F_HEAD, HEAD_ALL, M_B
from rnnfast.config import resolve
from rnnfast.cuda import require
from rnnfast.run_setup import RunSetup, TrainResult, steps
from rnnfast.seqdata import Data

# keys a group's runs may differ in: per-run values inside the kernel, or read by each run's
# own epoch schedule (steps(): its divergence limit, when it checkpoints)
PER_RUN_KEYS = frozenset({"seed", "lr", "momentum", "beta1", "beta2", "eps", "alpha",
                          "initial_accumulator", "clip", "threads", "diverge_above",
                          "checkpoint_every"})  # fmt: skip


def group_key(cfg: dict[str, Any]) -> tuple:
    """Runs with equal keys can train in one launch (cfg: a resolved config)."""
    return tuple(sorted((k, repr(v)) for k, v in cfg.items() if k not in PER_RUN_KEYS))


def _block_threads(s: RunSetup) -> int:
    """Threads per block of the training kernel: a function of the shapes alone."""
    from rnnfast.cuda._api import MAX_THREADS  # noqa: PLC0415

    return min(MAX_THREADS, max(32, (s.spec.hidden_size * s.B + 31) // 32 * 32))


def _start(s: RunSetup) -> dict[str, np.ndarray]:
    """A run's live arrays (rnnfast.checkpoint.LIVE) on the host at the start: theta, the
    optimizer state at full size (zeros where the optimizer uses none, as on the device) and
    zero carried state. A resume fills them in place before they go to the device."""
    n, dt = s.theta.size, s.dt
    shape = (s.spec.num_layers * s.spec.directions, s.B, s.spec.hidden_size)

    def full(a: np.ndarray) -> np.ndarray:
        return a if a.size == n else np.zeros(n, dt)

    return {"theta": s.theta, "s1": full(s.s1), "s2": full(s.s2), "h": np.zeros(shape, dt),
            "c": np.zeros(shape, dt)}  # fmt: skip


def _equal(arrays: Sequence[np.ndarray]) -> bool:
    """Whether every array equals the first (the same memory, or equal values)."""
    a0 = arrays[0]
    ptr0 = a0.__array_interface__["data"][0]
    for a in arrays[1:]:
        if a is a0:
            continue
        if a.shape != a0.shape or a.dtype != a0.dtype:
            return False
        if a.__array_interface__["data"][0] == ptr0 and a.strides == a0.strides:
            continue
        if not np.array_equal(a, a0):
            return False
    return True


# the array fields of Data (all but the scale)
_ARRAYS = tuple(f for f, name in enumerate(Data._fields) if name != "scale")


class _DeviceData:
    """Device copies of the runs' Data tuples, field by field: (1, ...) when every run's
    array is equal (MNIST's images, a set's targets), else (R, ...) (data generated per seed,
    each run's batch order). A field is uploaded again only when a run's host array changes."""

    def __init__(self, cuda) -> None:
        self.cuda = cuda
        self.host: list[tuple] = [()] * len(Data._fields)
        self.dev: list = [None] * len(Data._fields)

    def put(self, datas: Sequence[Data]) -> Data:
        for f in _ARRAYS:
            arrays = tuple(d[f] for d in datas)
            if len(arrays) == len(self.host[f]) and all(
                a is b for a, b in zip(arrays, self.host[f], strict=True)
            ):
                continue
            if _equal(arrays):
                stacked = np.ascontiguousarray(arrays[0][None])
            else:
                for r, a in enumerate(arrays):
                    if a.shape != arrays[0].shape:
                        raise ValueError(
                            f"data: runs trained together need data of one shape; run {r}'s "
                            f"{Data._fields[f]} is {a.shape}, run 0's {arrays[0].shape}"
                        )
                stacked = np.ascontiguousarray(np.stack(arrays))
            self.dev[f] = self.cuda.to_device(stacked)
            self.host[f] = arrays
        return Data(*self.dev)._replace(scale=float(datas[0].scale))


def _forward_layout(off: np.ndarray) -> np.ndarray:
    """layout()'s offsets with the backward segments (dO on) cut to 32 elements each: the
    evaluation runs only forward."""
    from rnnfast.cuda._layers import S_DO  # noqa: PLC0415

    out = off.copy()
    for k in range(S_DO + 1, len(off)):
        out[k] = out[k - 1] + 32
    return out


class _Group:
    """The device side of R runs: parameters, optimizer state, buffers; one launch per call."""

    def __init__(self, setups: list[RunSetup],
                 starts: list[dict[str, np.ndarray]] | None = None) -> None:  # fmt: skip
        """starts: each run's live arrays on the host (_start, restored if resumed); None:
        every run from its start."""
        from numba import cuda  # noqa: PLC0415

        from rnnfast.cuda._layers import layout  # noqa: PLC0415
        from rnnfast.cuda._train_kernel import Optim, State  # noqa: PLC0415

        self.cuda, self.setups = cuda, setups
        s = setups[0]
        R, dt = len(setups), s.dt
        L, D, H = s.spec.num_layers, s.spec.directions, s.spec.hidden_size
        self.L, self.D, self.H, self.R = L, D, H, R
        self.threads = _block_threads(s)
        if starts is None:
            starts = [_start(st) for st in setups]

        def stacked(name: str):  # (R, ...) on the device
            return cuda.to_device(np.stack([st[name] for st in starts]))

        to = cuda.to_device
        self.theta = stacked("theta")
        hyper = np.stack([st.hyper for st in setups]).astype(np.float64)
        self.opt = Optim(int(s.opt.code), to(hyper), stacked("s1"), stacked("s2"),
                         to(np.array([float(st.cfg["clip"] or 0.0) for st in setups])))  # fmt: skip
        self.model_host = s.model
        self.model, self.form, self.woff = to(s.model), to(s.form_vec), to(s.woff)
        self.eval_form = s.eval_form_vec
        self.d_eval_form = to(self.eval_form)
        shape = (R, L * D, s.B, H)
        self.state = State(stacked("h"), stacked("c"), to(np.zeros(shape[1:], dt)),
                           cuda.device_array(shape, dt), cuda.device_array(shape, dt))  # fmt: skip
        off = layout(int(s.model[0]), L, D, s.T, s.B, s.I0, H)
        self.work = self._work(off, s.B, int(s.form_vec[F_HEAD]), with_grads=True)
        self.data = _DeviceData(cuda)
        self.data_key = None
        self.eval_data: dict[int, _DeviceData] = {}
        self.eval_bufs: dict[int, tuple] = {}

    def _work(self, off: np.ndarray, B: int, head: int, with_grads: bool):
        from rnnfast.cuda._train_kernel import Work  # noqa: PLC0415

        s, cuda, R = self.setups[0], self.cuda, self.R
        dt = s.dt
        ncols = s.T * B if head == HEAD_ALL else B
        embed = s.form.inputs == "embed"
        return Work(cuda.to_device(np.zeros((R, int(off[-1])), dt)), cuda.to_device(off),
                    cuda.device_array((R, s.theta.size if with_grads else 1), dt),
                    cuda.device_array((R, s.C * ncols), dt),
                    cuda.device_array((R, s.C * ncols if with_grads else 1), dt),
                    cuda.to_device(np.zeros((R, ncols), np.int32)),
                    cuda.to_device(np.zeros((R, s.C * ncols), dt)),
                    cuda.to_device(np.zeros((R, s.T * B if embed else 1), np.int32)),
                    cuda.to_device(np.full((R, B), s.T, np.int64)))  # fmt: skip

    def warm_up(self) -> None:
        """Compile the kernels (or load them from the cache) with launches of zero updates."""
        dt = self.setups[0].dt

        def z(kind, ndim=3):
            return self.cuda.to_device(np.zeros((1,) * ndim, kind))

        placeholder = Data(z(dt), z(np.uint8), z(np.int32), z(np.int32), z(dt), z(np.int64), 1.0,
                           z(np.int64, 2))  # fmt: skip
        self._launch(placeholder, [0], 0, 0, 0, False)
        if self.setups[0].data.evaluations:
            self.evaluate(0, [0], n_updates=0)

    def upload(self, datas: list[Data], key) -> Data:
        """The runs' epoch data (RunSetup.epoch_data), on the device once per epoch."""
        if self.data_key != key:
            self.dev_data = self.data.put(datas)
            self.data_key = key
        return self.dev_data

    def _launch(self, data: Data, active: list[int], u0: int, n: int, step0: int, reset: bool):
        from rnnfast.cuda._train_kernel import Out, train_kernel  # noqa: PLC0415

        cuda, R = self.cuda, self.R
        out = Out(cuda.device_array((R, max(n, 1)), np.float64),
                  cuda.device_array((R, max(n, 1)), np.float64),
                  cuda.device_array(R, np.int64))  # fmt: skip
        runs = cuda.to_device(np.array(active, np.int64))
        train_kernel[len(active), self.threads](self.model, self.form, self.woff, runs,
                                                self.theta, self.opt, data, self.state,
                                                self.work, u0, n, step0, reset, out)  # fmt: skip
        return out

    def run(self, data: Data, active: list[int], u0: int, n: int, step0: int, reset: bool):
        """Updates u0..u0+n-1 for the active runs; returns (losses, errors, done) (R, ...)."""
        out = self._launch(data, active, u0, n, step0, reset)
        return out.losses.copy_to_host(), out.errors.copy_to_host(), out.done.copy_to_host()

    def evaluate(self, k: int, active: list[int], n_updates: int | None = None) -> dict:
        """{run: (loss sum, correct, counted)} of evaluation k for the active runs, as
        rnnfast.cpu._train.evaluate (one launch; blocks take batch columns of each run)."""
        from rnnfast.cuda._api import launch_shape  # noqa: PLC0415
        from rnnfast.cuda._layers import layout  # noqa: PLC0415
        from rnnfast.cuda._train_kernel import EvalOut, State, eval_kernel  # noqa: PLC0415

        cuda, s = self.cuda, self.setups[0]
        evs = {r: self.setups[r].eval_data(k) for r in active}
        first = evs[active[0]]
        for r, (_, U, n_valid, batch) in evs.items():
            if (U, n_valid, batch) != first[1:]:
                raise ValueError(
                    f"data: runs trained together need evaluation data of one shape; run {r} "
                    f"evaluates {n_valid} sequences in {U} batches of {batch}, run "
                    f"{active[0]} {first[2]} in {first[1]} of {first[3]}"
                )
        _, U, n_valid, batch = first
        if k not in self.eval_data:
            self.eval_data[k] = _DeviceData(cuda)
        datas = [evs.get(r, first)[0] for r in range(self.R)]
        data = self.eval_data[k].put(datas)
        if batch not in self.eval_bufs:
            off = _forward_layout(layout(int(s.model[0]), self.L, self.D, s.T, batch, s.I0,
                                         self.H))  # fmt: skip
            shape = (self.R, self.L * self.D, batch, self.H)
            h, c = cuda.device_array(shape, s.dt), cuda.device_array(shape, s.dt)
            model = self.model_host.copy()
            model[M_B] = batch
            self.eval_bufs[batch] = (cuda.to_device(model), State(h, c, h[0], h, c),
                                     self._work(off, batch, int(self.eval_form[F_HEAD]),
                                                with_grads=False))  # fmt: skip
        model, state, work = self.eval_bufs[batch]
        blocks, threads, bc = launch_shape(self.H, batch)
        out = EvalOut(cuda.device_array((self.R, blocks), np.float64),
                      cuda.device_array((self.R, blocks), np.int64),
                      cuda.device_array((self.R, blocks), np.int64))  # fmt: skip
        runs = cuda.to_device(np.array(active, np.int64))
        n = U if n_updates is None else n_updates
        eval_kernel[len(active) * blocks, threads](model, self.d_eval_form, self.woff, runs,
                                                   self.theta, data, state, work, n, n_valid,
                                                   bc, out)  # fmt: skip
        loss, correct, counted = (a.copy_to_host() for a in out)
        # the blocks' partial sums in block order: the same bits on every launch
        return {r: (float(sum(loss[r].tolist())), int(correct[r].sum()), int(counted[r].sum()))
                for r in active}  # fmt: skip

    def sync(self, r: int) -> None:
        """Run r's parameters back into its RunSetup."""
        self.setups[r].theta[:] = self.theta[r].copy_to_host()

    def fetch(self, r: int, live: dict[str, np.ndarray]) -> None:
        """Run r's live arrays (rnnfast.checkpoint.LIVE) from the device into `live`."""
        rows = {"theta": self.theta, "s1": self.opt.s1, "s2": self.opt.s2, "h": self.state.h,
                "c": self.state.c}  # fmt: skip
        for name, dev in rows.items():
            live[name][...] = dev[r].copy_to_host()


def train_group(
    configs: Sequence[dict[str, Any]],
    data: Any = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoints: Sequence[checkpoint.Target | None] | None = None,
    live: Sequence[Any] | None = None,
) -> list[TrainResult]:
    """Train runs that share shapes together on the GPU; see the module docstring.

    data: passed to every run's task as rnnfast.train's data argument (RunSetup(cfg, data)).
    progress(updates_done, updates_total) is called after every interval (counting the
    updates of the first run of the runs in lockstep). checkpoints: one target (or None: no
    checkpoints) per config; a run with a target resumes from its latest usable checkpoint
    (its result's info["resumed"] says from where) and checkpoints by its checkpoint_every.
    live: one rnnfast.live.Reporter (or None) per config, told each run's progress.
    Each result's info["cuda_group_size"] is the number of runs that shared its launches."""
    require()
    if not configs:
        return []
    for name, per_run in (("checkpoints", checkpoints), ("live", live)):
        if per_run is not None and len(per_run) != len(configs):
            raise ValueError(f"{name}: expected one entry or None per config ({len(configs)}), "
                             f"got {len(per_run)}")  # fmt: skip
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
    setups = [RunSetup(c, data) for c in cfgs]
    starts = [_start(s) for s in setups]
    cks = [None if t is None else _checkpoints(t, s, live)
           for t, s, live in zip(checkpoints or [None] * len(setups), setups, starts,
                                 strict=True)]  # fmt: skip
    # runs continue in lockstep only from one position: a set per position, the start first
    sets: dict[int, list[int]] = {}
    for r, ck in enumerate(cks):
        sets.setdefault(ck.resume.step if ck is not None and ck.resume else 0, []).append(r)
    results: list = [None] * len(setups)
    for _, runs in sorted(sets.items()):
        reporters = [live[r] if live is not None else None for r in runs]
        together = _lockstep([setups[r] for r in runs], [starts[r] for r in runs],
                             [cks[r] for r in runs], progress, t_start, reporters)  # fmt: skip
        for r, res in zip(runs, together, strict=True):
            res.info["cuda_group_size"] = len(runs)
            results[r] = res
    return results


def _checkpoints(target: checkpoint.Target, s: RunSetup,
                 live: dict[str, np.ndarray]) -> checkpoint.Checkpoints:  # fmt: skip
    """A run's Checkpoints, loaded: its live arrays (on the host yet) restored if a usable
    checkpoint exists. The layout names the backend, the device and the block size."""
    from rnnfast.cuda import device_name  # noqa: PLC0415

    layout = {"backend": "cuda", "device": device_name(), "threads": _block_threads(s)}
    ck = checkpoint.Checkpoints(target, s.cfg["checkpoint_every"], live, layout,
                                s.updates_per_epoch, s.data.epochs)  # fmt: skip
    ck.load()
    return ck


def _lockstep(setups: list[RunSetup], starts: list[dict[str, np.ndarray]],
              cks: list[checkpoint.Checkpoints | None], progress, t_start: float,
              reporters: list) -> list[TrainResult]:  # fmt: skip
    """Train runs that continue from one position on one _Group: one launch per interval."""
    t0 = time.perf_counter()
    group = _Group(setups, starts)
    group.warm_up()
    compile_time = time.perf_counter() - t0
    for r, ck in enumerate(cks):
        if ck is not None:  # a save copies the run's rows from the device first
            ck.fetch = functools.partial(group.fetch, r, ck.live)
    gens = [steps(s, compile_time, progress if i == 0 else None, t_start, cks[i], reporters[i])
            for i, s in enumerate(setups)]  # fmt: skip
    reqs: dict[int, tuple] = {r: next(g) for r, g in enumerate(gens)}
    results: list = [None] * len(gens)

    def answer(r: int, value) -> None:
        try:
            reqs[r] = gens[r].send(value)
        except StopIteration as stop:
            results[r] = stop.value
            del reqs[r]

    while reqs:
        syncs = [r for r, q in reqs.items() if q[0] == "sync"]
        for r in syncs:
            group.sync(r)
            answer(r, None)
        evals = sorted((q[1], r) for r, q in reqs.items() if q[0] == "evaluate")
        if evals:  # every run at the same evaluation is served by one launch
            k = evals[0][0]
            active = [r for kk, r in evals if kk == k]
            for r, value in group.evaluate(k, active).items():
                answer(r, value)
            continue
        if syncs:
            continue
        # runs still training are in lockstep: the same epoch, update range and step
        r0 = min(reqs)
        _, _, u0, n, step0, _, _, reset = reqs[r0]
        active = [r for r, q in reqs.items() if q[2:5] == (u0, n, step0)]
        first = reqs[r0][1]  # a finished run's row gets another run's data: it is not read
        dev = group.upload([reqs[r][1] if r in reqs else first for r in range(len(gens))],
                           step0 - u0)  # fmt: skip
        losses, errors, done = group.run(dev, active, u0, n, step0, reset)
        for r in active:
            k = int(done[r])
            m = min(k + 1, n)  # a diverged update's loss is kept
            reqs[r][5][:m] = losses[r, :m]
            reqs[r][6][:m] = errors[r, :m]
            answer(r, k)
    return results
