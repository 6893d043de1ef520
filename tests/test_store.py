"""The results store: round trips, schema union, crash safety, compaction, concurrency."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rnnfast import store
from rnnfast.store import RunRecord


def curve(n: int, metrics=("loss",), scale: float = 1.0) -> pd.DataFrame:
    parts = [
        pd.DataFrame({
            "step": np.arange(1, n + 1, dtype=np.int64),
            "epoch": np.ones(n, np.int64),
            "metric": pd.Categorical([m] * n),
            "value": scale * np.linspace(1.0, 0.5, n) + k,
        })
        for k, m in enumerate(metrics)
    ]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def record(run_id: str, status: str = "ok", **kw) -> RunRecord:
    base = dict(
        run_id=run_id,
        grid="g",
        config={"task": "dependency", "hidden_size": 4, "seed": 0, "lags": [3, 8], "lr": 0.1},
        point={"seed": 0},
        status=status,
        final={"loss": 0.5},
        provenance={"git_commit": "abc", "thread_env": {"NUMBA_NUM_THREADS": "2"}, "blas": []},
        started=store.utc_now(),
        finished=store.utc_now(),
        wall_time=1.5,
        compile_time=0.25,
    )
    base.update(kw)
    return RunRecord(**base)


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """The stored form of a curve: metric as str, no run_id."""
    out = df[["step", "epoch", "metric", "value"]].reset_index(drop=True).copy()
    out["metric"] = out["metric"].astype(str)
    return out


def assert_curve(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got[["step", "epoch", "metric", "value"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(plain(got), plain(want), check_dtype=False)
    assert got["step"].dtype == np.int64 and got["value"].dtype == np.float64


def test_round_trip(tmp_path):
    rec = record("abc123", config={"task": "dependency", "hidden_size": 16, "seed": 2,
                                   "lags": [3, 8], "shifts": [0.5, -0.25], "clip": None,
                                   "bias": True, "dtype": "float32"})  # fmt: skip
    c = curve(50, ("loss", "error"))
    path = store.write_run(tmp_path, rec, c)
    assert path == tmp_path / "runs" / "abc123.parquet"
    got, gc = store.read_run(tmp_path, "abc123")
    assert got == rec
    assert_curve(gc, c)
    runs, curves = store.load_results(tmp_path)
    assert list(runs.columns[:8]) == store.RUN_COLUMNS
    row = runs.iloc[0]
    assert row["run_id"] == "abc123" and row["status"] == "ok" and row["grid"] == "g"
    assert row["hidden_size"] == 16 and runs["hidden_size"].dtype == np.int64
    assert row["lags"] == (3, 8) and row["shifts"] == (0.5, -0.25)
    assert bool(row["bias"]) and row["dtype"] == "float32" and row["final.loss"] == 0.5
    assert row["prov.git_commit"] == "abc" and row["prov.thread_env.NUMBA_NUM_THREADS"] == "2"
    assert json.loads(row["prov.blas"]) == []
    assert row["started"] == pd.Timestamp(rec.started) and row["wall_time"] == 1.5
    assert list(curves.columns) == ["run_id", "step", "epoch", "metric", "value"]
    assert (curves["run_id"] == "abc123").all()
    assert_curve(curves, c)
    # groupby and hue on a list-valued key work
    assert runs.groupby("lags").size().to_dict() == {(3, 8): 1}


def test_file_is_plain_parquet_with_metadata(tmp_path):
    path = store.write_run(tmp_path, record("r1"), curve(3))
    schema = pq.read_schema(path)
    assert schema.names == ["step", "epoch", "metric", "value"]
    assert schema.metadata[b"rnnfast.format"] == b"1"
    assert json.loads(schema.metadata[b"rnnfast.run"])["run_id"] == "r1"


def test_schema_union_across_runs(tmp_path):
    store.write_run(tmp_path, record("old", final={"loss": 1.0}), curve(5))
    store.write_run(
        tmp_path,
        record("new", final={"loss": 0.5, "test_accuracy": 0.9}, config={"task": "mnist",
               "variant": "rows", "seed": 1}),
        curve(5, ("loss", "test_accuracy")),
    )  # fmt: skip
    runs, curves = store.load_results(tmp_path)
    runs = runs.set_index("run_id")
    assert math.isnan(runs.loc["old", "final.test_accuracy"])
    assert runs.loc["new", "final.test_accuracy"] == 0.9
    assert pd.isna(runs.loc["new", "hidden_size"]) and runs.loc["old", "hidden_size"] == 4
    assert runs["hidden_size"].dtype == "Int64"  # an int column with a gap stays integer
    assert pd.isna(runs.loc["old", "variant"]) and runs.loc["new", "variant"] == "rows"
    per = curves.groupby("run_id")["metric"].unique().map(sorted).to_dict()
    assert per == {"new": ["loss", "test_accuracy"], "old": ["loss"]}
    assert curves["value"].dtype == np.float64 and curves["step"].dtype == np.int64


def test_failed_run_without_curve(tmp_path):
    tb = 'Traceback (most recent call last):\n  File "x.py"\nValueError: boom'
    store.write_run(tmp_path, record("bad", "failed", error=tb, final={}), None)
    store.write_run(tmp_path, record("good"), curve(4))
    rec, c = store.read_run(tmp_path, "bad")
    assert rec.status == "failed" and rec.error == tb
    assert len(c) == 0 and list(c.columns) == ["step", "epoch", "metric", "value"]
    assert c["step"].dtype == np.int64 and c["value"].dtype == np.float64
    runs, curves = store.load_results(tmp_path)
    assert set(runs["run_id"]) == {"bad", "good"}
    assert runs.set_index("run_id").loc["bad", "error"] == tb
    assert set(curves["run_id"]) == {"good"}


def test_diverged_run_keeps_nan_and_inf(tmp_path):
    c = curve(6)
    c.loc[4, "value"] = np.inf
    c.loc[5, "value"] = np.nan
    rec = record("div", "diverged", error="loss is nan at update 6", final={"loss": math.nan})
    store.write_run(tmp_path, rec, c)
    got, gc = store.read_run(tmp_path, "div")
    assert got.status == "diverged" and math.isnan(got.final["loss"])
    assert np.isinf(gc["value"][4]) and np.isnan(gc["value"][5]) and len(gc) == 6
    runs, curves = store.load_results(tmp_path)
    assert runs["status"].tolist() == ["diverged"] and math.isnan(runs["final.loss"][0])
    assert np.isnan(curves["value"].iloc[-1])


def test_write_run_validates(tmp_path):
    with pytest.raises(ValueError, match="run_id"):
        store.write_run(tmp_path, record("../evil"), None)
    with pytest.raises(ValueError, match="status"):
        store.write_run(tmp_path, record("x", "done"), None)
    with pytest.raises(ValueError, match="missing"):
        store.write_run(tmp_path, record("x"), pd.DataFrame({"step": [1], "value": [1.0]}))


def test_empty_or_missing_dir(tmp_path):
    runs, curves = store.load_results(tmp_path)  # empty: nothing stored yet
    assert runs.empty and list(runs.columns) == store.RUN_COLUMNS
    assert curves.empty and list(curves.columns) == ["run_id", "step", "epoch", "metric",
                                                     "value"]  # fmt: skip
    assert curves["step"].dtype == np.int64
    for d in (tmp_path, tmp_path / "nope"):  # missing: load_results raises (test below)
        assert store.status_of(d) == {}
        assert store.compact(d) is None
        with pytest.raises(ValueError, match="no run"):
            store.read_run(d, "a")


def test_config_key_clashing_with_a_run_column(tmp_path):
    store.write_run(tmp_path, record("r", config={"status": "weird", "seed": 1}), None)
    runs, _ = store.load_results(tmp_path)
    assert runs["status"][0] == "ok" and runs["config.status"][0] == "weird"


def test_temporary_partial_and_corrupt_files_are_skipped(tmp_path):
    good = store.write_run(tmp_path, record("good"), curve(100))
    runs_dir = tmp_path / "runs"
    data = good.read_bytes()
    (runs_dir / ".good.123.abcd.tmp").write_bytes(data[: len(data) // 2])  # a killed writer
    (runs_dir / "trunc.parquet").write_bytes(data[: len(data) - 10])  # partial copy
    (runs_dir / "garbage.parquet").write_bytes(b"not parquet at all")
    (runs_dir / "empty.parquet").write_bytes(b"")
    pd.DataFrame({"a": [1]}).to_parquet(runs_dir / "foreign.parquet")  # no rnnfast metadata
    (runs_dir / "renamed.parquet").write_bytes(data)  # holds run "good", not "renamed"
    (tmp_path / "compact-20200101T000000000000Z-aaaaaa.parquet").write_bytes(data[:40])
    with pytest.warns(UserWarning) as w:
        runs, curves = store.load_results(tmp_path)
    messages = " ".join(str(x.message) for x in w)
    for name in ("trunc", "garbage", "empty", "foreign", "renamed", "compact-2020"):
        assert name in messages
    assert ".tmp" not in messages  # temporaries are expected, not suspicious
    assert runs["run_id"].tolist() == ["good"] and len(curves) == 100
    with pytest.warns(UserWarning):
        assert store.status_of(tmp_path) == {"good": "ok"}


def test_corrupt_data_page_skips_the_run(tmp_path):
    store.write_run(tmp_path, record("ok1"), curve(10))
    path = store.write_run(tmp_path, record("ok2"), curve(2000))
    raw = bytearray(path.read_bytes())
    for i in range(40, 60):  # inside the first data page; the footer stays valid
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert store.status_of(tmp_path) == {"ok1": "ok", "ok2": "ok"}  # footers only
    with pytest.warns(UserWarning, match="ok2"):
        runs, curves = store.load_results(tmp_path)
    assert runs["run_id"].tolist() == ["ok1"] and set(curves["run_id"]) == {"ok1"}
    with pytest.warns(UserWarning, match="ok2"):
        out = store.compact(tmp_path)
    assert path.exists()  # kept for a human to look at
    assert not (tmp_path / "runs" / "ok1.parquet").exists()
    assert [r["run_id"] for r in _compact_records(out)] == ["ok1"]


def _compact_records(path: Path) -> list[dict]:
    import zlib

    return json.loads(zlib.decompress(pq.read_schema(path).metadata[b"rnnfast.runs.zlib"]))


def test_crash_before_rename_leaves_old_file(tmp_path, monkeypatch):
    store.write_run(tmp_path, record("r", final={"loss": 1.0}), curve(10))

    def boom(src, dst):
        assert Path(src).exists() and Path(src).name.startswith(".r.")
        raise OSError("simulated crash")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        store.write_run(tmp_path, record("r", final={"loss": 2.0}), curve(20))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r.parquet"]
    rec, c = store.read_run(tmp_path, "r")
    assert rec.final == {"loss": 1.0} and len(c) == 10


def test_crash_mid_write_leaves_only_a_temporary(tmp_path, monkeypatch):
    real = pq.write_table

    def half_then_die(table, where, **kw):
        real(table, where, **kw)
        where.truncate(where.tell() // 2)  # the process dies half way: temp file is partial
        raise KeyboardInterrupt

    monkeypatch.setattr(store.pq, "write_table", half_then_die)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)  # no clean-up
    with pytest.raises(KeyboardInterrupt):
        store.write_run(tmp_path, record("r"), curve(500))
    monkeypatch.undo()
    left = list((tmp_path / "runs").iterdir())
    assert len(left) == 1 and left[0].name.startswith(".r.") and left[0].suffix == ".tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs, curves = store.load_results(tmp_path)
        assert runs.empty and curves.empty and store.status_of(tmp_path) == {}
    old = time.time() - store.STALE_SECONDS - 60
    assert store.clean_stale(tmp_path) == 0  # fresh: maybe a live writer
    os.utime(left[0], (old, old))
    assert store.clean_stale(tmp_path) == 1 and not left[0].exists()


def test_overwrite_is_atomic_replace(tmp_path):
    store.write_run(tmp_path, record("r", "failed", error="x"), None)
    store.write_run(tmp_path, record("r"), curve(7))
    rec, c = store.read_run(tmp_path, "r")
    assert rec.status == "ok" and len(c) == 7
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r.parquet"]


def test_status_of_reads_only_metadata(tmp_path, monkeypatch):
    store.write_run(tmp_path, record("a1"), curve(3))
    store.write_run(tmp_path, record("b2", "failed"), None)
    store.write_run(tmp_path, record("c3", "diverged"), curve(3))
    store.compact(tmp_path)
    store.write_run(tmp_path, record("d4"), curve(3))

    def no_data(*a, **k):
        raise AssertionError("status_of read curve data")

    monkeypatch.setattr(store.pq, "read_table", no_data)
    monkeypatch.setattr(store.pq, "ParquetFile", no_data)
    assert store.status_of(tmp_path) == {"a1": "ok", "b2": "failed", "c3": "diverged",
                                         "d4": "ok"}  # fmt: skip


def test_read_run_prefix(tmp_path):
    for rid in ("abc111", "abc222", "abd333", "ab"):
        store.write_run(tmp_path, record(rid), curve(2))
    assert store.read_run(tmp_path, "abc1")[0].run_id == "abc111"
    assert store.read_run(tmp_path, "abd")[0].run_id == "abd333"
    assert store.read_run(tmp_path, "ab")[0].run_id == "ab"  # an exact id beats its prefixes
    with pytest.raises(ValueError, match="ambiguous.*abc111, abc222"):
        store.read_run(tmp_path, "abc")
    with pytest.raises(ValueError, match="no run"):
        store.read_run(tmp_path, "zzz")
    store.compact(tmp_path)
    rec, c = store.read_run(tmp_path, "abd")
    assert rec.run_id == "abd333" and len(c) == 2 and list(c.columns) == store.CURVE_SCHEMA.names


def _fill(d: Path, ids, **kw) -> None:
    for i, rid in enumerate(ids):
        status = ("ok", "failed", "diverged")[i % 3]
        c = None if status == "failed" else curve(10 + i, ("loss", "error")[: 1 + i % 2], i)
        store.write_run(d, record(rid, status, final={"loss": float(i)},
                                  config={"seed": i, "lags": [i, i + 1]}, **kw), c)  # fmt: skip


def test_compact_then_load_equals_load_before(tmp_path):
    _fill(tmp_path, [f"r{i:02d}" for i in range(12)])
    before = store.load_results(tmp_path)
    statuses = store.status_of(tmp_path)
    out = store.compact(tmp_path)
    assert out.parent == tmp_path and out.name.startswith("compact-")
    assert list((tmp_path / "runs").iterdir()) == []
    after = store.load_results(tmp_path)
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])
    assert store.status_of(tmp_path) == statuses
    assert store.compact(tmp_path) == out  # nothing new: the same file
    # more runs, then compact again: one file holding everything, the old one removed
    _fill(tmp_path, [f"s{i:02d}" for i in range(5)])
    both = store.load_results(tmp_path)
    out2 = store.compact(tmp_path)
    assert out2 != out and not out.exists()
    assert sorted(p.name for p in tmp_path.glob("compact-*")) == [out2.name]
    assert pq.read_schema(out2).metadata[b"rnnfast.generation"] == b"2"
    again = store.load_results(tmp_path)
    pd.testing.assert_frame_equal(both[0], again[0])
    pd.testing.assert_frame_equal(both[1], again[1])
    assert len(again[0]) == 17


def test_compact_with_many_rows_uses_several_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 100)
    _fill(tmp_path, [f"r{i:02d}" for i in range(30)])
    before = store.load_results(tmp_path)
    out = store.compact(tmp_path)
    assert pq.ParquetFile(out).num_row_groups > 1
    after = store.load_results(tmp_path)
    pd.testing.assert_frame_equal(before[1], after[1])
    want = before[1][before[1]["run_id"] == "r29"]
    assert_curve(store.read_run(tmp_path, "r29")[1], want)
    assert len(want) == 2 * 39


def test_per_run_file_wins_over_compacted_copy(tmp_path):
    _fill(tmp_path, ["a", "b", "c"])
    store.compact(tmp_path)
    # --force reran "b": the new per-run file wins even though "b" is also compacted
    store.write_run(tmp_path, record("b", final={"loss": 42.0}), curve(3, scale=9.0))
    runs, curves = store.load_results(tmp_path)
    assert runs.set_index("run_id").loc["b", "final.loss"] == 42.0
    assert len(curves[curves["run_id"] == "b"]) == 3
    assert store.status_of(tmp_path)["b"] == "ok"
    assert store.read_run(tmp_path, "b")[0].final == {"loss": 42.0}
    store.compact(tmp_path)  # and the new version is what compaction keeps
    runs2, curves2 = store.load_results(tmp_path)
    pd.testing.assert_frame_equal(runs, runs2)
    pd.testing.assert_frame_equal(curves, curves2)


def test_crash_after_compact_before_delete_is_harmless(tmp_path, monkeypatch):
    _fill(tmp_path, ["a", "b"])
    before = store.load_results(tmp_path)
    monkeypatch.setattr(store, "_remove_if_unchanged", lambda c: None)
    store.compact(tmp_path)  # "crashes" before deleting the per-run files
    monkeypatch.undo()
    assert len(list((tmp_path / "runs").iterdir())) == 2
    for got, want in zip(store.load_results(tmp_path), before, strict=True):
        pd.testing.assert_frame_equal(got, want)
    store.compact(tmp_path)
    assert len(list(tmp_path.glob("compact-*"))) == 1 and not list((tmp_path / "runs").iterdir())


def test_run_rewritten_during_compaction_is_kept(tmp_path, monkeypatch):
    _fill(tmp_path, ["a", "b"])
    real = store._write_compact

    def and_meanwhile(*args, **kw):
        real(*args, **kw)
        store.write_run(tmp_path, record("a", final={"loss": 7.0}), curve(2))  # --force
        store.write_run(tmp_path, record("z"), curve(2))  # a brand-new run

    monkeypatch.setattr(store, "_write_compact", and_meanwhile)
    store.compact(tmp_path)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a.parquet", "z.parquet"]
    runs, _ = store.load_results(tmp_path)
    assert runs.set_index("run_id")["final.loss"].to_dict() == {"a": 7.0, "b": 1.0, "z": 0.5}


def test_concurrent_writers(tmp_path):
    errors = []

    def writer(k: int) -> None:
        try:
            for i in range(20):
                store.write_run(tmp_path, record(f"t{k}_{i}"), curve(50 + i))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.status_of(tmp_path)) == 160
    runs, curves = store.load_results(tmp_path)
    assert len(runs) == 160
    assert curves.groupby("run_id").size().to_dict() == {
        f"t{k}_{i}": 50 + i for k in range(8) for i in range(20)
    }
    assert not list((tmp_path / "runs").glob(".*"))


CHILD = textwrap.dedent("""
    import sys
    import numpy as np, pandas as pd
    from rnnfast import store
    d = sys.argv[1]
    for i in range(int(sys.argv[2]), 10**6):
        n = 20000 + 37 * i
        c = pd.DataFrame({"step": np.arange(n), "epoch": np.ones(n, np.int64),
                          "metric": ["loss"] * n, "value": np.full(n, float(i))})
        rec = store.RunRecord(f"k{i:05d}", "kill", {"i": i}, {}, "ok", final={"n": n})
        store.write_run(d, rec, c)
        if i == int(sys.argv[2]):
            print("ready", flush=True)
