"""The fused training kernel (one block trains one run for an interval of updates) and the
evaluation kernel (blocks take a run's batch columns through the forward pass and the metrics).

Per update, as rnnfast/cpu/_train.py: fill the input X (I0, T*B) and the targets from the run's
sequence data, forward through the layers (rnnfast/cuda/_layers.py), the linear head and its
loss, the head and the layers backward, the weight (and embedding) gradients, clipping by the
global norm and the optimizer step on the run's flat parameter vector theta = [recurrent |
W_out | b_out | embedding]. Blocks never talk to each other, so a launch of R blocks trains R
runs (a grid's runs that share shapes) and only the losses come back to the host.

The kernels know no task: they read the general form of rnnfast.seqdata, the int64 vectors
`model` (M_* slots of rnnfast.codes) and `form` (F_* slots) and the arrays of a Data tuple,
each with a leading run axis: (R, ...) when the runs' arrays differ, (1, ...) when they share
them. Modes (MODE_SET, MODE_STREAM_TF, MODE_STREAM_TRUE), inputs (IN_DENSE, IN_QUANTIZED,
IN_ONEHOT, IN_EMBED), targets (TGT_CLASSES, TGT_REALS, TGT_SIGMOID) and heads (HEAD_ALL,
HEAD_LAST: the forward direction's last step and the reverse direction's step 0, i.e. h_n)
are those of the CPU's fill_batch and rnnfast.cpu._head.

Lengths (set mode, Data.lens of size N; size 0: every sequence has T steps): batch column b of
update u has len = lens[order[u, b]] valid steps (_fill writes them to Work.lens), honoured
by the layers with PyTorch's packed semantics (rnnfast/cuda/_layers.py). A per-sequence
target (HEAD_LAST) then reads the forward direction's last history slot, which holds the
state after the sequence's own last step; per-step targets (HEAD_ALL) at padded steps are
ignored: the loss and its gradient are the mean over real steps (or their sum), and the
evaluation counts real steps only.

Arguments come in named groups (numba-cuda passes tuples, namedtuples included, of device
arrays and scalars to kernels element by element): Data, Optim, State, Work, Out. signatures()
gives their types for a compile check without a GPU (tests/cuda_ptx_check.py).

Block-wide sums (the loss, the gradient norm, the metrics) go through block_sum: per-thread
partial sums in a fixed order, then a fixed tree in shared memory, so a run's curve depends
only on its config (the block size is a function of the shapes).
"""

import math
from collections import namedtuple

import numpy as np
from numba import cuda, float64, typeof

from rnnfast.codes import (
    F_CARRY,
    F_EO,
    F_HEAD,
    F_INPUTS,
    F_MODE,
    F_SUM,
    F_TARGETS,
    F_V,
    H_ALPHA,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_MOMENTUM,
    HEAD_ALL,
    IN_DENSE,
    IN_EMBED,
    IN_ONEHOT,
    IN_QUANTIZED,
    MODE_SET,
    MODE_STREAM_TRUE,
    OPT_ADAGRAD,
    OPT_ADAM,
    OPT_SGD,
    TGT_CLASSES,
    TGT_REALS,
)
from rnnfast.cuda._layers import (
    S_DO,
    S_DX,
    S_HIST,
    S_X,
    backward_layers,
    final_state,
    forward_layers,
    sigmoid,
    weight_grads,
)
from rnnfast.seqdata import Data

# The per-element helpers (_locate, _input, _target) take the Data tuple by value; NVVM
# inlines every device function into the kernels (their PTX has no calls), so that costs
# nothing per element.
RED = 256  # shared-memory slots of block_sum: the largest block (rnnfast.cuda._api.MAX_THREADS)

