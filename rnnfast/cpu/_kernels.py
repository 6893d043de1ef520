"""Compiled drivers: layers, directions and the time loop for rnn, lstm and gru.

Layout (all buffers flat, feature-major, batch innermost; TB = T*B, TB1 = (T+1)*B):

    X      (I0, TB)          layer-0 input, column t*B + b
    xi     (TB,) int64       or a one-hot layer-0 input as token ids (-1: a zero column),
                             size 0 when X holds the input
    W      packed params     per (layer, direction) ld = l*D + d, at woff[ld] = (w_ih, w_hh,
                             b_ih, b_hh) offsets (-1: no bias); PyTorch's row-major matrices
    hist   (L*D, H, TB1)     h history. Forward direction: block 0 = h0, block t+1 = h_t.
                             Reverse direction: block t = h_t, block T = h0. Either way a
                             direction's outputs are TB contiguous columns of a row.
    chist  (L*D, H, TB1)     c history (lstm)
    G      (L*D, G*H, TB)    pre-activations, then the saved activations (rnn: h is its own
                             activation, so G keeps the pre-activations), column block t
    HN     (L*D, H, TB)      gru: W_hn h_{t-1} + b_hn
    TC     (L*D, H, TB)      lstm: tanh(c_t)

Forward per (l, d): G = biases; G += W_ih @ input (one GEMM per input direction); then per
step G[:, t] += W_hh @ h_prev and the cell's element-wise step. Backward per layer, top down:
the reverse time loop makes dG (and dHN) and carries dh (dc); after it, dW_ih, dW_hh and the
bias gradients are one GEMM or row sum each, and the gradient for the layer below
(or x) is W_ih^T @ dG.

Lengths (packed sequences): `lens` (B,) holds the columns' lengths sorted in descending order
(the caller reorders the batch), or is empty when every column has T steps. At step t only the
first k_t = #{b: lens[b] > t} columns are live, and the per-step products and the cell's
element-wise code run on those alone (as cuDNN's packed sequences do), rounded up to a
multiple of 16 columns (step_columns) and the extra ones put right after. A padded column carries
its state unchanged (h_t = h_{t-1}, c_t = c_{t-1}), so the last block of the forward direction
holds each sequence's state after its own last step, and the reverse direction starts each
sequence from h0 at its own last step. Backward: a padded step passes dh (dc) through, adds the
gradient arriving at its (carried) output, and leaves zero gate gradients, so the weight
gradients (GEMMs over all T*B columns) and the input gradient get nothing from padded steps.
The input projection stays one GEMM (or gather) over all columns: padded columns are unread.
"""

import numpy as np
from numba import njit

from rnnfast._blas import gemm
from rnnfast.cells import CELL_GRU, CELL_LSTM
from rnnfast.cells.gru import gru_backward_step, gru_forward_step
from rnnfast.cells.lstm import lstm_backward_step, lstm_forward_step
from rnnfast.cells.rnn import rnn_backward_step, rnn_forward_step
from rnnfast.cpu._linalg import mm, rowsum_acc
from rnnfast.cpu._transpose import transpose


@njit(cache=True, error_model="numpy")
def _input_projection(l, D, GH, T, B, I0, H, X, xi, W, w_ih, hist, Gv):
    """Gv (GH, TB) += W_ih @ input of layer l (x, or both directions of layer l-1). Token ids
    add W_ih's column instead: the product's exact result for finite weights (one term is
    W_ih[r, id] * 1, the others are zeros), without its I0 multiply-adds per column."""
    TB, TB1 = T * B, (T + 1) * B
    if l == 0 and xi.size > 0:
        for r in range(GH):
            w = W[w_ih + r * I0 : w_ih + (r + 1) * I0]
            g = Gv[r * TB : (r + 1) * TB]
            for j in range(TB):
                if xi[j] >= 0:
                    g[j] += w[xi[j]]
    elif l == 0:
        gemm(0, 0, GH, TB, I0, 1.0, W[w_ih:], I0, X, TB, 1.0, Gv, TB)
    else:
        for dp in range(D):
            src = ((l - 1) * D + dp) * H * TB1 + (B if dp == 0 else 0)
            gemm(0, 0, GH, TB, H, 1.0, W[w_ih + dp * H :], D * H, hist[src:], TB1, 1.0, Gv, TB)


