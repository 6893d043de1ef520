"""Variable-length sequences: rnnfast.forward / backward with `lengths` against PyTorch's
packed sequences (pack_padded_sequence(enforce_sorted=False) -> module -> pad_packed_sequence),
on every backend of RNNFAST_TEST_BACKENDS (reference and cpu by default).

Every cell and nonlinearity, one and two layers, bidirectional, with and without bias, float64
(1e-9) and float32 (1e-4); within each, several length patterns (a length of 1, lengths in
random order, all equal, B = 1, the longest shorter than T), with and without state0, time-
and batch-major. Compared: out, h_n (c_n) and the gradients of sum(out * dout) +
sum(state * dstate) for every parameter, x, h0 (c0).
"""

import numpy as np
import pytest

import rnnfast
from rnnfast.params import infer_spec

TOL = {np.float64: (1e-9, 1e-12), np.float32: (1e-4, 1e-5)}

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
SHAPES = [(1, False), (1, True), (2, True), (2, False)]  # (num_layers, bidirectional)
PATTERNS = {  # name -> (T, lengths)
    "mixed": (7, [3, 7, 1, 5, 2, 7]),
    "sorted": (6, [6, 5, 5, 2, 1]),
    "equal": (4, [4, 4, 4]),
    "one": (5, [5]),
    "single step": (3, [1]),
    "all short": (6, [2, 4, 3]),  # the longest is shorter than T: trailing all-padded steps
}


def _torch_module(torch, cell, nl, I, H, L, bi, bias, dtype, batch_first):
    kw = dict(num_layers=L, bidirectional=bi, bias=bias, batch_first=batch_first)
    if cell == "rnn":
        m = torch.nn.RNN(I, H, nonlinearity=nl, **kw)
    else:
        m = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H, **kw)
    return m.to(torch.float64 if dtype == np.float64 else torch.float32)


def _run_torch(torch, m, cell, x, lengths, h0, c0, dout, dh, dc, batch_first):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    T = x.shape[1] if batch_first else x.shape[0]
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True) if cell == "lstm" else None
    packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                  enforce_sorted=False)  # fmt: skip
    out, state = m(packed, (h0t, c0t) if cell == "lstm" else h0t)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    states = list(state) if cell == "lstm" else [state]
    total = (out * torch.tensor(dout)).sum() + (states[0] * torch.tensor(dh)).sum()
    if cell == "lstm":
        total = total + (states[1] * torch.tensor(dc)).sum()
    total.backward()
    grads = {k: p.grad.numpy() for k, p in m.named_parameters()}
    grads["x"], grads["h0"] = xt.grad.numpy(), h0t.grad.numpy()
    if cell == "lstm":
        grads["c0"] = c0t.grad.numpy()
    return out.detach().numpy(), [s.detach().numpy() for s in states], grads


def _close(actual, expected, dtype, name):
    rtol, atol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"L{L}" + ("-bi" if b else "") for L, b in SHAPES])
@pytest.mark.parametrize("cell", CELLS, ids=[f"{c}-{n}" for c, n in CELLS])
def test_matches_torch_packed(backend, cell, shape, bias, dtype):
    torch = pytest.importorskip("torch")
    cell, nl = cell
    L, bi = shape
    I, H, D = 3, 4, 2 if bi else 1
    rng = np.random.default_rng(hash((cell, nl, L, bi, bias)) % 2**32)
    for name, (T, lengths) in PATTERNS.items():
        lengths = np.array(lengths)
        if name == "mixed":
            lengths = rng.permutation(lengths)
        B = len(lengths)
        for batch_first in (False, True):
            for with_state0 in (False, True):
                torch.manual_seed(int(rng.integers(1 << 30)))
                m = _torch_module(torch, cell, nl, I, H, L, bi, bias, dtype, batch_first)
                params = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
                xshape = (B, T, I) if batch_first else (T, B, I)
                x = rng.standard_normal(xshape).astype(dtype)
                sshape = (L * D, B, H)
                h0 = rng.standard_normal(sshape) if with_state0 else np.zeros(sshape)
                c0 = rng.standard_normal(sshape) if with_state0 else np.zeros(sshape)
                h0, c0 = h0.astype(dtype), c0.astype(dtype)
                oshape = (B, T, D * H) if batch_first else (T, B, D * H)
                dout = rng.standard_normal(oshape).astype(dtype)
                dh = rng.standard_normal(sshape).astype(dtype)
                dc = rng.standard_normal(sshape).astype(dtype)
                lstm = cell == "lstm"
                state0 = ((h0, c0) if lstm else h0) if with_state0 else None
                out, state, cache = rnnfast.forward(cell, params, x, state0, nonlinearity=nl,
                                                    backend=backend, lengths=lengths,
                                                    batch_first=batch_first)  # fmt: skip
                grads = rnnfast.backward(cell, params, cache, dout, (dh, dc) if lstm else dh,
                                         backend=backend)  # fmt: skip
                t_out, t_states, t_grads = _run_torch(torch, m, cell, x, lengths, h0, c0, dout,
                                                      dh, dc, batch_first)  # fmt: skip
                where = f"{name}, batch_first={batch_first}, state0={with_state0}"
                _close(out, t_out, dtype, f"out ({where})")
                for i, s in enumerate(state if lstm else [state]):
                    _close(s, t_states[i], dtype, f"state[{i}] ({where})")
                if not with_state0:
                    del t_grads["h0"]
                    t_grads.pop("c0", None)
                    grads = {k: v for k, v in grads.items() if k not in ("h0", "c0")}
                assert sorted(grads) == sorted(t_grads)
                for k, v in t_grads.items():
                    assert grads[k].dtype == dtype
                    _close(grads[k], v, dtype, f"grads[{k}] ({where})")


