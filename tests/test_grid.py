"""rnnfast.grid: grid files give the expected points and run_ids, every bad file gives one clear
line per problem, and check() compares stored runs with the [[expect]] bands."""

import hashlib
import math
import re

import numpy as np
import pandas as pd
import pytest

from rnnfast.config import resolve
from rnnfast.grid import Band, Grid, GridError, check, load_grid, run_id

BASE = """
name = "dep-test"
task = "dependency"
description = "a small grid"
[fixed]
cell = "rnn"
lr = 0.1
sequence_length = 20000
[grid]
num_steps = [5, 10]
hidden_size = [4, 16]
seed = [0, 1, 2]
"""


def write(tmp_path, text, name="g.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def grid_of(tmp_path, text, overrides=None):
    return load_grid(write(tmp_path, text), overrides)


def ids(grid):
    return [p.run_id for p in grid.points()]


# ---- valid files ------------------------------------------------------------------------------


def test_points_are_the_product_in_file_order(tmp_path):
    g = grid_of(tmp_path, BASE)
    assert (g.name, g.task, g.description) == ("dep-test", "dependency", "a small grid")
    assert g.fixed == {"cell": "rnn", "lr": 0.1, "sequence_length": 20000}
    assert list(g.axes) == ["num_steps", "hidden_size", "seed"]
    pts = g.points()
    assert len(pts) == 12
    assert pts[0].point == {"num_steps": 5, "hidden_size": 4, "seed": 0}
    assert pts[1].point == {"num_steps": 5, "hidden_size": 4, "seed": 1}
    assert pts[-1].point == {"num_steps": 10, "hidden_size": 16, "seed": 2}
    cfg = {"task": "dependency", "cell": "rnn", "lr": 0.1, "sequence_length": 20000}
    assert pts[3].config == resolve({**cfg, "num_steps": 5, "hidden_size": 16, "seed": 0})
    assert pts[3].config["lags"] == [3, 8]  # task default filled in
    assert len(set(ids(g))) == 12
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids(g))
    assert ids(g) == ids(grid_of(tmp_path, BASE))  # stable across loads


def test_run_id_ignores_key_order_spelling_and_explicit_defaults(tmp_path):
    same = """
task = "dependency"
name = "other-name"
[grid]
seed = [0, 1, 2]
num_steps = [5, 10]
hidden_size = [4, 16]
[fixed]
sequence_length = 20_000
lr = 1e-1
lags = [3, 8]
shifts = [0.5, -0.25]
optimizer = "adagrad"
"""
    a = {tuple(sorted(p.point.items())): p.run_id for p in grid_of(tmp_path, BASE).points()}
    b = {tuple(sorted(p.point.items())): p.run_id for p in grid_of(tmp_path, same).points()}
    assert a == b


@pytest.mark.parametrize(
    "old, new",
    [("lr = 0.1", "lr = 0.2"), ('cell = "rnn"', 'cell = "gru"'), ("[fixed]", "[fixed]\nclip = 1")],
)
def test_run_id_changes_with_any_value(tmp_path, old, new):
    a = ids(grid_of(tmp_path, BASE))
    b = ids(grid_of(tmp_path, BASE.replace(old, new)))
    assert not set(a) & set(b)


def test_run_id_is_sha256_of_the_documented_canonical_json():
    cfg = {"b": 1, "a": (0.1, None), "c": np.float64(2.0), "d": np.int64(3), "e": True}
    text = '{"a":[0.1,null],"b":1,"c":2.0,"d":3,"e":true}'
    assert run_id(cfg) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert run_id(dict(reversed(list(cfg.items())))) == run_id(cfg)


def test_list_keys_fixed_value_and_grid_list_of_lists(tmp_path):
    text = BASE.replace("lr = 0.1", "lr = 0.1\nlags = [2, 5]").replace(
        "seed = [0, 1, 2]", "shifts = [[0.5, -0.25], [0.25, 0.5]]"
    )
    g = grid_of(tmp_path, text)
    assert g.fixed["lags"] == [2, 5]
    assert g.axes["shifts"] == [[0.5, -0.25], [0.25, 0.5]]
    pts = g.points()
    assert len(pts) == 8
    assert all(p.config["lags"] == [2, 5] for p in pts)
    assert pts[1].point["shifts"] == [0.25, 0.5]


