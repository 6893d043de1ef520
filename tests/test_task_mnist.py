"""Sequential MNIST: variants, column order, batching, the compiled input filler, validation."""

from pathlib import Path

import numpy as np
import pytest
from data_paths import data_dir, missing

from rnnfast.cpu._train import fill_batch
from rnnfast.seqdata import Form, Split, batch_order
from rnnfast.tasks import mnist
from rnnfast.tasks.mnist_data import load_mnist

MNIST_DIR = data_dir("mnist")


def synthetic(n_train=30, n_test=7, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }


@pytest.mark.parametrize("variant, T, I", [("rows", 28, 28), ("pixels", 784, 1)])
def test_prepare_unpermuted_variants(variant, T, I):
    data = synthetic()
    task = mnist.prepare(data, variant, train_size=20)
    assert (task.steps, task.input_size, task.classes, task.variant) == (T, I, 10, variant)
    assert task.train_images.shape == (20, 784) and task.train_images.dtype == np.uint8
    assert task.test_images.shape == (7, 784) and task.train_images.flags.c_contiguous
    np.testing.assert_array_equal(task.permutation, np.arange(784))
    assert task.permutation.dtype == np.int64
    # Column t*I + i is input i of step t: for rows, step t is image row t.
    for t in (0, 5, T - 1):
        np.testing.assert_array_equal(
            task.train_images[:, t * I : (t + 1) * I],
            data["train_images"][:20].reshape(20, 784)[:, t * I : (t + 1) * I],
        )
    np.testing.assert_array_equal(task.train_images[3, 28 * 2 : 28 * 3], data["train_images"][3, 2])
    assert task.train_labels.dtype == np.int64 and task.test_labels.dtype == np.int64
    np.testing.assert_array_equal(task.train_labels, data["train_labels"][:20])
    np.testing.assert_array_equal(task.test_labels, data["test_labels"])


def test_prepare_permuted_fixed_by_seed():
    data = synthetic()
    task = mnist.prepare(data, "permuted", train_size=30, permutation_seed=4)
    perm = task.permutation
    assert (task.steps, task.input_size) == (784, 1)
    assert perm.dtype == np.int64 and np.array_equal(np.sort(perm), np.arange(784))
    assert not np.array_equal(perm, np.arange(784))
    flat_train = data["train_images"].reshape(30, 784)
    flat_test = data["test_images"].reshape(7, 784)
    np.testing.assert_array_equal(task.train_images, flat_train[:, perm])
    np.testing.assert_array_equal(task.test_images, flat_test[:, perm])  # same order for test
    assert task.train_images.flags.c_contiguous and task.test_images.flags.c_contiguous
    again = mnist.prepare(data, "permuted", train_size=30, permutation_seed=4)
    np.testing.assert_array_equal(again.permutation, perm)
    other = mnist.prepare(data, "permuted", train_size=30, permutation_seed=5)
    assert not np.array_equal(other.permutation, perm)


def test_prepare_rejects_bad_arguments():
    data = synthetic()
    for size in (0, 31, 2.0):
        with pytest.raises(ValueError, match=r"^train_size: expected an int in \[1, 30\]"):
            mnist.prepare(data, "rows", train_size=size)
    with pytest.raises(ValueError, match="^variant"):
        mnist.prepare(data, "columns", train_size=10)
    with pytest.raises(ValueError, match="^permutation_seed"):
        mnist.prepare(data, "permuted", train_size=10, permutation_seed=-1)
    bad = {**data, "train_images": data["train_images"].astype(np.float32)}
    with pytest.raises(ValueError, match="^train_images"):
        mnist.prepare(bad, "rows", train_size=10)
    bad = {**data, "test_labels": np.full(7, 10, dtype=np.uint8)}
    with pytest.raises(ValueError, match="^test_labels"):
        mnist.prepare(bad, "rows", train_size=10)


def test_batch_order_one_epoch_fresh_permutation():
    rng = np.random.default_rng(0)
    order = batch_order(55_000, 100, rng)
    assert order.shape == (550, 100) and order.dtype == np.int64
    assert np.unique(order).size == 55_000  # every image exactly once
    odd = batch_order(1037, 100, rng)
    assert odd.shape == (10, 100)
    assert np.unique(odd).size == 1000 and odd.min() >= 0 and odd.max() < 1037
    np.testing.assert_array_equal(order, batch_order(55_000, 100, np.random.default_rng(0)))
    epoch2 = batch_order(55_000, 100, rng)
    assert not np.array_equal(order, epoch2)  # a fresh shuffle per call (epoch)
    with pytest.raises(ValueError, match="^batch_size"):
        batch_order(10, 11, rng)


