"""One grid driver per results directory: DIR/driver.lock.

    with DriverLock(results_dir):    # raises LockHeld, naming the owner's pid and host
        ...                          # plan and run the grid

Two drivers on one directory would train every run twice (the store stays consistent, but
the work is wasted), so a second driver refuses at once rather than waiting: a user who
started it by mistake sees why at once, and a script can decide for itself whether to retry.

The lock is an flock on DIR/driver.lock. The OS drops it when its process dies, by any
signal, kill -9 included, so a dead driver never blocks the next one. The file holds the
owner's pid, host and start time (JSON) for the refusal message, and is emptied on release:
owner data found under a free flock belongs to a driver that died without releasing it, and
the next driver takes over with a one-line notice. The file is never deleted: a driver
waiting on a deleted file's flock would hold a lock nobody else sees.

Filesystems without flock (some network and FUSE mounts): the written owner alone is the
lock. An owner on this host whose pid is alive holds it and a dead one is stale; an owner on
another host cannot be checked and holds it until its file is removed by hand. Two drivers
starting in the same instant may both win there: each reads the file back after writing it,
which narrows that window without closing it.
"""

import contextlib
import errno
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not a POSIX system: the owner data alone is the lock
    fcntl = None

LOCK_FILE = "driver.lock"
# errors of flock on a filesystem that does not support it (then the owner data decides)
NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


class LockHeld(Exception):
    """Another live driver holds the results directory (the message names it)."""


def _owner_line(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "a driver that has not yet written its pid"
    return (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started "
            f"{owner.get('started', '?')}")  # fmt: skip


def _notice(message: str) -> None:
    print(f"rnnfast: {message}", file=sys.stderr, flush=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class DriverLock:
    """Exclusive use of a results directory by this process (see the module's doc)."""

    def __init__(self, results_dir: str | Path) -> None:
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / LOCK_FILE
        self.fd: int | None = None
        self.flocked = False
        self.me = {"pid": os.getpid(), "host": socket.gethostname(),
                   "started": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip

    # ---------------------------------------------------------------- file contents

    def _read_owner(self) -> dict[str, Any] | None:
        """The owner data in the file; None when it is empty or unreadable (a writer died
        mid-write, or an older format)."""
        try:
            text = os.pread(self.fd, 4096, 0).decode()
            owner = json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def _write_owner(self, owner: dict[str, Any] | None) -> None:
        data = json.dumps(owner).encode() if owner else b""
        os.ftruncate(self.fd, 0)
        if data:
            os.pwrite(self.fd, data, 0)

    def _held_message(self, owner: dict[str, Any] | None, hint: str) -> str:
        return (f"{self.results_dir}: in use by another `rnnfast run grid` ({_owner_line(owner)}); "
                f"{hint}")  # fmt: skip

    # ---------------------------------------------------------------- acquire, release

    def acquire(self) -> "DriverLock":
        """Take the lock or raise LockHeld; OSError when the file cannot be made or written."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire()
        except BaseException:
            os.close(self.fd)
            self.fd, self.flocked = None, False
            raise
        return self

    def _acquire(self) -> None:
        wait_hint = "wait for it to finish, or use another results directory"
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.flocked = True
            except BlockingIOError:
                raise LockHeld(self._held_message(self._read_owner(), wait_hint)) from None
            except OSError as err:
                if err.errno not in NO_FLOCK:
                    raise
        previous = self._read_owner()
        if previous is not None and not self.flocked:
            same_host = previous.get("host") == self.me["host"]
            pid = previous.get("pid")
            if not same_host:
                hint = f"if that driver is gone, delete {self.path}"
                raise LockHeld(self._held_message(previous, hint))
            if isinstance(pid, int) and _pid_alive(pid):
                raise LockHeld(self._held_message(previous, wait_hint))
        if previous is not None:
            _notice(f"{self.path}: taking over from {_owner_line(previous)}, which ended "
                    "without releasing it")  # fmt: skip
        self._write_owner(self.me)
        if not self.flocked and self._read_owner() != self.me:  # another driver wrote after us
            raise LockHeld(self._held_message(self._read_owner(), wait_hint))

    def release(self) -> None:
        """Empty the file (the owner is gone) and drop the flock; never raises for a file
        that cannot be written (a full or read-only disk): the flock goes with the close."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if self.flocked or self._read_owner() == self.me:
                self._write_owner(None)
        os.close(self.fd)  # drops the flock
        self.fd, self.flocked = None, False

    def __enter__(self) -> "DriverLock":
        return self if self.fd is not None else self.acquire()  # acquire() may come first

    def __exit__(self, *exc) -> None:
        self.release()
