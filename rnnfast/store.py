"""Results store: one Parquet file per run, written atomically; compact() merges them.

Layout of a results directory DIR:

    DIR/runs/<run_id>.parquet            one run (write_run)
    DIR/models/<run_id>.npz              its trained model, when its status is "ok"
    DIR/checkpoints/<run_id>[.prev].npz  a run in progress (rnnfast.checkpoint)
    DIR/progress/<run_id>.json           its live state (rnnfast.live)
    DIR/compact-<UTC time>-<hex>.parquet many runs (compact)
    DIR/runs/.<run_id>.<pid>.<hex>.tmp   temporaries: never read; stale ones are removed
    DIR/.compact-<...>.<pid>.<hex>.tmp   (and DIR/models/.<run_id>...tmp)

A run file holds the curve in long form, columns step (int64), epoch (int64), metric (string),
value (float64) -- no rows for a run that failed before its first update -- and in the Parquet
schema metadata b"rnnfast.format" = b"1" and b"rnnfast.run" = the RunRecord as JSON (NaN and
inf as Python's json writes them). A compacted file has a run_id (string) column first, then
the same four; its metadata holds b"rnnfast.format", b"rnnfast.generation" (one more than the
largest generation among the compacted files it merged) and b"rnnfast.runs.zlib", the
zlib-compressed JSON list of the records (provenance repeats from run to run, and Parquet
metadata is stored uncompressed).

A model file is an uncompressed .npz (read with allow_pickle=False, no pickle anywhere): one
array per parameter under its name in the run's params -- PyTorch's state-dict keys of the
recurrent layers (weight_ih_l0, ...), "head.weight", "head.bias", "embedding.weight" -- one
array "artifact.<name>" per array-valued artifact, and "rnnfast.json", a 0-d unicode array
holding JSON: {"format", "run_id", "rnnfast", "config", "form" (the data form the run trained
on, rnnfast.seqdata.Form's fields), "artifacts" (the JSON-valued ones, e.g. a vocabulary)}.
It is written before the run file (a run file saying "ok" has its model unless the run was
stored by an rnnfast without models) and removed when the run is stored again without one.
Compaction leaves models/ alone: a model belongs to the run id, wherever its record is.

Writes go to a temporary in the same directory, are fsynced, os.replace'd into place, and the
directory is fsynced: a reader sees the old file or the new one, a crash leaves at most a
temporary. A file that cannot be read (truncated, corrupt, another format) is skipped with a
warning naming it; nothing partial is ever returned as a run.

Precedence when a run_id is stored more than once: a per-run file wins over any compacted copy
(compact() deletes the per-run files it merged, so one still there was written after it --
e.g. by --force -- or is an identical copy left by a compaction that crashed before deleting);
among compacted files the higher generation wins, then the later file name.

load_results() returns pandas DataFrames. runs: run_id, grid, status, error, started,
finished (datetime64 UTC), wall_time, compile_time, then one column per config key with its
plain name (a key that clashes with those columns gets "config." in front), "final.<name>"
per final metric and "prov.<name>" per provenance entry (nested dicts joined with dots,
lists as JSON text). List-valued config values (lags, shifts) become tuples: hashable, so
groupby, drop_duplicates and plot hues work on them; dicts become JSON text.
curves: run_id, step, epoch, metric, value with string run_id/metric, sorted by run_id.
"""

import json
import math
import os
import re
import secrets
import time
import warnings
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FORMAT = 1
FORMAT_KEY = b"rnnfast.format"
RUN_KEY = b"rnnfast.run"
RUNS_KEY = b"rnnfast.runs.zlib"
GEN_KEY = b"rnnfast.generation"
STATUSES = ("ok", "failed", "diverged")
MODELS = "models"  # DIR/models/<run_id>.npz
CHECKPOINTS = "checkpoints"  # DIR/checkpoints/<run_id>.npz (rnnfast.checkpoint)
MODEL_FORMAT = 1
MODEL_META = "rnnfast.json"
ARTIFACT = "artifact."
STALE_SECONDS = 600.0  # a temporary this old belongs to a writer that died
ROW_GROUP_ROWS = 1 << 17
CURVE_SCHEMA = pa.schema(
    [("step", pa.int64()), ("epoch", pa.int64()), ("metric", pa.string()), ("value", pa.float64())]
)
COMPACT_SCHEMA = pa.schema([("run_id", pa.string()), *CURVE_SCHEMA])
RUN_COLUMNS = ["run_id", "grid", "status", "error", "started", "finished", "wall_time",
               "compile_time"]  # fmt: skip
