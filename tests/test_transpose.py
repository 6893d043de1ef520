"""rnnfast.cpu._transpose.transpose against NumPy: every tile size, the strips the tiles leave
over, offsets and row strides larger than the matrix, and nothing outside the target touched."""

import numpy as np
import pytest

from rnnfast.cpu._transpose import transpose

SIZES = [1, 3, 4, 5, 8, 13, 16, 17, 24, 31, 32, 33, 50]


def _case(rng, dtype, R, C, pad_s, pad_d, so, do):
    lds, ldd = C + pad_s, R + pad_d
    src = rng.standard_normal(so + R * lds + 7).astype(dtype)
    dst = rng.standard_normal(do + C * ldd + 7).astype(dtype)
    want = dst.copy()
    A = src[so : so + R * lds].reshape(R, lds)[:, :C]
    view = want[do : do + C * ldd].reshape(C, ldd)
    view[:, :R] = A.T
    transpose(src, so, lds, dst, do, ldd, R, C)
    return dst, want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("R", SIZES)
@pytest.mark.parametrize("C", SIZES)
def test_transpose_matches_numpy(dtype, R, C):
    rng = np.random.default_rng(R * 100 + C)
    dst, want = _case(rng, dtype, R, C, pad_s=0, pad_d=0, so=0, do=0)
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("R", "C", "pad_s", "pad_d", "so", "do"), [
    (16, 16, 5, 3, 1, 2),  # unaligned offsets, strides not multiples of the tile
    (40, 19, 100, 0, 13, 0),
    (19, 40, 0, 77, 0, 9),
    (200, 16, 2000, 0, 200, 5),  # the (T*B)-stride rows of the kernels' buffers
    (16, 200, 0, 1800, 3, 200),
    (7, 9, 1, 1, 3, 3),
])  # fmt: skip
def test_transpose_offsets_and_strides(dtype, R, C, pad_s, pad_d, so, do):
    rng = np.random.default_rng(R + C + pad_s)
    dst, want = _case(rng, dtype, R, C, pad_s, pad_d, so, do)
    np.testing.assert_array_equal(dst, want)  # also: padding and the rest left as they were


def test_transpose_empty_is_a_no_op():
    src = np.arange(10, dtype=np.float32)
    dst = np.full(10, -1.0, np.float32)
    for R, C in ((0, 5), (5, 0), (0, 0)):
        transpose(src, 0, 5, dst, 0, 5, R, C)
    np.testing.assert_array_equal(dst, -1.0)


def test_transpose_stays_an_out_of_line_call():
    """Inlined at every call site, the tile loops doubled the kernels' cold compile time: the
    compiled caller must call _transpose, not contain it."""
    from numba import njit

    @njit
    def caller(a, b):  # one call site: without the noinline mark, LLVM inlines it here
        transpose(a, 0, 4, b, 0, 4, 4, 4)

    a = np.arange(16, dtype=np.float32)
    b = np.zeros(16, np.float32)
    caller(a, b)
    np.testing.assert_array_equal(b, a.reshape(4, 4).T.ravel())
    llvm = caller.overloads[caller.signatures[0]].library.get_llvm_str()
    mangled = "_transpose10_transpose"  # rnnfast.cpu._transpose._transpose, as Numba names it
    calls = [line for line in llvm.splitlines() if " call " in line and mangled in line]
    assert calls, "transpose was inlined into its caller"
