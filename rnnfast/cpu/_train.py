"""Fused training loops: many updates per compiled call, Python once per interval.

One update: fill the input buffer X (I0, T*B) and the targets from the run's sequence data,
run the stacked recurrent layers forward, the head and its loss, the head and the layers
backward (and the embedding, if any), clip the gradient by its global norm, and apply the
optimizer to the flat parameter vector theta = [recurrent (packed as in rnnfast.cpu) | W_out |
b_out | embedding]. Nothing is allocated per update; the buffers come from the caller.

The loop knows no task: it reads one general form of data (rnnfast.seqdata), described by the
int64 vector `form` (slots F_* of rnnfast.codes) and the arrays of a Data tuple:

    xd (rows, cols*I0) float | xq (rows, cols*I0) uint8 (times scale) | xt (rows, cols) int32
    yc (rows, cols) int32 classes | yr (rows, cols*C) reals;  order (U, B) int64 (set mode)

- MODE_SET: row = sequence; update u's batch column b is sequence order[u, b], its step t
  reads column t. Targets per sequence (column 0) or per step (column t).
- MODE_STREAM_TF: row = one of B parallel streams; update u reads columns [u*T, (u+1)*T),
  the state carried between updates, a target at every step.
- MODE_STREAM_TRUE: every target backpropagates exactly T steps. Update u holds T shifted
  copies of the B0 rows, copy i reading columns [u*T + i - T + 1, u*T + i] (zero input before
  column 0) with the target at its last step only; copy i's final state is exactly the initial
  state its next window needs, so carrying the state works as in "tf" (batch T*B0).

One-hot inputs at least ONEHOT_IDS_MIN wide reach the layers as token ids (Work.xi, -1 for a
zero column) instead of a mostly-zero X: the input projection adds W_ih's column of each token
and dW_ih takes each column's gradient, with no multiply-adds by zeros (a char-level LSTM 256
of 30 characters spent 5 % of an epoch on them, more with more characters). Narrower ones (the
dependency task's two symbols) keep the dense product, which costs them little and keeps their
curves bit-identical to the code before.

Lengths (set mode, data.lens of size N): each batch's columns come sorted by descending length
(rnnfast.seqdata) and their lengths go to the layers (rnnfast/cpu/_kernels.py), which carry a
finished sequence's state to the last block: a per-sequence head reads each sequence's state
after its own last step there, and its gradient flows back to that step. Per-step targets at
padded steps count for nothing, and the mean is over the real steps.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from rnnfast.codes import (
    F_CARRY,
    F_EO,
    F_HEAD,
    F_INPUTS,
    F_MODE,
    F_SUM,
    F_TARGETS,
    HEAD_ALL,
    IN_DENSE,
    IN_EMBED,
    IN_ONEHOT,
    IN_QUANTIZED,
    M_B,
    MODE_SET,
    MODE_STREAM_TRUE,
    TGT_CLASSES,
    TGT_REALS,
)
from rnnfast.cpu._chunks import (
    num_chunks,
    train_backward,
    train_backward_chunks,
    train_final_states,
    train_final_states_chunks,
    train_forward,
    train_forward_chunks,
    train_views,
    train_views_chunks,
)
from rnnfast.cpu._head import head_backward, head_forward, head_loss
from rnnfast.optim import clip_grad_norm, optim_step

# The compiled calls take their arrays in named groups (Numba compiles namedtuples of arrays
# as one argument each).
Data = namedtuple("Data", ["xd", "xq", "xt", "yc", "yr", "order", "scale", "lens"])
Optim = namedtuple("Optim", ["code", "hyper", "s1", "s2", "clip"])
Work = namedtuple(
    "Work",
    ["saved", "scratch", "dtheta", "Z", "dZ", "m", "s", "y_class", "y_real", "dX", "dx3", "lens",
     "xi"],
)  # fmt: skip
ONEHOT_IDS_MIN = 8  # one-hot inputs this wide go to the layers as token ids (Work.xi (T*B,))
State = namedtuple("State", ["h", "c", "dh_n", "dc_n", "dh0", "dc0"])


@njit(cache=True, error_model="numpy", inline="always")
def _source(mode, order, u, t, b, T, B0):
    """(row, column) of the data that feeds batch column b at step t of update u; a column
    < 0 is before the start of a stream (zero input)."""
    if mode == MODE_SET:
        return order[u, b], t
    if mode == MODE_STREAM_TRUE:  # copy i = b // B0 reads columns u*T + i - T + 1 ...
        return b % B0, u * T + b // B0 - T + 1 + t
    return b, u * T + t


@njit(cache=True, error_model="numpy")
def batch_lengths(form, data, u, B, lens):
    """Update u's column lengths in lens (B,) (sorted descending within each batch chunk, as
    the batch order is), or the empty all-T marker when the data has none."""
    if form[F_MODE] != MODE_SET or data.lens.size == 0:
        return lens[:0]
    for b in range(B):
        lens[b] = data.lens[data.order[u, b]]
    return lens[:B]


@njit(cache=True, error_model="numpy")
def fill_batch(form, theta, data, u, T, B, I0, C, X, xi, y_class, y_real):
    """Update u's inputs X (I0, T*B) (one-hot ones to the token ids xi (T*B,) when xi has that
    size) and targets (see the module docstring).

    One loop nest per input kind and per target kind, each with the mode's column mapping
    inlined: a generic per-element dispatch measured 80 ns an element (a dependency epoch
    5x slower than its old dedicated filler)."""
    TB = T * B
    mode = form[F_MODE]
    B0 = B // T if mode == MODE_STREAM_TRUE else B
    kind = form[F_INPUTS]
    zero, one = X.dtype.type(0), X.dtype.type(1)
    order = data.order
    if kind == IN_ONEHOT and xi.size > 0:
        for t in range(T):
            for b in range(B):
                row, pos = _source(mode, order, u, t, b, T, B0)
                xi[t * B + b] = data.xt[row, pos] if pos >= 0 else -1
    elif kind == IN_ONEHOT:
        X[: I0 * TB] = zero
        for t in range(T):
            for b in range(B):
                row, pos = _source(mode, order, u, t, b, T, B0)
                if pos >= 0:
                    X[data.xt[row, pos] * TB + t * B + b] = one
    elif kind == IN_DENSE:
        xd = data.xd
        for t in range(T):
            for b in range(B):
                row, pos = _source(mode, order, u, t, b, T, B0)
                for i in range(I0):
                    X[i * TB + t * B + b] = xd[row, pos * I0 + i] if pos >= 0 else zero
    elif kind == IN_QUANTIZED:
        xq = data.xq
        scale = X.dtype.type(data.scale)
        for t in range(T):
            for b in range(B):
                row, pos = _source(mode, order, u, t, b, T, B0)
                for i in range(I0):
                    X[i * TB + t * B + b] = xq[row, pos * I0 + i] * scale if pos >= 0 else zero
    else:  # IN_EMBED: the token's row of the (V, E) table in theta
        eo = form[F_EO]
        for t in range(T):
            for b in range(B):
                row, pos = _source(mode, order, u, t, b, T, B0)
                e0 = eo + data.xt[row, pos] * I0
                for i in range(I0):
                    X[i * TB + t * B + b] = theta[e0 + i] if pos >= 0 else zero
    # targets: per step (HEAD_ALL) at every (t, b); else one per column b at the last step
    # ("true" truncation: each copy's last column, u*T + i; set mode: column 0 of y)
    per_step = form[F_HEAD] == HEAD_ALL
    ncols = TB if per_step else B
    steps = T if per_step else 1
    classes = form[F_TARGETS] == TGT_CLASSES
    for s in range(steps):
        t = s if per_step else T - 1
        for b in range(B):
            row, pos = _source(mode, order, u, t, b, T, B0)
            if mode == MODE_SET and not per_step:
                pos = 0
            k = t * B + b if per_step else b
            if per_step and data.lens.size > 0 and mode == MODE_SET and t >= data.lens[row]:
                pos = -1  # a padded step: a placeholder target, masked out of the loss
            if pos < 0:
                if classes:
                    y_class[k] = 0
                else:
                    for c in range(C):
                        y_real[c * ncols + k] = 0
            elif classes:
                y_class[k] = data.yc[row, pos]
            else:
                for c in range(C):
                    y_real[c * ncols + k] = data.yr[row, pos * C + c]


@njit(cache=True, error_model="numpy")
def _embedding_backward(form, data, u, T, B, I0, dX, dx3, nchunks, dtheta):
    """dtheta's embedding rows += the input gradient of the columns that read them."""
    TB = T * B
    eo = form[F_EO]
    mode = form[F_MODE]
    B0 = B // T if mode == MODE_STREAM_TRUE else B
    serial = num_chunks(nchunks, B) == 1
    for t in range(T):
        for b in range(B):
            row, pos = _source(mode, data.order, u, t, b, T, B0)
            if pos < 0:
                continue  # zero input before the start of the stream
            e0 = eo + data.xt[row, pos] * I0
            for i in range(I0):
                dtheta[e0 + i] += dX[i * TB + t * B + b] if serial else dx3[t, b, i]


