"""Matrix products on flat row-major buffers, picked by size, and bias-gradient row sums.

mm(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc):   C = op(A) @ Bm + beta * C
    A (M, K) row stride lda, or stored (K, M) when ta = 1; Bm (K, N); C (M, N).

The per-time-step recurrent products are small (e.g. (4, 4) @ (4, 200)) and a BLAS call
costs about a microsecond before any arithmetic, so small products use hand loops with the
batch axis innermost (contiguous, vectorised by LLVM); large ones go to BLAS. The crossover
(SMALL_MM_MAX) was measured with benchmarks/bench_mm.py on this machine.
"""

from numba import njit

from rnnfast._blas import gemm

# Hand loops while M*K (the weight block's size) is at most this; measured crossover.
SMALL_MM_MAX = 4096


@njit(cache=True, error_model="numpy")
def mm_small(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc):
    i = 0
    # four rows of C at a time: each row of Bm is loaded once for four FMAs
    while i + 4 <= M:
        c0 = C[i * ldc : i * ldc + N]
        c1 = C[(i + 1) * ldc : (i + 1) * ldc + N]
        c2 = C[(i + 2) * ldc : (i + 2) * ldc + N]
        c3 = C[(i + 3) * ldc : (i + 3) * ldc + N]
        if beta == 0:
            c0[:] = 0
            c1[:] = 0
            c2[:] = 0
            c3[:] = 0
        for k in range(K):
            if ta == 0:
                a0 = A[i * lda + k]
                a1 = A[(i + 1) * lda + k]
                a2 = A[(i + 2) * lda + k]
                a3 = A[(i + 3) * lda + k]
            else:
                a0 = A[k * lda + i]
                a1 = A[k * lda + i + 1]
                a2 = A[k * lda + i + 2]
                a3 = A[k * lda + i + 3]
            brow = Bm[k * ldb : k * ldb + N]
            for n in range(N):
                bv = brow[n]
                c0[n] += a0 * bv
                c1[n] += a1 * bv
                c2[n] += a2 * bv
                c3[n] += a3 * bv
        i += 4
    while i < M:
        c0 = C[i * ldc : i * ldc + N]
        if beta == 0:
            c0[:] = 0
        for k in range(K):
            a0 = A[i * lda + k] if ta == 0 else A[k * lda + i]
            brow = Bm[k * ldb : k * ldb + N]
            for n in range(N):
                c0[n] += a0 * brow[n]
        i += 1


@njit(cache=True, error_model="numpy")
def mm(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc):
    if M * K <= SMALL_MM_MAX:
        mm_small(ta, M, N, K, A, lda, Bm, ldb, beta, C, ldc)
    else:
        gemm(ta, 0, M, N, K, 1.0, A, lda, Bm, ldb, beta, C, ldc)


@njit(cache=True, error_model="numpy")
def rowsum_acc(db, G, R, N, ldg, acc):
    """db[r] += sum(G[r, :N]) for R rows of stride ldg, in a fixed order.

    acc: scratch of at least min(N, 64). Partial sums over 64 lanes keep the loop
    vectorised (a plain float reduction is sequential without fastmath) and the result
    deterministic.
    """
    W = min(N, 64)
    for r in range(R):
        acc[:W] = 0
        row = G[r * ldg : r * ldg + N]
        full = (N // W) * W
        for s in range(0, full, W):
            blk = row[s : s + W]
            for w in range(W):
                acc[w] += blk[w]
        tot = 0.0
        for w in range(W):
            tot += acc[w]
        for w in range(full, N):
            tot += row[w]
        db[r] += tot
