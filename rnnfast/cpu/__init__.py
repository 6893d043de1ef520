"""The CPU backend: Numba-compiled kernels behind the contract of rnnfast.api.

This module converts between the public time-major (T, B, F) arrays and the kernels'
feature-major (F, T*B) buffers (see rnnfast/cpu/_kernels.py for the layout), packs the
parameters into one flat array, and unpacks the gradients. One compiled forward and one
backward kernel serve every cell, depth and direction for a dtype.
"""

import numpy as np

from rnnfast.cells import ACT_CODES, CELL_CODES
from rnnfast.cpu._kernels import backward_kernel, forward_kernel
from rnnfast.params import Spec, param_shapes

_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _pack(spec: Spec, params: dict[str, np.ndarray]):
    """Flat parameter vector in param_shapes order, and (L*D, 4) offsets (-1: absent)."""
    shapes = param_shapes(spec)
    LD = spec.num_layers * spec.directions
    woff = np.full((LD, 4), -1, np.int64)
    pos = 0
    for key, shape in shapes.items():
        kind, rest = key.rsplit("_l", 1)
        layer = int(rest.split("_")[0])
        ld = layer * spec.directions + (1 if rest.endswith("_reverse") else 0)
        woff[ld, _KINDS.index(kind)] = pos
        pos += int(np.prod(shape))
    W = np.concatenate([params[k].ravel() for k in shapes])
    return W, woff


def _unpack(spec: Spec, flat: np.ndarray) -> dict[str, np.ndarray]:
    out, pos = {}, 0
    for key, shape in param_shapes(spec).items():
        n = int(np.prod(shape))
        out[key] = flat[pos : pos + n].reshape(shape)
        pos += n
    return out


def _to_fm(a: np.ndarray) -> np.ndarray:
    """(N, B, F) -> flat feature-major (N, F, B)."""
    return np.ascontiguousarray(a.transpose(0, 2, 1)).ravel()


def _from_fm(a: np.ndarray, n: int, f: int, b: int) -> np.ndarray:
    """flat (N, F, B) -> (N, B, F)."""
    return np.ascontiguousarray(a.reshape(n, f, b).transpose(0, 2, 1))


def forward(spec: Spec, nonlinearity: str, params, x, h0, c0):
    T, B, I0 = x.shape
    L, D, H, G = spec.num_layers, spec.directions, spec.hidden_size, spec.gates
    dt = spec.dtype
    cell = CELL_CODES[spec.cell]
    lstm, gru = spec.cell == "lstm", spec.cell == "gru"
    TB, TB1, LD = T * B, (T + 1) * B, L * D
    W, woff = _pack(spec, params)
    X = np.ascontiguousarray(x.reshape(TB, I0).T).ravel()
    hist = np.empty(LD * H * TB1, dt)
    chist = np.empty(LD * H * TB1 if lstm else 1, dt)
    Gb = np.empty(LD * G * H * TB, dt)
    HN = np.empty(LD * H * TB if gru else 1, dt)
    TC = np.empty(LD * H * TB if lstm else 1, dt)
    c0f = _to_fm(c0) if lstm else np.zeros(1, dt)
    forward_kernel(cell, ACT_CODES[nonlinearity], L, D, T, B, I0, H, X, W, woff, _to_fm(h0), c0f,
                   hist, chist, Gb, HN, TC)
    hist4 = hist.reshape(L, D, H, TB1)
    out = np.empty((T, B, D * H), dt)
    for d in range(D):
        off = B if d == 0 else 0
        blk = hist4[L - 1, d, :, off : off + TB].reshape(H, T, B)
        out[:, :, d * H : (d + 1) * H] = blk.transpose(1, 2, 0)

    def final(buf):  # the state after the last step of each (layer, direction)
        b4 = buf.reshape(LD, H, TB1)
        s = np.empty((LD, B, H), dt)
        for ld in range(LD):
            blk = T if ld % D == 0 else 0
            s[ld] = b4[ld, :, blk * B : (blk + 1) * B].T
        return s

    h_n = final(hist)
    c_n = final(chist) if lstm else None
    data = (cell, W, woff, X, hist, chist, Gb, HN, TC)
    return out, h_n, c_n, data


def backward(spec: Spec, nonlinearity: str, params, data, dout, dh_n, dc_n):
    cell, W, woff, X, hist, chist, Gb, HN, TC = data
    L, D, H = spec.num_layers, spec.directions, spec.hidden_size
    T, B, _ = dout.shape
    I0, dt, LD = spec.input_size, spec.dtype, L * D
    lstm = spec.cell == "lstm"
    # the kernels read the packed weights saved by forward; params were checked by the API
    # to have the same structure, and must hold the same values
    W_now, _ = _pack(spec, params)
    if not np.array_equal(W_now, W):
        raise ValueError("params: differ from the values the forward pass used")
    dO = np.ascontiguousarray(dout.reshape(T * B, D, H).transpose(1, 2, 0)).ravel()
    dW = np.zeros_like(W)
    dX = np.empty(I0 * T * B, dt)
    dh0 = np.empty(LD * H * B, dt)
    dc0 = np.empty(LD * H * B if lstm else 1, dt)
    dc_nf = _to_fm(dc_n) if lstm else np.zeros(1, dt)
    backward_kernel(cell, ACT_CODES[nonlinearity], L, D, T, B, I0, H, X, W, woff, hist, chist,
                    Gb, HN, TC, dO, _to_fm(dh_n), dc_nf, dW, dX, dh0, dc0)
    grads = _unpack(spec, dW)
    grads["x"] = np.ascontiguousarray(dX.reshape(I0, T, B).transpose(1, 2, 0))
    grads["h0"] = _from_fm(dh0, LD, H, B)
    if lstm:
        grads["c0"] = _from_fm(dc0, LD, H, B)
    return grads
