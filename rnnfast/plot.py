"""Figures of training curves: mean +- 1 std over seeds, one line per hue value, facets,
smoothing, and the task's analytic reference levels.

Input is what rnnfast.store.load_results returns: ``runs`` (one row per run: run_id, status,
one column per config key, final.<metric>) and ``curves`` (long form: run_id, step, epoch,
metric, value). Select runs by filtering ``runs`` first; only the curves of its run_ids are
drawn.

The rules, in order:

- Selection: runs with status "failed" are skipped, and so are runs without a value of the
  metric. A diverged run is drawn up to its last finite value (everything from its first
  NaN or inf on is dropped).
- Config columns are the columns of ``runs`` that are rnnfast.train keys
  (rnnfast.config.known_keys()). A key *varies* when the selected runs of one facet hold
  more than one value of it (a missing value, NaN, counts as a value); a key that differs
  only between facets (say a task's own keys with col="task") is told by the facets.
- Seeds: runs that agree on every varying key except seed are one group, drawn as one line,
  the mean over the group's runs at each x, with a band of +-1 sample standard deviation
  (ddof=1; only where at least two runs have a value). The legend gives the count,
  "num_steps=5 (3 seeds)", and how many of them diverged. hue="seed" (or col/row="seed")
  shows the runs one by one instead.
- hue: one colour per value. With hue=None, the varying key other than seed, col and row
  with the most distinct values is chosen (ties: the first in the column order of
  ``runs``); if nothing varies, one line. col and row are never chosen automatically.
- Any other varying key (not hue, col, row or seed) is not averaged over: its values get
  line styles (and darker shades of the hue colour) and appear in the legend label next to
  the hue value.
- x="step": the update number. x="epoch": per-update metrics are drawn at fractional epochs,
  step / updates_per_epoch (the largest number of the metric's values in one epoch over the
  group's runs), so the last update of epoch 1 sits at 1.0; per-epoch metrics (at most one
  value per epoch, e.g. mnist's test_accuracy) at their epoch, with markers.
- smooth=N: a trailing moving average over the last N points of each run (the first N-1
  points average the points there are), before the mean over seeds. The point at update s
  is then the mean of updates s-N+1..s, like R2RT's "mean loss over the last 100 updates"
  and like final.loss (the mean of the last 100 updates). smooth=None (the default) smooths
  large plots only: with more than AUTO_SMOOTH_LINES lines of a per-update metric whose
  longest run has AUTO_SMOOTH_POINTS points or more, N = min(100, longest // 50); the title
  says so. smooth=1 draws the raw values.
- reference: for metric "loss", dashed horizontal lines at the reference levels the runs'
  task gives for each facet's runs (rnnfast.tasks.Task.reference_levels: the dependency
  task's analytic cross-entropies from lags, shifts and base), labelled at the right edge: outside
  the axes (never over the data) when every facet has the same levels, else inside each
  facet above its lines.
- Layout: facets share both axes, about 4.6 x 3.3 inches each; the title names the task,
  the metric, the smoothing and the settings shared by all runs; the legend (one entry per
  line, counts of seeds) sits right of the facets so it never covers data, in as many
  columns (up to LEGEND_MAX_COLUMNS) as it needs to fit the figure's height; beyond that the
  last entry says how many lines are not listed.
- A directory holding several results directories is not one plot: results_dir() names the
  grids it holds.

Figures are built on matplotlib's Agg canvas without pyplot, so no GUI backend is touched
and nothing global is left open; save them with ``save_figure``.
"""

from __future__ import annotations

import math
import os
import textwrap
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from rnnfast.config import known_keys, resolve
from rnnfast.tasks import get_task

X_CHOICES = ("step", "epoch")
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DPI = 150

