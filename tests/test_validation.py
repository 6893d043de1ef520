"""Bad input raises ValueError naming the argument and showing expected versus given.

Validation happens in rnnfast.api / rnnfast.params before any backend runs, so these tests
use the reference backend except where the backend itself is the bad argument.
"""

import re

import numpy as np
import pytest

import rnnfast

T, B, I, H, L = 4, 2, 3, 2, 2
D = 2  # bidirectional
F64 = np.float64


def E(*parts: str) -> str:
    """A regex matching the literal parts in order, anything between them."""
    return ".*".join(re.escape(p) for p in parts)


@pytest.fixture
def lstm():
    params = rnnfast.init_params("lstm", I, H, num_layers=L, bidirectional=True, dtype=F64, seed=0)
    x = np.zeros((T, B, I))
    h = np.zeros((L * D, B, H))
    return params, x, h


@pytest.fixture
def rnn():
    params = rnnfast.init_params("rnn", I, H, num_layers=L, bidirectional=True, dtype=F64, seed=0)
    return params, np.zeros((T, B, I)), np.zeros((L * D, B, H))


def fwd(cell, params, x, state0=None, **kw):
    kw.setdefault("backend", "reference")
    return rnnfast.forward(cell, params, x, state0, **kw)


# --- x -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x,pattern",
    [
        (np.zeros((T, I)), E("x:", "3-D", "got 2-D", f"({T}, {I})")),
        (np.zeros((T, B, I, 1)), E("x:", "3-D", "got 4-D", f"({T}, {B}, {I}, 1)")),
        (np.zeros((T, B, I + 2)), E("x:", f"({T}, {B}, {I})", "got", f"({T}, {B}, {I + 2})")),
        (np.zeros((0, B, I)), E("x:", "T >= 1", f"(0, {B}, {I})")),
        (np.zeros((T, 0, I)), E("x:", "B >= 1", f"({T}, 0, {I})")),
        (np.zeros((T, B, I), np.float32), E("x:", "float64", "got float32")),
        (np.zeros((T, B, I), np.int64), E("x:", "float64", "got int64")),
        (np.zeros((T, B, I)).tolist(), E("x:", "3-D", "got list")),
        (np.full((T, B, I), np.nan), E("x:", "NaN")),
        (np.full((T, B, I), -np.inf), E("x:", "infinite")),
    ],
    ids=["2d", "4d", "wrong-I", "T0", "B0", "f32-vs-f64", "int", "list", "nan", "inf"],
)
def test_bad_x(rnn, x, pattern):
    params, _, _ = rnn
    with pytest.raises(ValueError, match=pattern):
        fwd("rnn", params, x)


def test_float64_x_with_float32_params():
    params = rnnfast.init_params("gru", I, H, dtype=np.float32)
    with pytest.raises(ValueError, match=E("x:", "float32", "got float64")):
        fwd("gru", params, np.zeros((T, B, I)))


def test_single_nan_in_x(rnn):
    params, x, _ = rnn
    x[1, 1, 2] = np.nan
    with pytest.raises(ValueError, match=E("x:", "NaN")):
        fwd("rnn", params, x)


# --- state0 ------------------------------------------------------------------------------


def test_state0_wrong_shape(rnn):
    params, x, _ = rnn
    with pytest.raises(ValueError, match=E("state0:", f"({L * D}, {B}, {H})", "got (2, 2, 2)")):
        fwd("rnn", params, x, np.zeros((2, B, H)))


def test_state0_wrong_rank(rnn):
    params, x, _ = rnn
    with pytest.raises(ValueError, match=E("state0:", "3-D", "got 2-D", f"({B}, {H})")):
        fwd("rnn", params, x, np.zeros((B, H)))


def test_state0_wrong_dtype(rnn):
    params, x, h = rnn
    with pytest.raises(ValueError, match=E("state0:", "float64", "got float32")):
        fwd("rnn", params, x, h.astype(np.float32))


