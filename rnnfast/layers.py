"""Layer objects over the functional API: rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU.

    layer = rnnfast.LSTM(input_size, hidden_size, num_layers=1, bidirectional=False,
                         bias=True, dtype=np.float32, seed=None, backend="cpu",
                         batch_first=False)
    out, state = layer(x, state0=None, lengths=None)   # as rnnfast.forward
    grads = layer.backward(dout, dstate=None)   # as rnnfast.backward, for the last call

x is (T, B, I) time-major, or (B, T, I) with batch_first=True (out then (B, T, D*H), dout and
grads["x"] in the same layout), as torch's modules. lengths (B,) gives each sequence's valid
steps of a right-padded x, with the semantics of torch's pack_padded_sequence -> module ->
pad_packed_sequence (rnnfast.pad_sequences builds x and lengths from a list of sequences).

A layer holds its parameters (`layer.params`, PyTorch's keys and shapes) and the cache of its
last forward pass. State dicts move both ways with PyTorch:

    layer = rnnfast.LSTM.from_torch(torch_module)    # or rnnfast.RecurrentLayer.from_torch
    torch_module = layer.to_torch()

torch is never imported by this module at import time; from_torch only reads the module it
is given and to_torch imports torch when called.
"""

import warnings
from typing import Any, ClassVar

import numpy as np

from rnnfast.api import BACKENDS, Cache, backward, forward
from rnnfast.params import NONLINEARITIES, Spec, infer_spec, init_params

# torch.nn.RNNBase.mode -> (cell, nonlinearity)
_TORCH_MODES = {
    "RNN_TANH": ("rnn", "tanh"),
    "RNN_RELU": ("rnn", "relu"),
    "LSTM": ("lstm", "tanh"),
    "GRU": ("gru", "tanh"),
}


def _check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {sorted(BACKENDS)}, got {backend!r}")
    return backend  # type: ignore[return-value]


def _to_numpy(key: str, value: object) -> object:
    """Torch tensors (anything with detach/numpy) become numpy arrays; the rest is left as is."""
    if isinstance(value, np.ndarray) or not hasattr(value, "detach"):
        return value
    dtype = str(value.dtype)  # type: ignore[attr-defined]
    if dtype not in ("torch.float32", "torch.float64"):
        raise ValueError(f"state_dict[{key!r}]: expected a float32 or float64 tensor, got {dtype}")
    return value.detach().cpu().numpy()  # type: ignore[attr-defined]


