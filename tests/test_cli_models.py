"""`rnnfast export`, `evaluate` and `sample` on runs trained through `rnnfast run grid`, and
their one-line errors (exit code 2, no traceback)."""

import numpy as np
import pytest
from click.testing import CliRunner

from rnnfast.cli import main
from rnnfast.store import status_of

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory):
    """One sequences run and one text run, trained by `rnnfast run grid` (worker processes)."""
    d = tmp_path_factory.mktemp("cli-models")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 2))
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    np.savez(d / "train.npz", x=x, y=y)
    (d / "t.txt").write_text(TEXT)
    (d / "seq.toml").write_text(
        'name = "seq"\ntask = "sequences"\n[fixed]\ndata = "train.npz"\nhidden_size = 4\n'
        'batch_size = 8\nepochs = 1\ndtype = "float64"\n[grid]\nseed = [0]\n'
    )
    (d / "text.toml").write_text(
        'name = "text"\ntask = "text"\n[fixed]\ndata = "t.txt"\nhidden_size = 8\n'
        "num_steps = 10\nbatch_size = 4\nepochs = 1\n[grid]\nseed = [0]\n"
    )
    for name in ("seq", "text"):
        r = invoke("run", "grid", d / f"{name}.toml", "--results", d / "res" / name,
                   "--workers", 1, "-q")  # fmt: skip
        assert r.exit_code == 0, r.output
    seq_id = next(iter(status_of(d / "res" / "seq")))
    text_id = next(iter(status_of(d / "res" / "text")))
    return d, seq_id, text_id


def test_a_grid_run_has_its_model(grid_store):
    d, seq_id, text_id = grid_store
    assert (d / "res" / "seq" / "models" / f"{seq_id}.npz").is_file()
    assert (d / "res" / "text" / "models" / f"{text_id}.npz").is_file()


def test_export_npz_and_torch(grid_store, tmp_path, torch):
    d, seq_id, _ = grid_store
    r = invoke("export", seq_id[:8], "--results", d / "res", "--format", "npz", "-o",
               tmp_path / "m.npz")  # fmt: skip
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        assert f["weight_ih_l0"].shape == (16, 2) and f["head.weight"].shape == (2, 4)
    r = invoke("export", seq_id, "--results", d / "res" / "seq", "--format", "torch", "-o",
               tmp_path / "m.pt")  # fmt: skip
    assert r.exit_code == 0, r.output
    sd = torch.load(tmp_path / "m.pt", weights_only=True)
    lstm = torch.nn.LSTM(2, 4, batch_first=True).double()
    lstm.load_state_dict({k.removeprefix("rnn."): v for k, v in sd.items() if k[:4] == "rnn."})
    head = torch.nn.Linear(4, 2).double()
    head.load_state_dict({"weight": sd["head.weight"], "bias": sd["head.bias"]})
    from rnnfast import load_model

    x = np.random.default_rng(1).standard_normal((5, 6, 2))
    out, _ = lstm(torch.from_numpy(x))
    got = head(out[:, -1]).detach().numpy()
    want = load_model(d / "res", seq_id).forward(x)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_evaluate_on_a_sequences_run(grid_store):
    d, seq_id, _ = grid_store
    r = invoke("evaluate", seq_id, "--results", d / "res", "--data", d / "train.npz", "--json")
    assert r.exit_code == 0, r.output
    import json

    m = json.loads(r.output)
    assert set(m) == {"loss", "accuracy", "targets"} and m["targets"] == 40
    assert 0 <= m["accuracy"] <= 1 and m["loss"] > 0


def test_sample_on_a_text_run_is_deterministic_by_seed(grid_store):
    d, _, text_id = grid_store
    args = ["sample", text_id, "--results", d / "res", "--prime", "the ", "--length", 30,
            "--temperature", 0.7]  # fmt: skip
    a, b, c = invoke(*args, "--seed", 1), invoke(*args, "--seed", 1), invoke(*args, "--seed", 2)
    assert a.exit_code == 0, a.output
    assert a.output == b.output != c.output and a.output.startswith("the ")
    assert len(a.output.rstrip("\n")) == 34


def error_line(r) -> str:
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def test_bad_input_is_one_line_exit_2(grid_store, tmp_path):
    d, seq_id, text_id = grid_store
    res = d / "res"
    assert "no run matching 'zzz'" in error_line(invoke("export", "zzz", "--results", res,
                                                         "-o", tmp_path / "m.npz"))  # fmt: skip
    # an ambiguous prefix: the empty prefix matches both runs, in two results directories
    line = error_line(invoke("evaluate", "", "--results", res, "--data", d / "train.npz"))
    assert "ambiguous" in line and seq_id in line and text_id in line
    line = error_line(invoke("sample", seq_id, "--results", res))
    assert "has no vocabulary" in line
    line = error_line(invoke("evaluate", text_id, "--results", res, "--data", d / "train.npz"))
    assert line.startswith("Error: data: ")
    x = np.zeros((4, 6, 3))
    np.savez(tmp_path / "wide.npz", x=x, y=np.zeros(4, np.int64))
    line = error_line(invoke("evaluate", seq_id, "--results", res, "--data",
                             tmp_path / "wide.npz"))  # fmt: skip
    assert "features a step: expected 2" in line
    line = error_line(invoke("sample", text_id, "--results", res, "--prime", "XYZ"))
    assert "not in the run's vocabulary" in line
    # a run stored before models were kept
    (res / "seq" / "models" / f"{seq_id}.npz").rename(tmp_path / "kept.npz")
    try:
        line = error_line(invoke("export", seq_id, "--results", res, "-o", tmp_path / "m.npz"))
        assert "no stored model" in line and "rerun it with --force" in line
    finally:
        (tmp_path / "kept.npz").rename(res / "seq" / "models" / f"{seq_id}.npz")
    r = invoke("export", seq_id, "--results", res, "--format", "onnx", "-o", tmp_path / "m")
    assert r.exit_code == 2 and "onnx" in r.output
