"""A fast all-finite check for the public entry points' input validation.

np.isfinite(a).all() makes a boolean temporary and two ufunc passes: about 1.5-2 us even for
a few hundred elements, paid for every parameter array, x and dout on every forward and
backward call. The compiled loop below counts non-finite entries (|v| < inf is false for NaN
and +-inf) with an integer reduction LLVM vectorises, at about 0.3 us a call.
"""

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def _count_nonfinite(a):  # (n,) float32 or float64, contiguous
    inf = a.dtype.type(np.inf)
    bad = 0
    for i in range(a.size):
        bad += not (abs(a[i]) < inf)
    return bad


def all_finite(a: np.ndarray) -> bool:
    """True when a (any shape) holds no NaN and no infinity."""
    if a.dtype.kind == "f" and a.dtype.itemsize in (4, 8) and a.flags.c_contiguous:
        return _count_nonfinite(a.reshape(-1)) == 0
    return bool(np.isfinite(a).all())
