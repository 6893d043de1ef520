"""Forward and backward over batch chunks run in parallel: one sub-batch per Numba thread.

Batch columns are independent through the whole time recurrence, forward and backward, in
every layer and direction: only the parameter gradients sum over columns. So a call with
nchunks > 1 cuts the batch into contiguous ranges [b0, b1) and runs, for each range on its own
thread, exactly the serial drivers of rnnfast/cpu/_kernels.py (forward_layers,
backward_layers) with batch Bc = b1 - b0 on its own buffers:

    saved   = [chunk 0's saved | chunk 1's saved | ...]      each laid out by buffer_offsets
    scratch = [chunk 0's scratch | ... | partial dW of chunks 1 .. nchunks-1]

Chunk c packs its columns of x (dout) into its buffers, runs all layers and directions, and
unpacks its columns of out, h_n, c_n (dx, dh0, dc0). Chunk 0 accumulates its parameter
gradient into dW, chunk c > 0 into its own zeroed partial; afterwards dW += partial_1 + ... +
partial_{n-1} in that order, each element by one thread (by the main thread alone below
SERIAL_SUM_MAX elements: a third parallel region per call cost more than the sum for small
models, whose wake-ups of the other thread are the price of chunking). Deterministic: the
results depend on (shapes, nchunks) only.

Why separate buffers (measured, LSTM 28x100x100, 2 threads): chunks as column ranges of the
serial (F, T*B) buffers, with the full-batch GEMMs split by rows, gave 8.1-8.5 ms per forward
+ backward at best, and 12-13 ms in many processes: the two halves write neighbouring columns
of every row at every step, so they share a cache line per row, and in lock step that false
sharing took the forward alone from 2.5 ms (the same chunks on separate buffers) to 5.3 ms.
Separate buffers also keep the serial path's large GEMMs (one input projection, one GEMM per
weight gradient per chunk), and their partial weight gradients need one small sum at the end
instead of a join per layer. Measured: 7.1-8.0 ms.
"""

from functools import lru_cache

import numpy as np
from numba import njit, prange

from rnnfast.cells import CELL_GRU, CELL_LSTM
from rnnfast.cpu._kernels import (
    backward_layers,
    buffer_offsets,
    final_state_into,
    forward_layers,
    live_columns,
    split_saved,
    split_scratch,
    zero_padded,
)
from rnnfast.cpu._transpose import transpose

SERIAL_SUM_MAX = 65_536  # partial-gradient elements below which the main thread adds them alone


def _prange_only():
    """Numba's parallel options: prange loops only. No implicit parallel loops from array
    expressions or slice assignments (each would be a fork/join), no fusion of the chunk loop
    with the reduction loop after it. A fresh dict each time: Numba consumes it."""
    keys = ("comprehension", "reduction", "inplace_binop", "setitem", "numpy", "stencil", "fusion")
    return {"prange": True, **dict.fromkeys(keys, False)}


@njit(cache=True)
def num_chunks(nchunks, B):
    """The chunks a call really uses: 1 <= n <= B."""
    return max(1, min(nchunks, B))


@njit(cache=True, inline="always")
def chunk_lens(lens, b0, b1):
    """A chunk's columns' lengths (still sorted descending), or the empty all-T marker."""
    return lens[b0:b1] if lens.size > 0 else lens


@njit(cache=True)
def span(n, parts, c):
    """Part c of range(n) cut into `parts` contiguous pieces of (nearly) equal size."""
    return c * n // parts, (c + 1) * n // parts


@lru_cache(maxsize=64)
def dealt_ranks(B: int, nchunks: int) -> np.ndarray:
    """(B,) int64: the length rank (0 = longest) each batch column gets when columns sorted by
    length are dealt to the chunks in turn. Each chunk's columns then stay sorted (the layers
    need that) and every chunk gets a like share of long and short sequences: in contiguous
    ranges the first chunk would get all the longest and the others would wait for it."""
    nc = num_chunks(nchunks, B)
    spans = [span(B, nc, c) for c in range(nc)]
    cols: list[list[int]] = [[] for _ in range(nc)]
    rank, c = 0, 0
    while rank < B:
        if len(cols[c]) < spans[c][1] - spans[c][0]:
            cols[c].append(rank)
            rank += 1
        c = (c + 1) % nc
    ranks = np.array([r for col in cols for r in col], np.int64)
    ranks.flags.writeable = False
    return ranks


