"""The math of one cell step, element-wise, on feature-major buffers (batch innermost).

Codes shared by the kernels: CELL_RNN, CELL_LSTM, CELL_GRU and ACT_TANH, ACT_RELU,
ACT_SIGMOID (the vanilla RNN's nonlinearity).
"""

from rnnfast.codes import (  # noqa: F401  (re-exported: the cells' own names for them)
    ACT_CODES,
    ACT_RELU,
    ACT_SIGMOID,
    ACT_TANH,
    CELL_CODES,
    CELL_GRU,
    CELL_LSTM,
    CELL_RNN,
)
