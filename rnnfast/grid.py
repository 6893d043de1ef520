"""Grid files: a set of training runs declared in TOML, validated as a whole before any runs.

    name = "dependency-r2rt"        # required, [A-Za-z0-9._-]+: the results directory's name
    task = "dependency"             # required: a built-in task or "package.module:Name"
    description = "..."             # optional
    [fixed]                         # rnnfast.train keys shared by every run
    lr = 0.1
    lags = [3, 8]                   # a list-valued key is one value here...
    [grid]                          # key -> non-empty list; the runs are the cartesian product
    num_steps = [5, 10]
    shifts = [[0.5, -0.25], [0.25, 0.5]]   # ...and takes a list of lists here
    seed = [0, 1, 2]
    [[expect]]                      # optional, repeatable: a band `rnnfast check` verifies
    metric = "loss"                 # a key of TrainResult.final ("loss", "error", ...)
    where = {num_steps = 5}         # optional: the points it applies to (default: all)
    min = 0.60                      # min and/or max, or value = ... with tolerance = ...
    max = 0.70
    per = "mean"                    # "run" (default): each run; "mean": the mean of those selected
    # step = 1001                   # optional: the curve's value at that update, not the final

Points come in the order of the product of the axes as written (the last axis varies fastest).
Every problem is reported as one line "FILE: [section] key: expected ..., got ..." in a GridError.
"""

import difflib
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnfast import memory
from rnnfast.config import (
    check_value,
    is_finite_number,
    known_keys,
    resolve,
    schema,
    unknown_key_error,
)
from rnnfast.provenance import file_sha256
from rnnfast.tasks import builtin_names, get_task

_TOP = ("name", "task", "description", "fixed", "grid", "expect")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
MAX_RUNS = 100_000  # points a grid may expand to unless raised (--max-runs)
_BAND_KEYS = ("metric", "where", "min", "max", "value", "tolerance", "step", "per", "label")


class GridError(ValueError):
    """Problems in a grid file; str() gives one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Band:
    """An [[expect]] entry: metric (final, or at curve step) in [lo, hi] for the points selected."""

    metric: str
    lo: float = -math.inf
    hi: float = math.inf
    where: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    per: str = "run"  # or "mean"
    label: str = ""

    def selects(self, config: dict[str, Any]) -> bool:
        return all(_canonical(config.get(k)) == _canonical(v) for k, v in self.where.items())


@dataclass(frozen=True)
class RunSpec:
    config: dict[str, Any]  # the resolved config (rnnfast.config.resolve)
    point: dict[str, Any]  # the grid axis values only, for labels
    run_id: str


@dataclass
class Grid:
    name: str
    task: str
    description: str
    path: Path | None
    fixed: dict[str, Any]
    axes: dict[str, list]  # in the file's order; overrides replace in place or append
    expect: list[Band] = field(default_factory=list)

    def points(self) -> list[RunSpec]:
        """Every run of the grid, in a stable order (the product of the axes as written)."""
        out = []
        for point in _product(self.axes):
            config = resolve({"task": self.task, **self.fixed, **point})
            out.append(RunSpec(config, point, run_id(config)))
        return out


# ---- run identity ---------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """JSON-ready value: tuples as lists, NumPy scalars as Python ones, keys as strings."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"run_id: cannot hash a {type(value).__name__}: {value!r}")


