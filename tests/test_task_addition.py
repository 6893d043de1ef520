"""Binary addition (iamtrask 2015): initialisation, sampling, bits, the golden reference loop."""

import numpy as np
import pytest

from rnnfast.tasks import addition as add


@pytest.fixture(scope="module")
def run0():
    return add.reference_train(seed=0)


def _global_state():
    return np.random.get_state()[1].copy()


def test_init_is_the_posts_legacy_stream_without_touching_global_rng():
    before = _global_state()
    rs, w_in, w_out, w_hh = add.iamtrask_init(0)
    np.testing.assert_array_equal(_global_state(), before)
    assert (w_in.shape, w_out.shape, w_hh.shape) == ((2, 16), (16, 1), (16, 16))
    legacy = np.random.RandomState(0)  # == np.random.seed(0); np.random.random(...)
    np.testing.assert_array_equal(w_in, 2 * legacy.random_sample((2, 16)) - 1)
    np.testing.assert_array_equal(w_out, 2 * legacy.random_sample((16, 1)) - 1)
    np.testing.assert_array_equal(w_hh, 2 * legacy.random_sample((16, 16)) - 1)
    assert rs.randint(128) == legacy.randint(128)  # rs continues the same stream
    assert w_in[0, 0] == pytest.approx(2 * 0.5488135039273248 - 1)  # first draw of seed 0


@pytest.mark.parametrize("largest", [1, 3, 128, 2**32 + 1, 2**61])
def test_sample_pairs_is_the_sequential_scalar_stream(largest):
    before = _global_state()
    rs_used = np.random.RandomState(3)
    a, b = add.sample_pairs(rs_used, 500, largest)
    np.testing.assert_array_equal(_global_state(), before)
    assert a.dtype == b.dtype == np.int64 and a.shape == b.shape == (500,)
    rs = np.random.RandomState(3)
    for j in range(500):  # the post: a = randint(largest), then b = randint(largest)
        assert (a[j], b[j]) == (rs.randint(largest), rs.randint(largest))
    assert 0 <= min(a.min(), b.min()) and max(a.max(), b.max()) < largest
    # ... and leaves the generator where the loop left it.
    np.testing.assert_array_equal(rs_used.randint(largest, size=5), rs.randint(largest, size=5))


def test_to_bits_least_significant_first_and_back():
    bits = add.to_bits(np.array([6, 129, 0]), 8)
    assert bits.dtype == np.float64 and bits.shape == (3, 8)
    np.testing.assert_array_equal(bits[0], [0, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(bits[1], [1, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(bits[2], np.zeros(8))
    values = np.random.default_rng(0).integers(0, 2**40, size=50)
    np.testing.assert_array_equal(add.from_bits(add.to_bits(values, 41)), values)


def test_example_step_updates_are_minus_the_gradient():
    rng = np.random.default_rng(0)
    H = 5
    w = {"w_in": rng.normal(size=(2, H)), "w_hh": rng.normal(size=(H, H)),
         "w_out": rng.normal(size=(H, 1))}  # fmt: skip
    A, B = add.to_bits([45], 8)[0], add.to_bits([77], 8)[0]
    C = add.to_bits([45 + 77], 8)[0]

    def outputs(ws):
        h = np.zeros(H)
        out = []
        for t in range(8):
            h = 1 / (1 + np.exp(-(np.array([A[t], B[t]]) @ ws["w_in"] + h @ ws["w_hh"])))
            out.append(1 / (1 + np.exp(-(h @ ws["w_out"])[0])))
        return np.array(out)

    def loss(ws):
        return 0.5 * np.sum((C - outputs(ws)) ** 2)

    error, pred, u_in, u_hh, u_out = add.example_step(w["w_in"], w["w_hh"], w["w_out"], A, B, C)
    o = outputs(w)
    assert error == pytest.approx(np.sum(np.abs(C - o)), rel=1e-12)
    np.testing.assert_array_equal(pred, np.round(o).astype(np.int64))
    eps = 1e-6
    for name, u in (("w_in", u_in), ("w_hh", u_hh), ("w_out", u_out)):
        num = np.zeros_like(u)
        for k in np.ndindex(u.shape):
            wp = {n: v.copy() for n, v in w.items()}
            wm = {n: v.copy() for n, v in w.items()}
            wp[name][k] += eps
            wm[name][k] -= eps
            num[k] = (loss(wp) - loss(wm)) / (2 * eps)
        np.testing.assert_allclose(u, -num, rtol=1e-6, atol=1e-9, err_msg=name)


def test_reference_train_reproduces_published_errors(run0):
    errors = run0["errors"]
    assert errors.shape == (10_000,) and errors.dtype == np.float64
    np.testing.assert_allclose(errors[:: add.PUBLISHED_EVERY], add.PUBLISHED_ERRORS,
                               rtol=0, atol=1e-6)  # fmt: skip
    w = run0["weights"]
    assert (w["w_in"].shape, w["w_hh"].shape, w["w_out"].shape) == ((2, 16), (16, 16), (16, 1))


def test_reference_train_printed_examples_exact_from_6000(run0):
    a, b, preds = run0["a"], run0["b"], run0["predictions"]
    assert preds.shape == (10_000, 8)
    printed = range(0, 10_000, 1000)
    got = add.from_bits(preds[list(printed)])
    exact = {j: got[k] == a[j] + b[j] for k, j in enumerate(printed)}
    assert all(exact[j] for j in printed if j >= 6000)
    assert not all(exact[j] for j in printed if j < 6000)  # early on it is still wrong
    assert (a[6000], b[6000], got[6]) == (81, 0, 81)  # the post's "81 + 0 = 81"


def test_reference_train_is_deterministic_and_seed_dependent():
    r1 = add.reference_train(seed=5, updates=50)
    r2 = add.reference_train(seed=5, updates=50)
    r3 = add.reference_train(seed=6, updates=50)
    np.testing.assert_array_equal(r1["errors"], r2["errors"])
    assert not np.array_equal(r1["errors"], r3["errors"])
    np.testing.assert_array_equal(r1["weights"]["w_hh"], r2["weights"]["w_hh"])


def test_validate():
    assert add.validate({"lr": 0.1}) == add.DEFAULTS
    assert add.validate({"bits": 4, "largest": 8, "init": "default"})["largest"] == 8
    for params, key in [
        ({"bits": 0}, "bits"),
        ({"bits": 63}, "bits"),
        ({"bits": 8.0}, "bits"),
        ({"largest": 129}, "largest"),
        ({"largest": 0}, "largest"),
        ({"bits": 4, "largest": 9}, "largest"),
        ({"init": "torch"}, "init"),
        ({"updates": 0}, "updates"),
    ]:
        with pytest.raises(ValueError, match=rf"^{key}: expected .* given"):
            add.validate(params)
