"""Stopping a grid driver: SIGTERM as Ctrl-C, never in the middle of writing a finished run.

    with stop_signals():          # the driver's main thread
        ...                       # SIGTERM raises Terminated, Ctrl-C KeyboardInterrupt
        with deferred_stop():     # a signal arriving in here is raised when the block ends
            write_run(...)

Terminated is a KeyboardInterrupt, so everything that stops a grid cleanly on Ctrl-C (workers
terminated, stored runs kept) applies to SIGTERM too; the command line tells them apart by the
exit code (130 and 143).
"""

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM in a driver inside stop_signals(): a KeyboardInterrupt, so that everything
    that stops a grid cleanly on Ctrl-C (workers terminated, stored runs kept) applies."""


class _StopSignals:
    """SIGINT and SIGTERM handling while installed by stop_signals() (one per process)."""

    def __init__(self) -> None:
        self.installed = False
        self.writing = False
        self.pending: int | None = None

    def handle(self, signum: int, frame) -> None:
        if self.writing:
            self.pending = signum  # raised when the write ends
        else:
            self.stop(signum)

    @staticmethod
    def stop(signum: int) -> None:
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A stop signal arriving inside takes effect when it ends (a run's write)."""
        if not self.installed or self.writing:
            yield
            return
        self.writing = True
        try:
            yield
        finally:
            self.writing = False
            if self.pending is not None:
                signum, self.pending = self.pending, None
                self.stop(signum)


_STOP = _StopSignals()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Inside: SIGTERM raises Terminated and Ctrl-C KeyboardInterrupt in the main thread, each
    after the write of a finished run in progress. A signal whose handler is not Python's
    default (ignored by the shell that started us, or the application's own) is left alone.
    Outside the main thread (no signal handlers there) this does nothing."""
    if threading.current_thread() is not threading.main_thread() or _STOP.installed:
        yield
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {sig: signal.getsignal(sig) for sig in defaults}
    taken = [sig for sig, default in defaults.items() if previous[sig] == default]
    for sig in taken:
        signal.signal(sig, _STOP.handle)
    _STOP.installed, _STOP.pending = True, None
    try:
        yield
    finally:
        for sig in taken:
            signal.signal(sig, previous[sig])
        _STOP.installed, _STOP.writing, _STOP.pending = False, False, None


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """A stop signal arriving inside takes effect when the block ends (a run's write)."""
    with _STOP.deferred():
        yield
