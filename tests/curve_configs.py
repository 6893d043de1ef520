"""Configs whose curves, final metrics and parameters are saved as fixtures
(tests/fixtures/curves.npz) by tests/fixtures/make_curves.py, from the code before tasks became
plug-ins over one sequence-data model (issue 11). test_curve_fixtures.py trains each again and
requires bit-identical results: the built-in tasks' semantics must not drift.

MNIST configs read the real data through RNNFAST_DATA (CI sets it to ../shared/data).
"""

# name -> config. The published grids first (seed 0, and the MNIST grid's first epoch: later
# epochs do not change earlier ones), then a spread over cells, optimizers, dtypes, layers,
# truncation styles, batch chunks and MNIST variants.
CONFIGS: dict[str, dict] = {
    "published-dependency-5x4": {
        "task": "dependency", "cell": "rnn", "num_steps": 5, "hidden_size": 4,
        "batch_size": 200, "optimizer": "adagrad", "lr": 0.1, "initial_accumulator": 0.1,
        "epochs": 1, "seed": 1,
    },
    "published-dependency-10x16": {
        "task": "dependency", "cell": "rnn", "num_steps": 10, "hidden_size": 16,
        "batch_size": 200, "optimizer": "adagrad", "lr": 0.1, "initial_accumulator": 0.1,
        "epochs": 3, "seed": 2,
    },
    "published-addition-iamtrask": {
        "task": "addition", "init": "iamtrask", "cell": "rnn", "nonlinearity": "sigmoid",
        "hidden_size": 16, "bias": False, "optimizer": "sgd", "lr": 0.1, "updates": 10000,
        "dtype": "float64", "seed": 0,
    },
    "published-mnist-rows-lstm100-epoch1": {
        "task": "mnist", "variant": "rows", "cell": "lstm", "hidden_size": 100,
        "batch_size": 100, "optimizer": "adam", "lr": 1e-4, "train_size": 55000, "epochs": 1,
    },
    "dependency-true-gru": {
        "task": "dependency", "cell": "gru", "truncation": "true", "num_steps": 6,
        "hidden_size": 8, "batch_size": 20, "sequence_length": 30000, "optimizer": "adam",
        "lr": 0.01, "epochs": 2, "seed": 3,
    },
    "dependency-lstm-2layer-f64-clip": {
        "task": "dependency", "cell": "lstm", "num_layers": 2, "hidden_size": 12,
        "num_steps": 7, "batch_size": 50, "sequence_length": 40000, "optimizer": "sgd",
        "momentum": 0.9, "lr": 0.05, "clip": 0.5, "dtype": "float64", "epochs": 2,
    },
    "dependency-rnn-relu-rmsprop-chunks": {
        "task": "dependency", "cell": "rnn", "nonlinearity": "relu", "hidden_size": 64,
        "num_steps": 10, "batch_size": 256, "sequence_length": 200000,
        "optimizer": "rmsprop", "lr": 0.001, "epochs": 1, "lags": [2, 5, 7],
        "shifts": [0.3, -0.2, 0.1], "base": 0.4,
    },
    "dependency-gru-chunks-threads1": {
        "task": "dependency", "cell": "gru", "hidden_size": 48, "num_steps": 10,
        "batch_size": 256, "sequence_length": 200000, "optimizer": "adam", "lr": 0.003,
        "epochs": 1, "threads": 1,
    },
    "mnist-rows-gru-2layer": {
        "task": "mnist", "variant": "rows", "cell": "gru", "num_layers": 2, "hidden_size": 24,
        "batch_size": 50, "train_size": 2000, "optimizer": "adam", "lr": 0.003, "epochs": 2,
        "seed": 4,
    },
    "mnist-pixels-rnn-f64": {
        "task": "mnist", "variant": "pixels", "cell": "rnn", "hidden_size": 16,
        "batch_size": 40, "train_size": 400, "optimizer": "rmsprop", "lr": 0.001,
        "epochs": 1, "dtype": "float64", "clip": 1.0,
    },
    "mnist-permuted-lstm-nobias": {
        "task": "mnist", "variant": "permuted", "permutation_seed": 7, "cell": "lstm",
        "hidden_size": 20, "bias": False, "batch_size": 64, "train_size": 640,
        "optimizer": "adagrad", "lr": 0.05, "epochs": 1, "eval_batch": 333,
    },
    "mnist-rows-lstm-chunks": {
        "task": "mnist", "variant": "rows", "cell": "lstm", "hidden_size": 64,
        "batch_size": 200, "train_size": 4000, "optimizer": "adam", "lr": 0.002, "epochs": 1,
        "seed": 5,
    },
    "addition-default-lstm-f32": {
        "task": "addition", "init": "default", "cell": "lstm", "nonlinearity": "tanh",
        "hidden_size": 8, "bias": True, "optimizer": "adam", "lr": 0.01, "updates": 1500,
        "dtype": "float32", "seed": 6,
    },
    "addition-default-gru-2layer": {
        "task": "addition", "init": "default", "cell": "gru", "nonlinearity": "tanh",
        "num_layers": 2, "hidden_size": 6, "bias": False, "bits": 10, "largest": 300,
        "optimizer": "sgd", "lr": 0.2, "updates": 800, "seed": 8,
    },
}  # fmt: skip