@njit(cache=True, error_model="numpy")
def _token_weight_grads(GH, TB, I0, xi, dGv, dW, w_ih):
    """dW_ih (GH, I0) += dG @ X^T for a one-hot input given as token ids: each column's
    gradient added to its token's column (the product would spend I0 multiply-adds on it)."""
    for r in range(GH):
        g = dGv[r * TB : (r + 1) * TB]
        w = dW[w_ih + r * I0 : w_ih + (r + 1) * I0]
        for j in range(TB):
            if xi[j] >= 0:
                w[xi[j]] += g[j]


@njit(cache=True, inline="always")
def live_columns(lens, t, B):
    """k_t: columns taking part in step t; lens sorted descending (size 0: all B)."""
    if lens.size == 0:
        return B
    lo, hi = 0, B
    while lo < hi:  # the first column whose sequence has ended before step t
        mid = (lo + hi) // 2
        if lens[mid] > t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, inline="always")
def step_columns(k, B):
    """Columns a step with k live ones runs on: k rounded up to a multiple of 16 (at most B).
    BLAS and the vectorised gate loops run a width that is not a multiple of the vector
    length much slower (GRU H=100, B=64, forward: 47 live columns 12.0 ms, 48: 8.5 ms, 64:
    9.6 ms); the few padded columns computed with them are put right afterwards."""
    return min(B, (k + 15) // 16 * 16)


@njit(cache=True, error_model="numpy")
def _copy_columns(src, so, dst, do, rows, lds, ldd, n):
    """dst[r, do:do+n] = src[r, so:so+n] for r < rows (row strides lds, ldd)."""
    for r in range(rows):
        for b in range(n):
            dst[r * ldd + do + b] = src[r * lds + so + b]


@njit(cache=True, error_model="numpy")
def _carry(a, rows, ld, src, dst, k, B):
    """a[r, dst + b] = a[r, src + b] for the padded columns k <= b < B of every row."""
    for r in range(rows):
        for b in range(k, B):
            a[r * ld + dst + b] = a[r * ld + src + b]


@njit(cache=True, error_model="numpy")
def zero_padded(a, rows, ld, T, B, lens):
    """a[r, t*B + b] = 0 wherever column b is padded at step t ((rows, T*B) layout)."""
    if lens.size == 0:
        return
    for t in range(T):
        k = live_columns(lens, t, B)
        for r in range(rows):
            a[r * ld + t * B + k : r * ld + t * B + B] = 0


@njit(cache=True)
def buffer_offsets(cell, L, D, T, B, I0, H):
    """Offsets into one flat buffer, rounded up to 64-byte multiples (float32), for

    saved (forward -> backward): X, hist, chist, G, HN, TC       -> saved[k]:saved[k+1]
    scratch (backward):          dO, dX, dG, dHN, dO_below, dh, dc, acc, db, WT, Z, dWc

    Unused buffers get size 1. Two flat arrays (instead of fifteen) keep the call overhead
    and the pool's bookkeeping small.
    """
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    TB, TB1, LD = T * B, (T + 1) * B, L * D
    lstm, gru = cell == CELL_LSTM, cell == CELL_GRU
    saved = (I0 * TB, LD * H * TB1, LD * H * TB1 if lstm else 1, LD * GH * TB,
             LD * H * TB if gru else 1, LD * H * TB if lstm else 1)  # fmt: skip
    K = max(I0, D * H if L > 1 else 0) + H + 1  # rows of Z (lstm)
    scratch = (D * H * TB, I0 * TB, D * GH * TB, D * H * TB if gru else 1,
               D * H * TB if L > 1 else 1, H * B, H * B, 64, GH, GH * H,
               K * TB if lstm else 1, GH * K if lstm else 1)  # fmt: skip
    so = np.zeros(len(saved) + 1, np.int64)
    for k in range(len(saved)):
        so[k + 1] = so[k] + (saved[k] + 15) // 16 * 16
    co = np.zeros(len(scratch) + 1, np.int64)
    for k in range(len(scratch)):
        co[k + 1] = co[k] + (scratch[k] + 15) // 16 * 16
    return so, co


@njit(cache=True)
def split_scratch(scratch, co):
    """(dO, dX, work) with work = (dG, dHN, dO_below, dh, dc, acc, db, WT, Z, dWc) for
    backward_layers."""
    s = scratch
    work = (s[co[2] : co[3]], s[co[3] : co[4]], s[co[4] : co[5]], s[co[5] : co[6]],
            s[co[6] : co[7]], s[co[7] : co[8]], s[co[8] : co[9]], s[co[9] : co[10]],
            s[co[10] : co[11]], s[co[11] : co[12]])  # fmt: skip
    return s[co[0] : co[1]], s[co[1] : co[2]], work


@njit(cache=True)
def split_saved(saved, so):
    return (saved[so[0] : so[1]], saved[so[1] : so[2]], saved[so[2] : so[3]],
            saved[so[3] : so[4]], saved[so[4] : so[5]], saved[so[5] : so[6]])  # fmt: skip


@njit(cache=True, error_model="numpy")
def forward_kernel(
    cell,
    act,
    D,
    H,
    x,  # (T, B, I0)
    W,  # packed parameters
    woff,  # (L*D, 4) int64
    h0,  # (L*D, B, H)
    c0,  # (L*D, B, H) lstm, else unused
    saved,  # flat, laid out by buffer_offsets; filled for backward
    lens,  # (B,) lengths sorted descending, or size 0 (all T)
    bf,  # x and out batch-first: (B, T, .)
):
    """Returns out (T, B, D*H) (bf: (B, T, D*H)), h_n and c_n (L*D, B, H)."""
    if bf:
        B, T, I0 = x.shape
    else:
        T, B, I0 = x.shape
    L = woff.shape[0] // D
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    TB, TB1 = T * B, (T + 1) * B
    dt = W.dtype
    so, _ = buffer_offsets(cell, L, D, T, B, I0, H)
    X, hist, chist, G, HN, TC = split_saved(saved, so)
    xf = x.reshape(x.size)
    for t in range(T):  # row (t, b) of x starts at (t*B + b)*I0, or (b*T + t)*I0 batch-first
        transpose(xf, t * I0 if bf else t * B * I0, T * I0 if bf else I0, X, t * B, TB, B, I0)
    forward_layers(cell, act, L, D, T, B, I0, H, GH, X, np.empty(0, np.int64), W, woff, h0, c0,
                   hist, chist, G, HN, TC, 0, lens)  # fmt: skip
    out = np.empty((B, T, D * H) if bf else (T, B, D * H), dt)
    of = out.reshape(out.size)
    DH = D * H
    for t in range(T):
        for d in range(D):
            base = ((L - 1) * D + d) * H * TB1 + (B if d == 0 else 0) + t * B
            o0 = (t * DH if bf else t * B * DH) + d * H
            transpose(hist, base, TB1, of, o0, T * DH if bf else DH, H, B)
        for b in range(live_columns(lens, t, B), B):  # padded outputs are zero
            o0 = (b * T + t) * DH if bf else (t * B + b) * DH
            of[o0 : o0 + DH] = 0
    h_n = _final_state(hist, L, D, T, B, H)
    c_n = _final_state(chist, L, D, T, B, H) if cell == CELL_LSTM else np.empty((0, B, H), dt)
    return out, h_n, c_n


@njit(cache=True, error_model="numpy")
def _final_state(hist, L, D, T, B, H):
    """(L*D, B, H): the block written last by each (layer, direction)."""
    s = np.empty((L * D, B, H), hist.dtype)
    final_state_into(hist, L, D, T, B, H, s, 0)
    return s


@njit(cache=True, error_model="numpy")
def final_state_into(hist, L, D, T, B, H, s, sb):
    """s[:, sb:sb+B, :] = the block of hist written last by each (layer, direction)."""
    TB1 = (T + 1) * B
    sf, Bs = s.reshape(s.size), s.shape[1]
    for ld in range(L * D):
        blk = T if ld % D == 0 else 0
        transpose(hist, ld * H * TB1 + blk * B, TB1, sf, (ld * Bs + sb) * H, H, H, B)


@njit(cache=True, error_model="numpy")
def forward_layers(
    cell,
    act,
    L,
    D,
    T,
    B,
    I0,
    H,
    GH,
    X,  # (I0, TB)
    xi,  # (TB,) token ids of a one-hot input, used instead of X; or size 0
    W,  # packed parameters
    woff,  # (L*D, 4)
    h0,  # (L*D, B, H)
    c0,  # (L*D, B, H) lstm
    hist,  # (L*D, H, TB1) out
    chist,  # (L*D, H, TB1) out, lstm
    G,  # (L*D, GH, TB) out
    HN,  # (L*D, H, TB) out, gru
    TC,  # (L*D, H, TB) out, lstm
    sb,  # batch offset of these columns in h0 and c0 (a batch chunk's, else 0)
    lens,  # (B,) these columns' lengths sorted descending, or size 0 (all T)
):
    TB, TB1 = T * B, (T + 1) * B
    for l in range(L):
        for d in range(D):
            ld = l * D + d
            w_ih, w_hh, b_ih, b_hh = woff[ld, 0], woff[ld, 1], woff[ld, 2], woff[ld, 3]
            Gv = G[ld * GH * TB : (ld + 1) * GH * TB]
            hv = hist[ld * H * TB1 : (ld + 1) * H * TB1]
            # biases first, so the input GEMM accumulates onto them (beta = 1)
            for r in range(GH):
                bias = 0.0
                if b_ih >= 0:
                    bias = W[b_ih + r]
                    if cell != CELL_GRU or r < 2 * H:
                        bias += W[b_hh + r]
                Gv[r * TB : (r + 1) * TB] = bias
            if cell == CELL_GRU:
                HNv = HN[ld * H * TB : (ld + 1) * H * TB]
                for r in range(H):
                    HNv[r * TB : (r + 1) * TB] = W[b_hh + 2 * H + r] if b_hh >= 0 else 0.0
            _input_projection(l, D, GH, T, B, I0, H, X, xi, W, w_ih, hist, Gv)
            h0blk = 0 if d == 0 else T
            s0 = (ld * h0.shape[1] + sb) * H
            transpose(h0.reshape(h0.size), s0, H, hv, h0blk * B, TB1, B, H)
            if cell == CELL_LSTM:
                cv = chist[ld * H * TB1 : (ld + 1) * H * TB1]
                TCv = TC[ld * H * TB : (ld + 1) * H * TB]
                transpose(c0.reshape(c0.size), s0, H, cv, h0blk * B, TB1, B, H)
            for s in range(T):
                t = s if d == 0 else T - 1 - s
                hp = t if d == 0 else t + 1  # block of h_{t-1} (the previous step)
                hq = t + 1 if d == 0 else t  # block of h_t
                gq = t * B
                k = live_columns(lens, t, B)  # the step runs on columns [0, kr) only
                kr = step_columns(k, B)
                if kr > 0:
                    if cell == CELL_GRU:
                        mm(0, 2 * H, kr, H, W[w_hh:], H, hv[hp * B :], TB1, 1.0, Gv[gq:], TB)
                        mm(0, H, kr, H, W[w_hh + 2 * H * H :], H, hv[hp * B :], TB1, 1.0,
                           HNv[gq:], TB)  # fmt: skip
                        gru_forward_step(Gv, HNv, hv, TB, TB1, gq, hp * B, hq * B, H, kr)
                    else:
                        mm(0, GH, kr, H, W[w_hh:], H, hv[hp * B :], TB1, 1.0, Gv[gq:], TB)
                        if cell == CELL_LSTM:
                            lstm_forward_step(Gv, TCv, hv, cv, TB, TB1, gq, hp * B, hq * B, H,
                                              kr)  # fmt: skip
                        else:
                            rnn_forward_step(Gv, hv, TB, TB1, gq, hq * B, H, kr, act)
                if k < B:  # padded columns (also those computed in [k, kr)) carry their state
                    _carry(hv, H, TB1, hp * B, hq * B, k, B)
                    if cell == CELL_LSTM:
                        _carry(cv, H, TB1, hp * B, hq * B, k, B)


@njit(cache=True, error_model="numpy")
def backward_kernel(
    cell,
    act,
    D,
    H,
    W,  # packed parameters
    woff,  # (L*D, 4)
    saved,  # forward's flat buffer
    dout,  # (T, B, D*H): gradient at the top layer's outputs
    dh_n,  # (L*D, B, H)
    dc_n,  # (L*D, B, H) lstm
    I0,
    scratch,  # flat, laid out by buffer_offsets
    lens,  # (B,) lengths sorted descending, or size 0 (all T), as forward's
    bf,  # dout and dx batch-first: (B, T, .)
):
    """Returns dW (packed like W), dx (T, B, I0) (bf: (B, T, I0)), dh0 and dc0 (L*D, B, H).
    dout at padded steps is ignored."""
    if bf:
        B, T, _ = dout.shape
    else:
        T, B, _ = dout.shape
    L = woff.shape[0] // D
    LD, TB = L * D, T * B
    GH = H * (4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1)
    dt = W.dtype
    so, co = buffer_offsets(cell, L, D, T, B, I0, H)
    X, hist, chist, G, HN, TC = split_saved(saved, so)
    dO, dX, work = split_scratch(scratch, co)
    df = dout.reshape(dout.size)
    DH = D * H
    for t in range(T):  # row d*H + j of dO is direction d's unit j
        transpose(df, t * DH if bf else t * B * DH, T * DH if bf else DH, dO, t * B, TB, B, DH)
    zero_padded(dO, DH, TB, T, B, lens)
    dW = np.zeros_like(W)
    dh0 = np.empty((LD, B, H), dt)
    dc0 = np.empty((LD if cell == CELL_LSTM else 0, B, H), dt)
    backward_layers(
        cell, act, L, D, T, B, I0, H, GH, X, np.empty(0, np.int64), W, woff, hist, chist, G, HN,
        TC, dO, work, dh_n, dc_n, dW, dX, dh0, dc0, 0, lens,
    )  # fmt: skip
    dx = np.empty((B, T, I0) if bf else (T, B, I0), dt)
    dxf = dx.reshape(dx.size)
    for t in range(T):
        transpose(dX, t * B, TB, dxf, t * I0 if bf else t * B * I0, T * I0 if bf else I0, I0, B)
    return dW, dx, dh0, dc0


@njit(cache=True, error_model="numpy")
def backward_layers(
    cell,
    act,
    L,
    D,
    T,
    B,
    I0,
    H,
    GH,
    X,  # (I0, TB)
    xi,  # (TB,) token ids of a one-hot input, used instead of X; or size 0
    W,  # packed parameters
    woff,  # (L*D, 4)
    hist,  # (L*D, H, TB1)
    chist,  # (L*D, H, TB1) lstm
    G,  # (L*D, GH, TB)
    HN,  # (L*D, H, TB) gru
    TC,  # (L*D, H, TB) lstm
    dO,  # (D, H, TB): gradient at the top layer's outputs; overwritten
    work,  # (dG, dHN, dO_below, dh, dc, acc, db, WT, Z, dWc), laid out by buffer_offsets
    dh_n,  # (L*D, B, H)
    dc_n,  # (L*D, B, H) lstm
    dW,  # packed like W: accumulated
    dX,  # (I0, TB) out; size 0 to skip the input gradient
    dh0,  # (L*D, B, H) out
    dc0,  # (L*D, B, H) out, lstm
    sb,  # batch offset of these columns in dh_n, dc_n, dh0 and dc0 (a batch chunk's, else 0)
    lens,  # (B,) these columns' lengths sorted descending, or size 0 (all T), as forward's
):
    TB, TB1 = T * B, (T + 1) * B
    dG, dHN, dO_below, dh, dc, acc, db, WT, Z, dWc = work
    keep = np.empty(2 * 16 * H, W.dtype)  # dh, dc of a step's computed padded columns
    for l in range(L - 1, -1, -1):
        for d in range(D):
            ld = l * D + d
            w_ih, w_hh, b_ih, b_hh = woff[ld, 0], woff[ld, 1], woff[ld, 2], woff[ld, 3]
            Gv = G[ld * GH * TB : (ld + 1) * GH * TB]
            hv = hist[ld * H * TB1 : (ld + 1) * H * TB1]
            dGv = dG[d * GH * TB : (d + 1) * GH * TB]
            dOv = dO[d * H * TB : (d + 1) * H * TB]
            s0 = (ld * dh_n.shape[1] + sb) * H  # dh_n, dc_n, dh0, dc0: (L*D, B, H) alike
            transpose(dh_n.reshape(dh_n.size), s0, H, dh, 0, B, B, H)
            if cell == CELL_LSTM:
                cv = chist[ld * H * TB1 : (ld + 1) * H * TB1]
                TCv = TC[ld * H * TB : (ld + 1) * H * TB]
                transpose(dc_n.reshape(dc_n.size), s0, H, dc, 0, B, B, H)
            if cell == CELL_GRU:
                HNv = HN[ld * H * TB : (ld + 1) * H * TB]
                dHNv = dHN[d * H * TB : (d + 1) * H * TB]
            # W_hh^T (H, GH) once: the per-step product W_hh^T @ dG then runs untransposed,
            # which OpenBLAS does about 10 % faster (bench: 2.6 vs 2.9 ms per LSTM-100 pass).
            # Through register tiles: the element loop took 0.95 ms for LSTM 256 (per chunk
            # and call), 3 % of a char-level epoch
            transpose(W, w_hh, H, WT, 0, GH, GH, H)
            for s in range(T):
                t = T - 1 - s if d == 0 else s
                hp = t if d == 0 else t + 1  # block of h_{t-1}
                hq = t + 1 if d == 0 else t  # block of h_t
                gq = t * B
                k = live_columns(lens, t, B)
                kr = step_columns(k, B)
                if k < B:  # padded columns: dh (dc) passes through, plus the gradient at
                    #        their carried output; kept aside while [k, kr) is computed
                    for r in range(H):
                        for b in range(k, B):
                            dh[r * B + b] += dOv[r * TB + gq + b]
                    _copy_columns(dh, k, keep, 0, H, B, 16, kr - k)
                    if cell == CELL_LSTM:
                        _copy_columns(dc, k, keep, 16 * H, H, B, 16, kr - k)
                if kr > 0:
                    if cell == CELL_GRU:
                        gru_backward_step(Gv, HNv, hv, dGv, dHNv, dOv, dh, TB, TB1, gq, hp * B,
                                          H, kr, B)  # fmt: skip
                    elif cell == CELL_LSTM:
                        lstm_backward_step(Gv, TCv, cv, dGv, dOv, dh, dc, TB, TB1, gq, hp * B, H,
                                           kr, B)  # fmt: skip
                    else:
                        rnn_backward_step(hv, dGv, dOv, dh, TB, TB1, gq, hq * B, H, kr, B, act)
                if k < B:  # no gate gradients from padded columns
                    for r in range(GH):
                        dGv[r * TB + gq + k : r * TB + gq + B] = 0
                    if cell == CELL_GRU:
                        for r in range(H):
                            dHNv[r * TB + gq + k : r * TB + gq + B] = 0
                if kr > 0:
                    if cell == CELL_GRU:
                        mm(0, H, kr, 2 * H, WT, GH, dGv[gq:], TB, 1.0, dh, B)
                        mm(0, H, kr, H, WT[2 * H :], GH, dHNv[gq:], TB, 1.0, dh, B)
                    else:
                        mm(0, H, kr, GH, WT, GH, dGv[gq:], TB, 0.0, dh, B)
                if k < B:
                    _copy_columns(keep, 0, dh, k, H, 16, B, kr - k)
                    if cell == CELL_LSTM:
                        _copy_columns(keep, 16 * H, dc, k, H, 16, B, kr - k)
            transpose(dh, 0, B, dh0.reshape(dh0.size), s0, H, H, B)
            if cell == CELL_LSTM:
                transpose(dc, 0, B, dc0.reshape(dc0.size), s0, H, H, B)
            if cell == CELL_LSTM:
                _weight_grads(l, d, D, GH, T, B, I0, H, X, xi, hist, dGv, dW, woff[ld], Z, dWc)
                continue
            # rnn, gru: one GEMM each over all time steps (gru: W_hn's from dHN, not dG)
            if l == 0 and xi.size > 0:
                _token_weight_grads(GH, TB, I0, xi, dGv, dW, w_ih)
            elif l == 0:
                gemm(0, 1, GH, I0, TB, 1.0, dGv, TB, X, TB, 1.0, dW[w_ih:], I0)
            else:
                for dp in range(D):
                    src = ((l - 1) * D + dp) * H * TB1 + (B if dp == 0 else 0)
                    gemm(
                        0,
                        1,
                        GH,
                        H,
                        TB,
                        1.0,
                        dGv,
                        TB,
                        hist[src:],
                        TB1,
                        1.0,
                        dW[w_ih + dp * H :],
                        D * H,
                    )
            hprev = hv[(0 if d == 0 else B) :]  # h_{t-1} for t = 0..T-1, TB columns
            if cell == CELL_GRU:
                gemm(0, 1, 2 * H, H, TB, 1.0, dGv, TB, hprev, TB1, 1.0, dW[w_hh:], H)
                gemm(0, 1, H, H, TB, 1.0, dHNv, TB, hprev, TB1, 1.0, dW[w_hh + 2 * H * H :], H)
            else:
                gemm(0, 1, GH, H, TB, 1.0, dGv, TB, hprev, TB1, 1.0, dW[w_hh:], H)
            if b_ih >= 0:
                db[:] = 0
                rowsum_acc(db, dGv, GH, TB, TB, acc)
                # element loops, not slice arithmetic (dW[a:b] += db): an array expression
                # brings Numba's shape-check error path into every module linking this one
                for r in range(GH):
                    dW[b_ih + r] += db[r]
                for r in range(2 * H if cell == CELL_GRU else GH):
                    dW[b_hh + r] += db[r]
                if cell == CELL_GRU:
                    rowsum_acc(dW[b_hh + 2 * H :], dHNv, H, TB, TB, acc)
        # gradient for the layer below (or x): W_ih^T @ dG, summed over directions
        for d in range(D):
            w_ih = woff[l * D + d, 0]
            dGv = dG[d * GH * TB : (d + 1) * GH * TB]
            beta = 0.0 if d == 0 else 1.0
            if l == 0:
                if dX.size > 0:
                    gemm(1, 0, I0, TB, GH, 1.0, W[w_ih:], I0, dGv, TB, beta, dX, TB)
            else:
                for dp in range(D):
                    gemm(
                        1,
                        0,
                        H,
                        TB,
                        GH,
                        1.0,
                        W[w_ih + dp * H :],
                        D * H,
                        dGv,
                        TB,
                        beta,
                        dO_below[dp * H * TB :],
                        TB,
                    )
        if l > 0:
            dO, dO_below = dO_below, dO


@njit(cache=True, error_model="numpy")
def _weight_grads(
    l,
    d,
    D,
    GH,
    T,
    B,
    I0,
    H,
    X,  # (I0, TB)
    xi,  # (TB,) token ids of a one-hot input, used instead of X; or size 0
    hist,  # (L*D, H, TB1)
    dGv,  # (GH, TB) this (layer, direction)'s pre-activation gradient
    dW,  # packed like W: accumulated
    wo,  # (4,) offsets of w_ih, w_hh, b_ih, b_hh in dW (biases -1: none)
    Z,  # (K, TB) scratch
    dWc,  # (GH, K) scratch
):
    """dW_ih, dW_hh, db_ih and db_hh of one (layer, direction) of lstm as one GEMM:

        dWc (GH, K) = dG (GH, TB) @ Z^T,   Z = [layer input (Il rows); h_{t-1} (H rows); 1]

    then added into dW. Three GEMMs and a row sum read dG four times, once for each; this
    reads it once, and the thin input part (Il = 28 for the MNIST rows) no longer runs as a
    GEMM of its own at half speed. Measured on one chunk of LSTM 28x100x100 (B = 50, one
    thread, the two kernel versions alternated in one process): backward 4.77 -> 4.61 ms.
    Not for rnn (G = 1): there copying Z costs as much as a pass over dG, and rnn T=10 B=100
    H=16 / H=64 got 8-9 % slower; gru's W_hn gradient comes from dHN, not dG. Token ids
    (layer 0) leave the input out of Z: dW_ih then takes each column's gradient directly.
    """
    TB, TB1 = T * B, (T + 1) * B
    w_ih, w_hh, b_ih, b_hh = wo[0], wo[1], wo[2], wo[3]
    ids = l == 0 and xi.size > 0
    Il = 0 if ids else I0 if l == 0 else D * H
    K = Il + H + (1 if b_ih >= 0 else 0)
    if ids:
        _token_weight_grads(GH, TB, I0, xi, dGv, dW, w_ih)
    elif l == 0:
        _copy_columns(X, 0, Z, 0, 1, 0, 0, I0 * TB)
    else:
        for dp in range(D):
            src = ((l - 1) * D + dp) * H * TB1 + (B if dp == 0 else 0)
            _copy_columns(hist, src, Z, dp * H * TB, H, TB1, TB, TB)
    hsrc = (l * D + d) * H * TB1 + (0 if d == 0 else B)  # h_{t-1} for t = 0..T-1
    _copy_columns(hist, hsrc, Z, Il * TB, H, TB1, TB, TB)
    if b_ih >= 0:
        Z[(Il + H) * TB : (Il + H + 1) * TB] = 1.0
    gemm(0, 1, GH, K, TB, 1.0, dGv, TB, Z, TB, 0.0, dWc, K)
    for r in range(GH):
        row = dWc[r * K : (r + 1) * K]
        for k in range(Il):
            dW[w_ih + r * Il + k] += row[k]
        for k in range(H):
            dW[w_hh + r * H + k] += row[Il + k]
        if b_ih >= 0:
            dW[b_ih + r] += row[Il + H]
            dW[b_hh + r] += row[Il + H]
