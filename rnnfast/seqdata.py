"""The one form of sequence data the training loops consume, whatever the task.

A task (rnnfast/tasks/) turns its config and data into a TaskData: a Form that says how to read
the arrays, a training Split per epoch and the splits to evaluate. The CPU and CUDA drivers
know nothing else about tasks.

Form (what the arrays mean):
- inputs: "dense" floats (I features a step), "quantized" uint8 features times `scale` (MNIST
  pixels), or token ids with a vocabulary of V fed "onehot" (I = V) or through a trainable
  "embed"ding table (V, E) (I = E; PyTorch's nn.Embedding layout, kept in the parameters as
  "embedding.weight");
- targets: "classes" (softmax cross-entropy, C classes), "reals" (linear outputs, mean squared
  error over the C outputs, as torch.nn.MSELoss) or "sigmoid" (one 0/1 target through a sigmoid
  with squared error / 2: iamtrask's addition network); one per sequence (per_step False, read
  at each sequence's last step, and for a bidirectional model at h_n) or one per step;
- mode: "set" (independent sequences of T steps, in batches of B, reshuffled each epoch by the
  seed when shuffle is set) or "stream" (B rows of one long sequence, cut into windows of T
  steps, the state carried between updates: truncated BPTT "tf", a loss at every step, or
  "true", each target backpropagates exactly T steps through T shifted copies of each row).

Split arrays (the loops' layout, row-major, one row a sequence or a stream row):
    x: set (N, T*I) float / uint8 or (N, T) int32 ids;  stream (B, cols*I) / (B, cols)
    y: classes (N, T or 1) / (B, cols) int32;  reals (N, (T or 1)*C) / (B, cols*C) float
    lengths: set mode, optional (N,): sequence n's valid steps, right-padded to T (PyTorch's
      packed semantics: a per-sequence target is read at step lengths[n] - 1, per-step targets
      at padded steps are ignored, means are over real steps only)

With lengths, each batch (a row of `order`) is sorted by descending length (stable, so equal
lengths keep the shuffled order): at step t the live columns are then the first k_t, and the
kernels run their products on those only.
"""

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnfast.codes import (
    HEAD_ALL,
    HEAD_LAST,
    IN_DENSE,
    IN_EMBED,
    IN_ONEHOT,
    IN_QUANTIZED,
    MODE_SET,
    MODE_STREAM_TF,
    MODE_STREAM_TRUE,
    TGT_CLASSES,
    TGT_REALS,
    TGT_SIGMOID,
)

INPUTS = {"dense": IN_DENSE, "quantized": IN_QUANTIZED, "onehot": IN_ONEHOT, "embed": IN_EMBED}
TARGETS = {"classes": TGT_CLASSES, "reals": TGT_REALS, "sigmoid": TGT_SIGMOID}

# The arrays of one split as the compiled loops take them (unused ones are 1x1 placeholders, so
# each dtype compiles one specialisation): dense, quantized, token ids, class targets, real
# targets, the batch order (U, B), the quantized inputs' scale and the sequences' lengths (N,)
# int64 (size 0: every sequence has T steps).
Data = namedtuple("Data", ["xd", "xq", "xt", "yc", "yr", "order", "scale", "lens"])


@dataclass(frozen=True)
class Form:
    inputs: str  # "dense" | "quantized" | "onehot" | "embed"
    input_size: int  # I fed to the first layer: features, V (onehot) or E (embed)
    targets: str  # "classes" | "reals" | "sigmoid"
    outputs: int  # C: classes, or real outputs per target
    per_step: bool
    mode: str  # "set" | "stream"
    steps: int  # T: the sequence length (set) or the window (stream)
    batch: int  # sequences per update (set) or stream rows
    truncation: str = "tf"  # stream: "tf" | "true"
    vocab: int = 0  # V for token inputs
    scale: float = 1.0  # quantized inputs: value = uint8 * scale
    reduction_sum: bool = False  # the loss summed over targets instead of their mean
    shuffle: bool = True  # set: batches drawn afresh each epoch (else in order)

    @property
    def batch_columns(self) -> int:
        """B of the kernels: stream rows times T copies in "true" truncation."""
        true = self.mode == "stream" and self.truncation == "true"
        return self.batch * (self.steps if true else 1)

    @property
    def head(self) -> int:
        true = self.mode == "stream" and self.truncation == "true"
        return HEAD_ALL if self.per_step and not true else HEAD_LAST

    @property
    def mode_code(self) -> int:
        if self.mode == "set":
            return MODE_SET
        return MODE_STREAM_TRUE if self.truncation == "true" else MODE_STREAM_TF

    @property
    def carry(self) -> bool:
        return self.mode == "stream"

    def vector(self, embedding_offset: int = -1) -> np.ndarray:
        """The int64 F_* vector of rnnfast.codes."""
        E = self.input_size if self.inputs == "embed" else 0
        return np.array([INPUTS[self.inputs], TARGETS[self.targets], self.head, self.mode_code,
                         self.reduction_sum, self.carry, self.vocab, E, embedding_offset],
                        np.int64)  # fmt: skip


