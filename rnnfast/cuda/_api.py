"""Kernels and host code behind rnnfast.forward / rnnfast.backward with backend="cuda".

Launch shape (launch_shape): blocks of at most MAX_THREADS threads, each owning `bc` batch
columns with H * bc <= MAX_THREADS items per time step where H allows (bc >= 1). 256 threads
leave each thread up to 255 registers, so the large fused kernels always launch.
"""

import numpy as np
from numba import cuda

from rnnfast.cells import ACT_CODES, CELL_CODES, CELL_LSTM
from rnnfast.cuda._layers import (
    S_DO,
    S_DX,
    S_HIST,
    S_X,
    backward_layers,
    final_state,
    forward_layers,
    layout,
    weight_grads,
)
from rnnfast.params import packed_layout

MAX_THREADS = 256
WGRAD_THREADS = 128


def launch_shape(H: int, B: int) -> tuple[int, int, int]:
    """(blocks, threads per block, batch columns per block)."""
    bc = max(1, min(B, MAX_THREADS // H))
    threads = min(MAX_THREADS, (H * bc + 31) // 32 * 32)
    return (B + bc - 1) // bc, threads, bc


@cuda.jit(cache=True)
def forward_kernel(
    cell, act, L, D, T, B, I0, H, bc,
    W,  # (n,) the parameters, packed (rnnfast.params.packed_layout)
    woff,  # (L*D, 4) int64 offsets of w_ih, w_hh, b_ih, b_hh in W (-1: no bias)
    h0, c0,  # (L*D, B, H)
    lens,  # (B,) int64 valid steps of each column
    buf,  # (off[-1],) the flat buffers
    off,  # (len(SEGMENTS) + 1,) int64
    h_n, c_n,  # (L*D, B, H) out
):  # fmt: skip
    b0 = cuda.blockIdx.x * bc
    b1 = min(B, b0 + bc)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    forward_layers(tid, nt, cell, act, L, D, T, B, I0, H, b0, b1, W, woff, h0, c0, lens, buf,
                   off)  # fmt: skip
    final_state(tid, nt, cell, L, D, T, B, H, b0, b1, buf, off, h_n, c_n)


@cuda.jit(cache=True)
def backward_kernel(
    cell, act, L, D, T, B, I0, H, bc,
    W,  # (n,)
    woff,  # (L*D, 4) int64
    dh_n, dc_n,  # (L*D, B, H) the final state's gradient
    dh0, dc0,  # (L*D, B, H) out
    lens,  # (B,) int64
    buf,  # (off[-1],) forward's buffers, dO filled
    off,  # (len(SEGMENTS) + 1,) int64
):  # fmt: skip
    b0 = cuda.blockIdx.x * bc
    b1 = min(B, b0 + bc)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    backward_layers(tid, nt, cell, act, L, D, T, B, I0, H, b0, b1, W, woff, dh_n, dc_n, dh0,
                    dc0, lens, buf, off, True)  # fmt: skip


@cuda.jit(cache=True)
def weight_grad_kernel(
    cell, L, D, T, B, I0, H,
    W,  # (n,)
    woff,  # (L*D, 4) int64
    buf,  # (off[-1],) after backward_kernel
    off,  # (len(SEGMENTS) + 1,) int64
    dW,  # (n,) out, packed like W
):  # fmt: skip
    weight_grads(cuda.grid(1), cuda.gridsize(1), cell, L, D, T, B, I0, H, W, woff, buf, off, dW)


class Saved:
    """forward's device arrays (lens: the columns' lengths), kept for backward."""

    __slots__ = ("W", "woff", "buf", "off", "d_off", "dims", "lens", "batch_first")

    def __init__(self, W, woff, buf, off, d_off, dims, lens, batch_first) -> None:
        self.W, self.woff, self.buf, self.off, self.d_off = W, woff, buf, off, d_off
        self.dims, self.lens, self.batch_first = dims, lens, batch_first


def _segment(buf, off: np.ndarray, k: int, n: int):
    return buf[int(off[k]) : int(off[k]) + n]


def forward(spec, nonlinearity: str, params, x: np.ndarray, h0: np.ndarray, c0, lengths=None,
            batch_first: bool = False):  # fmt: skip
    """rnnfast.api's backend forward; x (T, B, I), or (B, T, I) with batch_first."""
    entries, woff = packed_layout(spec)
    if batch_first:  # the device buffers are time-major; the copy to the device is made anyway
        x = x.transpose(1, 0, 2)
    cell, act = CELL_CODES[spec.cell], ACT_CODES[nonlinearity]
    T, B, I0 = x.shape
    L, D, H = spec.num_layers, spec.directions, spec.hidden_size
    TB, TB1, dt = T * B, (T + 1) * B, spec.dtype
    off = layout(cell, L, D, T, B, I0, H)
    W = cuda.to_device(np.concatenate([params[key].ravel() for key, *_ in entries]))
    d_woff = cuda.to_device(woff)
    d_off = cuda.to_device(off)
    buf = cuda.device_array(int(off[-1]), dt)
    _segment(buf, off, S_X, I0 * TB).copy_to_device(
        np.ascontiguousarray(x.transpose(2, 0, 1)).reshape(-1)
    )
    lstm = cell == CELL_LSTM
    d_h0 = cuda.to_device(h0)
    d_c0 = cuda.to_device(c0) if lstm else d_h0
    # every column's length, T without lengths (no step is then padded: the same bits as before)
    d_lens = cuda.to_device(np.full(B, T, np.int64) if lengths is None else lengths)
    h_n = cuda.device_array((L * D, B, H), dt)
    c_n = cuda.device_array((L * D, B, H), dt) if lstm else h_n
    blocks, threads, bc = launch_shape(H, B)
    forward_kernel[blocks, threads](cell, act, L, D, T, B, I0, H, bc, W, d_woff, d_h0, d_c0,
                                    d_lens, buf, d_off, h_n, c_n)  # fmt: skip
    hist = _segment(buf, off, S_HIST, L * D * H * TB1).copy_to_host()
    hist = hist.reshape(L, D, H, T + 1, B)[L - 1]  # (D, H, T+1, B)
    out = np.empty((T, B, D * H), dt)
    for d in range(D):
        blocks_ = slice(1, T + 1) if d == 0 else slice(0, T)
        out[:, :, d * H : (d + 1) * H] = hist[d][:, blocks_].transpose(1, 2, 0)
    if lengths is not None:  # hist holds the carried state at padded steps; out is zero there
        out[np.arange(T)[:, None] >= lengths[None, :]] = 0
    if batch_first:
        out = np.ascontiguousarray(out.transpose(1, 0, 2))
    saved = Saved(W, d_woff, buf, off, d_off, (cell, act, L, D, T, B, I0, H), d_lens,
                  batch_first)  # fmt: skip
    return out, h_n.copy_to_host(), (c_n.copy_to_host() if lstm else None), saved


def backward(spec, nonlinearity: str, params, data: Saved, dout, dh_n, dc_n):
    entries, _ = packed_layout(spec)
    cell, act, L, D, T, B, I0, H = data.dims
    TB, dt = T * B, spec.dtype
    off, buf = data.off, data.buf
    if data.batch_first:
        dout = dout.transpose(1, 0, 2)
    dO = dout.reshape(T, B, D, H).transpose(2, 3, 0, 1)  # (D, H, T, B)
    _segment(buf, off, S_DO, D * H * TB).copy_to_device(np.ascontiguousarray(dO).reshape(-1))
    lstm = cell == CELL_LSTM
    d_dh_n = cuda.to_device(dh_n)
    d_dc_n = cuda.to_device(dc_n) if lstm else d_dh_n
    dh0 = cuda.device_array((L * D, B, H), dt)
    dc0 = cuda.device_array((L * D, B, H), dt) if lstm else dh0
    blocks, threads, bc = launch_shape(H, B)
    backward_kernel[blocks, threads](cell, act, L, D, T, B, I0, H, bc, data.W, data.woff, d_dh_n,
                                     d_dc_n, dh0, dc0, data.lens, buf, data.d_off)  # fmt: skip
    dW = cuda.device_array(data.W.shape[0], dt)
    n_blocks = min(1024, (data.W.shape[0] + WGRAD_THREADS - 1) // WGRAD_THREADS)
    weight_grad_kernel[n_blocks, WGRAD_THREADS](cell, L, D, T, B, I0, H, data.W, data.woff, buf,
                                                data.d_off, dW)  # fmt: skip
    dW = dW.copy_to_host()
    grads = {key: dW[pos : pos + n].reshape(shape) for key, shape, pos, n in entries}
    dX = _segment(buf, off, S_DX, I0 * TB).copy_to_host()
    dX = dX.reshape(I0, T, B)  # zero at padded steps: their gate gradients are zero
    grads["x"] = np.ascontiguousarray(dX.transpose(2, 1, 0) if data.batch_first
                                      else dX.transpose(1, 2, 0))  # fmt: skip
    grads["h0"] = dh0.copy_to_host()
    if lstm:
        grads["c0"] = dc0.copy_to_host()
    return grads
