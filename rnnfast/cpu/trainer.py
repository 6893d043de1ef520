"""The CPU training driver: a RunSetup's buffers, the thread policy and the compiled calls
(rnnfast/cpu/_train.py), serving rnnfast.run_setup.steps()'s requests.
"""

import time

import numpy as np

from rnnfast import live
from rnnfast.codes import HEAD_ALL, M_B
from rnnfast.cpu._chunks import dealt_ranks, num_chunks, train_sizes
from rnnfast.cpu._split import one_blas_thread, split_chunks
from rnnfast.cpu._threads import ThreadChoice
from rnnfast.cpu._train import ONEHOT_IDS_MIN, Optim, State, Work, evaluate, train_updates
from rnnfast.params import Spec
from rnnfast.run_setup import RunSetup, TrainResult, steps

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
# Chunked updates run in slices of about this long, so that a change of the machine's load
# (rnnfast.cpu._threads) is acted on within a fraction of a second; each slice costs one
# compiled call (tens of microseconds).
SLICE_SECONDS = 0.02


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


class _Buffers:
    """State and Work tuples for batch B (the compiled loops' named groups)."""

    def __init__(self, s: RunSetup, B: int, nchunks: int, head: int) -> None:
        spec, dt, T, I0, C = s.spec, s.dt, s.T, s.I0, s.C
        L, D, H = spec.num_layers, spec.directions, spec.hidden_size
        n_saved, n_scratch = train_sizes(int(s.model[0]), L, D, T, B, I0, H, nchunks)
        ncols = T * B if head == HEAD_ALL else B
        embed = s.form.inputs == "embed"
        shape = (L * D, B, H)
        zeros = np.zeros(shape, dt)
        self.state = State(np.zeros(shape, dt), np.zeros(shape, dt), zeros, zeros,
                           np.zeros(shape, dt), np.zeros(shape, dt))  # fmt: skip
        self.work = Work(
            np.zeros(int(n_saved), dt), np.zeros(int(n_scratch), dt), np.zeros_like(s.theta),
            np.zeros(C * ncols, dt), np.zeros(C * ncols, dt), np.zeros(ncols, dt),
            np.zeros(ncols, dt), np.zeros(ncols, np.int64), np.zeros(C * ncols, dt),
            np.zeros(I0 * T * B if embed and nchunks == 1 else 0, dt),
            np.zeros((T, B, I0) if embed and nchunks > 1 else (0, 0, 0), dt),
            np.zeros(B, np.int64),
            np.zeros(T * B if s.form.inputs == "onehot" and I0 >= ONEHOT_IDS_MIN else 0, np.int64),
        )  # fmt: skip


def _dealt(data, nchunks: int):
    """data with each batch (sorted by length) dealt to the batch chunks in turn, so that each
    chunk holds a like share of long and short sequences (rnnfast.cpu._chunks.dealt_ranks)."""
    B = data.order.shape[1]
    if data.lens.size == 0 or num_chunks(nchunks, B) == 1:
        return data
    return data._replace(order=np.ascontiguousarray(data.order[:, dealt_ranks(B, nchunks)]))


