"""Every backend against the NumPy reference (rnnfast/reference.py), and contract checks
that hold for every backend: dtypes, gradient keys, untouched inputs, None means zeros."""

import numpy as np
import pytest

import rnnfast

TOL = {np.float64: (1e-12, 1e-13), np.float32: (1e-5, 1e-6)}  # (rtol, atol scaled by max |v|)

# (cell, nonlinearity, T, B, I, H, num_layers, bidirectional, bias)
SHAPES = [
    ("rnn", "tanh", 1, 1, 1, 1, 1, False, True),
    ("rnn", "relu", 5, 3, 4, 7, 2, True, True),
    ("rnn", "sigmoid", 4, 1, 3, 5, 2, True, False),
    ("rnn", "sigmoid", 1, 2, 2, 3, 1, False, True),
    ("lstm", "tanh", 1, 1, 1, 1, 1, True, True),
    ("lstm", "tanh", 7, 3, 5, 3, 3, True, True),
    ("lstm", "tanh", 3, 1, 2, 9, 2, False, False),
    ("lstm", "tanh", 2, 5, 1, 17, 1, False, True),
    ("gru", "tanh", 1, 1, 1, 1, 1, False, False),
    ("gru", "tanh", 6, 2, 3, 5, 3, True, True),
    ("gru", "tanh", 3, 7, 11, 4, 1, True, False),
    ("gru", "tanh", 2, 1, 1, 33, 2, False, True),
    ("rnn", "tanh", 9, 4, 6, 65, 1, True, True),
]


def _id(s):
    cell, nl, T, B, I, H, L, bi, bias = s
    return f"{cell}-{nl}-T{T}B{B}I{I}H{H}L{L}" + ("-bi" if bi else "") + ("" if bias else "-nobias")


def _case(make_case, s, dtype, seed=0):
    cell, nl, T, B, I, H, L, bi, bias = s
    return make_case(
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
        seed=seed,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=[_id(s) for s in SHAPES])
def test_backend_matches_oracle(other_backend, shape, dtype, make_case, run_rnnfast, results_close):
    case = _case(make_case, shape, dtype, seed=3)
    got = run_rnnfast(case, other_backend)
    want = run_rnnfast(case, "reference")
    rtol, atol = TOL[dtype]
    results_close(got, want, rtol, atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES[::3], ids=[_id(s) for s in SHAPES[::3]])
def test_dtypes_and_gradient_keys(backend, shape, dtype, make_case):
    case = _case(make_case, shape, dtype)
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
    if case.cell == "lstm":
        assert isinstance(state, tuple) and len(state) == 2
    else:
        assert isinstance(state, np.ndarray)
    T, B, _ = case.x.shape
    L_D, _, H = case.h0.shape
    assert out.shape == (T, B, case.dout.shape[2])
    for arr in [out, *states, *grads.values()]:
        assert isinstance(arr, np.ndarray)
        assert arr.dtype == np.dtype(dtype)
    for s in states:
        assert s.shape == (L_D, B, H)
    expected = set(case.params) | {"x", "h0"} | ({"c0"} if case.cell == "lstm" else set())
    assert set(grads) == expected
    for key, value in case.params.items():
        assert grads[key].shape == value.shape, key
    assert grads["x"].shape == case.x.shape
    assert grads["h0"].shape == case.h0.shape
    if case.cell == "lstm":
        assert grads["c0"].shape == case.c0.shape


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_inputs_not_modified(backend, cell, make_case, run_rnnfast):
    case = make_case(cell=cell, T=4, B=2, I=3, H=3, num_layers=2, bidirectional=True)
    arrays = [*case.params.values(), case.x, case.h0, case.dout, case.dh]
    if cell == "lstm":
        arrays += [case.c0, case.dc]
    before = [a.copy() for a in arrays]
    run_rnnfast(case, backend)
    for a, b in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_none_state_means_zeros(backend, cell, make_case, run_rnnfast, results_close):
    case = make_case(cell=cell, T=3, B=2, I=2, H=3, num_layers=2, bidirectional=True)
    case.h0[:] = 0
    case.dh[:] = 0
    if cell == "lstm":
        case.c0[:] = 0
        case.dc[:] = 0
    explicit = run_rnnfast(case, backend)
    out, state, cache = rnnfast.forward(cell, case.params, case.x, backend=backend)
    grads = rnnfast.backward(cell, case.params, cache, case.dout, backend=backend)
    implicit = (out, list(state) if cell == "lstm" else [state], grads)
    results_close(implicit, explicit, 0, 0)


def test_deterministic(backend, make_case, run_rnnfast, results_close):
    case = make_case(cell="gru", T=5, B=3, I=4, H=6, num_layers=2, bidirectional=True)
    results_close(run_rnnfast(case, backend), run_rnnfast(case, backend), 0, 0)


def test_reference_last_state_is_last_output():
    """h_n of the top layer is out at t = T-1 (forward) and t = 0 (reverse)."""
    params = rnnfast.init_params("gru", 3, 4, num_layers=2, bidirectional=True, seed=1)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out, h_n, _ = rnnfast.forward("gru", params, x, backend="reference")
    np.testing.assert_array_equal(h_n[2], out[-1, :, :4])
    np.testing.assert_array_equal(h_n[3], out[0, :, 4:])


def test_sigmoid_rnn_by_hand(backend):
    """The sigmoid rnn (an rnnfast extension; torch has none) against its formula."""
    params = rnnfast.init_params("rnn", 3, 4, bidirectional=True, dtype=np.float64, seed=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 3))
    h0 = rng.standard_normal((2, 2, 4))
    out, h_n, _ = rnnfast.forward("rnn", params, x, h0, nonlinearity="sigmoid", backend=backend)

    def step(sfx, x_t, h):
        p = {k: params[f"{k}_l0{sfx}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        a = x_t @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        return 1 / (1 + np.exp(-a))

    f0 = step("", x[0], h0[0])
    f1 = step("", x[1], f0)
    r1 = step("_reverse", x[1], h0[1])
    r0 = step("_reverse", x[0], r1)
    want = np.stack([np.concatenate([f0, r0], 1), np.concatenate([f1, r1], 1)])
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h_n, np.stack([f1, r0]), rtol=1e-13, atol=1e-15)
