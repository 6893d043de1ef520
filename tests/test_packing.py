"""rnnfast.packing: pad_sequences / unpad round trips and errors, to_packed / from_packed
against torch's PackedSequence, and a list of sequences through a layer against torch's
pack_sequence -> module."""

import numpy as np
import pytest

import rnnfast
from rnnfast import from_packed, pad_sequences, to_packed, unpad


def _seqs(lengths=(3, 1, 5, 2), I=4, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((L, I)).astype(dtype) for L in lengths]


@pytest.mark.parametrize("batch_first", [False, True])
def test_pad_unpad_round_trip(batch_first):
    seqs = _seqs()
    x, lengths = pad_sequences(seqs, batch_first=batch_first)
    assert x.shape == ((4, 5, 4) if batch_first else (5, 4, 4))
    assert x.dtype == np.float64 and x.flags.c_contiguous
    assert lengths.dtype == np.int64 and lengths.tolist() == [3, 1, 5, 2]
    xt = x.transpose(1, 0, 2) if batch_first else x  # (T, B, I)
    for b, s in enumerate(seqs):
        np.testing.assert_array_equal(xt[: len(s), b], s)
        assert not xt[len(s) :, b].any()  # right-padded with zeros
    back = unpad(x, lengths, batch_first=batch_first)
    assert len(back) == len(seqs)
    for a, s in zip(back, seqs, strict=True):
        np.testing.assert_array_equal(a, s)
        assert np.shares_memory(a, x)  # views, as documented
    assert not any(np.shares_memory(x, s) for s in seqs)  # x is a new array


def test_pad_sequences_dtype_and_torch_inputs():
    torch = pytest.importorskip("torch")
    seqs = _seqs(dtype=np.float32)
    x, _ = pad_sequences(seqs)
    assert x.dtype == np.float32
    x64, _ = pad_sequences(seqs, dtype=np.float64)
    assert x64.dtype == np.float64
    np.testing.assert_array_equal(x64, x)
    # mixed float dtypes are fine once dtype says what to convert to
    mixed, _ = pad_sequences([seqs[0], seqs[1].astype(np.float64)], dtype="float32")
    assert mixed.dtype == np.float32
    # torch tensors, also ones that require grad, give the same as their numpy data
    tensors = [torch.from_numpy(s).requires_grad_(True) for s in seqs]
    xt, lt = pad_sequences(tensors, batch_first=True)
    np.testing.assert_array_equal(xt, x.transpose(1, 0, 2))
    assert lt.tolist() == [3, 1, 5, 2]
    # torch's own padding agrees
    expected = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(s) for s in seqs])
    np.testing.assert_array_equal(x, expected.numpy())


def test_unpad_without_lengths_and_other_ranks():
    out = np.arange(12.0).reshape(3, 4)  # (T, B): one value per step
    parts = unpad(out, None)
    assert len(parts) == 4 and all(p.shape == (3,) for p in parts)
    np.testing.assert_array_equal(parts[1], [1.0, 5.0, 9.0])
    parts = unpad(out, [1, 3, 2], batch_first=True)  # (B, T) = (3, 4)
    np.testing.assert_array_equal(parts[1], [4.0, 5.0, 6.0])
    assert [len(p) for p in parts] == [1, 3, 2]


@pytest.mark.parametrize(
    "seqs, message",
    [
        ([], "seqs: expected at least one sequence, got an empty list"),
        (np.zeros((3, 2, 4)), "seqs: expected a list of arrays \\(L, I\\), got ndarray"),
        ([np.zeros((2, 4)), np.zeros(3)], r"seqs\[1\]: expected a 2-D array \(L, I\), got 1-D"),
        ([np.zeros((2, 4)), np.zeros((3, 3))], r"seqs\[1\]: expected I=4 features .*\(3, 3\)"),
        ([np.zeros((2, 4)), np.zeros((0, 4))], r"seqs\[1\]: expected at least 1 step"),
        (
            [np.zeros((2, 4)), np.zeros((1, 4), np.float32)],
            r"seqs\[1\]: expected dtype float64 \(as seqs\[0\]\), got float32",
        ),
        ([np.zeros((2, 4), np.int64)], r"seqs\[0\]: expected float data, got int64"),
        ([np.zeros((2, 4), bool)], r"seqs\[0\]: expected float data, got bool"),
    ],
    ids=["empty", "ndarray", "1d", "features", "zero-length", "dtypes", "int", "bool"],
)
def test_pad_sequences_errors(seqs, message):
    with pytest.raises(ValueError, match=message) as info:
        pad_sequences(seqs)
    assert "\n" not in str(info.value)


