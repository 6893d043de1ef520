"""A pool of work buffers reused across forward/backward calls.

Why: a forward pass of LSTM 28x100x100 needs about 9 MB of buffers. Fresh allocations of that
size come from pages glibc returned to the kernel after the previous call (heap trimming), so
every call paid for page faults and zeroing: 40 % of the LSTM forward+backward time measured
here (15.9 ms vs 9.3 ms with trimming disabled). Pooling the buffers removes that cost without
changing the process's malloc settings.

Forward takes its saved buffers from the pool and hands them back when its Cache is garbage
collected (the saved object's __del__); backward takes its scratch and returns it before returning.
Only arrays that never reach the caller are pooled. The pool keeps at most MAX_BYTES.
"""

import threading

import numpy as np

MAX_BYTES = 1 << 30


class Pool:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._free: dict[tuple[int, str], list[np.ndarray]] = {}
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def take(self, n: int, dtype: np.dtype) -> np.ndarray:
        """A 1-D array of n elements (contents undefined)."""
        key = (n, np.dtype(dtype).str)
        with self._lock:
            stack = self._free.get(key)
            if stack:
                a = stack.pop()
                self._bytes -= a.nbytes
                return a
        return np.empty(n, dtype)

    def give(self, a: np.ndarray) -> None:
        with self._lock:
            if self._bytes + a.nbytes <= self._max:
                self._free.setdefault((a.size, a.dtype.str), []).append(a)
                self._bytes += a.nbytes

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes


POOL = Pool()
