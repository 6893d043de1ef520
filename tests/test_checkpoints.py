"""Mid-run checkpoints (rnnfast.checkpoint): a resumed run's curve, final metrics and weights
are bit-identical to an uninterrupted run's; corrupt, truncated and foreign checkpoints are
skipped with one line; checkpoint_every is not part of a run's identity.

    in process   resume from every checkpoint a run wrote (stream task: state carried; set
                 task: shuffled batches, lengths, a validation metric every epoch)
    subprocess   `rnnfast run grid` killed with SIGKILL twice (after its first checkpoint,
                 then later in the resumed run), run again to the end; checkpoints removed
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnfast import checkpoint
from rnnfast.config import resolve
from rnnfast.executors import Task, execute
from rnnfast.grid import load_grid, run_id
from rnnfast.store import read_model, read_run

RNNFAST = Path(sys.executable).parent / "rnnfast"

# 8000 / (4 * 5) = 400 updates an epoch: checkpoints mid-epoch (interval boundaries, every
# 200 updates) and at epoch ends
STREAM = {"task": "dependency", "sequence_length": 8000, "batch_size": 4, "num_steps": 5,
          "hidden_size": 8, "epochs": 3, "checkpoint_every": 200}  # fmt: skip


def _sequences(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    N, T, I = 889, 6, 3
    path = tmp_path / "seqs.npz"
    lengths = rng.integers(1, T + 1, N)
    np.savez(path, x=rng.standard_normal((N, T, I)).astype(np.float32),
             y=rng.integers(0, 3, N), lengths=lengths)  # fmt: skip
    # 800 training sequences (89 drawn for validation), batch 2: 400 updates an epoch;
    # valid_loss every epoch
    return {"task": "sequences", "data": str(path), "cell": "gru", "hidden_size": 8,
            "batch_size": 2, "epochs": 3, "checkpoint_every": 200}  # fmt: skip


def _run(config: dict, results: Path | None):
    cfg = resolve(config)
    return execute(Task(run_id(cfg), cfg, checkpoints=None if results is None else str(results)))


def _same(a, b) -> None:
    """Two (RunRecord, curves): the same curve, final metrics and weights, bit for bit."""
    (ra, ca), (rb, cb) = a, b
    assert ra.status == rb.status == "ok", (ra.error, rb.error)
    pd.testing.assert_frame_equal(ca, cb, check_exact=True)
    assert np.array_equal(ca["value"].to_numpy().view(np.int64),
                          cb["value"].to_numpy().view(np.int64))  # fmt: skip
    assert ra.final == rb.final
    pa, pb = ra.model["params"], rb.model["params"]
    assert pa.keys() == pb.keys()
    for k in pa:
        assert pa[k].dtype == pb[k].dtype and pa[k].tobytes() == pb[k].tobytes(), k


def _written(monkeypatch, into: Path) -> list[Path]:
    """Copies of every checkpoint the run writes, in order."""
    copies: list[Path] = []
    write = checkpoint.write_file

    def spy(path, meta, arrays):
        write(path, meta, arrays)
        copies.append(into / f"{len(copies)}.npz")
        shutil.copyfile(path, copies[-1])

    monkeypatch.setattr(checkpoint, "write_file", spy)
    into.mkdir()
    return copies


def _place(copy: Path, results: Path, rid: str) -> Path:
    d = results / "checkpoints"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return Path(shutil.copyfile(copy, d / f"{rid}.npz"))


@pytest.mark.parametrize("kind", ["stream", "set"])
def test_resume_from_every_checkpoint_is_bit_identical(tmp_path, monkeypatch, kind):
    config = STREAM if kind == "stream" else _sequences(tmp_path)
    rid = run_id(resolve(config))
    plain = _run(config, None)
    res = tmp_path / "res"
    copies = _written(monkeypatch, tmp_path / "copies")
    _same(_run(config, res), plain)  # checkpointing itself changes nothing
    monkeypatch.undo()
    steps = [checkpoint.read_file(c)[0]["position"]["step"] for c in copies]
    upe = 400
    # every 200 updates inside epochs, and at the ends of the first two epochs
    assert len(steps) >= 5 and upe in steps and 2 * upe in steps, steps
    assert any(s % upe for s in steps), steps
    for copy, step in zip(copies, steps, strict=True):
        _place(copy, res, rid)
        again = _run(config, res)
        assert again[0].provenance["resumed"]["update"] == step
        _same(again, plain)


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path, monkeypatch, capfd):
    rid = run_id(resolve(STREAM))
    plain = _run(STREAM, None)
    res = tmp_path / "res"
    copies = _written(monkeypatch, tmp_path / "copies")
    _run(STREAM, res)
    monkeypatch.undo()
    capfd.readouterr()
    latest = _place(copies[-1], res, rid)
    prev = Path(shutil.copyfile(copies[-2], latest.with_name(f"{rid}.prev.npz")))
    prev_step = checkpoint.read_file(prev)[0]["position"]["step"]

    # one flipped byte in the arrays: checksum (or zip CRC); the previous checkpoint is used
    raw = bytearray(latest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    latest.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        checkpoint.read_file(latest)
    got = _run(STREAM, res)
    err = capfd.readouterr().err
    assert f"skipping checkpoint {latest}" in err and len(err.strip().splitlines()) == 1, err
    assert got[0].provenance["resumed"]["update"] == prev_step
    _same(got, plain)

    # both truncated: from the start, one line each
    _place(copies[-1], res, rid).write_bytes(copies[-1].read_bytes()[:1000])
    prev.write_bytes(copies[-2].read_bytes()[:-10])
    got = _run(STREAM, res)
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all("skipping checkpoint" in x for x in lines), lines
    assert "unreadable" in lines[0] and str(prev) in lines[1]
    assert "resumed" not in got[0].provenance
    _same(got, plain)

    # another rnnfast version or source: not resumed, said in one line
    meta, arrays = checkpoint.read_file(copies[-1])
    for change in ({"rnnfast": "0.0.1"}, {"source_sha256": "0" * 64}):
        shutil.rmtree(res / "checkpoints")
        checkpoint.write_file(latest, {**meta, **change}, arrays)
        assert checkpoint.read_file(latest)[0] == {**meta, **change}  # a valid file
        got = _run(STREAM, res)
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "another rnnfast" in lines[0] and str(latest) in lines[0]
        assert "not used for an exact resume" in lines[0]
        assert "resumed" not in got[0].provenance
        _same(got, plain)


def test_checkpoint_every_values_and_identity():
    ids = set()
    for value, norm in [(200, 200), (0, "never"), ("never", "never"), ("epoch", "epoch"),
                        ("60s", "60s"), (" 1.5 S", "1.5s"), ("0s", "never")]:  # fmt: skip
        cfg = resolve({**STREAM, "checkpoint_every": value})
        assert cfg["checkpoint_every"] == norm
        ids.add(run_id(cfg))
    cfg = {k: v for k, v in STREAM.items() if k != "checkpoint_every"}
    assert resolve(cfg)["checkpoint_every"] == "epoch"  # the default
    ids.add(run_id(resolve(cfg)))
    assert len(ids) == 1
    for bad in (-1, "often", True, 1.5, "s", "-5s", None):
        with pytest.raises(ValueError, match="^checkpoint_every: expected"):
            resolve({**STREAM, "checkpoint_every": bad})


def test_due():
    t = checkpoint.Target(Path("unused"), "x")
    ck = checkpoint.Checkpoints(t, 500, {}, {}, 100, 10)
    assert not ck.due(400, True) and ck.due(500, False)
    ck = checkpoint.Checkpoints(t, "epoch", {}, {}, 100, 10)
    assert not ck.due(10**6, True)  # not a minute yet
    ck.last_time -= 61
    assert ck.due(1, True) and not ck.due(1, False)
    ck = checkpoint.Checkpoints(t, "2s", {}, {}, 100, 10)
    assert not ck.due(1, False)
    ck.last_time -= 2
    assert ck.due(1, False)
    assert not checkpoint.Checkpoints(t, "never", {}, {}, 100, 10).due(10**9, True)


# ---------------------------------------------------------------- kill -9, then run grid again

# 100,000 updates of H = 32 (about 10 s here); a checkpoint every 2,000 updates
SLOW = """
name = "slow"
task = "dependency"
[fixed]
sequence_length = 500000
batch_size = 20
num_steps = 5
hidden_size = 32
epochs = 4
checkpoint_every = 2000
"""
UPE = 500000 // 100


def _grid(path: Path, res: Path, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen([str(RNNFAST), "run", "grid", str(path), "--results", str(res),
                                 "--workers", "1", *extra], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def _position(path: Path) -> int:
    try:
        return checkpoint.read_file(path)[0]["position"]["step"]
    except (ValueError, OSError):  # being replaced: ask again
        return -1


def _kill_after(p: subprocess.Popen, ck: Path, step: int, log: Path) -> int:
    deadline = time.monotonic() + 300
    while (at := _position(ck)) < step:
        if p.poll() is not None or time.monotonic() > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            pytest.fail(f"no checkpoint past {step} (exit {p.poll()}):\n{log.read_text()}")
        time.sleep(0.005)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    return at


def test_kill_9_twice_then_resume_is_bit_identical(tmp_path):
    f = tmp_path / "slow.toml"
    f.write_text(SLOW)
    (spec,) = load_grid(f).points()
    res, ref, log = tmp_path / "res", tmp_path / "ref", tmp_path / "log.txt"
    ck = res / "checkpoints" / f"{spec.run_id}.npz"

    p = _grid(f, res, log)
    first = _kill_after(p, ck, 1, log)  # right after the first checkpoint
    assert 0 < first < UPE and not list(res.glob("runs/*.parquet"))  # nothing stored yet
    p = _grid(f, res, log)
    second = _kill_after(p, ck, 2 * UPE + 1, log)  # in the third epoch of the resumed run
    assert second > 2 * UPE
    p = _grid(f, res, log)
    assert p.wait(timeout=600) == 0, log.read_text()
    # removed once the run is stored (a killed writer's temporary may stay: clean_stale)
    assert list((res / "checkpoints").glob("*.npz")) == []

    # uninterrupted, without checkpoints: the same run id (checkpoint_every is no identity)
    p = _grid(f, ref, log, "-p", "checkpoint_every=never")
    assert p.wait(timeout=600) == 0, log.read_text()
    rec, curves = read_run(res, spec.run_id)
    ref_rec, ref_curves = read_run(ref, spec.run_id)
    assert rec.provenance["resumed"]["update"] >= second
    assert "resumed" not in ref_rec.provenance
    pd.testing.assert_frame_equal(curves, ref_curves, check_exact=True)
    assert rec.final == ref_rec.final
    a, b = read_model(res, spec.run_id)["params"], read_model(ref, spec.run_id)["params"]
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_a_checkpoint_that_cannot_be_written_costs_the_checkpoint_not_the_run(
    tmp_path, monkeypatch, capfd
):
    """A full or read-only disk at a checkpoint: one line, and the run finishes unchanged."""
    plain = _run(STREAM, None)

    def full(path, meta, arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_file", full)
    capfd.readouterr()
    _same(_run(STREAM, tmp_path / "res"), plain)
    lines = [x for x in capfd.readouterr().err.splitlines() if "checkpoint not written" in x]
    assert lines and all("No space left on device" in x for x in lines)
