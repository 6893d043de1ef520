"""The lag-dependency task of R2RT's "Recurrent Neural Networks in Tensorflow I" (2016).

Data: x_t ~ Bernoulli(0.5), independent; the target y_t is Bernoulli with

    P(y_t = 1) = clip(base + sum_k shifts[k] * x[t - lags[k]], 0, 1)

(defaults: base 0.5, lags (3, 8), shifts (+0.5, -0.25)). As in the original, x[t - lag] for
t < lag wraps around to the end of the sequence (numpy's X[i - 3]).

A predictor that knows only some of the lagged bits can do no better than the conditional
entropy H(y | those bits); ``expected_cross_entropies`` computes these levels exactly by
enumerating the 2^K bit combinations, so plots and checks never hard-code them.

Layout for training: ``batchify`` cuts the sequence into ``batch_size`` rows of
``N // batch_size`` consecutive elements (R2RT's gen_batch); an epoch walks the columns in
chunks of num_steps.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnfast.seqdata import Form, Split, TaskData
from rnnfast.tasks import Task

DEFAULTS: dict[str, Any] = {
    "sequence_length": 1_000_000,
    "lags": (3, 8),
    "shifts": (0.5, -0.25),
    "base": 0.5,
}


def probabilities(
    x: np.ndarray, lags: Sequence[int], shifts: Sequence[float], base: float
) -> np.ndarray:
    """P(y_t = 1) for every t, float64 (N,), with numpy wrap-around for t < lag."""
    x = np.asarray(x)
    p = np.full(x.shape[0], float(base))
    for lag, shift in zip(lags, shifts, strict=True):
        p += float(shift) * np.roll(x, int(lag))  # np.roll(x, lag)[t] == x[t - lag]
    return np.clip(p, 0.0, 1.0)


def generate(
    sequence_length: int,
    lags: Sequence[int],
    shifts: Sequence[float],
    base: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One sequence (x, y), both int8 (N,). Draws x first, then N uniforms, from ``rng``."""
    validate({"sequence_length": sequence_length, "lags": lags, "shifts": shifts, "base": base})
    n = int(sequence_length)
    x = rng.integers(0, 2, size=n, dtype=np.int8)
    u = rng.random(n)
    # u in [0, 1): p == 0 never fires and p == 1 always does.
    y = (u < probabilities(x, lags, shifts, base)).astype(np.int8)
    return x, y


def _binary_entropy(p: float) -> float:
    """-(p ln p + (1 - p) ln(1 - p)), with 0 ln 0 = 0."""
    return -sum(q * math.log(q) for q in (p, 1.0 - p) if q > 0.0)


def _label(lags: Sequence[int]) -> str:
    if not lags:
        return "nothing learned"
    if len(lags) == 1:
        return f"lag {lags[0]} learned"
    names = [str(v) for v in lags]
    return f"lags {', '.join(names[:-1])} and {names[-1]} learned"


def expected_cross_entropies(
    lags: Sequence[int], shifts: Sequence[float], base: float
) -> list[tuple[str, float]]:
    """Cross-entropy (natural log) of the best predictor that knows the first k lagged bits,
    for k = 0 (only the marginal), 1, ..., K: the conditional entropies H(y | x_{t-lags[:k]}).

    Exact: the K lagged bits are independent fair coins, so enumerate all 2^K combinations,
    average the clipped probability over the unknown bits and the entropy over the known ones.
    """
    validate({"lags": lags, "shifts": shifts, "base": base})
    K = len(lags)
    combos = list(itertools.product((0, 1), repeat=K))
    p_full = {
        c: min(1.0, max(0.0, base + sum(s * b for s, b in zip(shifts, c, strict=True))))
        for c in combos
    }
    levels = []
    for k in range(K + 1):
        total = 0.0
        for known in itertools.product((0, 1), repeat=k):
            group = [p_full[c] for c in combos if c[:k] == known]
            total += _binary_entropy(sum(group) / len(group))
        levels.append((_label(list(lags[:k])), total / 2**k))
    return levels


