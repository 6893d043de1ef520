"""The per-step matrix product and bias-gradient row sums on flat row-major buffers.

mm(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc):   C = op(A) @ Bm + beta * C
    A (M, K) row stride lda, or stored (K, M) when ta = 1; Bm (K, N); C (M, N).

Measured, not assumed (benchmarks/bench_mm.py): OpenBLAS 0.3.30's small-matrix kernels,
reached through rnnfast._blas.gemm at about 40 ns per call, beat hand-written batch-innermost
loops at every size the kernels see, from (4, 4) @ (4, 32) up; the hand loops lost by 1.5x at
H = 4 and 3-5x from H = 16 on. So every product goes to BLAS, and mm is the one place to
change if a size class ever wants another strategy.

Row blocks. OpenBLAS runs a product of at most 100^3 multiply-adds (M*N*K) through its
small-matrix kernels, which skip packing the operands; larger ones pack both, every call.
The per-step products sit just above that size (LSTM H = 100, a chunk of B = 50: 2e6), and
the same W_hh was packed again at every step. mm therefore cuts a product's rows into the
fewest blocks that each fit the small-matrix size (mm_blocks), if K <= 512. Measured
(benchmarks/bench_mm.py --blocks: the 28 per-step products of one chunk's pass, one BLAS
thread, alternately), one call vs row blocks: LSTM H=100 B=50 forward 1.25 vs 1.15 ms,
backward 1.35 vs 1.11; B=100 2.35 vs 2.11 and 2.59 vs 2.19; LSTM H=64 B=100 backward 1.13 vs
0.84; LSTM H=256 B=16 forward 2.93 vs 2.27. Backward at K = 1024 (LSTM H = 256) gained
nothing, hence SMALL_MAX_K. The blocks are a fixed function of the shapes, so results stay
deterministic. (Other BLAS builds may have other sizes; the blocks then only cost calls.)

K blocks. Above SMALL_MAX_K (the backward product W_hh^T @ dG of LSTM H > 128, K = 4H) one
call ran the packed path, which copies both operands at every step (9 % of a char-level LSTM
256 epoch's samples in sgemm_oncopy/itcopy). mm cuts K instead, into blocks of at least MIN_K
that each fit the small-matrix size, accumulating with beta = 1 after the first (rows too if
a K block alone is still too large). Measured (`python benchmarks/bench_mm.py --blocks`, one
BLAS thread, ms per pass of 28 products W_hh^T @ dG of LSTM 256, one call -> K blocks, two
runs): B = 16 3.11 -> 2.24 and 3.65 -> 3.09; B = 32 6.29 -> 5.27 and 5.73 -> 4.71. The
summation order over K changes only for these shapes (K > SMALL_MAX_K).
"""

from numba import njit

from rnnfast._blas import gemm

SMALL_MNK = 1_000_000  # OpenBLAS's small-matrix kernels take products up to M*N*K = 100^3
SMALL_MAX_K = 512  # ... but lost to the packed path for K = 1024 (LSTM H = 256 backward)
MIN_ROWS = 8  # rows per block at least
MIN_K = 64  # inner dimension per K block at least


@njit(cache=True, error_model="numpy")
def mm_blocks(M, N, K):
    """(row blocks, K blocks) mm cuts a per-step product into. K <= SMALL_MAX_K: row blocks
    only, enough that each stays within OpenBLAS's small-matrix size (SMALL_MNK). Larger K:
    K blocks first (at least MIN_K deep), then rows if a K block is still too large."""
    work = M * N * K
    if work <= SMALL_MNK:
        return 1, 1
    if K <= SMALL_MAX_K:
        return max(1, min((work + SMALL_MNK - 1) // SMALL_MNK, M // MIN_ROWS)), 1
    nk = max(1, min((work + SMALL_MNK - 1) // SMALL_MNK, K // MIN_K))
    kb = (K + nk - 1) // nk
    nm = max(1, min((M * N * kb + SMALL_MNK - 1) // SMALL_MNK, M // MIN_ROWS))
    return nm, nk


@njit(cache=True, error_model="numpy")
def mm(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc):
    nb, nk = mm_blocks(M, N, K)
    for i in range(nb):
        r0, r1 = i * M // nb, (i + 1) * M // nb
        for j in range(nk):
            k0, k1 = j * K // nk, (j + 1) * K // nk
            # op(A)[r0:r1, k0:k1]: A is (M, K) row-major, or stored (K, M) when ta = 1
            a0 = r0 * lda + k0 if ta == 0 else k0 * lda + r0
            gemm(ta, 0, r1 - r0, N, k1 - k0, 1.0, A[a0:], lda, Bm[k0 * ldb :], ldb,
                 beta if j == 0 else 1.0, C[r0 * ldc :], ldc)  # fmt: skip


@njit(cache=True, error_model="numpy")
def lane_sum(a, n, lanes):
    """sum(a[:n]) over 64 interleaved partial sums, in a fixed order: vectorised (a plain
    float reduction stays scalar without fastmath) and deterministic.
    lanes: scratch of at least min(n, 64) elements."""
    if n >= 64:
        return _lane_sum64(a, n, lanes)
    if n <= 0:
        return a.dtype.type(0)
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
