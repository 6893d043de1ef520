"""rnnfast.optim: updates against torch.optim, clipping against torch.nn.utils, validation,
and float32 staying float32 (bit-equal to the same formula evaluated by NumPy in float32)."""

import platform
import re

import numpy as np
import pytest
from numba import njit

from rnnfast.optim import (
    OPT_ADAGRAD,
    OPT_ADAM,
    OPT_RMSPROP,
    OPT_SGD,
    OPTIMIZERS,
    clip_grad_norm,
    grad_norm,
    init_state,
    make_optimizer,
    optim_step,
)

N = 131  # odd and over two 64-lane blocks
STEPS = 5
# (rnnfast name, rnnfast kwargs, torch class name, torch kwargs)
CASES = {
    "sgd": ("sgd", {}, "SGD", {}),
    "sgd-momentum": ("sgd", {"momentum": 0.9}, "SGD", {"momentum": 0.9}),
    "adagrad": ("adagrad", {}, "Adagrad", {"initial_accumulator_value": 0.1, "eps": 1e-10}),
    "adagrad-zero": (
        "adagrad",
        {"initial_accumulator": 0.0, "eps": 1e-6},
        "Adagrad",
        {"eps": 1e-6},
    ),
    "adam": ("adam", {}, "Adam", {}),
    "adam-betas": (
        "adam",
        {"beta1": 0.5, "beta2": 0.9, "eps": 1e-6},
        "Adam",
        {"betas": (0.5, 0.9), "eps": 1e-6},
    ),
    "rmsprop": ("rmsprop", {}, "RMSprop", {}),
    "rmsprop-alpha": (
        "rmsprop",
        {"alpha": 0.9, "eps": 1e-4},
        "RMSprop",
        {"alpha": 0.9, "eps": 1e-4},
    ),
}
# torch's state key for s1 (and s2)
TORCH_STATE = {
    "sgd": ("momentum_buffer",),
    "adagrad": ("sum",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "rmsprop": ("square_avg",),
}
TOL = {np.float64: {"rtol": 1e-12, "atol": 1e-14}, np.float32: {"rtol": 1e-5, "atol": 1e-6}}
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])


def _grads(dtype, seed=0):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 1, (STEPS, N))  # a spread of magnitudes
    return (rng.standard_normal((STEPS, N)) * scale).astype(dtype)


def _theta0(dtype):
    return np.random.default_rng(1).standard_normal(N).astype(dtype)


@DTYPES
@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    name, kw, tname, tkw = CASES[case]
    lr = 0.05
    opt = make_optimizer(name, lr, **kw)
    theta = _theta0(dtype)
    s1, s2 = opt.init_state(theta)
    p = torch.nn.Parameter(torch.from_numpy(theta.copy()))
    topt = getattr(torch.optim, tname)([p], lr=lr, **tkw)
    for t, g in enumerate(_grads(dtype), start=1):
        opt.step(t, theta, g, s1, s2)
        p.grad = torch.from_numpy(g.copy())
        topt.step()
        assert theta.dtype == dtype
        np.testing.assert_allclose(theta, p.detach().numpy(), **TOL[dtype], err_msg=f"step {t}")
    state = topt.state[p]
    for key, s in zip(TORCH_STATE[name], (s1, s2), strict=False):
        if key in state and state[key] is not None:
            np.testing.assert_allclose(s, state[key].numpy(), **TOL[dtype], err_msg=key)


def _numpy_step(name, h, t, theta, g, s1, s2):
    """The module docstring's formulas in NumPy, every operation in theta's dtype."""
    c = theta.dtype.type
    lr, mu, b1, b2, eps, alpha = (float(x) for x in h[:6])
    if name == "sgd":
        if mu > 0:
            s1[:] = s1 * c(mu) + g
            theta[:] = theta + c(-lr) * s1
        else:
            theta[:] = theta + c(-lr) * g
    elif name == "adagrad":
        s1[:] = s1 + g * g
        theta[:] = theta + (c(-lr) * g) / (np.sqrt(s1) + c(eps))
    elif name == "adam":
        s1[:] = s1 + c(1 - b1) * (g - s1)
        s2[:] = s2 * c(b2) + (c(1 - b2) * g) * g
        step_size, bc2 = lr / (1 - b1 ** float(t)), (1 - b2 ** float(t)) ** 0.5
        theta[:] = theta + (c(-step_size) * s1) / (np.sqrt(s2) / c(bc2) + c(eps))
    else:
        s1[:] = s1 * c(alpha) + (c(1 - alpha) * g) * g
        theta[:] = theta + (c(-lr) * g) / (np.sqrt(s1) + c(eps))


