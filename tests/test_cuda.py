"""The CUDA backend against the CPU backend: kernels, fused training, whole-grid launches.

In CI these run on the CUDA simulator (conftest.py sets NUMBA_ENABLE_CUDASIM=1; tiny shapes,
it is slow). With RNNFAST_TEST_GPU=1 they run on the real GPU. The kernels need no grid-wide
synchronisation (blocks own batch columns or runs), so several blocks are exact on the
simulator too; test_multi_block makes sure several blocks are used.
"""

import os
import subprocess
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest

import rnnfast
from rnnfast.cuda import unavailable_reason

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"{unavailable_reason()}"
)  # CI installs rnnfast[cuda] and runs the simulator, so these always run there


def _case(cell, L, bi, bias, dtype, T=3, B=3, I=2, H=3, seed=0):
    rng = np.random.default_rng(seed)
    p = rnnfast.init_params(cell, I, H, num_layers=L, bidirectional=bi, bias=bias, dtype=dtype,
                            seed=seed + 1)  # fmt: skip
    D = 2 if bi else 1

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    st = (r(L * D, B, H), r(L * D, B, H)) if cell == "lstm" else r(L * D, B, H)
    ds = (r(L * D, B, H), r(L * D, B, H)) if cell == "lstm" else r(L * D, B, H)
    return p, r(T, B, I), st, r(T, B, D * H), ds


def _run(cell, case, backend, nonlinearity="tanh"):
    p, x, st, dout, ds = case
    out, state, cache = rnnfast.forward(cell, p, x, st, nonlinearity=nonlinearity, backend=backend)
    grads = rnnfast.backward(cell, p, cache, dout, ds, backend=backend)
    return out, state, grads


def _assert_close(a, b, rtol):
    oa, sa, ga = a
    ob, sb, gb = b
    assert oa.dtype == ob.dtype
    np.testing.assert_allclose(ob, oa, rtol=rtol, atol=rtol)
    sa, sb = (sa, sb) if isinstance(sa, tuple) else ((sa,), (sb,))
    for x, y in zip(sa, sb, strict=True):
        np.testing.assert_allclose(y, x, rtol=rtol, atol=rtol)
    assert ga.keys() == gb.keys()
    for k in ga:
        scale = max(1.0, float(np.max(np.abs(ga[k]))))
        np.testing.assert_allclose(gb[k], ga[k], rtol=rtol, atol=rtol * scale, err_msg=k)


CASES = list(product(["rnn", "lstm", "gru"], [1, 2], [False, True], [True, False]))


@pytest.mark.parametrize("cell,L,bi,bias", CASES)
def test_kernels_match_cpu_float64(cell, L, bi, bias):
    case = _case(cell, L, bi, bias, np.float64)
    _assert_close(_run(cell, case, "cpu"), _run(cell, case, "cuda"), 1e-9)


@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_rnn_nonlinearities(act):
    case = _case("rnn", 2, True, True, np.float64)
    _assert_close(_run("rnn", case, "cpu", act), _run("rnn", case, "cuda", act), 1e-9)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_stays_float32(cell):
    case = _case(cell, 1, False, True, np.float32, T=2, B=2, I=1, H=2)
    a, b = _run(cell, case, "cpu"), _run(cell, case, "cuda")
    assert b[0].dtype == np.float32 and all(g.dtype == np.float32 for g in b[2].values())
    _assert_close(a, b, 1e-4)


def test_multi_block(monkeypatch):
    """B = 7 columns over blocks of 2 (the last one short): blocks must not interfere."""
    import rnnfast.cuda._api as api

    monkeypatch.setattr(api, "MAX_THREADS", 32)
    blocks, threads, bc = api.launch_shape(16, 7)
    assert (blocks, threads, bc) == (4, 32, 2)
    case = _case("lstm", 2, True, True, np.float64, T=2, B=7, I=2, H=16)
    _assert_close(_run("lstm", case, "cpu"), _run("lstm", case, "cuda"), 1e-9)


