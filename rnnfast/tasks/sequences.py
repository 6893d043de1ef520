"""A set of sequences from files or arrays: classification or regression, per sequence or per
step, your data.

Data: `data = PATH` (a validation split of valid_fraction drawn from it by the seed), or
`train` / `valid` / `test` paths; or, from Python, rnnfast.train(config, data=(x, y)) /
(x, y, lengths) / {"train": (x, y), "valid": ..., "test": ...}. Files:
- `.npz` with arrays `x`, `y` and optionally `lengths` (read with allow_pickle=False);
- the UEA/UCR archive's `.ts` text format (rnnfast.tasks.uea_ts).

Arrays: x (N, T, I) floats (or (N, T): one feature; uint8 stays uint8 in memory), or (N, T)
integer token ids (vocabulary max id + 1, fed one-hot or through an `embedding` of that size);
y (N,) or (N, T), or with a trailing output dimension for regression. Integer y are classes
(softmax cross-entropy, C = max label + 1), float y reals (mean squared error); the `targets`
key overrides. y (N, T) is one target per step; `per_step` overrides where the shape is
ambiguous.

Sequences of unequal lengths: lengths (N,) integers in [1, T] (the `.npz` array `lengths`, the
third item of a data tuple, or a `.ts` file's own case lengths, its cases right-padded with
zeros to its longest) mark x (and per-step y) as right-padded. Splits with fewer steps than the
longest split (a test file of longer cases) are padded with zeros to its T, their own steps
becoming their lengths. Each split goes on as Split(x, y, N, lengths) and the loops give it
PyTorch's packed semantics: a per-sequence target is read at each sequence's own last valid
step (for a bidirectional model at its h_n, the reverse direction starting there), per-step
targets at padded steps are ignored, means are over real steps only. Values at padded steps
never matter but are checked as any others (finite numbers, valid labels). A split whose
sequences all have the full T gets lengths None: equal-length data runs exactly as without
lengths. The validation split drawn from `data` keeps each sequence's length. A run's identity
hashes the data files' bytes, which hold the lengths (.npz array, .ts cases).

Metrics: valid_loss (and valid_accuracy for classes) every epoch, test_loss / test_accuracy
at the end.
"""

from pathlib import Path
from typing import Any

import numpy as np

from rnnfast.seqdata import Evaluation, Form, Split, TaskData
from rnnfast.tasks import Task

SPLITS = ("train", "valid", "test")


class SequencesTask(Task):
    name = "sequences"
    description = "your sequences: classification or regression from .npz, .ts or arrays"
    keys = {
        "data": ("str_or_none", None),
        "train": ("str_or_none", None),
        "valid": ("str_or_none", None),
        "test": ("str_or_none", None),
        "valid_fraction": ("unit_float", None),
        "targets": ("choice", ("auto", "classes", "reals")),
        "per_step": ("bool_or_none", None),
        "embedding": ("int", 0),
    }
    defaults = {
        "cell": "lstm",
        "hidden_size": 64,
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 1e-3,
        "epochs": 10,
        "data": None,
        "train": None,
        "valid": None,
        "test": None,
        "valid_fraction": 0.1,
        "targets": "auto",
        "per_step": None,
        "embedding": 0,
    }
    metrics = ("loss", "valid_loss", "valid_accuracy", "test_loss", "test_accuracy", "updates")
    metric_labels = {
        "valid_loss": "validation loss",
        "valid_accuracy": "validation accuracy",
        "test_accuracy": "test accuracy",
    }
    location_keys = ("data", "train", "valid", "test")

    def check(self, c: dict[str, Any]) -> None:
        if c["data"] is not None and c["train"] is not None:
            raise ValueError("data: give data (split by valid_fraction) or train, not both")
        if c["data"] is not None and c["valid"] is not None:
            raise ValueError(
                "valid: with data = PATH the validation split comes from valid_fraction; "
                "name the training file train = PATH instead"
            )

    def data_files(self, cfg: dict[str, Any]) -> list[str]:
        return [cfg[k] for k in ("data", *SPLITS) if cfg[k] is not None]

    def prepare(self, cfg: dict[str, Any], data: Any = None) -> TaskData:
        raw = _gather(cfg, data)
        # errors name the key the user gave: `data` (one set, split here) or the split's
        label = "data" if cfg["data"] is not None or not isinstance(data, dict | None) else ""
        arrays = {k: _check_arrays(label or k, *v) for k, v in raw.items()}  # (x, y, lengths)
        if "valid" not in arrays and cfg["valid_fraction"] > 0 and len(arrays["train"][0]) > 1:
            rng = np.random.default_rng([cfg["seed"], 3])
            arrays["train"], arrays["valid"] = _split_off(arrays["train"],
                                                          cfg["valid_fraction"], rng)  # fmt: skip
        form, splits = _form(cfg, arrays)
        n = splits["train"].count
        if cfg["batch_size"] > n:
            raise ValueError(f"batch_size: expected at most the {n} training sequences, "
                             f"got {cfg['batch_size']}")  # fmt: skip
        classes = form.targets == "classes"
        metrics = ("loss", "accuracy") if classes else ("loss",)
        evals = [Evaluation(k, splits[k], metrics, every_epoch=k == "valid")
                 for k in ("valid", "test") if k in splits]  # fmt: skip
        info = {f"{k}_sequences": s.count for k, s in splits.items()}
        train = splits["train"]
        return TaskData(form, lambda epoch: train, n // form.batch, cfg["epochs"], evals,
                        info=info)  # fmt: skip


