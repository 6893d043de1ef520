"""Sequential MNIST: an image fed to the network as a sequence, classified from the last state.

Variants (the image flattened row-major to 784 pixels p_0 ... p_783):

    rows      T = 28,  I = 28   step t sees pixels p_{28t} ... p_{28t+27} (one image row)
    pixels    T = 784, I = 1    step t sees p_t
    permuted  T = 784, I = 1    step t sees p_{perm[t]}, perm a fixed permutation from a seed

``prepare`` stores the images with their columns already in the order the network sees them
(column t*I + i is input i of step t), so batching is a gather of rows. Training uses the first
``train_size`` training images (55,000 as in the tutorial), the test accuracy all 10,000 test
images. For the training loop the images are a set of uint8 sequences with scale 1/255
(rnnfast.seqdata), batches drawn from numpy.random.default_rng([seed, 2, epoch]).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnfast.seqdata import Evaluation, Form, Split, TaskData
from rnnfast.tasks import Task

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
class MnistData:
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
) -> MnistData:
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
    return MnistData(
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


# ---------------------------------------------------------------------------- the task


class MnistTask(Task):
    name = "mnist"
    description = "sequential MNIST: an image as a sequence of rows or pixels, classified"
    keys = {
        "variant": ("choice", VARIANTS),
        "train_size": ("int", 1),
        "data_dir": ("str_or_none", None),
        "permutation_seed": ("int", 0),
        "eval_batch": ("int", 1),
    }
    defaults = {
        "cell": "lstm",
        "nonlinearity": "tanh",
        "hidden_size": 100,
        "num_layers": 1,
        "bidirectional": False,
        "bias": True,
        "batch_size": 100,
        "optimizer": "adam",
        "lr": 1e-4,
        "clip": 0.0,
        "epochs": 10,
        "variant": "rows",
        "train_size": 55_000,
        "data_dir": None,
        "permutation_seed": 0,
        "eval_batch": 1000,
    }
    metrics = ("loss", "test_accuracy", "updates")
    metric_labels = {"loss": "cross-entropy (nats)", "test_accuracy": "test accuracy"}
    location_keys = ("data_dir",)  # where the data lives is not part of a run's identity

    def prepare(self, cfg: dict[str, Any], data: Any = None) -> TaskData:
        from rnnfast.tasks.mnist_data import load_mnist  # noqa: PLC0415

        if data is not None:
            raise ValueError("data: the mnist task reads MNIST itself (data_dir); got data=...")
        m = prepare(load_mnist(cfg["data_dir"]), cfg["variant"], train_size=cfg["train_size"],
                    permutation_seed=cfg["permutation_seed"])  # fmt: skip
        n = len(m.train_labels)
        if cfg["batch_size"] > n:
            raise ValueError(
                f"batch_size: expected at most train_size={n}, got {cfg['batch_size']}"
            )
        form = Form(inputs="quantized", input_size=m.input_size, scale=1.0 / 255.0,
                    targets="classes", outputs=CLASSES, per_step=False, mode="set",
                    steps=m.steps, batch=cfg["batch_size"])  # fmt: skip
        train = Split(m.train_images, m.train_labels.astype(np.int32).reshape(-1, 1), n)
        test = Split(m.test_images, m.test_labels.astype(np.int32).reshape(-1, 1),
                     len(m.test_labels))  # fmt: skip
        batch = min(cfg["eval_batch"], len(m.test_labels))
        evals = [Evaluation("test", test, ("accuracy",), every_epoch=True, batch=batch)]
        return TaskData(form, lambda epoch: train, n // cfg["batch_size"], cfg["epochs"], evals)