class CpuTrainer:
    """Serves steps()'s requests for one run on the CPU."""

    def __init__(self, setup: RunSetup) -> None:
        s = self.setup = setup
        self.nchunks = train_chunks(s.cfg, s.spec, s.T, s.B)
        self.pace = ThreadChoice()  # all threads or one, for this run's chunked updates
        self.buf = _Buffers(s, s.B, self.nchunks, s.form.head)
        self.optim = Optim(s.opt.code, s.hyper, s.s1, s.s2, float(s.cfg["clip"]))
        self._eval_bufs: dict[int, tuple[_Buffers, int, ThreadChoice]] = {}

    def warm_up(self) -> float:
        """Compile (or load from Numba's cache) the kernels this run uses; seconds taken."""
        t0 = time.perf_counter()
        nothing = np.zeros(0)
        self.run_updates(self.setup.epoch_data(1), 0, 0, 0, nothing, nothing)
        if self.setup.data.evaluations:
            self.evaluate(0, n_updates=0)
        return time.perf_counter() - t0

    def run_updates(self, data, u0: int, n: int, step0: int, losses, errors) -> int:
        """Updates u0 .. u0+n-1 (see rnnfast.cpu._train.train_updates). In batch chunks they
        run in slices of about SLICE_SECONDS, each on all threads or on one as measured
        fastest (rnnfast.cpu._threads); the slices change the time, never the results."""
        s, b, nc = self.setup, self.buf, self.nchunks
        data = _dealt(data, nc)
        args = (s.model, s.form_vec, s.theta, s.woff, self.optim, data, b.state, b.work)
        if nc == 1 or n == 0:
            return train_updates(*args, u0, n, step0, losses, errors, nc)
        done = 0
        while done < n:
            mode = self.pace.pick(time.perf_counter())
            per_update = self.pace.expected(mode)  # a probe's slice lasts SLICE_SECONDS too
            k = 1 if per_update is None else int(SLICE_SECONDS / per_update)  # 1: measure
            k = min(max(k, 1), n - done)
            ran = self.pace.run(train_updates, *args, u0 + done, k, step0 + done,
                                losses[done:], errors[done:], nc, units=k, mode=mode)  # fmt: skip
            done += ran
            if ran < k:  # a loss was not finite
                break
        return done

    def reset_state(self) -> None:
        self.buf.state.h[:] = 0
        self.buf.state.c[:] = 0

    def evaluate(self, k: int, n_updates: int | None = None) -> tuple[float, int, int]:
        s = self.setup
        data, U, n_valid, batch = s.eval_data(k)
        if batch not in self._eval_bufs:
            nc = train_chunks(s.cfg, s.spec, s.T, batch)
            self._eval_bufs[batch] = (_Buffers(s, batch, nc, s.eval_form.head), nc,
                                      ThreadChoice())  # fmt: skip
        bufs, nc, pace = self._eval_bufs[batch]
        model = s.model.copy()
        model[M_B] = batch
        n = U if n_updates is None else n_updates
        args = (model, s.eval_form_vec, s.theta, s.woff, data, n, n_valid, bufs.state,
                bufs.work, nc)  # fmt: skip
        # not dealt to the chunks: the padding of a short last batch must stay at its end
        with one_blas_thread(nc > 1):
            if nc == 1:
                loss, correct, counted = evaluate(*args)
            else:
                loss, correct, counted = pace.run(evaluate, *args, units=max(n, 1))
        return float(loss), int(correct), int(counted)

    def drive(self, gen) -> TrainResult:
        """Serve steps()'s requests (see rnnfast.run_setup.steps)."""
        try:
            req = next(gen)
            while True:
                if req[0] == "updates":
                    _, data, u, n, step, losses, errors, reset = req
                    if reset:
                        self.reset_state()
                    answer = self.run_updates(data, u, n, step, losses, errors)
                elif req[0] == "evaluate":
                    answer = self.evaluate(req[1])
                else:  # "sync": setup.theta is already current
                    answer = None
                req = gen.send(answer)
        except StopIteration as stop:
            return stop.value


def _checkpoints(tr: CpuTrainer, threads: int | None):
    """The run's rnnfast.checkpoint.Checkpoints, loaded (the live arrays restored if a usable
    checkpoint exists), or None outside a checkpoint session (rnnfast.train called directly)."""
    from rnnfast import checkpoint  # noqa: PLC0415

    target = checkpoint.current()
    if target is None:
        return None
    s = tr.setup
    live = {"theta": s.theta, "s1": s.s1, "s2": s.s2, "h": tr.buf.state.h, "c": tr.buf.state.c}
    layout = {"nchunks": tr.nchunks, "blas_threads": _blas_count(threads)}
    ck = checkpoint.Checkpoints(target, s.cfg["checkpoint_every"], live, layout,
                                s.updates_per_epoch, s.data.epochs)  # fmt: skip
    ck.load()
    return ck


def _blas_count(threads: int | None) -> int | None:
    """The BLAS threads products run on: `threads`, else the library's current count."""
    if threads is not None:
        return threads
    from threadpoolctl import threadpool_info  # noqa: PLC0415

    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def train_cpu(setup: RunSetup, progress, t_start: float) -> TrainResult:
    """Train one run; inside a rnnfast.checkpoint session it checkpoints and resumes, inside
    a rnnfast.live session it reports its progress."""
    tr = CpuTrainer(setup)
    compile_time = tr.warm_up()
    threads = blas_threads(setup.cfg, setup.spec, setup.T, setup.B)
    ck = _checkpoints(tr, threads)
    run = steps(setup, compile_time, progress, t_start, ck, live.current())
    if threads is None:
        return tr.drive(run)
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    with threadpool_limits(limits=threads, user_api="blas"):
        return tr.drive(run)
