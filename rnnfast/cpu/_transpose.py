"""Matrix transposes between the public (T, B, F) arrays and the kernels' (F, T*B) buffers.

    transpose(src, so, lds, dst, do, ldd, R, C):   dst[do + c*ldd + r] = src[so + r*lds + c]
                                                   for r < R, c < C (flat 1-D arrays)

Every call of the kernels moves x, out, dout and dx (and the states) between the two layouts.
Written as element loops these copies cost as much as the recurrence itself for small hidden
sizes: for rnn T=10 B=200 H=16, the serial forward spent 26 us on out and the backward 36 us on
dout (a loop storing with a stride of T*B elements), against about 40 us each for the layers.
Here the matrix goes through square tiles transposed in registers: N rows loaded as N-wide
vectors, log2(N) rounds of two-vector shuffles (each round swaps the off-diagonal blocks of
size s in every 2s x 2s block: s = N/2, ..., 1), N vector stores. A tile is one 64-byte vector
per row: 16 x 16 for float32, 8 x 8 for float64 (16 x 16 doubles spilled registers and ran at
half the speed); what the tiles leave over goes through the next smaller tile size, down to 4,
then element by element. Measured (10 transposes of a (B, H) block each, hot caches, float32;
tests/test_transpose.py checks every path against NumPy):

    B x H       element loop (best order)   tiles
    200 x 16    9.5 / 14.7 us               3.6 / 3.4 us   (to / from feature-major)
    200 x 64    53-77 us                    15-17 us
    100 x 100   28-45 us                    10-11 us
    200 x 4     2.5 / 6.3 us                1.9 / 1.4 us

The tiles load and store unaligned vectors (any offset and row stride); the callers keep every
index in bounds.
"""

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


def _tile_intrinsic(N):
    """An intrinsic tile(src, so, lds, dst, do, ldd) transposing one N x N tile."""

    @intrinsic
    def tile(typingctx, src, so, lds, dst, do, ldd):
        if not (isinstance(src, types.Array) and isinstance(dst, types.Array)):
            return None
        if src.dtype != dst.dtype or src.dtype not in (types.float32, types.float64):
            return None
        if src.ndim != 1 or dst.ndim != 1:
            return None
        sig = types.none(src, so, lds, dst, do, ldd)

        def codegen(context, builder, sig, args):
            src_, so_, lds_, dst_, do_, ldd_ = args
            sa = context.make_array(sig.args[0])(context, builder, src_)
            da = context.make_array(sig.args[3])(context, builder, dst_)
            elt = context.get_data_type(sig.args[0].dtype)
            align = 4 if sig.args[0].dtype == types.float32 else 8
            vty = ir.VectorType(elt, N)
            base_s = builder.gep(sa.data, [so_])
            base_d = builder.gep(da.data, [do_])
            rows = []
            for i in range(N):
                p = builder.gep(base_s, [builder.mul(lds_, ir.Constant(lds_.type, i))])
                v = builder.load(builder.bitcast(p, vty.as_pointer()))
                v.align = align
                rows.append(v)
            s = N // 2
            while s >= 1:
                lo = [c if c & s == 0 else N + c - s for c in range(N)]
                hi = [c + s if c & s == 0 else N + c for c in range(N)]
                mlo = ir.Constant(ir.VectorType(ir.IntType(32), N), lo)
                mhi = ir.Constant(ir.VectorType(ir.IntType(32), N), hi)
                new = list(rows)
                for i in range(N):
                    if i & s == 0:
                        new[i] = builder.shuffle_vector(rows[i], rows[i + s], mlo)
                        new[i + s] = builder.shuffle_vector(rows[i], rows[i + s], mhi)
                rows = new
                s //= 2
            for i in range(N):
                p = builder.gep(base_d, [builder.mul(ldd_, ir.Constant(ldd_.type, i))])
                st = builder.store(rows[i], builder.bitcast(p, vty.as_pointer()))
                st.align = align
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile16 = _tile_intrinsic(16)
_tile8 = _tile_intrinsic(8)
_tile4 = _tile_intrinsic(4)


@njit(cache=True, error_model="numpy", inline="always")
def _by_element(src, so, lds, dst, do, ldd, R, C):
    for r in range(R):
        for c in range(C):
            dst[do + c * ldd + r] = src[so + r * lds + c]


def _tiles_then(N, tile, rest):
    """A transpose by N x N tiles that hands the strips the tiles leave over to rest."""

    @njit(cache=True, error_model="numpy", inline="always")
    def by_tiles(src, so, lds, dst, do, ldd, R, C):
        Rn, Cn = R // N * N, C // N * N
        for r in range(0, Rn, N):
            for c in range(0, Cn, N):
                tile(src, so + r * lds + c, lds, dst, do + c * ldd + r, ldd)
        rest(src, so + Cn, lds, dst, do + Cn * ldd, ldd, Rn, C - Cn)
        rest(src, so + Rn * lds, lds, dst, do + Rn, ldd, R - Rn, C)

    return by_tiles


_by_tile4 = _tiles_then(4, _tile4, _by_element)
_by_tile8 = _tiles_then(8, _tile8, _by_tile4)
_by_tile16 = _tiles_then(16, _tile16, _by_tile8)


def _transpose(src, so, lds, dst, do, ldd, R, C):
    if R <= 0 or C <= 0:
        return
    if src.itemsize == 4:
        _by_tile16(src, so, lds, dst, do, ldd, R, C)
    else:
        _by_tile8(src, so, lds, dst, do, ldd, R, C)


@intrinsic
def _call_noinline(typingctx, src, so, lds, dst, do, ldd, R, C):
    """_transpose(...) as a call LLVM may not inline. Inlined, its tile loops were copied
    into every call site (about ten per kernel) and doubled the kernels' cold compile time."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)):
        return None
    sig = types.none(src, so, lds, dst, do, ldd, R, C)

    def codegen(context, builder, sig, args):
        def calls():
            return [i for blk in builder.function.blocks for i in blk.instructions
                    if isinstance(i, ir.CallInstr)]  # fmt: skip

        before = {id(i) for i in calls()}
        context.compile_internal(builder, _transpose, sig, args)
        # the call, and the status check after it, leave the builder in a new block
        new = [i for i in calls() if id(i) not in before]
        if len(new) != 1:
            raise AssertionError(f"expected one call to _transpose, found {len(new)}")
        new[0].attributes.add("noinline")
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, error_model="numpy", inline="always")
def transpose(src, so, lds, dst, do, ldd, R, C):
    """dst[do + c*ldd + r] = src[so + r*lds + c] for r < R, c < C (src, dst flat)."""
    _call_noinline(src, so, lds, dst, do, ldd, R, C)