def test_pad_sequences_argument_errors():
    with pytest.raises(ValueError, match="dtype: expected a float dtype, got int32"):
        pad_sequences(_seqs(), dtype=np.int32)
    with pytest.raises(ValueError, match="batch_first: expected True or False"):
        pad_sequences(_seqs(), batch_first="yes")


def test_unpad_errors():
    out = np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, T=5\], got 6 at"):
        unpad(out, [2, 6])
    with pytest.raises(ValueError, match=r"lengths: expected \(2,\) integers, got float64"):
        unpad(out, [2.0, 3.0])
    with pytest.raises(ValueError, match=r"lengths: expected \(5,\) integers"):
        unpad(out, [2, 3], batch_first=True)  # (B, T) = (5, 2)
    with pytest.raises(ValueError, match=r"out: expected an array \(T, B, \.\.\.\) .* 1-D"):
        unpad(np.zeros(5), [1])


@pytest.mark.parametrize("batch_first", [False, True])
def test_to_packed_matches_torch(batch_first):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence

    x, lengths = pad_sequences(_seqs(), batch_first=batch_first)
    packed = to_packed(x, lengths, batch_first=batch_first)
    expected = pack_padded_sequence(
        torch.from_numpy(x), torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
    )
    assert isinstance(packed, torch.nn.utils.rnn.PackedSequence)
    for field in ("data", "batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(packed, field), getattr(expected, field)), field
    # a tensor x and tensor lengths work too
    again = to_packed(torch.from_numpy(x), torch.tensor(lengths), batch_first=batch_first)
    assert torch.equal(again.data, expected.data)


def test_from_packed_of_pack_sequence_equals_pad_sequences():
    torch = pytest.importorskip("torch")
    seqs = _seqs(dtype=np.float32)
    packed = torch.nn.utils.rnn.pack_sequence([torch.from_numpy(s) for s in seqs], False)
    for batch_first in (False, True):
        x, lengths = from_packed(packed, batch_first=batch_first)
        ex, elengths = pad_sequences(seqs, batch_first=batch_first)
        assert x.dtype == np.float32 and lengths.dtype == np.int64
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(lengths, elengths)  # the original, unsorted order


def test_to_packed_from_packed_round_trip():
    pytest.importorskip("torch")
    x, lengths = pad_sequences(_seqs(lengths=(2, 6, 6, 1)), batch_first=True)
    x2, lengths2 = from_packed(to_packed(x, lengths, batch_first=True), batch_first=True)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(lengths2, lengths)


def test_packing_errors():
    torch = pytest.importorskip("torch")
    x = np.zeros((4, 2, 3))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, T=4\], got 0"):
        to_packed(x, [0, 2])
    with pytest.raises(ValueError, match=r"lengths: expected \(2,\) integers in \[1, T=4\]"):
        to_packed(x, None)
    with pytest.raises(ValueError, match=r"x: expected an array \(B, T, \.\.\.\)"):
        to_packed(np.zeros(3), [1], batch_first=True)
    with pytest.raises(ValueError, match="packed: expected a torch.nn.utils.rnn.PackedSequence"):
        from_packed(torch.zeros(3, 2, 1))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_sequences_through_a_layer_match_torch_pack_sequence(cell, backend, torch):
    # the user's path: a list of sequences -> pad_sequences -> layer(x, lengths) -> unpad
    from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

    torch.manual_seed(0)
    module = getattr(torch.nn, {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell])(
        4, 3, 2, bidirectional=True, batch_first=True, dtype=torch.float64
    )
    layer = rnnfast.RecurrentLayer.from_torch(module, backend=backend)
    seqs = _seqs(lengths=(3, 1, 6, 2, 6))
    x, lengths = pad_sequences(seqs, batch_first=True)
    out, state = layer(x, lengths=lengths)
    tout, tstate = module(pack_sequence([torch.from_numpy(s) for s in seqs], False))
    texp, _ = pad_packed_sequence(tout, batch_first=True)
    for ours, s, theirs in zip(unpad(out, lengths, batch_first=True), seqs, texp, strict=True):
        assert ours.shape == (len(s), 6)
        np.testing.assert_allclose(ours, theirs[: len(s)].detach(), rtol=1e-9, atol=1e-12)
    h_n, th_n = (state[0], tstate[0]) if cell == "lstm" else (state, tstate)
    np.testing.assert_allclose(h_n, th_n.detach(), rtol=1e-9, atol=1e-12)
