"""The per-step matrix product and bias-gradient row sums on flat row-major buffers.

mm(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc):   C = op(A) @ Bm + beta * C
    A (M, K) row stride lda, or stored (K, M) when ta = 1; Bm (K, N); C (M, N).

Measured, not assumed (benchmarks/bench_mm.py): OpenBLAS 0.3.30's small-matrix kernels,
reached through rnnfast._blas.gemm at about 40 ns per call, beat hand-written batch-innermost
loops at every size the kernels see, from (4, 4) @ (4, 32) up; the hand loops lost by 1.5x at
H = 4 and 3-5x from H = 16 on. So every product goes to BLAS, and mm is the one place to
change if a size class ever wants another strategy.
"""

from numba import njit

from rnnfast._blas import gemm


@njit(cache=True, error_model="numpy")
def mm(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc):
    gemm(ta, 0, M, N, K, 1.0, A, lda, Bm, ldb, beta, C, ldc)


@njit(cache=True, error_model="numpy")
def lane_sum(a, n, lanes):
    """sum(a[:n]) over 64 interleaved partial sums, in a fixed order: vectorised (a plain
    float reduction stays scalar without fastmath) and deterministic.
    lanes: scratch of at least min(n, 64) elements."""
    if n >= 64:
        return _lane_sum64(a, n, lanes)
    W = n
    acc = lanes[:W]
    acc[:] = 0
    full = (n // W) * W if W > 0 else 0
    for s0 in range(0, full, W):
        for w in range(W):
            acc[w] += a[s0 + w]
    total = 0.0
    for w in range(W):
        total += acc[w]
    for k in range(full, n):
        total += a[k]
    return total


@njit(cache=True, error_model="numpy")
def _lane_sum64(a, n, lanes):
    """lane_sum for n >= 64, the same order of operations. The literal lane count lets LLVM
    vectorise the block loop: 4x faster than a run-time count (bias row sums of LSTM
    28x100x100: 0.55 -> 0.14 ms)."""
    acc = lanes[:64]
    acc[:] = 0
    full = n // 64 * 64
    for s0 in range(0, full, 64):
        blk = a[s0 : s0 + 64]
        for w in range(64):
            acc[w] += blk[w]
    total = 0.0
    for w in range(64):
        total += acc[w]
    for k in range(full, n):
        total += a[k]
    return total


@njit(cache=True, error_model="numpy")
def rowsum_acc(db, G, R, N, ldg, acc):
    """db[r] += sum(G[r, :N]) for R rows of stride ldg (lane_sum per row; acc: its scratch)."""
    for r in range(R):
        db[r] += lane_sum(G[r * ldg : r * ldg + N], N, acc)
