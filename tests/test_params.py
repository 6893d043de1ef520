"""init_params: PyTorch's keys, order, shapes and init bounds; seeds and dtypes."""

import numpy as np
import pytest

import rnnfast
from rnnfast.params import Spec, infer_spec, param_shapes

# (cell, input_size, hidden_size, num_layers, bidirectional, bias)
CONFIGS = [
    ("rnn", 1, 1, 1, False, True),
    ("rnn", 5, 3, 3, True, False),
    ("lstm", 3, 4, 2, True, True),
    ("lstm", 7, 1, 1, False, False),
    ("gru", 2, 6, 3, False, True),
    ("gru", 4, 5, 2, True, True),
]
IDS = [
    f"{c}-I{i}H{h}L{n}" + ("-bi" if b else "") + ("" if bias else "-nobias")
    for c, i, h, n, b, bias in CONFIGS
]


def _init(config, **kw):
    cell, i, h, n, bi, bias = config
    return rnnfast.init_params(cell, i, h, num_layers=n, bidirectional=bi, bias=bias, **kw)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_layout_equals_torch_state_dict(config, torch):
    cell, i, h, n, bi, bias = config
    module = getattr(torch.nn, {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell])(
        i, h, num_layers=n, bidirectional=bi, bias=bias
    )
    state = module.state_dict()
    params = _init(config, seed=0)
    assert list(params) == list(state)  # same keys in the same order
    for key, value in state.items():
        assert params[key].shape == tuple(value.shape), key
    # and the parameters load into torch (state dicts move both ways)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    back = {k: v.numpy() for k, v in module.state_dict().items()}
    assert infer_spec(cell, back) == infer_spec(cell, params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key])


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_shapes_without_torch(config):
    cell, i, h, n, bi, bias = config
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    D = 2 if bi else 1
    params = _init(config)
    expected_keys = []
    for layer in range(n):
        for sfx in ["", "_reverse"][:D]:
            expected_keys += [f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}"]
            if bias:
                expected_keys += [f"bias_ih_l{layer}{sfx}", f"bias_hh_l{layer}{sfx}"]
    assert list(params) == expected_keys
    for key, value in params.items():
        layer = int(key.split("_l")[1].split("_")[0])
        if key.startswith("weight_ih"):
            assert value.shape == (G * h, i if layer == 0 else D * h), key
        elif key.startswith("weight_hh"):
            assert value.shape == (G * h, h), key
        else:
            assert value.shape == (G * h,), key
        assert value.flags.c_contiguous


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_infer_spec_round_trip(config):
    cell, i, h, n, bi, bias = config
    for dtype in (np.float32, np.float64):
        params = _init(config, dtype=dtype, seed=2)
        spec = Spec(cell, i, h, n, bi, bias, np.dtype(dtype))
        assert infer_spec(cell, params) == spec
        assert list(param_shapes(spec)) == list(params)


@pytest.mark.parametrize("hidden_size", [1, 4, 50])
def test_bounds(hidden_size):
    params = rnnfast.init_params("lstm", 6, hidden_size, num_layers=2, dtype=np.float64, seed=7)
    bound = 1 / np.sqrt(hidden_size)
    values = np.concatenate([v.ravel() for v in params.values()])
    assert np.all(np.abs(values) <= bound)
    # uniform over the whole interval, not a narrower one
    assert values.max() > 0.9 * bound and values.min() < -0.9 * bound
    assert abs(values.mean()) < 0.1 * bound
    assert 0.5 < values.std() / (bound / np.sqrt(3)) < 1.5  # std of U(-b, b) is b / sqrt(3)


def test_same_seed_identical_different_seeds_differ():
    config = ("gru", 3, 4, 2, True, True)
    a, b, c = _init(config, seed=11), _init(config, seed=11), _init(config, seed=12)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key]), key
    # different tensors get different draws
    assert not np.array_equal(a["weight_hh_l0"], a["weight_hh_l0_reverse"])


def test_no_seed_gives_fresh_draws():
    a = rnnfast.init_params("rnn", 3, 8)
    b = rnnfast.init_params("rnn", 3, 8)
    assert not np.array_equal(a["weight_ih_l0"], b["weight_ih_l0"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", np.dtype("float64")])
def test_dtype_respected(dtype):
    params = rnnfast.init_params("lstm", 3, 2, num_layers=2, bidirectional=True, dtype=dtype)
    for value in params.values():
        assert value.dtype == np.dtype(dtype)


def test_default_dtype_is_float32():
    for value in rnnfast.init_params("rnn", 3, 2).values():
        assert value.dtype == np.float32


def test_float32_and_float64_agree_to_rounding():
    a = _init(CONFIGS[2], dtype=np.float32, seed=5)
    b = _init(CONFIGS[2], dtype=np.float64, seed=5)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key].astype(np.float32))


def test_numpy_integer_sizes_accepted():
    params = rnnfast.init_params("rnn", np.int64(3), np.int32(2), num_layers=np.int16(2))
    assert params["weight_ih_l0"].shape == (2, 3)
    assert params["weight_ih_l1"].shape == (2, 2)
