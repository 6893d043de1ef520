"""The sequences task: arrays and files (.npz, .ts) in, the forms inferred, bad input rejected
with one line, runs identified by their data's content."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from data_paths import data_dir, missing

import rnnfast
from rnnfast.cli import main
from rnnfast.config import resolve
from rnnfast.grid import load_grid, run_id
from rnnfast.run_setup import RunSetup
from rnnfast.seqdata import Split
from rnnfast.tasks.sequences import SequencesTask

EXAMPLES = Path(__file__).resolve().parents[1] / "experiments" / "data"
VOWELS = data_dir("uea") / "JapaneseVowels"
SMALL = {"task": "sequences", "hidden_size": 8, "batch_size": 10, "epochs": 2, "dtype": "float64"}


def waves(n=60, T=12, I=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, T, I))
    x[:, :, 0] += y[:, None]
    return x, y


def setup_of(cfg: dict, data=None) -> RunSetup:
    return RunSetup(resolve({**SMALL, **cfg}), data)


def splits_of(cfg: dict, data=None) -> dict[str, Split]:
    """The task's splits as the training loops get them (no training)."""
    td = SequencesTask().prepare(resolve({**SMALL, **cfg}), data)
    return {"train": td.train(1), **{e.name: e.split for e in td.evaluations}}


def ragged(n=60, T=12, I=3, seed=0):
    """waves() cut to random lengths 3..T; feature 1 of step 0 holds each sequence's length,
    so a split's rows can be matched with their lengths after the validation draw."""
    x, y = waves(n, T, I, seed)
    lengths = np.random.default_rng(seed + 10).integers(3, T + 1, n)
    lengths[0] = 3  # unequal for sure
    for i, k in enumerate(lengths):
        x[i, k:] = 0.0
    x[:, 0, 1] = lengths
    return x, y, lengths


def assert_own_lengths(split: Split, T: int, I: int = 3) -> None:
    assert split.lengths is not None and split.lengths.dtype == np.int64
    np.testing.assert_array_equal(split.lengths, split.x.reshape(split.count, T, I)[:, 0, 1])


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


# ---------------------------------------------------------------------------- lengths


def test_unequal_lengths_from_arrays_reach_every_split():
    x, y, lengths = ragged(60)
    sp = splits_of({}, (x, y, lengths))  # a validation split of 6 drawn by the seed
    assert (sp["train"].count, sp["valid"].count) == (54, 6)
    for split in sp.values():
        assert_own_lengths(split, 12)  # each sequence keeps its own length
    assert sorted(np.concatenate([sp["train"].lengths, sp["valid"].lengths])) == sorted(lengths)
    # lists and other integer dtypes are taken, and stored as int64
    sp = splits_of({"valid_fraction": 0.0}, (x, y, lengths.astype(np.int32).tolist()))
    np.testing.assert_array_equal(sp["train"].lengths, lengths)
    assert sp["train"].lengths.dtype == np.int64


def test_unequal_lengths_in_a_dict_of_splits():
    (x, y, lengths), (xv, yv, lv), (xt, yt) = ragged(40), ragged(20, seed=1), waves(30, seed=2)
    sp = splits_of({}, {"train": (x, y, lengths), "valid": (xv, yv, lv), "test": (xt, yt)})
    np.testing.assert_array_equal(sp["train"].lengths, lengths)
    np.testing.assert_array_equal(sp["valid"].lengths, lv)
    assert sp["test"].lengths is None  # no lengths: every step is real


def test_full_lengths_are_none_so_equal_length_data_takes_the_old_path():
    x, y = waves(40)
    sp = splits_of({}, {"train": (x, y, np.full(40, 12)), "test": (x, y, np.full(40, 12))})
    assert sp["train"].lengths is None and sp["valid"].lengths is None
    assert sp["test"].lengths is None
    # a validation draw that only picks full-length sequences gets None too
    lengths = np.full(40, 12)
    lengths[-1] = 5
    sp = splits_of({"valid_fraction": 0.05}, (x, y, lengths))  # 2 of 40 to validation
    own = [sp[k].lengths for k in ("train", "valid")]
    assert [o is None for o in own].count(True) == 1  # the other split holds the short one
    assert 5 in next(o for o in own if o is not None)


def test_unequal_lengths_from_npz_files(tmp_path):
    x, y, lengths = ragged(50)
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    from_file = splits_of({"data": str(tmp_path / "d.npz")})
    from_arrays = splits_of({}, (x, y, lengths))
    for k in ("train", "valid"):
        assert_own_lengths(from_file[k], 12)
        np.testing.assert_array_equal(from_file[k].lengths, from_arrays[k].lengths)
        np.testing.assert_array_equal(from_file[k].x, from_arrays[k].x)


def test_unequal_lengths_from_ts_files_and_splits_of_other_lengths(tmp_path):
    head = "@problemName Toy\n@univariate false\n@equalLength false\n@classLabel true a b\n@data\n"
    (tmp_path / "tr.ts").write_text(head + "1,2,3:4,5,6:a\n7:8:b\n1,2:3,4:a\n")
    (tmp_path / "te.ts").write_text(head + "1,2,3,4,5:1,1,1,1,1:b\n9,9,9,9,9:2,2,2,2,2:a\n")
    cfg = {"train": str(tmp_path / "tr.ts"), "test": str(tmp_path / "te.ts"), "batch_size": 1}
    td = SequencesTask().prepare(resolve({**SMALL, **cfg, "valid_fraction": 0.0}))
    assert td.form.steps == 5 and td.form.input_size == 2  # the longest split's T
    train, test = td.train(1), td.evaluations[0].split
    np.testing.assert_array_equal(train.lengths, [3, 1, 2])  # padded from 3 to 5 steps
    assert test.lengths is None  # all 5 steps real
    np.testing.assert_array_equal(train.x.reshape(3, 5, 2)[0],
                                  [[1, 4], [2, 5], [3, 6], [0, 0], [0, 0]])  # fmt: skip
    np.testing.assert_array_equal(train.y.ravel(), [0, 1, 0])


