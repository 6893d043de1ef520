"""Variable lengths and batch-first input on the CUDA backend (simulator in CI).

lengths has PyTorch's packed semantics (rnnfast.api): the oracles are the reference backend
(masked steps) and torch's pack_padded_sequence(enforce_sorted=False) -> nn.RNN/LSTM/GRU ->
pad_packed_sequence(total_length=T), both in float64 to 1e-9 and float32 to 1e-4. Shapes are
tiny: the simulator runs every thread in Python.
"""

import numpy as np
import pytest

import rnnfast
from rnnfast.cuda import unavailable_reason
from rnnfast.seqdata import Evaluation, Form, Split, TaskData
from rnnfast.tasks import Task

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"{unavailable_reason()}")

T, I, H = 4, 2, 3
LENGTHS = np.array([3, 1, 4, 2])  # unsorted, with a 1 and a full T


def _case(make_case, cell, L=1, bi=False, bias=True, dtype=np.float64, B=4, act="tanh"):
    return make_case(cell, T=T, B=B, I=I, H=H, num_layers=L, bidirectional=bi, bias=bias,
                     dtype=dtype, nonlinearity=act, seed=L + 2 * bi)  # fmt: skip


def _run(case, backend, lengths, state0=True, batch_first=False):
    """(out, [h_n(, c_n)], grads) in time-major layout, whatever batch_first."""
    x, dout = case.x, case.dout
    if batch_first:
        x, dout = x.transpose(1, 0, 2).copy(), dout.transpose(1, 0, 2).copy()
    out, state, cache = rnnfast.forward(case.cell, case.params, x,
                                        case.state0 if state0 else None,
                                        nonlinearity=case.nonlinearity, backend=backend,
                                        lengths=lengths, batch_first=batch_first)  # fmt: skip
    grads = rnnfast.backward(case.cell, case.params, cache, dout, case.dstate, backend=backend)
    if batch_first:
        out, grads["x"] = out.transpose(1, 0, 2), grads["x"].transpose(1, 0, 2)
    return out, list(state) if case.cell == "lstm" else [state], grads


