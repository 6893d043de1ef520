"""Row-major GEMM on flat buffers with leading dimensions, callable from @njit code.

    C[M, N] = alpha * op(A)[M, K] @ op(B)[K, N] + beta * C        (row-major views)

A, B and C are 1-D contiguous arrays (typically slices of larger flat buffers, so the
views start at an offset); lda, ldb and ldc are the row strides of the row-major matrices
they hold. This lets the kernels multiply a column block of a (F, T*B) buffer in place and
accumulate (beta = 1) without copies, which np.dot inside @njit cannot do.

The call goes to Numba's own BLAS bridge (the C helper ``numba_xxgemm`` that np.dot uses,
backed by SciPy's OpenBLAS through scipy.linalg.cython_blas). The symbol is resolved by
name, so the compiled code caches like any other (cache=True).
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

_ll_char = ir.IntType(8)
_ll_voidp = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major BLAS ?gemm. transa/transb: 0 = 'n', 1 = 't'."""
    if not all(isinstance(arr, types.Array) for arr in (a, b, c)):
        return None
    dtype = c.dtype
    if dtype not in (types.float32, types.float64) or a.dtype != dtype or b.dtype != dtype:
        return None
    ensure_blas()
    sig = types.int32(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, sig, args):
        ta, tb, m_, n_, k_, alpha_, a_, lda_, b_, ldb_, beta_, c_, ldc_ = args
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(
            ir.IntType(32),
            [
                _ll_char,
                _ll_char,
                _ll_char,
                intp,
                intp,
                intp,
                _ll_voidp,
                _ll_voidp,
                intp,
                _ll_voidp,
                intp,
                _ll_voidp,
                _ll_voidp,
                intp,
            ],
        )
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        kind = ir.Constant(_ll_char, ord("s" if dtype == types.float32 else "d"))

        def trans_char(val, ty):
            flag = context.cast(builder, val, ty, types.intp)
            is_t = builder.icmp_signed("!=", flag, ir.Constant(intp, 0))
            return builder.select(
                is_t, ir.Constant(_ll_char, ord("t")), ir.Constant(_ll_char, ord("n"))
            )

        def as_intp(val, ty):
            return context.cast(builder, val, ty, types.intp)

        def slot(val, ty):
            v = context.cast(builder, val, ty, dtype)
            return builder.bitcast(cgutils.alloca_once_value(builder, v), _ll_voidp)

        def data(val, ty):
            arr = cgutils.create_struct_proxy(ty)(context, builder, value=val)
            return builder.bitcast(arr.data, _ll_voidp)

        sa, sb = sig.args[0], sig.args[1]
        res = builder.call(
            fn,
            (
                kind,
                trans_char(ta, sa),
                trans_char(tb, sb),
                as_intp(m_, sig.args[2]),
                as_intp(n_, sig.args[3]),
                as_intp(k_, sig.args[4]),
                slot(alpha_, sig.args[5]),
                data(a_, sig.args[6]),
                as_intp(lda_, sig.args[7]),
                data(b_, sig.args[8]),
                as_intp(ldb_, sig.args[9]),
                slot(beta_, sig.args[10]),
                data(c_, sig.args[11]),
                as_intp(ldc_, sig.args[12]),
            ),
        )
        return res

    return sig, codegen


@njit(cache=True)
def gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
    """C (M, N, row stride ldc) = alpha * op(A) @ op(B) + beta * C, all row-major.

    ta / tb: 0 for A (M, K) / B (K, N), 1 for A stored (K, M) / B stored (N, K).
    Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, hence the swap.
    """
    status = _xxgemm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc)
    if status != 0:
        raise RuntimeError("BLAS gemm failed (is SciPy's BLAS available?)")