_RUN_ID = re.compile(r"[A-Za-z0-9_-]+")
_COMPACT = re.compile(r"compact-[A-Za-z0-9_-]+\.parquet")
_cleaned: set[Path] = set()  # directories this process already swept for stale temporaries


@dataclass
class RunRecord:
    """Everything known about one run except its curve."""

    run_id: str
    grid: str | None
    config: dict[str, Any]
    point: dict[str, Any]  # the grid axis values of this run; {} outside a grid
    status: str  # "ok" | "failed" | "diverged"
    error: str = ""  # traceback or divergence message
    final: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    started: str = ""  # ISO 8601 UTC, see utc_now()
    finished: str = ""
    wall_time: float = 0.0  # seconds
    compile_time: float | None = None  # seconds
    # the trained model on its way to the store (model_of()); not part of the JSON record
    model: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), default=_json_default)

    def as_dict(self) -> dict[str, Any]:
        """The stored record (every field but model)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunRecord":
        """From stored JSON; keys a later version adds are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def utc_now() -> str:
    """The current time as ISO 8601 UTC, the form RunRecord.started/finished use."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, set | frozenset):
        return sorted(o, key=str)
    return str(o)  # Path, dtype, ...: a record must never fail to serialise


# ---------------------------------------------------------------- writing


def _curve_table(curves: pd.DataFrame | None) -> pa.Table:
    if curves is None:
        return CURVE_SCHEMA.empty_table()
    missing = [c for c in CURVE_SCHEMA.names if c not in curves.columns]
    if missing:
        raise ValueError(f"curves: expected columns {CURVE_SCHEMA.names}, missing {missing}")
    return pa.table({
        "step": np.asarray(curves["step"], dtype=np.int64),
        "epoch": np.asarray(curves["epoch"], dtype=np.int64),
        "metric": pa.array(curves["metric"].astype(str).to_numpy(dtype=object), pa.string()),
        "value": np.asarray(curves["value"], dtype=np.float64),
    }, schema=CURVE_SCHEMA)  # fmt: skip


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(final: Path, tmp_stem: str, write) -> None:
    """write(file) into a temporary next to final, fsync, rename over final, fsync the dir."""
    tmp = final.parent / f".{tmp_stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def atomic_write(final: Path, write) -> None:
    """write(file) to final atomically, as every file of the store (a temporary beside it)."""
    _atomic_write(final, final.name.split(".")[0], write)


def clean_stale(results_dir: str | Path, older_than: float = STALE_SECONDS) -> int:
    """Remove temporaries older than older_than seconds (left by killed writers); the count."""
    d = Path(results_dir)
    cutoff, n = time.time() - older_than, 0
    dirs = [d, d / "runs", d / MODELS, d / CHECKPOINTS]
    for p in [q for sub in dirs for q in sub.glob(".*.tmp")]:
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
                n += 1
        except OSError:
            pass
    return n


def write_run(results_dir: str | Path, record: RunRecord, curves: pd.DataFrame | None) -> Path:
    """Write (or atomically replace) DIR/runs/<run_id>.parquet; the driver alone calls this."""
    if not isinstance(record.run_id, str) or not _RUN_ID.fullmatch(record.run_id):
        raise ValueError(f"run_id: expected letters, digits, '_' or '-', got {record.run_id!r}")
    if record.status not in STATUSES:
        raise ValueError(f"status: expected one of {list(STATUSES)}, got {record.status!r}")
    table = _curve_table(curves)
    meta = {FORMAT_KEY: str(FORMAT).encode(), RUN_KEY: record.to_json().encode()}
    table = table.replace_schema_metadata(meta)
    runs_dir = Path(results_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    if runs_dir not in _cleaned:
        _cleaned.add(runs_dir)
        clean_stale(results_dir)
    final = runs_dir / f"{record.run_id}.parquet"
    model_path = Path(results_dir) / MODELS / f"{record.run_id}.npz"
    if record.model is not None and record.status == "ok":
        arrays = model_arrays(record.run_id, record.config, **record.model)
        model_path.parent.mkdir(exist_ok=True)
        _atomic_write(model_path, record.run_id, lambda f: np.savez(f, **arrays))
    _atomic_write(
        final, record.run_id, lambda f: pq.write_table(table, f, write_page_checksum=True)
    )
    if record.model is None or record.status != "ok":
        model_path.unlink(missing_ok=True)  # an earlier run's model is not this run's
    return final


# ---------------------------------------------------------------- models


def model_of(result: Any) -> dict[str, Any] | None:
    """RunRecord.model of a TrainResult (params, artifacts, the form in info["form"]), None
    unless it finished ok."""
    if getattr(result, "status", None) != "ok" or not getattr(result, "params", None):
        return None
    return {"params": result.params, "artifacts": dict(result.artifacts or {}),
            "form": (result.info or {}).get("form")}  # fmt: skip


def model_arrays(run_id: str, config: dict[str, Any], params: dict[str, np.ndarray],
                 artifacts: dict[str, Any],
                 form: dict[str, Any] | None) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of a model file (see the module docstring); also `rnnfast export --format
    npz`'s."""
    from rnnfast import __version__  # noqa: PLC0415

    out = {}
    for k, v in params.items():
        if k == MODEL_META or k.startswith(ARTIFACT):
            raise ValueError(f"params: {k!r} is a reserved name in a model file")
        out[k] = np.ascontiguousarray(v)
    plain = {}
    for k, v in artifacts.items():
        if isinstance(v, np.ndarray):
            out[ARTIFACT + k] = np.ascontiguousarray(v)
        else:
            plain[k] = v
    meta = {"format": MODEL_FORMAT, "run_id": run_id, "rnnfast": __version__, "config": config,
            "form": form, "artifacts": plain}  # fmt: skip
    out[MODEL_META] = np.array(json.dumps(meta, default=_json_default))
    return out