class RecurrentLayer:
    """Common base of RNN, LSTM and GRU. Use a subclass, or RecurrentLayer.from_torch."""

    cell: ClassVar[str] = ""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bidirectional: bool = False,
        bias: bool = True,
        dtype: object = np.float32,
        seed: int | None = None,
        backend: str = "cpu",
        batch_first: bool = False,
        _nonlinearity: str = "tanh",
    ) -> None:
        if not self.cell:
            raise TypeError("RecurrentLayer is a base class: use rnnfast.RNN, LSTM or GRU")
        if not isinstance(batch_first, bool):
            raise ValueError(f"batch_first: expected True or False, got {batch_first!r}")
        self.batch_first = batch_first
        if _nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity: expected one of {list(NONLINEARITIES)}, got {_nonlinearity!r}"
            )
        if self.cell != "rnn" and _nonlinearity != "tanh":
            raise ValueError(
                f"nonlinearity: {self.cell} has fixed activations, got {_nonlinearity!r}"
            )
        self.nonlinearity = _nonlinearity
        self.backend = _check_backend(backend)
        self.params: dict[str, np.ndarray] = init_params(
            self.cell,
            input_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            bias=bias,
            dtype=dtype,
            seed=seed,
        )
        self.spec: Spec = infer_spec(self.cell, self.params)
        self._cache: Cache | None = None

    # structure, read from the spec so it cannot drift from the parameters
    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def hidden_size(self) -> int:
        return self.spec.hidden_size

    @property
    def num_layers(self) -> int:
        return self.spec.num_layers

    @property
    def bidirectional(self) -> bool:
        return self.spec.bidirectional

    @property
    def bias(self) -> bool:
        return self.spec.bias

    @property
    def dtype(self) -> np.dtype:
        return self.spec.dtype

    def __repr__(self) -> str:
        extra = f", nonlinearity={self.nonlinearity!r}" if self.cell == "rnn" else ""
        extra += ", batch_first=True" if self.batch_first else ""  # shown when not torch's default
        return (
            f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
            f"bias={self.bias}, dtype={self.dtype}{extra}, backend={self.backend!r})"
        )

    def __call__(
        self, x: np.ndarray, state0: Any = None, *, lengths: Any = None
    ) -> tuple[np.ndarray, Any]:
        """Forward pass over x (T, B, I), or (B, T, I) with batch_first, optionally with
        lengths (B,); keeps the cache for backward. Returns (out, state)."""
        out, state, cache = forward(
            self.cell,
            self.params,
            x,
            state0,
            nonlinearity=self.nonlinearity,
            backend=self.backend,
            lengths=lengths,
            batch_first=self.batch_first,
        )
        self._cache = cache
        return out, state

    def backward(self, dout: np.ndarray, dstate: Any = None) -> dict[str, np.ndarray]:
        """Gradients of sum(out * dout) + sum(state * dstate) for the last forward pass; dout
        and grads["x"] in that pass's layout (its batch_first), padded steps ignored."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward: no forward pass to differentiate; "
                "call the layer on an input first"
            )
        return backward(
            self.cell, self.params, self._cache, dout, dstate, backend=self._cache.backend
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of the parameters, keyed as torch.nn.RNN/LSTM/GRU's state_dict."""
        return {key: value.copy() for key, value in self.params.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Replace the parameters with copies of state_dict's (numpy arrays or torch tensors).

        The keys, shapes and dtype must describe this layer's structure exactly.
        """
        if not isinstance(state_dict, dict):
            raise ValueError(
                f"state_dict: expected a dict of arrays, got {type(state_dict).__name__}"
            )
        params = {key: _to_numpy(key, value) for key, value in state_dict.items()}
        try:
            spec = infer_spec(self.cell, params)
        except ValueError as exc:
            raise ValueError(f"state_dict: {exc}") from None
        if spec != self.spec:
            raise ValueError(
                f"state_dict: describes {_describe(spec)}, but this layer is {_describe(self.spec)}"
            )
        self.params = {key: np.array(params[key], order="C", copy=True) for key in params}
        self._cache = None  # a cache from the old parameters must not meet the new ones

    @classmethod
    def from_torch(cls, module: Any, *, backend: str = "cpu") -> "RecurrentLayer":
        """A layer with the structure and weights of a torch.nn.RNN, LSTM or GRU.

        Called on RecurrentLayer, the class follows the module; called on a subclass, the
        module must be of the same cell type. The layer takes the module's batch_first.
        rnnfast has no projections, so proj_size > 0 is rejected; dropout > 0 only acts in
        training mode in torch, and rnnfast has none, so it is ignored with a warning.
        """
        mode = getattr(module, "mode", None)
        if mode not in _TORCH_MODES:
            raise ValueError(
                "module: expected a torch.nn.RNN, LSTM or GRU, got "
                f"{type(module).__module__}.{type(module).__name__}"
            )
        cell, nonlinearity = _TORCH_MODES[mode]
        target = _CLASSES[cell] if cls is RecurrentLayer else cls
        if target.cell != cell:
            raise ValueError(
                f"module: {target.__name__}.from_torch expected a torch.nn.{target.__name__}, "
                f"got {type(module).__name__} ({cell})"
            )
        if getattr(module, "proj_size", 0):
            raise ValueError(f"module: proj_size={module.proj_size} is not supported (expected 0)")
        if getattr(module, "dropout", 0):
            warnings.warn(
                f"module has dropout={module.dropout}; rnnfast has no dropout, so the layer "
                "computes what the torch module does in eval mode",
                stacklevel=2,
            )
        kwargs = {"_nonlinearity": nonlinearity} if cell == "rnn" else {}
        state = module.state_dict()
        dtype = _to_numpy("weight_ih_l0", state["weight_ih_l0"]).dtype  # type: ignore[attr-defined]
        layer = RecurrentLayer.__new__(target)
        RecurrentLayer.__init__(
            layer,
            module.input_size,
            module.hidden_size,
            module.num_layers,
            bidirectional=module.bidirectional,
            bias=module.bias,
            dtype=dtype,
            seed=0,
            backend=backend,
            batch_first=bool(getattr(module, "batch_first", False)),
            **kwargs,
        )
        layer.load_state_dict(dict(state))
        return layer

    def to_torch(self) -> Any:
        """A torch.nn.RNN/LSTM/GRU with this layer's batch_first, holding copies of its weights."""
        try:
            import torch
        except ImportError as exc:
            raise ImportError(
                f"{type(self).__name__}.to_torch needs PyTorch: pip install torch"
            ) from exc
        if self.cell == "rnn" and self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"nonlinearity: torch.nn.RNN supports 'tanh' and 'relu', got {self.nonlinearity!r}"
            )
        torch_cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[self.cell]
        kwargs = {"nonlinearity": self.nonlinearity} if self.cell == "rnn" else {}
        module = torch_cls(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            bidirectional=self.bidirectional,
            dtype=torch.float32 if self.dtype == np.float32 else torch.float64,
            **kwargs,
        )
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.params.items()})
        return module


class RNN(RecurrentLayer):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act tanh, relu or sigmoid."""

    cell = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bidirectional: bool = False,
        bias: bool = True,
        dtype: object = np.float32,
        seed: int | None = None,
        nonlinearity: str = "tanh",
        backend: str = "cpu",
        batch_first: bool = False,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bidirectional=bidirectional,
            bias=bias,
            dtype=dtype,
            seed=seed,
            backend=backend,
            batch_first=batch_first,
            _nonlinearity=nonlinearity,
        )


class LSTM(RecurrentLayer):
    """LSTM with PyTorch's gates i, f, g, o; state is (h, c)."""

    cell = "lstm"


class GRU(RecurrentLayer):
    """GRU with PyTorch's gates r, z, n and n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""

    cell = "gru"


_CLASSES: dict[str, type[RecurrentLayer]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def _describe(spec: Spec) -> str:
    return (
        f"{spec.cell} input_size={spec.input_size} hidden_size={spec.hidden_size} "
        f"num_layers={spec.num_layers} bidirectional={spec.bidirectional} bias={spec.bias} "
        f"dtype={spec.dtype}"
    )
