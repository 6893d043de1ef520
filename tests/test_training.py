"""rnnfast.training.train: the fused compiled loop against an independent NumPy computation.

The oracle: rnnfast.forward/backward with the reference backend, a NumPy linear head with its
loss, and the optimizer formulas (torch.optim's) written out in NumPy, starting from the
parameters the trainer's documented seed streams give (checked first). Updates are driven one
at a time through the CPU driver's run_updates so that every intermediate state can be compared.
"""

import numpy as np
import pytest

import rnnfast
from rnnfast.config import resolve
from rnnfast.cpu.trainer import CpuTrainer
from rnnfast.params import init_params
from rnnfast.run_setup import INTERVAL, RunSetup
from rnnfast.seqdata import batch_order
from rnnfast.tasks import addition, dependency, mnist
from rnnfast.tasks.idx import write_idx
from rnnfast.training import train

RTOL = 1e-10


class _Trainer:
    """A run's setup and its CPU driver, stepped by hand."""

    def __init__(self, cfg: dict) -> None:
        self.setup = RunSetup(cfg)
        self.cpu = CpuTrainer(self.setup)

    def params(self) -> dict[str, np.ndarray]:
        return self.setup.params()

    def epoch_data(self, epoch: int):
        return self.setup.epoch_data(epoch)

    def run_updates(self, *args) -> int:
        return self.cpu.run_updates(*args)


def dep_config(**kw) -> dict:
    return {"task": "dependency", "sequence_length": 400, "batch_size": 8, "dtype": "float64", **kw}


# ---------------------------------------------------------------------------- the oracle


def initial_params(cfg: dict, I0: int, C: int) -> dict[str, np.ndarray]:
    """The documented initialisation: stream default_rng([seed, 0]) seeds init_params, then
    draws the head U(-1/sqrt(F), 1/sqrt(F)) (weight, then bias)."""
    rng = np.random.default_rng([cfg["seed"], 0])
    D = 2 if cfg["bidirectional"] else 1
    params = init_params(cfg["cell"], I0, cfg["hidden_size"], num_layers=cfg["num_layers"],
                         bidirectional=cfg["bidirectional"], bias=cfg["bias"],
                         dtype=cfg["dtype"], seed=int(rng.integers(2**63)))  # fmt: skip
    F = D * cfg["hidden_size"]
    bound = 1 / np.sqrt(F)
    params["head.weight"] = rng.uniform(-bound, bound, (C, F)).astype(cfg["dtype"])
    if cfg["task"] != "addition":
        params["head.bias"] = rng.uniform(-bound, bound, C).astype(cfg["dtype"])
    return params