def _expected_inputs(images, idx, T, I, dtype):
    """X (I, T*B): X[i, t*B + b] = images[idx[b], t*I + i] / 255."""
    x = mnist.to_float(images[idx], dtype).reshape(len(idx), T, I)  # (B, T, I)
    return np.ascontiguousarray(x.transpose(2, 1, 0)).reshape(I, T * len(idx))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T, I", [(28, 28), (784, 1)])
def test_training_batches_of_images_layout_and_dtype(dtype, T, I):
    """The training loop's batch filler on MNIST's form (uint8 set, scale 1/255):
    X[i, t*B + b] = images[idx[b], t*I + i] / 255 in X's dtype, labels per sequence."""
    images = synthetic(n_train=12)["train_images"].reshape(12, 784)
    labels = (np.arange(12, dtype=np.int32) * 7 % 10).reshape(-1, 1)
    idx = np.array([7, 0, 11, 7, 3], dtype=np.int64)
    B = idx.size
    form = Form(inputs="quantized", input_size=I, scale=1.0 / 255.0, targets="classes",
                outputs=10, per_step=False, mode="set", steps=T, batch=B)  # fmt: skip
    data = Split(images, labels, 12).data(form, dtype, idx.reshape(1, B))
    out = np.full(I * T * B, -1.0, dtype=dtype)
    y_class = np.full(B, -1, np.int64)
    fill_batch(form.vector(), np.zeros(1, dtype), data, 0, T, B, I, 10, out,
               np.zeros(0, np.int64), y_class, np.zeros(10, dtype))  # fmt: skip
    expected = _expected_inputs(images, idx, T, I, dtype)
    np.testing.assert_array_equal(out.reshape(I, T * B), expected)
    assert out.dtype == dtype
    np.testing.assert_array_equal(y_class, labels[idx, 0])
    # Spot checks of the formula itself, independent of the helper above.
    t, i, b = T - 1, I - 1, 2
    assert out[i * T * B + t * B + b] == pytest.approx(images[idx[b], t * I + i] / 255, rel=1e-6)
    assert out.max() <= 1 and out.min() >= 0


def test_to_float_float32_is_float32():
    img = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    f32 = mnist.to_float(img, np.float32)
    assert f32.dtype == np.float32 and f32[0, -1] == np.float32(1.0)
    np.testing.assert_allclose(mnist.to_float(img), img / 255, rtol=1e-15)


def test_validate():
    assert mnist.validate({"lr": 1}) == mnist.DEFAULTS
    out = mnist.validate({"variant": "permuted", "data_dir": Path("/x"), "permutation_seed": 3})
    assert (out["variant"], out["data_dir"], out["permutation_seed"]) == ("permuted", Path("/x"), 3)
    for params, key in [
        ({"variant": "row"}, "variant"),
        ({"train_size": 0}, "train_size"),
        ({"train_size": True}, "train_size"),
        ({"data_dir": 3}, "data_dir"),
        ({"permutation_seed": -1}, "permutation_seed"),
        ({"permutation_seed": 1.5}, "permutation_seed"),
    ]:
        with pytest.raises(ValueError, match=rf"^{key}: expected .* given"):
            mnist.validate(params)


@pytest.fixture(scope="module")
def real_data():
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST: {missing('mnist')}")
    return load_mnist(MNIST_DIR)


def test_prepare_real_mnist(real_data):
    task = mnist.prepare(real_data, "rows")
    assert task.train_images.shape == (55_000, 784) and task.test_images.shape == (10_000, 784)
    assert task.train_labels.shape == (55_000,) and task.test_labels.shape == (10_000,)
    assert (task.train_labels[0], task.test_labels[0]) == (5, 7)  # the well-known first labels
    assert set(np.unique(task.train_labels)) == set(range(10))
    out = mnist.to_float(task.train_images[:100], np.float32)
    assert 0 <= out.min() and out.max() == 1.0 and 0.1 < out.mean() < 0.15  # mean ink ~0.13
    pixels = mnist.prepare(real_data, "permuted", train_size=60_000)
    assert pixels.train_images.shape == (60_000, 784)
    np.testing.assert_array_equal(
        pixels.test_images[:, np.argsort(pixels.permutation)],
        real_data["test_images"].reshape(10_000, 784),
    )