""")


def test_sigkill_during_writes_leaves_only_complete_runs(tmp_path):
    # About 40% of kills land inside a write (the temporary is left behind); keep killing until
    # one has (or 8 kills), and check after each kill that every readable run is complete.
    rng = np.random.default_rng(0)
    start, kills, mid_write = 0, 0, 0
    while kills < 3 or (mid_write == 0 and kills < 8):
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(start)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        kills += 1
        mid_write = len(list((tmp_path / "runs").glob(".*.tmp")))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing partial may even look like a run file
            runs, curves = store.load_results(tmp_path)
            assert len(store.status_of(tmp_path)) == len(runs)
        assert len(runs) > start
        sizes = curves.groupby("run_id").size()
        for rid, n, i in zip(runs["run_id"], runs["final.n"], runs["i"], strict=True):
            assert rid == f"k{i:05d}" and sizes[rid] == n == 20000 + 37 * i
        assert (curves.groupby("run_id")["value"].first() == runs.set_index("run_id")["i"]).all()
        start = int(runs["i"].max()) + 1


def test_load_results_rejects_a_missing_directory_or_a_file(tmp_path):
    with pytest.raises(ValueError, match=r"missing: no such directory$"):
        store.load_results(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"f: is a file, not a results directory$"):
        store.load_results(tmp_path / "f")
    runs, curves = store.load_results(tmp_path)  # an empty directory: nothing stored yet
    assert runs.empty and curves.empty