def test_state0_nan(rnn):
    params, x, h = rnn
    h[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=E("state0:", "infinite")):
        fwd("rnn", params, x, h)


@pytest.mark.parametrize("bad", ["array", "1-tuple", "3-tuple"])
def test_lstm_state0_not_a_pair(lstm, bad):
    params, x, h = lstm
    state0 = {"array": h, "1-tuple": (h,), "3-tuple": (h, h, h)}[bad]
    given = "ndarray" if bad == "array" else "tuple"
    with pytest.raises(ValueError, match=E("state0:", "tuple (h, c)", f"got {given}")):
        fwd("lstm", params, x, state0)


def test_lstm_c0_wrong_shape_and_dtype(lstm):
    params, x, h = lstm
    with pytest.raises(ValueError, match=E("state0[1] (c):", f"({L * D}, {B}, {H})", "got (1,")):
        fwd("lstm", params, x, (h, np.zeros((1, B, H))))
    with pytest.raises(ValueError, match=E("state0[0] (h):", "float64", "got float32")):
        fwd("lstm", params, x, (h.astype(np.float32), h))


# --- params ------------------------------------------------------------------------------


def test_param_wrong_shape(lstm):
    params, x, _ = lstm
    params["weight_hh_l1_reverse"] = np.zeros((4 * H, H + 1))
    pattern = E("params['weight_hh_l1_reverse']:", f"({4 * H}, {H})", f"got ({4 * H}, {H + 1})")
    with pytest.raises(ValueError, match=pattern):
        fwd("lstm", params, x)


def test_param_wrong_gate_rows(lstm):
    params, x, _ = lstm
    params["bias_ih_l0"] = np.zeros(3 * H)
    with pytest.raises(ValueError, match=E("params['bias_ih_l0']:", f"({4 * H},)", f"({3 * H},)")):
        fwd("lstm", params, x)


def test_param_wrong_dtype(lstm):
    params, x, _ = lstm
    params["bias_hh_l1"] = params["bias_hh_l1"].astype(np.float32)
    with pytest.raises(ValueError, match=E("params['bias_hh_l1']:", "float64", "got float32")):
        fwd("lstm", params, x)


def test_param_int_dtype(rnn):
    params, x, _ = rnn
    params = {k: v.astype(np.int64) for k, v in params.items()}
    with pytest.raises(
        ValueError, match=E("params['weight_ih_l0']:", "float32 or float64", "int64")
    ):
        fwd("rnn", params, x.astype(np.int64))


def test_param_not_an_array(lstm):
    params, x, _ = lstm
    params["weight_ih_l1"] = params["weight_ih_l1"].tolist()
    with pytest.raises(ValueError, match=E("params['weight_ih_l1']:", "numpy array", "got list")):
        fwd("lstm", params, x)


def test_param_nan(lstm):
    params, x, _ = lstm
    params["weight_hh_l0"][0, 0] = np.nan
    with pytest.raises(ValueError, match=E("params['weight_hh_l0']:", "NaN")):
        fwd("lstm", params, x)


def test_param_missing_key(lstm):
    params, x, _ = lstm
    del params["bias_hh_l1_reverse"]
    with pytest.raises(ValueError, match=E("params:", "missing", "'bias_hh_l1_reverse'")):
        fwd("lstm", params, x)


def test_param_missing_first_layer(lstm):
    params, x, _ = lstm
    del params["weight_hh_l0"]
    with pytest.raises(ValueError, match=E("params:", "missing", "'weight_hh_l0'")):
        fwd("lstm", params, x)


def test_param_extra_key(lstm):
    params, x, _ = lstm
    params["weight_xx_l0"] = np.zeros((4 * H, H))
    with pytest.raises(ValueError, match=E("params:", "unexpected", "'weight_xx_l0'")):
        fwd("lstm", params, x)


def test_params_not_a_dict(lstm):
    params, x, _ = lstm
    with pytest.raises(ValueError, match=E("params:", "dict", "got list")):
        fwd("lstm", list(params.values()), x)


