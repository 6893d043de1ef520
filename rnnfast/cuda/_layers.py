"""Device functions: the stacked recurrent layers, run by the threads of one CUDA block.

A block owns a contiguous range of batch columns [b0, b1) and runs every layer, direction
and time step for them: batch columns never meet in the recurrence, so blocks need no
grid-wide synchronisation (cuda.cg), only cuda.syncthreads() inside the block. That keeps
the kernels correct under the CUDA simulator with any number of blocks, and lets one launch
train many runs (a block each, rnnfast/cuda/_train.py).

Layout: the CPU backend's feature-major flat buffers (rnnfast/cpu/_kernels.py), batch
innermost, so the threads of a warp (consecutive b) read consecutive addresses. All the
buffers of one call (or one run) live in one flat array `buf`, cut by `off` (layout()):

    X (I0, TB)  hist, chist (L*D, H, TB1)  G (L*D, GH, TB)  HN, TC (L*D, H, TB)
    dO, dOb (D, H, TB)  dG (L*D, GH, TB)  dHN (L*D, H, TB)  dh, dc (H, B)  dX (I0, TB)

Work split inside a block: a thread takes items e = tid, tid + nt, ... of each phase. In the
time loops an item is one (unit j, column b): the thread computes all gate rows of unit j
(their dot products with h_{t-1}, then the cell's element-wise step), so a step needs one
syncthreads. Backward keeps the same item -> thread map for the gate gradients and for
dh_{t-1} = W_hh^T dG, so dh and dc are only ever touched by their own thread.

Lengths (PyTorch's packed semantics, rnnfast.reference): column b takes part in step t only
if t < lens[b]. At a padded step its thread copies the carried h (and c) to the step's history
slot and skips the cell, so the forward direction's last slot holds the state after the
sequence's own last step, and the reverse direction carries h0 down to that step before it
starts. Backward leaves dh (dc) untouched at a padded step and writes zero gate gradients, so
the input, weight and bias gradients (sums over columns) get nothing from it, and the
gradient at the step's output (dO) is ignored. Padded outputs are zeroed by the caller.

The weights are read from global memory (cached in L1/L2); they are not staged in shared
memory, which numba-cuda caps at 48 KB per block (numba-cuda issue 94) while LSTM H=100
needs 160 KB of W_hh in float32. Reductions accumulate in the arrays' dtype, in a fixed
order per item, so every thread count gives the same bits.
"""

import math

import numpy as np
from numba import cuda

from rnnfast.cells import ACT_RELU, ACT_TANH, CELL_GRU, CELL_LSTM

# segments of the flat buffer, in order
SEGMENTS = ("X", "hist", "chist", "G", "HN", "TC", "dO", "dOb", "dG", "dHN", "dh", "dc", "dX")
(S_X, S_HIST, S_CHIST, S_G, S_HN, S_TC, S_DO, S_DOB, S_DG, S_DHN, S_DH, S_DC,
 S_DX) = range(len(SEGMENTS))  # fmt: skip


def gates(cell: int) -> int:
    return 4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1


@cuda.jit(device=True)
def _ngates(cell):
    return 4 if cell == CELL_LSTM else 3 if cell == CELL_GRU else 1


def layout(cell: int, L: int, D: int, T: int, B: int, I0: int, H: int) -> np.ndarray:
    """int64 offsets (len(SEGMENTS) + 1) of the segments in one flat buffer; an unused
    segment gets one element, every segment starts at a multiple of 32 elements."""
    GH, TB, TB1, LD = gates(cell) * H, T * B, (T + 1) * B, L * D
    lstm, gru = cell == CELL_LSTM, cell == CELL_GRU
    sizes = (I0 * TB, LD * H * TB1, LD * H * TB1 if lstm else 1, LD * GH * TB,
             LD * H * TB if gru else 1, LD * H * TB if lstm else 1, D * H * TB,
             D * H * TB if L > 1 else 1, LD * GH * TB, LD * H * TB if gru else 1, H * B,
             H * B, I0 * TB)  # fmt: skip
    off = np.zeros(len(sizes) + 1, np.int64)
    for k, n in enumerate(sizes):
        off[k + 1] = off[k] + (n + 31) // 32 * 32
    return off


