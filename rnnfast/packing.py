"""Variable-length sequence data: padding, unpadding and PyTorch's PackedSequence.

    x, lengths = pad_sequences(seqs, batch_first=False, dtype=None)
    seqs = unpad(out, lengths, batch_first=False)
    x, lengths = from_packed(packed, batch_first=False)      # needs torch
    packed = to_packed(x, lengths, batch_first=False)        # needs torch

seqs is a list of B arrays (L_b, I) (numpy arrays or torch tensors) with L_b >= 1. The padded
form is x (T, B, I), or (B, T, I) with batch_first, T = max(L_b), right-padded with zeros:
x[t, b] = seqs[b][t] for t < L_b, else 0; lengths (B,) int64 holds L_b. That is the input
rnnfast.forward(..., lengths=lengths, batch_first=...) and the layers take, and the form
torch's pad_packed_sequence returns: the two packing functions convert between them, with the
sequences in their original (unsorted) order.

torch is never imported at import time; from_packed and to_packed import it when called.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnfast.api import check_lengths


def _as_numpy(name: str, a: object) -> np.ndarray:
    """A numpy view of a numpy array, a torch tensor (detached, on the CPU) or array-like."""
    if hasattr(a, "detach") and hasattr(a, "numpy"):  # a torch tensor, without importing torch
        try:
            return a.detach().cpu().numpy()  # type: ignore[attr-defined]
        except (TypeError, RuntimeError):  # e.g. bfloat16 has no numpy dtype
            dtype = getattr(a, "dtype", "?")
            raise ValueError(
                f"{name}: a {dtype} tensor has no numpy equivalent: convert it (e.g. .float())"
            ) from None
    try:
        return np.asarray(a)
    except Exception as exc:  # noqa: BLE001  (any unreadable object: one line, not a traceback)
        raise ValueError(f"{name}: expected an array, got {type(a).__name__}") from exc


def _float_dtype(name: str, dtype: object) -> np.dtype:
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"{name}: expected a float dtype, got {dtype!r}") from None
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"{name}: expected a float dtype, got {dt}")
    return dt


def _check_batch_first(batch_first: object) -> bool:
    if not isinstance(batch_first, bool):
        raise ValueError(f"batch_first: expected True or False, got {batch_first!r}")
    return batch_first


def pad_sequences(
    seqs: Sequence[Any], *, batch_first: bool = False, dtype: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad B sequences (L_b, I) with zeros into x (T, B, I) (or (B, T, I) with
    batch_first), T = max(L_b); returns (x, lengths) with lengths (B,) int64.

    The sequences must share the feature size I and be float data of one dtype; dtype=None
    keeps it, a float dtype converts to it (then the inputs' float dtypes may differ). x is a
    new C-contiguous array: it never shares memory with the inputs.
    """
    batch_first = _check_batch_first(batch_first)
    if isinstance(seqs, np.ndarray) or not isinstance(seqs, Sequence) or isinstance(seqs, str):
        raise ValueError(
            f"seqs: expected a list of arrays (L, I), got {type(seqs).__name__} "
            "(a padded array is already padded: pass it with lengths)"
        )
    if len(seqs) == 0:
        raise ValueError("seqs: expected at least one sequence, got an empty list")
    want = None if dtype is None else _float_dtype("dtype", dtype)
    arrays = [_as_numpy(f"seqs[{b}]", s) for b, s in enumerate(seqs)]
    first = arrays[0]
    for b, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(
                f"seqs[{b}]: expected a 2-D array (L, I), got {a.ndim}-D shape {a.shape}"
            )
        if a.shape[0] < 1:
            raise ValueError(f"seqs[{b}]: expected at least 1 step, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(
                f"seqs[{b}]: expected float data, got {a.dtype} (convert it, e.g. "
                ".astype(np.float32))"
            )
        if a.shape[1] != first.shape[1]:
            raise ValueError(
                f"seqs[{b}]: expected I={first.shape[1]} features (as seqs[0]), got shape {a.shape}"
            )
        if want is None and a.dtype != first.dtype:
            raise ValueError(
                f"seqs[{b}]: expected dtype {first.dtype} (as seqs[0]), got {a.dtype} "
                "(pass dtype= to convert all)"
            )
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    T, B, I = int(lengths.max()), len(arrays), first.shape[1]
    x = np.zeros(
        (B, T, I) if batch_first else (T, B, I), dtype=first.dtype if want is None else want
    )
    for b, a in enumerate(arrays):
        if batch_first:
            x[b, : a.shape[0]] = a
        else:
            x[: a.shape[0], b] = a
    return x, lengths


