"""rnnfast.plot on synthetic results: lines, bands, labels, smoothing, references, errors."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from rnnfast.plot import plot_curves, save_figure
from rnnfast.tasks.dependency import expected_cross_entropies

UPE = 40  # updates per epoch of the synthetic dependency runs


def _dependency(num_steps=(5, 10), seeds=(0, 1, 2), epochs=2, hidden_size=4):
    """2 num_steps x 3 seeds: noisy loss decaying from 0.69 to a num_steps-dependent level."""
    runs, curves = [], []
    for ns in num_steps:
        for seed in seeds:
            rid = f"dep-{ns}-{seed}"
            runs.append({"run_id": rid, "status": "ok", "task": "dependency", "cell": "rnn",
                         "hidden_size": hidden_size, "num_steps": ns, "seed": seed,
                         "truncation": "tf", "lags": (3, 8), "shifts": (0.5, -0.25),
                         "base": 0.5, "variant": np.nan, "final.loss": 0.5})  # fmt: skip
            rng = np.random.default_rng([ns, seed])
            step = np.arange(1, epochs * UPE + 1)
            value = 0.46 + 0.23 * np.exp(-step / (5 * ns)) + rng.normal(0, 0.01, step.size)
            curves.append(pd.DataFrame({"run_id": rid, "step": step,
                                        "epoch": (step - 1) // UPE + 1, "metric": "loss",
                                        "value": value}))  # fmt: skip
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


def _mnist(seeds=(0, 1), epochs=3, upe=10):
    runs, curves = [], []
    for seed in seeds:
        rid = f"mnist-{seed}"
        runs.append({"run_id": rid, "status": "ok", "task": "mnist", "cell": "lstm",
                     "hidden_size": 100, "seed": seed, "variant": "rows"})  # fmt: skip
        step = np.arange(1, epochs * upe + 1)
        curves.append(pd.DataFrame({"run_id": rid, "step": step, "epoch": (step - 1) // upe + 1,
                                    "metric": "loss", "value": 2.3 / step}))  # fmt: skip
        ep = np.arange(1, epochs + 1)
        curves.append(pd.DataFrame({"run_id": rid, "step": ep * upe, "epoch": ep,
                                    "metric": "test_accuracy",
                                    "value": 0.9 - 0.3 / ep + 0.01 * seed}))  # fmt: skip
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


def _addition(n=50):
    step = np.arange(1, n + 1)
    runs = pd.DataFrame([{"run_id": "add", "status": "ok", "task": "addition", "seed": 0,
                          "hidden_size": 16}])  # fmt: skip
    curves = pd.concat([
        pd.DataFrame({"run_id": "add", "step": step, "epoch": 1, "metric": m, "value": v})
        for m, v in (("loss", 1.0 / step), ("error", 4.0 / np.sqrt(step)))
    ], ignore_index=True)  # fmt: skip
    return runs, curves


def _curves(ax):
    return [ln for ln in ax.get_lines() if ln.get_gid() == "curve"]


def _refs(ax):
    return [ln for ln in ax.get_lines() if ln.get_gid() == "reference"]


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def _mean_curve(runs, curves, rids, smooth=None):
    """The hand computation: per-run trailing mean, then the mean over runs per step."""
    out = []
    for rid in rids:
        v = curves[(curves.run_id == rid) & (curves.metric == "loss")].sort_values("step")
        v = v["value"].to_numpy()
        if smooth:
            v = np.array([v[max(0, i - smooth + 1) : i + 1].mean() for i in range(v.size)])
        out.append(v)
    return np.mean(out, axis=0), np.std(out, axis=0, ddof=1)


# ---------------------------------------------------------------------------- lines


def test_dependency_hue_lines_bands_and_references():
    runs, curves = _dependency()
    fig = plot_curves(runs, curves, hue="num_steps")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert [ln.get_label() for ln in _curves(ax)] == [
        "num_steps=5 (3 seeds)",
        "num_steps=10 (3 seeds)",
    ]
    assert len(_bands(ax)) == 2
    levels = [v for _, v in expected_cross_entropies((3, 8), (0.5, -0.25), 0.5)]
    assert sorted(ln.get_ydata()[0] for ln in _refs(ax)) == pytest.approx(sorted(levels))
    assert sorted(ln.get_label() for ln in _refs(ax)) == [
        "lag 3 learned 0.519",
        "lags 3 and 8 learned 0.454",
        "nothing learned 0.662",
    ]
    texts = {t.get_text() for t in ax.texts if t.get_gid() == "reference"}
    assert "nothing learned 0.662" in texts
    assert ax.get_xlabel() == "update"
    assert ax.get_ylabel() == "cross-entropy (nats)"
    legend = fig.subfigs[1].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "num_steps=5 (3 seeds)",
        "num_steps=10 (3 seeds)",
    ]
    assert "dependency: loss" in fig.subfigs[0].get_suptitle()
    assert "seeds 0, 1, 2" in fig.subfigs[0].get_suptitle()


def test_mean_and_std_band_match_hand_computation():
    runs, curves = _dependency()
    fig = plot_curves(runs, curves, hue="num_steps")
    ax = fig.axes[0]
    mean, std = _mean_curve(runs, curves, ["dep-5-0", "dep-5-1", "dep-5-2"])
    line = _curves(ax)[0]
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 2 * UPE + 1))
    np.testing.assert_allclose(line.get_ydata(), mean, rtol=1e-12)
    verts = _bands(ax)[0].get_paths()[0].vertices
    assert verts[:, 1].max() == pytest.approx((mean + std).max())
    assert verts[:, 1].min() == pytest.approx((mean - std).min())


def test_auto_hue_is_the_varying_key_with_most_values():
    runs, curves = _dependency(num_steps=(1, 5, 10), seeds=(0, 1))
    runs.loc[runs.seed == 1, "cell"] = "gru"  # cell varies with 2 values, num_steps with 3
    fig = plot_curves(runs, curves)
    labels = [ln.get_label() for ln in _curves(fig.axes[0])]
    # hue = num_steps (3 values); cell is not averaged over: a line style and in the label
    assert labels == [f"num_steps={n}, cell={c} (1 seed)" for n in (1, 5, 10)
                      for c in ("gru", "rnn")]  # fmt: skip
    styles = {ln.get_label(): ln.get_linestyle() for ln in _curves(fig.axes[0])}
    assert styles["num_steps=1, cell=gru (1 seed)"] != styles["num_steps=1, cell=rnn (1 seed)"]
    assert len(_bands(fig.axes[0])) == 0  # one run per line: no band


def test_nothing_varies_gives_one_line():
    runs, curves = _dependency(num_steps=(5,))
    fig = plot_curves(runs, curves)
    assert [ln.get_label() for ln in _curves(fig.axes[0])] == ["all runs (3 seeds)"]


def test_hue_seed_shows_runs_one_by_one():
    runs, curves = _dependency(num_steps=(5,))
    fig = plot_curves(runs, curves, hue="seed")
    assert [ln.get_label() for ln in _curves(fig.axes[0])] == ["seed=0", "seed=1", "seed=2"]
    assert len(_bands(fig.axes[0])) == 0


def test_facets_col_and_row():
    r1, c1 = _dependency(hidden_size=4)
    r2, c2 = _dependency(hidden_size=16)
    r2["run_id"] = r2["run_id"] + "-h16"
    c2["run_id"] = c2["run_id"] + "-h16"
    runs, curves = pd.concat([r1, r2]), pd.concat([c1, c2])
    fig = plot_curves(runs, curves, col="hidden_size")
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["hidden_size=4", "hidden_size=16"]
    for ax in fig.axes:  # hue picked automatically among the rest: num_steps
        assert [ln.get_label() for ln in _curves(ax)] == [
            "num_steps=5 (3 seeds)",
            "num_steps=10 (3 seeds)",
        ]
        assert len(_bands(ax)) == 2 and len(_refs(ax)) == 3
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    fig = plot_curves(runs, curves, col="hidden_size", row="num_steps", hue="seed")
    assert len(fig.axes) == 4
    assert fig.axes[1].get_title() == "num_steps=5, hidden_size=16"
    assert len(_curves(fig.axes[3])) == 3


def test_failed_skipped_and_diverged_cut_at_first_non_finite():
    runs, curves = _dependency(num_steps=(5,))
    runs.loc[runs.run_id == "dep-5-0", "status"] = "failed"
    runs.loc[runs.run_id == "dep-5-1", "status"] = "diverged"
    bad = (curves.run_id == "dep-5-1") & (curves.step >= 30)
    curves.loc[bad & (curves.step == 30), "value"] = np.nan
    curves = curves[~(bad & (curves.step > 30))]
    fig = plot_curves(runs, curves)
    (line,) = _curves(fig.axes[0])
    assert line.get_label() == "all runs (2 seeds, 1 diverged)"
    y = line.get_ydata()
    assert np.isfinite(y).all() and y.size == 2 * UPE
    only_seed2 = curves[(curves.run_id == "dep-5-2") & (curves.step >= 30)]["value"].to_numpy()
    np.testing.assert_allclose(y[29:], only_seed2)  # from step 30 on only seed 2 is there


# ----------------------------------------------------------------------- smoothing, x


@pytest.mark.parametrize("n", [1, 3, 10])
def test_smoothing_is_a_trailing_mean_per_run(n):
    runs, curves = _dependency()
    fig = plot_curves(runs, curves, hue="num_steps", smooth=n)
    mean, std = _mean_curve(runs, curves, ["dep-10-0", "dep-10-1", "dep-10-2"], smooth=n)
    line = _curves(fig.axes[0])[1]
    np.testing.assert_allclose(line.get_ydata(), mean, rtol=1e-12)
    verts = _bands(fig.axes[0])[1].get_paths()[0].vertices
    assert verts[:, 1].max() == pytest.approx((mean + std).max())


def test_smoothing_single_run_by_hand():
    runs, curves = _addition(n=5)
    curves.loc[curves.metric == "error", "value"] = [1.0, 2.0, 6.0, 0.0, 4.0]
    fig = plot_curves(runs, curves, metric="error", smooth=2)
    (line,) = _curves(fig.axes[0])
    np.testing.assert_allclose(line.get_ydata(), [1.0, 1.5, 4.0, 3.0, 2.0])
    assert "trailing mean of 2 updates" in fig.subfigs[0].get_suptitle()


def test_x_epoch_gives_fractional_epochs():
    runs, curves = _dependency()
    fig = plot_curves(runs, curves, x="epoch", hue="num_steps")
    line = _curves(fig.axes[0])[0]
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 2 * UPE + 1) / UPE)
    assert fig.axes[0].get_xlabel() == "epoch"


# --------------------------------------------------------------------- other tasks


def test_mnist_test_accuracy_per_epoch_with_markers_and_no_reference():
    runs, curves = _mnist()
    fig = plot_curves(runs, curves, metric="test_accuracy", x="epoch")
    ax = fig.axes[0]
    (line,) = _curves(ax)
    assert line.get_label() == "all runs (2 seeds)"
    assert line.get_marker() == "o"
    np.testing.assert_allclose(line.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(line.get_ydata(), 0.905 - 0.3 / np.arange(1, 4))
    assert ax.get_ylabel() == "test accuracy"
    assert _refs(ax) == [] and len(_bands(ax)) == 1
    fig = plot_curves(runs, curves, metric="test_accuracy")  # by step: the epochs' last steps
    np.testing.assert_allclose(_curves(fig.axes[0])[0].get_xdata(), [10, 20, 30])
    fig = plot_curves(runs, curves)  # mnist loss: cross-entropy, no analytic levels
    assert fig.axes[0].get_ylabel() == "cross-entropy (nats)" and _refs(fig.axes[0]) == []


def test_addition_error_without_reference():
    runs, curves = _addition()
    fig = plot_curves(runs, curves, metric="error")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "sum of |target - output|"
    assert _refs(ax) == [] and len(_curves(ax)) == 1 and len(_bands(ax)) == 0


def test_reference_off_and_not_for_other_metrics():
    runs, curves = _dependency()
    assert _refs(plot_curves(runs, curves, reference=False).axes[0]) == []
    curves = pd.concat([curves, curves.assign(metric="grad_norm")])
    assert _refs(plot_curves(runs, curves, metric="grad_norm").axes[0]) == []


def test_reference_levels_from_each_facets_parameters_and_string_lags():
    runs, curves = _dependency(seeds=(0,))
    runs["lags"] = ["3,8", "[2, 5]"]  # strings, as a store might give them back
    runs["shifts"] = [(0.5, -0.25), (0.4, 0.1)]
    fig = plot_curves(runs, curves, col="num_steps")
    for ax, (lags, shifts) in zip(fig.axes, [((3, 8), (0.5, -0.25)), ((2, 5), (0.4, 0.1))],
                                  strict=True):  # fmt: skip
        expected = sorted(v for _, v in expected_cross_entropies(lags, shifts, 0.5))
        assert sorted(ln.get_ydata()[0] for ln in _refs(ax)) == pytest.approx(expected)


def test_title_override():
    runs, curves = _dependency()
    fig = plot_curves(runs, curves, title="my title")
    assert fig.subfigs[0].get_suptitle() == "my title"


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "accuracy"}, r"metric: expected one of \['loss'\]"),
        ({"x": "time"}, r"x: expected one of \['step', 'epoch'\]"),
        ({"hue": "colour"}, r"hue: expected a config column, one of \[.*'num_steps'"),
        ({"col": "final.loss"}, r"col: expected a config column"),
        ({"row": "run_id"}, r"row: expected a config column"),
        ({"col": "seed", "row": "seed"}, r"row: expected a key different from col"),
        ({"smooth": 0}, r"smooth: expected None or an integer >= 1"),
        ({"smooth": 2.5}, r"smooth: expected None or an integer >= 1"),
        ({"smooth": True}, r"smooth: expected None or an integer >= 1"),
    ],
)
def test_validation_errors(kwargs, match):
    runs, curves = _dependency()
    with pytest.raises(ValueError, match=match):
        plot_curves(runs, curves, **kwargs)


def test_empty_selection():
    runs, curves = _dependency()
    failed = runs.assign(status="failed")
    with pytest.raises(ValueError, match=r"runs: no run to plot .* 6 failed"):
        plot_curves(failed, curves)
    with pytest.raises(ValueError, match=r"runs: no run to plot"):
        plot_curves(runs.iloc[:0], curves)
    with pytest.raises(ValueError, match=r"curves: missing column\(s\) \['value'\]"):
        plot_curves(runs, curves.drop(columns="value"))


# ----------------------------------------------------------------------------- save

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_save_figure_formats(tmp_path, suffix):
    runs, curves = _dependency()
    path = tmp_path / "new" / "dir" / f"fig{suffix}"
    assert save_figure(plot_curves(runs, curves), path) == path
    data = path.read_bytes()
    if suffix == ".svg":
        assert b"<svg" in data[:1000]
    else:
        assert data.startswith(MAGIC[suffix])
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_save_figure_svg_is_reproducible(tmp_path):
    runs, curves = _dependency()
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    save_figure(plot_curves(runs, curves), a)
    save_figure(plot_curves(runs, curves), b)
    assert a.read_bytes() == b.read_bytes()


def test_save_figure_rejects_other_suffixes(tmp_path):
    runs, curves = _dependency()
    fig = plot_curves(runs, curves)
    with pytest.raises(ValueError, match=r"path: expected a suffix in .*got '\.jpg'"):
        save_figure(fig, tmp_path / "fig.jpg")
    with pytest.raises(ValueError, match=r"got '\(none\)'"):
        save_figure(fig, tmp_path / "fig")
    assert list(tmp_path.iterdir()) == []


def test_mixed_tasks_faceted_by_task():
    r1, c1 = _dependency()
    r2, c2 = _mnist()
    runs = pd.concat([r1, r2], ignore_index=True)
    curves = pd.concat([c1, c2], ignore_index=True)
    fig = plot_curves(runs, curves, col="task")
    dep, mnist = fig.axes
    # the task's own keys differ only between facets: no extra line styles for them
    assert [ln.get_label() for ln in _curves(dep)] == [
        "num_steps=5 (3 seeds)",
        "num_steps=10 (3 seeds)",
    ]
    assert [ln.get_label() for ln in _curves(mnist)] == ["num_steps=n/a (2 seeds)"]
    assert len(_refs(dep)) == 3 and _refs(mnist) == []
    assert [t for t in mnist.texts if t.get_gid() == "reference"] == []
    assert len([t for t in dep.texts if t.get_gid() == "reference"]) == 3


# ------------------------------------------------------------------- large grids, source


def _explore(upe=1000, num_steps=(1, 5, 10, 20), extra_hues=()):
    """dependency-explore's shape: num_steps x hidden_size x truncation x 3 seeds (72 runs)."""
    runs, curves = [], []
    step = np.arange(1, upe + 1)
    for ns in (*num_steps, *extra_hues):
        for hs in (4, 16, 64):
            for tr in ("tf", "true"):
                for seed in (0, 1, 2):
                    rid = f"x-{ns}-{hs}-{tr}-{seed}"
                    runs.append({"run_id": rid, "status": "ok", "task": "dependency",
                                 "cell": "rnn", "hidden_size": hs, "num_steps": ns,
                                 "truncation": tr, "seed": seed})  # fmt: skip
                    rng = np.random.default_rng([ns, hs, seed])
                    value = 0.5 + 0.2 * np.exp(-step / 50) + rng.normal(0, 0.05, upe)
                    curves.append(pd.DataFrame({"run_id": rid, "step": step, "epoch": 1,
                                                "metric": "loss", "value": value}))  # fmt: skip
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


