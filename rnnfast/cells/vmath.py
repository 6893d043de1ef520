"""Vectorisable exp, expm1, tanh, sigmoid and log for @njit loops (float32 and float64).

LLVM cannot vectorise calls to libm's exp/tanh here (no SVML in llvmlite's LLVM), so a
scalar tanh costs about 11 ns. These versions are straight-line arithmetic that LLVM turns
into SIMD code inside the kernels' batch loops:

    x = n ln2 + r,  |r| <= ln2/2     (Cody-Waite reduction, n = round(x / ln2))
    expm1(r) ~ Taylor polynomial (degree 13 in float64, 8 in float32; error < 1 ulp-ish)
    expm1(x) = 2^n expm1(r) + (2^n - 1)    (exact for n = 0, no cancellation near 0)
    tanh(x)  = sign(x) * -u / (2 + u),  u = expm1(-2|x|)
    sigmoid(x) = 1 / (1 + exp(-x))

2^n is built from its IEEE bits (an integer shift and a bitcast intrinsic). Arguments are
clamped so 2^n stays a normal number; the clamps are beyond where the results saturate.
Accuracy against NumPy is tested in tests/test_math.py.

vlog splits x = 2^k m from its bits (m in [sqrt(1/2), sqrt(2))) and sums 2 atanh((m-1)/(m+1))
as an odd polynomial plus k ln2; see the comment above _log64. Tested in tests/test_math_log.py.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _int_bits_as_float(typingctx, i):
    if i == types.int64:
        out, llty = types.float64, ir.DoubleType()
    elif i == types.int32:
        out, llty = types.float32, ir.FloatType()
    else:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], llty)

    return out(i), codegen


_LOG2E = 1.4426950408889634
# fdlibm's split of ln 2: _LN2_HI has trailing zero bits so n * _LN2_HI is exact.
_LN2_HI64 = 6.93147180369123816490e-01
_LN2_LO64 = 1.90821492927058770002e-10
_LN2_HI32 = 0.693359375
_LN2_LO32 = -2.12194440e-4
_INV_FACT = [1.0 / float(np.prod(np.arange(1, k + 1))) for k in range(15)]


@njit(inline="always")
def _expm1_parts64(x):
    # returns (2^n, expm1(r)) for x clamped to [-700, 700]
    x = min(max(x, -700.0), 700.0)
    n = np.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI64) - n * _LN2_LO64
    p = 1.0 / 6227020800.0  # 1/13!
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = (p * r) * r + r
    scale = _int_bits_as_float((np.int64(n) + np.int64(1023)) << np.int64(52))
    return scale, p


@njit(inline="always")
def _expm1_parts32(x):
    x = min(max(x, np.float32(-80.0)), np.float32(80.0))
    n = np.floor(x * np.float32(_LOG2E) + np.float32(0.5))
    r = (x - n * np.float32(_LN2_HI32)) - n * np.float32(_LN2_LO32)
    p = np.float32(1.0 / 40320.0)
    p = p * r + np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = (p * r) * r + r
    scale = _int_bits_as_float(np.int32((np.int32(n) + 127) << 23))
    return scale, p


def vexpm1(x):
    """exp(x) - 1, vectorisable."""
    raise NotImplementedError  # only callable from @njit code


def vexp(x):
    """exp(x), vectorisable."""
    raise NotImplementedError


def vtanh(x):
    """tanh(x), vectorisable."""
    raise NotImplementedError


def vsigmoid(x):
    """1 / (1 + exp(-x)), vectorisable."""
    raise NotImplementedError


def _parts_for(x):
    """The reduction for x's type and the constants 1 and 2 in that type (an int or float64
    literal would promote float32 arithmetic to float64 and halve the vector width)."""
    if x == types.float64:
        return _expm1_parts64, np.float64(1), np.float64(2)
    if x == types.float32:
        return _expm1_parts32, np.float32(1), np.float32(2)
    return None, None, None


@overload(vexpm1)
def _ov_vexpm1(x):
    parts, one, _ = _parts_for(x)
    if parts is None:
        return None

    def impl(x):
        scale, p = parts(x)
        return scale * p + (scale - one)

    return impl


@overload(vexp)
def _ov_vexp(x):
    parts, _, _ = _parts_for(x)
    if parts is None:
        return None

    def impl(x):
        scale, p = parts(x)
        return scale * p + scale

    return impl


@overload(vtanh)
def _ov_vtanh(x):
    parts, one, two = _parts_for(x)
    if parts is None:
        return None

    def impl(x):
        scale, p = parts(-two * abs(x))
        u = scale * p + (scale - one)  # expm1(-2|x|) in (-1, 0]
        return np.copysign(-u / (two + u), x)

    return impl


@overload(vsigmoid)
def _ov_vsigmoid(x):
    parts, one, _ = _parts_for(x)
    if parts is None:
        return None

    def impl(x):
        scale, p = parts(-x)
        return one / (one + (scale * p + scale))

    return impl


# ---- log -------------------------------------------------------------------------------------
#
#   x = 2^k m,  m in [sqrt(1/2), sqrt(2))   (IEEE bits; subnormals first scaled by 2^54 or 2^25)
#   f = m - 1 (exact),  s = f / (2 + f),  so  log(m) = log(1+s) - log(1-s) = 2 atanh(s)
#   2 atanh(s) = 2s + s R(s^2),  R = 2/3 s^2 + 2/5 s^4 + ...,  |s| <= 0.1716
#   log(x) = k ln2_hi - ((f^2/2 - (s (f^2/2 + R) + k ln2_lo)) - f)     (fdlibm's e_log.c form:
#            f is exact and the rounded terms are <= f/2 of the result, so < 1 ulp or so)
# float64: R to s^14 with fdlibm's minimax coefficients Lg1..Lg7 (|error| < 2^-58.45), split
# into even and odd halves as fdlibm does; 18% faster than Taylor to s^20, which needs ten
# terms for the same accuracy. float32: Taylor 2/3, 2/5, 2/7, 2/9 (truncation s^10/11 < 2e-9).
# Measured (180,000 points, mpmath): within 0.82 ulp (float64), 0.83 ulp (float32) of log.
# Specials are selects, not branches: log(+-0) = -inf, log(x < 0) = log(NaN) = NaN,
# log(+inf) = +inf.


@intrinsic
def _float_bits_as_int(typingctx, x):
    if x == types.float64:
        out, llty = types.int64, ir.IntType(64)
    elif x == types.float32:
        out, llty = types.int32, ir.IntType(32)
    else:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], llty)

    return out(x), codegen


_SQRT_HALF_BITS64 = 0x3FE6A09E667F3BCD  # bits of sqrt(1/2) in float64
_SQRT_HALF_BITS32 = 0x3F3504F3  # and in float32
_INV_ODD = tuple(2.0 / (2 * k + 1) for k in range(5))  # 2/(2k+1): 2, 2/3, 2/5, ...
# fdlibm e_log.c's minimax coefficients of R(z) = Lg1 z + Lg2 z^2 + ... + Lg7 z^7
_LG1 = 6.666666666666735130e-01  # 3FE55555 55555593
_LG2 = 3.999999999940941908e-01  # 3FD99999 9997FA04
_LG3 = 2.857142874366239149e-01  # 3FD24924 94229359
_LG4 = 2.222219843214978396e-01  # 3FCC71C5 1D8E78AF
_LG5 = 1.818357216161805012e-01  # 3FC74664 96CB03DE
_LG6 = 1.531383769920937332e-01  # 3FC39A09 D078C69F
_LG7 = 1.479819860511658591e-01  # 3FC2F112 DF3E5244


@njit(inline="always")
def _log64(x):
    tiny = x < 2.2250738585072014e-308  # below the smallest normal (or <= 0)
    xs = x * 18014398509481984.0 if tiny else x  # 2^54
    bits = _float_bits_as_int(xs)
    e = (bits - np.int64(_SQRT_HALF_BITS64)) >> np.int64(52)
    m = _int_bits_as_float(bits - (e << np.int64(52)))
    k = np.float64(e) - (54.0 if tiny else 0.0)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    hfsq = 0.5 * f * f
    y = k * _LN2_HI64 - ((hfsq - (s * (hfsq + r) + k * _LN2_LO64)) - f)
    y = y if x < np.inf else x  # +inf, and NaN passes through
    y = y if x != 0.0 else -np.inf
    return y if x >= 0.0 else np.nan


@njit(inline="always")
def _log32(x):
    zero, one, half = np.float32(0), np.float32(1), np.float32(0.5)
    tiny = x < np.float32(1.1754943508222875e-38)
    xs = x * np.float32(33554432.0) if tiny else x  # 2^25
    bits = _float_bits_as_int(xs)
    e = np.int32(np.int32(bits - np.int32(_SQRT_HALF_BITS32)) >> np.int32(23))
    m = _int_bits_as_float(np.int32(bits - np.int32(e << np.int32(23))))
    k = np.float32(e) - (np.float32(25) if tiny else zero)
    f = m - one
    s = f / (np.float32(2) + f)
    z = s * s
    r = np.float32(_INV_ODD[4])
    r = r * z + np.float32(_INV_ODD[3])
    r = r * z + np.float32(_INV_ODD[2])
    r = r * z + np.float32(_INV_ODD[1])
    r = r * z
    hfsq = half * f * f
    y = k * np.float32(_LN2_HI32) - ((hfsq - (s * (hfsq + r) + k * np.float32(_LN2_LO32))) - f)
    y = y if x < np.float32(np.inf) else x
    y = y if x != zero else np.float32(-np.inf)
    return y if x >= zero else np.float32(np.nan)


def vlog(x):
    """Natural log, vectorisable."""
    raise NotImplementedError


@overload(vlog)
def _ov_vlog(x):
    if x == types.float64:
        return lambda x: _log64(x)
    if x == types.float32:
        return lambda x: _log32(x)
    return None
