"""rnnfast: Numba-accelerated RNN, LSTM and GRU with PyTorch's layout and semantics."""

from rnnfast.api import Cache, backward, forward
from rnnfast.params import init_params

__version__ = "0.1.0"

__all__ = ["Cache", "__version__", "backward", "forward", "init_params"]
