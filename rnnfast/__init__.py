"""rnnfast: Numba-accelerated RNN, LSTM and GRU with PyTorch's layout and semantics."""

from rnnfast.api import Cache, backward, forward
from rnnfast.layers import GRU, LSTM, RNN, RecurrentLayer
from rnnfast.params import init_params

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Cache",
    "RecurrentLayer",
    "__version__",
    "backward",
    "forward",
    "init_params",
]
