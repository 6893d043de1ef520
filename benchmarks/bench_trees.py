"""The fused update loop of two checkouts, timed alternately: did a change slow it down?

    git worktree add ../old COMMIT
    python benchmarks/bench_trees.py ../old .          # dependency epochs, 2 rounds
    python benchmarks/bench_trees.py ../old . --whole  # whole rnnfast.train epochs

Each round runs every tree in a fresh process (PYTHONPATH=TREE), which times the CPU trainer's
run_updates over one dependency epoch (float32, the task's defaults) for each shape, best of
three warm epochs; the rounds alternate the trees, so a drift of the machine hits both alike.
--whole times rnnfast.train(config) instead, one epoch with its data generation and set-up,
median of CALLS warm calls: the public API, so any two versions compare, e.g. the code before
tasks became plug-ins. Prints the times and new/old per round (< 1: the second tree is
faster).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SHAPES = [(5, 4), (10, 16), (20, 16), (10, 64)]  # (num_steps, hidden_size)

_WORKER = r"""
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from rnnfast.config import resolve
from rnnfast.cpu.trainer import CpuTrainer, blas_threads
from rnnfast.run_setup import RunSetup
out = {}
for n, H in json.loads(sys.argv[1]):
    cfg = resolve({"task": "dependency", "num_steps": n, "hidden_size": H, "dtype": "float32"})
    s = RunSetup(cfg)
    tr = CpuTrainer(s)
    tr.warm_up()
    threads = blas_threads(cfg, s.spec, s.T, s.B)
    limit = threadpool_limits(limits=threads, user_api="blas") if threads else None
    U = s.updates_per_epoch
    losses, errors = np.empty(U), np.empty(U)
    times = []
    for epoch in range(1, 5):
        data = s.epoch_data(epoch)
        tr.reset_state()
        t0 = time.perf_counter()
        tr.run_updates(data, 0, U, 0, losses, errors)
        times.append(time.perf_counter() - t0)
    out[f"{n}x{H}"] = min(times[1:])
print(json.dumps(out))
"""


CALLS = 15  # warm rnnfast.train calls per shape and round (--whole)

_WHOLE_WORKER = r"""
import json, statistics, sys, time
import rnnfast
out = {}
for n, H in json.loads(sys.argv[1]):
    cfg = {"task": "dependency", "num_steps": n, "hidden_size": H, "dtype": "float32"}
    for _ in range(2):
        rnnfast.train(cfg)  # compile or load, first-call caches
    times = []
    for _ in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        rnnfast.train(cfg)
        times.append(time.perf_counter() - t0)
    out[f"{n}x{H}"] = statistics.median(times)
print(json.dumps(out))
"""


def time_tree(tree: Path, whole: bool = False) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    code, extra = (_WHOLE_WORKER, [str(CALLS)]) if whole else (_WORKER, [])
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(SHAPES), *extra], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: the timing process failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path, help="the checkout before the change")
    ap.add_argument("new", type=Path, help="the checkout after it")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--whole", action="store_true",
                    help="time whole rnnfast.train epochs, not the update loop")  # fmt: skip
    args = ap.parse_args()
    for tree in (args.old, args.new):
        if not (tree / "rnnfast" / "__init__.py").is_file():
            ap.error(f"{tree}: not an rnnfast checkout (no rnnfast/__init__.py)")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    w = args.whole
    time_tree(args.old, w), time_tree(args.new, w)  # compile (or load) both trees' kernels
    print(f"{'epoch':<16} {'round':>5} {'old ms':>9} {'new ms':>9} {'new/old':>8}")
    for r in range(1, args.rounds + 1):
        old, new = time_tree(args.old, w), time_tree(args.new, w)
        for key in old:
            print(f"dependency {key:<5} {r:>5} {old[key] * 1e3:>9.1f} {new[key] * 1e3:>9.1f} "
                  f"{new[key] / old[key]:>8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
