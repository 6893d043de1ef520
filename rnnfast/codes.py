"""Integer codes shared by the CPU and the CUDA kernels, and the slots of the int64 vectors that
describe a model and a data form to them. Both backends read this module and nothing else for
these numbers, so they cannot drift apart.

Compiled code cannot take Python objects, so the training loops see a run as two int64 vectors:

    model = [cell, act, L, D, T, B, I0, H, C, wo, bo]            (M_* slots)
    form  = [inputs, targets, head, mode, reduction_sum, carry, V, E, eo]   (F_* slots)

and a float64 vector of optimizer hyperparameters (H_* slots, rnnfast.optim.Optimizer.hyper).
"""

# cells and the vanilla RNN's nonlinearity
CELL_RNN, CELL_LSTM, CELL_GRU = 0, 1, 2
CELL_CODES = {"rnn": CELL_RNN, "lstm": CELL_LSTM, "gru": CELL_GRU}
ACT_TANH, ACT_RELU, ACT_SIGMOID = 0, 1, 2
ACT_CODES = {"tanh": ACT_TANH, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID}

# inputs: dense floats, uint8 features times a scale (MNIST pixels), token ids one-hot, or
# token ids through a trainable embedding table
IN_DENSE, IN_QUANTIZED, IN_ONEHOT, IN_EMBED = 0, 1, 2, 3
# targets and their losses: classes (softmax cross-entropy), reals (linear output, mean
# squared error as torch.nn.MSELoss), or 0/1 reals through a sigmoid with squared error / 2
# (iamtrask's binary addition network)
TGT_CLASSES, TGT_REALS, TGT_SIGMOID = 0, 1, 2
# where the head reads: every step's output, or each sequence's last (and for a
# bidirectional model the reverse direction's output at step 0, so the head sees h_n)
HEAD_ALL, HEAD_LAST = 0, 1
# data modes: independent sequences in batches (set), or rows of one long stream cut into
# windows of T steps with the state carried between updates, truncated BPTT "tf" (a loss at
# every step) or "true" (T shifted copies, each target backpropagates exactly T steps)
MODE_SET, MODE_STREAM_TF, MODE_STREAM_TRUE = 0, 1, 2

M_CELL, M_ACT, M_L, M_D, M_T, M_B, M_I0, M_H, M_C, M_WO, M_BO = range(11)
F_INPUTS, F_TARGETS, F_HEAD, F_MODE, F_SUM, F_CARRY, F_V, F_E, F_EO = range(9)

OPTIMIZERS = ("sgd", "adagrad", "adam", "rmsprop")
OPT_SGD, OPT_ADAGRAD, OPT_ADAM, OPT_RMSPROP = 0, 1, 2, 3
HYPER_FIELDS = ("lr", "momentum", "beta1", "beta2", "eps", "alpha", "initial_accumulator")
H_LR, H_MOMENTUM, H_BETA1, H_BETA2, H_EPS, H_ALPHA, H_ACC0 = range(7)
