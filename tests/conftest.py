"""Shared test helpers.

Backends: tests that take a ``backend`` argument run once per backend in BACKENDS; tests
that take ``other_backend`` run for every backend except the reference (they compare it
against the reference). Restrict the list with an environment variable, e.g.

    RNNFAST_TEST_BACKENDS=reference pytest

Helpers are handed out as session fixtures (``make_case``, ``run_rnnfast``, ``run_torch``,
``torch``) so test modules need not import this file.
"""

import os
import re
from dataclasses import dataclass

# The CUDA backend's tests run on the CUDA simulator unless RNNFAST_TEST_GPU=1 asks for the
# real GPU. The switch must be set before numba is first imported.
if os.environ.get("RNNFAST_TEST_GPU", "0") in ("", "0"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import rnnfast  # noqa: E402

BACKENDS = [b for b in os.environ.get("RNNFAST_TEST_BACKENDS", "reference,cpu").split(",") if b]


def pytest_generate_tests(metafunc):
    # Direct parametrisation (not a fixture), so hypothesis tests can take a backend too.
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS)
    if "other_backend" in metafunc.fixturenames:
        metafunc.parametrize("other_backend", [b for b in BACKENDS if b != "reference"])


@dataclass
class Case:
    """Everything one forward + backward call needs."""

    cell: str
    nonlinearity: str
    params: dict
    x: np.ndarray  # (T, B, I)
    h0: np.ndarray  # (L*D, B, H)
    c0: np.ndarray | None  # (L*D, B, H), lstm only
    dout: np.ndarray  # (T, B, D*H)
    dh: np.ndarray  # (L*D, B, H)
    dc: np.ndarray | None  # (L*D, B, H), lstm only

    @property
    def state0(self):
        return (self.h0, self.c0) if self.cell == "lstm" else self.h0

    @property
    def dstate(self):
        return (self.dh, self.dc) if self.cell == "lstm" else self.dh


