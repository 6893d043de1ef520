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
from rnnfast.config import resolve
from rnnfast.cuda import unavailable_reason
from rnnfast.run_setup import RunSetup
from rnnfast.seqdata import Data, Evaluation, Form, Split, TaskData
from rnnfast.tasks import Task

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
    assert gpu.final.keys() == cpu.final.keys()
    for k in cpu.final:
        np.testing.assert_allclose(gpu.final[k], cpu.final[k], rtol=rtol, err_msg=k)
    assert gpu.params.keys() == cpu.params.keys()
    for k in cpu.params:
        np.testing.assert_allclose(gpu.params[k], cpu.params[k], rtol=rtol, atol=rtol, err_msg=k)


def _both(cfg, data=None, rtol=1e-9):
    cpu, gpu = rnnfast.train(cfg, data), rnnfast.train(dict(cfg, backend="cuda"), data)
    _same_run(cpu, gpu, rtol)
    assert gpu.info["backend"] == "cuda"
    return cpu, gpu


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
def test_dependency_stream_matches_cpu(extra):
    """One-hot token stream, state carried, truncated BPTT "tf" and "true"."""
    _both(dict(DEP, **extra))


def test_addition_matches_cpu():
    """Dense inputs, one sigmoid output per step, summed squared error, no head bias."""
    cfg = dict(
        task="addition", bits=4, largest=8, updates=6, hidden_size=4, seed=3, dtype="float64"
    )
    _, gpu = _both(cfg)
    assert "error" in set(gpu.curves.metric)


# Tiny in-memory data of each form the loops read, as a plug-in task (config key `case`).
T_STEPS, N_TRAIN = 3, 8


