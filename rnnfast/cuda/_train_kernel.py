"""The fused training kernel: one block trains one run for an interval of updates.

Per update, as rnnfast/cpu/_train.py: fill the input X and the targets from the run's data,
forward through the layers (rnnfast/cuda/_layers.py), the linear head and its loss, the head
and the layers backward, the weight gradients, clipping by the global norm and the optimizer
step on the run's flat parameter vector theta = [recurrent | W_out | b_out]. Blocks never
talk to each other, so a launch of R blocks trains R runs (a grid's runs that share shapes)
and only the losses come back to the host.

Block-wide sums (the loss, the gradient norm) go through block_sum: per-thread partial sums
in a fixed order, then a fixed tree in shared memory, so a run's curve depends only on its
config (the block size is a function of the shapes).
"""

import math

from numba import cuda, float64

from rnnfast.cuda._layers import (
    S_DO,
    S_HIST,
    S_X,
    backward_layers,
    final_state,
    forward_layers,
    sigmoid,
    weight_grads,
)

RED = 256  # shared-memory slots of block_sum: the largest block (rnnfast.cuda._api.MAX_THREADS)
TASK_DEPENDENCY, TASK_MNIST = 0, 1  # as rnnfast.cpu._train; else addition
LOSS_CE, LOSS_MSE = 0, 1  # as rnnfast.cpu._head; else bce
HEAD_ALL = 0
OPT_SGD, OPT_ADAGRAD, OPT_ADAM = 0, 1, 2  # as rnnfast.optim; else rmsprop


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


@cuda.jit(device=True)
def _fill(tid, nt, task, true_style, T, B, I0, u, u8, lab, idx, f1, f2, f3, X, y_class, y_real):
    """Update u's inputs X (I0, T*B) and targets, as rnnfast.cpu._train.fill_*."""
    TB = T * B
    one, zero = X.dtype.type(1), X.dtype.type(0)
    if task == TASK_DEPENDENCY:  # u8, lab: (B0, N) bits
        B0 = u8.shape[0]
        s = u * T
        copies = T if true_style else 1
        for e in range(tid, copies * T * B0, nt):
            i = e // (T * B0)
            t = (e // B0) % T
            b0 = e % B0
            b = i * B0 + b0
            col = (s + i - T + 1 if true_style else s) + t
            if col >= 0:
                bit = u8[b0, col]
                X[t * B + b] = one - bit
                X[TB + t * B + b] = bit
            else:
                X[t * B + b] = zero
                X[TB + t * B + b] = zero
            if not true_style:
                y_class[t * B + b] = lab[b0, col]
            elif t == 0:
                y_class[i * B0 + b0] = lab[b0, s + i]
    elif task == TASK_MNIST:  # u8: (N, T*I0) images, lab: (1, N), idx: (U, B) order
        inv = X.dtype.type(1.0 / 255.0)
        for e in range(tid, B * T * I0, nt):
            b = e % B
            q = e // B  # t * I0 + i
            t, i = q // I0, q % I0
            img = idx[u, b]
            X[i * TB + t * B + b] = u8[img, q] * inv
            if q == 0:
                y_class[b] = lab[0, img]
    else:  # addition: f1, f2, f3 (U, T) bit planes of a, b, a + b; B = 1
        for t in range(tid, T, nt):
            X[t] = f1[u, t]
            X[T + t] = f2[u, t]
            y_real[t] = f3[u, t]


@cuda.jit(device=True)
def _top(L, D, T, B, H, d, head_mode):
    """Offset in hist of direction d's first head column (row stride (T+1)*B)."""
    col0 = 0 if head_mode == HEAD_ALL else (T - 1) * B
    return ((L - 1) * D + d) * H * (T + 1) * B + (B if d == 0 else 0) + col0


@cuda.jit(device=True)
def _head_forward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, Z, ncols):
    TB1 = (T + 1) * B
    for e in range(tid, C * ncols, nt):
        c, k = e // ncols, e % ncols
        acc = th.dtype.type(0)
        for d in range(D):
            src = _top(L, D, T, B, H, d, head_mode) + k
            for j in range(H):
                acc += th[wo + c * D * H + d * H + j] * hist[src + j * TB1]
        Z[e] = (th[bo + c] if bo >= 0 else th.dtype.type(0)) + acc


