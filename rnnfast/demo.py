"""The demo job: time forward/backward of one model on one backend and check it against the
NumPy reference.

    report = run_demo(DemoConfig(cell="lstm", seq_len=28, batch=100, input_size=28,
                                 hidden_size=100))

x and dout are drawn from numpy.random.default_rng(seed); parameters from init_params(seed).
The comparison runs the same inputs through backend "reference" once and records, for out,
the final state and every gradient, max |a - b| / max(1, max |b|); it passes when the worst
is within TOLERANCE[dtype].
"""

import time
from dataclasses import dataclass, field

import numpy as np

from rnnfast.api import backward, forward
from rnnfast.params import check_dtype, init_params

TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


@dataclass(frozen=True)
class DemoConfig:
    cell: str = "lstm"
    seq_len: int = 28
    batch: int = 100
    input_size: int = 28
    hidden_size: int = 100
    num_layers: int = 1
    bidirectional: bool = False
    nonlinearity: str = "tanh"
    dtype: str = "float32"
    backend: str = "cpu"
    repeats: int = 5
    seed: int = 0


@dataclass
class DemoReport:
    config: DemoConfig
    first_call_s: float  # forward + backward of the first call (compile or cache load)
    forward_s: float  # median over repeats
    backward_s: float  # median over repeats
    norms: dict[str, float]  # Frobenius norms of out, state, grads
    errors: dict[str, float] = field(default_factory=dict)  # vs the reference, per array
    tolerance: float = 0.0

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tolerance


def _flatten(out: np.ndarray, state: object, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays = {"out": out}
    if isinstance(state, tuple):
        arrays["h_n"], arrays["c_n"] = state
    else:
        arrays["h_n"] = state  # type: ignore[assignment]
    arrays.update({f"d{key}": value for key, value in grads.items()})
    return arrays


def _run(cfg: DemoConfig, backend: str, params, x, dout):
    out, state, cache = forward(cfg.cell, params, x, nonlinearity=cfg.nonlinearity, backend=backend)
    grads = backward(cfg.cell, params, cache, dout, backend=backend)
    return out, state, grads


def run_demo(cfg: DemoConfig) -> DemoReport:
    dtype = check_dtype(cfg.dtype)
    params = init_params(
        cfg.cell,
        cfg.input_size,
        cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        dtype=dtype,
        seed=cfg.seed,
    )
    rng = np.random.default_rng(cfg.seed)
    D = 2 if cfg.bidirectional else 1
    x = rng.standard_normal((cfg.seq_len, cfg.batch, cfg.input_size)).astype(dtype)
    dout = rng.standard_normal((cfg.seq_len, cfg.batch, D * cfg.hidden_size)).astype(dtype)

    t0 = time.perf_counter()
    out, state, grads = _run(cfg, cfg.backend, params, x, dout)
    first = time.perf_counter() - t0

    fwd, bwd = [], []
    for _ in range(cfg.repeats):
        t0 = time.perf_counter()
        out, state, cache = forward(
            cfg.cell, params, x, nonlinearity=cfg.nonlinearity, backend=cfg.backend
        )
        t1 = time.perf_counter()
        grads = backward(cfg.cell, params, cache, dout, backend=cfg.backend)
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)

    arrays = _flatten(out, state, grads)
    norms = {"out": float(np.linalg.norm(out)), "h_n": float(np.linalg.norm(arrays["h_n"]))}
    if "c_n" in arrays:
        norms["c_n"] = float(np.linalg.norm(arrays["c_n"]))
    norms["dx"] = float(np.linalg.norm(grads["x"]))
    norms["dparams"] = float(np.sqrt(sum(np.sum(grads[k].astype(np.float64) ** 2) for k in params)))
    report = DemoReport(
        config=cfg,
        first_call_s=first,
        forward_s=float(np.median(fwd)),
        backward_s=float(np.median(bwd)),
        norms=norms,
        tolerance=TOLERANCE[dtype],
    )
    if cfg.backend != "reference":
        expected = _flatten(*_run(cfg, "reference", params, x, dout))
        for key, want in expected.items():
            diff = np.max(np.abs(arrays[key].astype(np.float64) - want))
            report.errors[key] = float(diff / max(1.0, float(np.max(np.abs(want)))))
    return report
