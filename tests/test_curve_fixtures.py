"""The built-in tasks' curves, final metrics and trained parameters are bit-identical to the
fixtures recorded before tasks became plug-ins (tests/curve_configs.py says how they were made).
"""

from pathlib import Path

import numpy as np
import pytest
from curve_configs import CONFIGS
from data_paths import data_dir, missing

import rnnfast

FIXTURES = Path(__file__).with_name("fixtures") / "curves.npz"


@pytest.fixture(scope="module")
def saved():
    with np.load(FIXTURES, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_curve_is_bit_identical(name, saved):
    cfg = CONFIGS[name]
    if cfg["task"] == "mnist":
        if not data_dir("mnist").is_dir():
            pytest.skip(f"MNIST: {missing('mnist')}")
        cfg = {**cfg, "data_dir": str(data_dir("mnist"))}  # where: not part of the results
    res = rnnfast.train(cfg)
    c = res.curves
    np.testing.assert_array_equal(c["step"].to_numpy(), saved[f"{name}|step"])
    np.testing.assert_array_equal(c["epoch"].to_numpy(), saved[f"{name}|epoch"])
    np.testing.assert_array_equal(c["metric"].astype(str).to_numpy(), saved[f"{name}|metric"])
    np.testing.assert_array_equal(c["value"].to_numpy(), saved[f"{name}|value"])
    keys = list(saved[f"{name}|final_keys"])
    assert {k: res.final[k] for k in keys} == dict(
        zip(keys, saved[f"{name}|final_values"].tolist(), strict=True)
    )
    prefix = f"{name}|param|"
    names = sorted(k[len(prefix) :] for k in saved if k.startswith(prefix))
    assert sorted(res.params) == names
    for k in names:
        np.testing.assert_array_equal(res.params[k], saved[prefix + k], err_msg=k)
