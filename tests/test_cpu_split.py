"""The CPU backend's batch chunks (rnnfast/cpu/_chunks.py, rnnfast/cpu/_split.py): nchunks = 2
and 3 against nchunks = 1 (the serial path) and the NumPy reference, for every cell, depth,
direction, bias and dtype; odd batches, batches not divisible by nchunks, fewer columns than
chunks; the policy, the BLAS thread limit, concurrent callers and the fused training loop."""

import multiprocessing
import os
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import rnnfast
import rnnfast.cpu as cpu
import rnnfast.cpu.trainer as cpu_trainer
import rnnfast.training as training
from rnnfast.config import resolve
from rnnfast.cpu import _split
from rnnfast.params import Spec, infer_spec
from rnnfast.run_setup import RunSetup
from rnnfast.tasks.idx import write_idx

TOL = {np.float64: (1e-12, 1e-13), np.float32: (2e-5, 2e-6)}  # (rtol, atol scaled by max |v|)
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def run_cpu(case, nchunks):
    """(out, states, grads) through rnnfast.cpu with a forced chunk count."""
    spec = infer_spec(case.cell, case.params)
    lstm = case.cell == "lstm"
    out, h_n, c_n, data = cpu.forward(spec, case.nonlinearity, case.params, case.x, case.h0,
                                      case.c0 if lstm else None, nchunks=nchunks)  # fmt: skip
    assert data.nchunks == min(nchunks, case.x.shape[1])
    grads = cpu.backward(spec, case.nonlinearity, case.params, data, case.dout, case.dh,
                         case.dc if lstm else None)  # fmt: skip
    return out, ([h_n, c_n] if lstm else [h_n]), grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layers, bi", [(1, False), (1, True), (2, False), (2, True)])
@pytest.mark.parametrize("cell, nl", CELLS, ids=[f"{c}-{n}" for c, n in CELLS])
def test_chunks_match_serial_and_reference(cell, nl, layers, bi, bias, dtype, make_case,
                                           run_rnnfast, results_close):  # fmt: skip
    case = make_case(cell=cell, nonlinearity=nl, T=4, B=7, I=3, H=5, num_layers=layers,
                     bidirectional=bi, bias=bias, dtype=dtype, seed=11)  # fmt: skip
    rtol, atol = TOL[dtype]
    serial = run_cpu(case, 1)
    results_close(serial, run_rnnfast(case, "reference"), rtol, atol)
    for nchunks in (2, 3):  # 7 columns: 3 + 4 and 2 + 2 + 3
        got = run_cpu(case, nchunks)
        results_close(got, serial, rtol, atol)
        results_close(got, run_rnnfast(case, "reference"), rtol, atol)


@pytest.mark.parametrize("B, nchunks", [(1, 2), (2, 3), (3, 3), (5, 2), (5, 4), (64, 3)])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_batch_sizes_and_more_chunks_than_columns(cell, B, nchunks, make_case, results_close):
    case = make_case(cell=cell, T=3, B=B, I=2, H=6, num_layers=2, bidirectional=True,
                     dtype=np.float64, seed=B)  # fmt: skip
    got = run_cpu(case, nchunks)  # more chunks than columns: one column each
    results_close(got, run_cpu(case, 1), *TOL[np.float64])


def test_chunked_results_are_reproducible_and_depend_on_nchunks_only(make_case):
    case = make_case(cell="lstm", T=6, B=50, I=7, H=24, num_layers=2, dtype=np.float32, seed=2)
    a, b = run_cpu(case, 3), run_cpu(case, 3)
    np.testing.assert_array_equal(a[0], b[0])
    for key in a[2]:
        np.testing.assert_array_equal(a[2][key], b[2][key], err_msg=key)


@pytest.mark.parametrize("H", [5, 96], ids=["serial-sum", "parallel-sum"])
def test_partial_gradients_summed_serially_or_in_parallel(H, make_case, results_close):
    """Chunk gradients are added by the main thread below SERIAL_SUM_MAX elements and by all
    threads above it (LSTM H=96, I=8, two layers: about 120,000 recurrent parameters)."""
    from rnnfast.cells import CELL_LSTM
    from rnnfast.cpu._chunks import SERIAL_SUM_MAX, param_count

    case = make_case(cell="lstm", T=3, B=9, I=8, H=H, num_layers=2, dtype=np.float64, seed=H)
    big = param_count(CELL_LSTM, 2, 1, 8, H) >= SERIAL_SUM_MAX
    assert big == (H == 96)
    want = run_cpu(case, 1)
    for nchunks in (2, 3):
        got = run_cpu(case, nchunks)
        results_close(got, want, *TOL[np.float64])
        again = run_cpu(case, nchunks)
        for key in got[2]:
            np.testing.assert_array_equal(got[2][key], again[2][key], err_msg=key)


