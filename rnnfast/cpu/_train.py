"""Fused training loops: many updates per compiled call, Python once per interval.

One update: fill the input buffer X (I0, T*B) and the targets from the task's data, run the
stacked recurrent layers forward, the head and its loss, the head and the layers backward,
clip the gradient by its global norm, and apply the optimizer to the flat parameter vector
theta = [recurrent parameters (packed as in rnnfast.cpu) | W_out | b_out]. Nothing is
allocated per update; the buffers come from the caller.

Tasks (the batch fillers below):
- TASK_DEPENDENCY: rows (B0, N) of bits; update u reads columns [u*n, (u+1)*n) (n = T).
  Truncation "tf": the B0 rows, state carried between updates, a loss at every step.
  Truncation "true": every target backpropagates exactly n steps. Update u holds n shifted
  copies of each row, copy i reading columns [u*n + i - n + 1, u*n + i] (zero input before
  column 0) with the loss at its last step only; copy i's final state is exactly the initial
  state its next window needs, so carrying the state works as in "tf" (batch n*B0).
- TASK_MNIST: images (N, T*I0) uint8 and labels (1, N); update u takes the images order[u].
- TASK_ADDITION: bit planes (U, T) of a, b and a + b; update u is example u (B = 1).
"""

import numpy as np
from numba import njit

from rnnfast.cpu._chunks import (
    train_backward,
    train_final_states,
    train_forward,
    train_views,
)
from rnnfast.cpu._head import HEAD_ALL, head_backward, head_forward, head_loss
from rnnfast.optim import clip_grad_norm, optim_step

TASK_DEPENDENCY, TASK_MNIST, TASK_ADDITION = 0, 1, 2


@njit(cache=True, error_model="numpy")
def fill_dependency(xs, ys, u, T, B, true_style, X, y_class):
    """One-hot bits into X (2, T*B); class targets for every step ("tf") or the last."""
    B0, N = xs.shape
    TB = T * B
    one = X.dtype.type(1)
    zero = X.dtype.type(0)
    s = u * T
    copies = T if true_style else 1
    for i in range(copies):
        first = s + i - T + 1 if true_style else s
        for t in range(T):
            col = first + t
            for b0 in range(B0):
                b = i * B0 + b0
                if col >= 0:
                    bit = xs[b0, col]
                    X[t * B + b] = one - bit
                    X[TB + t * B + b] = bit
                else:
                    X[t * B + b] = zero
                    X[TB + t * B + b] = zero
                if not true_style:
                    y_class[t * B + b] = ys[b0, col]
        if true_style:
            for b0 in range(B0):
                y_class[i * B0 + b0] = ys[b0, s + i]


@njit(cache=True, error_model="numpy")
def fill_mnist(images, labels, order, u, T, I0, B, X, y_class):
    TB = T * B
    inv = X.dtype.type(1.0 / 255.0)
    for b in range(B):
        img = images[order[u, b]]
        y_class[b] = labels[0, order[u, b]]
        for t in range(T):
            for i in range(I0):
                X[i * TB + t * B + b] = img[t * I0 + i] * inv


@njit(cache=True, error_model="numpy")
def fill_addition(abits, bbits, cbits, u, T, X, y_real):
    for t in range(T):
        X[t] = abits[u, t]
        X[T + t] = bbits[u, t]
        y_real[t] = cbits[u, t]