@dataclass
class Split:
    """One split's arrays in the loops' layout (see the module docstring)."""

    x: np.ndarray
    y: np.ndarray
    count: int  # sequences (set) or stream columns
    lengths: np.ndarray | None = None  # set mode: (N,) valid steps, None: all T

    def batches(self, order: np.ndarray, count: int | None = None) -> np.ndarray:
        """order (U, B) with each row sorted by descending length (stable), as int64. The
        entries from flat index `count` on (eval_order's padding of a short last batch)
        become copies of their batch's shortest sequence: after the sort they stay at the
        end of the row, where the loops expect them, and the row stays in length order."""
        order = np.array(order, np.int64)  # a copy: the padding may be rewritten
        if self.lengths is None:
            return order
        if count is not None and count < order.size:
            flat = order.reshape(-1)
            first = count - count % order.shape[1]  # the short batch's first entry
            real = flat[first:count]
            flat[count:] = real[np.argmin(self.lengths[real])]
        rank = np.argsort(-self.lengths[order], axis=1, kind="stable")
        return np.ascontiguousarray(np.take_along_axis(order, rank, axis=1))

    def data(self, form: Form, dtype, order: np.ndarray | None = None,
             count: int | None = None) -> Data:  # fmt: skip
        """The compiled loops' Data tuple (dense inputs and real targets in dtype); count as
        batches's."""
        dt = np.dtype(dtype)
        none_f = np.zeros((1, 1), dt)
        none_i = np.zeros((1, 1), np.int32)
        x = self.x
        xd = np.ascontiguousarray(x, dt) if form.inputs == "dense" else none_f
        quantized = form.inputs == "quantized"
        xq = np.ascontiguousarray(x, np.uint8) if quantized else np.zeros((1, 1), np.uint8)
        xt = np.ascontiguousarray(x, np.int32) if form.inputs in ("onehot", "embed") else none_i
        classes = form.targets == "classes"
        yc = np.ascontiguousarray(self.y, np.int32) if classes else none_i
        yr = none_f if classes else np.ascontiguousarray(self.y, dt)
        order = np.zeros((1, 1), np.int64) if order is None else self.batches(order, count)
        lens = np.zeros(0, np.int64)
        if self.lengths is not None:
            lens = np.ascontiguousarray(self.lengths, np.int64)
        return Data(xd, xq, xt, yc, yr, order, float(form.scale), lens)


@dataclass
class Evaluation:
    """Metrics of the current parameters on a split: curve points named prefix + metric each
    epoch (every_epoch) or only final metrics at the end."""

    name: str  # "valid", "test": metrics are named name + "_" + metric
    split: Split
    metrics: tuple[str, ...]  # of "loss", "accuracy", "bpc" (bits per character)
    every_epoch: bool = True
    batch: int | None = None  # sequences per forward pass (set); None: the training batch


@dataclass
class TaskData:
    """What a task hands the training loop."""

    form: Form
    train: Callable[[int], Split]  # epoch (1-based) -> that epoch's training split
    updates_per_epoch: int
    epochs: int
    evaluations: list[Evaluation] = field(default_factory=list)
    train_metrics: tuple[str, ...] = ("loss",)  # "error": sum |target - output| per update
    init: Callable[[dict, Any], tuple[dict, list]] | None = None  # custom initial parameters
    head_bias: bool = True
    info: dict[str, Any] = field(default_factory=dict)  # recorded with the run
    artifacts: dict[str, Any] = field(default_factory=dict)  # kept with the model (vocabulary)


def batch_order(n: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's batches, (n // batch_size, batch_size) int64: a fresh permutation of
    range(n) from ``rng``, the last incomplete batch dropped (55000 / 100 = 550)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: expected an int >= 1, given {n!r}")
    if (isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer)
            or not 1 <= batch_size <= n):  # fmt: skip
        raise ValueError(f"batch_size: expected an int in [1, {n}], given {batch_size!r}")
    updates = n // batch_size
    order = rng.permutation(n).astype(np.int64)
    return np.ascontiguousarray(order[: updates * batch_size].reshape(updates, batch_size))


def eval_order(n: int, batch: int) -> np.ndarray:
    """(ceil(n / batch), batch) int64: 0..n-1 in order, a short last batch padded with its
    first sequence (those columns are computed and not counted)."""
    U = -(-n // batch)
    order = np.arange(U * batch, dtype=np.int64).reshape(U, batch)
    last = order[-1]
    last[last >= n] = last[0]
    return order


def stream_rows(seq: np.ndarray, rows: int) -> np.ndarray:
    """(rows, len // rows, ...) view of one long sequence: row r holds seq[r*n : (r+1)*n],
    the remainder dropped (R2RT's gen_batch)."""
    n = seq.shape[0] // rows
    return seq[: rows * n].reshape(rows, n, *seq.shape[1:])