def canonical_json(config: dict[str, Any]) -> str:
    """The text run_id hashes: sorted keys, no spaces, floats as repr (shortest round trip)."""
    return json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id(config: dict[str, Any]) -> str:
    """First 16 hex digits of sha256(canonical_json(config)), config = resolve(user config).

    What goes in: every key of the resolved config except where the data lives (data_dir:
    the same MNIST in another directory is the same run) and how many BLAS threads ran it
    (threads), i.e. the task, every
    common and task key with the task's defaults filled in (so lags = [3, 8] written out or
    left to the default give the same id), and the optimizer hyper-parameters, None when
    unset. Values are as resolve() normalises them (float-typed keys are floats: lr = 0.1,
    1e-1 and 0.10 are one value; lr = 1 is 1.0). Not in it: the code version, the grid's
    name or file, the results directory, key order, and the keys of OFF_WHEN_NONE_KEYS
    while they are None. Changing a default in rnnfast.config, or adding a key to the
    schema, changes the ids of the runs it affects, unless the key's default is None, off,
    and the key joins OFF_WHEN_NONE_KEYS.
    """
    task = get_task(config["task"]) if "task" in config else None
    skip = NON_IDENTITY_KEYS | set(task.location_keys if task else ())
    identity = {k: v for k, v in config.items()
                if k not in skip and not (v is None and k in OFF_WHEN_NONE_KEYS)}  # fmt: skip
    files = task.data_files(config) if task else []
    if files:
        identity["data_sha256"] = sorted(file_sha256(f) for f in files)
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


NON_IDENTITY_KEYS = frozenset({"threads", "checkpoint_every"})
# keys added after runs were stored, whose default None (off) trains as before: out of the
# identity while None, so that adding them kept every stored run's id; in it when set
OFF_WHEN_NONE_KEYS = frozenset({"diverge_above"})


def format_point(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in point.items()) or "(fixed)"


def _product(axes: dict[str, list]) -> list[dict[str, Any]]:
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


# ---- validation -----------------------------------------------------------------------------


def _schema(task: str) -> dict[str, tuple[str, Any]]:
    # rnnfast.config keeps its schema private; this is the one place grid.py reads it.
    return {k: v for k, v in schema(task).items() if k != "task"}


def _key_problem(key: str, schema: dict, task: str) -> str | None:
    if key == "task":
        return "task: set it at the top level (task = ...), not here"
    if key in schema:
        return None
    if key in known_keys():
        return f"{key}: not a key of task {task!r}"
    return str(unknown_key_error(key, list(schema)))


def _axis(key: str, spec: tuple[str, Any], values: Any, from_cli: bool = False,
          non_identity: frozenset = NON_IDENTITY_KEYS) -> list:  # fmt: skip
    """A grid axis: a non-empty list of distinct valid values (lists of lists for list keys)."""
    list_key = spec[0] in ("int_list", "float_list")
    if key in non_identity and not (isinstance(values, list) and len(values) == 1):
        raise ValueError(
            f"{key}: not a grid axis: it is not part of a run's identity (runs differing only in "
            f"{key} would share one run_id); set it in [fixed], got {values!r}"
        )
    if from_cli:  # -p seed=3 is one value; -p lags=3,8 is one lags value
        flat = isinstance(values, list) and not any(isinstance(v, list) for v in values)
        if not isinstance(values, list) or (list_key and flat):
            values = [values]
    if not isinstance(values, list) or not values:
        what = "a non-empty list of lists" if list_key else "a non-empty list of values"
        raise ValueError(f"{key}: expected {what}, got {values!r}")
    if list_key and not all(isinstance(v, list) for v in values):
        raise ValueError(
            f"{key}: each run takes a list, so the axis is a list of lists "
            f"(e.g. [{values!r}]), got {values!r}"
        )
    out = [check_value(f"{key}[{i}]", *spec, v) for i, v in enumerate(values)]
    seen: set[str] = set()  # a set: linear in the axis length (10^4 values in milliseconds)
    for v in out:
        text = canonical_json({"v": v})
        if text in seen:
            raise ValueError(f"{key}: expected distinct values, got {v!r} twice")
        seen.add(text)
    return out