# ---------------------------------------------------------------------------- reading


def _gather(cfg: dict[str, Any], data: Any) -> dict[str, tuple]:
    """{split: (x, y, lengths or None)} from the config's files or the data argument."""
    files = {k: (k, cfg[k]) for k in SPLITS if cfg[k] is not None}
    if cfg["data"] is not None:
        files["train"] = ("data", cfg["data"])
    if data is not None:
        if files:
            raise ValueError("data: given both as files in the config and as an argument; "
                             "give one")  # fmt: skip
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(SPLITS))
            if unknown:
                raise ValueError(f"data: unknown split {unknown[0]!r}; expected keys {SPLITS}")
            if "train" not in data:
                raise ValueError("data: expected a 'train' entry")
            return {k: _tuple(k, v) for k, v in data.items()}
        return {"train": _tuple("data", data)}
    if not files:
        raise ValueError("data: the sequences task needs data = PATH, train = PATH (.npz or "
                         ".ts), or arrays: rnnfast.train(config, data=(x, y))")  # fmt: skip
    if "train" not in files:
        raise ValueError("train: missing; valid and test need a training file too")
    return {k: read_file(key, p) for k, (key, p) in files.items()}


def _tuple(key: str, value: Any) -> tuple:
    if isinstance(value, tuple | list) and len(value) in (2, 3):
        x, y, *rest = value
        return x, y, rest[0] if rest else None
    raise ValueError(f"{key}: expected (x, y) or (x, y, lengths), got {type(value).__name__}")