def batchify(x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch_size, N // batch_size) views: row r holds x[r*n : (r+1)*n]; the remainder of
    N % batch_size elements is dropped (R2RT's gen_batch)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y: expected equal 1-D shapes, given {x.shape} and {y.shape}")
    if not _is_int(batch_size) or not 1 <= batch_size <= x.shape[0]:
        raise ValueError(f"batch_size: expected an int in [1, {x.shape[0]}], given {batch_size!r}")
    n = x.shape[0] // batch_size
    m = batch_size * n
    return x[:m].reshape(batch_size, n), y[:m].reshape(batch_size, n)


# ---------------------------------------------------------------------------- validation


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def validate(params: dict) -> dict:
    """Check the task's own keys present in ``params`` (other keys are ignored) and return the
    task keys, missing ones filled from DEFAULTS, normalised: lags a tuple of int, shifts a
    tuple of float, base a float. Raises ValueError naming the key, expected vs given."""
    out = {**DEFAULTS, **{k: params[k] for k in DEFAULTS if k in params}}

    n = out["sequence_length"]
    if not _is_int(n) or n < 2:
        raise ValueError(f"sequence_length: expected an int >= 2, given {n!r}")

    lags = out["lags"]
    if (
        not isinstance(lags, tuple | list)
        or not lags
        or not all(_is_int(v) and 0 < v < n for v in lags)
        or len(set(lags)) != len(lags)
    ):
        raise ValueError(
            f"lags: expected a non-empty tuple/list of distinct ints in [1, sequence_length - 1 "
            f"= {n - 1}], given {lags!r}"
        )

    shifts = out["shifts"]
    if (
        not isinstance(shifts, tuple | list)
        or len(shifts) != len(lags)
        or not all(_is_real(v) and math.isfinite(v) for v in shifts)
    ):
        raise ValueError(
            f"shifts: expected a tuple/list of {len(lags)} finite numbers (one per lag), "
            f"given {shifts!r}"
        )

    base = out["base"]
    if not _is_real(base) or not 0.0 <= base <= 1.0:
        raise ValueError(f"base: expected a number in [0, 1], given {base!r}")

    return {
        "sequence_length": int(n),
        "lags": tuple(int(v) for v in lags),
        "shifts": tuple(float(v) for v in shifts),
        "base": float(base),
    }


# ---------------------------------------------------------------------------- the task


class DependencyTask(Task):
    """A token stream (V = 2, one-hot) with a target at every step; fresh data each epoch from
    numpy.random.default_rng([seed, 1, epoch]); truncated BPTT "tf" or "true"."""

    name = "dependency"
    description = "R2RT's lag-dependency task: a bit stream, targets depending on lagged bits"
    keys = {
        "num_steps": ("int", 1),
        "truncation": ("choice", ("tf", "true")),
        "sequence_length": ("int", 2),
        "lags": ("int_list", 1),
        "shifts": ("float_list", None),
        "base": ("unit_float_closed", None),
    }
    defaults = {
        "cell": "rnn",
        "nonlinearity": "tanh",
        "hidden_size": 4,
        "num_layers": 1,
        "bidirectional": False,
        "bias": True,
        "num_steps": 5,
        "truncation": "tf",
        "batch_size": 200,
        "optimizer": "adagrad",
        "lr": 0.1,
        "clip": 0.0,
        "epochs": 1,
        "sequence_length": 1_000_000,
        "lags": [3, 8],
        "shifts": [0.5, -0.25],
        "base": 0.5,
    }
    metrics = ("loss", "updates")
    metric_labels = {"loss": "cross-entropy (nats)"}

    def check(self, c: dict[str, Any]) -> None:
        if c["bidirectional"]:
            raise ValueError(
                "bidirectional: the dependency task carries the state forward between "
                "chunks, so it needs a one-directional network; got True"
            )
        if len(c["shifts"]) != len(c["lags"]):
            raise ValueError(
                f"shifts: expected one shift per lag ({len(c['lags'])}), got {c['shifts']!r}"
            )
        if len(set(c["lags"])) != len(c["lags"]):
            raise ValueError(f"lags: expected distinct lags, got {c['lags']!r}")
        rows = c["sequence_length"] // c["batch_size"]
        if rows < c["num_steps"]:
            raise ValueError(
                f"num_steps: each of the batch_size={c['batch_size']} rows holds only "
                f"{rows} steps of sequence_length={c['sequence_length']}; got {c['num_steps']}"
            )

    def reference_levels(self, cfg: dict[str, Any]) -> list[tuple[str, float]]:
        return expected_cross_entropies(tuple(cfg["lags"]), tuple(cfg["shifts"]), cfg["base"])

    def prepare(self, cfg: dict[str, Any], data: Any = None) -> TaskData:
        if data is not None:
            raise ValueError("data: the dependency task generates its own data; got data=...")
        n, B0 = cfg["num_steps"], cfg["batch_size"]
        form = Form(inputs="onehot", input_size=2, vocab=2, targets="classes", outputs=2,
                    per_step=True, mode="stream", truncation=cfg["truncation"], steps=n,
                    batch=B0)  # fmt: skip
        args = (cfg["sequence_length"], tuple(cfg["lags"]), tuple(cfg["shifts"]), cfg["base"])

        def train(epoch: int) -> Split:
            x, y = generate(*args, np.random.default_rng([cfg["seed"], 1, epoch]))
            xb, yb = batchify(x, y, B0)
            return Split(xb.astype(np.int32), yb.astype(np.int32), xb.shape[1])

        rows = cfg["sequence_length"] // B0
        return TaskData(form, train, rows // n, cfg["epochs"],
                        info={"expected_cross_entropies": self.reference_levels(cfg)})  # fmt: skip