@DTYPES
@pytest.mark.parametrize("case", list(CASES))
def test_equals_same_formula_in_numpy(case, dtype):
    # Bit-equal: any float64 promotion inside the loops would round differently somewhere.
    name, kw, _, _ = CASES[case]
    opt = make_optimizer(name, 0.05, **kw)
    theta = _theta0(dtype)
    s1, s2 = opt.init_state(theta)
    ref, r1, r2 = theta.copy(), s1.copy(), s2.copy()
    for t, g in enumerate(_grads(dtype), start=1):
        optim_step(opt.code, opt.hyper(), t, theta, g, s1, s2)
        _numpy_step(name, opt.hyper(), t, ref, g, r1, r2)
        assert theta.dtype == s1.dtype == s2.dtype == dtype
        np.testing.assert_array_equal(theta, ref, err_msg=f"step {t}")
        np.testing.assert_array_equal(s1, r1)
        np.testing.assert_array_equal(s2, r2)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 assembly")
def test_float32_update_is_vectorised_and_not_promoted():
    step = njit(error_model="numpy")(optim_step.py_func)  # a fresh compile, so asm is kept
    theta = np.ones(64, np.float32)
    for name in OPTIMIZERS:
        opt = make_optimizer(name, 0.1, **({"momentum": 0.5} if name == "sgd" else {}))
        s1, s2 = opt.init_state(theta)
        step(opt.code, opt.hyper(), 1, theta, theta.copy(), s1, s2)
    (asm,) = step.inspect_asm().values()
    assert re.search(r"\bv?sqrtps\b", asm) and re.search(r"\bv?divps\b", asm), "not vectorised"
    # float32 -> float64 conversions would mean float64 arithmetic in the loops
    assert not re.search(r"\bv?cvt(ss2sd|ps2pd)\b", asm)


def test_init_state():
    h = make_optimizer("adagrad", 0.1, initial_accumulator=0.25).hyper()
    s1, s2 = init_state(OPT_ADAGRAD, h, 5, np.zeros(1, np.float32))
    assert s1.dtype == s2.dtype == np.float32 and s2.size == 0
    np.testing.assert_array_equal(s1, np.full(5, 0.25, np.float32))
    like = np.zeros(1)
    sizes = {
        (OPT_SGD, 0.0): (0, 0),
        (OPT_SGD, 0.9): (7, 0),
        (OPT_ADAM, 0.0): (7, 7),
        (OPT_RMSPROP, 0.0): (7, 0),
    }
    for (code, mom), want in sizes.items():
        h = np.array([0.1, mom, 0.9, 0.999, 1e-8, 0.99, 0.1])
        s1, s2 = init_state(code, h, 7, like)
        assert (s1.size, s2.size) == want
        assert not s1.any() and not s2.any()


def test_optim_step_checks_sizes():
    opt = make_optimizer("adam", 0.1)
    theta = np.zeros(4)
    s1, s2 = opt.init_state(theta)
    with pytest.raises(ValueError, match="size"):
        optim_step(opt.code, opt.hyper(), 1, theta, np.zeros(3), s1, s2)
    with pytest.raises(ValueError, match="wrong size"):
        optim_step(opt.code, opt.hyper(), 1, theta, np.zeros(4), s1, s2[:2])
    with pytest.raises(ValueError, match="step"):
        optim_step(opt.code, opt.hyper(), 0, theta, np.zeros(4), s1, s2)
    with pytest.raises(ValueError, match="unknown"):
        optim_step(7, opt.hyper(), 1, theta, np.zeros(4), s1, s2)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 4099])
def test_grad_norm_equals_numpy(n):
    g = np.random.default_rng(n).standard_normal(n) * 3
    assert grad_norm(g) == pytest.approx(np.linalg.norm(g), rel=1e-14, abs=0)
    g32 = g.astype(np.float32)
    # accumulated in float64, so as exact as the float64 norm of the float32 values
    assert grad_norm(g32) == pytest.approx(np.linalg.norm(g32.astype(np.float64)), rel=1e-14)
    assert grad_norm(g32) == pytest.approx(float(np.linalg.norm(g32)), rel=1e-6)


