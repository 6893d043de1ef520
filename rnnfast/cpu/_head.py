"""Output head and losses on the top layer's feature-major outputs.

    z = W_out y + b_out          W_out (C, D*H), y a column of the top layer's outputs
    classes (softmax CE):        loss = logsumexp(z) - z[target],  dz = softmax(z) - onehot
    reals (mean squared error):  loss = sum_c (z_c - y_c)^2 / C,  dz = 2 (z - y) / C
    sigmoid + squared error:     o = sigmoid(z), loss = (y - o)^2 / 2,  dz = (o - y) o (1 - o)

Columns are all T*B time steps (HEAD_ALL) or one per sequence (HEAD_LAST): the forward
direction's output at the last step and, for a bidirectional model, the reverse direction's
output at step 0 (its final state), so the head sees h_n as a PyTorch user takes it.
The loss is the mean over columns (and over the C outputs of reals, as torch.nn.MSELoss), or
the sum (reduction_sum), as is the gradient. With lengths, a per-step column at a padded step
(t >= lengths[b]) counts for nothing: zero loss and gradient, the mean over real steps only.
Z and dZ are (C, ncols) row-major; the top layer's outputs are read in place from the
history buffer (see rnnfast/cpu/_kernels.py for its layout).
"""

from numba import njit

from rnnfast._blas import gemm
from rnnfast.cells.vmath import vexp, vlog, vsigmoid
from rnnfast.codes import HEAD_ALL, TGT_CLASSES, TGT_REALS
from rnnfast.cpu._linalg import lane_sum, rowsum_acc


@njit(cache=True, error_model="numpy")
def _top_columns(L, D, T, B, H, d, head_mode):
    """Offset in hist of direction d's first head column (row stride TB1)."""
    TB1 = (T + 1) * B
    return ((L - 1) * D + d) * H * TB1 + (B if d == 0 else 0) + _first_column(T, B, d, head_mode)


@njit(cache=True, error_model="numpy")
def _first_column(T, B, d, head_mode):
    """Time-major column of direction d's first head column: the last step forward, step 0
    in reverse (HEAD_LAST), else 0."""
    return (T - 1) * B if head_mode != HEAD_ALL and d == 0 else 0


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
    loss_kind,  # TGT_CLASSES, TGT_REALS or TGT_SIGMOID
    C,
    ncols,
    reduction_sum,
    Z,  # (C, ncols) logits
    y_class,  # (ncols,) int64 targets for cross-entropy
    y_real,  # (C, ncols) real targets (in [0, 1] for the sigmoid)
    dZ,  # (C, ncols) out: d loss / d Z
    m,
    s,  # (ncols,) work
    lens,  # (B,) the columns' lengths (any order), or size 0 (all T)
    B,
):
    """Returns (loss, sum over columns of |target - output|) (the second only for sigmoid)."""
    one = Z.dtype.type(1)
    half = Z.dtype.type(0.5)
    T = ncols // B
    masked = lens.size > 0 and T > 1  # per-step columns with padded steps among them
    n = ncols
    if masked:
        n = 0
        for b in range(B):
            n += lens[b]
    scale = one if reduction_sum else one / n
    total = 0.0
    abs_err = 0.0
    if loss_kind == TGT_CLASSES:
        # every loop below is element-wise over columns, so LLVM vectorises it
        for k in range(ncols):
            m[k] = Z[k]
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
        if masked:
            for k in range(ncols):
                if k // B >= lens[k % B]:
                    s[k] = 0
                    for c in range(C):
                        dZ[c * ncols + k] = 0
        total = lane_sum(s, ncols, m)
    elif loss_kind == TGT_REALS:
        two = Z.dtype.type(2) * scale / C
        for e in range(C * ncols):
            k = e % ncols
            if masked and k // B >= lens[k % B]:
                dZ[e] = 0
                continue
            diff = Z[e] - y_real[e]
            abs_err += abs(diff)
            total += diff * diff
            dZ[e] = two * diff
        total /= C
    else:  # one sigmoid output per column (C == 1), squared error / 2
        for k in range(ncols):
            if masked and k // B >= lens[k % B]:
                dZ[k] = 0
                continue
            o = vsigmoid(Z[k])
            y = y_real[k]
            abs_err += abs(y - o)
            total += half * (y - o) * (y - o)
            dZ[k] = (o - y) * o * (one - o) * scale
    return total * (1.0 if reduction_sum else 1.0 / n), abs_err


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
    if head_mode != HEAD_ALL:
        dO[:] = 0
    for d in range(D):
        off = _top_columns(L, D, T, B, H, d, head_mode)
        dW = dtheta[wo + d * H :]
        gemm(0, 1, C, H, ncols, 1.0, dZ, ncols, hist[off:], TB1, 1.0, dW, D * H)
        dst = dO[d * H * TB + _first_column(T, B, d, head_mode) :]
        gemm(1, 0, H, ncols, C, 1.0, theta[wo + d * H :], D * H, dZ, ncols, 0.0, dst, TB)
    if bo >= 0:
        rowsum_acc(dtheta[bo:], dZ, C, ncols, ncols, acc)
