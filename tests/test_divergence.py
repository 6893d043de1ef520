"""diverge_above (rnnfast.run_setup.steps): a run whose training loss exceeds that multiple of
its starting loss (its first update's) stops as "diverged", its message naming the first
update above the limit and its curve ending with it; beside the non-finite rule, whichever
comes first. The expected update is found in the curve of the same run without the rule,
which the rule does not change up to where it stops; a resumed run stops where an
uninterrupted one does.
"""

import shutil

import numpy as np

from rnnfast import checkpoint
from rnnfast.config import resolve
from rnnfast.executors import Task, execute
from rnnfast.grid import run_id
from rnnfast.run_setup import INTERVAL
from rnnfast.training import train

# SGD at lr 100 on a 4-unit RNN: the loss jumps from 0.88 to 21.6 at update 2 and wanders
# near 100 for the rest of the run, and the run is "ok" (the 1e6 run, smaller)
SGD = {"task": "dependency", "sequence_length": 4000, "batch_size": 20, "num_steps": 5,
       "hidden_size": 4, "cell": "rnn", "optimizer": "sgd", "lr": 100.0, "epochs": 2}  # fmt: skip


def losses(result) -> np.ndarray:
    return result.curves.query("metric == 'loss'")["value"].to_numpy()


def first_above(loss: np.ndarray, multiple: float) -> int:
    """0-based index of the first loss above multiple x the first; the test's own count."""
    return int(np.flatnonzero(loss > multiple * loss[0])[0])


def message(loss: np.ndarray, k: int, epoch: int, multiple: float) -> str:
    return (f"loss {loss[k]:.6g} at update {k + 1} (epoch {epoch}) is above diverge_above = "
            f"{multiple:g} times the starting loss {loss[0]:.6g}")  # fmt: skip


def assert_stopped_at(r, plain, k: int, epoch: int, multiple: float) -> None:
    loss = losses(plain)
    assert r.status == "diverged"
    assert r.message == message(loss, k, epoch, multiple)
    got = r.curves.query("metric == 'loss'")
    np.testing.assert_array_equal(got["step"], np.arange(1, k + 2))
    assert np.array_equal(got["value"].to_numpy(), loss[: k + 1])  # bit for bit
    assert r.final["updates"] == k + 1


def test_a_loss_far_above_its_start_is_diverged_with_the_rule_and_ok_without():
    plain = train(SGD)
    loss = losses(plain)
    assert plain.status == "ok" and plain.message == ""
    assert np.isfinite(loss).all() and loss.max() > 100 * loss[0]
    k = first_above(loss, 10)
    assert_stopped_at(train({**SGD, "diverge_above": 10}), plain, k, 1, 10)

    never = train({**SGD, "diverge_above": 1e9})  # a limit never reached changes nothing
    assert never.status == "ok"
    assert np.array_equal(never.curves["value"].to_numpy(), plain.curves["value"].to_numpy())
    assert never.final == plain.final


def test_the_first_update_above_in_a_later_interval_and_epoch():
    """400 updates an epoch: the limit is set between the highest loss of epoch 1 and the
    next record high, which lies in a later interval of a later epoch."""
    cfg = {**SGD, "sequence_length": 8000, "batch_size": 4, "lr": 10.0, "hidden_size": 8,
           "epochs": 3}  # fmt: skip
    plain = train(cfg)
    loss = losses(plain)
    assert plain.status == "ok" and len(loss) == 1200
    before = loss[:400].max()
    k = int(np.flatnonzero(loss > before)[0])
    assert k >= 400 + INTERVAL and k % INTERVAL  # not in epoch 2's first interval
    multiple = (before + loss[k]) / 2 / loss[0]
    assert first_above(loss, multiple) == k
    assert_stopped_at(train({**cfg, "diverge_above": multiple}), plain, k, k // 400 + 1, multiple)


def test_before_a_non_finite_loss_the_first_of_the_two_rules_names_the_update():
    # relu with SGD at lr 1e4: 0.68, then 1.9e13, then NaN
    cfg = {"task": "dependency", "sequence_length": 20_000, "optimizer": "sgd", "lr": 1e4,
           "nonlinearity": "relu", "hidden_size": 64}  # fmt: skip
    plain = train(cfg)
    loss = losses(plain)
    n = len(loss)
    assert plain.status == "diverged" and plain.message.startswith(f"loss is nan at update {n} ")
    k = first_above(loss[:-1], 2)
    assert k < n - 1
    assert_stopped_at(train({**cfg, "diverge_above": 2}), plain, k, 1, 2)
    assert train({**cfg, "diverge_above": 1e30}).message == plain.message  # NaN first


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    """Checkpoints at updates 200, 400, 600, ... (3 epochs of 400): resumed from the first
    (epoch 1: the starting loss read from the epoch's losses) and from those of epochs 2
    and 3 (read from the stored curve), the run stops at the same update, curve bit for bit."""
    cfg = {**SGD, "sequence_length": 8000, "batch_size": 4, "lr": 10.0, "hidden_size": 8,
           "epochs": 3, "checkpoint_every": 200}  # fmt: skip
    loss = losses(train(cfg))
    k = int(np.flatnonzero(loss > loss[:800].max())[0])  # a record high in epoch 3
    cfg["diverge_above"] = (loss[:800].max() + loss[k]) / 2 / loss[0]
    resolved = resolve(cfg)
    rid = run_id(resolved)
    results = tmp_path / "res"
    copies, write = [], checkpoint.write_file

    def keep(path, meta, arrays):
        write(path, meta, arrays)
        copies.append(shutil.copyfile(path, tmp_path / f"{len(copies)}.npz"))

    monkeypatch.setattr(checkpoint, "write_file", keep)
    whole, whole_curve = execute(Task(rid, resolved, checkpoints=str(results)))
    monkeypatch.undo()
    assert whole.status == "diverged" and f"at update {k + 1} (epoch 3)" in whole.error
    steps = [checkpoint.read_file(c)[0]["position"]["step"] for c in copies]
    assert steps[:4] == [200, 400, 600, 800], steps
    for copy in copies:
        shutil.rmtree(results / "checkpoints", ignore_errors=True)
        (results / "checkpoints").mkdir(parents=True)
        shutil.copyfile(copy, results / "checkpoints" / f"{rid}.npz")
        again, curve = execute(Task(rid, resolved, checkpoints=str(results)))
        assert again.provenance["resumed"]["update"] in steps
        assert (again.status, again.error) == (whole.status, whole.error)
        assert np.array_equal(curve["value"].to_numpy(), whole_curve["value"].to_numpy())
