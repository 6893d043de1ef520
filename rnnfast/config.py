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
    # not part of a run's identity (rnnfast.grid.NON_IDENTITY_KEYS): see rnnfast.checkpoint
    "checkpoint_every": ("checkpoint_every", None),
}

# defaults of common keys no task sets
_SHARED_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "dtype": "float32",
    "backend": "cpu",
    "threads": None,
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


def _fail(key: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{key}: expected {expected}, got {value!r}")


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
        if isinstance(value, bool) or not isinstance(value, int) or value < extra:
            raise _fail(key, f"an integer >= {extra}", value)
        return value
    if kind == "int_or_none":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < extra):  # fmt: skip
            raise _fail(key, f"an integer >= {extra} or none", value)
        return value
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
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= extra for v in value)
        ):
            raise _fail(key, f"a non-empty list of integers >= {extra}", value)
        return list(value)
    if kind == "float_list":
        if not isinstance(value, list | tuple) or not value:
            raise _fail(key, "a non-empty list of numbers", value)
        return [check_value(f"{key}[{i}]", "float", None, v) for i, v in enumerate(value)]
    # floats
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
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
