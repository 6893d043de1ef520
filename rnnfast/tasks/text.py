"""Character-level language modelling of a UTF-8 text: predict each next character.

The vocabulary is the sorted set of the text's characters (kept with the run as the artifact
"vocabulary"). The first 1 - valid_fraction of the text trains as a stream: batch_size rows of
consecutive characters, windows of num_steps, the state carried between updates (truncated
BPTT "tf" or "true"), a target at every step. The last valid_fraction (default 5 %) is the
validation stream (rows of whole windows, as many of its last characters as they hold, at
most batch_size rows): its mean cross-entropy (valid_loss, nats) and bits per character
(valid_bpc = valid_loss / ln 2) are curve points every epoch. Characters go in one-hot
(embedding = 0) or through a trainable embedding of that size.

``sample(result, prime, length, temperature, seed)`` generates text from a trained run.
"""

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from rnnfast.seqdata import Evaluation, Form, Split, TaskData, stream_rows
from rnnfast.tasks import Task


def read_text(path: str) -> str:
    """A UTF-8 text file's contents; ValueError (one line) if missing, unreadable or empty."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"data: {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"data: {path}: is a directory, expected a UTF-8 text file") from None
    except OSError as e:
        raise ValueError(f"data: {path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"data: {path}: not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})"
                         ) from None  # fmt: skip
    if not text:
        raise ValueError(f"data: {path}: the text is empty")
    return text


def _check_text(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"data: expected a str (the text) for the text task, got "
                         f"{type(text).__name__}")  # fmt: skip
    if not text:
        raise ValueError(f"data: {where}: the text is empty")
    return text


class TextTask(Task):
    name = "text"
    description = "character-level language model of a UTF-8 text file"
    keys = {
        "data": ("str_or_none", None),
        "num_steps": ("int", 1),
        "truncation": ("choice", ("tf", "true")),
        "valid_fraction": ("unit_float", None),
        "embedding": ("int", 0),
    }
    defaults = {
        "cell": "lstm",
        "hidden_size": 128,
        "batch_size": 32,
        "optimizer": "adam",
        "lr": 2e-3,
        "clip": 5.0,
        "epochs": 10,
        "data": None,
        "num_steps": 50,
        "truncation": "tf",
        "valid_fraction": 0.05,
        "embedding": 0,
    }
    metrics = ("loss", "valid_loss", "valid_bpc", "updates")
    metric_labels = {
        "loss": "cross-entropy (nats)",
        "valid_loss": "validation cross-entropy (nats)",
        "valid_bpc": "validation bits per character",
    }
    location_keys = ("data",)

    def check(self, c: dict[str, Any]) -> None:
        if c["bidirectional"]:
            raise ValueError("bidirectional: a language model predicts the next character from "
                             "the past only; got True")  # fmt: skip

    def metrics_for(self, cfg: dict[str, Any]) -> tuple[str, ...]:
        return self.metrics if cfg["valid_fraction"] > 0 else ("loss", "updates")

    def data_files(self, cfg: dict[str, Any]) -> list[str]:
        return [cfg["data"]] if cfg["data"] is not None else []

    def prepare(self, cfg: dict[str, Any], data: Any = None) -> TaskData:
        if data is None and cfg["data"] is None:
            raise ValueError("data: the text task needs a UTF-8 file (data = PATH) or a str "
                             "(rnnfast.train(config, data=text))")  # fmt: skip
        if data is not None and cfg["data"] is not None:
            raise ValueError("data: given both in the config and as an argument; give one")
        where = cfg["data"] if data is None else "data argument"
        text = read_text(cfg["data"]) if data is None else _check_text(data, where)
        vocab = sorted(set(text))
        lookup = {ch: i for i, ch in enumerate(vocab)}
        ids = np.fromiter((lookup[ch] for ch in text), np.int32, len(text))
        n, B = cfg["num_steps"], cfg["batch_size"]
        n_valid = int(len(ids) * cfg["valid_fraction"])
        train_ids = ids[: len(ids) - n_valid]
        need = B * n + 1
        if len(train_ids) < need:
            raise ValueError(
                f"data: {where}: {len(train_ids)} characters of training text are fewer than "
                f"one window of num_steps={n} for each of batch_size={B} rows plus one "
                f"({need}); use a longer text or smaller num_steps / batch_size"
            )
        x, y = stream_rows(train_ids[:-1], B), stream_rows(train_ids[1:], B)
        train = Split(x, y, x.shape[1])
        V = len(vocab)
        E = cfg["embedding"]
        form = Form(inputs="embed" if E else "onehot", input_size=E or V, vocab=V,
                    targets="classes", outputs=V, per_step=True, mode="stream",
                    truncation=cfg["truncation"], steps=n, batch=B)  # fmt: skip
        evals = []
        if n_valid > 0:
            if n_valid < n:
                raise ValueError(
                    f"valid_fraction: the last {n_valid} characters of {where} are fewer than "
                    f"one window of num_steps={n}; raise valid_fraction, use a longer text, "
                    "or set valid_fraction = 0"
                )
            # rows of whole windows, cut from the end, so that the last character is a target
            rows = max(1, min(B, n_valid // n))
            used = rows * (n_valid // rows // n * n)
            vx = ids[len(ids) - used - 1 : -1].reshape(rows, -1)
            vy = ids[len(ids) - used :].reshape(rows, -1)
            evals.append(Evaluation("valid", Split(vx, vy, vx.shape[1]), ("loss", "bpc")))
        info = {"characters": len(ids), "vocabulary_size": V, "valid_characters": n_valid,
                "text_sha256": hashlib.sha256(text.encode()).hexdigest()}  # fmt: skip
        return TaskData(form, lambda epoch: train, train.count // n, cfg["epochs"], evals,
                        info=info, artifacts={"vocabulary": "".join(vocab)})  # fmt: skip


def sample(result, prime: str = "", length: int = 200, temperature: float = 1.0,
           seed: int = 0) -> str:  # fmt: skip
    """`length` characters generated by a trained text run after `prime` (its first character
    is drawn from the unigram frequencies the model predicts from a zero state when prime is
    empty). temperature scales the logits (lower: more conservative); the same seed gives the
    same text. result: a TrainResult or anything with .config, .params, .artifacts."""
    from rnnfast.api import forward  # noqa: PLC0415

    cfg, params = result.config, result.params
    vocab = (getattr(result, "artifacts", None) or {}).get("vocabulary")
    if not vocab:
        raise ValueError("result: not a text run (no vocabulary among its artifacts)")
    if not isinstance(prime, str):
        raise ValueError(f"prime: expected a str, got {type(prime).__name__}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length: expected an integer >= 0, got {length!r}")
    if (isinstance(temperature, bool) or not isinstance(temperature, int | float)
            or not math.isfinite(temperature) or temperature <= 0):  # fmt: skip
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    unknown = sorted(set(prime) - set(vocab))
    if unknown:
        raise ValueError(f"prime: characters not in the run's vocabulary: {''.join(unknown)!r}")
    lookup = {ch: i for i, ch in enumerate(vocab)}
    V = len(vocab)
    rec = {k: v for k, v in params.items() if not k.startswith(("head.", "embedding."))}
    dt = rec["weight_ih_l0"].dtype
    emb = params.get("embedding.weight")
    W, b = params["head.weight"], params.get("head.bias")

    def inputs(tokens: list[int]) -> np.ndarray:
        if emb is not None:
            return emb[tokens][:, None, :].astype(dt)
        x = np.zeros((len(tokens), 1, V), dt)
        x[np.arange(len(tokens)), 0, tokens] = 1
        return x

    rng = np.random.default_rng(seed)
    cell, act = cfg["cell"], cfg["nonlinearity"]
    state = None
    tokens = [lookup[ch] for ch in prime]
    out_chars = []
    if tokens:
        out, state, _ = forward(cell, rec, inputs(tokens), state, nonlinearity=act)
        last = out[-1, 0]
    else:
        L = cfg["num_layers"]
        H = cfg["hidden_size"]
        last = np.zeros(H, dt)
        if cell == "lstm":
            state = (np.zeros((L, 1, H), dt), np.zeros((L, 1, H), dt))
        else:
            state = np.zeros((L, 1, H), dt)
    for _ in range(length):
        z = W.astype(np.float64) @ last.astype(np.float64)
        if b is not None:
            z += b
        z /= temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        tok = int(rng.choice(V, p=p))
        out_chars.append(vocab[tok])
        out, state, _ = forward(cell, rec, inputs([tok]), state, nonlinearity=act)
        last = out[-1, 0]
    return "".join(out_chars)