_CURVE_COLUMNS = ("run_id", "step", "epoch", "metric", "value")
# fixed keys left out of the title: seed is summarised separately, the rest never matter
_TITLE_SKIP = {"task", "seed", "backend", "data_dir", "eval_batch"}
_LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
}
AUTO_SMOOTH_LINES = 8  # smooth=None smooths plots of more lines than this...
AUTO_SMOOTH_POINTS = 500  # ...when the longest run has this many points or more
LEGEND_MAX_COLUMNS = 3
_LEGEND_ROW_H = 9 * 1.7 / 72  # inches per legend entry: 9-point text and its spacing
_FACET_W, _FACET_H = 4.6, 3.3  # inches per facet
_LEGEND_W = 2.5  # inches for the legend right of the facets, until its labels are known
# keys named in the title whenever they are shared, default or not, in this order
_TITLE_MAIN = ["cell", "hidden_size", "num_steps", "truncation", "variant",
               "optimizer", "lr", "batch_size", "epochs", "updates"]  # fmt: skip
_LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0}
_REF_FONT = 7.5
_MISSING = None  # a config key absent for a run's task (NaN in runs)


# ----------------------------------------------------------------------------- values


def _norm(v: Any) -> Any:
    """A hashable, comparable config value: lists/arrays -> tuples, NaN/None/NA -> None."""
    if isinstance(v, list | tuple | np.ndarray):
        return tuple(_norm(e) for e in v)
    if v is None or v is pd.NA or v is pd.NaT:
        return _MISSING
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return _MISSING
    return v


def _fmt(v: Any) -> str:
    if v is _MISSING:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(e) for e in v) + ")"
    return str(v)


def _sort_key(v: Any) -> tuple:
    if v is _MISSING:
        return (3, 0.0, "")
    if isinstance(v, int | float):
        return (0, float(v), "")
    if isinstance(v, tuple):
        return (2, 0.0, _fmt(v))
    return (1, 0.0, str(v))


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    return sorted(set(values), key=_sort_key)


def _pair(key: str, v: Any) -> str:
    return f"{key}={_fmt(v)}"


# ------------------------------------------------------------------------- validation