@njit(cache=True)
def param_count(cell, L, D, I0, H):
    """Recurrent parameters of a model with biases (an upper bound without)."""
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    n = 0
    for l in range(L):
        n += D * (GH * ((I0 if l == 0 else D * H) + H) + 2 * GH)
    return n


@njit(cache=True)
def chunk_offsets(cell, L, D, T, B, I0, H, nchunks):
    """(saved, scratch): (nchunks + 1,) starts of each chunk's buffers in the flat saved and
    scratch arrays; scratch[-1] is where the partial dW of chunks 1.. start (param_count
    each). Sizes are multiples of 16 elements (64 bytes in float32), so two chunks share at
    most the one cache line at their boundary."""
    nc = num_chunks(nchunks, B)
    sv = np.zeros(nc + 1, np.int64)
    sc = np.zeros(nc + 1, np.int64)
    for c in range(nc):
        b0, b1 = span(B, nc, c)
        so, co = buffer_offsets(cell, L, D, T, b1 - b0, I0, H)
        sv[c + 1] = sv[c] + so[-1]
        sc[c + 1] = sc[c] + co[-1]
    return sv, sc


@njit(cache=True)
def chunk_sizes(cell, L, D, T, B, I0, H, nchunks):
    """Sizes of the flat saved and scratch arrays for nchunks chunks."""
    sv, sc = chunk_offsets(cell, L, D, T, B, I0, H, nchunks)
    nc = len(sv) - 1
    return sv[-1], sc[-1] + (nc - 1) * param_count(cell, L, D, I0, H)


@njit(cache=True, error_model="numpy", parallel=_prange_only())
def forward_chunks(
    cell,
    act,
    L,
    D,
    T,
    B,
    I0,
    H,
    W,  # packed parameters
    woff,  # (L*D, 4)
    h0,  # (L*D, B, H)
    c0,  # (L*D, B, H) lstm
    saved,  # flat, the chunks' buffers laid out by chunk_offsets; filled for backward
    nchunks,
    x,  # (T, B, I0) input, or size 0: take it from X
    X,  # (I0, TB) input (the fused training loop's layout), used if x.size == 0
    xi,  # (TB,) the input as one-hot token ids instead of X (the fused loop's), or size 0
    out,  # (T, B, D*H) out, or size 0
    top,  # (D, H, TB1) out: the top layer's h history in the serial layout, or size 0
    h_n,  # (L*D, B, H) out, or size 0
    c_n,  # (L*D, B, H) out, lstm, or size 0
    lens,  # (B,) lengths sorted descending, or size 0 (all T)
    bf,  # x and out batch-first: (B, T, .)
):
    """forward_layers over the batch chunks in parallel; each chunk copies its columns of the
    input in and of the outputs out (zero at padded steps)."""
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    TB, TB1 = T * B, (T + 1) * B
    nc = num_chunks(nchunks, B)
    sv, _ = chunk_offsets(cell, L, D, T, B, I0, H, nc)
    for c in prange(nc):
        b0, b1 = span(B, nc, c)
        Bc = b1 - b0
        so, _ = buffer_offsets(cell, L, D, T, Bc, I0, H)
        Xc, hist, chist, G, HN, TC = split_saved(saved[sv[c] : sv[c + 1]], so)
        TBc, TB1c = T * Bc, (T + 1) * Bc
        lc = chunk_lens(lens, b0, b1)
        xic = _chunk_ids(xi, T, B, b0, b1)
        if x.size > 0:
            xf = x.reshape(x.size)
            for t in range(T):
                x0 = (b0 * T + t) * I0 if bf else (t * B + b0) * I0
                transpose(xf, x0, T * I0 if bf else I0, Xc, t * Bc, TBc, Bc, I0)
        elif xi.size == 0:
            for i in range(I0):
                for t in range(T):
                    Xc[i * TBc + t * Bc : i * TBc + t * Bc + Bc] = X[
                        i * TB + t * B + b0 : i * TB + t * B + b1
                    ]
        forward_layers(cell, act, L, D, T, Bc, I0, H, GH, Xc, xic, W, woff, h0, c0, hist, chist,
                       G, HN, TC, b0, lc)  # fmt: skip
        top_c = hist[(L - 1) * D * H * TB1c :]
        if out.size > 0:
            of = out.reshape(out.size)
            DH = D * H
            for t in range(T):
                for d in range(D):
                    base = d * H * TB1c + (Bc if d == 0 else 0) + t * Bc
                    o0 = ((b0 * T + t) * DH if bf else (t * B + b0) * DH) + d * H
                    transpose(top_c, base, TB1c, of, o0, T * DH if bf else DH, H, Bc)
                for b in range(b0 + live_columns(lc, t, Bc), b1):  # padded outputs are zero
                    o0 = (b * T + t) * DH if bf else (t * B + b) * DH
                    of[o0 : o0 + DH] = 0
        if top.size > 0:
            for r in range(D * H):
                for blk in range(T + 1):
                    top[r * TB1 + blk * B + b0 : r * TB1 + blk * B + b1] = top_c[
                        r * TB1c + blk * Bc : r * TB1c + blk * Bc + Bc
                    ]
        if h_n.size > 0:
            final_state_into(hist, L, D, T, Bc, H, h_n, b0)
        if c_n.size > 0:
            final_state_into(chist, L, D, T, Bc, H, c_n, b0)


