"""Optimizers and gradient clipping, compiled for fused training loops.

The training loops keep every parameter in one flat vector theta (n,) with its gradient g (n,),
so an update is one elementwise loop. The rules are PyTorch's (torch.optim, no weight decay,
no maximize), written in the order ATen evaluates them (t = 1-based update count):

    sgd      b = mu b + g   (b = g on the first step; b starts at 0, so mu*0 + g = g exactly)
             theta = theta + (-lr) b                  (momentum mu = 0: b is g, no buffer)
    adagrad  s = s + g g                              (s starts at initial_accumulator)
             theta = theta + ((-lr) g) / (sqrt(s) + eps)
    adam     m = m + (1 - beta1) (g - m)              (torch's lerp_; = beta1 m + (1 - beta1) g)
             v = beta2 v + ((1 - beta2) g) g
             theta = theta + ((-lr / (1 - beta1^t)) m) / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    rmsprop  v = alpha v + ((1 - alpha) g) g          (no momentum, not centered)
             theta = theta + ((-lr) g) / (sqrt(v) + eps)

Adagrad's initial accumulator defaults to 0.1, TensorFlow 1's default, which the published
dependency curves used (PyTorch's default is 0). Scalars that depend only on hyperparameters
and t (1 - beta1, the bias corrections) are computed in float64 and then rounded to theta's
dtype, as PyTorch does with Python floats; everything inside the loops stays in theta's dtype,
so float32 updates run at full SIMD width and equal the same formula evaluated in float32.

    clip_grad_norm(g, c):  N = ||g||_2;  if c > 0 and c / (N + 1e-6) < 1:  g = g * (c / (N + 1e-6))

as torch.nn.utils.clip_grad_norm_. The norm is accumulated in float64 over 64 fixed lanes
(element i goes to lane i % 64, lanes summed in order), which LLVM vectorises without
fastmath and which gives the same bits on every run. A NaN norm leaves g unscaled (the loss
is non-finite by then and the run stops as diverged).

Compiled state: init_state(code, hyper, n, theta) -> (s1, s2) in theta's dtype:
sgd (b, -), adagrad (s, -), adam (m, v), rmsprop (v, -); an unused array has size 0.
"""

import math
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
from numba import njit

# Optimizer codes and the layout of Optimizer.hyper(), the float64 vector the compiled code
# reads (H_* slots), live in rnnfast.codes with the other codes both backends share.
from rnnfast.codes import (  # noqa: E402
    H_ACC0,
    H_ALPHA,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_MOMENTUM,
    HYPER_FIELDS,
    OPT_ADAGRAD,
    OPT_ADAM,
    OPT_RMSPROP,
    OPT_SGD,
    OPTIMIZERS,
)

_DEFAULT_EPS = {"sgd": 1e-8, "adagrad": 1e-10, "adam": 1e-8, "rmsprop": 1e-8}
# The hyperparameters (besides lr) each optimizer accepts.
_KEYS = {
    "sgd": ("momentum",),
    "adagrad": ("eps", "initial_accumulator"),
    "adam": ("beta1", "beta2", "eps"),
    "rmsprop": ("alpha", "eps"),
}
_LANES = 64  # partial sums in grad_norm


