"""rnnfast.cpu._linalg: the per-step product mm (row blocks included) and the lane sums."""

import numpy as np
import pytest

from rnnfast.cpu._linalg import (
    MIN_K,
    MIN_ROWS,
    SMALL_MAX_K,
    SMALL_MNK,
    lane_sum,
    mm,
    mm_blocks,
    rowsum_acc,
)


@pytest.mark.parametrize(
    "M,N,K,want",
    [
        (400, 50, 50, (1, 1)),  # 1e6: fits the small-matrix size
        (400, 50, 100, (2, 1)),  # LSTM H=100, B=50 forward: 2e6 -> two blocks of 200 rows
        (100, 50, 400, (2, 1)),  # ... backward: two blocks of 50 rows
        (100, 100, 400, (4, 1)),
        (256, 16, 1024, (1, 5)),  # K above SMALL_MAX_K: K blocks of 204-205
        (256, 100, 1024, (2, 16)),  # K blocks of MIN_K, then two row blocks
        (16, 1000, 1000, (2, 15)),
        (16, 60, 1000, (1, 1)),  # K above SMALL_MAX_K, but small enough for one call
        (16, 4000, 100, (2, 1)),  # at least MIN_ROWS rows per block
        (9, 10**6, 8, (1, 1)),
    ],
)
def test_mm_blocks(M, N, K, want):
    nb, nk = mm_blocks(M, N, K)
    assert (nb, nk) == want
    kb = -(-K // nk)
    if nb > 1:
        assert -(-M // nb) * N * kb <= SMALL_MNK * 1.01 or M // nb == MIN_ROWS
    if nk > 1:
        assert K > SMALL_MAX_K and (kb * M * N <= SMALL_MNK * 1.01 or nk == K // MIN_K)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize(
    "M,N,K", [(3, 5, 7), (400, 50, 100), (100, 50, 400), (37, 300, 120), (40, 30, 1300)]
)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_mm_matches_numpy_on_strided_views(dtype, ta, M, N, K, beta):
    """C[:, c0:c0+N] (row stride ldc) = op(A) @ Bm[:, b0:b0+N] + beta * C, as the kernels call it
    on column blocks of wider buffers; the columns outside the block stay untouched."""
    rng = np.random.default_rng(M * N + K + ta)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    ldb, b0 = N + 9, 4
    ldc, c0 = N + 13, 6
    Bfull = rng.standard_normal((K, ldb)).astype(dtype)
    Cfull = rng.standard_normal((M, ldc)).astype(dtype)
    want = Cfull.copy()
    opA = A.T if ta else A
    want[:, c0 : c0 + N] = (
        opA.astype(np.float64) @ Bfull[:, b0 : b0 + N] + beta * Cfull[:, c0 : c0 + N]
    )
    C = Cfull.ravel().copy()
    mm(ta, M, N, K, A.ravel(), A.shape[1], Bfull.ravel()[b0:], ldb, beta, C[c0:], ldc)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(C.reshape(M, ldc), want, rtol=tol, atol=tol * np.sqrt(K))


def test_row_blocks_give_the_same_result_in_every_call():
    rng = np.random.default_rng(0)
    M, N, K = 400, 50, 100
    A = rng.standard_normal(M * K).astype(np.float32)
    Bm = rng.standard_normal(K * N).astype(np.float32)
    runs = []
    for _ in range(3):
        C = np.zeros(M * N, np.float32)
        mm(0, M, N, K, A, K, Bm, N, 0.0, C, N)
        runs.append(C)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("n", [0, 1, 5, 63, 64, 65, 200, 1001])
def test_lane_sum_and_rowsum(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n)
    lanes = np.empty(64)
    assert lane_sum(a, n, lanes) == pytest.approx(a.sum(), rel=1e-12, abs=1e-12)
    G = rng.standard_normal((3, n + 2))
    db = np.ones(3)
    rowsum_acc(db, G.ravel(), 3, n, n + 2, lanes)
    np.testing.assert_allclose(db, 1 + G[:, :n].sum(axis=1), rtol=1e-12, atol=1e-12)
