"""Crossover between hand-written small matrix products and BLAS for the recurrent step.

Times C (M, B) = W (M, K) @ h (K, B) (forward, ta=0) and dh (K, B) = W^T @ dG (backward,
ta=1) as the kernels call them (C a column block of a wider buffer), with
rnnfast.cpu._linalg.mm_small and with BLAS (rnnfast._blas.gemm), measured alternately in one
run. The kernels (rnnfast/cpu/_linalg.py: mm) use BLAS for every size because of this.

    python benchmarks/bench_mm.py [--dtype float32] [--batch 200]
    python benchmarks/bench_mm.py --blocks      # mm's row blocks vs one BLAS call

--blocks times 28-step loops of the per-step products of one batch chunk, as the kernels run
them (forward: G_t (GH, B) += W_hh @ h_{t-1}; backward: dh (H, B) = W_hh^T @ dG_t, both on
column blocks of (F, T*B) buffers), on one BLAS thread, with rnnfast.cpu._linalg.mm (row
blocks, and K blocks above SMALL_MAX_K, that fit OpenBLAS's small-matrix size: mm_blocks,
printed as rows or rows x K) and with one gemm call per product, alternately, and prints the
medians.
"""

import argparse
import time

import numpy as np
from numba import njit

from rnnfast._blas import gemm
from rnnfast.cpu._linalg import mm, mm_blocks


# The hand-written alternative that was measured against BLAS: batch axis innermost
# (contiguous, vectorised by LLVM), four rows of C per pass so each row of Bm is loaded once.
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


@njit(cache=True)
def _loop_small(reps, ta, M, N, K, A, lda, Bm, ldb, C, ldc):
    for _ in range(reps):
        mm_small(ta, M, N, K, A, lda, Bm, ldb, 1.0, C, ldc)


@njit(cache=True)
def _loop_blas(reps, ta, M, N, K, A, lda, Bm, ldb, C, ldc):
    for _ in range(reps):
        gemm(ta, 0, M, N, K, 1.0, A, lda, Bm, ldb, 1.0, C, ldc)


@njit(cache=True)
def _steps(blocks, fwd, T, B, H, GH, W, WT, hist, G, dG, dh):
    """The 28 per-step products of one forward or backward pass of one chunk."""
    TB, TB1 = T * B, (T + 1) * B
    for t in range(T):
        if fwd and blocks:
            mm(0, GH, B, H, W, H, hist[t * B :], TB1, 1.0, G[t * B :], TB)
        elif fwd:
            gemm(0, 0, GH, B, H, 1.0, W, H, hist[t * B :], TB1, 1.0, G[t * B :], TB)
        elif blocks:
            mm(0, H, B, GH, WT, GH, dG[t * B :], TB, 0.0, dh, B)
        else:
            gemm(0, 0, H, B, GH, 1.0, WT, GH, dG[t * B :], TB, 0.0, dh, B)


def blocks_main(dt: np.dtype, rounds: int) -> None:
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    rng = np.random.default_rng(0)
    print(f"ms per 28 products (one chunk's pass), median of {rounds} rounds, one BLAS thread")
    print(f"{'cell':>5} {'H':>4} {'B':>4} {'pass':>4} {'blocks':>6} {'one call':>9} {'mm':>8} "
          f"{'ratio':>6}")  # fmt: skip
    shapes = [("lstm", 4, 100, 50), ("lstm", 4, 100, 100), ("lstm", 4, 64, 100),
              ("rnn", 1, 64, 100), ("lstm", 4, 256, 16), ("lstm", 4, 256, 32)]  # fmt: skip
    with threadpool_limits(1):
        for cell, g, H, B in shapes:
            T, GH = 28, g * H
            W = rng.standard_normal(GH * H).astype(dt) * 0.1
            WT = W.reshape(GH, H).T.copy().ravel()
            hist = rng.standard_normal(H * (T + 1) * B).astype(dt)
            G = rng.standard_normal(GH * T * B).astype(dt)
            dG, dh = G.copy(), np.zeros(H * B, dt)
            for fwd in (True, False):
                nb, nk = mm_blocks(GH, B, H) if fwd else mm_blocks(H, B, GH)
                nb = f"{nb}x{nk}" if nk > 1 else str(nb)
                res = {True: [], False: []}
                for blocks in (True, False):
                    _steps(blocks, fwd, T, B, H, GH, W, WT, hist, G, dG, dh)
                for _ in range(rounds):
                    for blocks in (True, False):
                        t0 = time.perf_counter()
                        for _ in range(5):
                            _steps(blocks, fwd, T, B, H, GH, W, WT, hist, G, dG, dh)
                        res[blocks].append((time.perf_counter() - t0) / 5 * 1e3)
                one, blk = np.median(res[False]), np.median(res[True])
                print(f"{cell:>5} {H:>4} {B:>4} {'fwd' if fwd else 'bwd':>4} {nb:>6} "
                      f"{one:>9.3f} {blk:>8.3f} {one / blk:>5.2f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 32, 100, 200])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--blocks", action="store_true", help="mm's row blocks vs one call")
    args = ap.parse_args()
    dt = np.dtype(args.dtype)
    if args.blocks:
        blocks_main(dt, max(args.rounds, 9))
        return
    rng = np.random.default_rng(0)
    print(f"times in us per product, best of {args.rounds}")
    print(
        f"{'gates':>5} {'H':>4} {'B':>4} {'M*K':>7} {'hand fwd':>9} {'blas fwd':>9} "
        f"{'hand bwd':>9} {'blas bwd':>9}"
    )
    for B in args.batch:
        for G, H in [
            (1, 4),
            (1, 16),
            (1, 32),
            (4, 16),
            (1, 64),
            (4, 32),
            (3, 48),
            (1, 100),
            (4, 64),
            (3, 64),
            (4, 100),
            (4, 256),
        ]:
            M, K, T = G * H, H, 8
            W = rng.standard_normal((M, K)).astype(dt).ravel()
            hist = rng.standard_normal((K, T * B)).astype(dt).ravel()
            Gb = np.zeros((M, T * B), dt).ravel()
            dh = np.zeros(K * B, dt)
            reps = max(1, int(2e6 // (M * K * B)))
            res = {}
            for _ in range(args.rounds):
                for name, fn, ta, m, k, a_src, ld_src, out, ldo in [
                    ("hand fwd", _loop_small, 0, M, K, hist, T * B, Gb, T * B),
                    ("blas fwd", _loop_blas, 0, M, K, hist, T * B, Gb, T * B),
                    ("hand bwd", _loop_small, 1, K, M, Gb, T * B, dh, B),
                    ("blas bwd", _loop_blas, 1, K, M, Gb, T * B, dh, B),
                ]:
                    t0 = time.perf_counter()
                    fn(reps, ta, m, B, k, W, K, a_src, ld_src, out, ldo)
                    el = (time.perf_counter() - t0) / reps * 1e6
                    res[name] = min(res.get(name, np.inf), el)
            print(
                f"{G:>5} {H:>4} {B:>4} {M * K:>7} "
                + " ".join(
                    f"{res[k]:>9.2f}" for k in ("hand fwd", "blas fwd", "hand bwd", "blas bwd")
                )
            )


if __name__ == "__main__":
    main()
