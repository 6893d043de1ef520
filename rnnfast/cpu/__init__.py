"""The CPU backend: Numba-compiled kernels behind the contract of rnnfast.api.

The kernels (rnnfast/cpu/_kernels.py) take the public time-major arrays, move them into
feature-major (F, T*B) buffers and back themselves, so a call costs one pack of the
parameters and one compiled call each way. One compiled forward and one backward kernel
serve every cell, depth and direction for a dtype.

Gradients are taken at the parameter values the forward pass used (saved in the cache).
"""

from functools import lru_cache

import numpy as np

from rnnfast.cells import ACT_CODES, CELL_CODES
from rnnfast.cpu._kernels import backward_kernel, forward_kernel
from rnnfast.params import Spec, param_shapes

_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@lru_cache(maxsize=256)
def _layout(spec: Spec):
    """Keys in packing order, their shapes and flat offsets, and the (L*D, 4) offset table."""
    shapes = param_shapes(spec)
    woff = np.full((spec.num_layers * spec.directions, 4), -1, np.int64)
    entries, pos = [], 0
    for key, shape in shapes.items():
        kind, rest = key.rsplit("_l", 1)
        ld = int(rest.split("_")[0]) * spec.directions + rest.endswith("_reverse")
        woff[ld, _KINDS.index(kind)] = pos
        n = int(np.prod(shape))
        entries.append((key, shape, pos, n))
        pos += n
    woff.setflags(write=False)
    return tuple(entries), woff


def forward(spec: Spec, nonlinearity: str, params, x, h0, c0):
    entries, woff = _layout(spec)
    W = np.concatenate([params[key].ravel() for key, *_ in entries])
    lstm = spec.cell == "lstm"
    if not lstm:
        c0 = h0  # unused by the kernel; any array of the right type
    out, h_n, c_n, *buffers = forward_kernel(
        CELL_CODES[spec.cell],
        ACT_CODES[nonlinearity],
        spec.directions,
        spec.hidden_size,
        x,
        W,
        woff,
        h0,
        c0,
    )
    return out, h_n, (c_n if lstm else None), (W, buffers)


def backward(spec: Spec, nonlinearity: str, params, data, dout, dh_n, dc_n):
    entries, woff = _layout(spec)
    W, (X, hist, chist, G, HN, TC) = data
    lstm = spec.cell == "lstm"
    dW, dx, dh0, dc0 = backward_kernel(
        CELL_CODES[spec.cell],
        ACT_CODES[nonlinearity],
        spec.directions,
        spec.hidden_size,
        X,
        W,
        woff,
        hist,
        chist,
        G,
        HN,
        TC,
        dout,
        dh_n,
        dc_n if lstm else dh_n,
    )
    grads = {key: dW[pos : pos + n].reshape(shape) for key, shape, pos, n in entries}
    grads["x"] = dx
    grads["h0"] = dh0
    if lstm:
        grads["c0"] = dc0
    return grads