def read_model_file(path: str | Path) -> dict[str, Any]:
    """{"params", "artifacts", "form", "config", "run_id", "rnnfast"} of a model file;
    ValueError (one line naming the file) if it is not one or cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if MODEL_META not in f.files:
                raise ValueError("not an rnnfast model file (no rnnfast.json)")
            meta = json.loads(str(f[MODEL_META][()]))
            if int(meta.get("format", 0)) > MODEL_FORMAT:
                raise ValueError(f"model format {meta['format']} is newer than this rnnfast's "
                                 f"({MODEL_FORMAT})")  # fmt: skip
            params = {k: f[k] for k in f.files if k != MODEL_META and not k.startswith(ARTIFACT)}
            arts = {k[len(ARTIFACT) :]: f[k] for k in f.files if k.startswith(ARTIFACT)}
    except (OSError, EOFError, KeyError, TypeError, zlib.error, json.JSONDecodeError,
            ValueError) as e:  # fmt: skip
        raise ValueError(f"{path}: cannot read the model ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile and kin: a damaged file
        raise ValueError(f"{path}: cannot read the model ({type(e).__name__}: {e})") from None
    return {"params": params, "artifacts": {**meta.get("artifacts", {}), **arts},
            "form": meta.get("form"), "config": meta.get("config"),
            "run_id": meta.get("run_id"), "rnnfast": meta.get("rnnfast")}  # fmt: skip


def model_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / MODELS / f"{run_id}.npz"


def read_model(results_dir: str | Path, run_id: str) -> dict[str, Any] | None:
    """The stored model of a run (as read_model_file), None when it has none."""
    path = model_path(results_dir, run_id)
    if not path.is_file():
        return None
    return read_model_file(path)


# ---------------------------------------------------------------- scanning (metadata only)


@dataclass
class _Copy:
    """One stored copy of a run."""

    record: dict[str, Any]
    path: Path
    rank: tuple  # the highest wins, see the module docstring
    stat: os.stat_result | None = None  # per-run files: to see whether it changed since
    file_ids: set[str] = field(default_factory=set)  # compacted: every run_id in that file

    @property
    def single(self) -> bool:  # a per-run file, not a compacted one
        return self.rank[0] == 1


def _format_ok(meta: dict) -> None:
    fmt = meta.get(FORMAT_KEY)
    if fmt is None:
        raise ValueError("not an rnnfast results file")
    if int(fmt) > FORMAT:
        raise ValueError(f"format {int(fmt)} is newer than this rnnfast's ({FORMAT})")


def _checked(rec: Any) -> dict[str, Any]:
    if not isinstance(rec, dict) or not isinstance(rec.get("run_id"), str):
        raise ValueError("a run record without a run_id")
    if rec.get("status") not in STATUSES:
        raise ValueError(f"run {rec['run_id']}: unknown status {rec.get('status')!r}")
    return rec


def _scan_run_file(path: Path) -> _Copy:
    st = path.stat()
    schema = pq.read_schema(path)
    meta = schema.metadata or {}
    _format_ok(meta)
    if schema.names != CURVE_SCHEMA.names:
        raise ValueError(f"columns {schema.names}, expected {CURVE_SCHEMA.names}")
    rec = _checked(json.loads(meta[RUN_KEY]))
    if rec["run_id"] != path.stem:
        raise ValueError(f"holds run {rec.get('run_id')!r}, not {path.stem!r}")
    return _Copy(rec, path, (1, 0, ""), st)


def _scan_compact_file(path: Path) -> list[_Copy]:
    schema = pq.read_schema(path)
    meta = schema.metadata or {}
    _format_ok(meta)
    if schema.names != COMPACT_SCHEMA.names:
        raise ValueError(f"columns {schema.names}, expected {COMPACT_SCHEMA.names}")
    records = [_checked(r) for r in json.loads(zlib.decompress(meta[RUNS_KEY]))]
    rank, ids = (0, int(meta[GEN_KEY]), path.name), {r["run_id"] for r in records}
    return [_Copy(r, path, rank, None, ids) for r in records]


def _parallel(fn, items: list) -> list[tuple[Any, Exception | None]]:
    """[(fn(x), None) or (None, error)] in order; I/O bound, so threads help."""

    def safe(x):
        try:
            return fn(x), None
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, not fatal
            return None, e

    if len(items) < 16:
        return [safe(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as ex:
        return list(ex.map(safe, items))


def _skip(path: Path, err: Exception) -> None:
    # warnings are raised here, in the calling thread: warning filters are not thread-safe
    warnings.warn(f"rnnfast.store: skipping unreadable {path}: {err}", stacklevel=3)


def _files(results_dir: Path) -> tuple[list[Path], list[Path]]:
    runs = sorted(p for p in (results_dir / "runs").glob("*.parquet") if _RUN_ID.fullmatch(p.stem))
    compacts = sorted(
        p for p in results_dir.glob("compact-*.parquet") if _COMPACT.fullmatch(p.name)
    )
    return runs, compacts


def _scan(results_dir: Path) -> tuple[dict[str, _Copy], list[tuple], list[_Copy]]:
    """(winning copy per run_id, readable compacted files as (path, generation, run_ids),
    readable per-run copies)."""
    run_files, compact_files = _files(results_dir)
    copies: list[_Copy] = []
    per_run: list[_Copy] = []
    compacts: list[tuple[Path, int, set[str]]] = []
    for path, (c, err) in zip(
        compact_files, _parallel(_scan_compact_file, compact_files), strict=True
    ):
        if err is not None:
            _skip(path, err)
        else:
            copies += c
            compacts.append((path, int(c[0].rank[1]) if c else 0,
                             {x.record["run_id"] for x in c}))  # fmt: skip
    for path, (c, err) in zip(run_files, _parallel(_scan_run_file, run_files), strict=True):
        if err is not None:
            _skip(path, err)
        else:
            per_run.append(c)
    winners: dict[str, _Copy] = {}
    for c in copies + per_run:
        rid = c.record["run_id"]
        if rid not in winners or c.rank > winners[rid].rank:
            winners[rid] = c
    return winners, compacts, per_run


def records_of(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """{run_id: record (RunRecord's fields as a dict)} for every stored run; reads only file
    footers."""
    winners, _, _ = _scan(Path(results_dir))
    return {rid: c.record for rid, c in sorted(winners.items())}


def status_of(results_dir: str | Path) -> dict[str, str]:
    """{run_id: status} for every stored run; reads only file footers."""
    return {rid: rec["status"] for rid, rec in records_of(results_dir).items()}


# ---------------------------------------------------------------- reading curves


def _read_table(path: Path, columns: list[str] | None = None, filters=None) -> pa.Table:
    return pq.read_table(path, columns=columns, filters=filters, page_checksum_verification=True)


def _run_curves(path: Path, run_id: str) -> pa.Table:
    t = _read_table(path).cast(CURVE_SCHEMA).replace_schema_metadata(None)
    return t.add_column(0, "run_id", pa.array([run_id] * t.num_rows, pa.string()))


def _compact_curves(path: Path, run_ids: list[str], all_ids: set[str]) -> pa.Table:
    t = _read_table(path).cast(COMPACT_SCHEMA).replace_schema_metadata(None)
    if set(run_ids) == all_ids:
        return t
    return t.filter(pc.is_in(t["run_id"], pa.array(sorted(run_ids), pa.string())))


def _segments(t: pa.Table) -> list[tuple[str, int, int]]:
    """(run_id, offset, length) of each block of equal run_id (runs are stored contiguously)."""
    if t.num_rows == 0:
        return []
    enc = pc.dictionary_encode(t["run_id"]).combine_chunks()
    idx = enc.indices.to_numpy(zero_copy_only=False)
    starts = np.r_[0, np.flatnonzero(np.diff(idx)) + 1]
    lengths = np.diff(np.r_[starts, len(idx)])
    names = enc.dictionary.to_pylist()
    return [(names[idx[a]], int(a), int(n)) for a, n in zip(starts, lengths, strict=True)]


def _curves_of(winners: dict[str, _Copy]) -> tuple[pa.Table, set[str]]:
    """Curves of all winners (with run_id), sorted by run_id keeping the stored row order, and
    the run_ids whose data could not be read."""
    by_path: dict[Path, list[str]] = {}
    for rid, c in winners.items():
        by_path.setdefault(c.path, []).append(rid)
    paths = list(by_path)

    def read(p: Path) -> pa.Table:
        ids = by_path[p]
        c = winners[ids[0]]
        return _run_curves(p, ids[0]) if c.single else _compact_curves(p, ids, c.file_ids)

    pieces, bad = [], set()
    for p, (t, err) in zip(paths, _parallel(read, paths), strict=True):
        if err is not None:
            _skip(p, err)
            bad.update(by_path[p])
        elif winners[by_path[p][0]].single:
            pieces.append((by_path[p][0], len(pieces), t))
        else:  # slicing by run is zero-copy, unlike a sort of every row
            pieces += [(r, len(pieces) + k, t.slice(a, n)) for k, (r, a, n) in
                       enumerate(_segments(t))]  # fmt: skip
    pieces.sort(key=lambda x: x[:2])
    return pa.concat_tables([COMPACT_SCHEMA.empty_table(), *(x[2] for x in pieces)]), bad


def _flatten(d: dict[str, Any], prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    for k, v in d.items():
        if isinstance(v, dict):
            _flatten(v, f"{prefix}{k}.", out)
        elif isinstance(v, list | tuple):
            out[prefix + k] = json.dumps(v, default=_json_default)
        else:
            out[prefix + k] = v
    return out


def _config_value(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_config_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=_json_default)
    return v


def _union(keys: Iterable[str], seen: dict[str, None]) -> None:
    for k in keys:
        seen.setdefault(k, None)


def _column(values: list[Any]) -> pd.Series:
    """A column of runs: ints and bools stay ints and bools (nullable Int64/boolean when some
    runs lack the key) instead of the float/object pandas would make of them."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    missing = len(present) < len(values)
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        return pd.Series(values, dtype="boolean" if missing else bool)
    if present and all(isinstance(v, int | np.integer) for v in present):
        return pd.Series(values, dtype="Int64" if missing else np.int64)
    return pd.Series(values)


def _runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows, config_cols, final_cols, prov_cols = [], {}, {}, {}
    for r in records:
        row = {c: r.get(c) for c in RUN_COLUMNS}
        cfg = {(f"config.{k}" if k in RUN_COLUMNS else k): _config_value(v)
               for k, v in (r.get("config") or {}).items()}  # fmt: skip
        fin = {f"final.{k}": v for k, v in (r.get("final") or {}).items()}
        prov = _flatten(r.get("provenance") or {}, "prov.", {})
        for part, seen in ((cfg, config_cols), (fin, final_cols), (prov, prov_cols)):
            _union(part, seen)
            row.update(part)
        rows.append(row)
    extra = list(config_cols) + list(final_cols) + list(prov_cols)
    df = pd.DataFrame(rows, columns=RUN_COLUMNS + extra)
    for c in ("started", "finished"):
        df[c] = pd.to_datetime([v or None for v in df[c]], utc=True, format="ISO8601",
                               errors="coerce")  # fmt: skip
    for c in ("wall_time", "compile_time"):
        df[c] = df[c].astype("float64")
    for c in extra:
        df[c] = _column([row.get(c) for row in rows])
    return df


def load_results(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves) of every stored run; see the module docstring for the columns. A
    missing directory, or a file, is a ValueError (an empty directory: empty tables)."""
    d = Path(results_dir)
    if not d.is_dir():
        what = "is a file, not a results directory" if d.exists() else "no such directory"
        raise ValueError(f"{d}: {what}")
    winners, _, _ = _scan(d)
    table, bad = _curves_of(winners)
    if bad:
        table = table.filter(pc.invert(pc.is_in(table["run_id"], pa.array(sorted(bad)))))
    records = sorted((c.record for rid, c in winners.items() if rid not in bad),
                     key=lambda r: (r.get("started") or "~", r["run_id"]))  # fmt: skip
    return _runs_frame(records), table.to_pandas()


def results_dirs(path: str | Path) -> list[Path]:
    """path itself if it holds runs, else its subdirectories that do."""
    path = Path(path)

    def holds(p: Path) -> bool:
        return (p / "runs").is_dir() or any(p.glob("compact-*.parquet"))

    if holds(path):
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and holds(p)) if path.is_dir() else []


def find_run(path: str | Path, run_id: str) -> tuple[Path, RunRecord, pd.DataFrame]:
    """(results directory, record, curve) of the one run whose id is or starts with run_id in
    path, a results directory or a directory of them; ValueError (one line: none, or the
    candidates when several match) otherwise."""
    found = []
    for d in results_dirs(path):
        try:
            found.append((d, *read_run(d, run_id)))
        except ValueError as err:
            if "ambiguous" in str(err):  # several runs in d: say so, with their ids
                raise
    if not found:
        raise ValueError(f"run_id: no run matching {run_id!r} under {path}")
    if len(found) > 1:
        where = ", ".join(f"{r.run_id} in {d}" for d, r, _ in found)
        raise ValueError(f"run_id: {run_id!r} is ambiguous under {path}: {where}")
    return found[0]


def read_run(results_dir: str | Path, run_id: str) -> tuple[RunRecord, pd.DataFrame]:
    """The record and curve (step, epoch, metric, value) of the run whose id is or starts with
    run_id; ValueError when none or several match."""
    winners, _, _ = _scan(Path(results_dir))
    matches = [run_id] if run_id in winners else sorted(r for r in winners if r.startswith(run_id))
    if not matches:
        raise ValueError(f"run_id: no run {run_id!r} in {results_dir}")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise ValueError(f"run_id: {run_id!r} is ambiguous in {results_dir}: {shown}")
    c = winners[matches[0]]
    if c.single:
        t = _read_table(c.path).cast(CURVE_SCHEMA)
    else:
        t = _read_table(c.path, CURVE_SCHEMA.names, filters=[("run_id", "=", matches[0])])
    return RunRecord.from_dict(c.record), t.replace_schema_metadata(None).to_pandas()


# ---------------------------------------------------------------- compaction


def _compact_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"compact-{stamp}-{secrets.token_hex(3)}.parquet"


class _Unreadable(Exception):
    def __init__(self, path: Path, err: Exception) -> None:
        super().__init__(str(err))
        self.path, self.err = path, err


def _sources(by_path: dict[Path, list[str]], winners: dict[str, _Copy]):
    """The curve tables of the runs to merge, one compacted source streamed at a time."""
    for path, ids in by_path.items():
        try:
            if winners[ids[0]].single:
                yield _run_curves(path, ids[0])
                continue
            wanted = pa.array(ids, pa.string())
            f = pq.ParquetFile(path, page_checksum_verification=True)
            for batch in f.iter_batches(batch_size=ROW_GROUP_ROWS):
                t = pa.Table.from_batches([batch]).cast(COMPACT_SCHEMA)
                yield t.filter(pc.is_in(t["run_id"], wanted)).replace_schema_metadata(None)
        except Exception as e:  # noqa: BLE001 - the caller leaves this file and retries
            raise _Unreadable(path, e) from e


def _write_compact(final: Path, records: list[dict], generation: int, by_path, winners) -> None:
    meta = {
        FORMAT_KEY: str(FORMAT).encode(),
        GEN_KEY: str(generation).encode(),
        RUNS_KEY: zlib.compress(json.dumps(records, default=_json_default).encode(), 6),
    }

    def write(f) -> None:
        schema = COMPACT_SCHEMA.with_metadata(meta)
        with pq.ParquetWriter(f, schema, write_page_checksum=True) as w:
            buf, n = [COMPACT_SCHEMA.empty_table()], 0
            for t in _sources(by_path, winners):
                buf.append(t)
                n += t.num_rows
                if n >= ROW_GROUP_ROWS:  # row groups of >= 128 Ki rows, not one per run
                    w.write_table(pa.concat_tables(buf), row_group_size=n)
                    buf, n = [COMPACT_SCHEMA.empty_table()], 0
            w.write_table(pa.concat_tables(buf))

    _atomic_write(final, final.name, write)


def compact(results_dir: str | Path) -> Path | None:
    """Merge every run in DIR (per-run and compacted files) into one new compacted file,
    written atomically, then delete the files merged. Returns the compacted file (the existing
    one when there is nothing to merge), or None when DIR holds no runs. Safe to interrupt at
    any point; a run written meanwhile (after the scan, even with the same run_id) stays as its
    per-run file and wins. A file whose data cannot be read is warned about and kept.
    """
    d = Path(results_dir)
    clean_stale(d)
    winners, compacts, per_run = _scan(d)
    if not winners:
        return None
    if not per_run and len(compacts) == 1:
        return compacts[0][0]
    generation = 1 + max((g for _, g, _ in compacts), default=0)
    final, bad_paths = d / _compact_name(), set()
    while True:
        ids = sorted(r for r, c in winners.items() if c.path not in bad_paths)
        if not ids:
            return None
        by_path: dict[Path, list[str]] = {}
        for r in ids:
            by_path.setdefault(winners[r].path, []).append(r)
        try:
            _write_compact(final, [winners[r].record for r in ids], generation, by_path, winners)
            break
        except _Unreadable as e:  # e.g. a corrupt data page: keep that file, merge the rest
            _skip(e.path, e.err)
            bad_paths.add(e.path)
    bad_ids = {r for r, c in winners.items() if c.path in bad_paths}
    merged = [c for c in per_run if c.path in by_path]
    for c, (_, err) in zip(merged, _parallel(_remove_if_unchanged, merged), strict=True):
        if err is not None:  # harmless: the per-run file stays and wins, with the same content
            warnings.warn(f"rnnfast.store: could not remove merged {c.path}: {err}", stacklevel=2)
    for path, _, ids_in in compacts:
        if path not in bad_paths and not bad_ids & ids_in:  # keep older copies of bad runs
            path.unlink(missing_ok=True)
    for sub in (d / "runs", d):
        if sub.is_dir():
            _fsync_dir(sub)
    return final


def _remove_if_unchanged(c: _Copy) -> None:
    """Delete a merged per-run file unless it was replaced after the scan (e.g. --force)."""
    try:
        st = c.path.stat()
    except FileNotFoundError:
        return
    old = c.stat
    if old is not None and (st.st_ino, st.st_mtime_ns, st.st_size) == (
        old.st_ino, old.st_mtime_ns, old.st_size):  # fmt: skip
        c.path.unlink(missing_ok=True)