def read_file(key: str, path: str) -> tuple:
    """(x, y, lengths or None) from an .npz or a .ts file; ValueError (one line) otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{key}: {path}: no such file" if not p.exists()
                         else f"{key}: {path}: not a file")  # fmt: skip
    suffix = p.suffix.lower()
    if suffix == ".ts":
        from rnnfast.tasks.uea_ts import read_ts  # noqa: PLC0415

        try:
            ts = read_ts(p)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
        return ts.padded(), ts.labels, ts.lengths
    if suffix != ".npz":
        raise ValueError(f"{key}: {path}: expected a .npz or .ts file")
    try:
        with np.load(p, allow_pickle=False) as f:
            names = set(f.files)
            missing = [k for k in ("x", "y") if k not in names]
            if missing:
                raise ValueError(f"{key}: {path}: missing array {missing[0]!r} (has "
                                 f"{sorted(names)})")  # fmt: skip
            x, y = f["x"], f["y"]
            lengths = f["lengths"] if "lengths" in names else None
    except ValueError as e:
        if str(e).startswith(f"{key}: "):
            raise
        raise ValueError(f"{key}: {path}: cannot read as .npz ({e})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{key}: {path}: cannot read as .npz ({e})") from None
    return x, y, lengths


# ---------------------------------------------------------------------------- checking


def _check_arrays(key: str, x: Any, y: Any, lengths: Any) -> tuple:
    """(x, y, lengths as int64, or None when every sequence has the full T)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype == object or y.dtype == object:
        raise ValueError(f"{key}: x and y must be numeric arrays, not objects")
    if x.ndim not in (2, 3) or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{key}: x: expected (N, T, I) or (N, T) with N, T >= 1, got shape "
                         f"{x.shape}")  # fmt: skip
    N, T = x.shape[:2]
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{key}: x: expected numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{key}: x: NaN or inf at index {tuple(int(i) for i in bad)}")
    if y.ndim < 1 or y.shape[0] != N:
        raise ValueError(f"{key}: y: expected a first dimension of N={N} (as x {x.shape}), "
                         f"got shape {y.shape}")  # fmt: skip
    if y.ndim > 3:
        raise ValueError(f"{key}: y: expected (N,), (N, T) or (N, T, C), got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"{key}: y: expected numbers, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        bad = np.argwhere(~np.isfinite(y))[0]
        raise ValueError(f"{key}: y: NaN or inf at index {tuple(int(i) for i in bad)}")
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"{key}: lengths: expected ({N},) integers, got {lengths.dtype} "
                             f"{lengths.shape}")  # fmt: skip
        if lengths.min() < 1 or lengths.max() > T:
            bad = int(np.argmax((lengths < 1) | (lengths > T)))
            raise ValueError(f"{key}: lengths: expected values in [1, T={T}], got "
                             f"{int(lengths[bad])} at index {bad}")  # fmt: skip
        lengths = np.ascontiguousarray(lengths, np.int64) if (lengths != T).any() else None
    return x, y, lengths


def _split_off(arrays: tuple, fraction: float, rng: np.random.Generator) -> tuple:
    """(train, valid): round(N * fraction) sequences (at least 1, at most N - 1) drawn by rng
    for validation, both in their original order, each with its own length."""
    x, y, lengths = arrays
    N = x.shape[0]
    n_valid = min(N - 1, max(1, round(N * fraction)))
    perm = rng.permutation(N)
    tr, va = np.sort(perm[n_valid:]), np.sort(perm[:n_valid])
    return tuple((x[i], y[i], _own_lengths(lengths, i, x.shape[1])) for i in (tr, va))


def _own_lengths(lengths: np.ndarray | None, rows: np.ndarray, T: int) -> np.ndarray | None:
    """lengths of the selected rows; None where those all have the full T."""
    if lengths is None:
        return None
    sub = lengths[rows]
    return sub if (sub != T).any() else None


