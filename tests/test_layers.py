"""Layer objects: torch import/export, state dicts, forward/backward through the layer,
batch_first and lengths against torch's pack_padded_sequence -> module -> pad_packed_sequence.

Tests taking `backend` run once per backend (tests/conftest.py parametrises them).
"""

import numpy as np
import pytest

import rnnfast
from rnnfast.layers import GRU, LSTM, RNN, RecurrentLayer

TORCH_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
STRUCTURES = [
    # cell, nonlinearity, num_layers, bidirectional, bias
    ("rnn", "tanh", 1, False, True),
    ("rnn", "relu", 2, True, False),
    ("lstm", "tanh", 2, True, True),
    ("lstm", "tanh", 1, False, False),
    ("gru", "tanh", 2, False, True),
    ("gru", "tanh", 1, True, False),
]


def _torch_module(torch, cell, nonlinearity, num_layers, bidirectional, bias, dtype, I=3, H=5):
    kwargs = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    torch.manual_seed(0)
    return getattr(torch.nn, TORCH_CLASSES[cell])(
        I, H, num_layers, bias=bias, bidirectional=bidirectional, dtype=dtype, **kwargs
    )


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: "-".join(map(str, s)))
def test_from_torch_forward_and_backward_match_torch(structure, backend):
    torch = pytest.importorskip("torch")
    cell, nonlinearity, num_layers, bidirectional, bias = structure
    module = _torch_module(
        torch, cell, nonlinearity, num_layers, bidirectional, bias, torch.float64
    )
    layer = RecurrentLayer.from_torch(module, backend=backend)
    assert type(layer) is {"rnn": RNN, "lstm": LSTM, "gru": GRU}[cell]
    assert layer.nonlinearity == nonlinearity and layer.dtype == np.float64
    assert (layer.num_layers, layer.bidirectional, layer.bias) == (num_layers, bidirectional, bias)

    rng = np.random.default_rng(1)
    T, B, D, L = 4, 3, 2 if bidirectional else 1, num_layers
    x = rng.standard_normal((T, B, 3))
    h0 = rng.standard_normal((L * D, B, 5))
    c0 = rng.standard_normal((L * D, B, 5))
    dout = rng.standard_normal((T, B, D * 5))
    state0 = (h0, c0) if cell == "lstm" else h0

    out, state = layer(x, state0)

    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0, requires_grad=True)
    tstate0 = (th0, torch.tensor(c0)) if cell == "lstm" else th0
    tout, tstate = module(tx, tstate0)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-9, atol=1e-12)
    th_n = tstate[0] if cell == "lstm" else tstate
    h_n = state[0] if cell == "lstm" else state
    np.testing.assert_allclose(h_n, th_n.detach().numpy(), rtol=1e-9, atol=1e-12)

    (tout * torch.tensor(dout)).sum().backward()
    grads = layer.backward(dout)
    np.testing.assert_allclose(grads["x"], tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["h0"], th0.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_to_torch_round_trip_float32(cell):
    torch = pytest.importorskip("torch")
    layer = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[cell](3, 4, 2, bidirectional=True, seed=7)
    module = layer.to_torch()
    assert isinstance(module, getattr(torch.nn, TORCH_CLASSES[cell]))
    assert module.weight_ih_l0.dtype == torch.float32 and not module.batch_first
    back = RecurrentLayer.from_torch(module, backend="reference")
    assert back.dtype == np.float32 and back.spec == layer.spec
    for key, value in layer.params.items():
        np.testing.assert_array_equal(back.params[key], value)

    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    layer.backend = "reference"
    out, _ = layer(x)
    assert out.dtype == np.float32
    tout, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_to_torch_rnn_keeps_nonlinearity_and_rejects_sigmoid():
    pytest.importorskip("torch")
    assert RNN(2, 3, nonlinearity="relu").to_torch().nonlinearity == "relu"
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(2, 3, nonlinearity="sigmoid").to_torch()


def test_from_torch_rejections():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="proj_size"):
        LSTM.from_torch(torch.nn.LSTM(2, 3, proj_size=2))
    with pytest.raises(ValueError, match="torch.nn.GRU"):
        GRU.from_torch(torch.nn.LSTM(2, 3))
    with pytest.raises(ValueError, match="expected a torch.nn.RNN, LSTM or GRU"):
        RecurrentLayer.from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="float32 or float64"):
        RecurrentLayer.from_torch(torch.nn.GRU(2, 3, dtype=torch.float16))
    with pytest.warns(UserWarning, match="dropout"):
        layer = LSTM.from_torch(torch.nn.LSTM(2, 3, num_layers=2, dropout=0.5))
    assert layer.num_layers == 2


