"""rnnfast: Numba-accelerated RNN, LSTM and GRU with PyTorch's layout and semantics."""

from rnnfast.api import Cache, backward, forward
from rnnfast.layers import GRU, LSTM, RNN, RecurrentLayer
from rnnfast.packing import from_packed, pad_sequences, to_packed, unpad
from rnnfast.params import init_params

__version__ = "0.1.0"


def __getattr__(name: str):
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
