"""Run a chunked call on all Numba threads or on the calling thread alone: whichever is faster
on this machine now.

Why: a call cut into batch chunks (rnnfast/cpu/_chunks.py) joins its threads once per
forward and twice per backward. When another process keeps a core busy, the OS deschedules
one of the threads and every join waits for it, for up to a time slice (milliseconds).
Measured on 2 cores with one process spinning (forward + backward, mean of 60 calls):
rnn T=10 B=200 H=16 0.45 ms on 2 threads against 0.14 ms on one; with two spinning, rnn
H=64 14 ms against 2.2 ms. On an idle machine the threads win (H=64: 0.61 against 0.97 ms).
No fixed rule picks right on a machine whose load comes and goes, so each call site measures.

Results never depend on the choice: the chunks (their columns and the order in which their
partial gradients are added) are fixed by the shapes and the thread count
(rnnfast.cpu._split.split_chunks); on one thread (numba.set_num_threads(1) around the call)
the same chunks run in turn. Only the time differs.

Policy (one ThreadChoice per shape; a forward and its backward share it, so that they run
in the same mode): an exponential average of the seconds per unit of work (a call, or an
update of the fused loop) for each mode; run the faster one; now and then run the other to
see whether the machine changed (a probe). A lost probe doubles the wait before the next one
(PROBE_GAP up to PROBE_MAX), and waits at least p / PROBE_SHARE after a probe that took p
seconds, so that probing a descheduled thread costs at most about PROBE_SHARE of the time; a
probe faster than the other mode's average resets the wait, and so does an incumbent
overtaken by the other mode's average (it is checked again at once). The first calls of
each mode may compile and are not measured. A time above the average counts as at most CLIP
times it, so one hiccup of the machine moves the average by a bounded step (and a wrong flip
is undone by the next probes, within about 0.1 s), while on a busy machine, where most calls
on all threads wait for a descheduled one, two or three calls move it.
"""

import time

import numba

ALL, ONE = 0, 1  # modes: all Numba threads, the calling thread alone
ALPHA = 0.3  # weight of the newest time in a mode's average
ALPHA_DOWN = 0.5  # the same for a time below the average
WARM_CALLS = 2  # first calls of each mode not measured (a forward and a backward may compile)
PROBE_SHARE = 0.03  # at most this share of the time goes to probing the slower mode
PROBE_GAP = 0.05  # seconds between probes at least
PROBE_MAX = 1.0  # seconds: the longest wait after cheap lost probes
CLIP = 8.0  # a measured time counts as at most CLIP times its mode's average


class ThreadChoice:
    """Chooses the mode of each call at one call site and shape, from the times measured."""

    __slots__ = ("mean", "seen", "next_probe", "losses")

    def __init__(self) -> None:
        self.mean = [0.0, 0.0]  # seconds per unit in each mode (valid once measured)
        self.seen = [0, 0]  # calls run in each mode
        self.next_probe = 0.0  # perf_counter() time from which the slower mode may run again
        self.losses = 0  # probes lost in a row

    def measured(self, mode: int) -> bool:
        return self.seen[mode] > WARM_CALLS

    def faster(self) -> int:
        """The mode with the lower average so far (ALL until both are measured)."""
        if not self.measured(ONE):
            return ALL
        return ONE if self.mean[ONE] < self.mean[ALL] else ALL

    def pick(self, now: float) -> int:
        """The mode of the next call: each mode measured first, then the faster one, or the
        slower one when a probe is due."""
        if not self.measured(ALL):
            return ALL
        if not self.measured(ONE):
            return ONE
        best = self.faster()
        return 1 - best if now >= self.next_probe else best

    def record(self, mode: int, seconds: float, units: int, now: float) -> None:
        """A call in `mode` took `seconds` for `units` units of work, ending at `now`."""
        self.seen[mode] += 1
        if not self.measured(mode):
            return  # it may have compiled (or loaded) its kernels: not a measurement
        x = seconds / max(units, 1)
        probe = self.measured(1 - mode) and mode != self.faster()
        prev = self.mean[mode]
        if self.seen[mode] == WARM_CALLS + 1:
            self.mean[mode] = x
        elif x < prev:  # faster than thought: follow quickly (a wrong first estimate heals)
            self.mean[mode] = prev + ALPHA_DOWN * (x - prev)
        else:  # one hiccup of the machine moves the average by at most ALPHA * (CLIP - 1)
            self.mean[mode] = prev + ALPHA * (min(x, CLIP * prev) - prev)
        if not probe:
            if mode != self.faster():  # the incumbent just lost the lead: check it again soon
                self.next_probe, self.losses = now, 0
            return
        if x < self.mean[1 - mode]:  # the probe beat the incumbent: probe again soon
            self.losses = 0
        else:  # it lost: wait longer before the next one, and long enough to cost little
            self.losses += 1
            backoff = min(PROBE_GAP * 2.0 ** min(self.losses - 1, 20), PROBE_MAX)
            self.next_probe = now + max(backoff, seconds / PROBE_SHARE)

    def expected(self, mode: int) -> float | None:
        """Seconds per unit in `mode` so far, or None if not measured yet."""
        return self.mean[mode] if self.measured(mode) else None

    def run(self, fn, *args, units: int = 1, mode: int | None = None):
        """fn(*args) in `mode` (default: the one picked now), timed and recorded."""
        t0 = time.perf_counter()
        if mode is None:
            mode = self.pick(t0)
        if mode == ALL:
            result = fn(*args)
        else:
            prev = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                result = fn(*args)
            finally:
                numba.set_num_threads(prev)
        t1 = time.perf_counter()
        self.record(mode, t1 - t0, units, t1)
        return result


_CHOICES: dict[tuple, ThreadChoice] = {}
_MAX_CHOICES = 1024  # call sites x shapes remembered; beyond, the oldest are forgotten


def choice_for(key: tuple) -> ThreadChoice:
    """The ThreadChoice of one call site and shape (created on first use)."""
    c = _CHOICES.get(key)
    if c is None:
        if len(_CHOICES) >= _MAX_CHOICES:
            del _CHOICES[next(iter(_CHOICES))]
        c = _CHOICES[key] = ThreadChoice()
    return c
