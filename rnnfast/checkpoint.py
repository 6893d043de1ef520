"""Mid-run checkpoints that resume exactly: when to write one, writing, reading, validating.

A run trained by a grid writes every `checkpoint_every` (a config key outside the run's
identity, read by rnnfast.config.parse_every): a CPU run inside session(results_dir, run_id)
(rnnfast.executors.execute), a CUDA run given its Target explicitly
(rnnfast.executors.run_cuda -> rnnfast.cuda.training.train_group, where one thread serves a
group of runs, so a context variable cannot name each run's target):

    N (int > 0)     every N updates (checked after each interval of rnnfast.run_setup.INTERVAL
                    updates and after each epoch's evaluations)
    "epoch"         after an epoch's evaluations, at most once a minute (the default)
    "Ns"            every N seconds (checked as for N updates)
    0 or "never"    never

DIR/checkpoints/<run_id>.npz, the latest, and <run_id>.prev.npz, the one before. A checkpoint
is an uncompressed .npz (read with allow_pickle=False): the live arrays of the backend (theta,
the optimizer's s1 and s2, the carried recurrent state h and c), the curve so far (curve.step,
curve.epoch, curve.metric, curve.value), the current epoch's first losses and errors, the last
100 losses of the epochs done (the final "loss" is their mean), the final metrics so far
(final.names, final.values), "rnnfast.json" (a 0-d unicode array of JSON: format, run_id,
rnnfast version, source_sha256, position {epoch, update (in the epoch), step (updates done)},
updates_per_epoch, epochs, layout) and "rnnfast.sha256": SHA-256 over every other array's name,
dtype, shape and bytes (rnnfast.json included). The layout is what fixes the arithmetic besides
the config: {nchunks, blas_threads} for the CPU, {backend: "cuda", device, threads (per
block)} for CUDA, whose live arrays are one run's rows of the device arrays (copied to the
host for a save, back to the device on resume).

Nothing else is random after a position: the data of epoch e comes from
default_rng([seed, 1, e]) and its batch order from default_rng([seed, 2, e]), both drawn again
when the epoch starts (rnnfast.run_setup). Checkpoints are taken at interval boundaries, so a
resumed run makes the same compiled calls as an uninterrupted one: same curve, same weights,
bit for bit.

On resume the latest readable checkpoint is used; one that is truncated, corrupt (checksum),
of another run or of other shapes is skipped with a one-line warning naming it (then the one
before, then the start). One written by another rnnfast version or source (provenance's
source_sha256), or with another layout (threads, or another backend or device: a CPU
checkpoint never resumes a CUDA run, nor the other way round), is not used for an exact
resume: one line says so and the run starts over.
"""

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnfast.config import parse_every
from rnnfast.store import CHECKPOINTS, atomic_write

FORMAT = 1
META = "rnnfast.json"
SHA = "rnnfast.sha256"
LIVE = ("theta", "s1", "s2", "h", "c")  # the backend's arrays, restored in place


# ---------------------------------------------------------------- where (the run's session)


@dataclass(frozen=True)
class Target:
    """Where the run being trained keeps its checkpoints."""

    results_dir: Path
    run_id: str

    @property
    def path(self) -> Path:
        return checkpoint_path(self.results_dir, self.run_id)

    @property
    def previous(self) -> Path:
        return self.path.with_name(f"{self.run_id}.prev.npz")


_CURRENT: ContextVar[Target | None] = ContextVar("rnnfast_checkpoint_target", default=None)


@contextlib.contextmanager
def session(results_dir: str | Path, run_id: str) -> Iterator[Target]:
    """Runs trained inside (in this thread) checkpoint to DIR/checkpoints/<run_id>.npz and
    resume from it."""
    token = _CURRENT.set(Target(Path(results_dir), run_id))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def current() -> Target | None:
    """The session's target, None outside one (rnnfast.train called directly)."""
    return _CURRENT.get()


def checkpoint_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / CHECKPOINTS / f"{run_id}.npz"


def remove(results_dir: str | Path, run_id: str) -> None:
    """Delete a run's checkpoints (the run is stored)."""
    t = Target(Path(results_dir), run_id)
    for p in (t.path, t.previous):
        p.unlink(missing_ok=True)


