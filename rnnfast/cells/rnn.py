"""Vanilla RNN cell, one time step, element-wise part.

    h_t = act(a_t),  a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,  act in {tanh, relu, sigmoid}

Buffers are feature-major with the batch innermost: row j of a (F, ld) buffer holds
feature j, and the B columns starting at a block offset are one time step. The kernels add
the matrix products into G before calling rnn_forward_step, which writes h_t = act(a_t) into
the history only: the output is the saved activation (storing it in G as well cost a third
of the step's memory traffic). Backward reads y = h_t from the history: tanh' = 1 - y^2,
relu' = [y > 0], sigmoid' = y (1 - y).
"""

from numba import njit

from rnnfast.cells import ACT_RELU, ACT_TANH
from rnnfast.cells.vmath import vsigmoid, vtanh


@njit(cache=True, error_model="numpy")
def rnn_forward_step(
    G,  # (H, ldg): pre-activations at column gq (read only)
    hist,  # (H, ldh): h_t written at column hq
    ldg,
    ldh,
    gq,
    hq,
    H,
    B,
    act,
):
    zero = G.dtype.type(0)
    for j in range(H):
        g = G[j * ldg + gq : j * ldg + gq + B]
        h = hist[j * ldh + hq : j * ldh + hq + B]
        if act == ACT_TANH:
            for b in range(B):
                h[b] = vtanh(g[b])
        elif act == ACT_RELU:
            for b in range(B):
                h[b] = max(g[b], zero)
        else:
            for b in range(B):
                h[b] = vsigmoid(g[b])


@njit(cache=True, error_model="numpy")
def rnn_backward_step(
    hist,  # (H, ldh): y_t = h_t at column hq
    dG,  # (H, ldg): d loss / d a_t written at column gq
    dout,  # (H, ldg): gradient arriving at h_t from above, column gq
    dh,  # (H, ldd): in: gradient from step t+1; out: total gradient at h_t
    ldg,
    ldh,
    gq,
    hq,
    H,
    B,
    ldd,  # dh (and dc) row stride: B <= ldd columns
    act,
):
    one, zero = dG.dtype.type(1), dG.dtype.type(0)
    for j in range(H):
        y = hist[j * ldh + hq : j * ldh + hq + B]
        dg = dG[j * ldg + gq : j * ldg + gq + B]
        do = dout[j * ldg + gq : j * ldg + gq + B]
        d = dh[j * ldd : j * ldd + B]
        for b in range(B):
            d[b] += do[b]
        if act == ACT_TANH:
            for b in range(B):
                dg[b] = d[b] * (one - y[b] * y[b])
        elif act == ACT_RELU:
            for b in range(B):
                dg[b] = d[b] if y[b] > zero else zero
        else:
            for b in range(B):
                dg[b] = d[b] * y[b] * (one - y[b])