def test_tiny_edge_shapes():
    case = _case("gru", 1, True, True, np.float64, T=1, B=1, I=1, H=1)
    _assert_close(_run("gru", case, "cpu"), _run("gru", case, "cuda"), 1e-9)


def test_cache_is_tied_to_its_backend():
    p, x, st, dout, ds = _case("rnn", 1, False, True, np.float64)
    _, _, cache = rnnfast.forward("rnn", p, x, st, backend="cuda")
    with pytest.raises(ValueError, match="made by backend 'cuda'"):
        rnnfast.backward("rnn", p, cache, dout, ds, backend="cpu")


# ---------------------------------------------------------------- training
DEP = dict(task="dependency", cell="rnn", hidden_size=3, num_steps=3, batch_size=2,
           sequence_length=48, epochs=2, optimizer="adagrad", lr=0.1, seed=1,
           dtype="float64")  # fmt: skip


def _same_run(cpu, gpu, rtol=1e-9):
    assert gpu.status == cpu.status
    assert list(gpu.curves.step) == list(cpu.curves.step)
    assert list(gpu.curves.metric) == list(cpu.curves.metric)
    np.testing.assert_allclose(gpu.curves.value, cpu.curves.value, rtol=rtol)
    for k in cpu.params:
        np.testing.assert_allclose(gpu.params[k], cpu.params[k], rtol=rtol, atol=rtol, err_msg=k)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"cell": "gru", "optimizer": "adam", "lr": 0.01, "truncation": "true"},
        {"cell": "lstm", "optimizer": "sgd", "momentum": 0.9, "clip": 0.05, "num_layers": 2},
        {"cell": "rnn", "optimizer": "rmsprop", "lr": 0.01, "bias": False, "truncation": "true"},
    ],
    ids=["rnn-adagrad", "gru-adam-true", "lstm2-sgd-clip", "rnn-rmsprop-nobias-true"],
)
def test_training_curve_matches_cpu(extra):
    cfg = dict(DEP, **extra)
    _same_run(rnnfast.train(cfg), rnnfast.train(dict(cfg, backend="cuda")))


def test_addition_matches_cpu():
    cfg = dict(
        task="addition", bits=4, largest=8, updates=6, hidden_size=4, seed=3, dtype="float64"
    )
    cpu, gpu = rnnfast.train(cfg), rnnfast.train(dict(cfg, backend="cuda"))
    _same_run(cpu, gpu)
    assert "error" in set(gpu.curves.metric)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    from test_training import write_mnist  # tiny synthetic IDX files

    d = tmp_path_factory.mktemp("mnist")
    write_mnist(d)
    return d


def test_mnist_matches_cpu(mnist_dir):
    """Two-directional lstm, loss on the last step only."""
    cfg = dict(task="mnist", cell="lstm", hidden_size=2, batch_size=2, train_size=4, epochs=1,
               bidirectional=True,
               data_dir=str(mnist_dir), dtype="float64", optimizer="adam", lr=0.01)  # fmt: skip
    cpu, gpu = rnnfast.train(cfg), rnnfast.train(dict(cfg, backend="cuda"))
    _same_run(cpu, gpu)
    assert gpu.final["test_accuracy"] == cpu.final["test_accuracy"]


