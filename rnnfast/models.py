"""A stored run's trained model: forward on new data, its parameters, a PyTorch module, the
task's metrics on other data, and text sampled from it.

    model = rnnfast.load_model("results/mnist-rows", "3f2a9c")  # a run id or a unique prefix
    z = model.forward(x, lengths=None)     # the head's outputs (logits for classes)
    model.params, model.config, model.form, model.artifacts, model.run_id
    module = model.to_torch()              # [nn.Embedding] -> nn.LSTM/GRU/RNN -> nn.Linear
    model.evaluate("other.npz")            # {"loss": ..., "accuracy": ...} as the run's task
    model.sample("The ", length=200, temperature=0.8, seed=0)  # runs with a vocabulary

x is laid out as a task's data files hold it, sequences first: (N, T, I) features ((N, T) when
I = 1), uint8 for a model trained on quantized inputs (multiplied by its scale; floats are taken
as the values), or (N, T) integer token ids (one-hot over the vocabulary, or through the
embedding). The recurrent layers run through rnnfast.forward (PyTorch's semantics, batch_first,
lengths as pack_padded_sequence); the head nn.Linear reads

    per-step targets:     every step's top-layer output        -> z (N, T, C)
    per-sequence targets: the forward direction's output at each sequence's last step and,
                          bidirectional, the reverse direction's at step 0 (h_n) -> z (N, C)

Outputs are before the loss's nonlinearity (softmax for classes, the sigmoid of a "sigmoid"
target); at padded steps they are the head's bias. The metrics follow the training loops'
evaluation: the mean over targets (real steps only) of the cross-entropy, of sum_c (z - y)^2 / C
for reals, of (y - sigmoid(z))^2 / 2 for sigmoid targets; accuracy = argmax z == class.
"""

import math
from pathlib import Path
from typing import Any

import numpy as np

from rnnfast.api import forward as rnn_forward
from rnnfast.store import find_run, read_model

_CHUNK = 256  # sequences per forward call in evaluate
_WINDOW = 1024  # steps per forward call over a stream (the state carried)
_TORCH_NONLINEARITIES = ("tanh", "relu")


def load_model(results_dir: str | Path, run_id: str) -> "Model":
    """The trained model of a stored run (results_dir: a results directory or a directory of
    them); ValueError (one line) for an unknown or ambiguous run id or a run without one."""
    d, record, _ = find_run(results_dir, run_id)
    stored = read_model(d, record.run_id)
    if stored is None:
        if record.status != "ok":
            why = f"it {record.status} (models are kept for runs that finish ok)"
        else:
            why = "it was stored by an rnnfast that kept no models; rerun it with --force"
        raise ValueError(f"run {record.run_id}: no stored model: {why}")
    if not stored["form"]:
        raise ValueError(f"run {record.run_id}: its model file has no data form")
    return Model(record.run_id, record.config, stored["params"], stored["artifacts"],
                 stored["form"])  # fmt: skip