@njit(cache=True, error_model="numpy")
def train_updates(
    model,  # int64 (cell, act, L, D, T, B, I0, H, C, wo, bo)
    task,  # int64 (task, loss_kind, head_mode, reduction_sum, carry, true_style)
    theta,  # parameters
    woff,  # (L*D, 4) recurrent parameter offsets in theta
    opt_code,
    hyper,
    opt_s1,
    opt_s2,
    step0,
    clip,
    d_u8,
    d_lab,
    d_idx,  # task data: (rows|images|-) uint8, (rows|labels|-), order
    d_f1,
    d_f2,
    d_f3,  # task data: addition bit planes
    u0,
    n_updates,
    h_state,
    c_state,  # (L*D, B, H) carried state (also the initial state)
    saved,
    scratch,  # flat buffers laid out by rnnfast.cpu._chunks.train_sizes
    dtheta,
    Z,
    dZ,
    work_m,
    work_s,
    y_class,
    y_real,
    dzero,
    dh0,
    dc0,
    losses,
    errors,  # (n_updates,) out
    nchunks,  # batch chunks the layers run in parallel (1: serial)
):
    """Runs updates u0 .. u0+n_updates-1; returns how many ran (fewer if a loss is not
    finite: that update's loss is recorded and the parameters are left before it)."""
    cell, act, L, D, T, B, I0, H, C, wo, bo = model
    task_kind, loss_kind, head_mode, reduction_sum, carry, true_style = task
    X, hist, Lh, dO, acc = train_views(cell, L, D, T, B, I0, H, saved, scratch, nchunks)
    TB = T * B
    ncols = TB if head_mode == HEAD_ALL else B
    for k in range(n_updates):
        u = u0 + k
        if task_kind == TASK_DEPENDENCY:
            fill_dependency(d_u8, d_lab, u, T, B, true_style, X, y_class)
        elif task_kind == TASK_MNIST:
            fill_mnist(d_u8, d_lab, d_idx, u, T, I0, B, X, y_class)
        else:
            fill_addition(d_f1, d_f2, d_f3, u, T, X, y_real)
        if not carry:
            h_state[:] = 0
            c_state[:] = 0
        train_forward(cell, act, L, D, T, B, I0, H, theta, woff, h_state, c_state, saved,
                      nchunks)  # fmt: skip
        head_forward(Lh, D, T, B, H, C, head_mode, theta, wo, bo, hist, Z)
        loss, err = head_loss(loss_kind, C, ncols, reduction_sum, Z, y_class, y_real, dZ,
                              work_m, work_s)  # fmt: skip
        losses[k] = loss
        errors[k] = err
        if not np.isfinite(loss):
            return k
        dtheta[:] = 0
        head_backward(Lh, D, T, B, H, C, head_mode, theta, wo, bo, hist, dZ, dtheta, dO, acc)
        train_backward(cell, act, L, D, T, B, I0, H, theta, woff, saved, scratch, nchunks,
                       dzero, dzero, dtheta, dh0, dc0)  # fmt: skip
        if carry:
            train_final_states(cell, L, D, T, B, I0, H, saved, nchunks, h_state, c_state)
        clip_grad_norm(dtheta, clip)
        optim_step(opt_code, hyper, step0 + k + 1, theta, dtheta, opt_s1, opt_s2)
    return n_updates


@njit(cache=True, error_model="numpy")
def evaluate_mnist(model, theta, woff, images, labels, T, I0, batch, saved, Z, y_class, h0, c0,
                   nchunks):  # fmt: skip
    """Accuracy of argmax(head(last output)) over all images, in batches of `batch`
    (saved: laid out by train_sizes for batch and nchunks)."""
    cell, act, L, D, _, _, _, H, C, wo, bo = model
    X, hist, Lh, _, _ = train_views(cell, L, D, T, batch, I0, H, saved, saved[:0], nchunks)
    N = images.shape[0]
    idx = np.empty((1, batch), np.int64)
    correct = 0
    for start in range(0, N, batch):
        nb = min(batch, N - start)  # a short last batch is padded with its first image
        for b in range(batch):
            idx[0, b] = start + b if b < nb else start
        fill_mnist(images, labels, idx, 0, T, I0, batch, X, y_class)  # labels (1, N)
        h0[:] = 0
        c0[:] = 0
        train_forward(cell, act, L, D, T, batch, I0, H, theta, woff, h0, c0, saved, nchunks)
        head_forward(Lh, D, T, batch, H, C, 1, theta, wo, bo, hist, Z)
        for b in range(nb):
            best = 0
            for c in range(1, C):
                if Z[c * batch + b] > Z[best * batch + b]:
                    best = c
            if best == y_class[b]:
                correct += 1
    return correct