def _number(name: str, value: Any) -> float:
    if not is_finite_number(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _band(raw: Any, task: str, schema: dict) -> Band:
    if not isinstance(raw, dict):
        raise ValueError(f"expected a table, got {raw!r}")
    for key in raw:
        if key not in _BAND_KEYS:
            raise ValueError(f"{unknown_key_error(key, list(_BAND_KEYS))}; expected {_BAND_KEYS}")
    metric, options = raw.get("metric"), list(get_task(task).metrics)
    if metric is None:
        raise ValueError(f"metric: missing; expected one of {options}")
    if metric not in options:
        close = difflib.get_close_matches(str(metric), options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"metric: expected one of {options}, got {metric!r}{hint}")
    step = raw.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step: expected an update number >= 1, got {step!r}")
        if metric == "updates":
            raise ValueError("step: 'updates' has no curve; use it without step")
    per = raw.get("per", "run")
    if per not in ("run", "mean"):
        raise ValueError(f"per: expected 'run' or 'mean', got {per!r}")
    label = raw.get("label", "")
    if not isinstance(label, str):
        raise ValueError(f"label: expected a string, got {label!r}")
    where = raw.get("where", {})
    if not isinstance(where, dict):
        raise ValueError(f"where: expected a table such as {{seed = 0}}, got {where!r}")
    sel = {}
    for key, value in where.items():
        problem = _key_problem(key, schema, task)
        if problem:
            raise ValueError(f"where.{problem}")
        sel[key] = check_value(f"where.{key}", *schema[key], value)
    has_range = "min" in raw or "max" in raw
    if "value" in raw or "tolerance" in raw:
        if has_range:
            raise ValueError("value: give either min/max or value with tolerance, not both")
        if "value" not in raw or "tolerance" not in raw:
            missing = "tolerance" if "value" in raw else "value"
            raise ValueError(f"{missing}: missing; value and tolerance go together")
        value, tol = _number("value", raw["value"]), _number("tolerance", raw["tolerance"])
        if tol < 0:
            raise ValueError(f"tolerance: expected a number >= 0, got {tol!r}")
        lo, hi = value - tol, value + tol
    elif has_range:
        lo = _number("min", raw["min"]) if "min" in raw else -math.inf
        hi = _number("max", raw["max"]) if "max" in raw else math.inf
        if lo > hi:
            raise ValueError(f"min: expected min <= max, got min={lo!r}, max={hi!r}")
    else:
        raise ValueError("min: missing; a band needs min and/or max, or value and tolerance")
    return Band(metric, lo, hi, sel, step, per, label)


def _read(path: Path) -> dict:
    """The parsed file, or a GridError of one line for anything a file can hold or be."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except IsADirectoryError:
        raise GridError([f"{path}: a directory; expected a grid file (TOML)"]) from None
    except OSError as e:
        raise GridError([f"{path}: cannot read the file: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise GridError([f"{path}: expected UTF-8 text (TOML), got undecodable bytes"]) from None
    except tomllib.TOMLDecodeError as e:
        raise GridError([f"{path}: TOML syntax error: {e}"]) from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise GridError([f"{path}: arrays or tables nested too deeply to read; no key takes "
                         "more than a list of lists"]) from None  # fmt: skip
    except ValueError as e:  # an integer literal past Python's digit limit (4300)
        raise GridError([f"{path}: a value too large to read ({str(e).split(';')[0]}); no key "
                         "takes one that large"]) from None  # fmt: skip


def _near(grid_path: Path, key: str, value: Any, task: Any) -> Any:
    """A relative path in a grid file's location keys (data files) is relative to the file."""
    if key in task.location_keys and isinstance(value, str) and not Path(value).is_absolute():
        return str(grid_path.parent / value)
    return value


def load_grid(path: str | Path, overrides: dict[str, list] | None = None, *,
              max_runs: int = MAX_RUNS, check_memory: bool = False) -> Grid:  # fmt: skip
    """Read and validate a grid file; raise GridError listing every problem, one per line.

    overrides (the CLI's -p key=v1,v2) replace [grid] axes or add new ones (a key in [fixed]
    moves to the grid). A non-list value is one value; for list-valued keys (lags, shifts) a
    flat list is one value and a list of lists an axis. A grid of more than max_runs points
    is refused from the axis lengths, before it is expanded. check_memory: also refuse a grid
    with a point whose run needs more memory than the machine has (rnnfast.memory).
    """
    path = Path(path)
    doc = _read(path)
    problems: list[str] = []

    def fail() -> GridError:
        return GridError([f"{path}: {p}" for p in problems])

    for key in doc:
        if key not in _TOP:
            problems.append(f"{unknown_key_error(key, list(_TOP))}; expected one of {list(_TOP)}")
    name = doc.get("name")
    if name is None:
        problems.append("name: missing; expected a name of letters, digits, '.', '_', '-'")
    elif not isinstance(name, str) or not _NAME.fullmatch(name) or set(name) == {"."}:
        problems.append(f"name: expected a name of letters, digits, '.', '_', '-', got {name!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        problems.append(f"description: expected a string, got {description!r}")
    task = doc.get("task")
    if task is None:
        problems.append(f"task: missing; expected one of {builtin_names()} or "
                        "'package.module:Name'")  # fmt: skip
        raise fail()
    try:
        task_obj = get_task(task)
    except ValueError as e:
        problems.append(str(e))
        raise fail() from None
    schema = _schema(task)
    non_identity = NON_IDENTITY_KEYS | set(task_obj.location_keys)
    sections = {}
    for sec, kind in (("fixed", dict), ("grid", dict), ("expect", list)):
        value = doc.get(sec, kind())
        if not isinstance(value, kind) or (sec == "expect" and isinstance(value, dict)):
            form = "an array of tables [[expect]]" if sec == "expect" else f"a table [{sec}]"
            problems.append(f"{sec}: expected {form}, got {value!r}")
            value = kind()
        sections[sec] = value

    fixed: dict[str, Any] = {}
    for key, value in sections["fixed"].items():
        try:
            if problem := _key_problem(key, schema, task):
                raise ValueError(problem)
            fixed[key] = _near(path, key, check_value(key, *schema[key], value), task_obj)
        except ValueError as e:
            problems.append(f"[fixed] {e}")
    axes: dict[str, list] = {}
    for key, values in sections["grid"].items():
        try:
            if problem := _key_problem(key, schema, task):
                raise ValueError(problem)
            if key in sections["fixed"]:
                raise ValueError(f"{key}: also in [fixed]; set it in one place")
            axes[key] = [
                _near(path, key, v, task_obj)
                for v in _axis(key, schema[key], values, non_identity=non_identity)
            ]
        except ValueError as e:
            problems.append(f"[grid] {e}")
    for key, values in (overrides or {}).items():
        try:
            if problem := _key_problem(key, schema, task):
                raise ValueError(problem)
            axes[key] = _axis(key, schema[key], values, from_cli=True, non_identity=non_identity)
            fixed.pop(key, None)
        except ValueError as e:
            problems.append(f"-p {e}")
    n_points = math.prod(len(v) for v in axes.values())
    if n_points > max_runs:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        problems.append(f"[grid] {n_points:,} runs ({sizes}): more than the limit of "
                        f"{max_runs:,}; split the grid or raise it (--max-runs)")  # fmt: skip
        raise fail()
    bands = []
    for i, raw in enumerate(sections["expect"], 1):
        try:
            bands.append(_band(raw, task, schema))
        except ValueError as e:
            problems.append(f"[[expect]] #{i} {e}")
    if problems:
        raise fail()

    grid = Grid(name, task, description, path, fixed, axes, bands)
    configs, seen = [], set()
    for point in _product(axes):
        try:
            configs.append(resolve({"task": task, **fixed, **point}))
        except ValueError as e:
            msg = f"{e} (at grid point {format_point(point)})"
            if str(e) not in seen:  # one line per distinct problem, not per point
                seen.add(str(e))
                problems.append(msg)
    if not overrides and not problems:  # -p may leave a band with nothing to check
        for i, band in enumerate(bands, 1):
            for key, value in band.where.items():
                have = {canonical_json({"v": c[key]}) for c in configs}
                if canonical_json({"v": value}) not in have:
                    vals = list(dict.fromkeys(repr(c[key]) for c in configs))
                    problems.append(
                        f"[[expect]] #{i} where.{key}: expected a value of the grid "
                        f"({', '.join(vals)}), got {value!r}"
                    )
    prepared: dict[tuple, Any] = {}
    if not problems:
        problems += _data_problems(task_obj, configs, prepared)
    if check_memory and not problems:
        problems += _memory_problems(task_obj, grid, configs, prepared)
    if problems:
        raise fail()
    return grid


def _data_key(task: Any, cfg: dict[str, Any]) -> tuple:
    """What a task's prepared data depends on: its files, its own keys and the batch size."""
    files = tuple(task.data_files(cfg))
    return files, tuple((k, repr(cfg[k])) for k in (*task.keys, "batch_size"))


def _data_problems(task: Any, configs: list[dict[str, Any]], prepared: dict) -> list[str]:
    """Read each distinct set of data files the grid names once, before any run: a missing,
    unreadable or malformed file is a problem of the grid file, not a failed run. The data
    prepared goes into `prepared` (by _data_key) for the memory check."""
    problems = []
    for cfg in configs:
        key = _data_key(task, cfg)
        if not key[0] or key in prepared:
            continue
        try:
            prepared[key] = task.prepare(cfg)
        except ValueError as e:
            prepared[key] = None
            if str(e) not in problems:
                problems.append(str(e))
    return problems


def _memory_problems(task: Any, grid: Grid, configs: list[dict[str, Any]],
                     prepared: dict) -> list[str]:  # fmt: skip
    """One line if any point's run needs more memory than is available (rnnfast.memory),
    naming the largest; each distinct config but its seed is estimated once. A point whose
    data cannot be prepared is left to its run, which fails and says why (as before)."""
    limit, source = memory.available()
    if limit is None:
        return []
    worst, over, seen = None, 0, {}
    for point, cfg in zip(_product(grid.axes), configs, strict=True):
        shape = canonical_json({k: v for k, v in cfg.items() if k != "seed"})
        if shape not in seen:
            key = _data_key(task, cfg)
            if key not in prepared:
                try:
                    prepared[key] = task.prepare(cfg)
                except Exception:  # any task's error: its run reports it
                    prepared[key] = None
            try:
                seen[shape] = None if prepared[key] is None else memory.estimate(cfg, prepared[key])
            except OverflowError:  # sizes whose products do not fit 64-bit integers
                return [f"memory: the run at grid point {format_point(point)} is too large to "
                        "estimate (its sizes overflow 64-bit integers); shrink those "
                        "points"]  # fmt: skip
        est = seen[shape]
        if est is not None and est.total > limit:
            over += 1
            if worst is None or est.total > worst[0].total:
                worst = (est, point)
    if worst is None:
        return []
    est, point = worst
    return [f"memory: {over:,} of {len(configs):,} runs need more than the "
            f"{memory.format_bytes(limit)} {source}; the largest, at grid point "
            f"{format_point(point)}, about {memory.format_bytes(est.total)} ({est.parts()}); "
            f"shrink those points, or set {memory.ENV}=off (or --memory-limit) to run "
            "them anyway"]  # fmt: skip


# ---- checking stored runs against the bands -------------------------------------------------


def band_label(band: Band, index: int) -> str:
    if band.label:
        return band.label
    at = f"@{band.step}" if band.step is not None else ""
    return f"#{index} {band.metric}{at}" + (" mean" if band.per == "mean" else "")


def _observe(band: Band, rid: str, runs: dict[str, dict], at_step: dict[str, float]):
    """(value, note): value None when the run is missing, not ok, or lacks the metric."""
    row = runs.get(rid)
    if row is None:
        return None, "not stored"
    if row.get("status") != "ok":
        return None, f"status {row.get('status')}"
    if band.step is None:
        value = row.get(f"final.{band.metric}")
        note = f"no final.{band.metric}"
    else:
        value = at_step.get(rid)
        note = f"no {band.metric} at step {band.step}"
    if value is None or pd.isna(value):
        return None, note
    return float(value), ""


def _verdict(value: float | None, band: Band) -> str:
    if value is None:
        return "missing"
    return "ok" if band.lo <= value <= band.hi else "outside"


@dataclass
class CheckReport:
    rows: pd.DataFrame  # band, run_id, point, observed, lo, hi, verdict, note

    @property
    def ok(self) -> bool:
        return bool((self.rows["verdict"] == "ok").all())

    def format(self) -> str:
        """An aligned text table, one line per row, and a summary line."""
        head = ("band", "point", "run", "observed", "expected", "verdict", "note")
        lines = [head]
        for r in self.rows.itertuples(index=False):
            ids = r.run_id.split(",") if r.run_id else []
            run = ids[0] if len(ids) == 1 else f"{len(ids)} runs"
            obs = "-" if math.isnan(r.observed) else f"{r.observed:.6g}"
            lines.append((r.band, r.point, run, obs, _range(r.lo, r.hi), r.verdict, r.note))
        widths = [max(len(line[j]) for line in lines) for j in range(len(head))]
        text = []
        for line in lines:
            cells = [c.rjust(w) if j == 3 else c.ljust(w) for j, (c, w) in enumerate(
                zip(line, widths, strict=True))]  # fmt: skip
            text.append("  ".join(cells).rstrip())
        counts = self.rows["verdict"].value_counts()
        summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("ok", "outside", "missing"))
        text.append(f"{'PASS' if self.ok else 'FAIL'}: {summary}")
        return "\n".join(text)


def _range(lo: float, hi: float) -> str:
    if lo == -math.inf:
        return f"<= {hi:.6g}"
    if hi == math.inf:
        return f">= {lo:.6g}"
    return f"[{lo:.6g}, {hi:.6g}]"


def check(grid: Grid, runs: pd.DataFrame, curves: pd.DataFrame) -> CheckReport:
    """Compare stored runs with the grid's bands: one row per (band, point), or per band for
    per = "mean". runs: run_id, status, config keys, "final.<metric>"; curves: run_id, step,
    epoch, metric, value. A run not stored or not "ok" is "missing", and fails the check."""
    specs = grid.points()
    by_id = {}
    if "run_id" in runs.columns:
        by_id = {r["run_id"]: r for r in runs.to_dict("records")}  # a later duplicate wins
    rows = []
    for i, band in enumerate(grid.expect, 1):
        label = band_label(band, i)
        at_step: dict[str, float] = {}
        if band.step is not None and len(curves):
            sel = curves[(curves["metric"] == band.metric) & (curves["step"] == band.step)]
            at_step = dict(zip(sel["run_id"], sel["value"], strict=True))
        chosen = [s for s in specs if band.selects(s.config)]
        if not chosen:
            rows.append((label, "", "", None, band, "no grid point selected"))
            continue
        seen = [_observe(band, s.run_id, by_id, at_step) for s in chosen]
        if band.per == "run":
            for s, (value, note) in zip(chosen, seen, strict=True):
                rows.append((label, s.run_id, format_point(s.point), value, band, note))
        else:
            values = [v for v, _ in seen if v is not None]
            notes = [n for v, n in seen if v is None]
            mean = float(np.mean(values)) if values and not notes else None
            note = f"mean of {len(chosen)}"
            if notes:
                note = f"{len(notes)} of {len(chosen)} missing ({notes[0]})"
            common = {
                k: v for k, v in chosen[0].point.items()
                if all(_canonical(s.point[k]) == _canonical(v) for s in chosen)
            }  # fmt: skip
            ids = ",".join(s.run_id for s in chosen)
            rows.append((label, ids, format_point(common), mean, band, note))
    table = pd.DataFrame(
        [
            {"band": label, "run_id": ids, "point": point,
             "observed": math.nan if value is None else value, "lo": band.lo, "hi": band.hi,
             "verdict": _verdict(value, band), "note": note}
            for label, ids, point, value, band, note in rows
        ],
        columns=["band", "run_id", "point", "observed", "lo", "hi", "verdict", "note"],
    )  # fmt: skip
    return CheckReport(table)
