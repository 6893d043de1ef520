"""rnnfast.config beside the task settings (tests/test_training_config.py): the divergence
rule's key, integers bounded by what int64 holds, and long values shortened in messages."""

import math
import re

import pytest

from rnnfast.config import INT_MAX, resolve

DEP = {"task": "dependency"}


@pytest.mark.parametrize("value", [1, 1.0, 0.5, 0, -3, "10", True, math.inf, math.nan])
def test_diverge_above_is_a_number_above_one_or_none(value):
    expected = "diverge_above: expected a number > 1 (a multiple of the starting loss), or none"
    with pytest.raises(ValueError, match=f"^{re.escape(f'{expected}, got {value!r}')}$"):
        resolve({**DEP, "diverge_above": value})


def test_diverge_above_default_is_off_and_numbers_become_floats():
    assert resolve(DEP)["diverge_above"] is None
    assert resolve({**DEP, "diverge_above": None})["diverge_above"] is None
    assert resolve({**DEP, "diverge_above": 10})["diverge_above"] == 10.0
    assert isinstance(resolve({**DEP, "diverge_above": 10})["diverge_above"], float)
    assert resolve({**DEP, "diverge_above": 1.5})["diverge_above"] == 1.5


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("hidden_size", 2**63, "hidden_size: expected an integer >= 1 and <= 2**63 - 1"),
        ("seed", 10**30, "seed: expected an integer >= 0 and <= 2**63 - 1"),
        ("threads", 2**64, "threads: expected an integer >= 1 and <= 2**63 - 1 or none"),
        ("lags", [3, 2**63],
         "lags: expected a non-empty list of integers >= 1 and <= 2**63 - 1"),
        ("lr", 10**400, "lr: expected a finite number, got 1000"),  # past the largest float
        ("hidden_size", 0, "hidden_size: expected an integer >= 1, got 0"),  # no bound named
    ],
)  # fmt: skip
def test_integers_past_int64_are_refused_in_one_short_line(key, value, expected):
    with pytest.raises(ValueError) as err:
        resolve({**DEP, key: value})
    assert str(err.value).startswith(expected)
    assert len(str(err.value)) < 200


def test_the_largest_int64_is_accepted():
    assert resolve({**DEP, "seed": INT_MAX})["seed"] == INT_MAX


def test_a_long_value_is_shortened_in_the_message():
    with pytest.raises(ValueError) as err:
        resolve({**DEP, "hidden_size": "x" * 1000})
    message = str(err.value)
    assert message.startswith("hidden_size: expected an integer >= 1, got 'xxxx")
    assert message.endswith("... (1002 characters)") and len(message) < 200
