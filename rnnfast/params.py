"""Parameter layout and initialisation: exactly PyTorch's nn.RNN / nn.LSTM / nn.GRU.

For layer k and direction suffix s ("" forward, "_reverse" backward):

    weight_ih_l{k}{s}  (G*H, I_k)   I_0 = input_size, I_k = D*H for k > 0
    weight_hh_l{k}{s}  (G*H, H)
    bias_ih_l{k}{s}    (G*H,)       only with bias=True
    bias_hh_l{k}{s}    (G*H,)

G = 1 (rnn), 4 (lstm: gates i, f, g, o), 3 (gru: gates r, z, n). D = 2 if bidirectional.
Default init is PyTorch's: every entry ~ U(-1/sqrt(H), 1/sqrt(H)).
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rnnfast._finite import all_finite

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
NONLINEARITIES = ("tanh", "relu", "sigmoid")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Spec:
    """The structure a parameter dict describes."""

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    bias: bool
    dtype: np.dtype

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


def check_cell(cell: object) -> str:
    if not isinstance(cell, str) or cell not in GATES:
        raise ValueError(f"cell: expected one of {sorted(GATES)}, got {cell!r}")
    return cell  # type: ignore[return-value]


def check_dtype(dtype: object) -> np.dtype:
    dt = None
    if dtype is not None:
        try:
            dt = np.dtype(dtype)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            dt = None
    if dt is None or dt not in DTYPES:
        raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}")
    return dt


def param_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the parameter dict for a structure, in PyTorch's order."""
    return dict(_param_shapes(spec))


@lru_cache(maxsize=256)
def _param_shapes(spec: Spec) -> tuple[tuple[str, tuple[int, ...]], ...]:
    gh = spec.gates * spec.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(spec.num_layers):
        in_size = spec.input_size if layer == 0 else spec.directions * spec.hidden_size
        for sfx in ("", "_reverse")[: spec.directions]:
            shapes[f"weight_ih_l{layer}{sfx}"] = (gh, in_size)
            shapes[f"weight_hh_l{layer}{sfx}"] = (gh, spec.hidden_size)
            if spec.bias:
                shapes[f"bias_ih_l{layer}{sfx}"] = (gh,)
                shapes[f"bias_hh_l{layer}{sfx}"] = (gh,)
    return tuple(shapes.items())


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def init_params(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
    dtype: object = np.float32,
    seed: int | None = None,
) -> dict[str, np.ndarray]:
    """PyTorch-shaped parameters, U(-1/sqrt(H), 1/sqrt(H)), reproducible from seed.

    The draws come from numpy.random.default_rng(seed) in key order, in float64, then are
    cast to dtype, so float32 and float64 parameters from one seed agree to rounding.
    """
    spec = Spec(
        cell=check_cell(cell),
        input_size=_positive_int("input_size", input_size),
        hidden_size=_positive_int("hidden_size", hidden_size),
        num_layers=_positive_int("num_layers", num_layers),
        bidirectional=bool(bidirectional),
        bias=bool(bias),
        dtype=check_dtype(dtype),
    )
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
    ):
        raise ValueError(f"seed: expected an integer >= 0 or None, got {seed!r}")
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(spec.hidden_size)
    return {
        key: rng.uniform(-bound, bound, size=shape).astype(spec.dtype)
        for key, shape in param_shapes(spec).items()
    }


_SPECS: dict[tuple, Spec] = {}  # (cell, ((key, shape, dtype), ...)) -> checked structure


def infer_spec(cell: str, params: object, *, check_values: bool = True) -> Spec:
    """Read the structure from a parameter dict and check every key, shape and dtype.

    check_values also rejects NaN and infinite entries. A structure that passed once is
    remembered by its keys, shapes and dtypes, so repeated calls (every forward and backward)
    skip straight to the value check: about 8 us less per call on small models.
    """
    meta = None
    if isinstance(cell, str) and isinstance(params, dict):
        # dtype objects, not dtype.str (which builds a new string per call): about 1 us less
        items = tuple([(k, w.shape, w.dtype) for k, w in params.items()
                       if type(w) is np.ndarray])  # fmt: skip
        if len(items) == len(params):
            meta = (cell, items)
            spec = _SPECS.get(meta)
            if spec is not None:
                if check_values:
                    for key, w in params.items():
                        if not all_finite(w):
                            raise ValueError(f"params[{key!r}]: contains NaN or infinite values")
                return spec
    spec = _infer_spec_checked(cell, params, check_values)
    if meta is not None:
        if len(_SPECS) > 1024:
            _SPECS.clear()
        _SPECS[meta] = spec
    return spec


