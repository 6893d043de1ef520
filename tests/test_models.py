"""Trained models in the results store: weights stored with each ok run (npz, no pickle),
load_model's forward against the run's own evaluation, PyTorch conversion and export,
evaluate on other data, sampling, compaction, and one-line errors for bad input."""

import json
import zipfile

import numpy as np
import pytest

import rnnfast
from rnnfast import store
from rnnfast.config import resolve
from rnnfast.executors import Task, execute
from rnnfast.models import export, load_model

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def ragged(n: int, T: int = 9, I: int = 3, seed: int = 0):
    """Classes from the sign of a sum over each sequence's real steps; lengths 2..T."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, I))
    lengths = rng.integers(2, T + 1, n)
    lengths[0] = 2
    for i, k in enumerate(lengths):
        x[i, k:] = 0.0
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64) + 2 * (x[:, :, 1].sum(axis=1) > 0)
    return x, y, lengths


def store_run(results, run_id: str, config: dict, **data_files):
    """Train `config` the way `rnnfast run grid` does (execute, then write_run)."""
    record, curves = execute(Task(run_id, resolve(config)))
    assert record.status == "ok", record.error
    store.write_run(results, record, curves)
    return record


@pytest.fixture(scope="module")
def seq_store(tmp_path_factory):
    """A float64 bidirectional LSTM on unequal-length sequences with a test file."""
    d = tmp_path_factory.mktemp("models")
    x, y, lengths = ragged(48)
    xt, yt, lt = ragged(24, seed=1)  # whole evaluation batches
    np.savez(d / "train.npz", x=x, y=y, lengths=lengths)
    np.savez(d / "test.npz", x=xt, y=yt, lengths=lt)
    cfg = {"task": "sequences", "train": str(d / "train.npz"), "test": str(d / "test.npz"),
           "hidden_size": 5, "batch_size": 8, "epochs": 2, "dtype": "float64",
           "bidirectional": True, "lr": 0.01}  # fmt: skip
    record = store_run(d / "res", "seqrun01", cfg)
    return d, record


def test_weights_round_trip_without_pickle(seq_store):
    d, record = seq_store
    path = d / "res" / "models" / "seqrun01.npz"
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
        meta = json.loads(str(f["rnnfast.json"][()]))
        for k, v in record.model["params"].items():
            np.testing.assert_array_equal(f[k], v)
            assert f[k].dtype == np.float64
    assert names == set(record.model["params"]) | {"rnnfast.json"}
    assert {"weight_ih_l0", "weight_hh_l0_reverse", "head.weight", "head.bias"} <= names
    assert meta["run_id"] == "seqrun01" and meta["form"]["per_step"] is False
    assert meta["config"]["hidden_size"] == 5
    with zipfile.ZipFile(path) as z:  # plain .npy members, nothing pickled
        assert all(n.endswith(".npy") for n in z.namelist())
    model = load_model(d / "res", "seq")  # a unique prefix
    assert model.run_id == "seqrun01" and model.config == record.config
    for k, v in record.model["params"].items():
        np.testing.assert_array_equal(model.params[k], v)
    assert not list((d / "res" / "models").glob(".*.tmp"))


def test_forward_reproduces_the_runs_own_test_metrics(seq_store):
    d, record = seq_store
    m = load_model(d / "res", "seqrun01").evaluate(d / "test.npz")
    assert m["targets"] == 24
    assert m["loss"] == pytest.approx(record.final["test_loss"], rel=1e-9)
    assert m["accuracy"] == pytest.approx(record.final["test_accuracy"], abs=1e-12)


def test_training_evaluation_of_a_padded_last_batch_with_lengths():
    """A short last evaluation batch is padded with copies of its shortest sequence (which
    keeps the batch in length order) and the copies are not counted."""
    x, y, lengths = ragged(48)
    xt, yt, lt = ragged(20, seed=1)  # 20 = 2 batches of 8 + 4, lengths up to 9
    cfg = resolve({"task": "sequences", "hidden_size": 5, "batch_size": 8, "epochs": 1,
                   "dtype": "float64"})  # fmt: skip
    r = rnnfast.train(cfg, data={"train": (x, y, lengths), "test": (xt, yt, lt)})
    model = rnnfast.Model("x", cfg, r.params, r.artifacts, r.info["form"])
    z = model.forward(xt, lengths=lt)
    z = z - z.max(axis=1, keepdims=True)
    ce = np.log(np.exp(z).sum(axis=1)) - z[np.arange(20), yt]
    assert r.final["test_loss"] == pytest.approx(ce.mean(), rel=1e-9)


def test_forward_by_hand_and_lengths(seq_store):
    d, _ = seq_store
    model = load_model(d / "res", "seqrun01")
    x, _, lengths = ragged(6, seed=3)
    z = model.forward(x, lengths=lengths)
    assert z.shape == (6, 4)
    # sequence i alone, cut to its own length, gives the same outputs
    for i in range(6):
        zi = model.forward(x[i : i + 1, : lengths[i]])
        np.testing.assert_allclose(zi[0], z[i], rtol=1e-12, atol=1e-12)


def test_to_torch_and_torch_export_reproduce_the_outputs(seq_store, tmp_path, torch):
    d, _ = seq_store
    model = load_model(d / "res", "seqrun01")
    x, _, lengths = ragged(7, seed=4)
    want = model.forward(x, lengths=lengths)
    module = model.to_torch()
    got = module(torch.from_numpy(x), torch.from_numpy(lengths)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # the exported file: a plain state dict for nn.LSTM + nn.Linear
    export(model, tmp_path / "m.pt", "torch")
    sd = torch.load(tmp_path / "m.pt", weights_only=True)
    lstm = torch.nn.LSTM(3, 5, batch_first=True, bidirectional=True).double()
    lstm.load_state_dict({k.removeprefix("rnn."): v for k, v in sd.items() if k[:4] == "rnn."})
    head = torch.nn.Linear(10, 4).double()
    head.load_state_dict({"weight": sd["head.weight"], "bias": sd["head.bias"]})
    pack = torch.nn.utils.rnn.pack_padded_sequence
    xt = pack(torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True,
              enforce_sorted=False)  # fmt: skip
    _, (h_n, _) = lstm(xt)
    out = head(torch.cat([h_n[0], h_n[1]], dim=1)).detach().numpy()
    np.testing.assert_allclose(out, want, rtol=1e-9, atol=1e-12)


def test_npz_export_is_the_stored_model(seq_store, tmp_path):
    d, record = seq_store
    export(load_model(d / "res", "seqrun01"), tmp_path / "m.npz", "npz")
    back = store.read_model_file(tmp_path / "m.npz")
    assert back["run_id"] == "seqrun01" and back["form"] == record.model["form"]
    for k, v in record.model["params"].items():
        np.testing.assert_array_equal(back["params"][k], v)


def test_compaction_keeps_the_models(seq_store, tmp_path):
    d, _ = seq_store
    import shutil

    res = tmp_path / "res"
    shutil.copytree(d / "res", res)
    before = load_model(res, "seqrun01").params
    assert store.compact(res) is not None
    assert not list((res / "runs").glob("*.parquet"))
    after = load_model(res, "seqrun01")
    for k, v in before.items():
        np.testing.assert_array_equal(after.params[k], v)


def test_a_run_stored_again_without_a_model_loses_the_old_one(seq_store, tmp_path):
    d, record = seq_store
    import dataclasses

    res = tmp_path / "res"
    store.write_run(res, record, None)
    assert (res / "models" / "seqrun01.npz").is_file()
    failed = dataclasses.replace(record, status="failed", error="boom", model=None)
    store.write_run(res, failed, None)
    assert not (res / "models" / "seqrun01.npz").exists()
    with pytest.raises(ValueError, match=r"^run seqrun01: no stored model: it failed"):
        load_model(res, "seqrun01")
    store.write_run(res, dataclasses.replace(record, model=None), None)  # an older rnnfast's
    with pytest.raises(ValueError, match="stored by an rnnfast that kept no models"):
        load_model(res, "seqrun01")


def test_per_step_reals_gru_and_token_embedding(tmp_path, torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 6, 2))
    y = np.cumsum(x[:, :, 0], axis=1)  # (N, T) reals: one target per step
    np.savez(tmp_path / "r.npz", x=x, y=y)
    cfg = {"task": "sequences", "data": str(tmp_path / "r.npz"), "cell": "gru",
           "hidden_size": 4, "batch_size": 5, "epochs": 1, "dtype": "float64",
           "valid_fraction": 0.2}  # fmt: skip
    rec = store_run(tmp_path / "res", "gru1", cfg)
    model = load_model(tmp_path / "res", "gru1")
    z = model.forward(x)
    assert z.shape == (30, 6, 1)
    got = model.to_torch()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, z, rtol=1e-9, atol=1e-12)
    m = model.evaluate(tmp_path / "r.npz")
    want = np.mean((z[..., 0] - y) ** 2)
    assert m["loss"] == pytest.approx(want, rel=1e-9) and "accuracy" not in m
    assert rec.final["valid_loss"] > 0
    ids = rng.integers(0, 7, (24, 5))
    np.savez(tmp_path / "t.npz", x=ids, y=ids[:, -1] % 3)
    cfg = {"task": "sequences", "data": str(tmp_path / "t.npz"), "embedding": 3,
           "hidden_size": 4, "batch_size": 4, "epochs": 1, "dtype": "float64"}  # fmt: skip
    store_run(tmp_path / "res", "emb1", cfg)
    model = load_model(tmp_path / "res", "emb1")
    z = model.forward(ids)
    got = model.to_torch()(torch.from_numpy(ids)).detach().numpy()
    np.testing.assert_allclose(got, z, rtol=1e-9, atol=1e-12)


def test_text_run_sample_and_evaluate(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    cfg = {"task": "text", "data": str(tmp_path / "t.txt"), "hidden_size": 8, "num_steps": 10,
           "batch_size": 4, "epochs": 1}  # fmt: skip
    store_run(tmp_path / "res", "text1", cfg)
    model = load_model(tmp_path / "res", "text1")
    assert model.artifacts["vocabulary"] == "".join(sorted(set(TEXT)))
    a = model.sample("the ", length=40, temperature=0.8, seed=3)
    assert a == model.sample("the ", length=40, temperature=0.8, seed=3)
    assert a != model.sample("the ", length=40, temperature=0.8, seed=4)
    assert len(a) == 40 and set(a) <= set(TEXT)
    # another text of the same characters, in another order: ids remapped to the run's
    (tmp_path / "o.txt").write_text("lazy dogs jump over a quick brown fox. " * 10)
    m = model.evaluate(tmp_path / "o.txt")
    assert m["bpc"] == pytest.approx(m["loss"] / np.log(2)) and m["targets"] == 389
    (tmp_path / "x.txt").write_text("QUICK FOX " * 10)
    with pytest.raises(ValueError, match=r"symbols: expected the run's vocabulary"):
        model.evaluate(tmp_path / "x.txt")


# ---------------------------------------------------------------- bad input: one line each


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_unknown_and_ambiguous_run_ids(seq_store, tmp_path):
    d, record = seq_store
    with pytest.raises(ValueError) as e:
        load_model(d / "res", "nope")
    assert one_line(e).startswith("run_id: no run matching 'nope'")
    import dataclasses

    for rid in ("ab1", "ab2"):
        store.write_run(tmp_path, dataclasses.replace(record, run_id=rid), None)
    with pytest.raises(ValueError) as e:
        load_model(tmp_path, "ab")
    assert "ambiguous" in one_line(e) and "ab1" in one_line(e) and "ab2" in one_line(e)


def test_wrong_data_and_unsupported_uses(seq_store, tmp_path):
    d, _ = seq_store
    model = load_model(d / "res", "seqrun01")
    x, y, _ = ragged(10, I=4)
    np.savez(tmp_path / "wide.npz", x=x, y=y)
    with pytest.raises(ValueError) as e:
        model.evaluate(tmp_path / "wide.npz")
    assert "features a step: expected 3" in one_line(e) and "got 4" in one_line(e)
    x, y, _ = ragged(10)
    np.savez(tmp_path / "reals.npz", x=x, y=y.astype(float))
    with pytest.raises(ValueError, match=r"targets: expected classes .* got reals"):
        model.evaluate(tmp_path / "reals.npz")
    np.savez(tmp_path / "labels.npz", x=x, y=y + 4)
    with pytest.raises(ValueError, match=r"class labels: expected < 4"):
        model.evaluate(tmp_path / "labels.npz")
    with pytest.raises(ValueError, match=r"^data: .*missing.npz: no such file"):
        model.evaluate(tmp_path / "missing.npz")
    with pytest.raises(ValueError) as e:
        model.sample("a")
    assert one_line(e).startswith("sample: run seqrun01 (sequences) has no vocabulary")
    with pytest.raises(ValueError, match=r"x: expected \(N, T, 3\)"):
        model.forward(np.zeros((2, 3, 5)))


def test_builtin_data_task_cannot_evaluate_and_sigmoid_rnn_cannot_go_to_torch(tmp_path):
    cfg = {"task": "dependency", "cell": "rnn", "nonlinearity": "sigmoid", "hidden_size": 2,
           "sequence_length": 2000, "batch_size": 10, "num_steps": 5}  # fmt: skip
    store_run(tmp_path, "dep1", cfg)
    model = load_model(tmp_path, "dep1")
    with pytest.raises(ValueError) as e:
        model.evaluate(tmp_path / "any.npz")
    assert "task 'dependency' makes its own data" in one_line(e)
    with pytest.raises(ValueError) as e:
        model.to_torch()
    assert "nn.RNN has no 'sigmoid' nonlinearity" in one_line(e)
    with pytest.raises(ValueError, match="format: expected 'npz' or 'torch'"):
        export(model, tmp_path / "m.x", "onnx")
    assert model.forward(np.zeros((3, 5), np.int64)).shape == (3, 5, 2)


def test_damaged_model_file_is_one_line(seq_store, tmp_path):
    import shutil

    d, _ = seq_store
    shutil.copytree(d / "res", tmp_path / "res")
    path = tmp_path / "res" / "models" / "seqrun01.npz"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError) as e:
        load_model(tmp_path / "res", "seqrun01")
    assert "cannot read the model" in one_line(e)


def test_public_api():
    assert rnnfast.load_model is load_model and "load_model" in rnnfast.__all__
