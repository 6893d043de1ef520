"""The cpu backend's buffer pool: reuse without aliasing between live forward passes."""

import gc

import numpy as np

import rnnfast
from rnnfast.cpu._workspace import POOL, Pool


def _grads(cell, params, x, dout, backend):
    out, _, cache = rnnfast.forward(cell, params, x, backend=backend)
    return out, rnnfast.backward(cell, params, cache, dout, backend=backend)


def test_live_caches_do_not_share_buffers():
    rng = np.random.default_rng(0)
    params = rnnfast.init_params("lstm", 3, 5, num_layers=2, dtype=np.float64, seed=1)
    xa, xb = rng.standard_normal((2, 4, 2, 3))
    dout = rng.standard_normal((4, 2, 5))
    out_a, state_a, cache_a = rnnfast.forward("lstm", params, xa)
    # a second forward of the same shape while cache_a is alive, then its cache dies
    _, _, cache_b = rnnfast.forward("lstm", params, xb)
    del cache_b
    gc.collect()
    _, _, cache_c = rnnfast.forward("lstm", params, xb)  # may reuse cache_b's buffer
    got = rnnfast.backward("lstm", params, cache_a, dout)
    ref_out, ref = _grads("lstm", params, xa, dout, "reference")
    np.testing.assert_allclose(out_a, ref_out, rtol=1e-12)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-10, atol=1e-12, err_msg=key)
    del cache_c


def test_buffers_return_to_the_pool_when_the_cache_dies():
    params = rnnfast.init_params("gru", 2, 3, dtype=np.float32, seed=0)
    x = np.ones((3, 2, 2), np.float32)
    POOL.clear()
    _, _, cache = rnnfast.forward("gru", params, x)
    assert POOL.nbytes == 0
    del cache
    gc.collect()
    held = POOL.nbytes
    assert held > 0
    _, _, cache = rnnfast.forward("gru", params, x)  # takes the pooled buffer again
    assert POOL.nbytes == 0
    del cache


def test_pool_respects_its_limit_and_dtype():
    pool = Pool(max_bytes=100)
    pool.give(np.empty(10, np.float64))  # 80 bytes: kept
    pool.give(np.empty(10, np.float64))  # would exceed 100: dropped
    assert pool.nbytes == 80
    assert pool.take(10, np.float32).dtype == np.float32  # no float64 handed out as float32
    assert pool.nbytes == 80
    a = pool.take(10, np.float64)
    assert a.dtype == np.float64 and a.size == 10 and pool.nbytes == 0
