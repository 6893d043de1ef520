"""LSTM cell, one time step, element-wise part (PyTorch's gate order i, f, g, o).

    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

G holds the four pre-activation row blocks (rows j, H+j, 2H+j, 3H+j for unit j), replaced in
place by the activations; tanh(c_t) is saved in TC. Backward, with dh the total gradient at
h_t and dc the one arriving at c_t from step t+1:

    dc  = dc + dh * o * (1 - tanh(c_t)^2)
    da_o = dh * tanh(c_t) * o (1 - o);   da_i = dc * g * i (1 - i)
    da_g = dc * i * (1 - g^2);            da_f = dc * c_{t-1} * f (1 - f);   dc_{t-1} = dc * f

Whole vectors of columns go through rnnfast/cells/simd.py (the same arithmetic written as
SIMD code, bit-identical); the scalar loops here take the columns left over. Their loops are
split so that each touches few arrays (one loop over nine arrays did not vectorise).
"""

from numba import njit

from rnnfast.cells.simd import lstm_backward_vector, lstm_forward_vector, simd_lanes
from rnnfast.cells.vmath import vsigmoid, vtanh


@njit(cache=True, error_model="numpy")
def lstm_forward_step(
    G,  # (4H, ldg): pre-activations at column gq -> activations
    TC,  # (H, ldg): tanh(c_t) written at column gq
    hist,  # (H, ldh): h_t written at column hq
    chist,  # (H, ldh): c_{t-1} read at column hp, c_t written at column hq
    ldg,
    ldh,
    gq,
    hp,
    hq,
    H,
    B,
):
    """Columns [gq, gq + B) of G and TC, [hq, hq + B) of hist and chist (c_{t-1} at hp)."""
    L = simd_lanes(G)
    nv = B // L * L
    for j in range(H):
        for b in range(0, nv, L):
            lstm_forward_vector(G, TC, hist, chist, j * ldg + gq + b, H * ldg, j * ldh + hq + b,
                                j * ldh + hp + b)  # fmt: skip
    if nv < B:
        _forward_columns(G, TC, hist, chist, ldg, ldh, gq + nv, hp + nv, hq + nv, H, B - nv)


@njit(cache=True, error_model="numpy")
def _forward_columns(G, TC, hist, chist, ldg, ldh, gq, hp, hq, H, B):
    """lstm_forward_step by scalar loops."""
    for j in range(H):
        gi = G[j * ldg + gq : j * ldg + gq + B]
        gf = G[(H + j) * ldg + gq : (H + j) * ldg + gq + B]
        gg = G[(2 * H + j) * ldg + gq : (2 * H + j) * ldg + gq + B]
        go = G[(3 * H + j) * ldg + gq : (3 * H + j) * ldg + gq + B]
        for b in range(B):
            gi[b] = vsigmoid(gi[b])
        for b in range(B):
            gf[b] = vsigmoid(gf[b])
        for b in range(B):
            gg[b] = vtanh(gg[b])
        for b in range(B):
            go[b] = vsigmoid(go[b])
        cp = chist[j * ldh + hp : j * ldh + hp + B]
        c = chist[j * ldh + hq : j * ldh + hq + B]
        for b in range(B):
            c[b] = gf[b] * cp[b] + gi[b] * gg[b]
        tc = TC[j * ldg + gq : j * ldg + gq + B]
        h = hist[j * ldh + hq : j * ldh + hq + B]
        for b in range(B):
            tc[b] = vtanh(c[b])
        for b in range(B):
            h[b] = go[b] * tc[b]


@njit(cache=True, error_model="numpy")
def lstm_backward_step(
    G,  # (4H, ldg): saved activations i, f, g, o at column gq
    TC,  # (H, ldg): saved tanh(c_t) at column gq
    chist,  # (H, ldh): c_{t-1} at column hp
    dG,  # (4H, ldg): d loss / d pre-activations written at column gq
    dout,  # (H, ldg): gradient arriving at h_t from above, column gq
    dh,  # (H, ldd): in: gradient from step t+1; out: total gradient at h_t
    dc,  # (H, ldd): in: gradient at c_t from step t+1; out: gradient at c_{t-1}
    ldg,
    ldh,
    gq,
    hp,
    H,
    B,
    ldd,  # dh (and dc) row stride: B <= ldd columns
):
    """Columns [gq, gq + B) of G, TC, dG and dout, [hp, hp + B) of chist, [0, B) of dh, dc."""
    L = simd_lanes(G)
    nv = B // L * L
    for j in range(H):
        for b in range(0, nv, L):
            lstm_backward_vector(G, TC, chist, dG, dout, dh, dc, j * ldg + gq + b, H * ldg,
                                 j * ldd + b, j * ldh + hp + b)  # fmt: skip
    if nv < B:
        _backward_columns(G, TC, chist, dG, dout, dh[nv:], dc[nv:], ldg, ldh, gq + nv, hp + nv,
                          H, B - nv, ldd)  # fmt: skip


@njit(cache=True, error_model="numpy")
def _backward_columns(G, TC, chist, dG, dout, dh, dc, ldg, ldh, gq, hp, H, B, ldd):
    """lstm_backward_step by scalar loops."""
    one = G.dtype.type(1)
    for j in range(H):
        r = j * ldg + gq
        d = dh[j * ldd : j * ldd + B]
        dcj = dc[j * ldd : j * ldd + B]
        do = dout[r : r + B]
        for b in range(B):
            d[b] += do[b]
        tc = TC[r : r + B]
        go = G[3 * H * ldg + r : 3 * H * ldg + r + B]
        dgo = dG[3 * H * ldg + r : 3 * H * ldg + r + B]
        for b in range(B):
            dgo[b] = d[b] * tc[b] * go[b] * (one - go[b])
            dcj[b] += d[b] * go[b] * (one - tc[b] * tc[b])
        gi = G[r : r + B]
        gg = G[2 * H * ldg + r : 2 * H * ldg + r + B]
        dgi = dG[r : r + B]
        dgg = dG[2 * H * ldg + r : 2 * H * ldg + r + B]
        for b in range(B):
            dgi[b] = dcj[b] * gg[b] * gi[b] * (one - gi[b])
            dgg[b] = dcj[b] * gi[b] * (one - gg[b] * gg[b])
        gf = G[H * ldg + r : H * ldg + r + B]
        dgf = dG[H * ldg + r : H * ldg + r + B]
        cp = chist[j * ldh + hp : j * ldh + hp + B]
        for b in range(B):
            dgf[b] = dcj[b] * cp[b] * gf[b] * (one - gf[b])
            dcj[b] *= gf[b]