def test_grad_norm_is_deterministic_and_does_not_overflow_float32():
    g = np.random.default_rng(0).standard_normal(10_001).astype(np.float32)
    assert len({grad_norm(g) for _ in range(5)}) == 1
    big = np.full(3, 1e30, np.float32)  # squares overflow float32, not float64
    assert grad_norm(big) == pytest.approx(np.sqrt(3) * float(np.float32(1e30)), rel=1e-12)


@DTYPES
@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["above", "below"])
def test_clip_matches_torch(max_norm, dtype):
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(2).standard_normal(N).astype(dtype)
    p = torch.nn.Parameter(torch.zeros(N, dtype=getattr(torch, np.dtype(dtype).name)))
    p.grad = torch.from_numpy(g.copy())
    want_norm = float(torch.nn.utils.clip_grad_norm_([p], max_norm))
    got = g.copy()
    norm = clip_grad_norm(got, max_norm)
    assert got.dtype == dtype
    assert norm == pytest.approx(want_norm, rel=TOL[dtype]["rtol"])
    np.testing.assert_allclose(got, p.grad.numpy(), **TOL[dtype])
    if max_norm > norm:
        np.testing.assert_array_equal(got, g)  # untouched below the threshold
    else:
        assert grad_norm(got) == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("max_norm", [0.0, -1.0])
def test_no_clipping_when_max_norm_not_positive(max_norm):
    g = np.random.default_rng(3).standard_normal(N) * 100
    got = g.copy()
    assert clip_grad_norm(got, max_norm) == pytest.approx(np.linalg.norm(g), rel=1e-14)
    np.testing.assert_array_equal(got, g)


def test_optimizer_defaults_and_hyper():
    assert OPTIMIZERS == ("sgd", "adagrad", "adam", "rmsprop")
    eps = {"sgd": 1e-8, "adagrad": 1e-10, "adam": 1e-8, "rmsprop": 1e-8}
    for code, name in enumerate(OPTIMIZERS):
        opt = make_optimizer(name, 0.01)
        assert opt.code == code and opt.name == name and opt.eps == eps[name]
    opt = make_optimizer("adam", 0.002, beta1=0.8, eps=None)  # None: the default
    h = opt.hyper()
    assert h.dtype == np.float64
    np.testing.assert_array_equal(h, [0.002, 0.0, 0.8, 0.999, 1e-8, 0.99, 0.1])
    assert make_optimizer("adagrad", 1).initial_accumulator == 0.1
    with pytest.raises(AttributeError):
        opt.lr = 1.0  # frozen


@pytest.mark.parametrize(
    "name, kw, key",
    [
        ("sgd", {"lr": 0.0}, "lr"),
        ("sgd", {"lr": -1.0}, "lr"),
        ("adam", {"lr": float("nan")}, "lr"),
        ("adam", {"lr": float("inf")}, "lr"),
        ("adam", {"lr": "0.1"}, "lr"),
        ("adam", {"lr": True}, "lr"),
        ("sgd", {"momentum": 1.0}, "momentum"),
        ("sgd", {"momentum": -0.1}, "momentum"),
        ("adam", {"beta1": 1.0}, "beta1"),
        ("adam", {"beta2": -0.5}, "beta2"),
        ("adam", {"eps": 0.0}, "eps"),
        ("rmsprop", {"eps": -1e-8}, "eps"),
        ("rmsprop", {"alpha": 1.5}, "alpha"),
        ("adagrad", {"initial_accumulator": -0.1}, "initial_accumulator"),
        ("adagrad", {"initial_accumulator": float("inf")}, "initial_accumulator"),
        ("adam", {"momentum": 0.9}, "momentum"),  # belongs to sgd
        ("sgd", {"eps": 1e-8}, "eps"),
        ("rmsprop", {"beta1": 0.9}, "beta1"),
        ("adagrad", {"betas": (0.9, 0.99)}, "betas"),
    ],
)
def test_bad_hyperparameters(name, kw, key):
    kw = {"lr": 0.1, **kw}
    with pytest.raises(ValueError, match=re.escape(key)) as err:
        make_optimizer(name, **kw)
    assert repr(kw[key]) in str(err.value)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="'adamw'") as err:
        make_optimizer("adamw", 0.1)
    assert "rmsprop" in str(err.value)  # the expected names are listed
