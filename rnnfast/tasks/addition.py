"""Binary addition, as in iamtrask's "Anyone Can Learn To Code an LSTM-RNN in Python" (2015).

Two numbers a, b < largest (128) are fed least-significant bit first, two inputs per step; the
target at step t is bit t of a + b. The post's network (no biases, sigmoid everywhere):

    h_t = sigmoid(x_t W_in + h_{t-1} W_hh),  h_0 = 0      x_t = [a_t, b_t]  (1, 2)
    o_t = sigmoid(h_t W_out)                              W_in (2, H), W_hh (H, H), W_out (H, 1)
    loss = 1/2 sum_t (y_t - o_t)^2,  reported error = sum_t |y_t - o_t|  (before the update)

trained by plain gradient descent, one example per update: W += lr * update with
update = -dloss/dW from the full backward pass over the bits.

The post seeds numpy's legacy global generator with 0 and draws, in this order, W_in, W_out,
W_hh (each 2 * random(shape) - 1), then per update a = randint(128), b = randint(128). Here a
private ``np.random.RandomState(seed)`` gives the identical stream without touching numpy's
global generator. ``reference_train`` is a plain float64 NumPy port of the post's loop: the
golden oracle for the compiled trainer; with seed 0 it reproduces PUBLISHED_ERRORS.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from rnnfast.seqdata import Form, Split, TaskData
from rnnfast.tasks import Task

# The post's printed error (sum over the 8 bits of |y - o|) at updates 0, 1000, ..., 9000.
PUBLISHED_ERRORS: list[float] = [
    3.45638663, 3.63389116, 3.91366595, 3.72191702, 3.5852713,
    2.53352328, 0.57691441, 1.42589952, 0.47477457, 0.21595037,
]  # fmt: skip
PUBLISHED_EVERY = 1000  # the post prints every 1000 updates, starting at update 0

DEFAULTS: dict[str, Any] = {"bits": 8, "largest": 128, "init": "iamtrask", "updates": 10_000}
INITS = ("iamtrask", "default")


def iamtrask_init(
    seed: int, input_size: int = 2, hidden_size: int = 16, output_size: int = 1
) -> tuple[np.random.RandomState, np.ndarray, np.ndarray, np.ndarray]:
    """(rs, W_in (I, H), W_out (H, O), W_hh (H, H)), float64, drawn from rs =
    RandomState(seed) in the post's order; rs is returned to go on sampling the pairs."""
    rs = np.random.RandomState(seed)
    w_in = 2 * rs.random_sample((input_size, hidden_size)) - 1
    w_out = 2 * rs.random_sample((hidden_size, output_size)) - 1
    w_hh = 2 * rs.random_sample((hidden_size, hidden_size)) - 1
    return rs, w_in, w_out, w_hh


def sample_pairs(
    rs: np.random.RandomState, updates: int, largest: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) int64 (U,): per update a = rs.randint(largest), then b = rs.randint(largest),
    as the post's sequential scalar calls. One vectorised draw of 2U values read as interleaved
    (a, b) pairs gives that identical stream (legacy randint draws scalars and arrays through the
    same bounded-integer routine; tests/test_task_addition.py checks it against the loop)."""
    ab = rs.randint(largest, size=2 * updates).astype(np.int64, copy=False)
    return ab[0::2].copy(), ab[1::2].copy()


def to_bits(values: np.ndarray, bits: int = 8) -> np.ndarray:
    """(U, bits) float64, least-significant bit first: out[u, t] = (values[u] >> t) & 1."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    return ((v[:, None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.float64)