def test_load_state_dict_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    module = torch.nn.GRU(2, 3, dtype=torch.float64)
    layer = GRU(2, 3, dtype=np.float64)
    layer.load_state_dict(module.state_dict())
    np.testing.assert_array_equal(layer.params["weight_hh_l0"], module.weight_hh_l0.detach())


def test_state_dict_round_trip_copies():
    a = LSTM(3, 4, 2, bidirectional=True, bias=False, dtype=np.float64, seed=1)
    b = LSTM(3, 4, 2, bidirectional=True, bias=False, dtype=np.float64, seed=2)
    sd = a.state_dict()
    assert sorted(sd) == sorted(
        rnnfast.init_params("lstm", 3, 4, num_layers=2, bidirectional=True, bias=False)
    )
    sd["weight_hh_l1_reverse"][0, 0] = 123.0  # a copy: the layer is untouched
    assert a.params["weight_hh_l1_reverse"][0, 0] != 123.0
    b.load_state_dict(sd)
    np.testing.assert_array_equal(b.params["weight_hh_l1_reverse"], sd["weight_hh_l1_reverse"])
    sd["weight_hh_l1_reverse"][0, 0] = -1.0  # loading copies as well
    assert b.params["weight_hh_l1_reverse"][0, 0] == 123.0
    for key in sd:
        assert b.params[key].dtype == np.float64 and b.params[key].flags.c_contiguous


def test_seed_reproducible_and_matches_init_params():
    a, b = GRU(3, 4, seed=5), GRU(3, 4, seed=5)
    expected = rnnfast.init_params("gru", 3, 4, seed=5)
    for key in expected:
        np.testing.assert_array_equal(a.params[key], b.params[key])
        np.testing.assert_array_equal(a.params[key], expected[key])


def test_load_state_dict_errors():
    layer = LSTM(3, 4, seed=0)
    good = layer.state_dict()
    with pytest.raises(ValueError, match="state_dict: expected a dict"):
        layer.load_state_dict([1, 2])
    with pytest.raises(ValueError, match="missing key"):
        layer.load_state_dict({k: v for k, v in good.items() if k != "bias_hh_l0"})
    with pytest.raises(ValueError, match="unexpected key"):
        layer.load_state_dict({**good, "weight_ih_l9": good["weight_ih_l0"]})
    with pytest.raises(ValueError, match="hidden_size=5"):
        layer.load_state_dict(LSTM(3, 5).state_dict())
    with pytest.raises(ValueError, match="input_size=2"):
        layer.load_state_dict(LSTM(2, 4).state_dict())
    with pytest.raises(ValueError, match="num_layers=2"):
        layer.load_state_dict(LSTM(3, 4, 2).state_dict())
    with pytest.raises(ValueError, match="dtype=float64"):
        layer.load_state_dict(LSTM(3, 4, dtype=np.float64).state_dict())
    with pytest.raises(ValueError, match=r"state_dict: .*weight_hh_l0.*\(16, 4\), got \(12, 4\)"):
        layer.load_state_dict({**good, "weight_hh_l0": good["weight_hh_l0"][:12]})
    with pytest.raises(ValueError):  # the layer of another cell type has other shapes
        layer.load_state_dict(GRU(3, 4).state_dict())
    for key, value in good.items():  # nothing was changed by the failed loads
        np.testing.assert_array_equal(layer.params[key], value)


def test_backward_before_forward_raises(backend):
    layer = RNN(2, 3, backend=backend)
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(np.zeros((1, 1, 3), np.float32))


def test_load_state_dict_drops_the_cache(backend):
    layer = GRU(2, 3, backend=backend)
    layer(np.zeros((2, 1, 2), np.float32))
    layer.load_state_dict(layer.state_dict())
    with pytest.raises(RuntimeError, match="no forward pass"):
        layer.backward(np.zeros((2, 1, 3), np.float32))


