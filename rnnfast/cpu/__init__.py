"""The CPU backend: Numba-compiled kernels behind the contract of rnnfast.api.

The kernels (rnnfast/cpu/_kernels.py) take the public time-major arrays, move them into
feature-major (F, T*B) buffers and back themselves, so a call costs one pack of the
parameters and one compiled call each way. One compiled forward and one backward kernel
serve every cell, depth and direction for a dtype. Work buffers come from a pool
(rnnfast/cpu/_workspace.py). Large enough batches run as chunks on Numba's threads, with BLAS
on one thread meanwhile (rnnfast/cpu/_chunks.py; the policy and its measured crossover are in
rnnfast/cpu/_split.py); backward uses the chunks its forward used.

Gradients are taken at the parameter values the forward pass used (saved in the cache).

Lengths: the kernels want each batch chunk's columns ordered by descending length (at step t
the live columns are then the first k_t), and the chunks balanced (rnnfast.cpu._chunks.
dealt_ranks). A batch in another order is permuted here, one copy of x (and of
dout) on the way in and of out (dx) on the way out, as pack_padded_sequence(enforce_sorted=
False) sorts; a batch already in order (and lengths=None) costs nothing.
"""

from functools import lru_cache

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS the kernels call, so thread

#                                   limits, e.g. threadpoolctl, can see it before the first call)
from rnnfast._cacheguard import ensure_fresh

ensure_fresh()  # before the kernels load from Numba's cache
# Start Numba's threading layer before any kernel loads from the cache. A cached function
# that calls a parallel one (forward_kernel_chunks, train_updates, ...) but was compiled in a
# process that had loaded the parallel callee from the cache lacks Numba's reload hook, so
# loaded first in a fresh process its calls into the threading layer resolve to address 0
# (a segfault, seen after the test suite's worker processes filled the cache).
numba.get_num_threads()

from rnnfast.cells import ACT_CODES, CELL_CODES  # noqa: E402
from rnnfast.cpu._chunks import (  # noqa: E402
    backward_kernel_chunks,
    chunk_sizes,
    dealt_ranks,
    forward_kernel_chunks,
)
from rnnfast.cpu._kernels import backward_kernel, buffer_offsets, forward_kernel  # noqa: E402
from rnnfast.cpu._split import one_blas_thread, parallel_ok, split_chunks  # noqa: E402
from rnnfast.cpu._threads import choice_for  # noqa: E402
from rnnfast.cpu._workspace import POOL  # noqa: E402
from rnnfast.params import Spec, packed_layout  # noqa: E402

_ALL_T = np.zeros(0, np.int64)  # the kernels' "every column has T steps"


class _Saved:
    """What forward keeps for backward; its buffers go back to the pool when it dies."""

    __slots__ = ("W", "buf", "nchunks", "lens", "perm", "bf")

    def __init__(self, W: np.ndarray, buf: np.ndarray, nchunks: int, lens: np.ndarray,
                 perm: np.ndarray | None, bf: bool) -> None:  # fmt: skip
        self.W, self.buf, self.nchunks = W, buf, nchunks
        self.lens, self.perm, self.bf = lens, perm, bf

    def __del__(self) -> None:  # cheaper than weakref.finalize (about 3 us a forward call)
        POOL.give(self.buf)


@lru_cache(maxsize=256)
def _sizes(spec: Spec, T: int, B: int, nchunks: int) -> tuple[int, int]:
    """Sizes of forward's saved buffer and backward's scratch buffer."""
    args = (CELL_CODES[spec.cell], spec.num_layers, spec.directions, T, B, spec.input_size,
            spec.hidden_size)  # fmt: skip
    if nchunks > 1:
        return tuple(int(n) for n in chunk_sizes(*args, nchunks))
    so, co = buffer_offsets(*args)
    return int(so[-1]), int(co[-1])


def num_chunks(spec: Spec, T: int, B: int, nchunks: int | None = None) -> int:
    """Batch chunks a forward pass over (T, B) runs in parallel: nchunks (at most B; 1 in a
    child forked from a process that used OpenMP), or by default the policy of
    rnnfast.cpu._split.split_chunks."""
    if nchunks is None:
        return split_chunks(spec.cell, spec.hidden_size, B, T)
    if isinstance(nchunks, bool) or not isinstance(nchunks, int) or nchunks < 1:
        raise ValueError(f"nchunks: expected an integer >= 1 or None, got {nchunks!r}")
    return min(nchunks, B) if parallel_ok() else 1