def _legend_inside(fig) -> bool:
    fig.canvas.draw()
    legend = fig.subfigs[1].legends[0]
    box, page = legend.get_window_extent(), fig.bbox
    return page.x0 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 <= box.y0 <= box.y1 <= page.y1


def test_large_grid_default_plot_smooths_and_its_legend_fits():
    runs, curves = _explore()
    fig = plot_curves(runs, curves)  # hue num_steps; hidden_size, truncation as line styles
    legend = fig.subfigs[1].legends[0]
    assert len(legend.get_texts()) == 24
    assert _legend_inside(fig)
    assert "trailing mean of 20 updates" in fig.subfigs[0].get_suptitle()  # 1000 // 50
    line = _curves(fig.axes[0])[0]
    rids = [f"x-1-4-tf-{s}" for s in (0, 1, 2)]
    mean, _ = _mean_curve(runs, curves, rids, smooth=20)
    np.testing.assert_allclose(line.get_ydata(), mean, rtol=1e-12)
    raw = plot_curves(runs, curves, smooth=1)  # smooth=1: the raw values
    assert "trailing mean" not in raw.subfigs[0].get_suptitle()
    few = plot_curves(*_explore(upe=100))  # short curves are not smoothed
    assert "trailing mean" not in few.subfigs[0].get_suptitle()