def _infer_spec_checked(cell: str, params: object, check_values: bool) -> Spec:
    check_cell(cell)
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays, got {type(params).__name__}")
    for key in ("weight_ih_l0", "weight_hh_l0"):
        if key not in params:
            raise ValueError(f"params: missing key {key!r}")
    w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    for key, w in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh)):
        if not isinstance(w, np.ndarray) or w.ndim != 2:
            raise ValueError(f"params[{key!r}]: expected a 2-D numpy array, got {_describe(w)}")
    hidden = w_hh.shape[1]
    if hidden < 1:
        raise ValueError(
            f"params['weight_hh_l0']: expected hidden size >= 1, got shape {w_hh.shape}"
        )
    num_layers = 0
    while f"weight_ih_l{num_layers}" in params:
        num_layers += 1
    spec = Spec(
        cell=cell,
        input_size=w_ih.shape[1],
        hidden_size=hidden,
        num_layers=num_layers,
        bidirectional="weight_ih_l0_reverse" in params,
        bias="bias_ih_l0" in params,
        dtype=w_ih.dtype,
    )
    if spec.dtype not in DTYPES:
        raise ValueError(
            f"params['weight_ih_l0']: expected dtype float32 or float64, got {spec.dtype}"
        )
    expected = dict(_param_shapes(spec))
    missing = [k for k in expected if k not in params]
    if missing:
        raise ValueError(f"params: missing key(s) {missing} for a {_describe_spec(spec)}")
    extra = [k for k in params if k not in expected]
    if extra:
        raise ValueError(f"params: unexpected key(s) {extra} for a {_describe_spec(spec)}")
    for key, shape in expected.items():
        w = params[key]
        if not isinstance(w, np.ndarray):
            raise ValueError(f"params[{key!r}]: expected a numpy array, got {_describe(w)}")
        if w.shape != shape:
            raise ValueError(f"params[{key!r}]: expected shape {shape}, got {w.shape}")
        if w.dtype != spec.dtype:
            raise ValueError(
                f"params[{key!r}]: expected dtype {spec.dtype} (as weight_ih_l0), got {w.dtype}"
            )
        if check_values and not all_finite(w):
            raise ValueError(f"params[{key!r}]: contains NaN or infinite values")
    return spec


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"array of shape {obj.shape} and dtype {obj.dtype}"
    return type(obj).__name__


def _describe_spec(spec: Spec) -> str:
    return (
        f"{spec.cell} with num_layers={spec.num_layers}, bidirectional={spec.bidirectional}, "
        f"bias={spec.bias}"
    )


_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@lru_cache(maxsize=256)
def packed_layout(spec: Spec):
    """How the kernels pack a parameter dict into one flat vector: (entries, woff) with
    entries = ((key, shape, offset, size), ...) in packing order and woff the (L*D, 4) int64
    table of each layer and direction's weight_ih, weight_hh, bias_ih, bias_hh offsets (-1:
    none). Both backends and the training loops use this one layout."""
    shapes = param_shapes(spec)
    woff = np.full((spec.num_layers * spec.directions, 4), -1, np.int64)
    entries, pos = [], 0
    for key, shape in shapes.items():
        kind, rest = key.rsplit("_l", 1)
        ld = int(rest.split("_")[0]) * spec.directions + rest.endswith("_reverse")
        woff[ld, _KINDS.index(kind)] = pos
        n = int(np.prod(shape))
        entries.append((key, shape, pos, n))
        pos += n
    woff.setflags(write=False)
    return tuple(entries), woff
