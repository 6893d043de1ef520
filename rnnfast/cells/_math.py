"""Vectorisable exp, expm1, tanh and sigmoid for @njit loops (float32 and float64).

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
