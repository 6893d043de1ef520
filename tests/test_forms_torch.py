"""Every data form (rnnfast.seqdata) trained by rnnfast.train against PyTorch, update by update.

For each form a few updates of rnnfast.train are compared with an independent PyTorch run in
float64: the same initial parameters (RunSetup(resolve(cfg), data).params()), the same batches
rebuilt here from the documented rules (set mode: seqdata.batch_order with
default_rng([seed, 2, epoch]); stream mode: seqdata.stream_rows of the character ids, windows
of num_steps, the state carried and detached between updates; "true" truncation: T shifted
copies of each row, zero input before the start of the stream, the target at each copy's last
step), a model built by hand from torch.nn.RNN / LSTM / GRU (batch_first=False), nn.Linear and
nn.Embedding, torch's losses (cross_entropy, mse_loss, mean reduction),
torch.nn.utils.clip_grad_norm_ and the torch.optim optimizer of the same kind. Compared: the
loss of every update (the curve's "loss" points) and the final parameters, to 1e-9 relative;
for a validation split also the validation metrics of every epoch.

Sets with unequal lengths (data (x, y, lengths)) run torch on packed sequences
(pack_padded_sequence(enforce_sorted=False)): the per-sequence head reads h_n, per-step losses
are over the real steps only.

Also: the same config and seed give bit-identical curves and parameters twice, for every form.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import rnnfast
from rnnfast.config import resolve
from rnnfast.run_setup import RunSetup
from rnnfast.seqdata import batch_order, stream_rows

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

RTOL, ATOL = 1e-9, 1e-12
F64 = torch.float64


# ---------------------------------------------------------------------------- the cases


@dataclass
class Case:
    config: dict[str, Any]
    data: Any  # (x, y) arrays (sequences) or a str (text)
    clip_active: bool = False  # the test checks that clipping scaled some update


def _sequences(**kw) -> dict[str, Any]:
    return {"task": "sequences", "dtype": "float64", "valid_fraction": 0.0, "seed": 3, **kw}


def _text(**kw) -> dict[str, Any]:
    return {"task": "text", "dtype": "float64", "valid_fraction": 0.0, "epochs": 1, "seed": 5,
            **kw}  # fmt: skip


def _dense(rng, N, T, I):
    return rng.normal(0.0, 1.0, (N, T, I))


def _classes(rng, shape, C):
    y = rng.integers(0, C, shape)
    y.flat[0] = C - 1  # C classes whatever the draw
    return y


def _tokens(rng, N, T, V):
    x = rng.integers(0, V, (N, T))
    x.flat[0] = V - 1  # a vocabulary of V whatever the draw
    return x


def _lengths(rng, N, T):
    """Lengths in [1, T] with a 1 and a T among them, in random order."""
    lengths = rng.integers(1, T + 1, N)
    lengths[:2] = 1, T
    return rng.permutation(lengths)


def _stream_text(seed: int, n: int = 64) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("abcde "), n))


def make_case(name: str) -> Case:
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "dense-seq-classes-lstm-adam":  # 2 epochs: the batches reshuffled
        x, y = _dense(rng, 24, 6, 3), _classes(rng, 24, 3)
        cfg = _sequences(cell="lstm", hidden_size=5, batch_size=8, epochs=2, optimizer="adam",
                         lr=0.05)  # fmt: skip
        return Case(cfg, (x, y))
    if name == "dense-step-classes-gru-sgd-momentum":
        x, y = _dense(rng, 20, 5, 2), _classes(rng, (20, 5), 4)
        cfg = _sequences(cell="gru", hidden_size=6, batch_size=5, epochs=1, optimizer="sgd",
                         lr=0.3, momentum=0.9)  # fmt: skip
        return Case(cfg, (x, y))
    if name == "dense-seq-reals3-rnn-rmsprop-clip":
        x, y = _dense(rng, 18, 5, 4), rng.normal(0.0, 2.0, (18, 3))
        cfg = _sequences(cell="rnn", nonlinearity="tanh", hidden_size=7, batch_size=6,
                         epochs=2, optimizer="rmsprop", lr=0.02, clip=0.5)  # fmt: skip
        return Case(cfg, (x, y), clip_active=True)
    if name == "dense-step-reals2-lstm-2layers-bi-adam":
        x, y = _dense(rng, 16, 4, 3), rng.normal(0.0, 1.0, (16, 4, 2))
        cfg = _sequences(cell="lstm", hidden_size=4, num_layers=2, bidirectional=True,
                         batch_size=4, epochs=1, optimizer="adam", lr=0.03)  # fmt: skip
        return Case(cfg, (x, y))
    if name == "onehot-seq-classes-gru-bi-adagrad":
        x, y = _tokens(rng, 20, 6, 5), _classes(rng, 20, 3)
        cfg = _sequences(cell="gru", hidden_size=5, bidirectional=True, batch_size=5, epochs=1,
                         optimizer="adagrad", lr=0.1, initial_accumulator=0.5)  # fmt: skip
        return Case(cfg, (x, y))
    if name == "embed-step-classes-lstm-sgd":
        x, y = _tokens(rng, 20, 5, 7), _classes(rng, (20, 5), 3)
        cfg = _sequences(cell="lstm", hidden_size=6, embedding=4, batch_size=5, epochs=1,
                         optimizer="sgd", lr=0.5, momentum=0.5)  # fmt: skip
        return Case(cfg, (x, y))
    if name == "lengths-dense-seq-classes-lstm-2layers-bi-adam":
        x, y = _dense(rng, 24, 7, 3), _classes(rng, 24, 3)
        cfg = _sequences(cell="lstm", hidden_size=5, num_layers=2, bidirectional=True,
                         batch_size=8, epochs=2, optimizer="adam", lr=0.05)  # fmt: skip
        return Case(cfg, (x, y, _lengths(rng, 24, 7)))
    if name == "lengths-dense-seq-classes-lstm-wide-batch":  # 40 columns: several step widths
        x, y = _dense(rng, 80, 9, 3), _classes(rng, 80, 4)
        cfg = _sequences(cell="lstm", hidden_size=6, batch_size=40, epochs=2, optimizer="adam",
                         lr=0.05)  # fmt: skip
        return Case(cfg, (x, y, _lengths(rng, 80, 9)))
    if name == "lengths-dense-step-reals2-gru-sgd":
        x, y = _dense(rng, 20, 6, 2), rng.normal(0.0, 1.0, (20, 6, 2))
        cfg = _sequences(cell="gru", hidden_size=6, batch_size=5, epochs=1, optimizer="sgd",
                         lr=0.3, momentum=0.9)  # fmt: skip
        return Case(cfg, (x, y, _lengths(rng, 20, 6)))
    if name == "lengths-embed-step-classes-rnn-bi-rmsprop":
        x, y = _tokens(rng, 20, 5, 7), _classes(rng, (20, 5), 3)
        cfg = _sequences(cell="rnn", nonlinearity="relu", hidden_size=6, embedding=4,
                         bidirectional=True, batch_size=5, epochs=1, optimizer="rmsprop",
                         lr=0.01)  # fmt: skip
        return Case(cfg, (x, y, _lengths(rng, 20, 5)))
    if name == "lengths-onehot-seq-classes-gru-adagrad":
        x, y = _tokens(rng, 20, 6, 5), _classes(rng, 20, 4)
        cfg = _sequences(cell="gru", hidden_size=5, batch_size=5, epochs=2, optimizer="adagrad",
                         lr=0.1)  # fmt: skip
        return Case(cfg, (x, y, _lengths(rng, 20, 6)))
    if name == "text-tf-onehot-lstm-adam-clip":
        cfg = _text(cell="lstm", hidden_size=6, num_steps=5, batch_size=3, optimizer="adam",
                    lr=0.05, clip=0.1)  # fmt: skip
        return Case(cfg, _stream_text(1), clip_active=True)
    if name == "text-tf-embed-gru-rmsprop":
        cfg = _text(cell="gru", hidden_size=5, embedding=3, num_steps=5, batch_size=3,
                    optimizer="rmsprop", lr=0.01, epochs=2)  # fmt: skip
        return Case(cfg, _stream_text(2))
    if name == "text-true-onehot-rnn-sgd":
        cfg = _text(cell="rnn", hidden_size=5, num_steps=4, batch_size=3, truncation="true",
                    optimizer="sgd", lr=0.5)  # fmt: skip
        return Case(cfg, _stream_text(3, 52))
    raise KeyError(name)


CASES = [
    "dense-seq-classes-lstm-adam",
    "dense-step-classes-gru-sgd-momentum",
    "dense-seq-reals3-rnn-rmsprop-clip",
    "dense-step-reals2-lstm-2layers-bi-adam",
    "onehot-seq-classes-gru-bi-adagrad",
    "embed-step-classes-lstm-sgd",
    "text-tf-onehot-lstm-adam-clip",
    "text-tf-embed-gru-rmsprop",
    "text-true-onehot-rnn-sgd",
    "lengths-dense-seq-classes-lstm-2layers-bi-adam",
    "lengths-dense-step-reals2-gru-sgd",
    "lengths-embed-step-classes-rnn-bi-rmsprop",
    "lengths-onehot-seq-classes-gru-adagrad",
    "lengths-dense-seq-classes-lstm-wide-batch",
]


def make_valid_case(lengths: bool = False) -> Case:
    """Per-sequence classes with a validation split of a quarter of the data; with lengths,
    unequal ones and batches of 4 (the 10 validation sequences end in a short batch)."""
    rng = np.random.default_rng(10)
    x, y = _dense(rng, 40, 6, 3), _classes(rng, 40, 3)
    x[:, :, 0] += y[:, None]  # learnable, so accuracy is not trivially constant
    cfg = _sequences(cell="gru", hidden_size=5, batch_size=10, epochs=2, optimizer="adagrad",
                     lr=0.1, valid_fraction=0.25)  # fmt: skip
    if lengths:
        cfg["batch_size"] = 4
        return Case(cfg, (x, y, _lengths(rng, 40, 6)))
    return Case(cfg, (x, y))


# ---------------------------------------------------------------------------- the torch model


class Net(nn.Module):
    """[embedding or one-hot] -> torch.nn.RNN / LSTM / GRU -> linear head, float64."""

    def __init__(self, cfg: dict[str, Any], params: dict[str, np.ndarray]) -> None:
        super().__init__()
        I0 = params["weight_ih_l0"].shape[1]
        H, L, bi = cfg["hidden_size"], cfg["num_layers"], cfg["bidirectional"]
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cfg["cell"]]
        extra = {"nonlinearity": cfg["nonlinearity"]} if cfg["cell"] == "rnn" else {}
        self.lstm = cfg["cell"] == "lstm"
        self.H, self.D = H, 2 if bi else 1
        self.rnn = kind(I0, H, num_layers=L, bias=cfg["bias"], batch_first=False,
                        bidirectional=bi, dtype=F64, **extra)  # fmt: skip
        C, Fh = params["head.weight"].shape
        assert Fh == self.D * H
        self.head = nn.Linear(Fh, C, bias="head.bias" in params, dtype=F64)
        self.embedding = None
        if "embedding.weight" in params:
            V, E = params["embedding.weight"].shape
            assert E == I0
            self.embedding = nn.Embedding(V, E, dtype=F64)
        # strict: every key of rnnfast's parameters has its torch counterpart and vice versa
        self.load_state_dict({_torch_key(k): torch.tensor(v) for k, v in params.items()})

    def forward(self, inputs, state, per_step: bool, vocab: int = 0, mask=None, lengths=None):
        """inputs: (T, B, I) floats, or (T, B) int64 token ids (one-hot of `vocab`, or through
        the embedding); mask (T, B) zeroes the input of a step (before a stream's start);
        lengths (B,): packed sequences. Returns (logits (T, B, C) per step or (B, C) per
        sequence, final state)."""
        if inputs.dtype == torch.int64:
            x = self.embedding(inputs) if self.embedding is not None else (
                F.one_hot(inputs, vocab).to(F64))  # fmt: skip
            if mask is not None:
                x = x * mask[..., None]
        else:
            x = inputs
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, state = self.rnn(packed, state)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
            h_n = state[0] if self.lstm else state
            if per_step:
                return self.head(out), state
            feats = h_n[-1] if self.D == 1 else torch.cat([h_n[-2], h_n[-1]], dim=-1)
            return self.head(feats), state
        out, state = self.rnn(x, state)
        if per_step:
            feats = out
        elif self.D == 1:
            feats = out[-1]
        else:  # h_n of both directions: forward at the last step, reverse at step 0
            feats = torch.cat([out[-1, :, : self.H], out[0, :, self.H :]], dim=-1)
        return self.head(feats), state

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {_rnnfast_key(k): v.detach().numpy().copy() for k, v in self.state_dict().items()}


def _torch_key(key: str) -> str:
    return key if key.startswith(("head.", "embedding.")) else "rnn." + key


def _rnnfast_key(key: str) -> str:
    return key.removeprefix("rnn.")


def torch_optimizer(cfg: dict[str, Any], params):
    """torch.optim of the config's kind; unset hyperparameters: the defaults rnnfast documents
    (torch's, except adagrad's initial accumulator 0.1)."""
    name, lr = cfg["optimizer"], cfg["lr"]

    def get(key, default):
        return default if cfg[key] is None else cfg[key]

    if name == "adam":
        betas = (get("beta1", 0.9), get("beta2", 0.999))
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=get("eps", 1e-8))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=get("momentum", 0.0))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=get("alpha", 0.99), eps=get("eps", 1e-8))
    if name == "adagrad":
        acc0 = get("initial_accumulator", 0.1)
        return torch.optim.Adagrad(
            params, lr=lr, eps=get("eps", 1e-10), initial_accumulator_value=acc0
        )
    raise ValueError(name)


def loss_of(logits, targets, real=None):
    """Mean cross-entropy (int targets) or mean squared error (float targets) over all targets
    (and, for reals, over the outputs); real (T, B) bool: per-step targets that count."""
    if real is not None:
        logits, targets = logits[real], targets[real]
    if targets.dtype == torch.int64:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return F.mse_loss(logits, targets)


class TorchRun:
    """The independent PyTorch run: model, optimizer and one update at a time."""

    def __init__(self, cfg: dict[str, Any], params: dict[str, np.ndarray]) -> None:
        self.cfg = cfg
        self.net = Net(cfg, params)
        self.opt = torch_optimizer(cfg, self.net.parameters())
        self.losses: list[float] = []
        self.norms: list[float] = []  # gradient norms before clipping

    def update(self, inputs, targets, state, per_step, vocab=0, mask=None, lengths=None):
        """One update; returns the final state of the forward pass, detached."""
        self.opt.zero_grad()
        logits, state = self.net(inputs, state, per_step, vocab, mask, lengths)
        real = None
        if lengths is not None and per_step:
            real = torch.arange(inputs.shape[0])[:, None] < lengths[None, :]
        loss = loss_of(logits, targets, real)
        loss.backward()
        params = list(self.net.parameters())
        if self.cfg["clip"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg["clip"])
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        self.norms.append(float(norm))
        self.opt.step()
        self.losses.append(float(loss.detach()))
        if isinstance(state, tuple):
            return tuple(s.detach() for s in state)
        return state.detach()


# ---------------------------------------------------------------------------- torch runs


def _time_major(a: np.ndarray):
    """(B, T, ...) -> torch (T, B, ...)."""
    return torch.tensor(np.ascontiguousarray(np.swapaxes(a, 0, 1)))


def _is_tokens(x: np.ndarray) -> bool:
    return x.ndim == 2 and np.issubdtype(x.dtype, np.integer)


def _is_per_step(y: np.ndarray) -> bool:
    """The cases' targets: classes (N,) / (N, T), reals (N, C) / (N, T, C)."""
    return y.ndim == (2 if np.issubdtype(y.dtype, np.integer) else 3)


def set_batch(x: np.ndarray, y: np.ndarray, rows: np.ndarray):
    """Torch inputs and targets of the sequences `rows`, time-major."""
    xb = _time_major(x[rows]) if x.ndim == 3 else _time_major(x[rows].astype(np.int64))
    yb = y[rows]
    if np.issubdtype(y.dtype, np.integer):
        yb = yb.astype(np.int64)
    return xb, (_time_major(yb) if _is_per_step(y) else torch.tensor(yb))


def torch_set_run(cfg, x, y, params, valid=None,
                  lengths=None) -> tuple[TorchRun, list[dict[str, float]]]:  # fmt: skip
    """Epochs of batches of batch_size sequences in the order of
    batch_order(N, batch_size, default_rng([seed, 2, epoch])), each from a zero state;
    the metrics on `valid` (x, y) after each epoch."""
    run = TorchRun(cfg, params)
    vocab = int(x.max()) + 1 if _is_tokens(x) else 0
    per_step = _is_per_step(y)
    metrics = []
    for epoch in range(1, cfg["epochs"] + 1):
        order = batch_order(len(x), cfg["batch_size"], np.random.default_rng([cfg["seed"], 2,
                                                                              epoch]))  # fmt: skip
        for rows in order:
            lens = None if lengths is None else torch.tensor(lengths[rows])
            run.update(*set_batch(x, y, rows), None, per_step, vocab, lengths=lens)
        if valid is not None:
            xv, yv, *lv = valid  # (x, y[, lengths])
            metrics.append(evaluate_set(run.net, xv, yv, vocab, *lv))
    return run, metrics


def evaluate_set(net: Net, x, y, vocab, lengths=None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of per-sequence classes over all of (x, y)."""
    with torch.no_grad():
        xb, yb = set_batch(x, y, np.arange(len(x)))
        lens = None if lengths is None else torch.tensor(lengths)
        logits, _ = net(xb, None, False, vocab, lengths=lens)
        loss = F.cross_entropy(logits, yb)
        accuracy = (logits.argmax(-1) == yb).to(F64).mean()
    return {"valid_loss": float(loss), "valid_accuracy": float(accuracy)}


def torch_text_run(cfg, text: str, params) -> TorchRun:
    """A character stream: ids of sorted(set(text)), inputs ids[:-1] and targets ids[1:] cut
    into batch_size rows (stream_rows), windows of num_steps; the state starts at zero each
    epoch and is carried (detached) between updates."""
    vocab = sorted(set(text))
    ids = np.array([vocab.index(ch) for ch in text], np.int64)
    n, B0 = cfg["num_steps"], cfg["batch_size"]
    xr, yr = stream_rows(ids[:-1], B0), stream_rows(ids[1:], B0)
    U = xr.shape[1] // n
    assert U >= 3, "the case must carry the state over several windows"
    run = TorchRun(cfg, params)
    V = len(vocab)
    for _ in range(cfg["epochs"]):
        state = None
        for u in range(U):
            if cfg["truncation"] == "tf":
                window = slice(u * n, (u + 1) * n)
                inputs = torch.tensor(xr[:, window].T.copy())
                targets = torch.tensor(yr[:, window].T.copy())
                state = run.update(inputs, targets, state, True, V)
            else:
                inputs, mask, targets = true_batch(xr, yr, u, n)
                state = run.update(inputs, targets, state, False, V, mask)
    return run


def true_batch(xr: np.ndarray, yr: np.ndarray, u: int, n: int):
    """Update u of "true" truncation: copy i (batch columns i*B0 .. i*B0 + B0 - 1) of the B0
    rows reads columns u*n + i - n + 1 .. u*n + i (zero input before column 0) and has the
    target of column u*n + i at its last step."""
    B0 = xr.shape[0]
    ids = np.zeros((n, n * B0), np.int64)
    mask = np.zeros((n, n * B0))
    targets = np.zeros(n * B0, np.int64)
    for i in range(n):
        first = u * n + i - n + 1
        for t in range(n):
            if first + t >= 0:
                ids[t, i * B0 : (i + 1) * B0] = xr[:, first + t]
                mask[t, i * B0 : (i + 1) * B0] = 1.0
        targets[i * B0 : (i + 1) * B0] = yr[:, u * n + i]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(targets)


def initial_params(case: Case) -> dict[str, np.ndarray]:
    return RunSetup(resolve(case.config), case.data).params()


def torch_run(case: Case) -> TorchRun:
    params = initial_params(case)
    cfg = resolve(case.config)
    if cfg["task"] == "text":
        return torch_text_run(cfg, case.data, params)
    x, y, *lengths = case.data
    return torch_set_run(cfg, x, y, params, lengths=lengths[0] if lengths else None)[0]


# ---------------------------------------------------------------------------- checks


def losses_of(result) -> np.ndarray:
    return result.curves[result.curves["metric"] == "loss"]["value"].to_numpy()


def assert_params_close(got: dict, want: dict, initial: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == np.float64, k
        assert not np.array_equal(want[k], initial[k]), f"{k}: not trained by the case"
        np.testing.assert_allclose(got[k], want[k], rtol=RTOL, atol=ATOL, err_msg=k)


@pytest.mark.parametrize("name", CASES)
def test_updates_equal_pytorch(name):
    case = make_case(name)
    result = rnnfast.train(case.config, data=case.data)
    assert result.status == "ok", result.message
    run = torch_run(case)
    assert 2 <= len(run.losses) <= 8  # tiny cases
    np.testing.assert_allclose(losses_of(result), run.losses, rtol=RTOL, atol=ATOL)
    assert result.final["updates"] == len(run.losses)
    if case.clip_active:
        assert max(run.norms) > 2 * case.config["clip"], "the case must make clipping active"
    assert_params_close(result.params, run.net.numpy_params(), initial_params(case))


@pytest.mark.parametrize("lengths", [False, True], ids=["equal", "lengths"])
def test_validation_metrics_equal_pytorch_on_the_split(lengths):
    case = make_valid_case(lengths)
    cfg = resolve(case.config)
    x, y, *lens = case.data
    # the documented split: default_rng([seed, 3]) permutes the N sequences, the first
    # round(N * valid_fraction) of the permutation validate, each part in its original order
    N = len(x)
    n_valid = min(N - 1, max(1, round(N * cfg["valid_fraction"])))
    perm = np.random.default_rng([cfg["seed"], 3]).permutation(N)
    tr, va = np.sort(perm[n_valid:]), np.sort(perm[:n_valid])
    assert (len(tr), len(va)) == (30, 10)

    result = rnnfast.train(case.config, data=case.data)
    assert result.status == "ok", result.message
    params = initial_params(case)
    if lengths:
        (lens,) = lens
        run, metrics = torch_set_run(cfg, x[tr], y[tr], params, valid=(x[va], y[va], lens[va]),
                                     lengths=lens[tr])  # fmt: skip
    else:
        run, metrics = torch_set_run(cfg, x[tr], y[tr], params, valid=(x[va], y[va]))
    U = 30 // cfg["batch_size"]
    assert len(run.losses) == 2 * U
    np.testing.assert_allclose(losses_of(result), run.losses, rtol=RTOL, atol=ATOL)
    assert_params_close(result.params, run.net.numpy_params(), params)
    curves = result.curves
    for name in ("valid_loss", "valid_accuracy"):
        points = curves[curves["metric"] == name]
        np.testing.assert_array_equal(points["epoch"], [1, 2])
        np.testing.assert_array_equal(points["step"], [U, 2 * U])
        want = [m[name] for m in metrics]
        np.testing.assert_allclose(points["value"], want, rtol=RTOL, atol=ATOL, err_msg=name)
        np.testing.assert_allclose(result.final[name], want[-1], rtol=RTOL, atol=ATOL)
    accuracy = np.array([m["valid_accuracy"] for m in metrics])
    assert 0 < accuracy.min() and accuracy.max() < 1  # argmax decisions that can disagree


@pytest.mark.parametrize("name", [*CASES, "valid", "valid-lengths"])
def test_same_config_and_seed_give_bit_identical_curves(name):
    valid = name.startswith("valid")
    case = make_valid_case(name.endswith("lengths")) if valid else make_case(name)
    a = rnnfast.train(case.config, data=case.data)
    b = rnnfast.train(case.config, data=case.data)
    assert (a.status, b.status) == ("ok", "ok")
    np.testing.assert_array_equal(a.curves["step"], b.curves["step"])
    np.testing.assert_array_equal(a.curves["epoch"], b.curves["epoch"])
    assert list(a.curves["metric"]) == list(b.curves["metric"])
    assert np.array_equal(a.curves["value"].to_numpy(), b.curves["value"].to_numpy())
    assert a.final == b.final
    assert sorted(a.params) == sorted(b.params)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k


@pytest.mark.parametrize("name", [c for c in CASES if c.startswith("lengths")])
def test_lengths_in_batch_chunks_equal_pytorch(name, monkeypatch):
    """The batch in 3 parallel chunks: each batch's columns, sorted by length, dealt to the
    chunks in turn (rnnfast.cpu._chunks.dealt_ranks), still give PyTorch's updates."""
    import rnnfast.cpu.trainer as trainer

    monkeypatch.setattr(trainer, "train_chunks", lambda *args: 3)
    case = make_case(name)
    result = rnnfast.train(case.config, data=case.data)
    assert result.status == "ok", result.message
    run = torch_run(case)
    np.testing.assert_allclose(losses_of(result), run.losses, rtol=RTOL, atol=ATOL)
    assert_params_close(result.params, run.net.numpy_params(), initial_params(case))