def unpad(out: np.ndarray, lengths: object, *, batch_first: bool = False) -> list[np.ndarray]:
    """The valid steps of each sequence of a padded array: out (T, B, ...) (or (B, T, ...)
    with batch_first) -> [out[:lengths[b], b] for b in range(B)], each (lengths[b], ...).

    The inverse of pad_sequences; lengths=None means all T steps of every sequence. The
    results are views into out (writing to them writes out): copy them to keep them past a
    later overwrite of out.
    """
    batch_first = _check_batch_first(batch_first)
    if not isinstance(out, np.ndarray) or out.ndim < 2:
        got = (
            f"{out.ndim}-D shape {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        )
        layout = "(B, T, ...)" if batch_first else "(T, B, ...)"
        raise ValueError(f"out: expected an array {layout} of at least 2 dimensions, got {got}")
    B, T = out.shape[:2] if batch_first else out.shape[1::-1]
    lens = check_lengths(lengths, B, T)
    if lens is None:  # as in rnnfast.forward: every sequence has all T steps
        lens = np.full(B, T, np.int64)
    if batch_first:
        return [out[b, : lens[b]] for b in range(B)]
    return [out[: lens[b], b] for b in range(B)]


def from_packed(packed: Any, *, batch_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A torch PackedSequence -> (x, lengths): x (T, B, ...) (or (B, T, ...) with
    batch_first) zero-padded numpy, T = the longest sequence, lengths (B,) int64, both in the
    sequences' original order (as given to pack_padded_sequence / pack_sequence)."""
    batch_first = _check_batch_first(batch_first)
    torch = _import_torch("from_packed")
    if not isinstance(packed, torch.nn.utils.rnn.PackedSequence):
        raise ValueError(
            f"packed: expected a torch.nn.utils.rnn.PackedSequence, got {type(packed).__name__}"
        )
    padded, lengths = torch.nn.utils.rnn.pad_packed_sequence(packed, batch_first=batch_first)
    x = np.ascontiguousarray(_as_numpy("packed.data", padded))
    return x, np.ascontiguousarray(lengths.numpy(), dtype=np.int64)


def to_packed(x: Any, lengths: object, *, batch_first: bool = False) -> Any:
    """x (T, B, ...) (or (B, T, ...) with batch_first; numpy or torch) and lengths (B,)
    -> torch.nn.utils.rnn.PackedSequence of each sequence's first lengths[b] steps
    (pack_padded_sequence with enforce_sorted=False: the original order is kept).

    The packed data is a copy: it never shares memory with x.
    """
    batch_first = _check_batch_first(batch_first)
    torch = _import_torch("to_packed")
    if not isinstance(x, torch.Tensor):
        a = np.ascontiguousarray(_as_numpy("x", x))
        # torch warns about read-only arrays; packing copies the data anyway
        x = torch.from_numpy(a if a.flags.writeable else a.copy())
    if x.dim() < 2:
        layout = "(B, T, ...)" if batch_first else "(T, B, ...)"
        raise ValueError(
            f"x: expected an array {layout} of at least 2 dimensions, got shape {tuple(x.shape)}"
        )
    B, T = (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])
    if lengths is None:
        raise ValueError(f"lengths: expected ({B},) integers in [1, T={T}], got None")
    lens = check_lengths(_as_numpy("lengths", lengths), B, T)
    return torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.from_numpy(lens), batch_first=batch_first, enforce_sorted=False
    )


def _import_torch(caller: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"rnnfast.{caller} needs PyTorch: pip install torch") from exc
    return torch
