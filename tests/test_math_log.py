"""rnnfast.cells.vmath.vlog against NumPy (and mpmath where installed), float64 and float32.

Errors are counted in ulps of the correctly rounded result. Measured worst cases: vlog is
within 0.82 ulp of the exact log in float64 and 0.83 ulp in float32 (mpmath, 140 bits);
np.log (the float64 reference) is itself within about 0.6 ulp, so |vlog - np.log| < 1.5 ulp.
The bounds below are 2 ulp against np.log in float64, 1 ulp against the exact log
(mpmath) in float64, and 1 ulp in float32 against np.log of the float64 input, whose own
error is negligible at float32 precision.
"""

import platform
import re

import numpy as np
import pytest
from numba import njit

from rnnfast.cells.vmath import vlog

DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
MAX_ULP = {np.float64: 2.0, np.float32: 1.0}


@njit(error_model="numpy")
def _apply_log(a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = vlog(a[i])
    return out


def _ulp_error(x, got):
    """|got - log(x)| in ulps of log(x) rounded to x's dtype (x > 0, finite)."""
    want = np.log(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(x.dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / ulp


def _check(x, dtype):
    x = np.asarray(x, np.float64).astype(dtype)
    got = _apply_log(x)
    assert got.dtype == np.dtype(dtype)
    err = _ulp_error(x, got)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[dtype], (
        f"vlog({x[worst]!r}) = {got[worst]!r}, want {np.log(np.float64(x[worst]))!r}: "
        f"{err[worst]:.2f} ulp"
    )


@DTYPES
def test_wide_range(dtype):
    lo, hi = {np.float64: (-300, 300), np.float32: (-37, 37)}[dtype]
    rng = np.random.default_rng(0)
    _check(10.0 ** rng.uniform(lo, hi, 20000), dtype)
    _check(10.0 ** np.linspace(lo, hi, 5001), dtype)


@DTYPES
def test_near_one(dtype):
    rng = np.random.default_rng(1)
    d = 10.0 ** rng.uniform(-15 if dtype == np.float64 else -7, -0.3, 5000)
    eps = np.finfo(dtype).eps
    ulps = np.arange(1, 200) * eps  # 1 + k eps and 1 - k eps/2: the first few floats
    _check(np.concatenate([1 + d, 1 - d / 2, 1 + ulps, 1 - ulps / 2]), dtype)
    assert _apply_log(np.array([1.0], dtype))[0] == 0  # exactly


@DTYPES
def test_reduction_boundaries(dtype):
    # m jumps from sqrt(2) down to sqrt(1/2) (k up by one); check both sides over exponents
    k = np.arange(-60, 61, dtype=np.float64)
    edge = (np.sqrt(0.5) * 2.0**k).astype(dtype)
    down, up, near = edge, edge, [edge]
    for _ in range(3):  # three floats either side
        down, up = np.nextafter(down, dtype(0)), np.nextafter(up, dtype(np.inf))
        near += [down, up]
    x = np.concatenate(near)
    _check(x, dtype)
    xs = np.sort(x)
    assert np.all(np.diff(_apply_log(xs)) >= 0)  # monotone across the seam


@DTYPES
def test_powers_of_two(dtype):
    info = np.finfo(dtype)
    lo = int(np.log2(float(info.smallest_subnormal)))  # -1074 or -149
    k = np.arange(lo, info.maxexp)
    x = np.ldexp(np.ones(k.size), k).astype(dtype)
    _check(x, dtype)
    np.testing.assert_allclose(_apply_log(x), (k * np.log(2)).astype(dtype), rtol=2 * info.eps)


@DTYPES
def test_subnormals_and_extremes(dtype):
    info = np.finfo(dtype)
    tiny, sub = float(info.tiny), float(info.smallest_subnormal)
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            10.0 ** rng.uniform(np.log10(sub), np.log10(tiny), 5000),
            [sub, 2 * sub, 3 * sub, tiny - sub, tiny, tiny + 2 * sub, float(info.max)],
        ]
    )
    x = x.astype(dtype)
    assert np.all(x > 0)
    _check(x, dtype)


@DTYPES
def test_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, -1.0, -1e-30, np.nan, -np.nan], dtype)
    got = _apply_log(x)
    assert got.dtype == np.dtype(dtype)
    assert got[0] == -np.inf and got[1] == -np.inf
    assert got[2] == np.inf
    assert np.isnan(got[3:]).all()
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.log(x.astype(np.float64)).astype(dtype)
    np.testing.assert_array_equal(got, want)


def test_float64_against_exact_log():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 140
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [10.0 ** rng.uniform(-320, 308, 1500), 1 + rng.uniform(-0.3, 0.42, 1500)],
    )
    got = _apply_log(x)
    worst = 0.0
    for v, g in zip(x, got, strict=True):
        exact = mpmath.log(mpmath.mpf(float(v)))
        worst = max(worst, float(abs(mpmath.mpf(float(g)) - exact)) / np.spacing(abs(float(exact))))
    assert worst <= 1.0, worst


def test_not_callable_from_python():
    with pytest.raises(NotImplementedError):
        vlog(1.0)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 assembly")
def test_vectorised_without_libm_call():
    f = njit(error_model="numpy")(_apply_log.py_func)  # fresh, so the assembly is kept
    f(np.ones(8)), f(np.ones(8, np.float32))
    for sig, asm in f.inspect_asm().items():
        assert not re.search(r"call\w*\s+\S*log", asm), sig
        suffix = "pd" if "float64" in str(sig[0]) else "ps"
        assert re.search(rf"\bv?div{suffix}\b", asm), f"{sig}: no packed division"
        if suffix == "ps":  # float32 stays float32: no widening to double
            assert not re.search(r"\bv?cvt(ss2sd|ps2pd)\b", asm), sig