def _check(key: str, value, ok, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not ok(float(value)):
        raise ValueError(f"optimizer {key}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class Optimizer:
    """An optimizer's name and hyperparameters; validated on construction."""

    name: str
    lr: float
    momentum: float = 0.0  # sgd
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    alpha: float = 0.99  # rmsprop
    eps: float | None = None  # None: PyTorch's default for the optimizer
    initial_accumulator: float = 0.1  # adagrad (TensorFlow 1's default)
    code: int = field(init=False)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {self.name!r}")
        if self.eps is None:
            object.__setattr__(self, "eps", _DEFAULT_EPS[self.name])
        unit = "a number in [0, 1)"
        _check("lr", self.lr, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
        _check("momentum", self.momentum, lambda v: 0 <= v < 1, unit)
        _check("beta1", self.beta1, lambda v: 0 <= v < 1, unit)
        _check("beta2", self.beta2, lambda v: 0 <= v < 1, unit)
        _check("alpha", self.alpha, lambda v: 0 <= v < 1, unit)
        _check("eps", self.eps, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
        _check(
            "initial_accumulator",
            self.initial_accumulator,
            lambda v: math.isfinite(v) and v >= 0,
            "a finite number >= 0",
        )
        object.__setattr__(self, "code", OPTIMIZERS.index(self.name))

    def hyper(self) -> np.ndarray:
        """[lr, momentum, beta1, beta2, eps, alpha, initial_accumulator] as float64."""
        return np.array([float(getattr(self, k)) for k in HYPER_FIELDS], np.float64)

    def init_state(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fresh state arrays (s1, s2) for the flat parameter vector theta."""
        return init_state(self.code, self.hyper(), theta.size, theta)

    def step(self, step: int, theta: np.ndarray, grad: np.ndarray, s1, s2) -> None:
        """One update of theta in place (step: 1-based update count)."""
        optim_step(self.code, self.hyper(), step, theta, grad, s1, s2)


def make_optimizer(name: str, lr: float, **hyper) -> Optimizer:
    """Optimizer `name` ("sgd", "adagrad", "adam", "rmsprop") with learning rate lr.

    Keyword hyperparameters: sgd momentum; adagrad eps, initial_accumulator; adam beta1,
    beta2, eps; rmsprop alpha, eps. A keyword given as None means "use the default". A
    keyword that does not belong to the optimizer, or a bad value, raises ValueError.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    given = {k: v for k, v in hyper.items() if v is not None}
    for key, value in given.items():
        if key not in _KEYS[name]:
            raise ValueError(
                f"optimizer {key}: not a hyperparameter of {name} (expected one of "
                f"{_KEYS[name]}), got {key}={value!r}"
            )
    return Optimizer(name, lr, **given)


@njit(cache=True)
def init_state(code, hyper, n, theta):
    """(s1, s2) for n parameters, in theta's dtype; see the module docstring."""
    dt = theta.dtype
    if code == OPT_ADAGRAD:
        return np.full(n, dt.type(hyper[H_ACC0]), dt), np.zeros(0, dt)
    if code == OPT_ADAM:
        return np.zeros(n, dt), np.zeros(n, dt)
    if code == OPT_RMSPROP:
        return np.zeros(n, dt), np.zeros(0, dt)
    if code == OPT_SGD:
        return np.zeros(n if hyper[H_MOMENTUM] > 0 else 0, dt), np.zeros(0, dt)
    raise ValueError("init_state: unknown optimizer code")


@njit(cache=True, error_model="numpy")
def optim_step(
    code,
    hyper,  # (7,) float64, Optimizer.hyper()
    step,  # 1-based update count
    theta,  # (n,) updated in place
    grad,  # (n,)
    s1,  # (n,) or (0,)
    s2,  # (n,) or (0,)
):
    """One update of theta in place; s1 and s2 from init_state."""
    n = theta.size
    if grad.size != n:
        raise ValueError("optim_step: grad and theta differ in size")
    if step < 1:
        raise ValueError("optim_step: step must be >= 1")
    t = theta.dtype.type
    neg_lr = t(-hyper[H_LR])
    if code == OPT_SGD:
        if hyper[H_MOMENTUM] > 0:
            if s1.size != n:
                raise ValueError("optim_step: sgd momentum buffer s1 has the wrong size")
            mu = t(hyper[H_MOMENTUM])
            for i in range(n):
                b = s1[i] * mu + grad[i]
                s1[i] = b
                theta[i] = theta[i] + neg_lr * b
        else:
            for i in range(n):
                theta[i] = theta[i] + neg_lr * grad[i]
    elif code == OPT_ADAGRAD:
        if s1.size != n:
            raise ValueError("optim_step: adagrad accumulator s1 has the wrong size")
        eps = t(hyper[H_EPS])
        for i in range(n):
            g = grad[i]
            s = s1[i] + g * g
            s1[i] = s
            theta[i] = theta[i] + (neg_lr * g) / (np.sqrt(s) + eps)
    elif code == OPT_ADAM:
        if s1.size != n or s2.size != n:
            raise ValueError("optim_step: adam moments s1, s2 have the wrong size")
        b1, b2 = hyper[H_BETA1], hyper[H_BETA2]
        fstep = np.float64(step)
        w1 = t(1.0 - b1)
        beta2 = t(b2)
        w2 = t(1.0 - b2)
        neg_step = t(-(hyper[H_LR] / (1.0 - b1**fstep)))
        bc2_sqrt = t((1.0 - b2**fstep) ** 0.5)
        eps = t(hyper[H_EPS])
        for i in range(n):
            g = grad[i]
            m = s1[i] + w1 * (g - s1[i])
            v = s2[i] * beta2 + (w2 * g) * g
            s1[i] = m
            s2[i] = v
            theta[i] = theta[i] + (neg_step * m) / (np.sqrt(v) / bc2_sqrt + eps)
    elif code == OPT_RMSPROP:
        if s1.size != n:
            raise ValueError("optim_step: rmsprop average s1 has the wrong size")
        alpha = t(hyper[H_ALPHA])
        w = t(1.0 - hyper[H_ALPHA])
        eps = t(hyper[H_EPS])
        for i in range(n):
            g = grad[i]
            v = s1[i] * alpha + (w * g) * g
            s1[i] = v
            theta[i] = theta[i] + (neg_lr * g) / (np.sqrt(v) + eps)
    else:
        raise ValueError("optim_step: unknown optimizer code")


@njit(cache=True, error_model="numpy")
def grad_norm(grad):  # grad (n,)
    """L2 norm of grad as a float64, deterministic (fixed 64-lane partial sums)."""
    n = grad.size
    acc = np.zeros(_LANES, np.float64)
    full = n - n % _LANES
    for base in range(0, full, _LANES):
        for j in range(_LANES):
            x = np.float64(grad[base + j])
            acc[j] += x * x
    for j in range(n - full):
        x = np.float64(grad[full + j])
        acc[j] += x * x
    total = 0.0
    for j in range(_LANES):
        total += acc[j]
    return np.sqrt(total)


@njit(cache=True, error_model="numpy")
def clip_grad_norm(grad, max_norm):  # grad (n,) scaled in place
    """Scale grad to norm max_norm if larger (as torch.nn.utils.clip_grad_norm_); returns the
    norm before clipping. max_norm <= 0 means no clipping."""
    norm = grad_norm(grad)
    if max_norm > 0:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            c = grad.dtype.type(coef)
            for i in range(grad.size):
                grad[i] = grad[i] * c
    return norm
