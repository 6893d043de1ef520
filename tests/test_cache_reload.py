"""numba/numba#8578: a cached function that calls a parallel one, compiled in a process that
had loaded the parallel callee from Numba's cache, lacks the hook that starts the threading
layer on reload. Loaded first in a fresh process, its calls into the threading layer went to
address 0: a segfault (seen after the test suite's worker processes had filled the cache).
rnnfast.cpu starts the threading layer when it is imported, before any kernel loads.

This replays the three processes with a fresh cache directory. Without that start-up call the
third process died with SIGSEGV (returncode -11; checked when this test was written)."""

import os
import subprocess
import sys
import textwrap

STEPS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import rnnfast
    from rnnfast.cpu import forward as cpu_forward
    from rnnfast.cpu._chunks import chunk_sizes, forward_chunks
    from rnnfast.params import infer_spec, packed_layout

    T, B, I, H = 3, 8, 2, 4
    params = rnnfast.init_params("rnn", I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    spec = infer_spec("rnn", params)
    step = sys.argv[1]
    if step in ("callee", "both"):  # the parallel callee alone, with forward_kernel_chunks' types
        entries, woff = packed_layout(spec)
        W = np.concatenate([params[k].ravel() for k, *_ in entries])
        h0 = np.zeros((1, B, H), np.float32)
        saved = np.empty(int(chunk_sizes(0, 1, 1, T, B, I, H, 2)[0]), np.float32)
        e = np.empty(0, np.float32)
        forward_chunks(0, 0, 1, 1, T, B, I, H, W, woff, h0, h0, saved, 2, x, e,
                       np.zeros(0, np.int64), np.empty((T, B, H), np.float32), e,
                       np.empty((1, B, H), np.float32), np.empty((0, B, H), np.float32),
                       np.zeros(0, np.int64), False)
    if step in ("caller", "both"):  # forward_kernel_chunks, which calls it
        z = np.zeros((1, B, H), np.float32)
        out, _, _, _ = cpu_forward(spec, "tanh", params, x, z, None, None, False, nchunks=2)
        ref, _, _ = rnnfast.forward("rnn", params, x, backend="reference")
        assert np.allclose(out, ref, atol=1e-5), "chunked forward differs from the reference"
    print("ok", step)
    """
)


def test_a_caller_compiled_against_a_cached_parallel_callee_loads_first(tmp_path):
    script = tmp_path / "steps.py"
    script.write_text(STEPS)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    # 1: compiles and caches the callee; 2: loads it from the cache, then compiles and caches
    # the caller; 3: a fresh process whose first kernel is that caller, loaded from the cache
    for step in ("callee", "both", "caller"):
        r = subprocess.run([sys.executable, str(script), step], env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, f"step {step}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert f"ok {step}" in r.stdout