def _form_data(cfg: dict) -> TaskData:
    """case: "quantized" (MNIST-like uint8 * 1/255 inputs, one class per sequence), "reals"
    (dense inputs, C = 2 real outputs per step), "reals_last" (C = 3 reals per sequence),
    "embed" (token ids through an embedding, a class per step). Evaluations in batches that
    leave the last one padded. per_seed: each seed its own data (else all runs share it)."""
    case, T, B = cfg["case"], T_STEPS, cfg["batch_size"]
    rng = np.random.default_rng([cfg["seed"], 9] if cfg["per_seed"] else [9])

    def split(n: int) -> Split:
        if case == "quantized":
            x = rng.integers(0, 256, (n, T * 2), dtype=np.uint8)
            y = rng.integers(0, 3, (n, 1)).astype(np.int32)
        elif case == "embed":
            x = rng.integers(0, 4, (n, T)).astype(np.int32)
            y = rng.integers(0, 3, (n, T)).astype(np.int32)
        else:
            x = rng.standard_normal((n, T * 2))
            y = rng.standard_normal((n, T * 2 if case == "reals" else 3))
        return Split(x, y, n)

    form = {
        "quantized": Form("quantized", 2, "classes", 3, False, "set", T, B, scale=1 / 255),
        "reals": Form("dense", 2, "reals", 2, True, "set", T, B),
        "reals_last": Form("dense", 2, "reals", 3, False, "set", T, B),
        "embed": Form("embed", 2, "classes", 3, True, "set", T, B, vocab=4),
    }[case]
    train = split(N_TRAIN)
    metrics = ("loss",) if form.targets == "reals" else ("loss", "accuracy")
    evals = [Evaluation("valid", split(5), metrics, batch=3),
             Evaluation("test", split(4), metrics, every_epoch=False)]  # fmt: skip
    return TaskData(form, lambda epoch: train, N_TRAIN // B, cfg["epochs"], evals)


class FormTask(Task):
    keys = {"case": ("choice", ("quantized", "reals", "reals_last", "embed")),
            "per_seed": ("bool", None)}  # fmt: skip
    defaults = {"case": "quantized", "per_seed": False, "cell": "gru", "hidden_size": 3,
                "batch_size": 2, "epochs": 2, "optimizer": "adam", "lr": 0.05,
                "dtype": "float64"}  # fmt: skip

    def prepare(self, cfg, data=None):
        return _form_data(cfg)


FORM = dict(task=f"{__name__}:FormTask")


@pytest.mark.parametrize(
    "extra",
    [
        {"case": "quantized"},
        {"case": "quantized", "cell": "lstm", "bidirectional": True},
        {"case": "reals", "cell": "rnn", "num_layers": 2, "optimizer": "sgd", "lr": 0.1},
        {"case": "reals_last", "cell": "lstm", "bidirectional": True, "clip": 0.5},
        {"case": "embed", "cell": "rnn", "optimizer": "rmsprop", "lr": 0.01},
    ],
    ids=["quantized", "quantized-bidirectional-last", "reals-per-step", "reals-last-bi", "embed"],
)
def test_set_forms_match_cpu(extra):
    """Sets: quantized inputs, HEAD_LAST (bidirectional: h_n of both directions), real
    targets with several outputs per step or per sequence, embedding inputs; every epoch's
    validation loss (and accuracy) and the final test metrics as the CPU's."""
    cpu, gpu = _both(dict(FORM, **extra))
    names = set(gpu.curves.metric)
    assert {"valid_loss"} <= names and "test_loss" in gpu.final
    if extra["case"] in ("quantized", "embed"):
        assert "valid_accuracy" in names
        assert gpu.final["test_accuracy"] == cpu.final["test_accuracy"]


TEXT = "the cat sat on the mat; " * 4
TEXT_CFG = dict(task="text", cell="gru", hidden_size=3, num_steps=4, batch_size=2, epochs=1,
                embedding=3, valid_fraction=0.2, dtype="float64", lr=0.01)  # fmt: skip


def test_text_embedding_stream_matches_cpu():
    """Token ids through a trainable embedding, a stream with its validation every epoch."""
    _, gpu = _both(TEXT_CFG, TEXT)
    assert "embedding.weight" in gpu.params and "valid_bpc" in set(gpu.curves.metric)


def test_stream_true_is_evaluated_as_tf():
    """An evaluation reads a stream once, every target with the state carried, whatever the
    truncation it trained with: the CPU's evaluation with "tf" of the same parameters."""
    from rnnfast.config import resolve
    from rnnfast.cpu.trainer import CpuTrainer

    cfg = dict(TEXT_CFG, truncation="true", embedding=0)
    gpu = rnnfast.train(dict(cfg, backend="cuda"), TEXT)
    cpu = rnnfast.train(cfg, TEXT)
    losses = [r.curves.value[r.curves.metric == "loss"] for r in (gpu, cpu)]
    np.testing.assert_allclose(*losses, rtol=1e-9)
    setup = RunSetup(resolve(dict(cfg, truncation="tf")), TEXT)
    setup.theta[:] = np.concatenate(
        [gpu.params[k].ravel() for k, *_ in setup.entries]
        + [gpu.params["head.weight"].ravel(), gpu.params["head.bias"]]
    )
    loss, _, counted = CpuTrainer(setup).evaluate(0)
    np.testing.assert_allclose(gpu.final["valid_loss"], loss / counted, rtol=1e-9)


def test_evaluation_equals_cpu(monkeypatch):
    """(loss sum, correct, counted) of the same parameters, exactly the CPU's counts, with
    the evaluation's batch over several blocks of each run and its last batch padded."""
    import rnnfast.cuda._api as api
    from rnnfast.config import resolve
    from rnnfast.cpu.trainer import CpuTrainer
    from rnnfast.cuda.training import _Group

    monkeypatch.setattr(api, "MAX_THREADS", 4)  # one batch column a block
    setups = [RunSetup(resolve(dict(FORM, cell="lstm", bidirectional=True, seed=s,
                                    per_seed=True))) for s in (0, 1)]  # fmt: skip
    group = _Group(setups)
    for k in (0, 1):
        got = group.evaluate(k, [0, 1])
        for r, s in enumerate(setups):
            loss, correct, counted = CpuTrainer(s).evaluate(k)
            assert got[r][1:] == (correct, counted) and counted == s.data.evaluations[k].split.count
            np.testing.assert_allclose(got[r][0], loss, rtol=1e-12)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    from test_training import write_mnist  # tiny synthetic IDX files

    d = tmp_path_factory.mktemp("mnist")
    write_mnist(d)
    return d


def test_mnist_matches_cpu(mnist_dir):
    """Two-directional lstm, loss on the last step only, test accuracy every epoch."""
    cfg = dict(task="mnist", cell="lstm", hidden_size=2, batch_size=2, train_size=4, epochs=1,
               bidirectional=True,
               data_dir=str(mnist_dir), dtype="float64", optimizer="adam", lr=0.01)  # fmt: skip
    cpu, gpu = _both(cfg)
    assert gpu.final["test_accuracy"] == cpu.final["test_accuracy"]


@pytest.mark.parametrize("cfg", [dict(DEP, epochs=1), dict(FORM, case="reals_last", epochs=1)],
                         ids=["dependency", "reals"])  # fmt: skip
def test_float32_training_close_to_cpu(cfg):
    _both(dict(cfg, dtype="float32"), rtol=1e-4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_divergence_is_reported_like_cpu():
    cfg = dict(DEP, optimizer="sgd", lr=1e30, cell="rnn", nonlinearity="relu", epochs=1)
    cpu, gpu = rnnfast.train(cfg), rnnfast.train(dict(cfg, backend="cuda"))
    assert cpu.status == "diverged"
    assert gpu.status == "diverged" and gpu.message == cpu.message
    assert len(gpu.curves) == len(cpu.curves)


@pytest.mark.parametrize(
    "base, points",
    [(dict(DEP, epochs=1), [(0, 0.1), (1, 0.3), (2, 0.05)]),
     (dict(FORM, per_seed=True), [(0, 0.05), (1, 0.02)]),
     (dict(FORM, case="embed"), [(0, 0.05), (1, 0.02)])],
    ids=["stream-per-seed", "set-per-seed", "set-shared"],
)  # fmt: skip
def test_group_trains_each_run_as_alone(base, points):
    from rnnfast.cuda.training import train_group

    cfgs = [dict(base, seed=s, lr=lr) for s, lr in points]
    together = train_group(cfgs)
    for cfg, res in zip(cfgs, together, strict=True):
        assert res.config["seed"] == cfg["seed"]
        _same_run(rnnfast.train(cfg), res)


def test_group_runs_may_differ_in_divergence_limit_and_checkpoint_every():
    from rnnfast.cuda.training import group_key, train_group

    # diverge_above = 1.05: this tiny batch's loss at update 2 is above 1.05 times the first,
    # which stops the run after that interval; None: it trains on
    cfgs = [dict(DEP, epochs=1, seed=1), dict(DEP, epochs=1, seed=1, diverge_above=1.05,
                                              checkpoint_every=7)]  # fmt: skip
    assert len({group_key(resolve(dict(c, backend="cuda"))) for c in cfgs}) == 1
    together = train_group(cfgs)
    assert [r.status for r in together] == ["ok", "diverged"]
    assert together[1].info["cuda_group_size"] == 2
    for cfg, res in zip(cfgs, together, strict=True):
        _same_run(rnnfast.train(cfg), res)


def test_group_shares_equal_data_and_stacks_the_rest():
    from rnnfast.cuda.training import _DeviceData

    a, b = np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3)
    c = a + 1
    z, none = np.zeros((1, 1)), np.zeros(0, np.int64)
    dev = _DeviceData(__import__("numba").cuda)
    shared = dev.put([Data(a, a, z, z, z, a, 0.5, none), Data(b, c, z, z, z, a.copy(), 0.5, none)])
    assert shared.scale == 0.5
    runs = [f.shape[0] for f, name in zip(shared, Data._fields, strict=True) if name != "scale"]
    assert runs == [1, 2, 1, 1, 1, 1, 1] and shared.lens.shape == (1, 0)
    np.testing.assert_array_equal(shared.xq.copy_to_host(), np.stack([a, c]))
    with pytest.raises(ValueError, match=r"run 1's xq is \(3, 2\), run 0's \(2, 3\)"):
        _DeviceData(dev.cuda).put([Data(a, a, z, z, z, a, 1.0, none),
                                   Data(a, a.T, z, z, z, a, 1.0, none)])  # fmt: skip


def test_group_rejects_different_shapes():
    from rnnfast.cuda.training import train_group

    with pytest.raises(ValueError, match=r"these keys differ: \['hidden_size'\]"):
        train_group([DEP, dict(DEP, hidden_size=4)])


def test_data_goes_to_every_run():
    """train_group(configs, data): each run's task gets the data (the sequences task)."""
    from rnnfast.cuda.training import train_group

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 3, 2)), rng.integers(0, 2, 9)
    cfg = dict(task="sequences", cell="rnn", hidden_size=2, batch_size=4, epochs=1,
               valid_fraction=0.25, dtype="float64")  # fmt: skip
    runs = train_group([dict(cfg, seed=0), dict(cfg, seed=1)], data=(x, y))
    for s, res in enumerate(runs):
        _same_run(rnnfast.train(dict(cfg, seed=s), (x, y)), res)


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
                          "train_kernel", "eval_kernel") for dt in ("float32", "float64")
    }  # fmt: skip
    for name, dt, regs in lines:
        assert int(regs) * MAX_THREADS <= 65536, (name, dt, regs)