def test_no_grid_table_is_one_run(tmp_path):
    g = grid_of(tmp_path, 'name = "one"\ntask = "addition"\n[fixed]\nupdates = 50\n')
    (p,) = g.points()
    assert p.point == {} and p.config["updates"] == 50 and g.expect == []


def test_overrides_replace_insert_and_move_from_fixed(tmp_path):
    g = grid_of(tmp_path, BASE, {"hidden_size": [8], "lr": [0.1, 0.3], "clip": 1.0})
    assert list(g.axes) == ["num_steps", "hidden_size", "seed", "lr", "clip"]
    assert g.axes["hidden_size"] == [8] and g.axes["clip"] == [1.0]
    assert "lr" not in g.fixed
    assert len(g.points()) == 2 * 1 * 3 * 2 * 1
    # same values as the file's: the same run_ids
    assert ids(grid_of(tmp_path, BASE, {"seed": [0, 1, 2]})) == ids(grid_of(tmp_path, BASE))


def test_override_of_a_list_key(tmp_path):
    flat = grid_of(tmp_path, BASE, {"lags": [2, 5]})  # -p lags=2,5: one value
    assert flat.axes["lags"] == [[2, 5]]
    axis = grid_of(tmp_path, BASE, {"lags": [[2, 5], [3, 8]]})
    assert axis.axes["lags"] == [[2, 5], [3, 8]]


# ---- bad files: one line each, naming the file and the key -----------------------------------

BAD = [
    # (replace this, with this, the message must contain)
    ("[fixed]", "colour = 1\n[fixed]", "colour: unknown key"),
    (
        "cell = ",
        "hiden_size = 4\ncell = ",
        "[fixed] hiden_size: unknown key (did you mean 'hidden_size'?)",
    ),
    (
        "seed = [",
        "optimiser = ['sgd']\nseed = [",
        "[grid] optimiser: unknown key (did you mean 'optimizer'?)",
    ),
    ("cell = ", "variant = 'rows'\ncell = ", "variant: not a key of task 'dependency'"),
    ("cell = ", "task = 'mnist'\ncell = ", "task: set it at the top level"),
    ("cell = ", "seed = 3\ncell = ", "[grid] seed: also in [fixed]"),
    (
        'cell = "rnn"',
        'cell = "lstmx"',
        "[fixed] cell: expected one of ['rnn', 'lstm', 'gru'], got 'lstmx'",
    ),
    ('task = "dependency"', 'task = "copying"', "task: expected one of"),
    ('task = "dependency"\n', "", "task: missing; expected one of ['dependency'"),
    ("seed = [0, 1, 2]", "clip = [0.5, nan]", "[grid] clip[1]: expected a finite number, got nan"),
    ('name = "dep-test"', 'name = "dep test"', "name: expected a name"),
    ('name = "dep-test"\n', "", "name: missing"),
    ('description = "a small grid"', "description = 3", "description: expected a string"),
    ("cell = ", "optimizer = 'adamw'\ncell = ", "optimizer: expected one of"),
    ("lr = 0.1", 'lr = "0.1"', "[fixed] lr: expected a finite number, got '0.1'"),
    ("lr = 0.1", "lr = nan", "[fixed] lr: expected a finite number, got nan"),
    ("lr = 0.1", "lr = -1", "[fixed] lr: expected a number > 0, got -1.0"),
    (
        "hidden_size = [4, 16]",
        "hidden_size = [4, inf]",
        "[grid] hidden_size[1]: expected an integer >= 1, got inf",
    ),
    (
        "hidden_size = [4, 16]",
        "hidden_size = [4, 0]",
        "[grid] hidden_size[1]: expected an integer >= 1, got 0",
    ),
    ("hidden_size = [4, 16]", 'hidden_size = [4, "16"]', "hidden_size[1]: expected an integer"),
    (
        "hidden_size = [4, 16]",
        "hidden_size = 4",
        "[grid] hidden_size: expected a non-empty list of values, got 4",
    ),
    ("hidden_size = [4, 16]", "hidden_size = []", "[grid] hidden_size: expected a non-empty list"),
    ("seed = [0, 1, 2]", "seed = [0, 1, 0]", "[grid] seed: expected distinct values, got 0 twice"),
    ("seed = [0, 1, 2]", "clip = [0.1, 1e-1]\nseed = [0]", "clip: expected distinct values"),
    (
        "seed = [0, 1, 2]",
        "lags = [3, 8]",
        "[grid] lags: each run takes a list, so the axis is a list of lists",
    ),
    (
        "cell = ",
        "momentum = 1.0\ncell = ",
        "[fixed] momentum: expected a number in [0, 1), got 1.0",
    ),
    # cross-key problems: reported with the offending grid point
    (
        'cell = "rnn"',
        'nonlinearity = "relu"',  # fine for rnn; the grid adds lstm below
        "nonlinearity: lstm has fixed activations, expected 'tanh', got 'relu' (at grid point "
        "num_steps=5, hidden_size=4, seed=0, cell='lstm')",
    ),
    ("seed = [0, 1, 2]", "shifts = [[0.5]]", "shifts: expected one shift per lag"),
]


