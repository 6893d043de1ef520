"""Analytic gradients against central finite differences, float64, every entry.

loss = sum(out * R) + sum(h_n * S) (+ sum(c_n * S_c)) with random R, S and a non-zero
random initial state; every parameter entry, every entry of x, h0 (and c0) is checked.
"""

import itertools

import numpy as np
import pytest

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("rnn", "sigmoid"), ("lstm", "tanh"), ("gru", "tanh")]
EPS = 1e-6
# Central differences with eps = 1e-6 are accurate to about eps^2 + 1e-16 * |loss| / eps.
RTOL = 1e-6
ATOL = 1e-8  # measured worst case about 1.2e-9 (reference backend)
KINK_MARGIN = 1e-4  # relu: every pre-activation at least this far from 0 (>> 10 * EPS)


def numeric_grad(f, a: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of a (in place)."""
    g = np.empty_like(a)
    for idx in np.ndindex(a.shape):
        orig = a[idx]
        a[idx] = orig + EPS
        plus = f()
        a[idx] = orig - EPS
        minus = f()
        a[idx] = orig
        g[idx] = (plus - minus) / (2 * EPS)
    return g


def relu_safe_case(make_case, preactivations, **kw):
    """A case whose relu pre-activations all keep clear of the kink at 0."""
    for seed in range(100):
        case = make_case(**kw, seed=seed)
        if np.min(np.abs(preactivations(case))) > KINK_MARGIN:
            return case
    raise AssertionError("no seed gave relu pre-activations away from 0")


@pytest.mark.parametrize(
    "cell,nonlinearity,num_layers,bidirectional,bias",
    [
        (c, n, layers, bi, bias)
        for (c, n), layers, bi, bias in itertools.product(
            CELLS, (1, 2), (False, True), (True, False)
        )
    ],
)
def test_gradients_match_finite_differences(
    backend,
    make_case,
    run_rnnfast,
    loss,
    preactivations,
    cell,
    nonlinearity,
    num_layers,
    bidirectional,
    bias,
):
    kw = dict(
        cell=cell,
        nonlinearity=nonlinearity,
        T=3,
        B=2,
        I=3,
        H=2,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
        dtype=np.float64,
    )
    if nonlinearity == "relu":
        case = relu_safe_case(make_case, preactivations, **kw)
    else:
        case = make_case(**kw, seed=0)
    _, _, grads = run_rnnfast(case, backend)

    expected_keys = set(case.params) | {"x", "h0"} | ({"c0"} if cell == "lstm" else set())
    assert set(grads) == expected_keys

    # work on copies: the case arrays are perturbed in place
    params = {k: v.copy() for k, v in case.params.items()}
    x, h0 = case.x.copy(), case.h0.copy()
    c0 = case.c0.copy() if cell == "lstm" else None

    def f():
        state0 = (h0, c0) if cell == "lstm" else h0
        return loss(case, backend, x=x, state0=state0, params=params)

    targets = dict(params, x=x, h0=h0)
    if cell == "lstm":
        targets["c0"] = c0
    for name, arr in targets.items():
        num = numeric_grad(f, arr)
        assert grads[name].shape == arr.shape, name
        np.testing.assert_allclose(grads[name], num, rtol=RTOL, atol=ATOL, err_msg=name)
    # the check must not pass vacuously: the state and input gradients are non-zero
    assert np.abs(grads["x"]).max() > 1e-3
    assert np.abs(grads["h0"]).max() > 1e-3