def _torch_packed(torch, case, lengths, state0=True):
    """The same triple from torch with packed sequences."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    spec = rnnfast.params.infer_spec(case.cell, case.params)
    kwargs = {"nonlinearity": case.nonlinearity} if case.cell == "rnn" else {}
    module = getattr(torch.nn, {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[case.cell])(
        I, H, num_layers=spec.num_layers, bias=spec.bias, bidirectional=spec.bidirectional,
        dtype=torch.float64 if spec.dtype == np.float64 else torch.float32, **kwargs,
    )  # fmt: skip
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in case.params.items()})

    def leaf(a):
        return torch.from_numpy(a.copy()).requires_grad_(True)

    x = leaf(case.x)
    leaves = [leaf(case.h0)] + ([leaf(case.c0)] if case.cell == "lstm" else [])
    hx = None
    if state0:
        hx = tuple(leaves) if case.cell == "lstm" else leaves[0]
    packed = pack_padded_sequence(x, torch.as_tensor(lengths), enforce_sorted=False)
    out, state = module(packed, hx)
    out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    states = list(state) if case.cell == "lstm" else [state]
    loss = (out * torch.from_numpy(case.dout)).sum()
    for s, ds in zip(states, [case.dh, case.dc], strict=False):
        loss = loss + (s * torch.from_numpy(ds)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    grads["x"] = x.grad.numpy()
    if state0:
        grads["h0"] = leaves[0].grad.numpy()
        if case.cell == "lstm":
            grads["c0"] = leaves[1].grad.numpy()
    return out.detach().numpy(), [s.detach().numpy() for s in states], grads


def _padded(lengths, B):
    return np.arange(T)[:, None] >= np.asarray(lengths)[None, :B]  # (T, B)


# every cell and activation, 1 and 2 layers, one and two directions; bias and state0 vary
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
GRID = [(cell, act, L, bi) for cell, act in CELLS for L in (1, 2) for bi in (False, True)]


@pytest.mark.parametrize("cell,act,L,bi", GRID)
def test_matches_reference(make_case, results_close, cell, act, L, bi):
    bias, state0 = (L + bi) % 2 == 0, not (L == 2 and bi)
    case = _case(make_case, cell, L, bi, bias, act=act)
    got = _run(case, "cuda", LENGTHS, state0)
    results_close(got, _run(case, "reference", LENGTHS, state0), 1e-9, 1e-9)
    pad = _padded(LENGTHS, 4)
    assert not got[0][pad].any() and not got[2]["x"][pad].any()


@pytest.mark.parametrize(
    "cell,act,L,bi,bias,dtype,state0",
    [
        ("rnn", "tanh", 2, True, True, np.float64, True),
        ("rnn", "relu", 1, False, False, np.float32, False),
        ("lstm", "tanh", 2, True, False, np.float64, False),
        ("lstm", "tanh", 1, True, True, np.float32, True),
        ("gru", "tanh", 2, True, True, np.float32, True),
        ("gru", "tanh", 1, False, False, np.float64, False),
    ],
)
def test_matches_torch_packed(make_case, results_close, torch, cell, act, L, bi, bias, dtype,
                              state0):  # fmt: skip
    case = _case(make_case, cell, L, bi, bias, dtype, act=act)
    got = _run(case, "cuda", LENGTHS, state0)
    if not state0:
        del got[2]["h0"]
        got[2].pop("c0", None)
    tol = 1e-9 if dtype == np.float64 else 1e-4
    assert got[0].dtype == dtype and all(g.dtype == dtype for g in got[2].values())
    results_close(got, _torch_packed(torch, case, LENGTHS, state0), tol, tol)


@pytest.mark.parametrize(
    "lengths", [[1, 1, 1], [2, 2, 2], [4, 4, 4], [1, 4, 3], [1]], ids=["ones", "equal-short",
                                                                      "equal-full", "mixed", "B1"]
)  # fmt: skip
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_length_patterns(make_case, results_close, torch, cell, lengths):
    """Lengths of 1, all equal (shorter than T or not), B = 1: as torch and the reference."""
    case = _case(make_case, cell, 2, True, B=len(lengths))
    got = _run(case, "cuda", np.array(lengths))
    results_close(got, _run(case, "reference", np.array(lengths)), 1e-9, 1e-9)
    results_close(got, _torch_packed(torch, case, lengths), 1e-9, 1e-9)


def test_multi_block(make_case, results_close, monkeypatch):
    """B = 5 columns over blocks of 2 (the last one short), each block with its own lengths."""
    import rnnfast.cuda._api as api

    monkeypatch.setattr(api, "MAX_THREADS", 16)
    assert api.launch_shape(8, 5) == (3, 16, 2)
    case = make_case("lstm", T=T, B=5, I=I, H=8, num_layers=2, bidirectional=True, seed=5)
    lengths = np.array([2, 4, 1, 3, 4])
    results_close(_run(case, "cuda", lengths), _run(case, "reference", lengths), 1e-9, 1e-9)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_batch_first(make_case, results_close, cell):
    """(B, T, I) in and out: the time-major call transposed, with and without lengths."""
    case = _case(make_case, cell, 2, True)
    for lengths in (None, LENGTHS):
        got = _run(case, "cuda", lengths, batch_first=True)
        results_close(got, _run(case, "cuda", lengths), 0, 0)
        results_close(got, _run(case, "reference", lengths, batch_first=True), 1e-9, 1e-9)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_full_lengths_are_no_lengths(make_case, results_close, cell):
    """lengths all T gives exactly lengths=None, which matches the reference as before."""
    case = _case(make_case, cell, 2, True, B=3)
    none = _run(case, "cuda", None)
    results_close(_run(case, "cuda", np.full(3, T)), none, 0, 0)
    results_close(none, _run(case, "reference", None), 1e-9, 1e-9)


def test_padded_inputs_and_dout_do_not_matter(make_case):
    """Changing x and dout at padded steps changes nothing (their gradient is zero)."""
    case = _case(make_case, "gru", 2, True)
    a = _run(case, "cuda", LENGTHS)
    pad = _padded(LENGTHS, 4)
    case.x[pad] = 7.0
    case.dout[pad] = -5.0
    b = _run(case, "cuda", LENGTHS)
    np.testing.assert_array_equal(a[0], b[0])
    for k in a[2]:
        np.testing.assert_array_equal(a[2][k], b[2][k], err_msg=k)


# ---------------------------------------------------------------- the fused training kernel
SEQ = dict(task="sequences", hidden_size=3, batch_size=4, epochs=2, valid_fraction=0.25,
           optimizer="adam", lr=0.05, seed=2, dtype="float64")  # fmt: skip


def _sequences(per_step: bool, N=16, T_=5, classes=False):
    """Right-padded dense sequences (zeros past each length) with unequal lengths, a 1 and a
    full T among them; class targets per sequence, or real (or class) targets per step."""
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, T_ + 1, N)
    lengths[:2] = (1, T_)
    x = rng.standard_normal((N, T_, 2))
    x[np.arange(T_)[None, :] >= lengths[:, None]] = 0
    y = rng.integers(0, 3, N)
    if per_step:
        y = rng.integers(0, 3, (N, T_)) if classes else rng.standard_normal((N, T_))
    return x, y, lengths


def _same_run(cpu, gpu, rtol=1e-9):
    assert gpu.status == cpu.status == "ok"
    assert list(gpu.curves.metric) == list(cpu.curves.metric)
    np.testing.assert_allclose(gpu.curves.value, cpu.curves.value, rtol=rtol)
    for k in cpu.final:
        np.testing.assert_allclose(gpu.final[k], cpu.final[k], rtol=rtol, err_msg=k)
    for k in cpu.params:
        np.testing.assert_allclose(gpu.params[k], cpu.params[k], rtol=rtol, atol=rtol, err_msg=k)


@pytest.mark.parametrize(
    "per_step, extra",
    [(False, {"cell": "lstm", "bidirectional": True}),
     (False, {"cell": "gru", "num_layers": 2}),
     ("classes", {"cell": "rnn", "bidirectional": True, "clip": 0.5}),
     (True, {"cell": "gru", "dtype": "float32"})],
    ids=["last-lstm-bi", "last-gru-2layers", "per-step-classes-rnn-bi", "per-step-gru-float32"],
)  # fmt: skip
def test_training_with_lengths_matches_cpu(per_step, extra):
    """Unequal lengths: a per-sequence target at each sequence's own last step (h_n for a
    bidirectional model), per-step targets averaged over real steps; validation counts real
    steps only. The CUDA curves, final metrics and parameters are the CPU's."""
    cfg = dict(SEQ, **extra)
    data = _sequences(bool(per_step), classes=per_step == "classes")
    cpu = rnnfast.train(cfg, data)
    gpu = rnnfast.train(dict(cfg, backend="cuda"), data)
    _same_run(cpu, gpu, 1e-4 if cfg["dtype"] == "float32" else 1e-9)