# The named groups of the kernels' arguments (R: the group's runs; n: theta's size).
# Optim: code (int), hyper (R, 7) float64 (H_* slots), s1, s2 (R, n) state, clip (R,) float64.
Optim = namedtuple("Optim", ["code", "hyper", "s1", "s2", "clip"])
# State: h, c (R, L*D, B, H) carried (and initial) state; zeros (L*D, B, H): no gradient at
# the final state; dh0, dc0 (R, L*D, B, H): the initial state's gradient (not used).
State = namedtuple("State", ["h", "c", "zeros", "dh0", "dc0"])
# Work: buf (R, size) flat buffers cut by off (rnnfast.cuda._layers.layout); dtheta (R, n);
# Z, dZ (R, C*ncols) logits and their gradient; targets y_class (R, ncols) int32 and
# y_real (R, C*ncols); tok (R, T*B) int32: each column's token id (embedding inputs);
# lens (R, B) int64: each batch column's valid steps in the current update.
Work = namedtuple("Work", ["buf", "off", "dtheta", "Z", "dZ", "y_class", "y_real", "tok", "lens"])
# Out: losses, errors (R, n_updates) float64; done (R,) int64: updates run.
Out = namedtuple("Out", ["losses", "errors", "done"])
# EvalOut: per run and column block (R, blocks): loss sum (float64), correct, counted (int64).
EvalOut = namedtuple("EvalOut", ["loss", "correct", "counted"])


@cuda.jit(device=True)
def block_sum(red, tid, nt, v):
    red[tid] = v
    for q in range(tid + nt, RED, nt):
        red[q] = 0.0
    cuda.syncthreads()
    stride = RED // 2
    while stride > 0:
        for q in range(tid, stride, nt):
            red[q] += red[q + stride]
        cuda.syncthreads()
        stride //= 2
    total = red[0]
    cuda.syncthreads()
    return total


# ---------------------------------------------------------------------------- data


@cuda.jit(device=True)
def _pick(r, a):
    """Run r's index into a per-run (R, ...) or shared (1, ...) array."""
    return min(r, a.shape[0] - 1)


@cuda.jit(device=True)
def _locate(mode, order, u, T, B, t, b):
    """(row, position) of the data that column t*B + b of update u reads (position < 0:
    before the start of a stream), as rnnfast.cpu._train.fill_batch."""
    if mode == MODE_SET:
        return order[u, b], t
    if mode == MODE_STREAM_TRUE:  # copy i = b // B0 of row b % B0, shifted by i - T + 1
        B0 = B // T
        return b % B0, u * T + b // B0 - T + 1 + t
    return b, u * T + t


@cuda.jit(device=True)
def _input(form, th, d, row, pos, i, I0):
    """Feature i of data row `row` at position `pos` (zero before the start of a stream)."""
    zero = th.dtype.type(0)
    if pos < 0:
        return zero
    kind = form[F_INPUTS]
    if kind == IN_DENSE:
        return d.xd[row, pos * I0 + i]
    if kind == IN_QUANTIZED:
        return th.dtype.type(d.xq[row, pos * I0 + i] * th.dtype.type(d.scale))
    v = d.xt[row, pos]
    if kind == IN_ONEHOT:
        return th.dtype.type(1) if v == i else zero
    return th[form[F_EO] + v * I0 + i]  # IN_EMBED: the token's row of the (V, E) table


@cuda.jit(device=True)
def _target(form, d, row, pos, C, ncols, k, y_class, y_real):
    """Target column k = the target of data row `row` at position `pos`."""
    if form[F_TARGETS] == TGT_CLASSES:
        y_class[k] = d.yc[row, pos]
    else:
        for c in range(C):
            y_real[c * ncols + k] = d.yr[row, pos * C + c]


