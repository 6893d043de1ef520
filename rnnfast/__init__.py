"""rnnfast: Numba-accelerated RNN, LSTM and GRU with PyTorch's layout and semantics."""

import importlib

__version__ = "0.1.0"

# Everything is imported when first used: the kernels load Numba (half a second), and the
# `rnnfast` command, which imports this package first, must start in a blink so that a
# Ctrl-C at any time is its one line, not a traceback from inside an import.
_LAZY = {
    "Cache": "rnnfast.api",
    "backward": "rnnfast.api",
    "forward": "rnnfast.api",
    "GRU": "rnnfast.layers",
    "LSTM": "rnnfast.layers",
    "RNN": "rnnfast.layers",
    "RecurrentLayer": "rnnfast.layers",
    "from_packed": "rnnfast.packing",
    "pad_sequences": "rnnfast.packing",
    "to_packed": "rnnfast.packing",
    "unpad": "rnnfast.packing",
    "init_params": "rnnfast.params",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = globals()[name] = getattr(importlib.import_module(_LAZY[name]), name)
        return value
    # rnnfast.train imports pandas and the training kernels: only when first used
    if name in ("train", "TrainResult"):
        from rnnfast import training  # noqa: PLC0415

        return getattr(training, name)
    if name == "sample":
        from rnnfast.tasks.text import sample  # noqa: PLC0415

        return sample
    if name in ("load_model", "Model"):
        from rnnfast import models  # noqa: PLC0415

        return getattr(models, name)
    if name == "load_results":
        from rnnfast.store import load_results  # noqa: PLC0415

        return load_results
    raise AttributeError(f"module 'rnnfast' has no attribute {name!r}")


__all__ = [
    "GRU",
    "LSTM",
    "Model",
    "RNN",
    "Cache",
    "RecurrentLayer",
    "TrainResult",
    "__version__",
    "backward",
    "forward",
    "from_packed",
    "init_params",
    "load_model",
    "load_results",
    "pad_sequences",
    "sample",
    "to_packed",
    "train",
    "unpad",
]