def test_a_legend_too_long_for_the_figure_lists_what_fits_and_counts_the_rest():
    runs, curves = _explore(upe=50, extra_hues=tuple(range(30, 60)))  # 34 x 6 = 204 lines
    fig = plot_curves(runs, curves)
    texts = [t.get_text() for t in fig.subfigs[1].legends[0].get_texts()]
    assert texts[-1].startswith("... ") and texts[-1].endswith(" more lines (facet with col/row)")
    assert len(texts) - 1 + int(texts[-1].split()[1]) == 204
    assert _legend_inside(fig)


def test_results_dir_names_the_grids_of_a_parent_folder(tmp_path):
    from rnnfast.plot import results_dir  # noqa: PLC0415

    for name in ("dependency-explore", "mnist-rows"):
        (tmp_path / "results" / name / "runs").mkdir(parents=True)
    parent = tmp_path / "results"
    with pytest.raises(ValueError) as err:
        results_dir(parent)
    assert str(err.value) == (
        f"{parent}: holds 2 results directories (grids dependency-explore, mnist-rows); plot "
        f"one of them, e.g. {parent / 'dependency-explore'}"
    )
    assert results_dir(parent / "mnist-rows") == parent / "mnist-rows"
    (tmp_path / "one" / "only" / "runs").mkdir(parents=True)
    assert results_dir(tmp_path / "one") == tmp_path / "one" / "only"
    with pytest.raises(ValueError, match=r"empty: no stored runs here"):
        (tmp_path / "empty").mkdir()
        results_dir(tmp_path / "empty")
