"""The training configuration: every key rnnfast.train accepts, its type, range and default.

Keys are flat. Common keys apply to every task; each task (rnnfast/tasks/) adds its own keys
and sets its defaults (the published settings). `resolve(config)` returns the complete,
validated config or raises ValueError naming the key, the expected and the given value.
"""

import difflib
import math
import re
from typing import Any

from rnnfast.optim import OPTIMIZERS, make_optimizer
from rnnfast.tasks import Task, builtin_names, get_task

# key: (kind, extra) — kinds: int (min), float (min, exclusive?), bool, choice (options),
# str_or_none, int_list, float_list
_COMMON: dict[str, tuple[str, Any]] = {
    "task": ("task", None),
    "cell": ("choice", ("rnn", "lstm", "gru")),
    "nonlinearity": ("choice", ("tanh", "relu", "sigmoid")),
    "hidden_size": ("int", 1),
    "num_layers": ("int", 1),
    "bidirectional": ("bool", None),
    "bias": ("bool", None),
    "batch_size": ("int", 1),
    "optimizer": ("choice", OPTIMIZERS),
    "lr": ("pos_float", None),
    "momentum": ("unit_float", None),
    "beta1": ("unit_float", None),
    "beta2": ("unit_float", None),
    "eps": ("pos_float", None),
    "alpha": ("unit_float", None),
    "initial_accumulator": ("nonneg_float", None),
    "clip": ("nonneg_float", None),
    "epochs": ("int", 1),
    "seed": ("int", 0),
    "dtype": ("choice", ("float32", "float64")),
    "backend": ("choice", ("cpu", "cuda")),
    "threads": ("int_or_none", 1),
    # none (off), or a number > 1: the run stops as "diverged" once a training loss exceeds
    # diverge_above times its starting loss, the loss of its first update (the initial
    # parameters on the first batch); checked after each interval of updates
    # (rnnfast.run_setup.steps). In a run's identity when set (rnnfast.grid.run_id).
    "diverge_above": ("multiple_or_none", None),
    # not part of a run's identity (rnnfast.grid.NON_IDENTITY_KEYS): see rnnfast.checkpoint
    "checkpoint_every": ("checkpoint_every", None),
}

# defaults of common keys no task sets
_SHARED_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "dtype": "float32",
    "backend": "cpu",
    "threads": None,
    "diverge_above": None,
    "checkpoint_every": "epoch",
    "cell": "lstm",
    "nonlinearity": "tanh",
    "hidden_size": 64,
    "num_layers": 1,
    "bidirectional": False,
    "bias": True,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 1e-3,
    "clip": 0.0,
    "epochs": 10,
}
_OPTIMIZER_KEYS = ("momentum", "beta1", "beta2", "eps", "alpha", "initial_accumulator")


EPOCH_MIN_SECONDS = 60.0  # checkpoint_every = "epoch": at most one checkpoint a minute
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*s")


def parse_every(value: object) -> tuple[str, float]:
    """checkpoint_every -> ("updates", N) | ("epoch", 60) | ("seconds", S) | ("never", 0):
    a number of updates (0: never), "epoch" (every epoch, at most once a minute), seconds
    such as "60s", or "never"; ValueError (one line, expected versus given) for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return ("updates", float(value)) if value else ("never", 0.0)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("epoch", "never"):
            return low, EPOCH_MIN_SECONDS if low == "epoch" else 0.0
        if (m := _SECONDS.fullmatch(low)) and math.isfinite(sec := float(m.group(1))):
            return ("seconds", sec) if sec > 0 else ("never", 0.0)
    raise _fail("checkpoint_every", "a number of updates >= 0, 'epoch', seconds such as '60s', "
                "or 'never'", value)  # fmt: skip


def _normalise_every(value: object) -> int | str:
    kind, amount = parse_every(value)
    if kind == "updates":
        return int(amount)
    return f"{amount:g}s" if kind == "seconds" else kind


def schema(task: str) -> dict[str, tuple[str, Any]]:
    """Every key task accepts -> (kind, extra) as check_value takes them."""
    return {**_COMMON, **get_task(task).keys}


def known_keys(task: str | None = None) -> list[str]:
    """The keys of task, or of every built-in task."""
    keys = list(_COMMON)
    for name in [task] if task is not None else builtin_names():
        keys += [k for k in get_task(name).keys if k not in keys]
    return keys


INT_MAX = 2**63 - 1  # the int64 vectors and arrays a run lives in hold nothing larger


def _shown(value: object) -> str:
    """repr(value), shortened: a 4000-digit integer or a list nested 500 deep is one line."""
    text = repr(value)
    return text if len(text) <= 200 else f"{text[:100]}... ({len(text)} characters)"


def _fail(key: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{key}: expected {expected}, got {_shown(value)}")


def _is_int(value: object, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= INT_MAX


def is_finite_number(value: object) -> bool:
    """An int or float (not a bool) that a float holds finitely: 10**400 is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past the largest float
        return False