def warn(message: str) -> None:
    """One line on stderr (a grid's workers share the driver's)."""
    print(f"rnnfast: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- file format


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array but SHA: name, dtype, shape, bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == SHA:
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_file(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a checkpoint; ValueError (one line) if unreadable or corrupt."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - truncated zip, bad CRC, not an npz: all unreadable
        why = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"unreadable ({type(e).__name__}: {why})") from None
    if META not in arrays or SHA not in arrays:
        raise ValueError("not an rnnfast checkpoint")
    if str(arrays[SHA][()]) != digest(arrays):
        raise ValueError("checksum mismatch")
    try:
        meta = json.loads(str(arrays.pop(META)[()]))
    except json.JSONDecodeError as e:
        raise ValueError(f"bad metadata ({e})") from None
    arrays.pop(SHA)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return meta, arrays


def write_file(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Atomically (rnnfast.store.atomic_write), the previous checkpoint kept as .prev.npz."""
    out = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    out[META] = np.array(json.dumps(meta, allow_nan=True))
    out[SHA] = np.array(digest(out))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.replace(path, path.with_name(path.name[: -len(".npz")] + ".prev.npz"))
    atomic_write(path, lambda f: np.savez(f, **out))


def fingerprint() -> tuple[str, str | None]:
    """(rnnfast version, source_sha256): the code a checkpoint must come from."""
    from rnnfast.provenance import code  # noqa: PLC0415

    return code()


# ---------------------------------------------------------------- a run's checkpoints


@dataclass
class Resume:
    """Where a run continues (see steps() in rnnfast.run_setup) and what it had so far."""

    epoch: int  # the epoch to continue (1-based)
    update: int  # updates of that epoch done
    step: int  # updates done in all
    curve: dict[str, np.ndarray]  # step, epoch, metric, value
    losses: np.ndarray  # (update,) this epoch's
    errors: np.ndarray
    loss_tail: np.ndarray  # the last (up to) 100 losses of the epochs done
    final: dict[str, float]
    path: Path


class Checkpoints:
    """One run's checkpoints: due(), save() (called by steps()) and load() (by the driver).

    live: the backend's arrays (LIVE names) that a checkpoint saves and a resume fills in
    place; layout: what must match for the same arithmetic (batch chunks, BLAS threads; the
    backend and device). fetch, if set, is called before each save to bring the live arrays
    up to date: a backend that keeps them elsewhere (CUDA: on the device) copies them in."""

    def __init__(self, target: Target, every: object, live: dict[str, np.ndarray],
                 layout: dict[str, Any], updates_per_epoch: int, epochs: int,
                 fetch: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.target = target
        self.kind, self.amount = parse_every(every)
        self.live, self.layout, self.fetch = live, layout, fetch
        self.upe, self.epochs = updates_per_epoch, epochs
        self.resume: Resume | None = None
        self.last_step = 0
        self.last_time = time.monotonic()
        self.written = 0
        self.seconds = 0.0  # spent writing

    def due(self, step: int, end_of_epoch: bool) -> bool:
        if self.kind == "updates":
            return step - self.last_step >= self.amount
        if self.kind == "never" or (self.kind == "epoch" and not end_of_epoch):
            return False
        return time.monotonic() - self.last_time >= self.amount

    def save(self, epoch: int, update: int, step: int, curve: dict[str, np.ndarray],
             losses: np.ndarray, errors: np.ndarray, loss_tail: np.ndarray,
             final: dict[str, float]) -> None:  # fmt: skip
        t0 = time.perf_counter()
        if self.fetch is not None:
            self.fetch()
        version, source = fingerprint()
        meta = {"format": FORMAT, "run_id": self.target.run_id, "rnnfast": version,
                "source_sha256": source, "layout": self.layout,
                "position": {"epoch": epoch, "update": update, "step": step},
                "updates_per_epoch": self.upe, "epochs": self.epochs}  # fmt: skip
        arrays = {**self.live, **{f"curve.{k}": v for k, v in curve.items()},
                  "epoch.losses": losses, "epoch.errors": errors, "loss_tail": loss_tail,
                  "final.names": np.array(list(final), dtype=str),
                  "final.values": np.array(list(final.values()), dtype=np.float64)}  # fmt: skip
        arrays["curve.metric"] = np.asarray(curve["metric"], dtype=str)
        try:
            write_file(self.target.path, meta, arrays)
        except OSError as e:  # a full or read-only disk costs the checkpoint, not the run
            warn(f"{self.target.path}: checkpoint not written ({e.strerror or e}); the run "
                 "goes on and resumes from an earlier one if killed")  # fmt: skip
        self.last_step, self.last_time = step, time.monotonic()
        self.written += 1
        self.seconds += time.perf_counter() - t0

    def load(self) -> Resume | None:
        """The latest usable checkpoint, restored into the live arrays; None: from the start.
        Never raises for a bad file: it is named in one line and skipped."""
        t = self.target
        for path in (t.path, t.previous):
            if not path.is_file():
                continue
            try:
                meta, arrays = read_file(path)
                version, source = fingerprint()
                if (meta.get("rnnfast"), meta.get("source_sha256")) != (version, source):
                    warn(f"checkpoint {path} was written by another rnnfast (version "
                         f"{meta.get('rnnfast')}, source {str(meta.get('source_sha256'))[:12]}); "
                         "not used for an exact resume, training from the start")  # fmt: skip
                    return None
                if meta.get("layout") != self.layout:
                    warn(f"checkpoint {path} {_other_layout(meta.get('layout'), self.layout)}; "
                         "not used for an exact resume, training from the start")  # fmt: skip
                    return None
                resume = self._validated(path, meta, arrays)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                warn(f"skipping checkpoint {path}: {e}")
                continue
            for k in LIVE:
                self.live[k][...] = arrays[k]
            self.resume, self.last_step = resume, resume.step
            return resume
        return None

    def _validated(self, path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> Resume:
        if meta.get("run_id") != self.target.run_id:
            raise ValueError(f"of run {meta.get('run_id')!r}, not {self.target.run_id!r}")
        for k in LIVE:
            a, want = arrays.get(k), self.live[k]
            if a is None or a.shape != want.shape or a.dtype != want.dtype:
                got = None if a is None else f"{a.dtype}{a.shape}"
                raise ValueError(f"{k}: expected {want.dtype}{want.shape}, got {got}")
        pos = meta.get("position") or {}
        epoch, update, step = (int(pos.get(k, -1)) for k in ("epoch", "update", "step"))
        if (meta.get("updates_per_epoch"), meta.get("epochs")) != (self.upe, self.epochs) or not (
            1 <= epoch <= self.epochs and 0 <= update < self.upe
            and step == (epoch - 1) * self.upe + update
        ):  # fmt: skip
            raise ValueError(f"position {pos} does not fit {self.epochs} epochs of {self.upe}")
        losses, errors = arrays["epoch.losses"], arrays["epoch.errors"]
        if losses.shape != (update,) or errors.shape != (update,):
            raise ValueError(f"epoch.losses: expected ({update},), got {losses.shape}")
        names, values = arrays["final.names"], arrays["final.values"]
        curve = {k: arrays[f"curve.{k}"] for k in ("step", "epoch", "metric", "value")}
        curve["metric"] = curve["metric"].astype(object)
        final = {str(n): float(v) for n, v in zip(names, values, strict=True)}
        return Resume(epoch, update, step, curve, losses, errors, arrays["loss_tail"], final, path)


def _other_layout(theirs: Any, ours: dict[str, Any]) -> str:
    """How a checkpoint's layout differs from the run's, for the warning."""

    def backend(layout: Any) -> Any:  # CPU layouts predate the key
        return layout.get("backend", "cpu") if isinstance(layout, dict) else None

    if backend(theirs) != backend(ours):
        return (f"was written by the {backend(theirs)} backend, and this run trains on "
                f"{backend(ours)}")  # fmt: skip
    return f"was made with another layout ({theirs}, now {ours})"


def position(path: Path) -> dict[str, Any] | None:
    """A checkpoint's position {epoch, update, step} and write time, for listings: reads only
    its metadata (the checksum is checked on resume), None if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f[META][()]))
        pos = meta["position"]
        return {"epoch": int(pos["epoch"]), "update": int(pos["update"]),
                "step": int(pos["step"]), "time": path.stat().st_mtime}  # fmt: skip
    except Exception:  # noqa: BLE001 - truncated, foreign, not a checkpoint: nothing to list
        return None