class Model:
    """A trained recurrent model with its head (see the module docstring)."""

    def __init__(self, run_id: str, config: dict[str, Any], params: dict[str, np.ndarray],
                 artifacts: dict[str, Any], form: dict[str, Any]) -> None:  # fmt: skip
        self.run_id, self.config, self.form = run_id, config, form
        self.params, self.artifacts = params, artifacts
        self.cell, self.nonlinearity = config["cell"], config["nonlinearity"]
        self.hidden_size = int(config["hidden_size"])
        self.directions = 2 if config["bidirectional"] else 1
        self.dtype = params["head.weight"].dtype
        self.recurrent = {k: v for k, v in params.items()
                          if not k.startswith(("head.", "embedding."))}  # fmt: skip

    def __repr__(self) -> str:
        f = self.form
        return (f"Model(run_id={self.run_id!r}, cell={self.cell!r}, hidden_size="
                f"{self.hidden_size}, inputs={f['inputs']!r}, targets={f['targets']!r}, "
                f"outputs={f['outputs']}, per_step={f['per_step']})")  # fmt: skip

    # ------------------------------------------------------------ forward

    def features(self, x: Any) -> np.ndarray:
        """x as the first recurrent layer takes it: (N, T, I) in the model's dtype."""
        f, dt = self.form, self.dtype
        x = np.asarray(x)
        I = f["input_size"]
        if f["inputs"] in ("onehot", "embed"):
            if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
                raise ValueError(f"x: expected (N, T) integer token ids, got {x.dtype} {x.shape}")
            V = f["vocab"]
            if x.size and (x.min() < 0 or x.max() >= V):
                raise ValueError(f"x: token ids must be in [0, {V}), got {x.min()}..{x.max()}")
            if f["inputs"] == "embed":
                return np.ascontiguousarray(self.params["embedding.weight"][x], dt)
            return np.ascontiguousarray(np.eye(V, dtype=dt)[x])
        if x.ndim == 2 and I == 1:
            x = x[:, :, None]
        if x.ndim != 3 or x.shape[2] != I or not (np.issubdtype(x.dtype, np.number)):
            raise ValueError(f"x: expected (N, T, {I}) numbers, got {x.dtype} {x.shape}")
        if f["inputs"] == "quantized" and x.dtype == np.uint8:
            return np.ascontiguousarray(x, dt) * dt.type(f["scale"])
        return np.ascontiguousarray(x, dt)

    def forward(self, x: Any, lengths: Any = None, state: Any = None,
                return_state: bool = False):  # fmt: skip
        """The head's outputs for x (see the module docstring): (N, C) per sequence or
        (N, T, C) per step; with return_state also the recurrent state after each sequence
        (h_n, or (h_n, c_n) for lstm), which a later call continues from as `state`."""
        xs = self.features(x)
        out, hn, _ = rnn_forward(self.cell, self.recurrent, xs, state,
                                 nonlinearity=self.nonlinearity, lengths=lengths,
                                 batch_first=True)  # fmt: skip
        W, b = self.params["head.weight"], self.params.get("head.bias")
        if self.form["per_step"]:
            feats = out
        else:
            N, T, H = xs.shape[0], xs.shape[1], self.hidden_size
            last = np.full(N, T - 1) if lengths is None else np.asarray(lengths) - 1
            feats = out[np.arange(N), last]  # (N, D*H)
            if self.directions == 2:
                feats = np.concatenate([feats[:, :H], out[:, 0, H:]], axis=1)
        z = feats @ W.T
        if b is not None:
            z += b
        return (z, hn) if return_state else z

    # ------------------------------------------------------------ PyTorch

    def to_torch(self):
        """An nn.Module (submodules `embedding` when the model has one, `rnn`: nn.LSTM / GRU /
        RNN with batch_first=True, `head`: nn.Linear) in the model's dtype whose
        forward(x, lengths=None) gives this model's forward outputs; its state_dict() is what
        `rnnfast export --format torch` saves."""
        if self.cell == "rnn" and self.nonlinearity not in _TORCH_NONLINEARITIES:
            raise ValueError(f"to_torch: nn.RNN has no {self.nonlinearity!r} nonlinearity "
                             f"(run {self.run_id}); export it as npz")  # fmt: skip
        try:
            import torch  # noqa: F401, PLC0415
        except ImportError:
            raise RuntimeError("to_torch: needs PyTorch (pip install torch)") from None
        return _torch_module(self)

    # ------------------------------------------------------------ metrics on other data

    def evaluate(self, data: str | Path) -> dict[str, float]:
        """The run's task's metrics (loss; accuracy for classes; bits per character where the
        task reports them) on a data file of the form the run trained on, read as the task
        reads its `data` file; every target counts once."""
        from rnnfast.tasks import get_task  # noqa: PLC0415

        cfg = self.config
        task = get_task(cfg["task"])
        if "data" not in task.keys:
            raise ValueError(f"evaluate: run {self.run_id}'s task {task.name!r} makes its "
                             "own data; evaluate takes runs of tasks that read a data "
                             "file")  # fmt: skip
        new = {**cfg, **dict.fromkeys(task.location_keys), "data": str(data), "batch_size": 1}
        if "valid_fraction" in task.keys:
            new["valid_fraction"] = 0.0
        task.check(new)
        td = task.prepare(new)
        split = td.train(1)
        x, y = split.x, split.y
        x, y = self._check_form(data, td.form, td.artifacts, x, y)
        if td.form.mode == "set":
            sums = self._set_metrics(x, y, split.lengths)
        else:
            sums = self._stream_metrics(x, y)
        loss_sum, correct, counted = sums
        out = {"loss": loss_sum / max(counted, 1)}
        if self.form["targets"] == "classes":
            out["accuracy"] = correct / max(counted, 1)
        if any(m.endswith("_bpc") for m in task.metrics_for(cfg)):
            out["bpc"] = out["loss"] / math.log(2)
        out["targets"] = counted
        return out

    def _check_form(self, data, got, artifacts: dict, x: np.ndarray, y: np.ndarray):
        """x, y (remapped to the run's vocabulary when both have one); ValueError naming the
        first difference from the run's training data."""
        want = self.form

        def bad(what: str, expected: Any, given: Any) -> ValueError:
            return ValueError(f"data: {data}: {what}: expected {expected} (as run "
                              f"{self.run_id}'s training data), got {given}")  # fmt: skip

        for key in ("mode", "inputs", "targets", "per_step"):
            if getattr(got, key) != want[key]:
                raise bad(key, want[key], getattr(got, key))
        tokens = want["inputs"] in ("onehot", "embed")
        vocab, theirs = self.artifacts.get("vocabulary"), artifacts.get("vocabulary")
        if tokens and isinstance(vocab, str) and isinstance(theirs, str):
            unknown = sorted(set(theirs) - set(vocab))
            if unknown:
                raise bad("symbols", "the run's vocabulary", f"others: {''.join(unknown)!r}")
            table = np.array([vocab.index(s) for s in theirs], np.int64)
            x = table[x]
            if want["targets"] == "classes" and want["outputs"] == len(vocab):
                y = table[y]
        elif tokens and got.vocab > want["vocab"]:
            raise bad("token ids", f"< {want['vocab']}", f"ids up to {got.vocab - 1}")
        if not tokens and got.input_size != want["input_size"]:
            raise bad("features a step", want["input_size"], got.input_size)
        if want["targets"] == "classes":
            if y.size and y.max() >= want["outputs"]:
                raise bad("class labels", f"< {want['outputs']}", f"label {int(y.max())}")
        elif got.outputs != want["outputs"]:
            raise bad("outputs per target", want["outputs"], got.outputs)
        return x, y  # sequences of another length than the training data's are fine

    def _set_metrics(self, x, y, lengths) -> tuple[float, int, int]:
        N, I = x.shape[0], self.form["input_size"]
        if self.form["inputs"] not in ("onehot", "embed"):  # (N, T*I) features
            x = x.reshape(N, -1, I)
        T = x.shape[1]
        total = [0.0, 0, 0]
        for a in range(0, N, _CHUNK):
            lc = None if lengths is None else lengths[a : a + _CHUNK]
            z = self.forward(x[a : a + _CHUNK], lengths=lc)
            for i, v in enumerate(self._sums(z, y[a : a + _CHUNK], lc, T)):
                total[i] += v
        return total[0], total[1], total[2]

    def _stream_metrics(self, x, y) -> tuple[float, int, int]:
        total, state = [0.0, 0, 0], None
        for a in range(0, x.shape[1], _WINDOW):
            z, state = self.forward(x[:, a : a + _WINDOW], state=state, return_state=True)
            for i, v in enumerate(self._sums(z, y[:, a : a + _WINDOW], None, z.shape[1])):
                total[i] += v
        return total[0], total[1], total[2]

    def _sums(self, z: np.ndarray, y: np.ndarray, lengths, T: int) -> tuple[float, int, int]:
        """(loss sum, correct, counted) of outputs z against targets y in the loops' layout."""
        f = self.form
        n, C = z.shape[0], f["outputs"]
        z = z.astype(np.float64).reshape(n, -1, C)  # (n, T or 1, C)
        steps = z.shape[1]
        mask = np.ones((n, steps), bool)
        if lengths is not None and f["per_step"]:
            mask = np.arange(steps)[None, :] < np.asarray(lengths)[:, None]
        if f["targets"] == "classes":
            t = np.asarray(y, np.int64).reshape(n, steps)
            m = z.max(axis=2)
            lse = m + np.log(np.exp(z - m[..., None]).sum(axis=2))
            loss = lse - np.take_along_axis(z, t[..., None], axis=2)[..., 0]
            ok = z.argmax(axis=2) == t
            return float(loss[mask].sum()), int(ok[mask].sum()), int(mask.sum())
        target = np.asarray(y, np.float64).reshape(n, steps, C)
        if f["targets"] == "reals":
            loss = ((z - target) ** 2).sum(axis=2) / C
        else:  # sigmoid outputs, squared error / 2
            loss = 0.5 * ((target - 1.0 / (1.0 + np.exp(-z))) ** 2).sum(axis=2)
        return float(loss[mask].sum()), 0, int(mask.sum())

    # ------------------------------------------------------------ text

    def sample(self, prime: str = "", length: int = 200, temperature: float = 1.0,
               seed: int = 0) -> str:  # fmt: skip
        """Text generated after prime (rnnfast.sample); for runs with a vocabulary."""
        if not isinstance(self.artifacts.get("vocabulary"), str):
            raise ValueError(f"sample: run {self.run_id} ({self.config['task']}) has no "
                             "vocabulary; sample takes runs of a character-level text "
                             "task")  # fmt: skip
        from rnnfast import sample  # noqa: PLC0415

        return sample(self, prime, length, temperature, seed)


