"""Output head and losses on the top layer's feature-major outputs.

    z = W_out y + b_out          W_out (C, D*H), y a column of the top layer's outputs
    softmax cross-entropy:       loss = logsumexp(z) - z[target],  dz = softmax(z) - onehot
    sigmoid + squared error:     o = sigmoid(z), loss = (y - o)^2 / 2,  dz = (o - y) o (1 - o)
    sigmoid + binary CE:         loss = softplus(z) - y z,  dz = o - y

Columns are all T*B time steps (HEAD_ALL) or only the last step's B columns (HEAD_LAST).
The loss is the mean over columns, or the sum (reduction_sum), as is the gradient.
Z and dZ are (C, ncols) row-major; the top layer's outputs are read in place from the
history buffer (see rnnfast/cpu/_kernels.py for its layout).
"""

import numpy as np
from numba import njit

from rnnfast._blas import gemm
from rnnfast.cells._math import vexp, vlog, vsigmoid
from rnnfast.cpu._linalg import lane_sum, rowsum_acc

LOSS_CE, LOSS_MSE, LOSS_BCE = 0, 1, 2
LOSS_CODES = {"cross_entropy": LOSS_CE, "mse": LOSS_MSE, "bce": LOSS_BCE}
HEAD_ALL, HEAD_LAST = 0, 1


@njit(cache=True, error_model="numpy")
def _top_columns(L, D, T, B, H, d, head_mode):
    """Offset in hist of direction d's first head column (row stride TB1)."""
    TB1 = (T + 1) * B
    col0 = 0 if head_mode == 0 else (T - 1) * B
    return ((L - 1) * D + d) * H * TB1 + (B if d == 0 else 0) + col0


@njit(cache=True, error_model="numpy")
def head_forward(
    L,
    D,
    T,
    B,
    H,
    C,
    head_mode,
    theta,  # parameters: W_out (C, D*H) at wo, b_out (C,) at bo (bo < 0: no bias)
    wo,
    bo,
    hist,  # (L*D, H, TB1) forward history
    Z,  # (C, ncols) out: logits
):
    ncols = T * B if head_mode == HEAD_ALL else B
    TB1 = (T + 1) * B
    for c in range(C):
        Z[c * ncols : (c + 1) * ncols] = theta[bo + c] if bo >= 0 else 0.0
    for d in range(D):
        off = _top_columns(L, D, T, B, H, d, head_mode)
        gemm(0, 0, C, ncols, H, 1.0, theta[wo + d * H :], D * H, hist[off:], TB1, 1.0, Z, ncols)


@njit(cache=True, error_model="numpy")
def head_loss(
    loss_kind,
    C,
    ncols,
    reduction_sum,
    Z,  # (C, ncols) logits
    y_class,  # (ncols,) int64 targets for cross-entropy
    y_real,  # (ncols,) targets in [0, 1] for mse / bce
    dZ,  # (C, ncols) out: d loss / d Z
    m,
    s,  # (ncols,) work
):
    """Returns (loss, sum over columns of |target - output|) (the second only for sigmoid)."""
    one = Z.dtype.type(1)
    half = Z.dtype.type(0.5)
    scale = one if reduction_sum else one / ncols
    total = 0.0
    abs_err = 0.0
    if loss_kind == LOSS_CE:
        # every loop below is element-wise over columns, so LLVM vectorises it
        m[:] = Z[:ncols]
        for c in range(1, C):
            zc = Z[c * ncols : (c + 1) * ncols]
            for k in range(ncols):
                m[k] = max(m[k], zc[k])
        s[:] = 0
        for c in range(C):
            zc = Z[c * ncols : (c + 1) * ncols]
            dc = dZ[c * ncols : (c + 1) * ncols]
            for k in range(ncols):
                e = vexp(zc[k] - m[k])
                dc[k] = e
                s[k] += e
        for k in range(ncols):
            m[k] += vlog(s[k])  # logsumexp
            s[k] = scale / s[k]
        for c in range(C):
            dc = dZ[c * ncols : (c + 1) * ncols]
            for k in range(ncols):
                dc[k] *= s[k]
        for k in range(ncols):
            t = y_class[k]
            dZ[t * ncols + k] -= scale
            s[k] = m[k] - Z[t * ncols + k]  # this column's loss
        total = lane_sum(s, ncols, m)
    else:  # one sigmoid output per column (C == 1)
        for k in range(ncols):
            o = vsigmoid(Z[k])
            y = y_real[k]
            abs_err += abs(y - o)
            if loss_kind == LOSS_MSE:
                total += half * (y - o) * (y - o)
                dZ[k] = (o - y) * o * (one - o) * scale
            else:
                z = Z[k]
                # softplus(z) - y z, stable for either sign of z
                total += max(z, 0) + np.log1p(np.exp(-abs(z))) - y * z
                dZ[k] = (o - y) * scale
    return total * (1.0 if reduction_sum else 1.0 / ncols), abs_err


@njit(cache=True, error_model="numpy")
def head_backward(
    L,
    D,
    T,
    B,
    H,
    C,
    head_mode,
    theta,
    wo,
    bo,
    hist,  # (L*D, H, TB1)
    dZ,  # (C, ncols)
    dtheta,  # gradient, accumulated at wo / bo
    dO,  # (D, H, TB) out: gradient at the top layer's outputs
    acc,  # (64,) work
):
    ncols = T * B if head_mode == HEAD_ALL else B
    TB, TB1 = T * B, (T + 1) * B
    col0 = 0 if head_mode == HEAD_ALL else (T - 1) * B
    if head_mode != HEAD_ALL:
        dO[:] = 0
    for d in range(D):
        off = _top_columns(L, D, T, B, H, d, head_mode)
        dW = dtheta[wo + d * H :]
        gemm(0, 1, C, H, ncols, 1.0, dZ, ncols, hist[off:], TB1, 1.0, dW, D * H)
        dst = dO[d * H * TB + col0 :]
        gemm(1, 0, H, ncols, C, 1.0, theta[wo + d * H :], D * H, dZ, ncols, 0.0, dst, TB)
    if bo >= 0:
        rowsum_acc(dtheta[bo:], dZ, C, ncols, ncols, acc)
