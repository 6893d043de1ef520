"""Public forward/backward: validate, then hand contiguous arrays to a backend.

    out, state, cache = forward(cell, params, x, state0=None, *, nonlinearity="tanh",
                                backend="cpu", lengths=None, batch_first=False)
    grads = backward(cell, params, cache, dout, dstate=None, *, backend="cpu")

x (T, B, I) time-major, or (B, T, I) with batch_first=True; out (T, B, D*H) (or (B, T, D*H));
state h_n (L*D, B, H), or (h_n, c_n) for lstm, exactly as torch.nn.RNN/LSTM/GRU. grads holds
the gradient of sum(out * dout) + sum(state * dstate) for every parameter key and for "x"
(in x's layout), "h0" (and "c0").

lengths (B,) integers in [1, T] mark right-padded sequences, with the semantics of PyTorch's
pack_padded_sequence(x, lengths, enforce_sorted=False) -> module -> pad_packed_sequence: out is
zero at t >= lengths[b]; h_n (c_n) holds each sequence's state after its own last step; the
reverse direction of a bidirectional layer starts at each sequence's own last step; dout at
padded positions is ignored and the gradient reaching padded x is zero. lengths=None: every
sequence has T steps.

A backend module provides
    forward(spec, nonlinearity, params, x, h0, c0, lengths, batch_first)
        -> (out, h_n, c_n | None, data)
    backward(spec, nonlinearity, params, data, dout, dh_n, dc_n) -> grads
and receives only validated, C-contiguous arrays of the parameters' dtype, x, out, dout and
grads["x"] in the caller's layout (batch_first); h0/c0 and dh_n/dc_n are always arrays (zeros
when the caller passed None), c0/dc_n None except for lstm; lengths None or int64 (B,). What
backward needs of lengths and layout, the backend keeps in its data.
"""

from importlib import import_module
from typing import Any

import numpy as np

from rnnfast._finite import all_finite
from rnnfast.params import NONLINEARITIES, Spec, check_cell, infer_spec

BACKENDS = {"cpu": "rnnfast.cpu", "reference": "rnnfast.reference", "cuda": "rnnfast.cuda"}


class Cache:
    """What forward saved for backward. Treat as opaque; it is tied to one backend.
    (A plain class with slots: a frozen dataclass cost about 1 us per forward call.)"""

    __slots__ = ("cell", "nonlinearity", "spec", "backend", "T", "B", "batch_first", "data")

    def __init__(self, cell: str, nonlinearity: str, spec: Spec, backend: str, T: int, B: int,
                 batch_first: bool, data: Any) -> None:  # fmt: skip
        self.cell, self.nonlinearity, self.spec, self.backend = cell, nonlinearity, spec, backend
        self.T, self.B, self.batch_first, self.data = T, B, batch_first, data

    def __repr__(self) -> str:
        return (f"Cache(cell={self.cell!r}, nonlinearity={self.nonlinearity!r}, "
                f"backend={self.backend!r}, T={self.T}, B={self.B}, "
                f"batch_first={self.batch_first})")  # fmt: skip


_LOADED: dict[str, Any] = {}  # backend name -> its imported module


def _backend(backend: object):
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {sorted(BACKENDS)}, got {backend!r}")
    module = _LOADED.get(backend)
    if module is None:  # import_module costs about 0.5 us even for a loaded module
        module = _LOADED[backend] = import_module(BACKENDS[backend])
    return module


def _check_nonlinearity(cell: str, nonlinearity: object) -> str:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"nonlinearity: expected one of {list(NONLINEARITIES)}, got {nonlinearity!r}"
        )
    if cell != "rnn" and nonlinearity != "tanh":
        raise ValueError(
            f"nonlinearity: {cell} has fixed activations, expected 'tanh', got {nonlinearity!r}"
        )
    return nonlinearity  # type: ignore[return-value]


def _check_array(name: str, a: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ValueError(
            f"{name}: expected a numpy array of shape {shape} and dtype {dtype}, "
            f"got {type(a).__name__}"
        )
    if a.ndim != len(shape):
        raise ValueError(
            f"{name}: expected a {len(shape)}-D array of shape {shape}, "
            f"got {a.ndim}-D shape {a.shape}"
        )
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if a.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype} (the parameters' dtype), got {a.dtype}")
    a = np.ascontiguousarray(a)
    if not all_finite(a):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def _state_pair(cell: str, name: str, state: object, shape: tuple[int, ...], dtype: np.dtype):
    """Split state0/dstate into (h, c) arrays; zeros for None."""
    if state is None:
        h = np.zeros(shape, dtype)
        return h, (np.zeros(shape, dtype) if cell == "lstm" else None)
    if cell == "lstm":
        if not isinstance(state, tuple | list) or len(state) != 2:
            got = type(state).__name__
            if isinstance(state, tuple | list):
                got += f" of length {len(state)}"
            raise ValueError(
                f"{name}: expected a tuple (h, c) of arrays of shape {shape} for lstm, got {got}"
            )
        return (
            _check_array(f"{name}[0] (h)", state[0], shape, dtype),
            _check_array(f"{name}[1] (c)", state[1], shape, dtype),
        )
    return _check_array(name, state, shape, dtype), None


def _check_params(spec: Spec, params: dict) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in params.items()}


