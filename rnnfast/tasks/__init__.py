"""Tasks as plug-ins: one module a task, each owning its config keys, defaults, validation,
metrics, reference levels and the sequence data it produces (rnnfast.seqdata.TaskData).

Built in: dependency, mnist, addition, sequences (your arrays or files), text. A config may
name any other task as ``task = "package.module:Name"``: rnnfast imports that module (running
its code, as any plug-in does) and instantiates Name, a subclass of Task.

Nothing outside this package names a task; config, grid, training, plot and the CLI ask the
Task object.
"""

import importlib
from typing import Any

from rnnfast.seqdata import TaskData


class Task:
    """The protocol. Subclasses set the class attributes and implement prepare()."""

    name: str = ""
    description: str = ""
    # own config keys -> (kind, extra) as rnnfast.config.check_value takes them
    keys: dict[str, tuple[str, Any]] = {}
    # defaults of common keys (the task's published settings) and of its own keys
    defaults: dict[str, Any] = {}
    # keys of TrainResult.final, all but "updates" also curve metrics
    metrics: tuple[str, ...] = ("loss", "updates")
    # y-axis labels of the task's metrics in plots
    metric_labels: dict[str, str] = {}
    # keys that say where data lives (paths): not part of a run's identity; the content of
    # data_files() is
    location_keys: tuple[str, ...] = ()

    def check(self, cfg: dict[str, Any]) -> None:
        """Raise ValueError (one line, naming the key) for combinations of a resolved config
        the task cannot train."""

    def data_files(self, cfg: dict[str, Any]) -> list[str]:
        """Files whose content belongs to a run's identity (hashed, not named by path)."""
        return []

    def metrics_for(self, cfg: dict[str, Any]) -> tuple[str, ...]:
        """The final metrics of a run with this config (default: the class's)."""
        return self.metrics

    def reference_levels(self, cfg: dict[str, Any]) -> list[tuple[str, float]]:
        """(label, loss) levels to draw and check against (the dependency task's analytic
        cross-entropies); none by default."""
        return []

    def prepare(self, cfg: dict[str, Any], data: Any = None) -> TaskData:
        raise NotImplementedError


def _builtin() -> dict[str, type[Task]]:
    from rnnfast.tasks.addition import AdditionTask  # noqa: PLC0415
    from rnnfast.tasks.dependency import DependencyTask  # noqa: PLC0415
    from rnnfast.tasks.mnist import MnistTask  # noqa: PLC0415
    from rnnfast.tasks.sequences import SequencesTask  # noqa: PLC0415
    from rnnfast.tasks.text import TextTask  # noqa: PLC0415

    return {t.name: t for t in (DependencyTask, MnistTask, AdditionTask, SequencesTask, TextTask)}


_CACHE: dict[str, Task] = {}

# Data sets the built-in tasks can fetch (`rnnfast data NAME`): name -> (module, title). Each
# module has download(dest, progress) and install_from(source, dest), both returning the folder.
DATASETS = {"mnist": ("rnnfast.tasks.mnist_data", "MNIST")}


def dataset_module(name: str):
    return importlib.import_module(DATASETS[name][0])


def builtin_names() -> list[str]:
    return list(_builtin())


def get_task(name: object) -> Task:
    """The task of a config's `task` value: a built-in name or "package.module:Name"."""
    if not isinstance(name, str):
        raise ValueError(f"task: expected one of {builtin_names()} or 'package.module:Name', "
                         f"got {name!r}")  # fmt: skip
    if name in _CACHE:
        return _CACHE[name]
    builtin = _builtin()
    if name in builtin:
        task = builtin[name]()
    elif ":" in name:
        task = _plugin(name)
    else:
        raise ValueError(f"task: expected one of {list(builtin)} or 'package.module:Name', "
                         f"got {name!r}")  # fmt: skip
    _CACHE[name] = task
    return task


def _plugin(spec: str) -> Task:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module: any failure to import is theirs to see
        raise ValueError(f"task: cannot import {module_name!r} ({type(e).__name__}: {e})") from e
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"task: {spec!r} is not a subclass of rnnfast.tasks.Task")
    task = cls()
    if not task.name:
        task.name = spec
    return task