def _by_length(lengths: np.ndarray | None, nc: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(the columns' lengths, the permutation that puts the batch in the kernels' order, or
    None if it is in order): sorted descending, dealt to the nc chunks in turn."""
    if lengths is None:
        return _ALL_T, None
    if nc == 1 and (lengths[:-1] >= lengths[1:]).all():
        return lengths, None
    perm = np.argsort(-lengths, kind="stable")
    if nc > 1:
        perm = perm[dealt_ranks(len(lengths), nc)]
    return np.ascontiguousarray(lengths[perm]), perm


def _permuted(a: np.ndarray, perm: np.ndarray | None, axis: int) -> np.ndarray:
    """a with its batch axis in perm's order (a itself when perm is None)."""
    return a if perm is None else np.ascontiguousarray(np.take(a, perm, axis=axis))


def _restored(a: np.ndarray, perm: np.ndarray | None, axis: int) -> np.ndarray:
    """The inverse of _permuted: the caller's batch order again (a take with the inverse
    permutation: a scattering assignment measured 2.5x slower)."""
    if perm is None:
        return a
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return np.take(a, inverse, axis=axis)


def forward(spec: Spec, nonlinearity: str, params, x, h0, c0, lengths=None,
            batch_first: bool = False, *, nchunks: int | None = None):  # fmt: skip
    entries, woff = packed_layout(spec)
    W = np.concatenate([params[key].ravel() for key, *_ in entries])
    lstm = spec.cell == "lstm"
    T, B = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    nc = num_chunks(spec, T, B, nchunks)
    lens, perm = _by_length(lengths, nc)
    bax = 0 if batch_first else 1  # x's batch axis
    x, h0 = _permuted(x, perm, bax), _permuted(h0, perm, 1)
    c0 = _permuted(c0, perm, 1) if lstm else h0
    saved = POOL.take(_sizes(spec, T, B, nc)[0], spec.dtype)
    args = (CELL_CODES[spec.cell], ACT_CODES[nonlinearity], spec.directions, spec.hidden_size,
            x, W, woff, h0, c0, saved, lens, batch_first)  # fmt: skip
    try:
        if nc == 1:
            out, h_n, c_n = forward_kernel(*args)
        else:
            with one_blas_thread():
                pace = choice_for((spec, nonlinearity, T, B, nc))
                out, h_n, c_n = pace.run(forward_kernel_chunks, *args, nc)
    except BaseException:
        POOL.give(saved)
        raise
    out, h_n = _restored(out, perm, bax), _restored(h_n, perm, 1)
    c_n = _restored(c_n, perm, 1) if lstm else None
    return out, h_n, c_n, _Saved(W, saved, nc, lens, perm, batch_first)


def backward(spec: Spec, nonlinearity: str, params, data: _Saved, dout, dh_n, dc_n):
    entries, woff = packed_layout(spec)
    lstm = spec.cell == "lstm"
    bf, perm = data.bf, data.perm
    T, B = (dout.shape[1], dout.shape[0]) if bf else dout.shape[:2]
    bax = 0 if bf else 1
    dout, dh_n = _permuted(dout, perm, bax), _permuted(dh_n, perm, 1)
    dc_n = _permuted(dc_n, perm, 1) if lstm else dh_n
    nc = data.nchunks  # the saved buffers are laid out for forward's chunks
    scratch = POOL.take(_sizes(spec, T, B, nc)[1], spec.dtype)
    args = (CELL_CODES[spec.cell], ACT_CODES[nonlinearity], spec.directions, spec.hidden_size,
            data.W, woff, data.buf, dout, dh_n, dc_n, spec.input_size, scratch, data.lens,
            bf)  # fmt: skip
    try:
        if nc == 1:
            dW, dx, dh0, dc0 = backward_kernel(*args)
        else:
            with one_blas_thread():
                pace = choice_for((spec, nonlinearity, T, B, nc))
                dW, dx, dh0, dc0 = pace.run(backward_kernel_chunks, *args, nc)
    finally:
        POOL.give(scratch)
    grads = {key: dW[pos : pos + n].reshape(shape) for key, shape, pos, n in entries}
    grads["x"] = _restored(dx, perm, bax)
    grads["h0"] = _restored(dh0, perm, 1)
    if lstm:
        grads["c0"] = _restored(dc0, perm, 1)
    return grads
