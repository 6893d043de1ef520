"""rnnfast.cells.vmath: vtanh, vsigmoid, vexp, vexpm1 against NumPy in float64.

They are only callable from @njit code, so each is applied over an array by a small
@njit wrapper (error_model="numpy", as in the kernels).
"""

import numpy as np
import pytest
from numba import njit

from rnnfast.cells.vmath import vexp, vexpm1, vsigmoid, vtanh


@njit(error_model="numpy")
def _apply_tanh(a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = vtanh(a[i])
    return out


@njit(error_model="numpy")
def _apply_sigmoid(a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = vsigmoid(a[i])
    return out


@njit(error_model="numpy")
def _apply_exp(a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = vexp(a[i])
    return out


@njit(error_model="numpy")
def _apply_expm1(a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = vexpm1(a[i])
    return out


def _sigmoid64(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


FUNCS = {
    "tanh": (_apply_tanh, np.tanh),
    "sigmoid": (_apply_sigmoid, _sigmoid64),
    "exp": (_apply_exp, np.exp),
    "expm1": (_apply_expm1, np.expm1),
}
RTOL = {np.float64: 2e-15, np.float32: 3e-7}


def _inputs(dtype):
    rng = np.random.default_rng(0)
    parts = [
        [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0],
        [np.log(2) / 2, -np.log(2) / 2, np.log(2), 20.0, -20.0],  # reduction boundaries
        rng.standard_normal(2000) * 3,
        np.linspace(-60, 60, 4001),
        rng.uniform(-1, 1, 500) * 10.0 ** rng.uniform(-12, 1, 500),  # small magnitudes
    ]
    return np.concatenate([np.asarray(p, np.float64) for p in parts]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(FUNCS))
def test_relative_error(name, dtype):
    apply, ref = FUNCS[name]
    x = _inputs(dtype)
    got = apply(x)
    assert got.dtype == np.dtype(dtype)
    want = ref(x.astype(np.float64))  # the exact function of the rounded input
    err = np.abs(got.astype(np.float64) - want)
    # where the true value is 0 (tanh(0), expm1(0)) the result must be 0 exactly
    rel = np.where(want == 0, err, err / np.where(want == 0, 1, np.abs(want)))
    worst = int(np.argmax(rel))
    assert rel[worst] < RTOL[dtype], f"{name}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_odd_and_sign(dtype):
    x = _inputs(dtype)
    np.testing.assert_array_equal(_apply_tanh(-x), -_apply_tanh(x))
    assert np.all(np.sign(_apply_tanh(x)) == np.sign(x))
    assert np.all(np.sign(_apply_expm1(x)) == np.sign(x))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_saturation(dtype):
    big = np.array([1000.0, -1000.0, 100.0, -100.0], dtype)
    # float32 clamps its argument at 80, so sigmoid(-x) bottoms out near exp(-80) ~ 2e-35
    atol = {np.float64: 1e-300, np.float32: 1e-30}[dtype]
    np.testing.assert_array_equal(_apply_tanh(big), np.array([1, -1, 1, -1], dtype))
    s = _apply_sigmoid(big).astype(np.float64)
    assert s[0] == 1 and s[2] == 1
    assert 0 <= s[1] <= atol  # true value exp(-1000) ~ 1e-434
    assert abs(s[3] - np.exp(-100.0)) <= atol + 1e-15 * np.exp(-100.0)
    e = _apply_expm1(big[1::2])
    np.testing.assert_array_equal(e, np.array([-1, -1], dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_finite_for_every_finite_input(dtype):
    info = np.finfo(dtype)
    rng = np.random.default_rng(1)
    mags = 10.0 ** rng.uniform(np.log10(float(info.tiny)), np.log10(float(info.max)), 3000)
    extremes = [info.max, info.tiny, info.smallest_subnormal, 1e4, 88.0, 89.0, 709.0, 710.0]
    x = np.concatenate([mags, extremes]).astype(dtype)
    x = np.concatenate([x, -x])
    for name, (apply, _) in FUNCS.items():
        y = apply(x)
        assert not np.isnan(y).any(), name
    # tanh and sigmoid stay inside their ranges and are finite
    t, s = _apply_tanh(x), _apply_sigmoid(x)
    assert np.all(np.isfinite(t)) and np.all(np.abs(t) <= 1)
    assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
    em = _apply_expm1(x)
    assert np.all(em >= -1)


def test_not_callable_from_python():
    with pytest.raises(NotImplementedError):
        vtanh(0.5)