@cuda.jit(device=True)
def _fill(tid, nt, form, th, d, u, T, B, I0, C, b0, b1, X, tok, y_class, y_real, lens):
    """Update u's inputs X (I0, T*B), token ids tok (T*B, embedding inputs only), targets
    and column lengths lens (B,) for batch columns [b0, b1): rnnfast.cpu._train.fill_batch,
    one item per element."""
    TB, Bc = T * B, b1 - b0
    mode = form[F_MODE]
    for b in range(b0 + tid, b1, nt):
        lens[b] = d.lens[d.order[u, b]] if mode == MODE_SET and d.lens.shape[0] > 0 else T
    per_step = form[F_HEAD] == HEAD_ALL
    ncols = TB if per_step else B
    embed = form[F_INPUTS] == IN_EMBED
    for e in range(tid, I0 * T * Bc, nt):
        i = e // (T * Bc)
        t = (e // Bc) % T
        b = b0 + e % Bc
        row, pos = _locate(mode, d.order, u, T, B, t, b)
        X[i * TB + t * B + b] = _input(form, th, d, row, pos, i, I0)
        if embed and i == 0:
            tok[t * B + b] = d.xt[row, pos] if pos >= 0 else -1
    if per_step:
        for e in range(tid, T * Bc, nt):
            t = e // Bc
            b = b0 + e % Bc
            row, pos = _locate(mode, d.order, u, T, B, t, b)
            _target(form, d, row, pos, C, ncols, t * B + b, y_class, y_real)
    else:  # one target per sequence: a set's column 0, a stream copy's last step
        for b in range(b0 + tid, b1, nt):
            row, pos = _locate(mode, d.order, u, T, B, T - 1, b)
            if mode == MODE_SET:
                pos = 0
            _target(form, d, row, pos, C, ncols, b, y_class, y_real)


@cuda.jit(device=True)
def _run_data(r, data):
    """Run r's Data (2-D arrays) from the stacked (R or 1, ...) ones."""
    return Data(data.xd[_pick(r, data.xd)], data.xq[_pick(r, data.xq)],
                data.xt[_pick(r, data.xt)], data.yc[_pick(r, data.yc)],
                data.yr[_pick(r, data.yr)], data.order[_pick(r, data.order)],
                data.scale, data.lens[_pick(r, data.lens)])  # fmt: skip


@cuda.jit(device=True)
def _zero_state(tid, nt, L, D, B, H, b0, b1, hs, cs):
    Bc = b1 - b0
    for e in range(tid, L * D * H * Bc, nt):
        ld = e // (H * Bc)
        j = (e // Bc) % H
        b = b0 + e % Bc
        hs[ld, b, j] = 0
        cs[ld, b, j] = 0


# ---------------------------------------------------------------------------- head


@cuda.jit(device=True)
def _first_column(T, B, d, head_mode):
    """Time-major column of direction d's first head column: the last step forward, step 0
    in reverse (HEAD_LAST: h_n of both directions), else 0 (rnnfast.cpu._head)."""
    return (T - 1) * B if head_mode != HEAD_ALL and d == 0 else 0


@cuda.jit(device=True)
def _top(L, D, T, B, H, d, head_mode):
    """Offset in hist of direction d's first head column (row stride (T+1)*B)."""
    TB1 = (T + 1) * B
    return ((L - 1) * D + d) * H * TB1 + (B if d == 0 else 0) + _first_column(T, B, d, head_mode)


@cuda.jit(device=True)
def _head_forward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, Z, b0, b1):
    """Z (C, ncols) = W_out y + b_out for the columns of batch columns [b0, b1)."""
    TB1, Bc = (T + 1) * B, b1 - b0
    steps = T if head_mode == HEAD_ALL else 1
    ncols = steps * B
    for e in range(tid, C * steps * Bc, nt):
        c = e // (steps * Bc)
        k = ((e // Bc) % steps) * B + b0 + e % Bc
        acc = th.dtype.type(0)
        for d in range(D):
            src = _top(L, D, T, B, H, d, head_mode) + k
            for j in range(H):
                acc += th[wo + c * D * H + d * H + j] * hist[src + j * TB1]
        Z[c * ncols + k] = (th[bo + c] if bo >= 0 else th.dtype.type(0)) + acc


@cuda.jit(device=True)
def _real(per_step, B, lens, k):
    """Whether head column k is a real step (per-step targets at padded steps are ignored)."""
    return not per_step or k // B < lens[k % B]


@cuda.jit(device=True)
def _head_loss(tid, nt, red, loss_kind, C, ncols, reduction_sum, Z, y_class, y_real, dZ,
               per_step, B, lens):  # fmt: skip
    """(loss, sum |target - output|) with dZ = d loss / d Z, as rnnfast.cpu._head.head_loss,
    over the real columns only (lens (B,): the columns' valid steps; dZ is zero elsewhere)."""
    one, half = Z.dtype.type(1), Z.dtype.type(0.5)
    n_real = ncols
    if per_step:
        n_real = 0
        for b in range(B):
            n_real += lens[b]
    scale = one if reduction_sum else one / n_real
    total = 0.0
    abs_err = 0.0
    for k in range(tid, ncols, nt):
        if not _real(per_step, B, lens, k):
            for c in range(C):
                dZ[c * ncols + k] = 0
    if loss_kind == TGT_CLASSES:  # softmax cross-entropy
        for k in range(tid, ncols, nt):
            if not _real(per_step, B, lens, k):
                continue
            m = Z[k]
            for c in range(1, C):
                m = max(m, Z[c * ncols + k])
            s = Z.dtype.type(0)
            for c in range(C):
                e = math.exp(Z[c * ncols + k] - m)
                dZ[c * ncols + k] = e
                s += e
            lse = m + math.log(s)
            inv = scale / s
            for c in range(C):
                dZ[c * ncols + k] *= inv
            t = y_class[k]
            dZ[t * ncols + k] -= scale
            total += lse - Z[t * ncols + k]
    elif loss_kind == TGT_REALS:  # mean squared error over the C outputs
        two = Z.dtype.type(2) * scale / C
        for k in range(tid, ncols, nt):
            if not _real(per_step, B, lens, k):
                continue
            for c in range(C):
                e = c * ncols + k
                diff = Z[e] - y_real[e]
                abs_err += abs(diff)
                total += diff * diff
                dZ[e] = two * diff
    else:  # TGT_SIGMOID: squared error / 2 of the sigmoid outputs
        for k in range(tid, ncols, nt):
            if not _real(per_step, B, lens, k):
                continue
            for c in range(C):
                e = c * ncols + k
                o = sigmoid(Z[e], one)
                y = y_real[e]
                abs_err += abs(y - o)
                total += half * (y - o) * (y - o)
                dZ[e] = (o - y) * o * (one - o) * scale
    total = block_sum(red, tid, nt, total)
    abs_err = block_sum(red, tid, nt, abs_err)
    if loss_kind == TGT_REALS:
        total /= C
    return total * (1.0 if reduction_sum else 1.0 / n_real), abs_err


@cuda.jit(device=True)
def _head_backward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, dZ, dth, dO, lens):
    """Head gradients into dth (assigned) and dO (D, H, TB), the top layer's output gradient
    (zero at the columns the head does not read). HEAD_LAST: the forward direction's gradient
    goes to each column's own last step, lens[b] - 1 (the layers ignore dO at padded steps;
    the last history slot the head read carries that step's state)."""
    TB, TB1 = T * B, (T + 1) * B
    ncols = TB if head_mode == HEAD_ALL else B
    zero = th.dtype.type(0)
    for e in range(tid, C * D * H, nt):
        c, q = e // (D * H), e % (D * H)
        src = _top(L, D, T, B, H, q // H, head_mode) + (q % H) * TB1
        acc = zero
        for k in range(ncols):
            acc += dZ[c * ncols + k] * hist[src + k]
        dth[wo + e] = acc
    if bo >= 0:
        for c in range(tid, C, nt):
            acc = zero
            for k in range(ncols):
                acc += dZ[c * ncols + k]
            dth[bo + c] = acc
    for e in range(tid, D * H * TB, nt):
        q, col = e // TB, e % TB
        k = col  # the head column fed by this output (-1: none)
        if head_mode != HEAD_ALL:
            b = col % B
            last = lens[b] - 1 if q < H else 0  # forward: the last real step; reverse: step 0
            k = b if col // B == last else -1
        acc = zero
        if k >= 0:
            for c in range(C):
                acc += th[wo + c * D * H + q] * dZ[c * ncols + k]
        dO[e] = acc


@cuda.jit(device=True)
def _embedding_grads(tid, nt, form, T, B, I0, tok, dX, dth):
    """The embedding table's gradient (assigned): row v sums the input gradient of the
    columns that read token v, in column order as rnnfast.cpu._train._embedding_backward."""
    TB = T * B
    eo = form[F_EO]
    for e in range(tid, form[F_V] * I0, nt):
        v, i = e // I0, e % I0
        acc = dth.dtype.type(0)
        for col in range(TB):
            if tok[col] == v:
                acc += dX[i * TB + col]
        dth[eo + e] = acc


@cuda.jit(device=True)
def _column_metrics(kind, C, ncols, k, Z, y_class, y_real):
    """(loss, 1 if the argmax is the class else 0) of column k, as
    rnnfast.cpu._train._column_metrics."""
    if kind == TGT_CLASSES:
        best = 0
        for c in range(1, C):
            if Z[c * ncols + k] > Z[best * ncols + k]:
                best = c
        m = Z[best * ncols + k]
        s = 0.0
        for c in range(C):
            s += math.exp(Z[c * ncols + k] - m)
        t = y_class[k]
        return m + math.log(s) - Z[t * ncols + k], 1 if best == t else 0
    total = 0.0
    for c in range(C):
        z = Z[c * ncols + k]
        if kind == TGT_REALS:
            total += (z - y_real[c * ncols + k]) ** 2 / C
        else:  # TGT_SIGMOID
            o = 1.0 / (1.0 + math.exp(-z))
            total += 0.5 * (y_real[c * ncols + k] - o) ** 2
    return total, 0


# ---------------------------------------------------------------------------- optimizer


@cuda.jit(device=True)
def _clip_and_step(tid, nt, red, code, hyper, step, clip, th, dth, s1, s2, n):
    """clip_grad_norm then one optimizer step, as rnnfast.optim (per element, same order)."""
    sq = 0.0
    for i in range(tid, n, nt):
        g = float64(dth[i])
        sq += g * g
    norm = math.sqrt(block_sum(red, tid, nt, sq))
    coef = 1.0
    if clip > 0:
        coef = clip / (norm + 1e-6)
    t = th.dtype.type
    cg = t(coef)
    neg_lr = t(-hyper[H_LR])
    b1, b2 = hyper[H_BETA1], hyper[H_BETA2]
    fstep = float64(step)
    neg_step = t(-(hyper[H_LR] / (1.0 - b1**fstep)))
    bc2_sqrt = t((1.0 - b2**fstep) ** 0.5)
    for i in range(tid, n, nt):
        g = dth[i] * cg if coef < 1.0 else dth[i]
        if code == OPT_SGD:
            if hyper[H_MOMENTUM] > 0:
                b = s1[i] * t(hyper[H_MOMENTUM]) + g
                s1[i] = b
                th[i] = th[i] + neg_lr * b
            else:
                th[i] = th[i] + neg_lr * g
        elif code == OPT_ADAGRAD:
            s = s1[i] + g * g
            s1[i] = s
            th[i] = th[i] + (neg_lr * g) / (math.sqrt(s) + t(hyper[H_EPS]))
        elif code == OPT_ADAM:
            m = s1[i] + t(1.0 - b1) * (g - s1[i])
            v = s2[i] * t(b2) + (t(1.0 - b2) * g) * g
            s1[i] = m
            s2[i] = v
            th[i] = th[i] + (neg_step * m) / (math.sqrt(v) / bc2_sqrt + t(hyper[H_EPS]))
        else:  # OPT_RMSPROP
            v = s1[i] * t(hyper[H_ALPHA]) + (t(1.0 - hyper[H_ALPHA]) * g) * g
            s1[i] = v
            th[i] = th[i] + (neg_lr * g) / (math.sqrt(v) + t(hyper[H_EPS]))


# ---------------------------------------------------------------------------- kernels


@cuda.jit(cache=True)
def train_kernel(
    model,  # int64 M_* slots: (cell, act, L, D, T, B, I0, H, C, wo, bo)
    form,  # int64 F_* slots: inputs, targets, head, mode, sum, carry, V, E, eo
    woff,  # (L*D, 4) recurrent parameter offsets in theta
    runs,  # (blocks,) int64: the run each block trains
    theta,  # (R, n) parameters, updated
    opt,  # Optim
    data,  # Data, arrays (R or 1, ...): this epoch's sequence data
    state,  # State
    work,  # Work
    u0,  # the first update (of the epoch's data) to run
    n_updates,
    step0,  # updates done before this launch (the optimizer's step count)
    reset,  # zero the carried state first (a new epoch)
    out,  # Out
):
    r = runs[cuda.blockIdx.x]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    red = cuda.shared.array(RED, float64)
    cell, act, L, D, T, B, I0, H, C, wo, bo = (model[0], model[1], model[2], model[3], model[4],
                                               model[5], model[6], model[7], model[8], model[9],
                                               model[10])  # fmt: skip
    head_mode, carry = form[F_HEAD], form[F_CARRY]
    embed = form[F_INPUTS] == IN_EMBED
    d = _run_data(r, data)
    buf, off = work.buf[r], work.off
    th, dth, hs, cs = theta[r], work.dtheta[r], state.h[r], state.c[r]
    Z, dZ, y_class, y_real, tok, lens = (
        work.Z[r],
        work.dZ[r],
        work.y_class[r],
        work.y_real[r],
        work.tok[r],
        work.lens[r],
    )
    X = buf[off[S_X] : off[S_X + 1]]
    hist = buf[off[S_HIST] : off[S_HIST + 1]]
    dO = buf[off[S_DO] : off[S_DO + 1]]
    dX = buf[off[S_DX] : off[S_DX + 1]]
    ncols = T * B if head_mode == HEAD_ALL else B
    n = th.shape[0]
    for k in range(n_updates):
        u = u0 + k
        _fill(tid, nt, form, th, d, u, T, B, I0, C, 0, B, X, tok, y_class, y_real, lens)
        if (k == 0 and reset) or not carry:
            _zero_state(tid, nt, L, D, B, H, 0, B, hs, cs)
        cuda.syncthreads()
        forward_layers(tid, nt, cell, act, L, D, T, B, I0, H, 0, B, th, woff, hs, cs, lens, buf,
                       off)  # fmt: skip
        _head_forward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, Z, 0, B)
        cuda.syncthreads()
        loss, err = _head_loss(tid, nt, red, form[F_TARGETS], C, ncols, form[F_SUM], Z, y_class,
                               y_real, dZ, head_mode == HEAD_ALL, B, lens)  # fmt: skip
        if tid == 0:
            out.losses[r, k] = loss
            out.errors[r, k] = err
        if not math.isfinite(loss):  # every thread has the same loss: the block stops
            if tid == 0:
                out.done[r] = k
            return
        _head_backward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, dZ, dth, dO, lens)
        cuda.syncthreads()
        backward_layers(tid, nt, cell, act, L, D, T, B, I0, H, 0, B, th, woff, state.zeros,
                        state.zeros, state.dh0[r], state.dc0[r], lens, buf, off,
                        embed)  # fmt: skip
        weight_grads(tid, nt, cell, L, D, T, B, I0, H, th, woff, buf, off, dth)
        if embed:
            _embedding_grads(tid, nt, form, T, B, I0, tok, dX, dth)
        if carry:
            final_state(tid, nt, cell, L, D, T, B, H, 0, B, buf, off, hs, cs)
        cuda.syncthreads()
        _clip_and_step(tid, nt, red, opt.code, opt.hyper[r], step0 + k + 1, opt.clip[r], th, dth,
                       opt.s1[r], opt.s2[r], n)  # fmt: skip
        cuda.syncthreads()
    if tid == 0:
        out.done[r] = n_updates


@cuda.jit(cache=True)
def eval_kernel(
    model,  # int64 M_* slots, B the evaluation's batch columns
    form,  # int64 F_* slots
    woff,
    runs,  # (R_active,) int64: the runs evaluated; block x takes run runs[x // blocks_per_run]
    theta,  # (R, n) parameters
    data,  # Data, arrays (R or 1, ...): the evaluation's split, order (U, B) for sets
    state,  # State: h, c (R, L*D, B, H) carried between updates in stream modes
    work,  # Work for batch B (dtheta, dZ unused; buf needs only the forward segments)
    n_updates,
    n_valid,  # set mode: sequences counted (the last batch's padding is not)
    bc,  # batch columns per block
    out,  # EvalOut (R, blocks_per_run)
):
    """Metrics of the current parameters over a split, as rnnfast.cpu._train.evaluate: each
    block runs its batch columns [b0, b1) through every update and writes its partial sums."""
    cell, act, L, D, T, B, I0, H, C, wo, bo = (model[0], model[1], model[2], model[3], model[4],
                                               model[5], model[6], model[7], model[8], model[9],
                                               model[10])  # fmt: skip
    per_run = (B + bc - 1) // bc
    r = runs[cuda.blockIdx.x // per_run]
    blk = cuda.blockIdx.x % per_run
    b0 = blk * bc
    b1 = min(B, b0 + bc)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    red = cuda.shared.array(RED, float64)
    head_mode, kind = form[F_HEAD], form[F_TARGETS]
    set_mode = form[F_MODE] == MODE_SET
    d = _run_data(r, data)
    buf, off = work.buf[r], work.off
    th, hs, cs = theta[r], state.h[r], state.c[r]
    Z, y_class, y_real, tok = work.Z[r], work.y_class[r], work.y_real[r], work.tok[r]
    lens = work.lens[r]
    per_step = head_mode == HEAD_ALL
    X = buf[off[S_X] : off[S_X + 1]]
    hist = buf[off[S_HIST] : off[S_HIST + 1]]
    steps = T if head_mode == HEAD_ALL else 1
    ncols = steps * B
    Bc = b1 - b0
    loss_sum = 0.0
    correct = 0
    counted = 0
    for u in range(n_updates):
        _fill(tid, nt, form, th, d, u, T, B, I0, C, b0, b1, X, tok, y_class, y_real, lens)
        if set_mode or u == 0:
            _zero_state(tid, nt, L, D, B, H, b0, b1, hs, cs)
        cuda.syncthreads()
        forward_layers(tid, nt, cell, act, L, D, T, B, I0, H, b0, b1, th, woff, hs, cs, lens,
                       buf, off)  # fmt: skip
        _head_forward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, Z, b0, b1)
        if not set_mode:
            final_state(tid, nt, cell, L, D, T, B, H, b0, b1, buf, off, hs, cs)
        cuda.syncthreads()
        for e in range(tid, steps * Bc, nt):
            b = b0 + e % Bc
            if set_mode and u * B + b >= n_valid:
                continue  # a padded column of the last batch
            k = (e // Bc) * B + b
            if not _real(per_step, B, lens, k):
                continue  # a padded step
            lk, ok = _column_metrics(kind, C, ncols, k, Z, y_class, y_real)
            loss_sum += lk
            correct += ok
            counted += 1
        cuda.syncthreads()
    loss_sum = block_sum(red, tid, nt, loss_sum)
    n_correct = block_sum(red, tid, nt, float64(correct))  # exact: counts < 2**53
    n_counted = block_sum(red, tid, nt, float64(counted))
    if tid == 0:
        out.loss[r, blk] = loss_sum
        out.correct[r, blk] = int(n_correct)
        out.counted[r, blk] = int(n_counted)


def signatures(dtype) -> dict[str, tuple]:
    """{name: (kernel, argument types)} of both kernels for theta's dtype, as the driver
    (rnnfast/cuda/training.py) launches them: for compiling without a GPU."""
    dt = np.dtype(dtype)

    def a(kind, ndim):
        return np.zeros((1,) * ndim, kind)

    i = typeof(1)
    data = typeof(Data(a(dt, 3), a(np.uint8, 3), a(np.int32, 3), a(np.int32, 3), a(dt, 3),
                       a(np.int64, 3), 1.0, a(np.int64, 2)))  # fmt: skip
    state = typeof(State(a(dt, 4), a(dt, 4), a(dt, 3), a(dt, 4), a(dt, 4)))
    work = typeof(Work(a(dt, 2), a(np.int64, 1), a(dt, 2), a(dt, 2), a(dt, 2), a(np.int32, 2),
                       a(dt, 2), a(np.int32, 2), a(np.int64, 2)))  # fmt: skip
    opt = typeof(Optim(1, a(np.float64, 2), a(dt, 2), a(dt, 2), a(np.float64, 1)))
    out = typeof(Out(a(np.float64, 2), a(np.float64, 2), a(np.int64, 1)))
    eval_out = typeof(EvalOut(a(np.float64, 2), a(np.int64, 2), a(np.int64, 2)))
    vec, woff, theta = typeof(a(np.int64, 1)), typeof(a(np.int64, 2)), typeof(a(dt, 2))
    train = (vec, vec, woff, vec, theta, opt, data, state, work, i, i, i, typeof(True), out)
    evaluate = (vec, vec, woff, vec, theta, data, state, work, i, i, i, eval_out)
    return {"train_kernel": (train_kernel, train), "eval_kernel": (eval_kernel, evaluate)}
