"""rnnfast.config.resolve and rnnfast.training.train: bad configs raise ValueError naming the key
(before any training), and each task's defaults (the published settings) are filled in."""

import math
import re

import numpy as np
import pytest

from rnnfast.config import resolve
from rnnfast.tasks.idx import write_idx
from rnnfast.training import train

DEP = {"task": "dependency", "sequence_length": 2_000}
ADD = {"task": "addition"}
MNIST = {"task": "mnist"}

# (base config, overrides, key the message must start with)
BAD_VALUES = [
    # wrong types
    (DEP, {"hidden_size": "4"}, "hidden_size"),
    (DEP, {"hidden_size": 4.5}, "hidden_size"),
    (DEP, {"hidden_size": True}, "hidden_size"),
    (DEP, {"hidden_size": 0}, "hidden_size"),
    (DEP, {"num_layers": None}, "num_layers"),
    (DEP, {"bias": 1}, "bias"),
    (DEP, {"lr": "0.1"}, "lr"),
    (DEP, {"lr": True}, "lr"),
    (DEP, {"lags": [3, 8.0]}, "lags"),
    (DEP, {"lags": []}, "lags"),
    (DEP, {"shifts": [0.5, "x"]}, "shifts[1]"),
    (MNIST, {"data_dir": 3}, "data_dir"),
    # out of range
    (DEP, {"lr": 0}, "lr"),
    (DEP, {"lr": -1}, "lr"),
    (DEP, {"lr": math.nan}, "lr"),
    (DEP, {"lr": math.inf}, "lr"),
    (DEP, {"epochs": 0}, "epochs"),
    (DEP, {"seed": -1}, "seed"),
    (DEP, {"optimizer": "sgd", "momentum": 1.0}, "momentum"),
    (DEP, {"optimizer": "adam", "beta2": 1.0}, "beta2"),
    (DEP, {"optimizer": "adam", "eps": 0.0}, "eps"),
    (DEP, {"clip": -0.1}, "clip"),
    (DEP, {"base": 1.5}, "base"),
    (DEP, {"sequence_length": 1}, "sequence_length"),
    # bad choices
    (DEP, {"cell": "lstmx"}, "cell"),
    (DEP, {"optimizer": "adamw"}, "optimizer"),
    (DEP, {"dtype": "float16"}, "dtype"),
    (DEP, {"truncation": "full"}, "truncation"),
    (DEP, {"nonlinearity": "gelu"}, "nonlinearity"),
    (DEP, {"backend": "gpu"}, "backend"),
    (MNIST, {"variant": "columns"}, "variant"),
    (ADD, {"init": "xavier"}, "init"),
    ({}, {"task": "copying"}, "task"),
    # combinations
    (DEP, {"cell": "lstm", "nonlinearity": "relu"}, "nonlinearity"),
    (DEP, {"cell": "gru", "nonlinearity": "sigmoid"}, "nonlinearity"),
    (DEP, {"bidirectional": True}, "bidirectional"),
    (DEP, {"shifts": [0.5]}, "shifts"),
    (DEP, {"lags": [3, 8, 9]}, "shifts"),
    (DEP, {"lags": [3, 3]}, "lags"),
    (DEP, {"num_steps": 11, "batch_size": 200}, "num_steps"),  # rows of 2000 // 200 = 10
    (ADD, {"batch_size": 2}, "batch_size"),
    (ADD, {"cell": "lstm", "nonlinearity": "tanh"}, "init"),
    (ADD, {"bias": True}, "init"),
    (ADD, {"num_layers": 2}, "init"),
    (ADD, {"largest": 200}, "largest"),  # a + b must fit in 8 bits
]


def _message(excinfo) -> str:
    return str(excinfo.value)