def test_splits_of_other_lengths_pad_per_step_targets():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6, 2)), rng.integers(0, 3, (20, 6))
    xt, yt = rng.normal(size=(8, 9, 2)), rng.integers(0, 3, (8, 9))
    sp = splits_of({"valid_fraction": 0.0}, {"train": (x, y), "test": (xt, yt)})
    np.testing.assert_array_equal(sp["train"].lengths, np.full(20, 6))
    assert sp["train"].y.shape == (20, 9) and not sp["train"].y[:, 6:].any()
    np.testing.assert_array_equal(sp["train"].y[:, :6], y)
    assert sp["test"].lengths is None and sp["test"].y.shape == (8, 9)
    with pytest.raises(ValueError, match=r"^test: y: expected the training data's target shape "
                                         r"\(9,\), got \(6,\)"):  # fmt: skip
        splits_of({}, {"train": (x, y), "test": (xt, yt[:, :6])})
    with pytest.raises(ValueError, match=r"^test: x: expected the training data's step shape"):
        splits_of({}, {"train": (x, y), "test": (xt[:, :, :1], yt)})


@pytest.mark.skipif(not VOWELS.is_dir(), reason=missing("uea"))
def test_japanese_vowels_files_keep_their_lengths():
    from rnnfast.tasks.uea_ts import read_ts  # noqa: PLC0415

    sp = splits_of({"train": str(VOWELS / "JapaneseVowels_TRAIN.ts"),
                    "test": str(VOWELS / "JapaneseVowels_TEST.ts")})  # fmt: skip
    assert (sp["train"].count, sp["valid"].count, sp["test"].count) == (243, 27, 370)
    test = read_ts(VOWELS / "JapaneseVowels_TEST.ts")
    np.testing.assert_array_equal(sp["test"].lengths, test.lengths)  # 7 to 29 steps
    np.testing.assert_array_equal(sp["test"].x, test.padded().reshape(370, 29 * 12))
    train_lengths = np.concatenate([sp["train"].lengths, sp["valid"].lengths])
    assert train_lengths.max() == 26 and sp["train"].x.shape == (243, 29 * 12)
    assert sorted(train_lengths) == sorted(read_ts(VOWELS / "JapaneseVowels_TRAIN.ts").lengths)


@pytest.mark.parametrize(
    "lengths, message",
    [
        (np.full(20, 12.0), r"lengths: expected \(20,\) integers, got float64 \(20,\)"),
        (np.full(19, 12), r"lengths: expected \(20,\) integers, got int64 \(19,\)"),
        (np.full((20, 1), 12), r"lengths: expected \(20,\) integers, got int64 \(20, 1\)"),
        (np.full(20, True), r"lengths: expected \(20,\) integers, got bool"),
        (np.r_[np.full(19, 12), 0], r"lengths: expected values in \[1, T=12\], got 0 at index 19"),
        (np.r_[13, np.full(19, 12)], r"lengths: expected values in \[1, T=12\], got 13 at index 0"),
    ],
)  # fmt: skip
def test_bad_lengths_are_rejected_with_one_line(lengths, message):
    x, y = waves(20)
    with pytest.raises(ValueError, match="^data: " + message):
        rnnfast.train(SMALL, data=(x, y, lengths))
    with pytest.raises(ValueError, match="^valid: " + message):
        rnnfast.train(SMALL, data={"train": (x, y), "valid": (x, y, lengths)})


def test_unequal_lengths_train_on_each_sequences_last_real_step():
    """The class shows only at each sequence's last real step; the padding after it holds
    misleading values. Packed semantics read the target there, so the network learns it."""
    rng = np.random.default_rng(0)
    n, T = 200, 10
    y = rng.integers(0, 2, n)
    lengths = rng.integers(2, T + 1, n)
    x = rng.normal(0, 0.1, (n, T, 1))
    x[np.arange(n), lengths - 1, 0] += np.where(y == 1, 1.0, -1.0)
    pad = np.arange(T)[None, :] >= lengths[:, None]
    x[pad, 0] = np.where(y == 1, -1.0, 1.0)[:, None].repeat(T, 1)[pad]  # the opposite sign
    r = rnnfast.train({**SMALL, "epochs": 8, "lr": 0.02, "batch_size": 20},
                      data={"train": (x, y, lengths), "test": (x, y, lengths)})  # fmt: skip
    assert r.status == "ok", r.message
    assert r.final["test_accuracy"] >= 0.98  # measured 1.0; without the lengths 0.91


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
    lengths = np.full(30, 12)
    np.savez(tmp_path / "c.npz", x=x, y=y, lengths=lengths)
    lengths[0] = 5
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    idc, idd = (run_id(resolve({**SMALL, "data": str(tmp_path / f)})) for f in ("c.npz", "d.npz"))
    assert idc != idd  # other lengths: another run


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
