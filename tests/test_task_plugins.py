"""Tasks as plug-ins: a user's Task subclass named as "package.module:Name" trains like a
built-in one; bad task names fail with one line."""

import numpy as np
import pytest
from click.testing import CliRunner

import rnnfast
from rnnfast.cli import main
from rnnfast.config import resolve
from rnnfast.grid import run_id
from rnnfast.seqdata import Evaluation, Form, Split, TaskData
from rnnfast.tasks import Task, builtin_names


class Parity(Task):
    """Is the number of ones in a bit sequence odd? (a set of 200 sequences of 6 bits)"""

    name = "parity"
    keys = {"bits": ("int", 1)}
    defaults = {"bits": 6, "hidden_size": 16, "batch_size": 20, "epochs": 3, "lr": 0.02}
    metrics = ("loss", "test_accuracy", "updates")

    def prepare(self, cfg, data=None):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 2, (200, cfg["bits"]))
        y = (x.sum(1) % 2).reshape(-1, 1)
        form = Form(inputs="onehot", input_size=2, vocab=2, targets="classes", outputs=2,
                    per_step=False, mode="set", steps=cfg["bits"],
                    batch=cfg["batch_size"])  # fmt: skip
        train, test = Split(x[:160], y[:160], 160), Split(x[160:], y[160:], 40)
        return TaskData(form, lambda epoch: train, 160 // cfg["batch_size"], cfg["epochs"],
                        [Evaluation("test", test, ("accuracy",), every_epoch=False)])  # fmt: skip


SPEC = f"{__name__}:Parity"


def test_a_plugin_task_trains_with_its_own_keys_and_defaults():
    cfg = resolve({"task": SPEC, "bits": 4})
    assert (cfg["bits"], cfg["hidden_size"], cfg["epochs"]) == (4, 16, 3)
    r = rnnfast.train({"task": SPEC, "bits": 4, "epochs": 2})
    assert r.status == "ok" and 0 <= r.final["test_accuracy"] <= 1
    assert r.final["updates"] == 2 * 8
    assert run_id(cfg) != run_id(resolve({"task": SPEC, "bits": 5}))
    with pytest.raises(ValueError, match=r"^bits: expected an integer >= 1, got 0"):
        resolve({"task": SPEC, "bits": 0})
    with pytest.raises(ValueError, match=r"^variant: not a key of task"):
        resolve({"task": SPEC, "variant": "rows"})


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "nosuchtask",
            r"^task: expected one of \[.*'sequences', 'text'\] or 'package.module:Name'",
        ),
        ("no_such_module_xyz:Task", r"^task: cannot import 'no_such_module_xyz' \(ModuleNotFound"),
        ("rnnfast.tasks:get_task", r"^task: 'rnnfast.tasks:get_task' is not a subclass of"),
        (3, r"^task: expected one of"),
    ],
)
def test_bad_task_names_are_one_line(name, message):
    with pytest.raises(ValueError, match=message):
        resolve({"task": name})


def test_rnnfast_tasks_lists_the_built_in_tasks():
    res = CliRunner().invoke(main, ["tasks"])
    assert res.exit_code == 0
    heads = [line.split(":")[0] for line in res.output.splitlines() if not line.startswith(" ")]
    assert heads == builtin_names()
    assert "keys: data, num_steps, truncation, valid_fraction, embedding" in res.output
