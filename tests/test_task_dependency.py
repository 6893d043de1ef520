"""The lag-dependency task: data generation, expected cross-entropies, batching, validation."""

import math

import numpy as np
import pytest

from rnnfast.tasks import dependency as dep

D = dep.DEFAULTS


def H2(p):
    return -sum(q * math.log(q) for q in (p, 1 - p) if q > 0)


def test_expected_cross_entropies_defaults():
    levels = dep.expected_cross_entropies(D["lags"], D["shifts"], D["base"])
    assert [name for name, _ in levels] == [
        "nothing learned",
        "lag 3 learned",
        "lags 3 and 8 learned",
    ]
    np.testing.assert_allclose(
        [v for _, v in levels], [0.6615632, 0.5191667, 0.4544544], rtol=0, atol=1e-6
    )


def test_expected_cross_entropies_by_hand_with_clipping():
    # base 0.9, shift +0.3 on lag 2: p = 0.9 or clip(1.2) = 1.
    levels = dep.expected_cross_entropies((2,), (0.3,), 0.9)
    assert levels[0] == ("nothing learned", pytest.approx(H2(0.95), abs=1e-12))
    assert levels[1] == ("lag 2 learned", pytest.approx(0.5 * H2(0.9), abs=1e-12))
    # Three lags: labels list them in order; each extra known bit cannot raise the entropy.
    levels = dep.expected_cross_entropies((1, 4, 6), (0.3, -0.2, 0.1), 0.4)
    assert [n for n, _ in levels][-1] == "lags 1, 4 and 6 learned"
    values = [v for _, v in levels]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    # Knowing every bit: the mean entropy of the clipped per-combination probabilities.
    combos = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    full = np.mean([H2(min(1, max(0, 0.4 + 0.3 * i - 0.2 * j + 0.1 * k))) for i, j, k in combos])
    assert values[-1] == pytest.approx(full, abs=1e-12)


def test_generate_matches_loop_port_of_r2rt_with_wraparound():
    lags, shifts, base = (3, 8), (0.5, -0.25), 0.5
    x, y = dep.generate(50, lags, shifts, base, np.random.default_rng(7))
    assert x.dtype == np.int8 and y.dtype == np.int8 and x.shape == y.shape == (50,)
    # Same draws, original loop with numpy negative indexing (X[i - 3] wraps for i < 3).
    rng = np.random.default_rng(7)
    X = rng.integers(0, 2, size=50, dtype=np.int8)
    U = rng.random(50)
    Y = []
    for i in range(50):
        threshold = 0.5
        if X[i - 3] == 1:
            threshold += 0.5
        if X[i - 8] == 1:
            threshold -= 0.25
        Y.append(0 if U[i] >= threshold else 1)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)


def test_generate_is_deterministic_and_seed_dependent():
    a = dep.generate(1000, (3, 8), (0.5, -0.25), 0.5, np.random.default_rng(1))
    b = dep.generate(1000, (3, 8), (0.5, -0.25), 0.5, np.random.default_rng(1))
    c = dep.generate(1000, (3, 8), (0.5, -0.25), 0.5, np.random.default_rng(2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_generated_statistics_match_the_analytic_levels():
    n = 400_000
    x, y = dep.generate(n, (3, 8), (0.5, -0.25), 0.5, np.random.default_rng(0))
    assert abs(x.mean() - 0.5) < 0.005
    x3, x8 = np.roll(x, 3), np.roll(x, 8)
    for a in (0, 1):
        for b in (0, 1):
            sel = (x3 == a) & (x8 == b)
            assert abs(y[sel].mean() - min(1, 0.5 + 0.5 * a - 0.25 * b)) < 0.01
    # The oracle predictor's empirical cross-entropy is the last analytic level.
    p = np.clip(0.5 + 0.5 * x3 - 0.25 * x8, 1e-12, 1 - 1e-12)
    ce = -np.mean(np.where(y == 1, np.log(p), np.log(1 - p)))
    assert ce == pytest.approx(dep.expected_cross_entropies((3, 8), (0.5, -0.25), 0.5)[-1][1],
                               abs=0.005)  # fmt: skip


def test_batchify_rows_of_consecutive_elements_drop_remainder():
    x = np.arange(23, dtype=np.int8)
    y = x[::-1].copy()
    xb, yb = dep.batchify(x, y, 4)
    assert xb.shape == yb.shape == (4, 5)
    for r in range(4):
        np.testing.assert_array_equal(xb[r], x[5 * r : 5 * r + 5])
        np.testing.assert_array_equal(yb[r], y[5 * r : 5 * r + 5])
    assert xb.flags.c_contiguous
    with pytest.raises(ValueError, match="batch_size"):
        dep.batchify(x, y, 24)
    with pytest.raises(ValueError, match="batch_size"):
        dep.batchify(x, y, 0)
    with pytest.raises(ValueError, match="shapes"):
        dep.batchify(x, y[:5], 2)


def test_validate_fills_defaults_and_normalises():
    out = dep.validate({"lags": [2, 5], "shifts": [1, 0], "batch_size": 9})
    assert out == {"sequence_length": 1_000_000, "lags": (2, 5), "shifts": (1.0, 0.0),
                   "base": 0.5}  # fmt: skip
    assert dep.validate({}) == D


@pytest.mark.parametrize(
    "params, key",
    [
        ({"sequence_length": 1}, "sequence_length"),
        ({"sequence_length": 10.0}, "sequence_length"),
        ({"lags": (3, 3), "shifts": (0.1, 0.1)}, "lags"),
        ({"lags": (0,), "shifts": (0.1,)}, "lags"),
        ({"lags": (), "shifts": ()}, "lags"),
        ({"lags": 3, "shifts": (0.1,)}, "lags"),
        ({"lags": (True,), "shifts": (0.1,)}, "lags"),
        ({"sequence_length": 8, "lags": (3, 8)}, "lags"),
        ({"shifts": (0.5,)}, "shifts"),
        ({"shifts": (0.5, float("nan"))}, "shifts"),
        ({"base": 1.5}, "base"),
        ({"base": "0.5"}, "base"),
    ],
)
def test_validate_rejects(params, key):
    with pytest.raises(ValueError, match=rf"^{key}: expected .* given"):
        dep.validate(params)
    if key in ("lags", "shifts", "base") and "sequence_length" not in params:
        full = {**D, **params}
        with pytest.raises(ValueError, match=key):
            dep.generate(100, full["lags"], full["shifts"], full["base"],
                         np.random.default_rng(0))  # fmt: skip
