"""Parity with torch.nn.RNN / LSTM / GRU (batch_first=False), parameters via load_state_dict.

Compared: out, the final state(s) and the gradients of sum(out * dout) + sum(state * dstate)
with respect to every parameter, x, h0 (and c0). float64 to 1e-9 relative, float32 to 1e-4.
torch has no sigmoid rnn, so that rnnfast extension is checked by test_gradcheck only.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

TOL = {np.float64: (1e-9, 1e-12), np.float32: (1e-4, 1e-5)}  # (rtol, atol scaled by max |v|)

# (cell, nonlinearity, T, B, I, H, num_layers, bidirectional, bias)
CASES = [
    ("rnn", "tanh", 1, 1, 1, 1, 1, False, True),
    ("rnn", "relu", 1, 1, 1, 1, 1, True, False),
    ("rnn", "tanh", 4, 3, 5, 7, 2, True, True),
    ("rnn", "relu", 5, 2, 3, 4, 3, False, True),
    ("rnn", "tanh", 3, 5, 2, 3, 3, True, False),
    ("lstm", "tanh", 1, 1, 1, 1, 1, False, True),
    ("lstm", "tanh", 5, 3, 7, 5, 3, True, True),
    ("lstm", "tanh", 3, 2, 4, 3, 2, False, False),
    ("lstm", "tanh", 2, 1, 1, 9, 1, True, True),
    ("gru", "tanh", 1, 1, 1, 1, 1, False, True),
    ("gru", "tanh", 6, 2, 3, 5, 3, True, False),
    ("gru", "tanh", 4, 5, 2, 3, 1, True, True),
    ("gru", "tanh", 7, 1, 6, 1, 2, False, True),
]


def _id(case):
    cell, nl, T, B, I, H, L, bi, bias = case
    return f"{cell}-{nl}-T{T}B{B}I{I}H{H}L{L}" + ("-bi" if bi else "") + ("" if bias else "-nobias")


def check_parity(case, backend, run_rnnfast, run_torch, results_close, dtype):
    ours = run_rnnfast(case, backend)
    theirs = run_torch(case)
    for arr in [ours[0], *ours[1], *ours[2].values()]:
        assert arr.dtype == dtype
    rtol, atol = TOL[dtype]
    results_close(ours, theirs, rtol, atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("spec", CASES, ids=[_id(c) for c in CASES])
def test_matches_torch(backend, spec, dtype, make_case, run_rnnfast, run_torch, results_close):
    cell, nl, T, B, I, H, L, bi, bias = spec
    case = make_case(
        cell=cell,
        nonlinearity=nl,
        T=T,
        B=B,
        I=I,
        H=H,
        num_layers=L,
        bidirectional=bi,
        bias=bias,
        dtype=dtype,
        seed=T + 10 * B + 100 * H,
    )
    check_parity(case, backend, run_rnnfast, run_torch, results_close, dtype)


def test_defaults_match_torch_zero_state(backend, torch, make_case):
    """state0=None and dstate=None mean zeros, as torch's hx=None."""
    import rnnfast

    case = make_case(cell="lstm", T=3, B=2, I=3, H=4, num_layers=2, bidirectional=True)
    out, (h_n, c_n), cache = rnnfast.forward("lstm", case.params, case.x, backend=backend)
    grads = rnnfast.backward("lstm", case.params, cache, case.dout, backend=backend)
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in case.params.items()})
    x = torch.from_numpy(case.x.copy()).requires_grad_(True)
    t_out, (t_h, t_c) = module(x)
    (t_out * torch.from_numpy(case.dout)).sum().backward()
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_n, t_h.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c_n, t_c.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["x"], x.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12)


CELL_CHOICES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    T=st.integers(1, 5),
    B=st.integers(1, 4),
    I=st.integers(1, 5),
    H=st.integers(1, 5),
    cell=st.sampled_from(CELL_CHOICES),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    bias=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**16),
)
def test_matches_torch_property(
    backend,
    torch,
    make_case,
    run_rnnfast,
    run_torch,
    results_close,
    T,
    B,
    I,
    H,
    cell,
    num_layers,
    bidirectional,
    bias,
    dtype,
    seed,
):
    case = make_case(
        cell=cell[0],
        nonlinearity=cell[1],
        T=T,
        B=B,
        I=I,
        H=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        dtype=dtype,
        seed=seed,
    )
    check_parity(case, backend, run_rnnfast, run_torch, results_close, dtype)