def _form(cfg: dict[str, Any], arrays: dict[str, tuple]) -> tuple[Form, dict[str, Split]]:
    """The Form all splits share and each split in the loops' layout. Splits of fewer steps
    than the longest are right-padded to its T (with lengths)."""
    x0, y0, _ = arrays["train"]
    T = max(x.shape[1] for x, _, _ in arrays.values())
    for k, (x, _, _) in arrays.items():
        if x.shape[2:] != x0.shape[2:] or x.ndim != x0.ndim or x.dtype.kind != x0.dtype.kind:
            raise ValueError(f"{k}: x: expected the training data's step shape {x0.shape[2:]} "
                             f"and kind of dtype, got {x.dtype} {x.shape}")  # fmt: skip
    tokens = x0.ndim == 2 and np.issubdtype(x0.dtype, np.integer) and x0.dtype != np.uint8
    tokens = tokens or (x0.ndim == 2 and x0.dtype == np.uint8 and cfg["embedding"] > 0)
    if cfg["embedding"] and not tokens:
        raise ValueError(f"embedding: needs token ids, x (N, T) integers; got x {x0.dtype} "
                         f"{x0.shape}")  # fmt: skip
    if tokens:
        lo = min(int(x.min()) for x, _, _ in arrays.values())
        if lo < 0:
            raise ValueError(f"x: token ids must be >= 0, got {lo}")
        V = max(int(x.max()) for x, _, _ in arrays.values()) + 1
        inputs, I = ("embed", cfg["embedding"]) if cfg["embedding"] else ("onehot", V)
    else:
        V = 0
        I = 1 if x0.ndim == 2 else x0.shape[2]
        inputs = "quantized" if x0.dtype == np.uint8 else "dense"
    kind = cfg["targets"]
    if kind == "auto":
        int_y = np.issubdtype(y0.dtype, np.integer) or y0.dtype == bool
        kind = "classes" if int_y else "reals"
    per_step = _per_step(cfg["per_step"], kind, y0, x0.shape[1])
    for k, (x, y, _) in arrays.items():
        want = (x.shape[1], *y0.shape[2:]) if per_step else y0.shape[1:]
        if y.shape[1:] != want:
            raise ValueError(f"{k}: y: expected the training data's target shape {want}, got "
                             f"{y.shape[1:]}")  # fmt: skip
    if kind == "classes":
        for k, (_, y, _) in arrays.items():
            if y.ndim != (2 if per_step else 1):
                raise ValueError(f"{k}: y: class labels are (N,) or (N, T) integers, got "
                                 f"shape {y.shape}")  # fmt: skip
            if not np.array_equal(y, np.round(y)) or y.min() < 0:
                raise ValueError(f"{k}: y: class labels must be integers >= 0, got values "
                                 f"from {y.min()} to {y.max()}")  # fmt: skip
        C = max(int(y.max()) for _, y, _ in arrays.values()) + 1
        C = max(C, 2)
    else:
        C = 1 if y0.ndim == (2 if per_step else 1) else y0.shape[-1]
    form = Form(inputs=inputs, input_size=I, vocab=V, targets=kind, outputs=C,
                per_step=per_step, mode="set", steps=T, batch=cfg["batch_size"])  # fmt: skip
    splits = {}
    for k, split in arrays.items():
        x, y, lengths = _padded(*split, T, per_step)
        N = x.shape[0]
        xs = x.reshape(N, T) if tokens else x.reshape(N, T * I)
        ys = y.reshape(N, -1) if kind == "reals" else y.reshape(N, T if per_step else 1)
        splits[k] = Split(xs, ys, N, lengths=lengths)
    return form, splits


def _padded(x: np.ndarray, y: np.ndarray, lengths: np.ndarray | None, T: int,
            per_step: bool) -> tuple:  # fmt: skip
    """(x, y, lengths) right-padded with zeros from x's own steps to T (y too if per step)."""
    t = x.shape[1]
    if t == T:
        return x, y, lengths
    if lengths is None:
        lengths = np.full(x.shape[0], t, np.int64)
    x = np.pad(x, [(0, 0), (0, T - t)] + [(0, 0)] * (x.ndim - 2))
    if per_step:
        y = np.pad(y, [(0, 0), (0, T - t)] + [(0, 0)] * (y.ndim - 2))
    return x, y, lengths


def _per_step(given: bool | None, kind: str, y: np.ndarray, T: int) -> bool:
    if y.ndim == 1:
        if given:
            raise ValueError(f"per_step: y has one target per sequence, shape {y.shape}")
        return False
    if y.ndim == 3:
        if given is False:
            raise ValueError(f"per_step: y (N, T, C) has a target per step, shape {y.shape}")
        if y.shape[1] != T:
            raise ValueError(f"y: expected (N, T={T}, C) for targets per step, got {y.shape}")
        return True
    if kind == "classes":  # (N, T) labels
        if given is False:
            raise ValueError(f"per_step: class labels (N, T) are per step, shape {y.shape}")
        if y.shape[1] != T:
            raise ValueError(f"y: expected (N,) or (N, T={T}) class labels, got {y.shape}")
        return True
    per_step = y.shape[1] == T if given is None else given  # reals (N, T) or (N, C)
    if per_step and y.shape[1] != T:
        raise ValueError(f"y: expected (N, T={T}) for one real target per step, got {y.shape}")
    return per_step
