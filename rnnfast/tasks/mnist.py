"""Sequential MNIST: an image fed to the network as a sequence, classified from the last state.

Variants (the image flattened row-major to 784 pixels p_0 ... p_783):

    rows      T = 28,  I = 28   step t sees pixels p_{28t} ... p_{28t+27} (one image row)
    pixels    T = 784, I = 1    step t sees p_t
    permuted  T = 784, I = 1    step t sees p_{perm[t]}, perm a fixed permutation from a seed

``prepare`` stores the images with their columns already in the order the network sees them
(column t*I + i is input i of step t), so batching is a gather of rows. Training uses the first
``train_size`` training images (55,000 as in the tutorial), the test accuracy all 10,000 test
images. ``fill_inputs`` writes a batch into the kernels' feature-major input layout
X (I, T*B), X[i, t*B + b] = image[idx[b], t*I + i] / 255, from compiled code.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

VARIANTS = ("rows", "pixels", "permuted")
PIXELS = 784  # 28 x 28
CLASSES = 10
DEFAULTS: dict[str, Any] = {
    "variant": "rows",
    "train_size": 55_000,
    "data_dir": None,
    "permutation_seed": 0,
}


@dataclass
class MnistTask:
    train_images: np.ndarray  # (N, 784) uint8, C-contiguous, columns in the order seen
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray  # (N_test, 784) uint8, same column order
    test_labels: np.ndarray  # (N_test,) int64
    steps: int  # T: 28 or 784
    input_size: int  # I: 28 or 1
    classes: int  # 10
    permutation: np.ndarray  # (784,) int64: column j holds pixel permutation[j]
    variant: str


def shape_of(variant: str) -> tuple[int, int]:
    """(T, I) of a variant."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, given {variant!r}")
    return (28, 28) if variant == "rows" else (PIXELS, 1)


def permutation(variant: str, permutation_seed: int = 0) -> np.ndarray:
    """(784,) int64: identity for rows and pixels, a fixed permutation of the pixels drawn from
    np.random.default_rng(permutation_seed) for permuted."""
    shape_of(variant)
    if variant != "permuted":
        return np.arange(PIXELS, dtype=np.int64)
    return np.random.default_rng(permutation_seed).permutation(PIXELS).astype(np.int64)


def _flat(images: np.ndarray, key: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < 2 or images[0].size != PIXELS:
        raise ValueError(
            f"{key}: expected uint8 (N, 28, 28) or (N, 784), given {images.dtype} {images.shape}"
        )
    return images.reshape(images.shape[0], PIXELS)


def _labels(labels: np.ndarray, n: int, key: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or (n and not 0 <= labels.min() <= labels.max() < CLASSES):
        raise ValueError(f"{key}: expected ({n},) values in [0, {CLASSES - 1}], given "
                         f"{labels.dtype} {labels.shape}")  # fmt: skip
    return labels.astype(np.int64)


def prepare(
    data: dict,
    variant: str = "rows",
    train_size: int = 55_000,
    permutation_seed: int = 0,
) -> MnistTask:
    """The task from ``load_mnist``'s dict: the first ``train_size`` training images, all test
    images, columns reordered for ``variant``. Raises ValueError on a bad variant/train_size."""
    T, I = shape_of(variant)
    train = _flat(data["train_images"], "train_images")
    test = _flat(data["test_images"], "test_images")
    available = train.shape[0]
    if not _is_int(train_size) or not 1 <= train_size <= available:
        raise ValueError(
            f"train_size: expected an int in [1, {available}] (the training images available), "
            f"given {train_size!r}"
        )
    if not _is_int(permutation_seed) or permutation_seed < 0:
        raise ValueError(f"permutation_seed: expected an int >= 0, given {permutation_seed!r}")
    perm = permutation(variant, permutation_seed)
    train_labels = _labels(data["train_labels"], available, "train_labels")[:train_size]
    test_labels = _labels(data["test_labels"], test.shape[0], "test_labels")
    train = train[:train_size]
    if variant == "permuted":
        train, test = train[:, perm], test[:, perm]
    return MnistTask(
        train_images=np.ascontiguousarray(train),
        train_labels=np.ascontiguousarray(train_labels),
        test_images=np.ascontiguousarray(test),
        test_labels=np.ascontiguousarray(test_labels),
        steps=T,
        input_size=I,
        classes=CLASSES,
        permutation=perm,
        variant=variant,
    )


def batch_order(n_train: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's batches, (n_train // batch_size, batch_size) int64: a fresh permutation of
    range(n_train) from ``rng``, the last incomplete batch dropped (55000 / 100 = 550)."""
    if not _is_int(n_train) or n_train < 1:
        raise ValueError(f"n_train: expected an int >= 1, given {n_train!r}")
    if not _is_int(batch_size) or not 1 <= batch_size <= n_train:
        raise ValueError(f"batch_size: expected an int in [1, n_train = {n_train}], "
                         f"given {batch_size!r}")  # fmt: skip
    updates = n_train // batch_size
    order = rng.permutation(n_train).astype(np.int64)
    return np.ascontiguousarray(order[: updates * batch_size].reshape(updates, batch_size))


@njit(cache=True)
def fill_inputs(images, idx, T, I, out):
    """out[i*(T*B) + t*B + b] = images[idx[b], t*I + i] / 255 in out's dtype.

    images,  # (N, T*I) uint8, C-contiguous
    idx,     # (B,) integer rows of images
    out,     # (I, T*B) or (I*T*B,) float32/float64, C-contiguous; overwritten
    Scaling multiplies by 1/255 rounded to out's dtype, so float32 stays float32 (to_float
    gives the same values for whole arrays).
    """
    B = idx.shape[0]
    flat = out.reshape(out.size)  # a view: out is C-contiguous
    scale = out.dtype.type(1.0 / 255.0)
    for b in range(B):
        row = images[idx[b]]
        for t in range(T):
            for i in range(I):
                flat[i * (T * B) + t * B + b] = row[t * I + i] * scale
    return out


def to_float(images: np.ndarray, dtype=np.float64) -> np.ndarray:
    """images / 255 in ``dtype``, bit-identical to what fill_inputs writes."""
    dtype = np.dtype(dtype)
    return images.astype(dtype) * dtype.type(1.0 / 255.0)


# ---------------------------------------------------------------------------- validation


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def validate(params: dict) -> dict:
    """Check the task's own keys present in ``params`` (other keys are ignored) and return the
    task keys with missing ones filled from DEFAULTS. train_size is checked against the data
    available in ``prepare``. Raises ValueError naming the key, expected vs given."""
    out = {**DEFAULTS, **{k: params[k] for k in DEFAULTS if k in params}}
    if out["variant"] not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, given {out['variant']!r}")
    if not _is_int(out["train_size"]) or out["train_size"] < 1:
        raise ValueError(f"train_size: expected an int >= 1, given {out['train_size']!r}")
    d = out["data_dir"]
    if d is not None and not isinstance(d, str | os.PathLike):
        raise ValueError(f"data_dir: expected a str, a path or None, given {d!r}")
    if not _is_int(out["permutation_seed"]) or out["permutation_seed"] < 0:
        raise ValueError(
            f"permutation_seed: expected an int >= 0, given {out['permutation_seed']!r}"
        )
    return {
        "variant": out["variant"],
        "train_size": int(out["train_size"]),
        "data_dir": d,
        "permutation_seed": int(out["permutation_seed"]),
    }