@cuda.jit(device=True)
def sigmoid(x, one):
    return one / (one + math.exp(-x))


@cuda.jit(device=True)
def activate(a, act, one, zero):
    if act == ACT_TANH:
        return math.tanh(a)
    if act == ACT_RELU:
        return max(a, zero)
    return sigmoid(a, one)


@cuda.jit(device=True)
def _input_projection(tid, nt, cell, l, ld, D, T, B, I0, H, b0, b1, X, hist, G, W, woff):
    """G[ld] = biases + W_ih @ input for the block's columns (items (r, t, b))."""
    GH, TB, TB1, Bc = _ngates(cell) * H, T * B, (T + 1) * B, b1 - b0
    w_ih, b_ih, b_hh = woff[ld, 0], woff[ld, 2], woff[ld, 3]
    zero = W.dtype.type(0)
    for e in range(tid, GH * T * Bc, nt):
        r = e // (T * Bc)
        t = (e // Bc) % T
        c = t * B + b0 + e % Bc
        acc = zero
        if l == 0:
            for k in range(I0):
                acc += W[w_ih + r * I0 + k] * X[k * TB + c]
        else:
            for dp in range(D):
                src = ((l - 1) * D + dp) * H * TB1 + (B if dp == 0 else 0) + c
                wrow = w_ih + r * D * H + dp * H
                for k in range(H):
                    acc += W[wrow + k] * hist[src + k * TB1]
        bias = zero
        if b_ih >= 0:
            bias = W[b_ih + r]
            if cell != CELL_GRU or r < 2 * H:
                bias += W[b_hh + r]
        G[ld * GH * TB + r * TB + c] = bias + acc


@cuda.jit(device=True)
def _step_forward(cell, act, ld, T, B, H, j, b, t, hp, hq, hist, chist, G, HN, TC, W, woff):
    """Unit j, column b at time t: gate rows += W_hh h_{t-1}, then the cell's update."""
    GH, TB, TB1 = _ngates(cell) * H, T * B, (T + 1) * B
    w_hh, b_hh = woff[ld, 1], woff[ld, 3]
    one, zero = W.dtype.type(1), W.dtype.type(0)
    hrow = ld * H * TB1 + b  # + k * TB1 + block * B
    g0 = ld * GH * TB + t * B + b  # + row * TB
    if cell == CELL_LSTM:
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        for k in range(H):
            h = hist[hrow + k * TB1 + hp * B]
            a0 += W[w_hh + j * H + k] * h
            a1 += W[w_hh + (H + j) * H + k] * h
            a2 += W[w_hh + (2 * H + j) * H + k] * h
            a3 += W[w_hh + (3 * H + j) * H + k] * h
        i = sigmoid(G[g0 + j * TB] + a0, one)
        f = sigmoid(G[g0 + (H + j) * TB] + a1, one)
        g = math.tanh(G[g0 + (2 * H + j) * TB] + a2)
        o = sigmoid(G[g0 + (3 * H + j) * TB] + a3, one)
        G[g0 + j * TB] = i
        G[g0 + (H + j) * TB] = f
        G[g0 + (2 * H + j) * TB] = g
        G[g0 + (3 * H + j) * TB] = o
        c = f * chist[hrow + j * TB1 + hp * B] + i * g
        chist[hrow + j * TB1 + hq * B] = c
        tc = math.tanh(c)
        TC[ld * H * TB + j * TB + t * B + b] = tc
        hist[hrow + j * TB1 + hq * B] = o * tc
    elif cell == CELL_GRU:
        a0 = zero
        a1 = zero
        hn = zero
        for k in range(H):
            h = hist[hrow + k * TB1 + hp * B]
            a0 += W[w_hh + j * H + k] * h
            a1 += W[w_hh + (H + j) * H + k] * h
            hn += W[w_hh + (2 * H + j) * H + k] * h
        if b_hh >= 0:
            hn = W[b_hh + 2 * H + j] + hn
        r = sigmoid(G[g0 + j * TB] + a0, one)
        z = sigmoid(G[g0 + (H + j) * TB] + a1, one)
        n = math.tanh(G[g0 + (2 * H + j) * TB] + r * hn)
        G[g0 + j * TB] = r
        G[g0 + (H + j) * TB] = z
        G[g0 + (2 * H + j) * TB] = n
        HN[ld * H * TB + j * TB + t * B + b] = hn
        hprev = hist[hrow + j * TB1 + hp * B]
        hist[hrow + j * TB1 + hq * B] = n + z * (hprev - n)
    else:
        a = zero
        for k in range(H):
            a += W[w_hh + j * H + k] * hist[hrow + k * TB1 + hp * B]
        y = activate(G[g0 + j * TB] + a, act, one, zero)
        G[g0 + j * TB] = y
        hist[hrow + j * TB1 + hq * B] = y


@cuda.jit(device=True)
def _carry(cell, ld, T, B, H, j, b, hp, hq, hist, chist):
    """Unit j, column b at a padded step: h (and c) pass through unchanged."""
    src = (ld * H + j) * (T + 1) * B + b
    hist[src + hq * B] = hist[src + hp * B]
    if cell == CELL_LSTM:
        chist[src + hq * B] = chist[src + hp * B]


@cuda.jit(device=True)
def forward_layers(tid, nt, cell, act, L, D, T, B, I0, H, b0, b1, W, woff, h0, c0, lens, buf,
                   off):  # fmt: skip
    """Every layer and direction for columns [b0, b1): fills hist, chist, G, HN, TC.
    h0, c0 (L*D, B, H): the initial state (c0 only read for lstm); lens (B,) int64: each
    column's valid steps (T: all)."""
    X, hist, chist = (
        buf[off[S_X] : off[S_X + 1]],
        buf[off[S_HIST] : off[S_HIST + 1]],
        buf[off[S_CHIST] : off[S_CHIST + 1]],
    )
    G, HN, TC = (
        buf[off[S_G] : off[S_G + 1]],
        buf[off[S_HN] : off[S_HN + 1]],
        buf[off[S_TC] : off[S_TC + 1]],
    )
    TB1, Bc = (T + 1) * B, b1 - b0
    for l in range(L):
        for d in range(D):
            ld = l * D + d
            _input_projection(tid, nt, cell, l, ld, D, T, B, I0, H, b0, b1, X, hist, G, W, woff)
            blk = 0 if d == 0 else T  # h0's block
            for e in range(tid, H * Bc, nt):
                j, b = e // Bc, b0 + e % Bc
                hist[(ld * H + j) * TB1 + blk * B + b] = h0[ld, b, j]
                if cell == CELL_LSTM:
                    chist[(ld * H + j) * TB1 + blk * B + b] = c0[ld, b, j]
            cuda.syncthreads()
            for s in range(T):
                t = s if d == 0 else T - 1 - s
                hp = t if d == 0 else t + 1  # block of h_{t-1}
                hq = t + 1 if d == 0 else t  # block of h_t
                for e in range(tid, H * Bc, nt):
                    j, b = e // Bc, b0 + e % Bc
                    if t < lens[b]:
                        _step_forward(cell, act, ld, T, B, H, j, b, t, hp, hq, hist, chist, G,
                                      HN, TC, W, woff)  # fmt: skip
                    else:
                        _carry(cell, ld, T, B, H, j, b, hp, hq, hist, chist)
                cuda.syncthreads()


@cuda.jit(device=True)
def final_state(tid, nt, cell, L, D, T, B, H, b0, b1, buf, off, h_n, c_n):
    """h_n (and c_n for lstm) (L*D, B, H) for columns [b0, b1) from the histories."""
    hist, chist = buf[off[S_HIST] : off[S_HIST + 1]], buf[off[S_CHIST] : off[S_CHIST + 1]]
    TB1, Bc = (T + 1) * B, b1 - b0
    for e in range(tid, L * D * H * Bc, nt):
        ld = e // (H * Bc)
        j = (e // Bc) % H
        b = b0 + e % Bc
        blk = T if ld % D == 0 else 0
        h_n[ld, b, j] = hist[(ld * H + j) * TB1 + blk * B + b]
        if cell == CELL_LSTM:
            c_n[ld, b, j] = chist[(ld * H + j) * TB1 + blk * B + b]


@cuda.jit(device=True)
def _step_backward(cell, act, ld, d, T, B, H, j, b, t, hp, hist, chist, G, HN, TC, dO, dG, dHN,
                   dh, dc):  # fmt: skip
    """Unit j, column b at time t: the gate gradients dG (dHN) from dh_t (+ dO) and dc_t;
    returns the direct part of dh_{t-1} (gru: dh * z, else 0); dc becomes dc_{t-1}."""
    GH, TB, TB1 = _ngates(cell) * H, T * B, (T + 1) * B
    one, zero = G.dtype.type(1), G.dtype.type(0)
    c = t * B + b
    g0 = ld * GH * TB + c
    dht = dh[j * B + b] + dO[(d * H + j) * TB + c]
    if cell == CELL_LSTM:
        i = G[g0 + j * TB]
        f = G[g0 + (H + j) * TB]
        g = G[g0 + (2 * H + j) * TB]
        o = G[g0 + (3 * H + j) * TB]
        tc = TC[(ld * H + j) * TB + c]
        dG[g0 + (3 * H + j) * TB] = dht * tc * o * (one - o)
        dcj = dc[j * B + b] + dht * o * (one - tc * tc)
        dG[g0 + j * TB] = dcj * g * i * (one - i)
        dG[g0 + (2 * H + j) * TB] = dcj * i * (one - g * g)
        cp = chist[(ld * H + j) * TB1 + hp * B + b]
        dG[g0 + (H + j) * TB] = dcj * cp * f * (one - f)
        dc[j * B + b] = dcj * f
        return zero
    if cell == CELL_GRU:
        r = G[g0 + j * TB]
        z = G[g0 + (H + j) * TB]
        n = G[g0 + (2 * H + j) * TB]
        hprev = hist[(ld * H + j) * TB1 + hp * B + b]
        dG[g0 + (H + j) * TB] = dht * (hprev - n) * z * (one - z)
        dgn = dht * (one - z) * (one - n * n)
        dG[g0 + (2 * H + j) * TB] = dgn
        dHN[(ld * H + j) * TB + c] = dgn * r
        dG[g0 + j * TB] = dgn * HN[(ld * H + j) * TB + c] * r * (one - r)
        return dht * z
    y = G[g0 + j * TB]
    if act == ACT_TANH:
        dG[g0 + j * TB] = dht * (one - y * y)
    elif act == ACT_RELU:
        dG[g0 + j * TB] = dht if y > zero else zero
    else:
        dG[g0 + j * TB] = dht * y * (one - y)
    return zero


@cuda.jit(device=True)
def _zero_gate_grads(cell, ld, T, B, H, j, b, t, dG, dHN):
    """Unit j, column b at a padded step: no gate gradients (the weight gradients sum dG over
    every column, padded ones included)."""
    GH, TB, c = _ngates(cell) * H, T * B, t * B + b
    zero = dG.dtype.type(0)
    for q in range(_ngates(cell)):
        dG[(ld * GH + q * H + j) * TB + c] = zero
    if cell == CELL_GRU:
        dHN[(ld * H + j) * TB + c] = zero


@cuda.jit(device=True)
def _dh_prev(cell, ld, T, B, H, j, b, t, direct, dG, dHN, W, woff):
    """dh_{t-1}[j, b] = direct + sum_r W_hh[r, j] dG[r, t, b] (gru: rows n through dHN)."""
    GH, TB = _ngates(cell) * H, T * B
    w_hh = woff[ld, 1]
    c = t * B + b
    acc = W.dtype.type(0)
    if cell == CELL_GRU:
        for r in range(2 * H):
            acc += W[w_hh + r * H + j] * dG[(ld * GH + r) * TB + c]
        for r in range(H):
            acc += W[w_hh + (2 * H + r) * H + j] * dHN[(ld * H + r) * TB + c]
    else:
        for r in range(GH):
            acc += W[w_hh + r * H + j] * dG[(ld * GH + r) * TB + c]
    return direct + acc


@cuda.jit(device=True)
def _grad_below(tid, nt, cell, l, D, T, B, I0, H, b0, b1, W, woff, dG, dst, with_x):
    """dst = sum_d W_ih(l, d)^T dG(l, d) for the block's columns: dX (I0, TB) for l = 0
    (if with_x), else dOb (D, H, TB) for layer l - 1."""
    GH, TB, Bc = _ngates(cell) * H, T * B, b1 - b0
    K = I0 if l == 0 else D * H
    if l == 0 and not with_x:
        return
    for e in range(tid, K * T * Bc, nt):
        k = e // (T * Bc)
        c = ((e // Bc) % T) * B + b0 + e % Bc
        acc = W.dtype.type(0)
        for d in range(D):
            ld = l * D + d
            w_ih = woff[ld, 0]
            for r in range(GH):
                acc += W[w_ih + r * K + k] * dG[(ld * GH + r) * TB + c]
        dst[k * TB + c] = acc


@cuda.jit(device=True)
def backward_layers(tid, nt, cell, act, L, D, T, B, I0, H, b0, b1, W, woff, dh_n, dc_n, dh0, dc0,
                    lens, buf, off, with_x):  # fmt: skip
    """The reverse time loops for columns [b0, b1), top layer first. Reads dO (D, H, TB), the
    gradient at the top layer's outputs (overwritten for L > 1), and lens (B,) as forward;
    writes dG and dHN of every layer (for weight_grads), dh0 and dc0 (L*D, B, H), and dX if
    with_x."""
    hist, chist = buf[off[S_HIST] : off[S_HIST + 1]], buf[off[S_CHIST] : off[S_CHIST + 1]]
    G, HN, TC = (
        buf[off[S_G] : off[S_G + 1]],
        buf[off[S_HN] : off[S_HN + 1]],
        buf[off[S_TC] : off[S_TC + 1]],
    )
    dO, dOb = buf[off[S_DO] : off[S_DO + 1]], buf[off[S_DOB] : off[S_DOB + 1]]
    dG, dHN, dh, dc = (
        buf[off[S_DG] : off[S_DG + 1]],
        buf[off[S_DHN] : off[S_DHN + 1]],
        buf[off[S_DH] : off[S_DH + 1]],
        buf[off[S_DC] : off[S_DC + 1]],
    )
    Bc = b1 - b0
    for l in range(L - 1, -1, -1):
        for d in range(D):
            ld = l * D + d
            for e in range(tid, H * Bc, nt):
                j, b = e // Bc, b0 + e % Bc
                dh[j * B + b] = dh_n[ld, b, j]
                if cell == CELL_LSTM:
                    dc[j * B + b] = dc_n[ld, b, j]
            for s in range(T):
                t = T - 1 - s if d == 0 else s
                hp = t if d == 0 else t + 1
                # the items below keep their thread in both phases: dh, dc stay thread-private
                for e in range(tid, H * Bc, nt):
                    j, b = e // Bc, b0 + e % Bc
                    if t < lens[b]:
                        dh[j * B + b] = _step_backward(
                            cell, act, ld, d, T, B, H, j, b, t, hp, hist, chist, G, HN, TC, dO,
                            dG, dHN, dh, dc,
                        )  # fmt: skip
                    else:  # padded: dh, dc pass through
                        _zero_gate_grads(cell, ld, T, B, H, j, b, t, dG, dHN)
                cuda.syncthreads()
                for e in range(tid, H * Bc, nt):
                    j, b = e // Bc, b0 + e % Bc
                    if t < lens[b]:
                        dh[j * B + b] = _dh_prev(cell, ld, T, B, H, j, b, t, dh[j * B + b], dG,
                                                 dHN, W, woff)  # fmt: skip
            for e in range(tid, H * Bc, nt):
                j, b = e // Bc, b0 + e % Bc
                dh0[ld, b, j] = dh[j * B + b]
                if cell == CELL_LSTM:
                    dc0[ld, b, j] = dc[j * B + b]
        cuda.syncthreads()
        dst = buf[off[S_DX] : off[S_DX + 1]] if l == 0 else dOb
        _grad_below(tid, nt, cell, l, D, T, B, I0, H, b0, b1, W, woff, dG, dst, with_x)
        cuda.syncthreads()
        if l > 0:
            dO, dOb = dOb, dO


@cuda.jit(device=True)
def weight_grads(tid, nt, cell, L, D, T, B, I0, H, W, woff, buf, off, dW):
    """dW (packed like W) = the weight and bias gradients summed over all T*B columns, one
    item per parameter (assigned, not accumulated): needs backward_layers done for every
    column. tid, nt: this thread's index among all threads taking part."""
    X, hist = buf[off[S_X] : off[S_X + 1]], buf[off[S_HIST] : off[S_HIST + 1]]
    dG, dHN = buf[off[S_DG] : off[S_DG + 1]], buf[off[S_DHN] : off[S_DHN + 1]]
    GH, TB, TB1 = _ngates(cell) * H, T * B, (T + 1) * B
    for l in range(L):
        K = I0 if l == 0 else D * H
        for d in range(D):
            ld = l * D + d
            w_ih, w_hh, b_ih, b_hh = woff[ld, 0], woff[ld, 1], woff[ld, 2], woff[ld, 3]
            nb = 2 * GH if b_ih >= 0 else 0
            hprev = ld * H * TB1 + (0 if d == 0 else B)  # h_{t-1} for t = 0..T-1: TB columns
            for e in range(tid, GH * K + GH * H + nb, nt):
                acc = W.dtype.type(0)
                if e < GH * K:  # weight_ih[r, k]
                    r, k = e // K, e % K
                    if l == 0:
                        src = k * TB
                    else:
                        dp, kk = k // H, k % H
                        src = (((l - 1) * D + dp) * H + kk) * TB1 + (B if dp == 0 else 0)
                    for c in range(TB):
                        x = X[src + c] if l == 0 else hist[src + c]
                        acc += dG[(ld * GH + r) * TB + c] * x
                    dW[w_ih + e] = acc
                elif e < GH * K + GH * H:  # weight_hh[r, k]
                    q = e - GH * K
                    r, k = q // H, q % H
                    src = hprev + k * TB1
                    if cell == CELL_GRU and r >= 2 * H:
                        for c in range(TB):
                            acc += dHN[(ld * H + r - 2 * H) * TB + c] * hist[src + c]
                    else:
                        for c in range(TB):
                            acc += dG[(ld * GH + r) * TB + c] * hist[src + c]
                    dW[w_hh + q] = acc
                else:  # bias_ih[r] (q < GH) or bias_hh[r]
                    q = e - GH * K - GH * H
                    r = q % GH
                    if q >= GH and cell == CELL_GRU and r >= 2 * H:
                        for c in range(TB):
                            acc += dHN[(ld * H + r - 2 * H) * TB + c]
                    else:
                        for c in range(TB):
                            acc += dG[(ld * GH + r) * TB + c]
                    dW[(b_ih if q < GH else b_hh) + r] = acc