@pytest.mark.parametrize("base, overrides, key", BAD_VALUES)
def test_resolve_and_train_reject_bad_values_naming_the_key(base, overrides, key):
    config = {**base, **overrides}
    with pytest.raises(ValueError) as e:
        resolve(config)
    assert _message(e).startswith(f"{key}:"), _message(e)
    with pytest.raises(ValueError) as e:
        train(config)
    assert _message(e).startswith(f"{key}:"), _message(e)


def test_message_says_expected_and_given():
    with pytest.raises(ValueError, match=r"hidden_size: expected an integer >= 1, got '4'"):
        resolve({**DEP, "hidden_size": "4"})
    with pytest.raises(ValueError, match=r"cell: expected one of \['rnn', 'lstm', 'gru'\]"):
        resolve({**DEP, "cell": "lstmx"})
    with pytest.raises(ValueError, match=r"momentum: expected a number in \[0, 1\), got 1.0"):
        resolve({**DEP, "optimizer": "sgd", "momentum": 1.0})


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ValueError, match=r"^hiden_size: unknown key \(did you mean 'hidden_size'"):
        resolve({**DEP, "hiden_size": 4})
    with pytest.raises(ValueError, match=r"^hiden_size: unknown key"):
        train({**DEP, "hiden_size": 4})
    with pytest.raises(
        ValueError, match=r"^sequence_lenght: unknown key \(did you mean 'sequence_length'"
    ):
        resolve({**DEP, "sequence_lenght": 10})
    with pytest.raises(ValueError, match=r"^zzz: unknown key$"):  # nothing close: no hint
        resolve({**DEP, "zzz": 1})


def test_key_of_another_task_is_named_as_such():
    with pytest.raises(ValueError, match=r"^num_steps: not a key of task 'mnist'"):
        resolve({**MNIST, "num_steps": 5})
    with pytest.raises(ValueError, match=r"^num_steps: not a key of task 'mnist'"):
        train({**MNIST, "num_steps": 5})
    with pytest.raises(ValueError, match=r"^variant: not a key of task 'dependency'"):
        resolve({**DEP, "variant": "rows"})
    with pytest.raises(ValueError, match=r"^init: not a key of task 'dependency'"):
        resolve({**DEP, "init": "iamtrask"})


def test_task_missing_or_config_not_a_dict():
    with pytest.raises(ValueError, match=r"^task: missing"):
        resolve({"hidden_size": 4})
    with pytest.raises(ValueError, match=r"^config: expected a dict"):
        resolve([("task", "dependency")])


def test_optimizer_hyperparameter_of_another_optimizer_is_rejected():
    # Checked when the optimizer is built, before any update runs.
    with pytest.raises(ValueError, match=r"momentum: not a hyperparameter of adam"):
        train({**DEP, "optimizer": "adam", "lr": 1e-3, "momentum": 0.9})
    with pytest.raises(ValueError, match=r"initial_accumulator: not a hyperparameter of sgd"):
        train({**DEP, "optimizer": "sgd", "initial_accumulator": 0.5})
    with pytest.raises(ValueError, match=r"beta1: not a hyperparameter of rmsprop"):
        train({**DEP, "optimizer": "rmsprop", "beta1": 0.5})


def test_config_is_not_modified():
    config = {**DEP, "lags": (3, 8)}
    before = dict(config)
    out = resolve(config)
    assert config == before
    assert out is not config and out["lags"] == [3, 8]


# ---------------------------------------------------------------------------- defaults


def test_dependency_defaults_are_the_published_settings():
    c = resolve({"task": "dependency"})
    expected = {
        "cell": "rnn",
        "nonlinearity": "tanh",
        "hidden_size": 4,
        "num_layers": 1,
        "bidirectional": False,
        "num_steps": 5,
        "truncation": "tf",
        "batch_size": 200,
        "optimizer": "adagrad",
        "lr": 0.1,
        "clip": 0.0,
        "epochs": 1,
        "seed": 0,
        "sequence_length": 1_000_000,
        "lags": [3, 8],
        "shifts": [0.5, -0.25],
        "base": 0.5,
        "dtype": "float32",
        "backend": "cpu",
    }
    assert {k: c[k] for k in expected} == expected
    # optimizer hyperparameters not given stay None (the optimizer's own defaults apply)
    assert c["momentum"] is None and c["initial_accumulator"] is None