def test_nchunks_is_validated(make_case):
    case = make_case(cell="gru", B=4)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="nchunks: expected an integer >= 1 or None"):
            run_cpu(case, bad)


def test_policy_small_work_is_serial_and_chunks_keep_enough_columns():
    assert _split.split_chunks("rnn", 4, 200, 5) == 1  # 5 * 4 * 12 * 200 < SPLIT_MIN_WORK
    assert _split.split_chunks("lstm", 100, 100, 28, threads=1) == 1
    for B in (4, 8, 9, 100, 1000):
        n = _split.split_chunks("lstm", 100, B, 28)
        assert 1 <= n <= max(1, B // _split.MIN_CHUNK_COLUMNS)
        assert n <= _split.numba.get_num_threads()


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_one_blas_thread_limits_and_restores_also_on_errors():
    before = _blas_threads()
    with _split.one_blas_thread():
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before
    with pytest.raises(KeyError), _split.one_blas_thread():
        raise KeyError("boom")
    assert _blas_threads() == before
    with _split.one_blas_thread(active=False):
        assert _blas_threads() == before


def test_one_blas_thread_limits_from_any_python_thread():
    """threadpoolctl >= 3.6 ignores OpenBLAS limits set from a thread other than the first
    one that set any; the direct calls must not (Dask and executor threads call the kernels)."""
    import threading

    before, seen = _blas_threads(), []

    def worker():
        with _split.one_blas_thread():
            seen.append(_blas_threads())

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert seen and set(seen[0]) == {1}
    assert _blas_threads() == before


def test_split_calls_leave_blas_threads_and_agree_across_python_threads(make_case):
    """Two Python threads calling chunked forward/backward at once (OpenBLAS called from
    several Numba threads, the limit taken and restored around each call)."""
    before = _blas_threads()
    case = make_case(cell="lstm", T=5, B=40, I=6, H=32, dtype=np.float64, seed=5)
    want = run_cpu(case, 2)
    got, errors = [], []

    def worker():
        try:
            for _ in range(5):
                got.append(run_cpu(case, 2))
        except Exception as e:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 10
    for out, _, grads in got:
        np.testing.assert_array_equal(out, want[0])
        for key in grads:
            np.testing.assert_array_equal(grads[key], want[2][key], err_msg=key)
    assert _blas_threads() == before


def test_default_policy_through_the_public_api(make_case, results_close):
    case = make_case(cell="gru", T=5, B=64, I=4, H=48, dtype=np.float64, seed=9)
    spec = infer_spec("gru", case.params)
    out, _, cache = rnnfast.forward("gru", case.params, case.x, case.h0)
    assert cache.data.nchunks == cpu.num_chunks(spec, 5, 64)
    results_close(run_cpu(case, cache.data.nchunks), run_cpu(case, 1), *TOL[np.float64])


def _forward_in_child(args):
    params, x = args
    out, _, cache = rnnfast.forward("lstm", params, x)
    return out, cache.data.nchunks


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_runs_serially_after_the_parent_ran_chunks():
    """GNU OpenMP aborts parallel regions in a child forked after the parent used it: such a
    child must take the serial path (and give the same outputs)."""
    params = rnnfast.init_params("lstm", 6, 40, dtype="float64", seed=1)
    x = np.random.default_rng(0).standard_normal((6, 64, 6))
    out, _, cache = rnnfast.forward("lstm", params, x)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child_out, child_chunks = pool.apply_async(_forward_in_child, ((params, x),)).get(120)
    parallel = numba.threading_layer() != "omp"
    assert child_chunks == (cache.data.nchunks if parallel else 1)
    np.testing.assert_allclose(child_out, out, rtol=1e-12)


# ------------------------------------------------------------------ the fused training loop


def _trainer(monkeypatch, nchunks: int, **cfg):
    monkeypatch.setattr(cpu_trainer, "train_chunks", lambda cfg, spec, steps, batch: nchunks)
    tr = cpu_trainer.CpuTrainer(RunSetup(resolve(cfg)))
    assert tr.nchunks == nchunks
    return tr


def _run(tr, updates: int):
    data = tr.setup.epoch_data(1)
    losses, errors = np.empty(updates), np.empty(updates)
    assert tr.run_updates(data, 0, updates, 0, losses, errors) == updates
    return losses, tr.setup.theta.copy()


@pytest.mark.parametrize("cell, layers", [("lstm", 1), ("gru", 2), ("rnn", 2)])
def test_training_chunks_match_serial(monkeypatch, cell, layers):
    """Carried state (tf truncation), a loss at every step, float64: 1 vs 3 chunks."""
    cfg = {"task": "dependency", "sequence_length": 2_000, "batch_size": 10, "cell": cell,
           "num_layers": layers, "hidden_size": 6, "dtype": "float64", "optimizer": "adam",
           "lr": 0.01}  # fmt: skip
    serial = _run(_trainer(monkeypatch, 1, **cfg), 12)
    chunked = _run(_trainer(monkeypatch, 3, **cfg), 12)
    np.testing.assert_allclose(chunked[0], serial[0], rtol=1e-10)
    np.testing.assert_allclose(chunked[1], serial[1], rtol=1e-9, atol=1e-12)
    again = _run(_trainer(monkeypatch, 3, **cfg), 12)
    np.testing.assert_array_equal(again[0], chunked[0])
    np.testing.assert_array_equal(again[1], chunked[1])


def test_training_true_truncation_chunks_match_serial(monkeypatch):
    cfg = {"task": "dependency", "sequence_length": 600, "batch_size": 4, "num_steps": 5,
           "truncation": "true", "hidden_size": 5, "dtype": "float64"}  # fmt: skip
    serial = _run(_trainer(monkeypatch, 1, **cfg), 6)
    chunked = _run(_trainer(monkeypatch, 2, **cfg), 6)
    np.testing.assert_allclose(chunked[0], serial[0], rtol=1e-10)
    np.testing.assert_allclose(chunked[1], serial[1], rtol=1e-9, atol=1e-12)


def _write_mnist(directory, n_train=120, n_test=45, seed=0):
    """Tiny IDX files (noise with two bright label-dependent columns)."""
    rng = np.random.default_rng(seed)
    for split_, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for k, lab in enumerate(labels):
            images[k, :, 4 + 2 * int(lab) : 6 + 2 * int(lab)] = 255
        write_idx(directory / f"{split_}-images-idx3-ubyte", images)
        write_idx(directory / f"{split_}-labels-idx1-ubyte", labels)


def test_mnist_bidirectional_training_and_accuracy_chunks_match_serial(monkeypatch, tmp_path):
    """Two bidirectional layers, the head on the last step, test accuracy in chunks too."""
    _write_mnist(tmp_path)
    cfg = {"task": "mnist", "data_dir": str(tmp_path), "train_size": 120, "batch_size": 20,
           "cell": "lstm", "num_layers": 2, "bidirectional": True, "hidden_size": 5,
           "dtype": "float64", "lr": 1e-2, "eval_batch": 13}  # fmt: skip
    results = []
    for nchunks in (1, 3):
        tr = _trainer(monkeypatch, nchunks, **cfg)
        results.append((*_run(tr, 6), tr.evaluate(0)[1]))
    (l1, t1, a1), (l3, t3, a3) = results
    np.testing.assert_allclose(l3, l1, rtol=1e-10)
    np.testing.assert_allclose(t3, t1, rtol=1e-9, atol=1e-12)
    assert a3 == a1


def test_chunked_training_gives_the_same_curve_twice(monkeypatch):
    monkeypatch.setattr(cpu_trainer, "TRAIN_SPLIT_MIN_WORK", 0)  # the policy, forced to chunk
    cfg = {"task": "dependency", "sequence_length": 20_000, "hidden_size": 16, "dtype": "float32"}
    c = resolve(cfg)
    spec = Spec(c["cell"], 2, c["hidden_size"], c["num_layers"], c["bidirectional"], c["bias"],
                np.dtype(c["dtype"]))  # fmt: skip
    assert cpu_trainer.train_chunks(c, spec, 5, 200) == min(numba.get_num_threads(), 50)
    a, b = training.train(cfg), training.train(cfg)
    assert a.status == b.status == "ok"
    np.testing.assert_array_equal(a.curves["value"].to_numpy(), b.curves["value"].to_numpy())
