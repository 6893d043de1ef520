"""All threads or one for chunked calls (rnnfast/cpu/_threads.py): the choice follows the
measured times, and never changes a result."""

import numba
import numpy as np
import pytest

import rnnfast
from rnnfast.cpu import _threads
from rnnfast.cpu._threads import ALL, CLIP, ONE, PROBE_GAP, PROBE_SHARE, WARM_CALLS, ThreadChoice

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")


def drive(choice: ThreadChoice, times: dict[int, float], calls: int, now: float = 0.0):
    """Run `calls` calls at a fake clock, mode m taking times[m] seconds; the modes run."""
    modes = []
    for _ in range(calls):
        mode = choice.pick(now)
        now += times[mode]
        choice.record(mode, times[mode], 1, now)
        modes.append(mode)
    return modes, now


def test_measures_both_modes_then_runs_the_faster():
    c = ThreadChoice()
    modes, _ = drive(c, {ALL: 1e-3, ONE: 2e-3}, 2 * WARM_CALLS + 2)
    # the first calls of each mode are not measurements (they may compile)
    assert modes == [ALL] * (WARM_CALLS + 1) + [ONE] * (WARM_CALLS + 1)
    modes, _ = drive(c, {ALL: 1e-3, ONE: 2e-3}, 200, now=1.0)
    assert modes.count(ONE) <= 200 * 1e-3 / PROBE_GAP + 1  # probes only, PROBE_GAP apart
    assert c.faster() == ALL


def test_a_stall_on_all_threads_moves_to_one_at_once_and_back_when_idle():
    c = ThreadChoice()
    _, now = drive(c, {ALL: 1e-4, ONE: 1.5e-4}, 10)
    assert c.faster() == ALL
    _, now = drive(c, {ALL: 5e-3, ONE: 1.5e-4}, 1, now)  # a descheduled thread: one stall
    assert c.faster() == ONE
    modes, now = drive(c, {ALL: 5e-3, ONE: 1.5e-4}, 20_000, now)  # the load persists
    probes = modes.count(ALL)
    elapsed = sum(5e-3 if m == ALL else 1.5e-4 for m in modes)
    assert probes * 5e-3 <= PROBE_SHARE * elapsed * 1.2 + 5e-3  # probing costs ~PROBE_SHARE
    modes, now = drive(c, {ALL: 1e-4, ONE: 1.5e-4}, 20_000, now)  # the machine is idle again
    assert c.faster() == ALL
    assert modes[-1000:].count(ONE) < 10


def test_units_make_slices_of_different_sizes_comparable():
    c = ThreadChoice()
    for mode in (ALL, ONE):
        for _ in range(WARM_CALLS):
            c.record(mode, 1.0, 1, 0.0)  # not measured
    c.record(ALL, 0.1, 100, 0.0)
    c.record(ONE, 0.3, 100, 0.0)
    assert c.expected(ALL) == pytest.approx(1e-3) and c.expected(ONE) == pytest.approx(3e-3)


def test_one_hiccup_costs_a_fraction_of_a_second():
    c = ThreadChoice()
    _, now = drive(c, {ALL: 1e-4, ONE: 1.6e-4}, 50)
    _, now = drive(c, {ALL: 0.05, ONE: 1.6e-4}, 1, now)  # the machine stalls once, 500x
    assert c.expected(ALL) <= 1e-4 * (1 + 0.3 * (CLIP - 1)) + 1e-12  # clipped
    modes, _ = drive(c, {ALL: 1e-4, ONE: 1.6e-4}, 5000, now)  # 0.5 s of calls
    assert modes.count(ONE) * 1.6e-4 < 3 * PROBE_GAP  # back on all threads after 2-3 probes
    assert c.faster() == ALL


@pytest.fixture
def forced(monkeypatch):
    """force(mode) makes every ThreadChoice pick `mode` (None: alternate, starting with ONE)."""

    def force(mode):
        state = {"n": 0}

        def pick(self, now):
            state["n"] += 1
            return mode if mode is not None else state["n"] % 2

        monkeypatch.setattr(ThreadChoice, "pick", pick)
        _threads._CHOICES.clear()
        return state

    return force


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_one_thread_gives_the_same_bits_as_all(cell, forced):
    T, B, I, H = 10, 64, 3, 48  # work above the split threshold for every cell
    p = rnnfast.init_params(cell, I, H, num_layers=2, bidirectional=True, dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    dout = rng.standard_normal((T, B, 2 * H))
    lengths = rng.integers(1, T + 1, B)
    results = []
    for mode in (ALL, ONE):
        state = forced(mode)
        out, h_n, cache = rnnfast.forward(cell, p, x, lengths=lengths)
        grads = rnnfast.backward(cell, p, cache, dout)
        assert state["n"] == 2  # forward and backward ran in chunks, through the choice
        results.append([out, h_n[0] if isinstance(h_n, tuple) else h_n, *grads.values()])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_training_in_slices_on_one_thread_or_all_gives_the_same_run(forced, monkeypatch):
    from rnnfast.cpu import trainer

    monkeypatch.setattr(trainer, "SLICE_SECONDS", 1e-9)  # one update per slice once measured
    cfg = {"task": "dependency", "cell": "gru", "hidden_size": 64, "num_steps": 10,
           "batch_size": 200, "epochs": 1, "seed": 3, "sequence_length": 100_000}  # fmt: skip
    runs = []
    for mode in (ALL, ONE, None):
        state = forced(mode)
        result = rnnfast.train(cfg)
        assert state["n"] > 10  # many slices went through the choice
        runs.append(result)
    for other in runs[1:]:
        assert other.curves.equals(runs[0].curves)
        for k, v in runs[0].params.items():
            np.testing.assert_array_equal(other.params[k], v)
