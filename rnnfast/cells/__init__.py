"""The math of one cell step, element-wise, on feature-major buffers (batch innermost).

Codes shared by the kernels: CELL_RNN, CELL_LSTM, CELL_GRU and ACT_TANH, ACT_RELU,
ACT_SIGMOID (the vanilla RNN's nonlinearity).
"""

CELL_RNN, CELL_LSTM, CELL_GRU = 0, 1, 2
CELL_CODES = {"rnn": CELL_RNN, "lstm": CELL_LSTM, "gru": CELL_GRU}
ACT_TANH, ACT_RELU, ACT_SIGMOID = 0, 1, 2
ACT_CODES = {"tanh": ACT_TANH, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID}