def dependency_rows(cfg: dict, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(B0, N) x and y rows of an epoch, from the documented stream default_rng([seed, 1, e])."""
    rng = np.random.default_rng([cfg["seed"], 1, epoch])
    x, y = dependency.generate(cfg["sequence_length"], cfg["lags"], cfg["shifts"], cfg["base"], rng)
    return dependency.batchify(x, y, cfg["batch_size"])


def one_hot_inputs(xrows: np.ndarray, first: int, T: int, dtype) -> np.ndarray:
    """(T, B0, 2) one-hot inputs of columns first .. first+T-1; zeros for columns < 0."""
    B0 = xrows.shape[0]
    x = np.zeros((T, B0, 2), dtype)
    for t in range(T):
        col = first + t
        if col >= 0:
            bit = xrows[:, col].astype(dtype)
            x[t, :, 0] = 1 - bit
            x[t, :, 1] = bit
    return x


def split(params):
    rnn = {k: v for k, v in params.items() if not k.startswith("head.")}
    return rnn, params["head.weight"], params.get("head.bias")


def ce_head(out: np.ndarray, W, b, y: np.ndarray, scale: float):
    """Softmax cross-entropy of logits out @ W.T + b against y; returns (sum of losses,
    dout, dW, db) with the gradients of scale * (sum of losses)."""
    z = out @ W.T + (b if b is not None else 0)  # (..., C)
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=-1, keepdims=True)
    losses = (np.log(s) + m)[..., 0] - np.take_along_axis(z, y[..., None], -1)[..., 0]
    dz = e / s
    np.put_along_axis(dz, y[..., None], np.take_along_axis(dz, y[..., None], -1) - 1, -1)
    dz *= scale
    F = out.shape[-1]
    dW = dz.reshape(-1, W.shape[0]).T @ out.reshape(-1, F)
    db = dz.reshape(-1, W.shape[0]).sum(axis=0)
    return losses.sum(), dz @ W, dW, db


def rnn_state(cfg, state):
    return tuple(state) if cfg["cell"] == "lstm" else state


def zero_state(cfg, B: int):
    h = np.zeros((cfg["num_layers"], B, cfg["hidden_size"]), cfg["dtype"])
    return (h, h.copy()) if cfg["cell"] == "lstm" else h


def tf_update(cfg, params, xrows, yrows, u, state):
    """Loss, gradients and final state of "tf" update u: columns [u*n, (u+1)*n), loss mean
    over batch and steps, gradients inside the chunk only."""
    n = cfg["num_steps"]
    rnn, W, b = split(params)
    x = one_hot_inputs(xrows, u * n, n, cfg["dtype"])
    y = np.ascontiguousarray(yrows[:, u * n : (u + 1) * n].T).astype(np.int64)  # (T, B0)
    out, new_state, cache = rnnfast.forward(cfg["cell"], rnn, x, state,
                                            nonlinearity=cfg["nonlinearity"],
                                            backend="reference")  # fmt: skip
    total, dout, dW, db = ce_head(out, W, b, y, 1.0 / y.size)
    g = rnnfast.backward(cfg["cell"], rnn, cache, dout, None, backend="reference")
    grads = {k: g[k] for k in rnn}
    grads["head.weight"] = dW
    if b is not None:
        grads["head.bias"] = db
    return total / y.size, grads, new_state


def true_update(cfg, params, xrows, yrows, u, states):
    """ "true" truncation, update u: for every target column c in [u*n, (u+1)*n), a window of
    the n columns ending at c (zero input before column 0), started from that window's own
    carried state (states[i], i = c - u*n); loss at the window's last step, mean over all
    n*B0 targets. Returns loss, gradients and the new per-window states."""
    n = cfg["num_steps"]
    rnn, W, b = split(params)
    B0 = xrows.shape[0]
    scale = 1.0 / (n * B0)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    total = 0.0
    new_states = []
    for i in range(n):
        c = u * n + i
        x = one_hot_inputs(xrows, c - n + 1, n, cfg["dtype"])
        out, st, cache = rnnfast.forward(cfg["cell"], rnn, x, states[i],
                                         nonlinearity=cfg["nonlinearity"],
                                         backend="reference")  # fmt: skip
        loss_i, dlast, dW, db = ce_head(out[-1], W, b, yrows[:, c].astype(np.int64), scale)
        total += loss_i
        dout = np.zeros_like(out)
        dout[-1] = dlast
        g = rnnfast.backward(cfg["cell"], rnn, cache, dout, None, backend="reference")
        for k in rnn:
            grads[k] += g[k]
        grads["head.weight"] += dW
        if b is not None:
            grads["head.bias"] += db
        new_states.append(st)
    return total * scale, grads, new_states


class NumpyOptimizer:
    """torch.optim's update rules (no weight decay), per parameter array."""

    def __init__(self, cfg: dict):
        self.name, self.lr = cfg["optimizer"], cfg["lr"]
        self.clip = cfg["clip"]
        h = {k: cfg[k] for k in ("momentum", "beta1", "beta2", "eps", "alpha",
                                 "initial_accumulator") if cfg[k] is not None}  # fmt: skip
        default_eps = {"sgd": 0.0, "adagrad": 1e-10, "adam": 1e-8, "rmsprop": 1e-8}
        self.mu = h.get("momentum", 0.0)
        self.b1, self.b2 = h.get("beta1", 0.9), h.get("beta2", 0.999)
        self.alpha = h.get("alpha", 0.99)
        self.eps = h.get("eps", default_eps[self.name])
        self.acc0 = h.get("initial_accumulator", 0.1)
        self.s1: dict = {}
        self.s2: dict = {}
        self.t = 0

    def clip_grads(self, grads: dict) -> float:
        norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        if self.clip > 0 and self.clip / (norm + 1e-6) < 1:
            for k in grads:
                grads[k] = grads[k] * (self.clip / (norm + 1e-6))
        return norm

    def step(self, params: dict, grads: dict) -> dict:
        self.clip_grads(grads)
        self.t += 1
        t, lr, out = self.t, self.lr, {}
        for k, p in params.items():
            g = grads[k]
            if self.name == "sgd":
                if self.mu > 0:
                    self.s1[k] = self.mu * self.s1.get(k, 0) + g
                    g = self.s1[k]
                out[k] = p - lr * g
            elif self.name == "adagrad":
                self.s1[k] = self.s1.get(k, self.acc0) + g * g
                out[k] = p - lr * g / (np.sqrt(self.s1[k]) + self.eps)
            elif self.name == "adam":
                self.s1[k] = self.b1 * self.s1.get(k, 0) + (1 - self.b1) * g
                self.s2[k] = self.b2 * self.s2.get(k, 0) + (1 - self.b2) * g * g
                mhat = self.s1[k] / (1 - self.b1**t)
                vhat = self.s2[k] / (1 - self.b2**t)
                out[k] = p - lr * mhat / (np.sqrt(vhat) + self.eps)
            else:  # rmsprop
                self.s1[k] = self.alpha * self.s1.get(k, 0) + (1 - self.alpha) * g * g
                out[k] = p - lr * g / (np.sqrt(self.s1[k]) + self.eps)
        return out


def assert_params_close(got: dict, expected: dict, before: dict, rtol=RTOL, what=""):
    assert sorted(got) == sorted(expected)
    for k in expected:
        assert got[k].dtype == expected[k].dtype, k
        np.testing.assert_allclose(
            got[k], expected[k], rtol=rtol, atol=1e-14, err_msg=f"{what} {k}"
        )
        # the update itself, not only the (much larger) parameter values
        np.testing.assert_allclose(got[k] - before[k], expected[k] - before[k], rtol=1e-7,
                                   atol=1e-15, err_msg=f"{what} update of {k}")  # fmt: skip
        if not np.array_equal(expected[k], before[k]):
            assert not np.array_equal(got[k], before[k]), f"{what} {k} did not change"
    assert any(not np.array_equal(got[k], before[k]) for k in got), f"{what} nothing changed"


def step_trainer(tr: _Trainer, data, u: int, losses: np.ndarray) -> None:
    errors = np.empty_like(losses)
    done = tr.run_updates(data, u, 1, u, losses[u:], errors[u:])
    assert done == 1


# ---------------------------------------------------------------------------- a, c: "tf"

MODELS = {
    "rnn-tanh": {"cell": "rnn"},
    "rnn-relu-2layers-nobias": {
        "cell": "rnn",
        "nonlinearity": "relu",
        "num_layers": 2,
        "bias": False,
        "hidden_size": 3,
    },
    "lstm-2layers": {"cell": "lstm", "num_layers": 2, "hidden_size": 3},
    "gru-nobias": {"cell": "gru", "bias": False, "hidden_size": 5},
    "rnn-sigmoid-steps1": {"cell": "rnn", "nonlinearity": "sigmoid", "num_steps": 1},
}
OPTIMIZERS = {
    "adagrad": {},  # the default: adagrad 0.1, initial accumulator 0.1
    "sgd": {"optimizer": "sgd", "lr": 0.5},
    "sgd-momentum": {"optimizer": "sgd", "lr": 0.3, "momentum": 0.9},
    "adam": {"optimizer": "adam", "lr": 0.01},
    "adam-betas": {"optimizer": "adam", "lr": 0.01, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6},
    "rmsprop": {"optimizer": "rmsprop", "lr": 0.01, "alpha": 0.9},
    "adagrad-clip": {"clip": 0.05, "initial_accumulator": 0.5},
    "sgd-clip": {"optimizer": "sgd", "lr": 1.0, "clip": 0.02},
}
CASES = (
    [(m, "adagrad") for m in MODELS]
    + [("lstm-2layers", o) for o in OPTIMIZERS if o != "adagrad"]
    + [("rnn-tanh", o) for o in OPTIMIZERS if o != "adagrad"]
)


@pytest.mark.parametrize("model, opt", CASES)
def test_tf_updates_equal_independent_computation(model, opt):
    cfg = resolve(dep_config(**MODELS[model], **OPTIMIZERS[opt]))
    tr = _Trainer(cfg)
    params = initial_params(cfg, 2, 2)
    # the documented initialisation (seed stream [seed, 0]) and data stream ([seed, 1, epoch])
    for k, v in tr.params().items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    data = tr.epoch_data(1)
    xrows, yrows = dependency_rows(cfg, 1)
    np.testing.assert_array_equal(data.xt, xrows)
    np.testing.assert_array_equal(data.yc, yrows)

    opt_np = NumpyOptimizer(cfg)
    state = zero_state(cfg, cfg["batch_size"])
    losses = np.full(4, np.nan)
    for u in range(3):
        loss, grads, state = tf_update(cfg, params, xrows, yrows, u, rnn_state(cfg, state))
        if cfg["clip"] > 0:
            norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
            assert norm > 2 * cfg["clip"], "the test must make clipping active"
        new = opt_np.step(params, grads)
        step_trainer(tr, data, u, losses)
        np.testing.assert_allclose(losses[u], loss, rtol=RTOL, err_msg=f"loss of update {u}")
        assert_params_close(tr.params(), new, params, what=f"update {u}:")
        params = new


def test_tf_loss_of_update_2_uses_update_1_final_state():
    """State carrying: update 2 starts from update 1's final state (h and c, computed with the
    parameters before update 1), not from zero."""
    cfg = resolve(dep_config(cell="lstm", hidden_size=4))
    params = initial_params(cfg, 2, 2)
    xrows, yrows = dependency_rows(cfg, 1)
    loss0, grads, state1 = tf_update(cfg, params, xrows, yrows, 0, None)
    params1 = NumpyOptimizer(cfg).step(params, grads)
    carried, _, _ = tf_update(cfg, params1, xrows, yrows, 1, tuple(state1))
    from_zero, _, _ = tf_update(cfg, params1, xrows, yrows, 1, None)
    h_only, _, _ = tf_update(cfg, params1, xrows, yrows, 1, (state1[0], 0 * state1[1]))
    assert min(abs(carried - from_zero), abs(carried - h_only)) > 1e-6  # distinguishable

    r = train(dep_config(cell="lstm", hidden_size=4))
    loss = r.curves.query("metric == 'loss'")["value"].to_numpy()
    np.testing.assert_allclose(loss[:2], [loss0, carried], rtol=RTOL)


def test_epoch_two_starts_from_zero_state_on_fresh_data():
    cfg = resolve(dep_config(sequence_length=48, batch_size=4, num_steps=4, epochs=2))
    per_epoch = 48 // 4 // 4
    params = initial_params(cfg, 2, 2)
    opt_np = NumpyOptimizer(cfg)
    expected = []
    for epoch in (1, 2):
        xrows, yrows = dependency_rows(cfg, epoch)
        state = None
        for u in range(per_epoch):
            loss, grads, state = tf_update(cfg, params, xrows, yrows, u, state)
            params = opt_np.step(params, grads)
            expected.append(loss)
    r = train(cfg)
    got = r.curves.query("metric == 'loss'")
    np.testing.assert_allclose(got["value"], expected, rtol=RTOL)
    np.testing.assert_array_equal(got["step"], np.arange(1, 2 * per_epoch + 1))
    np.testing.assert_array_equal(got["epoch"], np.repeat([1, 2], per_epoch))
    assert_params_close(r.params, params, initial_params(cfg, 2, 2), what="final")


# ---------------------------------------------------------------------------- b: "true"


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_true_truncation_equals_independent_windows(cell):
    cfg = resolve(dep_config(truncation="true", cell=cell, num_steps=4, batch_size=3,
                             sequence_length=3 * 40, hidden_size=3))  # fmt: skip
    n, B0 = cfg["num_steps"], cfg["batch_size"]
    tr = _Trainer(cfg)
    assert tr.setup.B == n * B0 and tr.setup.updates_per_epoch == 40 // n
    params = initial_params(cfg, 2, 2)
    for k, v in tr.params().items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    data = tr.epoch_data(1)
    xrows, yrows = dependency_rows(cfg, 1)
    opt_np = NumpyOptimizer(cfg)
    states = [zero_state(cfg, B0)] * n
    losses = np.full(4, np.nan)
    for u in range(4):
        loss, grads, states = true_update(cfg, params, xrows, yrows, u,
                                          [rnn_state(cfg, s) for s in states])  # fmt: skip
        new = opt_np.step(params, grads)
        step_trainer(tr, data, u, losses)
        np.testing.assert_allclose(losses[u], loss, rtol=RTOL, err_msg=f"loss of update {u}")
        assert_params_close(tr.params(), new, params, what=f"update {u}:")
        params = new


def test_true_and_tf_differ_and_true_backpropagates_n_steps_for_every_target():
    """With n = 1 both styles are the same computation (one step, state carried)."""
    base = dep_config(num_steps=1, sequence_length=400, batch_size=8)
    tf = train({**base, "truncation": "tf"})
    true = train({**base, "truncation": "true"})
    np.testing.assert_allclose(true.curves["value"], tf.curves["value"], rtol=1e-12)
    base = dep_config(num_steps=5)
    tf = train({**base, "truncation": "tf"})
    true = train({**base, "truncation": "true"})
    assert true.info["batch_size_effective"] == 5 * 8 and tf.info["batch_size_effective"] == 8
    assert len(true.curves) == len(tf.curves) == 400 // 8 // 5
    assert not np.allclose(true.curves["value"], tf.curves["value"])


# ---------------------------------------------------------------------------- d: reproducible


def write_mnist(directory, n_train=200, n_test=50, seed=0):
    """Tiny learnable IDX files: noise, and two bright columns at a place given by the label
    (so every image row carries the label)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split_, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for k, lab in enumerate(labels):
            images[k, :, 4 + 2 * int(lab) : 6 + 2 * int(lab)] = 255
        write_idx(directory / f"{split_}-images-idx3-ubyte", images, gzip=split_ == "train")
        write_idx(directory / f"{split_}-labels-idx1-ubyte", labels)
        out[split_] = (images, labels)
    return out


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    arrays = write_mnist(d)
    return d, arrays


def mnist_config(d, **kw) -> dict:
    return {"task": "mnist", "data_dir": str(d), "train_size": 200, "batch_size": 20,
            "hidden_size": 4, "epochs": 2, "lr": 1e-2, "dtype": "float64", **kw}  # fmt: skip


def assert_same_curves(a, b):
    assert (a.status, b.status) == ("ok", "ok")
    assert list(a.curves.columns[:4]) == ["step", "epoch", "metric", "value"]
    np.testing.assert_array_equal(a.curves["step"], b.curves["step"])
    np.testing.assert_array_equal(a.curves["epoch"], b.curves["epoch"])
    assert list(a.curves["metric"]) == list(b.curves["metric"])
    assert np.array_equal(a.curves["value"].to_numpy(), b.curves["value"].to_numpy())
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k


def configs_for_reproducibility(d):
    return {
        "dependency": {"task": "dependency", "sequence_length": 20_000, "epochs": 2},
        "dependency-true-lstm": {"task": "dependency", "sequence_length": 20_000,
                                 "truncation": "true", "cell": "lstm", "num_steps": 4},
        "addition-iamtrask": {"task": "addition", "updates": 2000},
        "addition-default": {"task": "addition", "init": "default", "updates": 2000},
        "mnist-rows": mnist_config(d, dtype="float32"),
        "mnist-pixels": mnist_config(d, variant="pixels", hidden_size=3, epochs=1),
        "mnist-permuted": mnist_config(d, variant="permuted", hidden_size=3, epochs=1),
    }  # fmt: skip


@pytest.mark.parametrize("name", ["dependency", "dependency-true-lstm", "addition-iamtrask",
                                  "addition-default", "mnist-rows", "mnist-pixels",
                                  "mnist-permuted"])  # fmt: skip
def test_same_config_gives_bit_identical_curves_and_other_seed_differs(name, mnist_dir):
    cfg = configs_for_reproducibility(mnist_dir[0])[name]
    a, b = train(cfg), train(cfg)
    assert_same_curves(a, b)
    other = train({**cfg, "seed": 1})
    assert other.status == "ok"
    assert len(other.curves) == len(a.curves)
    assert not np.array_equal(other.curves["value"].to_numpy(), a.curves["value"].to_numpy())


def test_train_accepts_its_own_resolved_config():
    r = train({"task": "dependency", "sequence_length": 20_000, "optimizer": "adam", "lr": 0.01})
    again = train(r.config)
    assert again.config == r.config
    assert_same_curves(again, r)


def test_more_epochs_do_not_change_the_earlier_ones():
    cfg = {"task": "dependency", "sequence_length": 20_000, "dtype": "float64"}
    one, three = train(cfg), train({**cfg, "epochs": 3})
    first = three.curves[three.curves["epoch"] == 1]
    assert np.array_equal(first["value"].to_numpy(), one.curves["value"].to_numpy())
    assert three.final["updates"] == 3 * one.final["updates"]


# ---------------------------------------------------------------------------- e: divergence


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_learning_rate_diverges_without_exception(dtype):
    # relu is unbounded: with sgd lr 1e4 the activations overflow within a few updates
    r = train({"task": "dependency", "sequence_length": 20_000, "optimizer": "sgd",
               "lr": 1e4, "nonlinearity": "relu", "hidden_size": 64, "dtype": dtype})  # fmt: skip
    assert r.status == "diverged"
    loss = r.curves.query("metric == 'loss'")
    n = len(loss)
    assert 1 < n < 100  # 100 updates in the epoch: it stopped early
    assert not np.isfinite(loss["value"].iloc[-1])
    assert np.isfinite(loss["value"].iloc[:-1]).all()
    np.testing.assert_array_equal(loss["step"], np.arange(1, n + 1))
    assert r.final["updates"] == n
    assert r.message and f"update {n} " in r.message and "epoch 1" in r.message
    assert {k: v.dtype for k, v in r.params.items()}["head.weight"] == np.dtype(dtype)


def test_divergence_late_in_a_run_keeps_the_curve_up_to_it(monkeypatch):
    """A NaN in the data of update 451 (in the third compiled interval): the run stops there
    and keeps the 450 finite losses and errors, bit-identical to an undisturbed run."""
    bad = 450
    assert bad > 2 * INTERVAL
    cfg = {"task": "addition", "updates": 1000, "dtype": "float64"}
    clean = train(cfg)
    original = RunSetup.epoch_data

    def poisoned(self, epoch):
        d = original(self, epoch)
        xd = d.xd.copy()
        xd[bad, 2 * 2] = np.nan  # input a of step 2 in update `bad`
        return d._replace(xd=xd)

    monkeypatch.setattr(RunSetup, "epoch_data", poisoned)
    r = train(cfg)
    assert r.status == "diverged"
    assert "update 451" in r.message
    for metric in ("loss", "error"):
        got = r.curves[r.curves["metric"] == metric]
        ref = clean.curves[clean.curves["metric"] == metric]
        np.testing.assert_array_equal(got["step"], np.arange(1, bad + 2))
        assert np.array_equal(got["value"].to_numpy()[:bad], ref["value"].to_numpy()[:bad])
        assert np.isnan(got["value"].iloc[-1])
    assert r.final["updates"] == bad + 1
    assert np.isnan(r.final["loss"])  # the mean of the last 100 includes the non-finite loss


# ---------------------------------------------------------------------------- f: dtypes


@pytest.mark.parametrize("task", ["dependency", "addition"])
def test_float32_and_float64_both_train_and_keep_their_dtype(task):
    extra = {"sequence_length": 20_000} if task == "dependency" else {"updates": 500}
    results = {dt: train({"task": task, "dtype": dt, **extra}) for dt in ("float32", "float64")}
    for dt, r in results.items():
        assert r.status == "ok"
        assert r.config["dtype"] == dt
        for k, v in r.params.items():
            assert v.dtype == np.dtype(dt), k
        assert r.curves["value"].dtype == np.float64
        assert np.isfinite(r.curves["value"]).all()
    a = results["float32"].curves["value"].to_numpy()
    b = results["float64"].curves["value"].to_numpy()
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)  # same initial parameters and data
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------------------- g: mnist


def mnist_accuracy(params: dict, cfg: dict, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy from rnnfast.forward (cpu) + a NumPy head on the last output."""
    T, I = mnist.shape_of(cfg["variant"])
    perm = mnist.permutation(cfg["variant"], cfg["permutation_seed"])
    flat = images.reshape(len(images), 784)[:, perm]
    x = mnist.to_float(flat, cfg["dtype"]).reshape(len(images), T, I).transpose(1, 0, 2)
    rnn, W, b = split(params)
    out, _, _ = rnnfast.forward(cfg["cell"], rnn, np.ascontiguousarray(x),
                                nonlinearity=cfg["nonlinearity"], backend="cpu")  # fmt: skip
    pred = np.argmax(out[-1] @ W.T + b, axis=1)
    return float(np.mean(pred == labels))


@pytest.mark.parametrize("variant, cell, eval_batch", [("rows", "lstm", 16),
                                                       ("rows", "gru", 1000),
                                                       ("pixels", "rnn", 7)])  # fmt: skip
def test_mnist_curve_layout_and_test_accuracy(mnist_dir, variant, cell, eval_batch):
    d, arrays = mnist_dir
    epochs, batch = 3, 30  # 200 // 30 = 6 updates per epoch, 20 images dropped
    cfg = mnist_config(d, variant=variant, cell=cell, epochs=epochs, batch_size=batch,
                       eval_batch=eval_batch, lr=3e-2)  # fmt: skip
    r = train(cfg)
    assert r.status == "ok"
    per_epoch = 200 // batch
    loss = r.curves[r.curves["metric"] == "loss"]
    acc = r.curves[r.curves["metric"] == "test_accuracy"]
    assert len(loss) == epochs * per_epoch == r.final["updates"]
    np.testing.assert_array_equal(loss["step"], np.arange(1, epochs * per_epoch + 1))
    np.testing.assert_array_equal(acc["step"], per_epoch * np.arange(1, epochs + 1))
    np.testing.assert_array_equal(acc["epoch"], np.arange(1, epochs + 1))
    assert set(r.curves["metric"]) == {"loss", "test_accuracy"}
    images, labels = arrays["t10k"]
    expected = mnist_accuracy(r.params, r.config, images, labels)
    assert acc["value"].iloc[-1] == expected == r.final["test_accuracy"]
    assert r.final["loss"] == np.mean(loss["value"].to_numpy()[-100:])


def test_mnist_learns_the_synthetic_task(mnist_dir):
    d, arrays = mnist_dir
    r = train(mnist_config(d, epochs=5, lr=3e-2, hidden_size=8))
    acc = r.curves[r.curves["metric"] == "test_accuracy"]["value"].to_numpy()
    assert acc[-1] >= 0.95  # chance is 0.1
    loss = r.curves[r.curves["metric"] == "loss"]["value"].to_numpy()
    assert loss[-10:].mean() < 0.5 * loss[:10].mean()


def test_mnist_first_update_equals_independent_computation(mnist_dir):
    d, arrays = mnist_dir
    cfg = resolve(mnist_config(d, cell="lstm", batch_size=10))
    tr = _Trainer(cfg)
    params = initial_params(cfg, 28, 10)
    for k, v in tr.params().items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    data = tr.epoch_data(1)
    order = batch_order(200, 10, np.random.default_rng([cfg["seed"], 2, 1]))
    np.testing.assert_array_equal(data.order, order)
    images, labels = arrays["train"]
    opt_np = NumpyOptimizer(cfg)
    losses = np.empty(2)
    for u in range(2):
        idx = order[u]
        x = mnist.to_float(images[idx].reshape(10, 28, 28), cfg["dtype"]).transpose(1, 0, 2)
        rnn, W, b = split(params)
        out, _, cache = rnnfast.forward("lstm", rnn, np.ascontiguousarray(x), backend="reference")
        total, dlast, dW, db = ce_head(out[-1], W, b, labels[idx].astype(np.int64), 0.1)
        dout = np.zeros_like(out)
        dout[-1] = dlast
        g = rnnfast.backward("lstm", rnn, cache, dout, None, backend="reference")
        grads = {k: g[k] for k in rnn} | {"head.weight": dW, "head.bias": db}
        new = opt_np.step(params, grads)
        step_trainer(tr, data, u, losses)
        np.testing.assert_allclose(losses[u], total / 10, rtol=RTOL)
        assert_params_close(tr.params(), new, params, what=f"update {u}:")
        params = new


# ---------------------------------------------------------------------------- h: addition


def test_addition_iamtrask_reproduces_the_published_errors():
    r = train({"task": "addition", "init": "iamtrask", "seed": 0, "dtype": "float64"})
    assert r.status == "ok"
    err = r.curves[r.curves["metric"] == "error"]
    np.testing.assert_array_equal(err["step"], np.arange(1, 10_001))  # step = update + 1
    printed = err.set_index("step")["value"].loc[np.arange(1, 10_001, 1000)].to_numpy()
    np.testing.assert_allclose(printed, addition.PUBLISHED_ERRORS, rtol=0, atol=1e-6)
    ref = addition.reference_train(seed=0)
    np.testing.assert_allclose(err["value"].to_numpy(), ref["errors"], rtol=0, atol=1e-9)
    w = ref["weights"]
    np.testing.assert_allclose(r.params["weight_ih_l0"], w["w_in"].T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.params["weight_hh_l0"], w["w_hh"].T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.params["head.weight"], w["w_out"].T, rtol=1e-9, atol=1e-12)
    assert set(r.params) == {"weight_ih_l0", "weight_hh_l0", "head.weight"}
    # loss = 1/2 sum over the bits of (y - o)^2 <= error^2 / 2 and >= error^2 / (2 * 8)
    loss = r.curves[r.curves["metric"] == "loss"]["value"].to_numpy()
    e = err["value"].to_numpy()
    assert np.all(loss <= e**2 / 2 + 1e-12) and np.all(loss >= e**2 / 16 - 1e-12)
    assert r.final["error"] == e[-1]
