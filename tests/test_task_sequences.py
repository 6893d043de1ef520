"""The sequences task: arrays and files (.npz, .ts) in, the forms inferred, bad input rejected
with one line, runs identified by their data's content."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import rnnfast
from rnnfast.cli import main
from rnnfast.config import resolve
from rnnfast.grid import load_grid, run_id
from rnnfast.run_setup import RunSetup

EXAMPLES = Path(__file__).resolve().parents[1] / "experiments" / "data"
SMALL = {"task": "sequences", "hidden_size": 8, "batch_size": 10, "epochs": 2, "dtype": "float64"}


def waves(n=60, T=12, I=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, T, I))
    x[:, :, 0] += y[:, None]
    return x, y


def setup_of(cfg: dict, data=None) -> RunSetup:
    return RunSetup(resolve({**SMALL, **cfg}), data)


# ---------------------------------------------------------------------------- forms


@pytest.mark.parametrize(
    "x_shape, x_kind, y_shape, y_kind, form",
    [
        ((40, 6, 3), "f", (40,), "i", ("dense", 3, "classes", 3, False)),
        ((40, 6), "f", (40,), "i", ("dense", 1, "classes", 3, False)),
        ((40, 6, 2), "u8", (40, 6), "i", ("quantized", 2, "classes", 3, True)),
        ((40, 6), "i", (40,), "i", ("onehot", 5, "classes", 3, False)),
        ((40, 6, 3), "f", (40,), "f", ("dense", 3, "reals", 1, False)),
        ((40, 6, 3), "f", (40, 4), "f", ("dense", 3, "reals", 4, False)),
        ((40, 6, 3), "f", (40, 6), "f", ("dense", 3, "reals", 1, True)),
        ((40, 6, 3), "f", (40, 6, 2), "f", ("dense", 3, "reals", 2, True)),
    ],
)
def test_the_form_is_inferred_from_dtypes_and_shapes(x_shape, x_kind, y_shape, y_kind, form):
    rng = np.random.default_rng(0)
    x = {"f": lambda: rng.normal(size=x_shape),
         "u8": lambda: rng.integers(0, 256, x_shape).astype(np.uint8),
         "i": lambda: rng.integers(0, 5, x_shape)}[x_kind]()  # fmt: skip
    x.flat[0] = 4 if x_kind == "i" else x.flat[0]  # vocabulary 5
    y = rng.integers(0, 3, y_shape) if y_kind == "i" else rng.normal(size=y_shape)
    if y_kind == "i":
        y.flat[0] = 2
    f = setup_of({"valid_fraction": 0.0}, (x, y)).form
    assert (f.inputs, f.input_size, f.targets, f.outputs, f.per_step) == form
    assert (f.mode, f.steps) == ("set", x_shape[1])


def test_keys_override_the_inference():
    x, _ = waves()
    y = np.random.default_rng(1).normal(size=(60, 12))  # (N, T) reals: per step by default
    assert setup_of({}, (x, y)).form.per_step
    f = setup_of({"per_step": False}, (x, y)).form
    assert (f.per_step, f.outputs) == (False, 12)
    yi = np.arange(60) % 3
    assert setup_of({"targets": "reals"}, (x, yi)).form.targets == "reals"
    assert setup_of({"targets": "classes"}, (x, yi.astype(float))).form.targets == "classes"
    tok = np.random.default_rng(2).integers(0, 9, (60, 12))
    f = setup_of({"embedding": 4}, (tok, yi)).form
    assert (f.inputs, f.input_size, f.vocab) == ("embed", 4, 9)


def test_arrays_train_and_learn():
    x, y = waves(120)
    r = rnnfast.train({**SMALL, "epochs": 6, "lr": 0.02}, data=(x, y))
    assert r.status == "ok"
    assert set(r.curves["metric"]) == {"loss", "valid_loss", "valid_accuracy"}
    assert r.final["valid_accuracy"] >= 0.9  # the class is the mean of feature 0
    acc = r.curves[r.curves["metric"] == "valid_accuracy"]
    np.testing.assert_array_equal(acc["epoch"], np.arange(1, 7))
    # a validation split of 10 % drawn by the seed: 12 of 120, 108 // 10 updates an epoch
    assert r.info["valid_sequences"] == 12 and r.info["train_sequences"] == 108
    assert r.final["updates"] == 6 * 10


def test_explicit_splits_and_test_metrics_at_the_end():
    (x, y), (xv, yv), (xt, yt) = waves(60), waves(20, seed=1), waves(30, seed=2)
    r = rnnfast.train(SMALL, data={"train": (x, y), "valid": (xv, yv), "test": (xt, yt)})
    assert set(r.curves["metric"]) == {"loss", "valid_loss", "valid_accuracy"}
    assert {"test_loss", "test_accuracy"} <= set(r.final)
    assert r.info["test_sequences"] == 30
    # lengths all equal to T are accepted
    r2 = rnnfast.train(SMALL, data={"train": (x, y, np.full(60, 12)), "valid": (xv, yv),
                                    "test": (xt, yt)})  # fmt: skip
    np.testing.assert_array_equal(r2.curves["value"], r.curves["value"])


def test_same_seed_same_curve_other_seed_other_split():
    x, y = waves(80)
    a, b = rnnfast.train(SMALL, data=(x, y)), rnnfast.train(SMALL, data=(x, y))
    assert np.array_equal(a.curves["value"].to_numpy(), b.curves["value"].to_numpy())
    c = rnnfast.train({**SMALL, "seed": 1}, data=(x, y))
    assert not np.array_equal(a.curves["value"].to_numpy(), c.curves["value"].to_numpy())


# ---------------------------------------------------------------------------- files


def test_npz_and_ts_files(tmp_path):
    x, y = waves(50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    r = rnnfast.train({**SMALL, "data": str(tmp_path / "d.npz")})
    same = rnnfast.train(SMALL, data=(x, y))
    np.testing.assert_array_equal(r.curves["value"], same.curves["value"])
    r = rnnfast.train({**SMALL, "train": str(EXAMPLES / "waves_TRAIN.ts"),
                       "test": str(EXAMPLES / "waves_TEST.ts")})  # fmt: skip
    assert r.status == "ok" and 0 <= r.final["test_accuracy"] <= 1
    assert r.info["test_sequences"] == 150


def test_unequal_lengths_are_rejected_until_the_kernels_honour_them(tmp_path):
    uea = Path(__file__).resolve().parents[2] / "shared" / "data" / "uea" / "JapaneseVowels"
    x, y = waves(20)
    lengths = np.full(20, 12)
    lengths[3] = 7
    with pytest.raises(ValueError, match=r"^data: lengths: sequences of unequal lengths "
                                         r"\(7 to 12 steps\) are not supported yet"):  # fmt: skip
        rnnfast.train(SMALL, data=(x, y, lengths))
    if uea.is_dir():
        with pytest.raises(ValueError, match=r"^train: lengths: sequences of unequal lengths"):
            rnnfast.train({**SMALL, "train": str(uea / "JapaneseVowels_TRAIN.ts")})


def test_run_id_follows_the_data_content_not_its_path(tmp_path):
    x, y = waves(30)
    a, b = tmp_path / "a.npz", tmp_path / "sub" / "b.npz"
    b.parent.mkdir()
    np.savez(a, x=x, y=y)
    np.savez(b, x=x, y=y)
    ida = run_id(resolve({**SMALL, "data": str(a)}))
    assert ida == run_id(resolve({**SMALL, "data": str(b)}))  # moved: the same run
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 3
    np.savez(b, x=x, y=y2)
    assert ida != run_id(resolve({**SMALL, "data": str(b)}))  # other bytes: another run


# ---------------------------------------------------------------------------- bad input


def _bad(tmp_path, **arrays) -> str:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    return str(p)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.npz"), r"data: .*missing\.npz: no such file"),
        (lambda p: (p / "x.csv").write_text("1") and str(p / "x.csv"), r"expected a \.npz or \.ts"),
        (lambda p: (p / "t.npz").write_text("nope") and str(p / "t.npz"), r"cannot read as \.npz"),
        (lambda p: _bad(p, x=np.zeros((5, 3, 2))), r"missing array 'y'"),
        (lambda p: _bad(p, x=np.zeros((5, 3, 2)), y=np.zeros(4, int)),
         r"y: expected a first dimension of N=5"),
        (lambda p: _bad(p, x=np.full((5, 3, 2), np.nan), y=np.zeros(5, int)),
         r"x: NaN or inf at index \(0, 0, 0\)"),
        (lambda p: _bad(p, x=np.zeros((5, 3, 2)), y=np.array([0, 1, np.inf, 0, 1])),
         r"y: NaN or inf at index \(2,\)"),
        (lambda p: _bad(p, x=np.zeros((5, 3, 2)), y=np.array([0, 1, -1, 0, 1])),
         r"class labels must be integers >= 0"),
        (lambda p: _bad(p, x=np.zeros((5, 3, 2)), y=np.zeros(5, int), lengths=[3, 3, 3, 3, 0]),
         r"lengths: expected values in \[1, T=3\], got 0 at index 4"),
        (lambda p: _bad(p, x=np.zeros((5, 3, 2)), y=np.zeros(5, int), lengths=[3, 3, 3, 3, 4]),
         r"lengths: expected values in \[1, T=3\], got 4 at index 4"),
        (lambda p: _bad(p, x=np.zeros((5, 3, 2)), y=np.zeros((5, 4), int)),
         r"y: expected \(N,\) or \(N, T=3\) class labels"),
    ],
)  # fmt: skip
def test_bad_files_fail_with_one_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as e:
        rnnfast.train({**SMALL, "data": path, "batch_size": 2})
    assert "\n" not in str(e.value)


def test_a_malformed_ts_file_names_its_line(tmp_path):
    p = tmp_path / "bad.ts"
    p.write_text("@problemName X\n@classLabel true a b\n@data\n1,2,3:a\n1,2,x:b\n")
    with pytest.raises(ValueError, match=r"^data: .*bad\.ts line 5: "):
        rnnfast.train({**SMALL, "data": str(p), "batch_size": 1})


def test_bad_arguments():
    x, y = waves(20)
    with pytest.raises(ValueError, match=r"^data: the sequences task needs data = PATH"):
        rnnfast.train(SMALL)
    with pytest.raises(ValueError, match=r"^data: expected \(x, y\) or \(x, y, lengths\)"):
        rnnfast.train(SMALL, data=x)
    with pytest.raises(ValueError, match=r"^data: unknown split 'validation'"):
        rnnfast.train(SMALL, data={"train": (x, y), "validation": (x, y)})
    with pytest.raises(ValueError, match=r"^batch_size: expected at most the 18 training"):
        rnnfast.train({**SMALL, "batch_size": 19}, data=(x, y))
    with pytest.raises(ValueError, match=r"^embedding: needs token ids"):
        rnnfast.train({**SMALL, "embedding": 3}, data=(x, y))
    with pytest.raises(ValueError, match=r"^data: give data .* or train, not both"):
        rnnfast.train({**SMALL, "data": "a.npz", "train": "b.npz"})


# ---------------------------------------------------------------------------- CLI and grids


def test_cli_bad_data_is_one_line_and_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["run", "one", "--task", "sequences",
                                    f"data={tmp_path / 'nothing.npz'}"])  # fmt: skip
    assert res.exit_code == 2
    assert "no such file" in res.output and "Traceback" not in res.output


def test_grid_files_name_data_relative_to_themselves_and_check_it_first(tmp_path):
    x, y = waves(40)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "w.npz", x=x, y=y)
    grid = tmp_path / "g.toml"
    grid.write_text('name = "g"\ntask = "sequences"\n[fixed]\ndata = "data/w.npz"\n'
                    "hidden_size = 4\nbatch_size = 8\nepochs = 1\n"
                    "[grid]\nseed = [0, 1]\n")  # fmt: skip
    g = load_grid(grid)
    cfg = g.points()[0].config
    assert Path(cfg["data"]) == tmp_path / "data" / "w.npz"
    res = CliRunner().invoke(main, ["run", "grid", str(grid), "--results", str(tmp_path / "r"),
                                    "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    np.savez(tmp_path / "data" / "w.npz", x=x[:, :, :2] * np.nan, y=y)
    res = CliRunner().invoke(main, ["run", "grid", str(grid), "--results", str(tmp_path / "r2"),
                                    "--quiet"])  # fmt: skip
    assert res.exit_code == 2
    assert "x: NaN or inf" in res.output and not (tmp_path / "r2").exists()