def _fused_loops(chunked):
    """The compiled loops (updates, evaluate) on serial buffers or on batch chunks.

    `chunked` is a constant of the closure, so Numba prunes the other branch at each step
    before typing it: a loop compiles (and links) one path only."""

    @njit(cache=True, error_model="numpy")
    def updates(model, form, theta, woff, opt, data, state, work, u0, n_updates, step0, losses,
                errors, nchunks):  # fmt: skip
        cell, act, L, D, T, B, I0, H, C, wo, bo = model
        if chunked:
            X, hist, Lh, dO, acc = train_views_chunks(L, D, T, B, I0, H, work.saved,
                                                      work.scratch)  # fmt: skip
        else:
            X, hist, Lh, dO, acc = train_views(cell, L, D, T, B, I0, H, work.saved, work.scratch)
        head_mode = form[F_HEAD]
        ncols = T * B if head_mode == HEAD_ALL else B
        embed = form[F_INPUTS] == IN_EMBED
        for k in range(n_updates):
            u = u0 + k
            fill_batch(form, theta, data, u, T, B, I0, C, X, work.xi, work.y_class, work.y_real)
            lens = batch_lengths(form, data, u, B, work.lens)
            if not form[F_CARRY]:
                state.h[:] = 0
                state.c[:] = 0
            if chunked:
                train_forward_chunks(cell, act, L, D, T, B, I0, H, theta, woff, state.h, state.c,
                                     work.saved, nchunks, work.xi, lens)  # fmt: skip
            else:
                train_forward(cell, act, L, D, T, B, I0, H, theta, woff, state.h, state.c,
                              work.saved, work.xi, lens)  # fmt: skip
            head_forward(Lh, D, T, B, H, C, head_mode, theta, wo, bo, hist, work.Z)
            loss, err = head_loss(form[F_TARGETS], C, ncols, form[F_SUM], work.Z, work.y_class,
                                  work.y_real, work.dZ, work.m, work.s, lens, B)  # fmt: skip
            losses[k] = loss
            errors[k] = err
            if not np.isfinite(loss):
                return k
            work.dtheta[:] = 0
            head_backward(Lh, D, T, B, H, C, head_mode, theta, wo, bo, hist, work.dZ,
                          work.dtheta, dO, acc)  # fmt: skip
            if chunked:
                train_backward_chunks(cell, act, L, D, T, B, I0, H, theta, woff, work.saved,
                                      work.scratch, nchunks, state.dh_n, state.dc_n,
                                      work.dtheta, state.dh0, state.dc0,
                                      work.dx3 if embed else work.dx3[:0], work.xi,
                                      lens)  # fmt: skip
            else:
                train_backward(cell, act, L, D, T, B, I0, H, theta, woff, work.saved,
                               work.scratch, state.dh_n, state.dc_n, work.dtheta, state.dh0,
                               state.dc0, work.dX if embed else work.dX[:0], work.xi,
                               lens)  # fmt: skip
            if embed:
                _embedding_backward(form, data, u, T, B, I0, work.dX, work.dx3, nchunks,
                                    work.dtheta)  # fmt: skip
            if form[F_CARRY]:
                if chunked:
                    train_final_states_chunks(cell, L, D, T, B, I0, H, work.saved, nchunks,
                                              state.h, state.c)  # fmt: skip
                else:
                    train_final_states(cell, L, D, T, B, I0, H, work.saved, state.h, state.c)
            clip_grad_norm(work.dtheta, opt.clip)
            optim_step(opt.code, opt.hyper, step0 + k + 1, theta, work.dtheta, opt.s1, opt.s2)
        return n_updates

    @njit(cache=True, error_model="numpy")
    def evaluate(model, form, theta, woff, data, n_updates, n_valid, state, work, nchunks):
        cell, act, L, D, T, B, I0, H, C, wo, bo = model
        if chunked:
            X, hist, Lh, _, _ = train_views_chunks(L, D, T, B, I0, H, work.saved,
                                                   work.saved[:0])  # fmt: skip
        else:
            X, hist, Lh, _, _ = train_views(cell, L, D, T, B, I0, H, work.saved, work.saved[:0])
        head_mode = form[F_HEAD]
        ncols = T * B if head_mode == HEAD_ALL else B
        set_mode = form[F_MODE] == MODE_SET
        loss_sum = 0.0
        correct = 0
        counted = 0
        state.h[:] = 0
        state.c[:] = 0
        for u in range(n_updates):
            fill_batch(form, theta, data, u, T, B, I0, C, X, work.xi, work.y_class, work.y_real)
            lens = batch_lengths(form, data, u, B, work.lens)
            if set_mode:
                state.h[:] = 0
                state.c[:] = 0
            if chunked:
                train_forward_chunks(cell, act, L, D, T, B, I0, H, theta, woff, state.h, state.c,
                                     work.saved, nchunks, work.xi, lens)  # fmt: skip
            else:
                train_forward(cell, act, L, D, T, B, I0, H, theta, woff, state.h, state.c,
                              work.saved, work.xi, lens)  # fmt: skip
            head_forward(Lh, D, T, B, H, C, head_mode, theta, wo, bo, hist, work.Z)
            if not set_mode:
                if chunked:
                    train_final_states_chunks(cell, L, D, T, B, I0, H, work.saved, nchunks,
                                              state.h, state.c)  # fmt: skip
                else:
                    train_final_states(cell, L, D, T, B, I0, H, work.saved, state.h, state.c)
            for k in range(ncols):
                b = k % B
                if set_mode and u * B + b >= n_valid:
                    continue  # a padded column of the last batch
                if head_mode == HEAD_ALL and lens.size > 0 and k // B >= lens[b]:
                    continue  # a padded step
                lk, ok = _column_metrics(form[F_TARGETS], C, ncols, k, work.Z, work.y_class,
                                         work.y_real)  # fmt: skip
                loss_sum += lk
                correct += ok
                counted += 1
        return loss_sum, correct, counted

    return updates, evaluate