@cuda.jit(device=True)
def _head_loss(tid, nt, red, loss_kind, C, ncols, reduction_sum, Z, y_class, y_real, dZ):
    """(loss, sum |target - output|) with dZ = d loss / d Z, as rnnfast.cpu._head.head_loss."""
    one, half = Z.dtype.type(1), Z.dtype.type(0.5)
    scale = one if reduction_sum else one / ncols
    total = 0.0
    abs_err = 0.0
    for k in range(tid, ncols, nt):
        if loss_kind == LOSS_CE:
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
        else:  # one sigmoid output per column
            z = Z[k]
            o = sigmoid(z, one)
            y = y_real[k]
            abs_err += abs(y - o)
            if loss_kind == LOSS_MSE:
                total += half * (y - o) * (y - o)
                dZ[k] = (o - y) * o * (one - o) * scale
            else:
                total += max(z, 0) + math.log1p(math.exp(-abs(z))) - y * z
                dZ[k] = (o - y) * scale
    total = block_sum(red, tid, nt, total)
    abs_err = block_sum(red, tid, nt, abs_err)
    return total * (1.0 if reduction_sum else 1.0 / ncols), abs_err


@cuda.jit(device=True)
def _head_backward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, dZ, ncols, dth, dO):
    """Head gradients into dth (assigned) and dO (D, H, TB), the top layer's output gradient."""
    TB, TB1 = T * B, (T + 1) * B
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
    col0 = 0 if head_mode == HEAD_ALL else (T - 1) * B
    for e in range(tid, D * H * TB, nt):
        q, col = e // TB, e % TB
        acc = zero
        if col >= col0:
            for c in range(C):
                acc += th[wo + c * D * H + q] * dZ[c * ncols + col - col0]
        dO[e] = acc


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
    neg_lr = t(-hyper[0])
    b1, b2 = hyper[2], hyper[3]
    fstep = float64(step)
    neg_step = t(-(hyper[0] / (1.0 - b1**fstep)))
    bc2_sqrt = t((1.0 - b2**fstep) ** 0.5)
    for i in range(tid, n, nt):
        g = dth[i] * cg if coef < 1.0 else dth[i]
        if code == OPT_SGD:
            if hyper[1] > 0:
                b = s1[i] * t(hyper[1]) + g
                s1[i] = b
                th[i] = th[i] + neg_lr * b
            else:
                th[i] = th[i] + neg_lr * g
        elif code == OPT_ADAGRAD:
            s = s1[i] + g * g
            s1[i] = s
            th[i] = th[i] + (neg_lr * g) / (math.sqrt(s) + t(hyper[4]))
        elif code == OPT_ADAM:
            m = s1[i] + t(1.0 - b1) * (g - s1[i])
            v = s2[i] * t(b2) + (t(1.0 - b2) * g) * g
            s1[i] = m
            s2[i] = v
            th[i] = th[i] + (neg_step * m) / (math.sqrt(v) / bc2_sqrt + t(hyper[4]))
        else:
            v = s1[i] * t(hyper[5]) + (t(1.0 - hyper[5]) * g) * g
            s1[i] = v
            th[i] = th[i] + (neg_lr * g) / (math.sqrt(v) + t(hyper[4]))


