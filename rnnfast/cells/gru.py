"""GRU cell, one time step, element-wise part (PyTorch's gates r, z, n).

    r = sigmoid(a_r),  z = sigmoid(a_z),  hn = W_hn h_{t-1} + b_hn
    n = tanh(a_n + r * hn),   a_n = W_in x_t + b_in
    h_t = (1 - z) * n + z * h_{t-1}

The kernels add W_ih x + biases and W_h{r,z} h_{t-1} into G's r and z rows, and store hn in
HN (H rows). Backward, with dh the total gradient at h_t:

    dn = dh (1 - z) (1 - n^2)         -> da_n, and d hn = dn * r
    da_z = dh (h_{t-1} - n) z (1 - z);  da_r = dn * hn * r (1 - r)
    dh_{t-1} = dh * z + W_hr^T da_r + W_hz^T da_z + W_hn^T d hn   (the products in the kernel)
"""

from numba import njit

from rnnfast.cells.vmath import vsigmoid, vtanh


@njit(cache=True, error_model="numpy")
def gru_forward_step(
    G,  # (3H, ldg): pre-activations at column gq -> activations r, z, n
    HN,  # (H, ldg): hn = W_hn h_{t-1} + b_hn at column gq
    hist,  # (H, ldh): h_{t-1} at column hp, h_t written at column hq
    ldg,
    ldh,
    gq,
    hp,
    hq,
    H,
    B,
):
    for j in range(H):
        r = j * ldg + gq
        gr = G[r : r + B]
        gz = G[H * ldg + r : H * ldg + r + B]
        gn = G[2 * H * ldg + r : 2 * H * ldg + r + B]
        hn = HN[r : r + B]
        for b in range(B):
            gr[b] = vsigmoid(gr[b])
        for b in range(B):
            gz[b] = vsigmoid(gz[b])
        for b in range(B):
            gn[b] = vtanh(gn[b] + gr[b] * hn[b])
        hp_ = hist[j * ldh + hp : j * ldh + hp + B]
        h = hist[j * ldh + hq : j * ldh + hq + B]
        for b in range(B):
            h[b] = gn[b] + gz[b] * (hp_[b] - gn[b])


@njit(cache=True, error_model="numpy")
def gru_backward_step(
    G,  # (3H, ldg): saved activations r, z, n at column gq
    HN,  # (H, ldg): saved hn at column gq
    hist,  # (H, ldh): h_{t-1} at column hp
    dG,  # (3H, ldg): d loss / d pre-activations written at column gq
    dHN,  # (H, ldg): d loss / d hn written at column gq
    dout,  # (H, ldg): gradient arriving at h_t from above, column gq
    dh,  # (H, ldd): in: gradient from step t+1; out: dh * z (the direct path to h_{t-1})
    ldg,
    ldh,
    gq,
    hp,
    H,
    B,
    ldd,  # dh (and dc) row stride: B <= ldd columns
):
    one = G.dtype.type(1)
    for j in range(H):
        r = j * ldg + gq
        d = dh[j * ldd : j * ldd + B]
        do = dout[r : r + B]
        for b in range(B):
            d[b] += do[b]
        gz = G[H * ldg + r : H * ldg + r + B]
        gn = G[2 * H * ldg + r : 2 * H * ldg + r + B]
        hp_ = hist[j * ldh + hp : j * ldh + hp + B]
        dgz = dG[H * ldg + r : H * ldg + r + B]
        dgn = dG[2 * H * ldg + r : 2 * H * ldg + r + B]
        for b in range(B):
            dgz[b] = d[b] * (hp_[b] - gn[b]) * gz[b] * (one - gz[b])
            dgn[b] = d[b] * (one - gz[b]) * (one - gn[b] * gn[b])
        gr = G[r : r + B]
        hn = HN[r : r + B]
        dgr = dG[r : r + B]
        dhn = dHN[r : r + B]
        for b in range(B):
            dhn[b] = dgn[b] * gr[b]
            dgr[b] = dgn[b] * hn[b] * gr[b] * (one - gr[b])
        for b in range(B):
            d[b] *= gz[b]