@njit(cache=True, error_model="numpy", parallel=_prange_only())
def backward_chunks(
    cell,
    act,
    L,
    D,
    T,
    B,
    I0,
    H,
    W,  # packed parameters
    woff,  # (L*D, 4)
    saved,  # forward_chunks's flat buffer (same nchunks)
    scratch,  # flat, laid out by chunk_offsets (chunk_sizes elements)
    nchunks,
    xi,  # (TB,) forward_chunks's token ids, or size 0
    dout,  # (T, B, D*H) gradient at the top layer's outputs, or size 0: take it from dO
    dO,  # (D, H, TB) the same in the fused training loop's layout, used if dout.size == 0
    dh_n,  # (L*D, B, H)
    dc_n,  # (L*D, B, H) lstm
    dW,  # packed like W: accumulated
    dx,  # (T, B, I0) out, or size 0 to skip the input gradient
    dh0,  # (L*D, B, H) out
    dc0,  # (L*D, B, H) out, lstm
    lens,  # (B,) lengths sorted descending, or size 0 (all T), as forward's
    bf,  # dout and dx batch-first: (B, T, .)
):
    """backward_layers over the batch chunks in parallel, then dW += the chunks' partial
    gradients in chunk order (each element by one thread). dout at padded steps is ignored;
    dO (the fused loop's) is taken as it is."""
    LD = L * D
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    TB = T * B
    nc = num_chunks(nchunks, B)
    sv, sc = chunk_offsets(cell, L, D, T, B, I0, H, nc)
    npar = param_count(cell, L, D, I0, H)
    part = scratch[sc[nc] :]
    for c in prange(nc):
        b0, b1 = span(B, nc, c)
        Bc = b1 - b0
        so, co = buffer_offsets(cell, L, D, T, Bc, I0, H)
        X, hist, chist, G, HN, TC = split_saved(saved[sv[c] : sv[c + 1]], so)
        dOc, dX, work = split_scratch(scratch[sc[c] : sc[c + 1]], co)
        TBc = T * Bc
        lc = chunk_lens(lens, b0, b1)
        xic = _chunk_ids(xi, T, B, b0, b1)
        if dout.size > 0:
            df = dout.reshape(dout.size)
            DH = D * H
            for t in range(T):
                d0 = (b0 * T + t) * DH if bf else (t * B + b0) * DH
                transpose(df, d0, T * DH if bf else DH, dOc, t * Bc, TBc, Bc, DH)
            zero_padded(dOc, DH, TBc, T, Bc, lc)
        else:
            for r in range(D * H):
                for t in range(T):
                    dOc[r * TBc + t * Bc : r * TBc + t * Bc + Bc] = dO[
                        r * TB + t * B + b0 : r * TB + t * B + b1
                    ]
        dWc = dW if c == 0 else part[(c - 1) * npar : c * npar]
        if c > 0:
            dWc[:] = 0
        backward_layers(cell, act, L, D, T, Bc, I0, H, GH, X, xic, W, woff, hist, chist, G, HN,
                        TC, dOc, work, dh_n, dc_n, dWc, dX[: I0 * TBc if dx.size > 0 else 0],
                        dh0, dc0, b0, lc)  # fmt: skip
        if dx.size > 0:
            dxf = dx.reshape(dx.size)
            for t in range(T):
                x0 = (b0 * T + t) * I0 if bf else (t * B + b0) * I0
                transpose(dX, t * Bc, TBc, dxf, x0, T * I0 if bf else I0, I0, Bc)
    nrec = 0
    for ld in range(LD):
        nrec = max(nrec, woff[ld, 1] + GH * H, woff[ld, 3] + GH if woff[ld, 3] >= 0 else 0)
    if nrec * (nc - 1) < SERIAL_SUM_MAX:
        # small models: the sum costs less than waking the other threads once more
        _add_partials(dW, part, npar, nrec, nc, 0, nrec)
        return
    for c in prange(nc):
        k0, k1 = span(nrec, nc, c)
        _add_partials(dW, part, npar, nrec, nc, k0, k1)