@cuda.jit(cache=True)
def train_kernel(
    model,  # int64 (cell, act, L, D, T, B, I0, H, C, wo, bo)
    task,  # int64 (task, loss_kind, head_mode, reduction_sum, carry, true_style)
    runs,  # (blocks,) the run each block trains
    theta,  # (R, n) parameters, updated
    woff,  # (L*D, 4) recurrent parameter offsets in theta
    code,  # optimizer code
    hyper,  # (R, 7) float64 Optimizer.hyper() per run
    s1,
    s2,  # (R, n) optimizer state
    step0,  # updates done before this launch
    clip,  # (R,) max gradient norm (<= 0: none)
    u8,
    lab,
    idx,  # task data, first axis the run (or 1: shared); see _fill
    f1,
    f2,
    f3,  # addition bit planes (R, U, T)
    u0,
    n_updates,
    reset,  # zero the carried state first (a new epoch)
    h_state,
    c_state,  # (R, L*D, B, H) carried state
    zeros,  # (L*D, B, H) zeros: no gradient at the final state
    trash,  # (R, 2, L*D, B, H) dh0, dc0 (unused)
    bufs,  # (R, size) flat buffers laid out by rnnfast.cuda._layers.layout
    off,
    dtheta,  # (R, n)
    Z,
    dZ,  # (R, C * ncols)
    y_class,  # (R, ncols) int64
    y_real,  # (R, ncols)
    losses,
    errors,  # (R, n_updates) float64 out
    done,  # (R,) int64 out: updates run (fewer if a loss was not finite)
):
    r = runs[cuda.blockIdx.x]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    red = cuda.shared.array(RED, float64)
    cell, act, L, D, T, B, I0, H, C, wo, bo = (model[0], model[1], model[2], model[3], model[4],
                                               model[5], model[6], model[7], model[8], model[9],
                                               model[10])  # fmt: skip
    kind, loss_kind, head_mode, rsum, carry, true_style = (task[0], task[1], task[2], task[3],
                                                           task[4], task[5])  # fmt: skip
    buf, th, dth, hs, cs = bufs[r], theta[r], dtheta[r], h_state[r], c_state[r]
    X = buf[off[S_X] : off[S_X + 1]]
    hist = buf[off[S_HIST] : off[S_HIST + 1]]
    dO = buf[off[S_DO] : off[S_DO + 1]]
    ncols = T * B if head_mode == HEAD_ALL else B
    ri = min(r, u8.shape[0] - 1)
    rd = min(r, idx.shape[0] - 1)
    rf = min(r, f1.shape[0] - 1)
    n = th.shape[0]
    LDBH = L * D * B * H
    for k in range(n_updates):
        u = u0 + k
        _fill(tid, nt, kind, true_style, T, B, I0, u, u8[ri], lab[ri], idx[rd], f1[rf], f2[rf],
              f3[rf], X, y_class[r], y_real[r])  # fmt: skip
        if (k == 0 and reset) or not carry:
            for e in range(tid, LDBH, nt):
                hs[e // (B * H), (e // H) % B, e % H] = 0
                cs[e // (B * H), (e // H) % B, e % H] = 0
        cuda.syncthreads()
        forward_layers(tid, nt, cell, act, L, D, T, B, I0, H, 0, B, th, woff, hs, cs, buf, off)
        _head_forward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, Z[r], ncols)
        cuda.syncthreads()
        loss, err = _head_loss(tid, nt, red, loss_kind, C, ncols, rsum, Z[r], y_class[r],
                               y_real[r], dZ[r])  # fmt: skip
        if tid == 0:
            losses[r, k] = loss
            errors[r, k] = err
        if not math.isfinite(loss):
            if tid == 0:
                done[r] = k
            return
        _head_backward(tid, nt, L, D, T, B, H, C, head_mode, th, wo, bo, hist, dZ[r], ncols, dth,
                       dO)  # fmt: skip
        cuda.syncthreads()
        backward_layers(tid, nt, cell, act, L, D, T, B, I0, H, 0, B, th, woff, zeros, zeros,
                        trash[r, 0], trash[r, 1], buf, off, False)  # fmt: skip
        weight_grads(tid, nt, cell, L, D, T, B, I0, H, th, woff, buf, off, dth)
        if carry:
            final_state(tid, nt, cell, L, D, T, B, H, 0, B, buf, off, hs, cs)
        cuda.syncthreads()
        _clip_and_step(tid, nt, red, code, hyper[r], step0 + k + 1, clip[r], th, dth, s1[r],
                       s2[r], n)  # fmt: skip
        cuda.syncthreads()
    if tid == 0:
        done[r] = n_updates