def test_layer_equals_functional_api(backend):
    layer = LSTM(3, 4, 2, bidirectional=True, seed=3, backend=backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    dout = rng.standard_normal((5, 2, 8)).astype(np.float32)
    out, (h_n, c_n) = layer(x)
    grads = layer.backward(dout)
    out2, (h2, c2), cache = rnnfast.forward("lstm", layer.params, x, backend=backend)
    grads2 = rnnfast.backward("lstm", layer.params, cache, dout, backend=backend)
    assert out.dtype == np.float32 and grads["x"].dtype == np.float32
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(c_n, c2)
    assert sorted(grads) == sorted(grads2)
    for key in grads:
        np.testing.assert_array_equal(grads[key], grads2[key])


def test_constructor_validation():
    with pytest.raises(ValueError, match="backend"):
        LSTM(2, 3, backend="gpu")
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(2, 3, nonlinearity="gelu")
    with pytest.raises(ValueError, match="hidden_size"):
        GRU(2, 0)
    with pytest.raises(ValueError, match="dtype"):
        GRU(2, 3, dtype=np.int32)
    with pytest.raises(TypeError, match="base class"):
        RecurrentLayer(2, 3)
    with pytest.raises(ValueError, match="batch_first: expected True or False, got 1"):
        GRU(2, 3, batch_first=1)
    assert "LSTM(2, 3, num_layers=1" in repr(LSTM(2, 3))
    assert "batch_first" not in repr(LSTM(2, 3))
    assert "nonlinearity='relu', batch_first=True" in repr(RNN(2, 3, nonlinearity="relu",
                                                               batch_first=True))  # fmt: skip


# ---------------------------------------------------------------- batch_first and lengths

TOL = {np.float64: (1e-9, 1e-12), np.float32: (1e-4, 1e-5)}  # (rtol, atol scaled by max |v|)
LENGTH_STRUCTURES = [
    # cell, nonlinearity, num_layers, bidirectional, batch_first
    ("lstm", "tanh", 1, False, False),
    ("gru", "tanh", 1, False, False),
    ("rnn", "tanh", 1, False, False),
    ("rnn", "relu", 1, True, True),
    ("lstm", "tanh", 2, True, False),
    ("gru", "tanh", 2, True, True),
    ("lstm", "tanh", 2, False, True),
    ("rnn", "tanh", 2, True, False),
]
LENGTHS = [3, 5, 1, 4]  # unsorted, with T = 5 and 1: pack_padded_sequence's edge cases


def _torch_packed(torch, module, x, lengths, state0, dout, dstate):
    """(out, [h_n(, c_n)], grads) of torch's pack_padded_sequence(enforce_sorted=False) ->
    module -> pad_packed_sequence, for loss sum(out * dout) + sum(state * dstate)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    bf = module.batch_first

    def leaf(a):
        return torch.from_numpy(a.copy()).requires_grad_(True)

    tx = leaf(x)
    tstate0 = tuple(leaf(s) for s in state0) if isinstance(state0, tuple) else leaf(state0)
    packed = pack_padded_sequence(tx, torch.tensor(lengths), batch_first=bf, enforce_sorted=False)
    tout, tstate = module(packed, tstate0)
    tout, _ = pad_packed_sequence(tout, batch_first=bf, total_length=x.shape[1 if bf else 0])
    states = list(tstate) if isinstance(tstate, tuple) else [tstate]
    dstates = list(dstate) if isinstance(dstate, tuple) else [dstate]
    loss = (tout * torch.from_numpy(dout)).sum()
    for s, ds in zip(states, dstates, strict=True):
        loss = loss + (s * torch.from_numpy(ds)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    grads["x"] = tx.grad.numpy()
    leaves = tstate0 if isinstance(tstate0, tuple) else (tstate0,)
    for name, s in zip(("h0", "c0"), leaves, strict=False):
        grads[name] = s.grad.numpy()
    return tout.detach().numpy(), [s.detach().numpy() for s in states], grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "structure", LENGTH_STRUCTURES, ids=lambda s: "-".join(map(str, s)).replace("True", "bf")
)
def test_lengths_match_torch_packed(structure, dtype, backend, torch, results_close):
    cell, nonlinearity, num_layers, bidirectional, batch_first = structure
    kwargs = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    torch.manual_seed(0)
    module = getattr(torch.nn, TORCH_CLASSES[cell])(
        3, 4, num_layers, bidirectional=bidirectional, batch_first=batch_first,
        dtype=torch.float64 if dtype == np.float64 else torch.float32, **kwargs,
    )  # fmt: skip
    layer = RecurrentLayer.from_torch(module, backend=backend)
    assert layer.batch_first is batch_first

    rng = np.random.default_rng(2)
    T, B, D = 5, len(LENGTHS), 2 if bidirectional else 1
    TB = (B, T) if batch_first else (T, B)
    sshape = (num_layers * D, B, 4)
    x = rng.standard_normal((*TB, 3)).astype(dtype)
    dout = rng.standard_normal((*TB, D * 4)).astype(dtype)
    h0, dh = (0.5 * rng.standard_normal(sshape)).astype(dtype), rng.standard_normal(sshape)
    if cell == "lstm":
        c0, dc = (0.5 * rng.standard_normal(sshape)).astype(dtype), rng.standard_normal(sshape)
        state0, dstate = (h0, c0), (dh.astype(dtype), dc.astype(dtype))
    else:
        state0, dstate = h0, dh.astype(dtype)
    lengths = np.array(LENGTHS)

    out, state = layer(x, state0, lengths=lengths)
    grads = layer.backward(dout, dstate)
    ours = (out, list(state) if cell == "lstm" else [state], grads)
    theirs = _torch_packed(torch, module, x, lengths, state0, dout, dstate)
    for arr in [out, *ours[1], *grads.values()]:
        assert arr.dtype == dtype
    rtol, atol = TOL[dtype]
    results_close(ours, theirs, rtol, atol)
    # padded steps: zero output, and no gradient reaches padded x
    steps = np.arange(T)[:, None] < lengths[None, :]  # (T, B)
    pad = ~(steps.T if batch_first else steps)
    assert not out[pad].any() and not grads["x"][pad].any()


def test_lengths_all_full_equals_no_lengths(backend):
    layer = GRU(3, 4, 2, bidirectional=True, dtype=np.float64, seed=1, backend=backend)
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 8))
    out, h_n = layer(x)
    grads = layer.backward(dout)
    out2, h2 = layer(x, lengths=np.array([5, 5]))
    grads2 = layer.backward(dout)
    np.testing.assert_allclose(out2, out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h2, h_n, rtol=1e-12, atol=1e-14)
    for key in grads:
        np.testing.assert_allclose(grads2[key], grads[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_batch_first_is_the_transposed_time_major(cell, backend):
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[cell]
    tm = cls(3, 4, 2, bidirectional=True, dtype=np.float64, seed=4, backend=backend)
    bf = cls(3, 4, 2, bidirectional=True, dtype=np.float64, seed=4, backend=backend,
             batch_first=True)  # fmt: skip
    rng = np.random.default_rng(3)
    x, dout = rng.standard_normal((6, 3, 3)), rng.standard_normal((6, 3, 8))
    lengths = np.array([2, 6, 4])
    out, state = tm(x, lengths=lengths)
    grads = tm.backward(dout)
    out_bf, state_bf = bf(x.transpose(1, 0, 2).copy(), lengths=lengths)
    grads_bf = bf.backward(dout.transpose(1, 0, 2).copy())
    assert out_bf.shape == (3, 6, 8) and grads_bf["x"].shape == (3, 6, 3)
    np.testing.assert_allclose(out_bf, out.transpose(1, 0, 2), rtol=1e-12, atol=1e-14)
    for a, b in zip(state if cell == "lstm" else [state],
                    state_bf if cell == "lstm" else [state_bf], strict=True):  # fmt: skip
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads_bf["x"], grads["x"].transpose(1, 0, 2), rtol=1e-12,
                               atol=1e-14)  # fmt: skip
    for key in grads:
        if key != "x":
            np.testing.assert_allclose(grads_bf[key], grads[key], rtol=1e-12, atol=1e-14)


def test_layer_lengths_errors(backend):
    layer = LSTM(3, 4, backend=backend, batch_first=True)
    x = np.zeros((2, 5, 3), np.float32)  # (B, T, I)
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, T=5\], got 6"):
        layer(x, lengths=[6, 1])
    with pytest.raises(ValueError, match=r"lengths: expected \(2,\) integers"):
        layer(x, lengths=[5, 1, 1])
    with pytest.raises(ValueError, match=r"x: expected a 3-D array \(B, T, I=3\)"):
        layer(x[0], lengths=[5, 1])
    layer(x, lengths=[5, 1])
    with pytest.raises(ValueError, match=r"dout: expected shape \(2, 5, 4\)"):
        layer.backward(np.zeros((5, 2, 4), np.float32))  # the time-major layout


def test_batch_first_moves_with_torch():
    torch = pytest.importorskip("torch")
    module = torch.nn.GRU(2, 3, batch_first=True)
    layer = RecurrentLayer.from_torch(module, backend="reference")
    assert layer.batch_first is True and "batch_first=True" in repr(layer)
    assert layer.to_torch().batch_first is True
    assert RecurrentLayer.from_torch(torch.nn.GRU(2, 3)).batch_first is False
    assert LSTM(2, 3, batch_first=True).to_torch().batch_first is True