@njit(cache=True, error_model="numpy")
def _chunk_ids(xi, T, B, b0, b1):
    """Columns [b0, b1) of every step of token ids xi (TB,), in a chunk's own layout (size 0
    for size 0)."""
    Bc = b1 - b0
    out = np.empty(T * Bc if xi.size > 0 else 0, np.int64)
    if xi.size > 0:
        for t in range(T):
            out[t * Bc : (t + 1) * Bc] = xi[t * B + b0 : t * B + b1]
    return out


@njit(cache=True, error_model="numpy")
def _add_partials(dW, part, npar, nrec, nc, k0, k1):
    """dW[k0:k1] += partial_1 + ... + partial_{nc-1}, in that order."""
    for p in range(1, nc):
        pp = part[(p - 1) * npar :]
        for k in range(k0, k1):
            dW[k] += pp[k]


@njit(cache=True)
def final_states_chunks(cell, L, D, T, B, I0, H, saved, nchunks, h_n, c_n):
    """h_n (and c_n, lstm) (L*D, B, H) from the chunks' histories after forward_chunks."""
    nc = num_chunks(nchunks, B)
    sv, _ = chunk_offsets(cell, L, D, T, B, I0, H, nc)
    for c in range(nc):
        b0, b1 = span(B, nc, c)
        so, _ = buffer_offsets(cell, L, D, T, b1 - b0, I0, H)
        _, hist, chist, _, _, _ = split_saved(saved[sv[c] : sv[c + 1]], so)
        final_state_into(hist, L, D, T, b1 - b0, H, h_n, b0)
        if cell == CELL_LSTM:
            final_state_into(chist, L, D, T, b1 - b0, H, c_n, b0)


@njit(cache=True, error_model="numpy")
def forward_kernel_chunks(
    cell,
    act,
    D,
    H,
    x,  # (T, B, I0)
    W,  # packed parameters
    woff,  # (L*D, 4) int64
    h0,  # (L*D, B, H)
    c0,  # (L*D, B, H) lstm, else unused
    saved,  # flat, laid out by chunk_offsets; filled for backward
    lens,  # (B,) lengths sorted descending, or size 0 (all T)
    bf,  # x and out batch-first
    nchunks,
):
    """forward_kernel over batch chunks in parallel: out (T, B, D*H) (bf: (B, T, D*H)), h_n,
    c_n (L*D, B, H)."""
    if bf:
        B, T, I0 = x.shape
    else:
        T, B, I0 = x.shape
    L = woff.shape[0] // D
    dt = W.dtype
    out = np.empty((B, T, D * H) if bf else (T, B, D * H), dt)
    h_n = np.empty((L * D, B, H), dt)
    c_n = np.empty((L * D if cell == CELL_LSTM else 0, B, H), dt)
    forward_chunks(cell, act, L, D, T, B, I0, H, W, woff, h0, c0, saved, nchunks, x,
                   np.empty(0, dt), np.empty(0, np.int64), out, np.empty(0, dt), h_n, c_n, lens,
                   bf)  # fmt: skip
    return out, h_n, c_n


