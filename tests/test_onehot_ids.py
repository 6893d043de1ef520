"""One-hot inputs as token ids (rnnfast/cpu/_train.py: ONEHOT_IDS_MIN): the layers' gather and
scatter paths against the dense one-hot product, through the chunked drivers (1 and 2 chunks,
every cell, two layers, both directions), and a text run trained both ways."""

import numpy as np
import pytest

import rnnfast
import rnnfast.cpu.trainer as cpu_trainer
from rnnfast.cells import ACT_CODES, CELL_CODES
from rnnfast.cpu._chunks import backward_chunks, chunk_sizes, forward_chunks
from rnnfast.params import infer_spec, packed_layout

T, B, V, H = 7, 6, 11, 5


def _run(cell, nchunks, X, xi, W, woff, lens, L, D):
    """forward_chunks + backward_chunks on X (V, T*B) or the ids xi; returns everything they
    write."""
    dt = W.dtype
    LD, code = L * D, CELL_CODES[cell]
    rng = np.random.default_rng(3)
    h0 = rng.standard_normal((LD, B, H)).astype(dt)
    c0 = rng.standard_normal((LD, B, H)).astype(dt)
    n_saved, n_scratch = chunk_sizes(code, L, D, T, B, V, H, nchunks)
    saved = np.zeros(int(n_saved), dt)
    out = np.zeros((T, B, D * H), dt)
    h_n, c_n = np.zeros((LD, B, H), dt), np.zeros((LD if cell == "lstm" else 0, B, H), dt)
    none3, act = np.empty((0, 0, 0), dt), ACT_CODES["tanh"]
    forward_chunks(code, act, L, D, T, B, V, H, W, woff, h0, c0, saved, nchunks, none3, X, xi,
                   out, np.empty(0, dt), h_n, c_n, lens, False)  # fmt: skip
    dout = rng.standard_normal((T, B, D * H)).astype(dt)
    dh_n = rng.standard_normal((LD, B, H)).astype(dt)
    dc_n = rng.standard_normal((LD, B, H)).astype(dt)
    dW = np.zeros_like(W)
    dh0, dc0 = np.zeros((LD, B, H), dt), np.zeros((LD if cell == "lstm" else 0, B, H), dt)
    backward_chunks(code, act, L, D, T, B, V, H, W, woff, saved, np.zeros(int(n_scratch), dt),
                    nchunks, xi, dout, np.empty(0, dt), dh_n, dc_n, dW, none3, dh0, dc0, lens,
                    False)  # fmt: skip
    return out, h_n, c_n, dW, dh0, dc0


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("nchunks", [1, 2])
@pytest.mark.parametrize("with_lens", [False, True])
def test_ids_match_the_dense_one_hot_product(cell, nchunks, with_lens):
    L, D = 2, 2
    params = rnnfast.init_params(cell, V, H, num_layers=L, bidirectional=True, seed=1)
    spec = infer_spec(cell, params)
    entries, woff = packed_layout(spec)
    W = np.concatenate([params[k].ravel() for k, *_ in entries]).astype(np.float64)
    rng = np.random.default_rng(2)
    xi = rng.integers(0, V, T * B).astype(np.int64)
    xi[[3, 17, 30]] = -1  # zero input columns (before a stream's start)
    X = np.zeros((V, T * B))
    X[xi[xi >= 0], np.flatnonzero(xi >= 0)] = 1.0
    lens = np.array([7, 7, 6, 4, 3, 1]) if with_lens else np.zeros(0, np.int64)
    dense = _run(cell, nchunks, X.ravel(), np.zeros(0, np.int64), W, woff, lens, L, D)
    ids = _run(cell, nchunks, np.empty(0), xi, W, woff, lens, L, D)
    names = ("out", "h_n", "c_n", "dW", "dh0", "dc0")
    for name, a, b in zip(names, dense, ids, strict=True):
        if name == "dW":  # dW_ih's sums run in another order: equal to rounding
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13, err_msg=name)
        else:  # the forward's gather is the product's exact result
            np.testing.assert_array_equal(b, a, err_msg=name)
    assert np.abs(dense[3]).max() > 0


def test_text_training_with_ids_follows_the_dense_run(monkeypatch):
    text = "the cat sat on the mat, the dog sat on the log. " * 40
    cfg = {"task": "text", "hidden_size": 12, "num_steps": 8, "batch_size": 4, "epochs": 2,
           "lr": 0.01, "seed": 3, "dtype": "float64"}  # fmt: skip
    assert len(set(text)) >= cpu_trainer.ONEHOT_IDS_MIN  # this run takes the ids path
    ids = rnnfast.train(cfg, data=text)
    monkeypatch.setattr(cpu_trainer, "ONEHOT_IDS_MIN", 10**9)
    dense = rnnfast.train(cfg, data=text)
    a, b = ids.curves["value"].to_numpy(), dense.curves["value"].to_numpy()  # train + valid
    assert len(a) == len(b) > 10
    np.testing.assert_allclose(a, b, rtol=1e-9)
    valid = ids.curves[ids.curves["metric"] == "valid_loss"]["value"].to_numpy()
    assert np.all(np.isfinite(valid)) and valid[-1] < valid[0]