def _case(cell, L, bi, T, B, dtype=np.float64, seed=0):
    params = rnnfast.init_params(cell, 3, 5, num_layers=L, bidirectional=bi, dtype=dtype,
                                 seed=seed)  # fmt: skip
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, 3)).astype(dtype)
    D = 2 if bi else 1
    dout = rng.standard_normal((T, B, D * 5)).astype(dtype)
    return params, x, dout


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_equal_lengths_are_bit_identical_to_none(backend, cell):
    params, x, dout = _case(cell, 2, True, 6, 5, np.float32)
    runs = []
    for lengths in (None, np.full(5, 6)):
        out, state, cache = rnnfast.forward(cell, params, x, backend=backend, lengths=lengths)
        grads = rnnfast.backward(cell, params, cache, dout, backend=backend)
        runs.append((out, state, grads))
    (o1, s1, g1), (o2, s2, g2) = runs
    assert np.array_equal(o1, o2)
    for a, b in zip(s1 if cell == "lstm" else [s1], s2 if cell == "lstm" else [s2], strict=True):
        assert np.array_equal(a, b)
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), k


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_padding_values_do_not_matter(backend, cell):
    """What lies in x and dout beyond each sequence's length changes nothing."""
    params, x, dout = _case(cell, 2, True, 6, 4)
    lengths = np.array([2, 6, 1, 4])
    pad = np.arange(6)[:, None] >= lengths[None, :]  # (T, B)
    x2, dout2 = x.copy(), dout.copy()
    x2[pad] = 1e3
    dout2[pad] = -7.0
    res = []
    for xx, dd in ((x, dout), (x2, dout2)):
        out, state, cache = rnnfast.forward(cell, params, xx, backend=backend, lengths=lengths)
        res.append((out, rnnfast.backward(cell, params, cache, dd, backend=backend)))
    (o1, g1), (o2, g2) = res
    np.testing.assert_allclose(o1, o2, rtol=0, atol=1e-12)
    assert not o1[pad].any()
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-12, err_msg=k)
    assert not g1["x"][pad].any()