def make_case_fn(
    cell: str = "rnn",
    T: int = 3,
    B: int = 2,
    I: int = 3,
    H: int = 2,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
    dtype=np.float64,
    seed: int = 0,
    nonlinearity: str = "tanh",
) -> Case:
    """Random parameters (PyTorch's init), inputs, non-zero initial state and gradients."""
    params = rnnfast.init_params(
        cell,
        I,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        dtype=dtype,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 1000)
    D = 2 if bidirectional else 1
    sshape = (num_layers * D, B, H)

    def draw(shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    lstm = cell == "lstm"
    return Case(
        cell=cell,
        nonlinearity=nonlinearity,
        params=params,
        x=draw((T, B, I)),
        h0=draw(sshape, 0.5),
        c0=draw(sshape, 0.5) if lstm else None,
        dout=draw((T, B, D * H)),
        dh=draw(sshape),
        dc=draw(sshape) if lstm else None,
    )


def run_rnnfast_fn(case: Case, backend: str):
    """(out, [h_n(, c_n)], grads) from rnnfast.forward + rnnfast.backward."""
    out, state, cache = rnnfast.forward(
        case.cell,
        case.params,
        case.x,
        case.state0,
        nonlinearity=case.nonlinearity,
        backend=backend,
    )
    grads = rnnfast.backward(case.cell, case.params, cache, case.dout, case.dstate, backend=backend)
    states = list(state) if case.cell == "lstm" else [state]
    return out, states, grads


def loss_fn(case: Case, backend: str, x=None, state0=None, params=None) -> float:
    """sum(out * dout) + sum(h_n * dh) (+ sum(c_n * dc)), for finite differences."""
    params = case.params if params is None else params
    x = case.x if x is None else x
    state0 = case.state0 if state0 is None else state0
    out, state, _ = rnnfast.forward(
        case.cell, params, x, state0, nonlinearity=case.nonlinearity, backend=backend
    )
    total = np.sum(out * case.dout)
    if case.cell == "lstm":
        return float(total + np.sum(state[0] * case.dh) + np.sum(state[1] * case.dc))
    return float(total + np.sum(state * case.dh))


def _layer_params(params: dict, num_layers: int) -> dict:
    """The parameters of the first num_layers layers (a valid parameter dict itself)."""
    return {k: v for k, v in params.items() if int(re.search(r"_l(\d+)", k)[1]) < num_layers}


def rnn_preactivations(case: Case) -> np.ndarray:
    """All pre-activations W_ih x + b_ih + W_hh h + b_hh of an rnn, computed independently of
    the backend's internals from the outputs of truncated (fewer-layer) networks."""
    spec = rnnfast.params.infer_spec(case.cell, case.params)
    D, H = spec.directions, spec.hidden_size
    T = case.x.shape[0]
    pre = []
    inp = case.x
    for layer in range(spec.num_layers):
        sub = _layer_params(case.params, layer + 1)
        out, _, _ = rnnfast.forward(
            "rnn",
            sub,
            case.x,
            case.h0[: (layer + 1) * D],
            nonlinearity=case.nonlinearity,
            backend="reference",
        )
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = case.params["weight_ih" + sfx], case.params["weight_hh" + sfx]
            b = case.params["bias_ih" + sfx] + case.params["bias_hh" + sfx] if spec.bias else 0
            hs = out[:, :, d * H : (d + 1) * H]
            for t in range(T):
                prev = t + 1 if d else t - 1
                h_prev = case.h0[layer * D + d] if prev in (-1, T) else hs[prev]
                pre.append(inp[t] @ w_ih.T + h_prev @ w_hh.T + b)
        inp = out
    return np.concatenate([p.ravel() for p in pre])


TORCH_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def run_torch_fn(case: Case):
    """(out, [h_n(, c_n)], grads) from torch.nn.RNN/LSTM/GRU loaded with case.params."""
    import torch

    spec = rnnfast.params.infer_spec(case.cell, case.params)
    kwargs = {"nonlinearity": case.nonlinearity} if case.cell == "rnn" else {}
    module = getattr(torch.nn, TORCH_CLASSES[case.cell])(
        spec.input_size,
        spec.hidden_size,
        num_layers=spec.num_layers,
        bias=spec.bias,
        batch_first=False,
        bidirectional=spec.bidirectional,
        dtype=torch.float64 if spec.dtype == np.float64 else torch.float32,
        **kwargs,
    )
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in case.params.items()})

    def leaf(a):
        return torch.from_numpy(a.copy()).requires_grad_(True)

    x, h0 = leaf(case.x), leaf(case.h0)
    if case.cell == "lstm":
        c0 = leaf(case.c0)
        out, (h_n, c_n) = module(x, (h0, c0))
        states = [h_n, c_n]
        dstates = [case.dh, case.dc]
    else:
        out, h_n = module(x, h0)
        states, dstates = [h_n], [case.dh]
    loss = (out * torch.from_numpy(case.dout)).sum()
    for s, ds in zip(states, dstates, strict=True):
        loss = loss + (s * torch.from_numpy(ds)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    grads["x"], grads["h0"] = x.grad.numpy(), h0.grad.numpy()
    if case.cell == "lstm":
        grads["c0"] = c0.grad.numpy()
    return out.detach().numpy(), [s.detach().numpy() for s in states], grads


def assert_close(actual, expected, rtol: float, atol: float, name: str = "") -> None:
    """assert_allclose with atol scaled by the size of the expected values."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=name)


def assert_results_close(a, b, rtol: float, atol: float) -> None:
    """Compare two (out, states, grads) triples entry by entry, including the key sets."""
    out_a, states_a, grads_a = a
    out_b, states_b, grads_b = b
    assert_close(out_a, out_b, rtol, atol, "out")
    assert len(states_a) == len(states_b)
    for i, (sa, sb) in enumerate(zip(states_a, states_b, strict=True)):
        assert_close(sa, sb, rtol, atol, f"state[{i}]")
    assert sorted(grads_a) == sorted(grads_b)
    for key in grads_b:
        assert grads_a[key].shape == grads_b[key].shape, key
        assert_close(grads_a[key], grads_b[key], rtol, atol, f"grads[{key!r}]")


@pytest.fixture(scope="session")
def torch():
    torch = pytest.importorskip("torch")
    torch.use_deterministic_algorithms(True)
    return torch


@pytest.fixture(scope="session")
def make_case():
    return make_case_fn


@pytest.fixture(scope="session")
def run_rnnfast():
    return run_rnnfast_fn


@pytest.fixture(scope="session")
def run_torch(torch):
    return run_torch_fn


@pytest.fixture(scope="session")
def loss():
    return loss_fn


@pytest.fixture(scope="session")
def preactivations():
    return rnn_preactivations


@pytest.fixture(scope="session")
def results_close():
    return assert_results_close
