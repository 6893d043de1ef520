"""The CUDA backend (numba-cuda): the contract of rnnfast.api, and fused training on the GPU.

Imported lazily (backend="cuda"); it needs the optional numba-cuda package
(pip install "rnnfast[cuda]") and a CUDA GPU, or the CUDA simulator
(NUMBA_ENABLE_CUDASIM=1, set before numba is imported: slow, for tests). Without them every
entry point raises CudaUnavailable with what is missing; nothing else in rnnfast changes.

forward: one launch. Each block takes a range of batch columns through every layer,
direction and time step (rnnfast/cuda/_layers.py), so no grid-wide synchronisation is needed.
backward: two launches, the reverse time loops (blocks by batch columns again) and then the
weight gradients, which sum over all columns (one thread per parameter).
Arrays cross to the host only at the API boundary: x, h0, dout in; out, states, gradients out.
lengths go to the kernels (padded steps carry the state, rnnfast/cuda/_layers.py); batch_first
arrays are transposed on the host on their way to and from the device.
"""

import importlib.util
import os

import numpy as np


class CudaUnavailable(RuntimeError):
    """backend="cuda" was asked for where it cannot run."""


def simulator() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def unavailable_reason() -> str | None:
    """None if the CUDA backend can run here, else why not (one line)."""
    if importlib.util.find_spec("numba_cuda") is None:
        return (
            "backend 'cuda' needs the numba-cuda package, which is not installed: "
            "pip install 'rnnfast[cuda]'"
        )
    if simulator():
        return None
    from numba import cuda  # noqa: PLC0415

    try:
        ok = cuda.is_available()
    except Exception as e:  # a broken driver install raises instead of answering
        return f"backend 'cuda': the CUDA driver failed to load ({e})"
    if not ok:
        return (
            "backend 'cuda': no CUDA GPU or driver found (numba.cuda.is_available() is "
            "False); for the slow simulator set NUMBA_ENABLE_CUDASIM=1 before starting Python"
        )
    return None


def require() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise CudaUnavailable(reason)


def device_name() -> str:
    """The GPU's name, or "CUDA simulator"."""
    require()
    if simulator():
        return "CUDA simulator"
    from numba import cuda  # noqa: PLC0415

    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def forward(spec, nonlinearity: str, params, x: np.ndarray, h0, c0, lengths, batch_first):
    require()
    from rnnfast.cuda._api import forward as _forward  # noqa: PLC0415

    return _forward(spec, nonlinearity, params, x, h0, c0, lengths, batch_first)


def backward(spec, nonlinearity: str, params, data, dout, dh_n, dc_n):
    require()
    from rnnfast.cuda._api import backward as _backward  # noqa: PLC0415

    return _backward(spec, nonlinearity, params, data, dout, dh_n, dc_n)