class FullLengthsTask(Task):
    """The sequences task's data with lengths given explicitly as all T (`explicit`): the
    kernels then read Data.lens (not the size-0 marker) and must give the same run."""

    keys = {"explicit": ("bool", None), "per_step": ("bool", None)}
    defaults = {"explicit": False, "per_step": False, "cell": "gru", "hidden_size": 3,
                "batch_size": 4, "epochs": 2, "optimizer": "adam", "lr": 0.05,
                "dtype": "float64"}  # fmt: skip

    def prepare(self, cfg, data=None):
        x, y, _ = _sequences(cfg["per_step"], N=8, T_=3)
        N, T_ = x.shape[:2]
        lengths = np.full(N, T_, np.int64) if cfg["explicit"] else None
        per_step = cfg["per_step"]
        form = Form("dense", 2, "reals" if per_step else "classes", 1 if per_step else 3,
                    per_step, "set", T_, cfg["batch_size"])  # fmt: skip
        ys = y.reshape(N, T_) if per_step else y.reshape(N, 1).astype(np.int32)
        split = Split(x.reshape(N, T_ * 2), ys, N, lengths=lengths)
        evals = [Evaluation("valid", split, ("loss",), batch=3)]
        return TaskData(form, lambda epoch: split, N // cfg["batch_size"], cfg["epochs"], evals)


@pytest.mark.parametrize("per_step", [False, True], ids=["last", "per-step"])
def test_training_with_full_lengths_is_without(per_step):
    cfg = dict(task=f"{__name__}:FullLengthsTask", per_step=per_step, backend="cuda")
    a, b = rnnfast.train(cfg), rnnfast.train(dict(cfg, explicit=True))
    assert a.status == "ok"
    assert list(a.curves.metric) == list(b.curves.metric)
    np.testing.assert_array_equal(a.curves.value, b.curves.value)