_SERIAL = _fused_loops(False)
_CHUNKED = _fused_loops(True)


def _loops(model, nchunks):
    """The loops for a call: chunked when the batch really runs in more than one chunk (the
    buffers are laid out the same way: rnnfast.cpu._chunks.train_sizes)."""
    return _CHUNKED if min(nchunks, int(model[M_B])) > 1 else _SERIAL


def train_updates(
    model,  # int64 (cell, act, L, D, T, B, I0, H, C, wo, bo): rnnfast.codes M_* slots
    form,  # int64 rnnfast.codes F_* slots
    theta,  # parameters, updated
    woff,  # (L*D, 4) recurrent parameter offsets in theta
    opt,  # Optim: code, hyper (7,) float64, state s1, s2, clip
    data,  # Data: the run's sequence data for this epoch
    state,  # State: carried h, c (L*D, B, H) (also the initial state), gradient buffers
    work,  # Work: flat buffers laid out by rnnfast.cpu._chunks.train_sizes and the head's
    u0,
    n_updates,
    step0,  # updates done before this call (the optimizer's step count)
    losses,
    errors,  # (n_updates,) out
    nchunks,  # batch chunks the layers run in parallel (1: serial)
):
    """Runs updates u0 .. u0+n_updates-1; returns how many ran (fewer if a loss is not
    finite: that update's loss is recorded and the parameters are left before it)."""
    return _loops(model, nchunks)[0](model, form, theta, woff, opt, data, state, work, u0,
                                     n_updates, step0, losses, errors, nchunks)  # fmt: skip


