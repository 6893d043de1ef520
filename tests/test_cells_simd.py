"""rnnfast/cells/simd.py: the LSTM step on whole vectors of columns is bit-identical to the
scalar loops, for every column count (whole vectors, a tail, both) and for values where the
clamps, saturation and NaN matter."""

import numpy as np
import pytest
from numba import njit

from rnnfast.cells.lstm import (
    _backward_columns,
    _forward_columns,
    lstm_backward_step,
    lstm_forward_step,
)
from rnnfast.cells.simd import simd_lanes


@njit
def _lanes_of(a):
    return simd_lanes(a)


def _values(rng, n, dtype):
    """Normal values with a share of large, tiny and special ones."""
    x = rng.standard_normal(n) * 3
    k = n // 10
    idx = rng.choice(n, 6 * k, replace=False)
    x[idx[:k]] = rng.uniform(-120, 120, k)  # beyond float32's clamp
    x[idx[k : 2 * k]] = rng.uniform(-800, 800, k)  # beyond float64's clamp
    x[idx[2 * k : 3 * k]] = rng.standard_normal(k) * 1e-6
    x[idx[3 * k : 4 * k]] = 0.0
    x[idx[4 * k]] = np.nan
    x[idx[4 * k + 1]] = np.inf
    x[idx[4 * k + 2]] = -np.inf
    x[idx[4 * k + 3]] = -0.0
    return x.astype(dtype)


def _same(a, b):
    return np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_lanes_fill_64_bytes():
    assert _lanes_of(np.zeros(1, np.float32)) == 16
    assert _lanes_of(np.zeros(1, np.float64)) == 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [1, 7, 8, 16, 17, 33, 48])
def test_forward_step_matches_the_scalar_loops_bit_for_bit(dtype, B):
    rng = np.random.default_rng(B)
    H, T = 21, 3
    ldg, ldh = T * B + 5, (T + 1) * B + 3  # column blocks of wider buffers, odd strides
    gq, hp, hq = B + 2, B + 1, 2 * B + 1
    G = _values(rng, 4 * H * ldg, dtype)
    TC = rng.standard_normal(H * ldg).astype(dtype)
    hist = rng.standard_normal(H * ldh).astype(dtype)
    chist = _values(rng, H * ldh, dtype)
    want = [a.copy() for a in (G, TC, hist, chist)]
    before = hist.copy()
    lstm_forward_step(G, TC, hist, chist, ldg, ldh, gq, hp, hq, H, B)
    _forward_columns(*want, ldg, ldh, gq, hp, hq, H, B)
    for got, ref in zip((G, TC, hist, chist), want, strict=True):
        assert _same(got, ref)
    changed = hist != before
    assert changed.reshape(H, ldh)[:, hq : hq + B].mean() > 0.9  # h_t written...
    assert not changed.reshape(H, ldh)[:, :hq].any()  # ... and nothing else


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [1, 7, 8, 16, 17, 33, 48])
def test_backward_step_matches_the_scalar_loops_bit_for_bit(dtype, B):
    rng = np.random.default_rng(100 + B)
    H, T = 19, 3
    ldg, ldh, ldd = T * B + 3, (T + 1) * B + 1, B + 2
    gq, hp = B + 1, B + 2
    G = rng.uniform(-1, 1, 4 * H * ldg).astype(dtype)  # saved activations
    TC = rng.uniform(-1, 1, H * ldg).astype(dtype)
    chist = _values(rng, H * ldh, dtype)
    dG = rng.standard_normal(4 * H * ldg).astype(dtype)
    dout = _values(rng, H * ldg, dtype)
    dh = rng.standard_normal(H * ldd).astype(dtype)
    dc = rng.standard_normal(H * ldd).astype(dtype)
    arrays = (G, TC, chist, dG, dout, dh, dc)
    want = [a.copy() for a in arrays]
    before = dG.copy()
    lstm_backward_step(*arrays, ldg, ldh, gq, hp, H, B, ldd)
    _backward_columns(*want, ldg, ldh, gq, hp, H, B, ldd)
    for got, ref in zip(arrays, want, strict=True):
        assert _same(got, ref)
    changed = (dG != before).reshape(4 * H, ldg)
    assert changed[:, gq : gq + B].mean() > 0.9  # gate gradients written...
    assert not changed[:, :gq].any() and not changed[:, gq + B :].any()  # ... and nothing else