@njit(cache=True, error_model="numpy")
def backward_kernel_chunks(
    cell,
    act,
    D,
    H,
    W,  # packed parameters
    woff,  # (L*D, 4)
    saved,  # forward_kernel_chunks's flat buffer (same nchunks)
    dout,  # (T, B, D*H): gradient at the top layer's outputs
    dh_n,  # (L*D, B, H)
    dc_n,  # (L*D, B, H) lstm
    I0,
    scratch,  # flat, laid out by chunk_offsets (chunk_sizes elements)
    lens,  # (B,) lengths sorted descending, or size 0 (all T), as forward's
    bf,  # dout and dx batch-first
    nchunks,
):
    """backward_kernel over batch chunks in parallel: dW, dx (T, B, I0) (bf: (B, T, I0)),
    dh0, dc0."""
    if bf:
        B, T, _ = dout.shape
    else:
        T, B, _ = dout.shape
    LD = woff.shape[0]
    dt = W.dtype
    dW = np.zeros_like(W)
    dx = np.empty((B, T, I0) if bf else (T, B, I0), dt)
    dh0 = np.empty((LD, B, H), dt)
    dc0 = np.empty((LD if cell == CELL_LSTM else 0, B, H), dt)
    backward_chunks(cell, act, LD // D, D, T, B, I0, H, W, woff, saved, scratch, nchunks,
                    np.empty(0, np.int64), dout, np.empty(0, dt), dh_n, dc_n, dW, dx, dh0, dc0,
                    lens, bf)  # fmt: skip
    return dW, dx, dh0, dc0


# ---- the fused training loop's buffers (rnnfast/cpu/_train.py): serial or in chunks --------
#
# 1 chunk:  saved and scratch laid out by buffer_offsets (the serial drivers' own buffers).
# n chunks: saved = [X (I0, TB) | top (D, H, TB1) | the chunks' saved], scratch = [dO (D, H, TB)
#           | acc (64) | the chunks' scratch and partial dW]. X and dO keep the serial layout
#           for the batch fillers and the head; top is the top layer's history for the head.


@njit(cache=True)
def _train_heads(L, D, T, B, I0, H):
    """Sizes of the serial-layout parts in front of the chunks' buffers, 16-rounded."""
    TB, TB1 = T * B, (T + 1) * B
    r16 = lambda n: (n + 15) // 16 * 16  # noqa: E731
    return r16(I0 * TB), r16(D * H * TB1), r16(D * H * TB), 64


@njit(cache=True)
def train_sizes(cell, L, D, T, B, I0, H, nchunks):
    """Sizes of the fused loop's saved and scratch buffers."""
    if num_chunks(nchunks, B) == 1:
        so, co = buffer_offsets(cell, L, D, T, B, I0, H)
        return so[-1], co[-1]
    nx, ntop, ndo, nacc = _train_heads(L, D, T, B, I0, H)
    ns, nsc = chunk_sizes(cell, L, D, T, B, I0, H, nchunks)
    return nx + ntop + ns, ndo + nacc + nsc


# Each of the loop's steps below comes as a serial and a chunked function, not one with a
# branch on nchunks: a compiled loop calls one set (rnnfast/cpu/_train.py compiles a serial and
# a chunked loop), so a serial run does not compile the parallel drivers (measured, dependency
# 5x4: 88 s of a cold compile, of which the chunked path was 40 s). The serial ones are
# inlined into the loop (one compiled layer less above forward_layers and backward_layers:
# Numba optimises and emits a callee's code again in every caller's module).


@njit(cache=True, inline="always")
def train_views(cell, L, D, T, B, I0, H, saved, scratch):
    """(X, hist, Lh, dO, acc): the input (I0, TB), the history (Lh = L layers), dO (D, H, TB)
    and 64 lanes for the head, in the serial buffers (laid out by buffer_offsets)."""
    so, co = buffer_offsets(cell, L, D, T, B, I0, H)
    X, hist, _, _, _, _ = split_saved(saved, so)
    dO, _, work = split_scratch(scratch, co)
    return X, hist, L, dO, work[5]