def test_params_of_another_cell(lstm):
    params, x, _ = lstm
    with pytest.raises(
        ValueError, match=E("params['weight_ih_l0']:", f"({H}, {I})", f"({4 * H}, {I})")
    ):
        fwd("rnn", params, x)


# --- cell, nonlinearity, backend ---------------------------------------------------------


@pytest.mark.parametrize("cell", ["transformer", "LSTM", "", None])
def test_unknown_cell(rnn, cell):
    params, x, _ = rnn
    with pytest.raises(ValueError, match=E("cell:", "'gru', 'lstm', 'rnn'", f"got {cell!r}")):
        fwd(cell, params, x)


def test_unknown_nonlinearity(rnn):
    params, x, _ = rnn
    with pytest.raises(ValueError, match=E("nonlinearity:", "'tanh'", "got 'gelu'")):
        fwd("rnn", params, x, nonlinearity="gelu")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_relu_with_gated_cell(cell):
    params = rnnfast.init_params(cell, I, H, dtype=F64)
    with pytest.raises(ValueError, match=E("nonlinearity:", cell, "'tanh'", "got 'relu'")):
        fwd(cell, params, np.zeros((T, B, I)), nonlinearity="relu")


def test_unknown_backend(rnn):
    params, x, _ = rnn
    with pytest.raises(ValueError, match=E("backend:", "'cpu'", "'reference'", "got 'gpu'")):
        fwd("rnn", params, x, backend="gpu")


# --- backward ----------------------------------------------------------------------------


@pytest.fixture
def lstm_cache(lstm):
    params, x, h = lstm
    _, _, cache = fwd("lstm", params, x)
    return params, cache, np.zeros((T, B, D * H)), h


def bwd(cell, params, cache, dout, dstate=None, backend="reference"):
    return rnnfast.backward(cell, params, cache, dout, dstate, backend=backend)


def test_dout_wrong_shape(lstm_cache):
    params, cache, _, _ = lstm_cache
    pattern = E("dout:", f"({T}, {B}, {D * H})", f"got ({T}, {B}, {H})")
    with pytest.raises(ValueError, match=pattern):
        bwd("lstm", params, cache, np.zeros((T, B, H)))
    with pytest.raises(ValueError, match=E("dout:", "3-D", "got 2-D")):
        bwd("lstm", params, cache, np.zeros((T, D * H)))


def test_dout_wrong_dtype_and_nan(lstm_cache):
    params, cache, dout, _ = lstm_cache
    with pytest.raises(ValueError, match=E("dout:", "float64", "got float32")):
        bwd("lstm", params, cache, dout.astype(np.float32))
    dout[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=E("dout:", "NaN")):
        bwd("lstm", params, cache, dout)


def test_dstate_wrong_shape(lstm_cache):
    params, cache, dout, h = lstm_cache
    pattern = E("dstate[1] (c):", f"({L * D}, {B}, {H})", f"got ({L * D}, {B + 1}, {H})")
    with pytest.raises(ValueError, match=pattern):
        bwd("lstm", params, cache, dout, (h, np.zeros((L * D, B + 1, H))))
    with pytest.raises(ValueError, match=E("dstate:", "tuple (h, c)", "got ndarray")):
        bwd("lstm", params, cache, dout, h)


def test_dstate_wrong_shape_rnn(rnn):
    params, x, h = rnn
    _, _, cache = fwd("rnn", params, x)
    with pytest.raises(ValueError, match=E("dstate:", f"({L * D}, {B}, {H})", "got (1,")):
        bwd("rnn", params, cache, np.zeros((T, B, D * H)), h[:1])


def test_cache_from_another_cell(rnn):
    params, x, _ = rnn
    gru_params = rnnfast.init_params("gru", I, H, num_layers=L, bidirectional=True, dtype=F64)
    _, _, cache = fwd("gru", gru_params, x)
    with pytest.raises(ValueError, match=E("cell:", "'gru'", "got 'rnn'")):
        bwd("rnn", params, cache, np.zeros((T, B, D * H)))