def _int_bounds(low: int, value: object) -> str:
    """The bounds of an integer key: >= low, and <= 2**63 - 1 for a value (or an element)
    past it."""
    items = value if isinstance(value, list | tuple) else [value]
    past = any(isinstance(v, int) and v > INT_MAX for v in items)
    return f">= {low}" + (" and <= 2**63 - 1" if past else "")


def check_value(key: str, kind: str, extra: Any, value: object) -> Any:
    """Validate one value of the given kind; returns it normalised."""
    if kind == "task":
        get_task(value)  # raises ValueError for an unknown name or a plug-in that fails
        return value
    if kind == "choice":
        # a command line (and TOML) reads `true` as a boolean: for a choice of strings it is
        # the option spelled so ("truncation=true")
        if isinstance(value, bool) and str(value).lower() in extra:
            return str(value).lower()
        if not isinstance(value, str) or value not in extra:
            raise _fail(key, f"one of {list(extra)}", value)
        return value
    if kind == "checkpoint_every":
        return _normalise_every(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _fail(key, "true or false", value)
        return value
    if kind == "int":
        if not _is_int(value, extra):
            raise _fail(key, f"an integer {_int_bounds(extra, value)}", value)
        return value
    if kind == "int_or_none":
        if value is not None and not _is_int(value, extra):
            raise _fail(key, f"an integer {_int_bounds(extra, value)} or none", value)
        return value
    if kind == "multiple_or_none":
        if value is None:
            return None
        if not is_finite_number(value) or value <= 1:
            raise _fail(key, "a number > 1 (a multiple of the starting loss), or none", value)
        return float(value)
    if kind == "str_or_none":
        if value is not None and not isinstance(value, str):
            raise _fail(key, "a path (string)", value)
        return value
    if kind == "bool_or_none":
        if value is not None and not isinstance(value, bool):
            raise _fail(key, "true, false or none", value)
        return value
    if kind == "int_list":
        if (
            not isinstance(value, list | tuple)
            or not value
            or not all(_is_int(v, extra) for v in value)
        ):
            raise _fail(key, f"a non-empty list of integers {_int_bounds(extra, value)}", value)
        return list(value)
    if kind == "float_list":
        if not isinstance(value, list | tuple) or not value:
            raise _fail(key, "a non-empty list of numbers", value)
        return [check_value(f"{key}[{i}]", "float", None, v) for i, v in enumerate(value)]
    # floats
    if not is_finite_number(value):
        raise _fail(key, "a finite number", value)
    value = float(value)
    if kind == "pos_float" and value <= 0:
        raise _fail(key, "a number > 0", value)
    if kind == "nonneg_float" and value < 0:
        raise _fail(key, "a number >= 0", value)
    if kind == "unit_float" and not 0 <= value < 1:
        raise _fail(key, "a number in [0, 1)", value)
    if kind == "unit_float_closed" and not 0 <= value <= 1:
        raise _fail(key, "a number in [0, 1]", value)
    return value


def unknown_key_error(key: str, valid: list[str]) -> ValueError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{key}: unknown key{hint}")


def resolve(config: object) -> dict[str, Any]:
    """The complete, validated config: task defaults filled in, unknown keys rejected."""
    if not isinstance(config, dict):
        raise ValueError(f"config: expected a dict, got {type(config).__name__}")
    if "task" not in config:
        raise ValueError(f"task: missing; expected one of {builtin_names()} or "
                         "'package.module:Name'")  # fmt: skip
    task = get_task(config["task"])
    keys = schema(config["task"])
    for key in config:
        if not isinstance(key, str) or key not in keys:
            if isinstance(key, str) and key in known_keys():
                raise ValueError(f"{key}: not a key of task {config['task']!r}")
            raise unknown_key_error(str(key), list(keys))
    out: dict[str, Any] = {"task": config["task"], **_SHARED_DEFAULTS, **task.defaults}
    for key, value in config.items():
        if key == "task":
            continue
        unset = value is None and key in _OPTIMIZER_KEYS  # None: the optimizer's default
        out[key] = None if unset else check_value(key, *keys[key], value)
    for key in _OPTIMIZER_KEYS:
        out.setdefault(key, None)
    _check_combinations(out, task)
    return out


def _check_combinations(c: dict[str, Any], task: Task) -> None:
    hyper = {k: c[k] for k in _OPTIMIZER_KEYS if c.get(k) is not None}
    make_optimizer(c["optimizer"], c["lr"], **hyper)  # a hyperparameter of another optimizer
    if c["cell"] != "rnn" and c["nonlinearity"] != "tanh":
        raise ValueError(
            f"nonlinearity: {c['cell']} has fixed activations, expected 'tanh', "
            f"got {c['nonlinearity']!r}"
        )
    task.check(c)


def parse_value(text: str) -> Any:
    """A command-line value: true/false, none, an int, a float, a comma list, else a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in text:
        return [parse_value(part) for part in text.split(",") if part.strip()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """["hidden_size=16", "lags=3,8"] -> {"hidden_size": 16, "lags": [3, 8]}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item}: expected KEY=VALUE")
        key = key.strip()
        if key in out:
            raise ValueError(f"{key}: given twice")
        out[key] = parse_value(value)
    return out