def _check_options(runs: pd.DataFrame, curves: pd.DataFrame, metric, x, hue, col, row, smooth):
    missing = [c for c in ("run_id",) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs: missing column(s) {missing}; columns given: {list(runs.columns)}")
    missing = [c for c in _CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise ValueError(
            f"curves: missing column(s) {missing}; expected {list(_CURVE_COLUMNS)}, "
            f"given {list(curves.columns)}"
        )
    if x not in X_CHOICES:
        raise ValueError(f"x: expected one of {list(X_CHOICES)}, got {x!r}")
    if smooth is not None and (
        isinstance(smooth, bool) or not isinstance(smooth, int | np.integer) or smooth < 1
    ):
        raise ValueError(f"smooth: expected None or an integer >= 1 (points), got {smooth!r}")
    metrics = sorted(str(m) for m in pd.unique(curves["metric"]))
    if metric not in metrics:
        raise ValueError(f"metric: expected one of {metrics} (in curves), got {metric!r}")
    config_cols = _config_columns(runs)
    for name, key in (("hue", hue), ("col", col), ("row", row)):
        if key is not None and key not in config_cols:
            raise ValueError(f"{name}: expected a config column, one of {config_cols}; got {key!r}")
    if col is not None and col == row:
        raise ValueError(f"row: expected a key different from col, got {row!r} for both")


def _config_columns(runs: pd.DataFrame) -> list[str]:
    keys = set(known_keys())
    return [c for c in runs.columns if c in keys]


def _select(runs: pd.DataFrame, curves: pd.DataFrame, metric: str):
    """(selected runs, their curves of metric) with failed and metric-less runs dropped."""
    status = runs["status"] if "status" in runs.columns else pd.Series("ok", index=runs.index)
    ok = runs[status.astype(str) != "failed"]
    cur = curves[(curves["metric"] == metric) & curves["run_id"].isin(ok["run_id"])]
    sel = ok[ok["run_id"].isin(pd.unique(cur["run_id"]))]
    if sel.empty:
        n_failed = int((status.astype(str) == "failed").sum())
        raise ValueError(
            f"runs: no run to plot for metric {metric!r}: {len(runs)} run(s) given, "
            f"{n_failed} failed, {len(ok) - len(sel)} without {metric!r} values"
        )
    return sel.drop_duplicates("run_id").reset_index(drop=True), cur


# ---------------------------------------------------------------------------- series


def _run_series(cur: pd.DataFrame, smooth: int | None, by_epoch: bool) -> dict[str, pd.Series]:
    """run_id -> values indexed by step (or by epoch for a per-epoch metric drawn by epoch),
    cut at the first non-finite value, then smoothed."""
    out = {}
    for rid, g in cur.groupby("run_id", sort=False, observed=True):
        g = g.sort_values("step")
        v = g["value"].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(v))
        n = bad[0] if bad.size else v.size
        index = g["epoch" if by_epoch else "step"].to_numpy()[:n]
        s = pd.Series(v[:n], index=index, dtype=np.float64)
        if smooth is not None and smooth > 1:
            s = s.rolling(int(smooth), min_periods=1).mean()
        out[rid] = s
    return out


def _aggregate(series: list[pd.Series]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, std, count) over the runs at each x (outer join)."""
    df = pd.concat(series, axis=1, sort=True)
    return (
        df.index.to_numpy(dtype=np.float64),
        df.mean(axis=1).to_numpy(),
        df.std(axis=1, ddof=1).to_numpy(),
        df.count(axis=1).to_numpy(),
    )


# ------------------------------------------------------------------------- reference


def _as_tuple(v: Any, cast, default: tuple) -> tuple:
    if v is _MISSING:
        return default
    if isinstance(v, str):  # "3,8", "[3, 8]", "(3, 8)"
        parts = v.strip().strip("[]()").replace(",", " ").split()
        return tuple(cast(p) for p in parts)
    if isinstance(v, tuple):
        return tuple(cast(e) for e in v)
    return (cast(v),)


def _row_config(task: Any, row: pd.Series) -> dict[str, Any]:
    """A run's config from its stored row: the task's defaults, then the row's own values
    (lists may come back as strings "3,8" or tuples from a store)."""
    cfg = dict(resolve({"task": task.name or row["task"]}))
    for key, (kind, _) in task.keys.items():
        v = _norm(row.get(key, _MISSING))
        if v is _MISSING:
            continue
        if kind in ("int_list", "float_list"):
            v = list(_as_tuple(v, int if kind == "int_list" else float, ()))
        cfg[key] = v
    return cfg


def _reference_levels(sel: pd.DataFrame) -> list[tuple[str, float]]:
    """(label, level) of the reference levels (rnnfast.tasks.Task.reference_levels) of the
    runs in sel, largest first; levels shared by several settings are drawn once, and where
    the settings differ the labels name the task keys that differ."""
    groups: dict[tuple, list[dict]] = {}  # levels -> the task settings that give them
    for _, r in sel.iterrows():
        try:
            task = get_task(_norm(r.get("task", _MISSING)))
            cfg = _row_config(task, r)
            levels = task.reference_levels(cfg)
        except (ValueError, TypeError):
            continue  # a plug-in task not importable here, or a run of another shape
        if levels:
            own = {k: _norm(cfg[k]) for k in task.keys if k in cfg}
            groups.setdefault(tuple(levels), []).append(own)
    # name the settings that tell the groups apart: one value within each, not all alike
    keys = {k for owns in groups.values() for own in owns for k in own}
    differ = [k for k in sorted(keys)
              if all(len({repr(o.get(k)) for o in owns}) == 1 for owns in groups.values())
              and len({repr(owns[0].get(k)) for owns in groups.values()}) > 1]  # fmt: skip
    out: dict[float, tuple[str, float]] = {}
    for levels, owns in groups.items():
        parts = [f"{k} {_fmt(owns[0][k])}" for k in differ if k in owns[0]]
        suffix = f" [{', '.join(parts)}]" if parts else ""
        for name, value in levels:
            out.setdefault(round(value, 4), (f"{name} {value:.3f}{suffix}", value))
    return [out[k] for k in sorted(out, reverse=True)]


def _draw_reference(ax, levels: list[tuple[str, float]]) -> None:
    for label, y in levels:
        ax.axhline(y, color="0.35", linestyle=(0, (4, 3)), linewidth=0.9, zorder=1.5,
                   label=label, gid="reference")  # fmt: skip


def _label_reference(ax, levels: list[tuple[str, float]], outside: bool, axes_h: float) -> None:
    """Labels at the right edge: outside the axes (they never cover data) or, where facets
    of one row have different levels, inside it above each line. Labels closer than a line
    of text are pushed apart downwards."""
    lo, hi = ax.get_ylim()
    gap = (hi - lo) * (_REF_FONT * 1.3 / 72) / max(axes_h, 0.5)
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    prev = math.inf
    for label, y in sorted(levels, key=lambda t: -t[1]):
        pos = min(y, prev - gap)
        prev = pos
        if outside:
            ax.text(1.01, pos, label, transform=trans, ha="left", va="center", fontsize=_REF_FONT,
                    color="0.2", gid="reference", clip_on=False)  # fmt: skip
        else:
            ax.text(0.995, pos, label, transform=trans, ha="right", va="bottom", zorder=5,
                    fontsize=_REF_FONT, color="0.2", gid="reference", bbox=_LABEL_BOX)  # fmt: skip


# ---------------------------------------------------------------------------- labels


def _y_label(metric: str, tasks: list[Any]) -> str:
    """The tasks' own label for the metric where they agree, else the metric's name."""
    labels = set()
    for t in tasks:
        try:
            labels.add(get_task(t).metric_labels.get(metric))
        except ValueError:
            labels.add(None)
    if len(labels) == 1 and None not in labels:
        return labels.pop()
    return metric.replace("_", " ")


def _title(plan: _Plan, tasks: list[Any], metric: str, per_epoch: bool, smooth: int | None,
           width_in: float, averaged: bool) -> str:  # fmt: skip
    """'task: metric, mean ± 1 std over seeds[, smoothing]' and a line of the settings shared
    by every run: the main keys always, the others where they differ from the task's
    default (rnnfast.config.resolve), and the seeds averaged over."""
    head = f"{', '.join(_fmt(t) for t in tasks)}: {metric}" if tasks else metric
    head += ", mean ± 1 std over seeds" if averaged else ", one line per run"
    if smooth is not None and smooth > 1:
        head += f", trailing mean of {smooth} {'epochs' if per_epoch else 'updates'}"
    defaults: dict[str, Any] = {}
    if len(tasks) == 1:
        try:
            defaults = {k: _norm(v) for k, v in resolve({"task": tasks[0]}).items()}
        except ValueError:  # a plug-in task that cannot be imported here
            defaults = {}
    shown = (plan.hue, plan.col, plan.row, *_TITLE_SKIP)
    fixed = [k for k, v in plan.values.items()
             if k not in shown and len(set(v)) == 1 and v[0] is not _MISSING
             and (k in _TITLE_MAIN or k not in defaults or defaults[k] != v[0])]  # fmt: skip
    fixed.sort(key=lambda k: _TITLE_MAIN.index(k) if k in _TITLE_MAIN else len(_TITLE_MAIN))
    parts = [_pair(k, plan.values[k][0]) for k in fixed]
    seeds = _sorted_unique(plan.values.get("seed", []))
    if seeds and not plan.by_seed:
        parts.append(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(_fmt(s) for s in seeds)}")
    if not parts:
        return head
    return head + "\n" + textwrap.fill(", ".join(parts), width=max(50, int(width_in * 13)))


# ------------------------------------------------------------------------------ plot


@dataclass
class _Plan:
    """What goes where: normalised config values per selected run and the roles of keys."""

    rid: list[str]
    values: dict[str, list[Any]]  # config key -> normalised value per selected run
    status: list[str]
    hue: str | None
    col: str | None
    row: str | None
    extras: list[str]  # varying keys other than hue/col/row/seed: line styles
    by_seed: bool  # seed is hue, col or row: runs shown one by one
    hue_vals: list[Any] = field(default_factory=list)
    extra_vals: list[tuple] = field(default_factory=list)
    col_vals: list[Any] = field(default_factory=list)
    row_vals: list[Any] = field(default_factory=list)

    def key(self, i: int, keys: list[str]) -> tuple:
        return tuple(self.values[k][i] for k in keys)

    def members(self, idx: list[int], hi: int, ei: int) -> list[int]:
        """The runs of idx with the hi-th hue value and the ei-th extras combination."""
        hv, ev = self.hue_vals[hi], self.extra_vals[ei]
        return [i for i in idx if self.key(i, self.extras) == ev
                and (self.hue is None or self.values[self.hue][i] == hv)]  # fmt: skip


def _make_plan(sel: pd.DataFrame, hue, col, row) -> _Plan:
    cfg_cols = _config_columns(sel)
    values = {k: [_norm(v) for v in sel[k]] for k in cfg_cols}
    # a key varies when it takes several values inside one facet; a key that only differs
    # between facets (a task's own keys when col="task") is told by the facet already
    facet = [(values[row][i] if row else None, values[col][i] if col else None)
             for i in range(len(sel))]  # fmt: skip
    varying = [k for k in cfg_cols
               if len(set(zip(facet, values[k], strict=True))) > len(set(facet))]  # fmt: skip
    if hue is None:
        candidates = [k for k in varying if k not in ("seed", col, row)]
        if candidates:  # max keeps the first of equals: ties go to the column order
            hue = max(candidates, key=lambda k: len(set(values[k])))
    chosen = [k for k in (hue, col, row) if k is not None]
    status = sel["status"].astype(str).tolist() if "status" in sel else ["ok"] * len(sel)
    plan = _Plan(list(sel["run_id"]), values, status, hue, col, row,
                 [k for k in varying if k != "seed" and k not in chosen],
                 "seed" in chosen)  # fmt: skip
    n = len(plan.rid)
    plan.hue_vals = _sorted_unique(values[hue]) if hue else [None]
    plan.extra_vals = sorted({plan.key(i, plan.extras) for i in range(n)},
                             key=lambda t: [_sort_key(v) for v in t])  # fmt: skip
    plan.col_vals = _sorted_unique(values[col]) if col else [None]
    plan.row_vals = _sorted_unique(values[row]) if row else [None]
    return plan


def plot_curves(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    metric: str = "loss",
    x: str = "step",
    hue: str | None = None,
    col: str | None = None,
    row: str | None = None,
    smooth: int | None = None,
    reference: bool = True,
    title: str | None = None,
) -> Figure:
    """A figure of ``metric`` against ``x``: mean +- 1 std over seeds per group, coloured by
    ``hue``, faceted by ``col`` and ``row``. See the module docstring for the rules.

    Raises ValueError naming the option and its valid values for an unknown metric, x, hue,
    col or row, a smooth < 1, or when no run is left to plot.
    """
    _check_options(runs, curves, metric, x, hue, col, row, smooth)
    sel, cur = _select(runs, curves, metric)
    plan = _make_plan(sel, hue, col, row)
    per_epoch = bool(cur.groupby(["run_id", "epoch"], observed=True).size().max() <= 1)
    by_epoch = per_epoch and x == "epoch"
    if smooth is None and not per_epoch:
        smooth = _auto_smooth(plan, int(cur.groupby("run_id", observed=True).size().max()))
    series = _run_series(cur, smooth, by_epoch)
    per_epoch_counts = cur.groupby(["run_id", "epoch"], observed=True).size().groupby(level=0)
    upe = per_epoch_counts.max().to_dict()  # run_id -> values in its longest epoch
    palette = mpl.colormaps["tab10" if len(plan.hue_vals) <= 10 else "tab20"].colors

    nr, nc = len(plan.row_vals), len(plan.col_vals)
    axes_w = max(6.0, nc * _FACET_W)
    height = nr * _FACET_H + 1.2
    tasks = _sorted_unique(plan.values["task"]) if "task" in plan.values else []

    with mpl.rc_context(_STYLE):
        fig = Figure(figsize=(axes_w + _LEGEND_W, height), layout="constrained")
        FigureCanvasAgg(fig)
        # facets left, legend right: a figure legend would collide with the title
        grid = fig.add_gridspec(1, 2, width_ratios=[axes_w, _LEGEND_W], wspace=0)
        main, side = fig.add_subfigure(grid[0]), fig.add_subfigure(grid[1])
        axes = main.subplots(nr, nc, sharex=True, sharey=True, squeeze=False)
        legend: dict[tuple[int, int], _Entry] = {}
        refs: dict[tuple[int, int], list[tuple[str, float]]] = {}
        for ri, rv in enumerate(plan.row_vals):
            for ci, cv in enumerate(plan.col_vals):
                ax = axes[ri, ci]
                idx = [i for i in range(len(plan.rid))
                       if (row is None or plan.values[row][i] == rv)
                       and (col is None or plan.values[col][i] == cv)]  # fmt: skip
                facet = [(k, v) for k, v in ((row, rv), (col, cv)) if k]
                if facet:
                    ax.set_title(", ".join(_pair(k, v) for k, v in facet))
                if not idx:
                    ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center",
                            va="center", color="0.5")  # fmt: skip
                    continue
                for hi in range(len(plan.hue_vals)):
                    for ei in range(len(plan.extra_vals)):
                        members = plan.members(idx, hi, ei)
                        if not members:
                            continue
                        runs_ = [plan.rid[i] for i in members]
                        xs, mean, std, _ = _aggregate([series[r] for r in runs_])
                        if x == "epoch" and not by_epoch:
                            xs = xs / max(int(upe[r]) for r in runs_)  # fractional epochs
                        style = _style(palette, hi, ei, len(plan.extra_vals))
                        _draw_group(ax, plan, members, (hi, ei), xs, mean, std, style,
                                    per_epoch, legend)  # fmt: skip
                if reference and metric == "loss":
                    refs[ri, ci] = _reference_levels(sel.iloc[idx])
                    _draw_reference(ax, refs[ri, ci])
                if x == "epoch":
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ri in range(nr):
            axes[ri, 0].set_ylabel(_y_label(metric, tasks))
        for ci in range(nc):
            axes[-1, ci].set_xlabel("update" if x == "step" else "epoch")
        axes_w += _place_reference_labels(axes, refs, _FACET_H - 0.9)

        if title is None:
            averaged = any(max(e.counts) > 1 for e in legend.values())
            title = _title(plan, tasks, metric, per_epoch, smooth, axes_w, averaged)
        main.suptitle(title, fontsize=10)
        entries = [legend[k] for k in sorted(legend)]
        top = 1.0 - (0.2 + 0.17 * (title.count("\n") + 1)) / height  # the axes' top
        handles, labels, ncols = _fit_legend(
            [e.handle for e in entries], [e.label() for e in entries], top * height
        )
        # legend column: the longest label at about 0.07 in per character plus the handle
        legend_w = min(6.0, max([len(plan.hue or "")] + [len(t) for t in labels]) * 0.065 + 0.8)
        legend_w = legend_w * ncols + 0.3 * (ncols - 1)  # and the space between columns
        fig.set_size_inches(axes_w + legend_w, height)
        grid.set_width_ratios([axes_w, legend_w])
        if entries:
            side.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.0, top),
                        title=plan.hue, alignment="left", ncols=ncols)  # fmt: skip
    return fig


def _auto_smooth(plan: _Plan, longest: int) -> int | None:
    """smooth=None's choice: a trailing mean for plots of many long noisy lines, else none."""
    lines = {plan.key(i, [k for k in (plan.hue, plan.col, plan.row) if k] + plan.extras)
             for i in range(len(plan.rid))}  # fmt: skip
    if len(lines) <= AUTO_SMOOTH_LINES or longest < AUTO_SMOOTH_POINTS:
        return None
    return min(100, longest // 50)


def _fit_legend(handles: list, labels: list[str], height_in: float) -> tuple[list, list, int]:
    """(handles, labels, columns) of a legend that fits height_in inches below its title: more
    columns (up to LEGEND_MAX_COLUMNS), then the entries that fit and a note of the rest."""
    rows = max(1, int((height_in - 0.45) / _LEGEND_ROW_H))  # 0.45: the title and margins
    ncols = max(1, -(-len(labels) // rows))
    if ncols <= LEGEND_MAX_COLUMNS:
        return handles, labels, ncols
    keep = rows * LEGEND_MAX_COLUMNS - 1
    note = f"... {len(labels) - keep} more lines (facet with col/row)"
    kept = handles[:keep] + [Line2D([], [], linestyle="none")]
    return kept, labels[:keep] + [note], LEGEND_MAX_COLUMNS


def _style(palette, hi: int, ei: int, n_extras: int) -> tuple[tuple[float, ...], Any]:
    """Colour of the hue value, darkened by up to 45 % and dashed for the ei-th combination of
    the other varying keys (dashes alone are lost in noisy curves)."""
    color = np.asarray(palette[hi % len(palette)][:3])
    if n_extras > 1:
        color = color * (1.0 - 0.45 * ei / (n_extras - 1))
    return tuple(color), _LINESTYLES[ei % len(_LINESTYLES)]


def _place_reference_labels(axes: np.ndarray, refs: dict, axes_h: float) -> float:
    """Label the reference lines; returns the width (inches) the outside labels take."""
    kinds = {tuple(v) for v in refs.values()}
    outside = len(kinds) == 1 and bool(next(iter(kinds)))  # the same levels in every facet
    if not outside:
        for (ri, ci), levels in refs.items():
            if levels:
                _label_reference(axes[ri, ci], levels, False, axes_h)
        return 0.0
    levels = refs[next(iter(refs))]
    for ri in range(axes.shape[0]):
        _label_reference(axes[ri, -1], levels, True, axes_h)
    return max(len(label) for label, _ in levels) * _REF_FONT / 72 * 0.55 + 0.15


@dataclass
class _Entry:
    """One legend entry: a group's line, gathered over the facets it appears in."""

    handle: Any
    base: str  # "num_steps=5, hidden_size=4"
    counts: list[int]
    diverged: int
    by_seed: bool

    def label(self) -> str:
        if self.by_seed:
            return (self.base or "run") + (" (diverged)" if self.diverged else "")
        lo, hi = min(self.counts), max(self.counts)
        seeds = f"{lo}-{hi} seeds" if lo != hi else f"{lo} seed" + ("s" if lo != 1 else "")
        extra = f", {self.diverged} diverged" if self.diverged else ""
        return f"{self.base or 'all runs'} ({seeds}{extra})"


def _draw_group(ax, plan: _Plan, members, key, xs, mean, std, style, per_epoch, legend) -> None:
    """One group's mean line and +-1 std band; its legend entry is created or extended."""
    hi, ei = key
    pairs = [(plan.hue, plan.hue_vals[hi])] if plan.hue else []
    pairs += list(zip(plan.extras, plan.extra_vals[ei], strict=True))
    n_div = sum(plan.status[i] == "diverged" for i in members)
    entry = _Entry(None, ", ".join(_pair(k, v) for k, v in pairs), [len(members)], n_div,
                   plan.by_seed)  # fmt: skip
    color, linestyle = style
    line = ax.plot(xs, mean, color=color, linestyle=linestyle, label=entry.label(), gid="curve",
                   marker="o" if per_epoch else None, markersize=4)[0]  # fmt: skip
    if len(members) > 1:
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    if key in legend:
        legend[key].counts.append(len(members))
        legend[key].diverged += n_div
    else:
        entry.handle = line
        legend[key] = entry


# ---------------------------------------------------------------------------- source


def results_dir(path: str | os.PathLike) -> Path:
    """The results directory to plot: path itself when it holds runs, or its only results
    directory; ValueError (one line) naming the grids when it holds several, or none."""
    from rnnfast.store import results_dirs  # noqa: PLC0415

    path = Path(path)
    dirs = results_dirs(path)
    if len(dirs) == 1:
        return dirs[0]
    if not dirs:
        raise ValueError(f"{path}: no stored runs here (expected a results directory, "
                         "DIR/runs/, or a directory of them)")  # fmt: skip
    names = ", ".join(d.name for d in dirs)
    raise ValueError(f"{path}: holds {len(dirs)} results directories (grids {names}); plot "
                     f"one of them, e.g. {dirs[0]}")  # fmt: skip


# ------------------------------------------------------------------------------ save


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write fig to path, the format from its suffix (.png at 150 dpi, .svg, .pdf), through a
    temporary file renamed into place; the parent directory is created. Returns the path."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"path: expected a suffix in {list(FORMATS)}, got {path.suffix or '(none)'!r} "
            f"in {str(path)!r}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # no dates in the metadata and a fixed SVG id salt: the same figure gives the same bytes
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    try:
        with mpl.rc_context({"svg.hashsalt": "rnnfast"}), open(tmp, "xb") as f:
            fig.savefig(f, format=fmt, dpi=DPI, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