def test_mnist_defaults_are_the_tutorial_settings():
    c = resolve({"task": "mnist"})
    expected = {
        "cell": "lstm",
        "hidden_size": 100,
        "num_layers": 1,
        "optimizer": "adam",
        "lr": 1e-4,
        "batch_size": 100,
        "epochs": 10,
        "variant": "rows",
        "train_size": 55_000,
        "data_dir": None,
    }
    assert {k: c[k] for k in expected} == expected
    assert "num_steps" not in c and "sequence_length" not in c


def test_addition_defaults_are_the_post_settings():
    c = resolve({"task": "addition"})
    expected = {
        "cell": "rnn",
        "nonlinearity": "sigmoid",
        "hidden_size": 16,
        "bias": False,
        "batch_size": 1,
        "optimizer": "sgd",
        "lr": 0.1,
        "bits": 8,
        "largest": 128,
        "init": "iamtrask",
        "updates": 10_000,
    }
    assert {k: c[k] for k in expected} == expected


def test_given_values_override_defaults_and_ints_become_floats():
    c = resolve({"task": "mnist", "hidden_size": 8, "lr": 1, "optimizer": "sgd", "cell": "gru"})
    assert (c["hidden_size"], c["optimizer"], c["cell"]) == (8, "sgd", "gru")
    assert c["lr"] == 1.0 and isinstance(c["lr"], float)


# ---------------------------------------------------------------------------- mnist data


def _write_mnist(directory, n_train=20, n_test=5):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(
        directory / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28), np.uint8)
    )
    write_idx(directory / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train).astype(np.uint8))
    write_idx(
        directory / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28), np.uint8)
    )
    write_idx(directory / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test).astype(np.uint8))
    return directory


def test_mnist_batch_size_larger_than_train_size(tmp_path):
    d = _write_mnist(tmp_path / "mnist")
    config = {**MNIST, "data_dir": str(d), "hidden_size": 2, "train_size": 20}
    with pytest.raises(ValueError, match=r"^batch_size: expected at most train_size=20, got 21"):
        train({**config, "batch_size": 21})
    # the boundary itself trains (one update per epoch)
    r = train({**config, "batch_size": 20, "epochs": 1})
    assert r.status == "ok" and r.final["updates"] == 1


def test_mnist_train_size_larger_than_the_data(tmp_path):
    d = _write_mnist(tmp_path / "mnist")
    with pytest.raises(ValueError, match=r"^train_size: expected an int in \[1, 20\]"):
        train({**MNIST, "data_dir": str(d), "hidden_size": 2, "batch_size": 5})  # 55,000 > 20


def test_mnist_data_dir_without_the_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        train({**MNIST, "data_dir": str(empty), "hidden_size": 2})
    msg = _message(e)
    assert str(empty) in msg
    assert "rnnfast data mnist" in msg
    assert re.search(r"train-images-idx3-ubyte", msg)


@pytest.mark.parametrize("value", [True, "true"])
def test_a_choice_spelled_like_a_boolean_is_that_option(value):
    """`truncation=true` on the command line (or unquoted in TOML) is read as a boolean; for a
    choice of strings it means the option "true"."""
    from rnnfast.config import parse_assignments

    given = parse_assignments(["truncation=true"]) if value is True else {"truncation": value}
    assert given == {"truncation": value}
    assert resolve({**DEP, **given})["truncation"] == "true"
    with pytest.raises(ValueError, match=r"^cell: expected one of \['rnn', 'lstm', 'gru'\], "
                                         r"got True$"):  # fmt: skip
        resolve({**DEP, "cell": True})