def test_float32_training_close_to_cpu():
    cfg = dict(DEP, dtype="float32", epochs=1)
    cpu, gpu = rnnfast.train(cfg), rnnfast.train(dict(cfg, backend="cuda"))
    _same_run(cpu, gpu, rtol=1e-4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_divergence_is_reported_like_cpu():
    cfg = dict(DEP, optimizer="sgd", lr=1e30, cell="rnn", nonlinearity="relu", epochs=1)
    cpu, gpu = rnnfast.train(cfg), rnnfast.train(dict(cfg, backend="cuda"))
    assert cpu.status == "diverged"
    assert gpu.status == "diverged" and gpu.message == cpu.message
    assert len(gpu.curves) == len(cpu.curves)


def test_group_trains_each_run_as_alone():
    from rnnfast.cuda.training import train_group

    cfgs = [dict(DEP, seed=s, lr=lr, epochs=1) for s, lr in [(0, 0.1), (1, 0.3), (2, 0.05)]]
    together = train_group(cfgs)
    for cfg, res in zip(cfgs, together, strict=True):
        assert res.config["seed"] == cfg["seed"]
        _same_run(rnnfast.train(cfg), res)


def test_group_rejects_different_shapes():
    from rnnfast.cuda.training import train_group

    with pytest.raises(ValueError, match=r"these keys differ: \['hidden_size'\]"):
        train_group([DEP, dict(DEP, hidden_size=4)])


def test_grid_on_cuda(tmp_path):
    from click.testing import CliRunner

    from rnnfast.cli import main
    from rnnfast.store import load_results

    grid = tmp_path / "g.toml"
    grid.write_text(
        'name = "tiny"\ntask = "dependency"\n[fixed]\nhidden_size = 3\nnum_steps = 3\n'
        'batch_size = 2\nsequence_length = 24\nepochs = 1\ndtype = "float64"\n'
        "[grid]\nseed = [0, 1]\nlr = [0.1, 0.2]\n"
    )
    res = CliRunner().invoke(main, ["run", "grid", str(grid), "--results", str(tmp_path / "r"),
                                    "--backend", "cuda", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    runs, curves = load_results(tmp_path / "r")
    assert len(runs) == 4 and set(runs.status) == {"ok"}
    assert set(runs["backend"]) == {"cuda"}
    cfg = dict(DEP, sequence_length=24, epochs=1, seed=1, lr=0.2)
    alone = rnnfast.train(cfg)
    rid = runs[(runs.seed == 1) & (runs.lr == 0.2)].run_id.item()
    mine = curves[curves.run_id == rid].sort_values("step")
    np.testing.assert_allclose(mine.value.to_numpy(), alone.curves.value.to_numpy(), rtol=1e-9)


def test_without_gpu_the_message_says_what_is_missing(monkeypatch):
    import importlib.util

    import rnnfast.cuda as rc

    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "numba_cuda" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(rc.CudaUnavailable, match=r"pip install 'rnnfast\[cuda\]'"):
        rnnfast.forward("rnn", *_case("rnn", 1, False, True, np.float64)[:2], backend="cuda")


def test_no_gpu_outside_the_simulator():
    """Without the simulator and without a GPU: a clear error, not a crash."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import rnnfast.cuda as c; r = c.unavailable_reason(); "
            "print('GPU' if r is None else r)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()  # fmt: skip
    if out == "GPU":
        pytest.skip("this machine has a CUDA GPU")
    assert "no CUDA GPU" in out or "driver" in out
    for args in (["demo", "--backend", "cuda"], ["run", "one", "--task", "dependency",
                                                 "backend=cuda", "-q"]):  # fmt: skip
        res = subprocess.run([sys.executable, "-m", "rnnfast", *args], capture_output=True,
                             text=True, env=env)  # fmt: skip
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert out in res.stderr


def test_kernels_compile_for_a_real_gpu():
    """NVVM compiles every kernel to sm_90 PTX and, where ptxas is installed, each fits its
    block size in registers (65536 per block)."""
    pytest.importorskip("nvidia.cuda_nvcc", reason="needs the CUDA compiler (rnnfast[cuda])")
    from rnnfast.cuda._api import MAX_THREADS

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    script = Path(__file__).with_name("cuda_ptx_check.py")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).parent.parent)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.split() for line in out.stdout.splitlines()]
    assert {(k, dt) for k, dt, _ in lines} == {
        (k, dt) for k in ("forward_kernel", "backward_kernel", "weight_grad_kernel",
                          "train_kernel") for dt in ("float32", "float64")
    }  # fmt: skip
    for name, dt, regs in lines:
        assert int(regs) * MAX_THREADS <= 65536, (name, dt, regs)