def test_cache_from_another_backend(lstm_cache):
    params, cache, dout, _ = lstm_cache
    with pytest.raises(ValueError, match=E("cache:", "'reference'", "backend='cpu'")):
        bwd("lstm", params, cache, dout, backend="cpu")


def test_cache_not_a_cache(lstm_cache):
    params, _, dout, _ = lstm_cache
    with pytest.raises(ValueError, match=E("cache:", "Cache", "got dict")):
        bwd("lstm", params, {}, dout)


def test_params_differ_from_forward(lstm_cache):
    _, cache, dout, _ = lstm_cache
    params = rnnfast.init_params("lstm", I, H, num_layers=1, bidirectional=True, dtype=F64)
    with pytest.raises(ValueError, match=E("params:", "num_layers=1", "num_layers=2")):
        bwd("lstm", params, cache, dout)


def test_backward_unknown_backend(lstm_cache):
    params, cache, dout, _ = lstm_cache
    with pytest.raises(ValueError, match=E("backend:", "got 'nope'")):
        bwd("lstm", params, cache, dout, backend="nope")


# --- init_params -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"input_size": 0}, E("input_size:", ">= 1", "got 0")),
        ({"input_size": "3"}, E("input_size:", "integer", "got '3'")),
        ({"hidden_size": -1}, E("hidden_size:", ">= 1", "got -1")),
        ({"hidden_size": 2.0}, E("hidden_size:", "integer", "got 2.0")),
        ({"num_layers": 0}, E("num_layers:", ">= 1", "got 0")),
        ({"num_layers": True}, E("num_layers:", "integer", "got True")),
        ({"cell": "lstmx"}, E("cell:", "'lstm'", "got 'lstmx'")),
        ({"dtype": np.int32}, E("dtype:", "float32 or float64", "int32")),
        ({"dtype": "float16"}, E("dtype:", "float32 or float64", "got 'float16'")),
        ({"seed": 1.5}, E("seed:", "integer", "got 1.5")),
        ({"seed": "a"}, E("seed:", "integer", "got 'a'")),
        ({"seed": True}, E("seed:", "integer", "got True")),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
def test_init_params_bad_arguments(kwargs, pattern):
    args = {"cell": "rnn", "input_size": 3, "hidden_size": 2} | kwargs
    cell, i, h = args.pop("cell"), args.pop("input_size"), args.pop("hidden_size")
    with pytest.raises(ValueError, match=pattern):
        rnnfast.init_params(cell, i, h, **args)


@pytest.mark.parametrize("dtype", ["foo", 3, None])
def test_init_params_bad_dtype_not_silently_float64(dtype):
    with pytest.raises(ValueError, match=E("dtype:", "float32 or float64", f"got {dtype!r}")):
        rnnfast.init_params("rnn", 3, 2, dtype=dtype)


def test_init_params_negative_seed():
    with pytest.raises(ValueError, match=E("seed:", "got -1")):
        rnnfast.init_params("rnn", 3, 2, seed=-1)


def test_unhashable_cell(rnn):
    params, x, _ = rnn
    with pytest.raises(ValueError, match=E("cell:", "got ['rnn']")):
        fwd(["rnn"], params, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_one_bad_entry_anywhere(dtype, bad):
    from rnnfast._finite import all_finite

    rng = np.random.default_rng(0)
    for n in (1, 7, 64, 1000):
        a = rng.standard_normal(n).astype(dtype)
        assert all_finite(a) and all_finite(a[::2]) and all_finite(a.reshape(-1, 1).T)
        for pos in {0, n // 2, n - 1}:
            b = a.copy()
            b[pos] = bad
            assert not all_finite(b), (n, pos)
            assert not all_finite(b.reshape(1, -1)[:, ::-1]), (n, pos)  # not contiguous
    big = np.full((3, 4), np.finfo(dtype).max, dtype)  # huge but finite
    assert all_finite(big) and all_finite(np.zeros(0, dtype))