def _torch_module(model: Model):
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: PLC0415

    f, cfg, p = model.form, model.config, model.params
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    H, D = model.hidden_size, model.directions

    class RecurrentModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            kinds = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
            kw = {"nonlinearity": model.nonlinearity} if model.cell == "rnn" else {}
            if f["inputs"] == "embed":
                self.embedding = nn.Embedding(f["vocab"], f["input_size"])
            self.rnn = kinds[model.cell](f["input_size"], H, num_layers=cfg["num_layers"],
                                         bias=cfg["bias"], batch_first=True,
                                         bidirectional=D == 2, **kw)  # fmt: skip
            self.head = nn.Linear(D * H, f["outputs"], bias="head.bias" in p)
            self.inputs, self.vocab, self.scale = f["inputs"], f["vocab"], float(f["scale"])
            self.per_step = bool(f["per_step"])

        def forward(self, x, lengths=None):
            if self.inputs == "embed":
                x = self.embedding(x.long())
            elif self.inputs == "onehot":
                x = nn.functional.one_hot(x.long(), self.vocab).to(dtype)
            elif self.inputs == "quantized" and x.dtype == torch.uint8:
                x = x.to(dtype) * self.scale
            else:
                x = x.to(dtype)
            if x.dim() == 2:
                x = x.unsqueeze(-1)
            T = x.shape[1]
            if lengths is None:
                out, _ = self.rnn(x)
            else:
                lengths = torch.as_tensor(lengths).cpu()
                packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                out, _ = self.rnn(packed)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
            if self.per_step:
                return self.head(out)
            last = torch.full((x.shape[0],), T - 1) if lengths is None else lengths.long() - 1
            feats = out[torch.arange(x.shape[0]), last]
            if D == 2:
                feats = torch.cat([feats[:, :H], out[:, 0, H:]], dim=1)
            return self.head(feats)

    module = RecurrentModel().to(dtype)
    state = {("rnn." + k if k in model.recurrent else k): torch.from_numpy(np.array(v))
             for k, v in p.items()}  # fmt: skip
    module.load_state_dict(state)
    return module.eval()


def export(model: Model, path: str | Path, fmt: str) -> Path:
    """Write a model as "npz" (the store's model file: parameter arrays by name plus
    rnnfast.json) or "torch" (to_torch()'s state_dict, for torch.load(weights_only=True))."""
    path = Path(path)
    if fmt == "npz":
        from rnnfast.store import model_arrays  # noqa: PLC0415

        arrays = model_arrays(model.run_id, model.config, model.params, model.artifacts,
                              model.form)  # fmt: skip
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    elif fmt == "torch":
        module = model.to_torch()
        import torch  # noqa: PLC0415

        torch.save(module.state_dict(), path)
    else:
        raise ValueError(f"format: expected 'npz' or 'torch', got {fmt!r}")
    return path
