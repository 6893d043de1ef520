"""rnnfast.train(config, data=None): a task, a model and an optimizer -> a TrainResult.

Thin: resolve the config, refuse a run the machine's memory cannot hold (rnnfast.memory),
set up the run (rnnfast.run_setup: the task's data, parameters,
optimizer state, epoch schedule) and hand it to the backend's driver by name.
"""

import time
from typing import Any

from rnnfast.config import resolve
from rnnfast.memory import check as check_memory
from rnnfast.run_setup import RunSetup, TrainResult

__all__ = ["TrainResult", "train"]


def train(config: dict[str, Any], data: Any = None, *, progress=None) -> TrainResult:
    """Train a model on a task; see rnnfast.config for the keys and their defaults.

    data: what the task trains on when it is not in files named by the config: for the
    "sequences" task arrays (x, y) or (x, y, lengths), or a dict with "train" and optionally
    "valid" and "test" entries of that form.
    progress, if given, is called as progress(updates_done, updates_total) after every
    interval of updates. backend="cuda" trains on the GPU (rnnfast.cuda.training).
    Raises rnnfast.memory.MemoryLimitError (a ValueError) before allocating anything when
    the run's estimated memory exceeds what the machine has available.
    """
    t_start = time.perf_counter()
    cfg = resolve(config)
    check_memory(cfg, data)
    if cfg["backend"] == "cuda":
        from rnnfast.cuda.training import train_group  # noqa: PLC0415

        return train_group([cfg], data=data, progress=progress)[0]
    from rnnfast.cpu.trainer import train_cpu  # noqa: PLC0415

    return train_cpu(RunSetup(cfg, data), progress, t_start)