def check_lengths(lengths: object, B: int, T: int) -> np.ndarray | None:
    """lengths as int64 (B,) with values in [1, T], or None; ValueError (one line) otherwise.
    Takes anything np.asarray reads (a list, a numpy array, a CPU torch tensor)."""
    if lengths is None:
        return None
    try:
        a = np.asarray(lengths)
    except Exception as e:  # noqa: BLE001  (any unreadable object: one line, not a traceback)
        raise ValueError(f"lengths: expected ({B},) integers, got {type(lengths).__name__}") from e
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer) or a.shape != (B,):
        raise ValueError(f"lengths: expected ({B},) integers, got {a.dtype} {a.shape}")
    bad = (a < 1) | (a > T)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"lengths: expected values in [1, T={T}], got {int(a[k])} at index {k}")
    return np.ascontiguousarray(a, np.int64)


def forward(
    cell: str,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    state0: object = None,
    *,
    nonlinearity: str = "tanh",
    backend: str = "cpu",
    lengths: object = None,
    batch_first: bool = False,
):
    """Run a (multi-layer, optionally bidirectional) rnn/lstm/gru over x (T, B, I), or
    (B, T, I) with batch_first, optionally with per-sequence lengths (see the module doc)."""
    check_cell(cell)
    nonlinearity = _check_nonlinearity(cell, nonlinearity)
    be = _backend(backend)
    spec = infer_spec(cell, params)
    if not isinstance(batch_first, bool):
        raise ValueError(f"batch_first: expected True or False, got {batch_first!r}")
    layout = "(B, T, I" if batch_first else "(T, B, I"
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        got = f"{x.ndim}-D shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"x: expected a 3-D array {layout}={spec.input_size}), got {got}")
    T, B = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    if T < 1 or B < 1:
        raise ValueError(f"x: expected T >= 1 and B >= 1, got shape {x.shape}")
    x = _check_array("x", x, x.shape[:2] + (spec.input_size,), spec.dtype)
    lengths = check_lengths(lengths, B, T)
    sshape = (spec.num_layers * spec.directions, B, spec.hidden_size)
    h0, c0 = _state_pair(cell, "state0", state0, sshape, spec.dtype)
    params = _check_params(spec, params)
    out, h_n, c_n, data = be.forward(spec, nonlinearity, params, x, h0, c0, lengths, batch_first)
    state = (h_n, c_n) if cell == "lstm" else h_n
    return out, state, Cache(cell, nonlinearity, spec, backend, T, B, batch_first, data)


def backward(
    cell: str,
    params: dict[str, np.ndarray],
    cache: Cache,
    dout: np.ndarray,
    dstate: object = None,
    *,
    backend: str = "cpu",
) -> dict[str, np.ndarray]:
    """Gradients of sum(out * dout) + sum(state * dstate) for the forward that made cache."""
    check_cell(cell)
    be = _backend(backend)
    if not isinstance(cache, Cache):
        raise ValueError(
            f"cache: expected the Cache returned by rnnfast.forward, got {type(cache).__name__}"
        )
    if cache.backend != backend:
        raise ValueError(f"cache: made by backend {cache.backend!r}, but backend={backend!r}")
    if cache.cell != cell:
        raise ValueError(f"cell: the cache was made for {cache.cell!r}, got {cell!r}")
    spec = infer_spec(cell, params, check_values=False)
    if spec is not cache.spec and spec != cache.spec:  # identity: infer_spec caches specs
        raise ValueError(f"params: structure {spec} differs from the forward pass's {cache.spec}")
    D, H = spec.directions, spec.hidden_size
    TB = (cache.B, cache.T) if cache.batch_first else (cache.T, cache.B)
    dout = _check_array("dout", dout, TB + (D * H,), spec.dtype)
    sshape = (spec.num_layers * D, cache.B, H)
    dh_n, dc_n = _state_pair(cell, "dstate", dstate, sshape, spec.dtype)
    params = _check_params(spec, params)
    return be.backward(spec, cache.nonlinearity, params, cache.data, dout, dh_n, dc_n)
