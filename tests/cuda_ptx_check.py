"""Compile every CUDA kernel for a real GPU (sm_90 PTX through NVVM) without one, and report
ptxas's register count per thread. Run by tests/test_cuda_compile.py in a subprocess without
the simulator; prints one line "kernel dtype registers" per kernel (registers -1 without
ptxas). The simulator cannot catch what only the CUDA compiler rejects (typing in device code,
arrays returned from device functions), nor a kernel too large for its block size."""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numba.cuda.dispatcher as dispatcher
import numpy as np
from numba import cuda, typeof

CC = (9, 0)
# device functions are compiled for the current device; there is none here
dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)

from rnnfast.cuda import _api, _train_kernel  # noqa: E402


def arr(dtype, ndim):
    return typeof(np.zeros((1,) * ndim, dtype))


def signatures(dt):
    i, i64 = typeof(1), np.int64
    a1, a3, lens = arr(dt, 1), arr(dt, 3), arr(i64, 1)
    # as rnnfast/cuda/_api.py launches them: dims, W, woff, states, lens, buf, off, ...
    fwd = (i,) * 9 + (a1, arr(i64, 2), a3, a3, lens, a1, arr(i64, 1), a3, a3)
    bwd = (i,) * 9 + (a1, arr(i64, 2), a3, a3, a3, a3, lens, a1, arr(i64, 1))
    wgrad = (i,) * 7 + (a1, arr(i64, 2), a1, arr(i64, 1), a1)
    return {"forward_kernel": (_api.forward_kernel, fwd),
            "backward_kernel": (_api.backward_kernel, bwd),
            "weight_grad_kernel": (_api.weight_grad_kernel, wgrad),
            **_train_kernel.signatures(dt)}  # fmt: skip


def ptxas() -> str | None:
    found = shutil.which("ptxas")
    if found:
        return found
    try:
        import nvidia.cuda_nvcc  # noqa: PLC0415

        cand = Path(next(iter(nvidia.cuda_nvcc.__path__))) / "bin" / "ptxas"
        return str(cand) if cand.exists() else None
    except ImportError:
        return None


def main() -> None:
    tool = ptxas()
    for dt in (np.float32, np.float64):
        for name, (kernel, sig) in signatures(dt).items():
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
            regs = -1
            if tool:
                with tempfile.TemporaryDirectory() as tmp:
                    src = Path(tmp) / "k.ptx"
                    src.write_text(ptx)
                    out = subprocess.run([tool, f"-arch=sm_{CC[0]}{CC[1]}", "-v", str(src), "-o",
                                          str(Path(tmp) / "k.cubin")], capture_output=True,
                                         text=True, check=True)  # fmt: skip
                    regs = int(re.findall(r"Used (\d+) registers", out.stderr)[-1])
            print(name, np.dtype(dt).name, regs, flush=True)


if __name__ == "__main__":
    sys.exit(main())