@pytest.mark.parametrize("nchunks", [2, 3, 5])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_batch_chunks_match_serial(cell, nchunks):
    """The CPU backend's parallel batch chunks (each with its own columns' lengths) give the
    serial results."""
    import rnnfast.cpu as cpu

    params, x, dout = _case(cell, 2, True, 7, 9)
    lengths = np.array([3, 7, 1, 5, 2, 7, 6, 4, 1])
    spec = infer_spec(cell, params)
    z = np.zeros((4, 9, 5))
    c0 = z if cell == "lstm" else None
    res = []
    for nc in (1, nchunks):
        out, h_n, c_n, data = cpu.forward(spec, "tanh", params, x, z, c0, lengths, False,
                                          nchunks=nc)  # fmt: skip
        res.append((out, h_n, cpu.backward(spec, "tanh", params, data, dout, z, c0)))
    (o1, h1, g1), (o2, h2, g2) = res
    np.testing.assert_allclose(o1, o2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h1, h2, rtol=1e-12, atol=1e-14)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_finite_differences(backend, cell):
    """d/dtheta of sum(out * dout) + sum(h_n * dh) against central differences (float64)."""
    params, x, dout = _case(cell, 2, True, 5, 3, seed=3)
    lengths = np.array([2, 5, 1])
    dh = np.random.default_rng(4).standard_normal((4, 3, 5))

    def loss(p, xx):
        out, state, _ = rnnfast.forward(cell, p, xx, backend=backend, lengths=lengths)
        h = state[0] if cell == "lstm" else state
        return float((out * dout).sum() + (h * dh).sum())

    _, _, cache = rnnfast.forward(cell, params, x, backend=backend, lengths=lengths)
    dstate = (dh, np.zeros_like(dh)) if cell == "lstm" else dh
    grads = rnnfast.backward(cell, params, cache, dout, dstate, backend=backend)
    rng = np.random.default_rng(5)
    eps = 1e-6
    for key in ("weight_ih_l0", "weight_hh_l1_reverse", "bias_hh_l0_reverse", "x"):
        target = x if key == "x" else params[key]
        for idx in map(tuple, rng.integers(0, target.shape, size=(4, target.ndim))):
            old = target[idx]
            target[idx] = old + eps
            up = loss(params, x)
            target[idx] = old - eps
            down = loss(params, x)
            target[idx] = old
            np.testing.assert_allclose(grads[key][idx], (up - down) / (2 * eps), rtol=1e-6,
                                       atol=1e-8, err_msg=f"{key}{idx}")  # fmt: skip


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ([3, 0], r"lengths: expected values in \[1, T=4\], got 0 at index 1"),
        ([3, 5], r"lengths: expected values in \[1, T=4\], got 5 at index 1"),
        ([3], r"lengths: expected \(2,\) integers, got int64 \(1,\)"),
        ([1.0, 2.0], r"lengths: expected \(2,\) integers, got float64 \(2,\)"),
        ([True, True], r"lengths: expected \(2,\) integers, got bool \(2,\)"),
        ([[1, 2]], r"lengths: expected \(2,\) integers, got int64 \(1, 2\)"),
    ],
)
def test_bad_lengths_rejected_in_one_line(lengths, message):
    params = rnnfast.init_params("gru", 3, 5, seed=0)
    x = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match=message):
        rnnfast.forward("gru", params, x, lengths=lengths)


def test_batch_first_shapes_are_checked():
    params = rnnfast.init_params("lstm", 3, 5, seed=0)
    x = np.zeros((2, 4, 3), np.float32)  # (B, T, I)
    out, _, cache = rnnfast.forward("lstm", params, x, batch_first=True, lengths=[4, 2])
    assert out.shape == (2, 4, 5)
    with pytest.raises(ValueError, match=r"dout: expected shape \(2, 4, 5\)"):
        rnnfast.backward("lstm", params, cache, np.zeros((4, 2, 5), np.float32))
    with pytest.raises(ValueError, match="batch_first: expected True or False"):
        rnnfast.forward("lstm", params, x, batch_first="yes")


@pytest.mark.parametrize("nchunks", [1, 2])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_wide_batches_match_the_reference(cell, nchunks):
    """Batches wider than the 16-column step width: each step computes its live columns
    rounded up to 16 and puts the padded ones among them right afterwards."""
    import rnnfast.cpu as cpu

    T, B = 9, 41
    params, x, dout = _case(cell, 2, True, T, B, seed=7)
    rng = np.random.default_rng(8)
    lengths = rng.integers(1, T + 1, B)
    lengths[:3] = 1, T, 4
    spec = infer_spec(cell, params)
    h0 = rng.standard_normal((4, B, 5))
    c0 = rng.standard_normal((4, B, 5)) if cell == "lstm" else None
    dh = rng.standard_normal((4, B, 5))
    dc = rng.standard_normal((4, B, 5)) if cell == "lstm" else None
    out, h_n, c_n, data = cpu.forward(spec, "tanh", params, x, h0, c0, lengths, False,
                                      nchunks=nchunks)  # fmt: skip
    grads = cpu.backward(spec, "tanh", params, data, dout, dh, dc)
    state0 = (h0, c0) if cell == "lstm" else h0
    r_out, r_state, cache = rnnfast.forward(cell, params, x, state0, backend="reference",
                                            lengths=lengths)  # fmt: skip
    r_grads = rnnfast.backward(cell, params, cache, dout, (dh, dc) if cell == "lstm" else dh,
                               backend="reference")  # fmt: skip
    np.testing.assert_allclose(out, r_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n, r_state[0] if cell == "lstm" else r_state, rtol=1e-10,
                               atol=1e-12)  # fmt: skip
    if cell == "lstm":
        np.testing.assert_allclose(c_n, r_state[1], rtol=1e-10, atol=1e-12)
    for k, v in r_grads.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-9, atol=1e-11, err_msg=k)