def evaluate(model, form, theta, woff, data, n_updates, n_valid, state, work, nchunks):
    """Metrics of the current parameters over a split laid out like training data, in
    n_updates batches (set mode: order (U, B) with the last batch padded, of which the first
    n_valid sequences in all count; stream: every window, the state carried).

    Returns (loss sum, correct, counted): the loss summed over targets (each per-step or
    per-sequence target once; the mean over the C outputs of reals), and for classes how many
    argmax predictions were right."""
    return _loops(model, nchunks)[1](model, form, theta, woff, data, n_updates, n_valid, state,
                                     work, nchunks)  # fmt: skip


@njit(cache=True, error_model="numpy")
def _column_metrics(kind, C, ncols, k, Z, y_class, y_real):
    """(loss, 1 if the argmax is the class else 0) of column k."""
    if kind == TGT_CLASSES:
        best = 0
        for c in range(1, C):
            if Z[c * ncols + k] > Z[best * ncols + k]:
                best = c
        m = Z[best * ncols + k]
        s = 0.0
        for c in range(C):
            s += np.exp(Z[c * ncols + k] - m)
        t = y_class[k]
        return m + np.log(s) - Z[t * ncols + k], 1 if best == t else 0
    total = 0.0
    for c in range(C):
        z = Z[c * ncols + k]
        if kind == TGT_REALS:
            total += (z - y_real[c * ncols + k]) ** 2 / C
        else:  # TGT_SIGMOID: squared error / 2 of the sigmoid output
            o = 1.0 / (1.0 + np.exp(-z))
            total += 0.5 * (y_real[c * ncols + k] - o) ** 2
    return total, 0