@njit(cache=True)
def train_views_chunks(L, D, T, B, I0, H, saved, scratch):
    """train_views for the chunks' buffers: the history is the chunks' top copy (Lh = 1)."""
    nx, ntop, ndo, nacc = _train_heads(L, D, T, B, I0, H)
    return (saved[:nx], saved[nx : nx + ntop], 1, scratch[:ndo],
            scratch[ndo : ndo + nacc])  # fmt: skip


@njit(cache=True, inline="always")
def train_forward(cell, act, L, D, T, B, I0, H, W, woff, h0, c0, saved, xi, lens):
    """forward_layers on the fused loop's serial buffers (X filled, or the token ids xi;
    fills hist); lens as forward_layers's."""
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    so, _ = buffer_offsets(cell, L, D, T, B, I0, H)
    X, hist, chist, G, HN, TC = split_saved(saved, so)
    forward_layers(cell, act, L, D, T, B, I0, H, GH, X, xi, W, woff, h0, c0, hist, chist, G, HN,
                   TC, 0, lens)  # fmt: skip


@njit(cache=True, error_model="numpy")
def train_forward_chunks(cell, act, L, D, T, B, I0, H, W, woff, h0, c0, saved, nchunks, xi,
                         lens):  # fmt: skip
    """train_forward in batch chunks (fills the top layer's history copy)."""
    nx, ntop, _, _ = _train_heads(L, D, T, B, I0, H)
    none3 = np.empty((0, 0, 0), W.dtype)
    forward_chunks(cell, act, L, D, T, B, I0, H, W, woff, h0, c0, saved[nx + ntop :], nchunks,
                   none3, saved[:nx], xi, none3, saved[nx : nx + ntop], none3, none3, lens,
                   False)  # fmt: skip


@njit(cache=True, inline="always")
def train_backward(cell, act, L, D, T, B, I0, H, W, woff, saved, scratch, dh_n, dc_n, dW, dh0,
                   dc0, dX, xi, lens):  # fmt: skip
    """backward_layers on the fused loop's serial buffers (dO filled by the head; xi as
    train_forward's). The input gradient (for an embedding) goes to dX (I0, TB); size 0 skips
    it."""
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    so, co = buffer_offsets(cell, L, D, T, B, I0, H)
    X, hist, chist, G, HN, TC = split_saved(saved, so)
    dO, _, work = split_scratch(scratch, co)
    backward_layers(cell, act, L, D, T, B, I0, H, GH, X, xi, W, woff, hist, chist, G, HN, TC, dO,
                    work, dh_n, dc_n, dW, dX, dh0, dc0, 0, lens)  # fmt: skip


@njit(cache=True, error_model="numpy")
def train_backward_chunks(cell, act, L, D, T, B, I0, H, W, woff, saved, scratch, nchunks, dh_n,
                          dc_n, dW, dh0, dc0, dx3, xi, lens):  # fmt: skip
    """train_backward in batch chunks; the input gradient goes to dx3 (T, B, I0) (size 0
    skips it)."""
    nx, ntop, ndo, nacc = _train_heads(L, D, T, B, I0, H)
    backward_chunks(cell, act, L, D, T, B, I0, H, W, woff, saved[nx + ntop :],
                    scratch[ndo + nacc :], nchunks, xi, np.empty((0, 0, 0), W.dtype),
                    scratch[:ndo], dh_n, dc_n, dW, dx3, dh0, dc0, lens, False)  # fmt: skip


@njit(cache=True, inline="always")
def train_final_states(cell, L, D, T, B, I0, H, saved, h_n, c_n):
    """h_n (and c_n, lstm) after train_forward."""
    so, _ = buffer_offsets(cell, L, D, T, B, I0, H)
    _, hist, chist, _, _, _ = split_saved(saved, so)
    final_state_into(hist, L, D, T, B, H, h_n, 0)
    if cell == CELL_LSTM:
        final_state_into(chist, L, D, T, B, H, c_n, 0)


@njit(cache=True)
def train_final_states_chunks(cell, L, D, T, B, I0, H, saved, nchunks, h_n, c_n):
    """h_n (and c_n, lstm) after train_forward_chunks."""
    nx, ntop, _, _ = _train_heads(L, D, T, B, I0, H)
    final_states_chunks(cell, L, D, T, B, I0, H, saved[nx + ntop :], nchunks, h_n, c_n)