@pytest.mark.parametrize("old, new, message", BAD)
def test_bad_file_gives_one_line_naming_the_key(tmp_path, old, new, message):
    assert old in BASE
    text = BASE.replace(old, new, 1)
    if new.startswith("nonlinearity"):
        text += 'cell = ["rnn", "lstm"]\n'
    path = write(tmp_path, text)
    with pytest.raises(GridError) as err:
        load_grid(path)
    text = str(err.value)
    assert "\n" not in text, text
    assert text.startswith(f"{path}: ")
    assert message in text
    assert isinstance(err.value, ValueError)


def test_cross_key_problem_reported_once_not_per_point(tmp_path):
    text = BASE.replace('cell = "rnn"', 'cell = "gru"\nnonlinearity = "relu"')
    with pytest.raises(GridError) as err:
        grid_of(tmp_path, text)
    assert len(err.value.problems) == 1
    assert "(at grid point num_steps=5, hidden_size=4, seed=0)" in str(err.value)


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, 'name = "x"\ntask = "dependency"\n[fixed]\nlr = \n')
    with pytest.raises(GridError, match=r"TOML syntax error: .*line 4") as err:
        load_grid(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_every_problem_is_reported_one_per_line(tmp_path):
    text = BASE.replace("cell = ", "hiden_size = 4\nlr_decay = 1\ncell = ").replace(
        "seed = [0, 1, 2]", "seed = []"
    )
    with pytest.raises(GridError) as err:
        grid_of(tmp_path, text)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 == len(err.value.problems)
    assert [ln.split(": ")[1].split()[1] for ln in lines] == ["hiden_size", "lr_decay", "seed"]


def test_fixed_must_be_a_table(tmp_path):
    with pytest.raises(GridError, match=r"g.toml: fixed: expected a table \[fixed\], got 3$"):
        grid_of(tmp_path, 'name = "x"\ntask = "dependency"\nfixed = 3\n')


def test_missing_file(tmp_path):
    with pytest.raises(GridError, match="cannot read the file"):
        load_grid(tmp_path / "nope.toml")


def test_bad_override_names_the_option(tmp_path):
    with pytest.raises(GridError, match=r"-p hiden_size: unknown key \(did you mean 'hidden_size'"):
        grid_of(tmp_path, BASE, {"hiden_size": [4]})
    with pytest.raises(GridError, match=r"-p lr\[0\]: expected a number > 0"):
        grid_of(tmp_path, BASE, {"lr": [-1]})


EXPECT_BAD = [
    ('metric = "loss"\nmin = 0\ncolour = 1', "#1 colour: unknown key"),
    ("min = 0", "#1 metric: missing"),
    (
        'metric = "los"\nmin = 0',
        "#1 metric: expected one of ['loss', 'updates'], got 'los' (did you mean 'loss'?)",
    ),
    ('metric = "test_accuracy"\nmin = 0', "metric: expected one of ['loss', 'updates']"),
    ('metric = "loss"', "#1 min: missing; a band needs min and/or max"),
    ('metric = "loss"\nmin = 1\nmax = 0', "#1 min: expected min <= max, got min=1.0, max=0.0"),
    ('metric = "loss"\nmin = nan', "#1 min: expected a finite number, got nan"),
    ('metric = "loss"\nmax = "1"', "#1 max: expected a finite number"),
    ('metric = "loss"\nvalue = 0.5', "#1 tolerance: missing"),
    ('metric = "loss"\nvalue = 0.5\ntolerance = -1', "#1 tolerance: expected a number >= 0"),
    ('metric = "loss"\nvalue = 0.5\ntolerance = 0.1\nmax = 1', "either min/max or value"),
    ('metric = "loss"\nmax = 1\nper = "median"', "#1 per: expected 'run' or 'mean', got 'median'"),
    ('metric = "loss"\nmax = 1\nstep = 0', "#1 step: expected an update number >= 1, got 0"),
    ('metric = "updates"\nmax = 1\nstep = 10', "#1 step: 'updates' has no curve"),
    (
        'metric = "loss"\nmax = 1\nwhere = {hiden_size = 4}',
        "#1 where.hiden_size: unknown key (did you mean 'hidden_size'?)",
    ),
    (
        'metric = "loss"\nmax = 1\nwhere = {hidden_size = "4"}',
        "#1 where.hidden_size: expected an integer",
    ),
    (
        'metric = "loss"\nmax = 1\nwhere = {hidden_size = 32}',
        "#1 where.hidden_size: expected a value of the grid (4, 16), got 32",
    ),
    (
        'metric = "loss"\nmax = 1\nwhere = {cell = "gru"}',
        "#1 where.cell: expected a value of the grid ('rnn'), got 'gru'",
    ),
    ('metric = "loss"\nmax = 1\nwhere = 3', "#1 where: expected a table"),
]


@pytest.mark.parametrize("band, message", EXPECT_BAD)
def test_bad_expect_band(tmp_path, band, message):
    path = write(tmp_path, BASE + "[[expect]]\n" + band + "\n")
    with pytest.raises(GridError) as err:
        load_grid(path)
    assert "\n" not in str(err.value)
    assert f"{path}: [[expect]] " in str(err.value)
    assert message in str(err.value)


def test_expect_as_a_table_is_rejected(tmp_path):
    with pytest.raises(GridError, match=r"expect: expected an array of tables \[\[expect\]\]"):
        grid_of(tmp_path, BASE + '[expect]\nmetric = "loss"\n')


def test_expect_bands_parsed(tmp_path):
    text = (
        BASE
        + """
[[expect]]
metric = "loss"
where = {num_steps = 5, lr = 1e-1}
min = 0.6
max = 0.7
per = "mean"
[[expect]]
metric = "loss"
value = 0.5
tolerance = 0.25
step = 100
label = "early"
"""
    )
    a, b = grid_of(tmp_path, text).expect
    assert a == Band("loss", 0.6, 0.7, {"num_steps": 5, "lr": 0.1}, None, "mean", "")
    assert b == Band("loss", 0.25, 0.75, {}, 100, "run", "early")


# ---- check ------------------------------------------------------------------------------------

SMALL = """
name = "small"
task = "addition"
[fixed]
updates = 2000
[grid]
hidden_size = [8, 16]
seed = [0, 1]
"""


def small_grid(tmp_path, bands):
    return grid_of(tmp_path, SMALL + bands)


def stored(grid, values, status=None, metric="loss"):
    """runs with final.<metric> = values[i] for point i (None: not stored)."""
    rows = []
    for i, (p, v) in enumerate(zip(grid.points(), values, strict=True)):
        if v is not None:
            st = (status or {}).get(i, "ok")
            rows.append({"run_id": p.run_id, "status": st, **p.config, f"final.{metric}": v})
    return pd.DataFrame(rows)


NO_CURVES = pd.DataFrame(columns=["run_id", "step", "epoch", "metric", "value"])


def test_check_per_run_ok_outside_missing(tmp_path):
    g = small_grid(tmp_path, '[[expect]]\nmetric = "loss"\nmin = 0.0\nmax = 0.1\n')
    rep = check(g, stored(g, [0.05, 0.05, 0.05, 0.05]), NO_CURVES)
    assert rep.ok and list(rep.rows["verdict"]) == ["ok"] * 4
    assert list(rep.rows["run_id"]) == ids(g)
    assert rep.rows["point"][0] == "hidden_size=8, seed=0"

    rep = check(g, stored(g, [0.05, 0.5, None, 0.05], status={3: "diverged"}), NO_CURVES)
    assert not rep.ok
    assert list(rep.rows["verdict"]) == ["ok", "outside", "missing", "missing"]
    assert list(rep.rows["note"])[2:] == ["not stored", "status diverged"]
    assert math.isnan(rep.rows["observed"][2]) and rep.rows["observed"][1] == 0.5
    assert (rep.rows["lo"] == 0.0).all() and (rep.rows["hi"] == 0.1).all()
    text = rep.format()
    assert text.splitlines()[0].split() == [
        "band", "point", "run", "observed", "expected", "verdict", "note"
    ]  # fmt: skip
    assert "outside" in text and "not stored" in text and "[0, 0.1]" in text
    assert text.splitlines()[-1] == "FAIL: 1 ok, 1 outside, 2 missing"
    head, *rows, _ = text.splitlines()
    for row, verdict in zip(rows, rep.rows["verdict"], strict=True):  # columns aligned
        assert row[head.index("verdict") :].startswith(verdict)


def test_check_with_no_runs_at_all(tmp_path):
    g = small_grid(tmp_path, '[[expect]]\nmetric = "loss"\nmax = 1\n')
    rep = check(g, pd.DataFrame(), NO_CURVES)
    assert not rep.ok and set(rep.rows["verdict"]) == {"missing"}


def test_check_where_selects_points_and_min_only(tmp_path):
    g = small_grid(tmp_path, '[[expect]]\nmetric = "error"\nwhere = {hidden_size = 16}\nmin = 2\n')
    rep = check(g, stored(g, [0, 0, 3, 1], metric="error"), NO_CURVES)
    assert list(rep.rows["run_id"]) == ids(g)[2:]
    assert list(rep.rows["verdict"]) == ["ok", "outside"]
    assert ">= 2" in rep.format()


def test_check_missing_metric_column_is_missing(tmp_path):
    g = small_grid(tmp_path, '[[expect]]\nmetric = "error"\nmax = 1\n')
    rep = check(g, stored(g, [0.1] * 4), NO_CURVES)  # only final.loss stored
    assert set(rep.rows["verdict"]) == {"missing"} and rep.rows["note"][0] == "no final.error"


def test_check_per_mean(tmp_path):
    band = '[[expect]]\nmetric = "loss"\nwhere = {hidden_size = 8}\n'
    band += 'value = 0.5\ntolerance = 0.1\nper = "mean"\n'
    g = small_grid(tmp_path, band)
    rep = check(g, stored(g, [0.3, 0.65, 9, 9]), NO_CURVES)  # mean 0.475 in [0.4, 0.6]
    (row,) = rep.rows.to_dict("records")
    assert rep.ok and row["verdict"] == "ok" and row["observed"] == pytest.approx(0.475)
    assert row["run_id"] == ",".join(ids(g)[:2]) and row["point"] == "hidden_size=8"
    assert "2 runs" in rep.format()

    rep = check(g, stored(g, [0.3, 0.3, 9, 9]), NO_CURVES)
    assert rep.rows["verdict"][0] == "outside"
    rep = check(g, stored(g, [0.5, None, 9, 9]), NO_CURVES)
    assert rep.rows["verdict"][0] == "missing" and "1 of 2 missing" in rep.rows["note"][0]


def test_check_step_band_reads_the_curve(tmp_path):
    g = small_grid(tmp_path, '[[expect]]\nmetric = "error"\nstep = 1001\nmax = 1\n')
    rows = []
    for k, p in enumerate(g.points()):
        for step in (1000, 1001, 1002):
            rows.append((p.run_id, step, 1, "error", 0.0 if step == 1001 else 5.0))
            rows.append((p.run_id, step, 1, "loss", 7.0))
        if k == 1:
            rows[-3] = (p.run_id, 1001, 1, "error", 3.0)
    curves = pd.DataFrame(rows, columns=["run_id", "step", "epoch", "metric", "value"])
    curves = curves[~((curves["run_id"] == ids(g)[2]) & (curves["step"] == 1001))]
    curves["metric"] = curves["metric"].astype("category")
    rep = check(g, stored(g, [9, 9, 9, 9]), curves)
    assert list(rep.rows["verdict"]) == ["ok", "outside", "missing", "ok"]
    assert list(rep.rows["observed"])[:2] == [0.0, 3.0]
    assert rep.rows["note"][2] == "no error at step 1001"
    assert "#1 error@1001" in rep.format()


def test_check_band_selecting_nothing_after_overrides_fails(tmp_path):
    text = SMALL + '[[expect]]\nmetric = "loss"\nwhere = {hidden_size = 8}\nmax = 1\n'
    g = load_grid(write(tmp_path, text), {"hidden_size": [32]})  # no error: -p changed the grid
    rep = check(g, stored(g, [0.1, 0.1]), NO_CURVES)
    assert not rep.ok and rep.rows["note"][0] == "no grid point selected"


def test_check_without_bands_is_ok(tmp_path):
    g = Grid("x", "addition", "", None, {"updates": 10}, {"seed": [0]})
    rep = check(g, pd.DataFrame(), NO_CURVES)
    assert rep.ok and len(rep.rows) == 0
    assert rep.format().endswith("PASS: 0 ok, 0 outside, 0 missing")


@pytest.mark.parametrize("key, values", [("threads", "[1, 2]"), ("data_dir", '["a", "b"]')])
def test_keys_outside_the_run_identity_are_not_axes(tmp_path, key, values):
    path = tmp_path / "g.toml"
    path.write_text(f'name = "g"\ntask = "mnist"\n[grid]\n{key} = {values}\n')
    with pytest.raises(GridError, match=f"{key}: not a grid axis"):
        load_grid(path)


# ---- size guards ------------------------------------------------------------------------------


def test_a_grid_above_max_runs_is_refused_from_the_axis_lengths(tmp_path):
    # 2 x 10^3 x 10^3 = 2 * 10^6 points: refused before the product is expanded
    text = BASE.replace("hidden_size = [4, 16]", f"hidden_size = {list(range(1, 1001))}")
    text = text.replace("seed = [0, 1, 2]", f"seed = {list(range(1000))}")
    path = write(tmp_path, text)
    with pytest.raises(GridError) as err:
        load_grid(path)
    assert err.value.problems == [
        f"{path}: [grid] 2,000,000 runs (2 num_steps x 1000 hidden_size x 1000 seed): more "
        "than the limit of 100,000; split the grid or raise it (--max-runs)"
    ]
    path = write(tmp_path, BASE)
    with pytest.raises(GridError, match=r"\[grid\] 12 runs .*limit of 11;"):
        load_grid(path, max_runs=11)
    assert len(load_grid(path, max_runs=12).points()) == 12


def test_duplicate_check_is_linear_10_000_values_under_a_second(tmp_path):
    import time  # noqa: PLC0415

    from rnnfast.config import schema  # noqa: PLC0415
    from rnnfast.grid import _axis  # noqa: PLC0415

    values = list(range(10_000))
    t = time.process_time()  # CPU time: a busy machine does not inflate it much
    assert _axis("seed", schema("dependency")["seed"], values) == values
    # measured on 2 cores: 0.18 s; the former pairwise check took 2.4 s
    assert time.process_time() - t < 1.0
    lags = [[i, i + 1] for i in range(1, 10_001)]
    t = time.process_time()
    assert len(_axis("lags", schema("dependency")["lags"], lags)) == 10_000
    assert time.process_time() - t < 1.0
    with pytest.raises(ValueError, match=r"^seed: expected distinct values, got 7 twice$"):
        _axis("seed", schema("dependency")["seed"], values + [7])
    with pytest.raises(GridError, match=r"\[grid\] seed: expected distinct values, got 1 twice"):
        grid_of(tmp_path, BASE.replace("seed = [0, 1, 2]", "seed = [0, 1, 2, 1]"))


# ---- diverge_above: in a run's identity only when set ----------------------------------------


def test_run_ids_are_those_from_before_diverge_above_existed():
    # computed by rnnfast at commit e9ca9ad, before the key: stored runs keep their ids
    before = {"dependency": "5c2075541af11a19", "addition": "05013c7538fc23f7"}
    for task, rid in before.items():
        assert run_id(resolve({"task": task})) == rid
        assert run_id(resolve({"task": task, "diverge_above": None})) == rid
        assert run_id(resolve({"task": task, "diverge_above": 10})) != rid


def test_diverge_above_as_an_axis_and_its_bad_values(tmp_path):
    g = grid_of(tmp_path, BASE.replace("seed = [0, 1, 2]", "diverge_above = [2, 10.0]"))
    assert g.axes["diverge_above"] == [2.0, 10.0]
    assert len(set(ids(g))) == 8
    plain = ids(grid_of(tmp_path, BASE.replace("seed = [0, 1, 2]", "")))
    assert not set(plain) & set(ids(g))
    with pytest.raises(GridError) as err:
        grid_of(tmp_path, BASE.replace("[fixed]", "[fixed]\ndiverge_above = 1"))
    assert str(err.value) == (
        f"{tmp_path / 'g.toml'}: [fixed] diverge_above: expected a number > 1 (a multiple of "
        "the starting loss), or none, got 1"
    )