def from_bits(bits: np.ndarray) -> np.ndarray:
    """Inverse of to_bits: (U, bits) 0/1 values, least-significant first -> int64 (U,)."""
    b = np.asarray(bits).astype(np.int64)
    return (b << np.arange(b.shape[-1], dtype=np.int64)).sum(axis=-1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def example_step(
    w_in: np.ndarray,  # (2, H)
    w_hh: np.ndarray,  # (H, H)
    w_out: np.ndarray,  # (H, 1)
    a_bits: np.ndarray,  # (T,) least-significant first
    b_bits: np.ndarray,  # (T,)
    c_bits: np.ndarray,  # (T,) target bits of a + b
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forward and full backward over one example, as in the post.

    Returns (error, prediction bits (T,) int64, u_in, u_hh, u_out) where error = sum_t |y - o|
    and u_* = -d(1/2 sum_t (y_t - o_t)^2)/dW_*, the post's "synapse updates".
    """
    T = a_bits.shape[0]
    H = w_hh.shape[0]
    hs = np.zeros((T + 1, H))  # hs[0] = h_0 = 0
    deltas = np.zeros((T, 1))  # (y - o) o (1 - o)
    error = 0.0
    pred = np.zeros(T, dtype=np.int64)
    for t in range(T):
        x = np.array([[a_bits[t], b_bits[t]]])  # (1, 2)
        h = _sigmoid(x @ w_in + hs[t][None, :] @ w_hh)  # (1, H)
        o = _sigmoid(h @ w_out)  # (1, 1)
        err = c_bits[t] - o[0, 0]
        deltas[t, 0] = err * o[0, 0] * (1 - o[0, 0])
        error += abs(err)
        pred[t] = int(np.round(o[0, 0]))  # np.round, as the post (0.5 rounds to 0)
        hs[t + 1] = h[0]
    u_in = np.zeros_like(w_in)
    u_hh = np.zeros_like(w_hh)
    u_out = np.zeros_like(w_out)
    future = np.zeros((1, H))  # delta of h_{t+1}'s pre-activation
    for t in range(T - 1, -1, -1):
        x = np.array([[a_bits[t], b_bits[t]]])
        h, h_prev = hs[t + 1][None, :], hs[t][None, :]
        delta = deltas[t][None, :]  # (1, 1)
        dh = (future @ w_hh.T + delta @ w_out.T) * h * (1 - h)  # (1, H)
        u_out += h.T @ delta
        u_hh += h_prev.T @ dh
        u_in += x.T @ dh
        future = dh
    return error, pred, u_in, u_hh, u_out


def reference_train(
    seed: int = 0,
    updates: int = 10_000,
    lr: float = 0.1,
    hidden_size: int = 16,
    bits: int = 8,
    largest: int = 128,
) -> dict[str, Any]:
    """The post's training loop in float64 NumPy (iamtrask initialisation and sampling).

    Returns errors (U,) float64 (each example's error from its forward pass, before its
    update), predictions (U, bits) int64 (rounded outputs, least-significant bit first),
    a and b (U,) int64, and weights {"w_in", "w_hh", "w_out"} after the last update.
    """
    rs, w_in, w_out, w_hh = iamtrask_init(seed, 2, hidden_size, 1)
    a, b = sample_pairs(rs, updates, largest)
    A, B, C = to_bits(a, bits), to_bits(b, bits), to_bits(a + b, bits)
    errors = np.zeros(updates)
    preds = np.zeros((updates, bits), dtype=np.int64)
    for j in range(updates):
        errors[j], preds[j], u_in, u_hh, u_out = example_step(w_in, w_hh, w_out, A[j], B[j], C[j])
        w_in += lr * u_in
        w_out += lr * u_out
        w_hh += lr * u_hh
    return {
        "errors": errors,
        "predictions": preds,
        "a": a,
        "b": b,
        "weights": {"w_in": w_in, "w_hh": w_hh, "w_out": w_out},
    }


# ---------------------------------------------------------------------------- validation


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def validate(params: dict) -> dict:
    """Check the task's own keys present in ``params`` (other keys are ignored) and return the
    task keys with missing ones filled from DEFAULTS. Raises ValueError naming the key."""
    out = {**DEFAULTS, **{k: params[k] for k in DEFAULTS if k in params}}
    bits, largest = out["bits"], out["largest"]
    if not _is_int(bits) or not 1 <= bits <= 62:
        raise ValueError(f"bits: expected an int in [1, 62], given {bits!r}")
    if not _is_int(largest) or largest < 1 or 2 * largest > 2**bits:
        raise ValueError(
            f"largest: expected an int >= 1 with 2 * largest <= 2**bits = {2**bits} "
            f"(so that a + b fits in {bits} bits), given {largest!r}"
        )
    if out["init"] not in INITS:
        raise ValueError(f"init: expected one of {INITS}, given {out['init']!r}")
    if not _is_int(out["updates"]) or out["updates"] < 1:
        raise ValueError(f"updates: expected an int >= 1, given {out['updates']!r}")
    return {"bits": int(bits), "largest": int(largest), "init": out["init"],
            "updates": int(out["updates"])}  # fmt: skip


# ---------------------------------------------------------------------------- the task


class AdditionTask(Task):
    """A set of `updates` examples of bits-step sequences (inputs a_t, b_t; target bit t of
    a + b through a sigmoid, squared error / 2 summed over the bits), trained in order, one
    example per update, in one epoch; no head bias (the post's network)."""

    name = "addition"
    description = "iamtrask's binary addition: add two numbers bit by bit"
    keys = {
        "bits": ("int", 1),
        "largest": ("int", 1),
        "init": ("choice", INITS),
        "updates": ("int", 1),
    }
    defaults = {
        "cell": "rnn",
        "nonlinearity": "sigmoid",
        "hidden_size": 16,
        "num_layers": 1,
        "bidirectional": False,
        "bias": False,
        "batch_size": 1,
        "optimizer": "sgd",
        "lr": 0.1,
        "clip": 0.0,
        "epochs": 1,
        "bits": 8,
        "largest": 128,
        "init": "iamtrask",
        "updates": 10_000,
        "dtype": "float64",  # the post's arithmetic; float32 drifts 1e-5 from its figures
    }
    metrics = ("loss", "error", "updates")
    metric_labels = {
        "loss": "squared error ½·Σ(target − output)²",
        "error": "sum of |target - output|",
    }

    def check(self, c: dict[str, Any]) -> None:
        if c["batch_size"] != 1:
            raise ValueError(
                "batch_size: addition trains on one example per update, expected 1, "
                f"got {c['batch_size']}"
            )
        if 2 * c["largest"] > 2 ** c["bits"]:
            raise ValueError(
                f"largest: a + b must fit in bits={c['bits']}: "
                f"expected <= {2 ** (c['bits'] - 1)}, got {c['largest']}"
            )
        if c["init"] == "iamtrask" and (
            c["cell"],
            c["num_layers"],
            c["bidirectional"],
            c["bias"],
        ) != ("rnn", 1, False, False):
            raise ValueError(
                "init: 'iamtrask' is the post's network (rnn, one layer, one direction, no "
                "bias); use init='default' for other models"
            )

    def prepare(self, cfg: dict[str, Any], data: Any = None) -> TaskData:
        if data is not None:
            raise ValueError("data: the addition task generates its own data; got data=...")
        U, bits = cfg["updates"], cfg["bits"]
        init = None
        if cfg["init"] == "iamtrask":
            # weights first, then the pairs, from one legacy stream (the post's order)
            rs, w_in, w_out, w_hh = iamtrask_init(cfg["seed"], 2, cfg["hidden_size"], 1)
            a, b = sample_pairs(rs, U, cfg["largest"])

            def init(cfg: dict, dtype) -> tuple[dict, list]:
                rnn = {"weight_ih_l0": w_in.T.astype(dtype), "weight_hh_l0": w_hh.T.astype(dtype)}
                return rnn, [w_out.T.astype(dtype)]
        else:
            seed32 = np.random.default_rng([cfg["seed"], 1, 0]).integers(2**31)
            a, b = sample_pairs(np.random.RandomState(seed32), U, cfg["largest"])
        x = np.stack([to_bits(a, bits), to_bits(b, bits)], axis=2).reshape(U, 2 * bits)
        train = Split(x, to_bits(a + b, bits), U)
        form = Form(inputs="dense", input_size=2, targets="sigmoid", outputs=1, per_step=True,
                    mode="set", steps=bits, batch=1, reduction_sum=True,
                    shuffle=False)  # fmt: skip
        return TaskData(form, lambda epoch: train, U, 1, train_metrics=("loss", "error"),
                        init=init, head_bias=False)  # fmt: skip
