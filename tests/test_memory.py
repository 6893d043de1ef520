"""rnnfast.memory: the estimate against what the CPU driver really allocates, the limit and its
override, and the guard in rnnfast.train and in grids (one line, before anything is
allocated)."""

import numpy as np
import pytest
from tiny_grids import dependency_grid

from rnnfast import memory
from rnnfast.config import resolve
from rnnfast.grid import GridError, load_grid
from rnnfast.memory import MemoryLimitError, estimate, format_bytes, parse_size
from rnnfast.tasks import get_task

SMALL = {"task": "dependency", "sequence_length": 4000, "batch_size": 20, "num_steps": 5}


@pytest.fixture(autouse=True)
def _no_limit(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64G", 64 * 2**30), ("512M", 512 * 2**20), ("1.5T", int(1.5 * 2**40)), ("2kB", 2048),
     ("1000", 1000), ("8GiB", 8 * 2**30), ("off", None), ("OFF", None)],
)  # fmt: skip
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1G", "5X", "1e9"])
def test_parse_size_rejects_other_text(text):
    with pytest.raises(ValueError, match=r"RNNFAST_MEMORY_LIMIT: expected a size"):
        parse_size(text)


def test_format_bytes():
    assert format_bytes(1536) == "1.5 kB"
    assert format_bytes(3 * 2**30) == "3 GB"
    assert format_bytes(12) == "12 B"


def test_available_from_meminfo_or_the_override(monkeypatch):
    limit, source = memory.available()
    assert source in ("available", "unknown")
    assert limit is None or limit > 0
    monkeypatch.setenv(memory.ENV, "3G")
    assert memory.available() == (3 * 2**30, "RNNFAST_MEMORY_LIMIT=3G")
    monkeypatch.setenv(memory.ENV, "off")
    assert memory.available() == (None, "RNNFAST_MEMORY_LIMIT=off")


def _allocated(cfg, data=None) -> tuple:
    """(theta, optimizer state, fused-loop buffers) bytes the CPU driver allocates for cfg:
    its training buffers and, as CpuTrainer.evaluate makes them, one set per evaluation
    batch; dtheta (a parameter-sized gradient) is left to the parameters."""
    from rnnfast.cpu.trainer import CpuTrainer, _Buffers, train_chunks  # noqa: PLC0415
    from rnnfast.run_setup import RunSetup  # noqa: PLC0415

    s = RunSetup(cfg, data)
    t = CpuTrainer(s)
    bufs = [t.buf]
    for batch in {s.eval_data(k)[3] for k in range(len(s.data.evaluations))}:
        bufs.append(_Buffers(s, batch, train_chunks(cfg, s.spec, s.T, batch), s.eval_form.head))
    loop = 0
    for b in bufs:
        seen = {id(a): a for g in (b.work, b.state) for a in g}  # the state shares a zero array
        loop += sum(a.nbytes for a in seen.values()) - b.work.dtheta.nbytes
    return s.theta.nbytes, s.s1.nbytes + s.s2.nbytes, loop, s


def _sequences(N=50, T=7, V=6, seed=0):
    """Token sequences of unequal lengths with per-sequence classes, and valid/test splits."""
    rng = np.random.default_rng(seed)

    def split(n):
        return (rng.integers(0, V, (n, T)), rng.integers(0, 3, n), rng.integers(1, T + 1, n))

    return {"train": split(N), "valid": split(13), "test": split(9)}


CASES = [
    ({"task": "dependency", "cell": "rnn", "hidden_size": 16, "optimizer": "adagrad"}, None),
    ({"task": "dependency", "cell": "lstm", "hidden_size": 64, "optimizer": "adam",
      "threads": 2}, None),  # batch chunks where the machine allows them
    ({"task": "dependency", "cell": "gru", "hidden_size": 8, "num_layers": 2,
      "optimizer": "sgd", "truncation": "true", "dtype": "float64"}, None),
    ({"task": "dependency", "cell": "rnn", "hidden_size": 8, "optimizer": "sgd",
      "momentum": 0.9}, None),
    ({"task": "sequences", "cell": "gru", "hidden_size": 12, "bidirectional": True,
      "embedding": 5, "batch_size": 8, "optimizer": "rmsprop"}, _sequences()),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "data"), CASES)
def test_estimate_is_what_the_cpu_driver_allocates(extra, data):
    base = SMALL if extra["task"] == "dependency" else {}
    cfg = resolve({**base, **extra})
    est = estimate(cfg, get_task(cfg["task"]).prepare(cfg, data))
    theta, optimizer, loop, setup = _allocated(cfg, data)
    assert est.parameters == 3 * theta  # theta, dtheta, the copy returned
    assert est.optimizer == optimizer
    assert est.buffers == loop
    split = setup.data.train(1)
    assert est.data >= split.x.nbytes // 2  # about one epoch's inputs (targets besides)
    assert est.total == est.parameters + est.optimizer + est.buffers + est.data


def test_estimate_counts_evaluation_buffers_and_data():
    cfg = resolve({**SMALL, "hidden_size": 8})
    td = get_task("dependency").prepare(cfg)
    base = estimate(cfg, td)

    class _Split:
        x = np.zeros((20, 1000), np.int32)
        y = np.zeros((20, 1000), np.int32)
        lengths = None
        count = 1000

    class _Eval:
        split, batch = _Split(), None

    td.evaluations = [_Eval()]
    with_eval = estimate(cfg, td)
    assert with_eval.data == base.data + 2 * 20 * 1000 * 4
    assert with_eval.buffers > base.buffers
    assert with_eval.parameters == base.parameters


def test_cuda_backend_counts_the_host_share_only():
    cfg = resolve({**SMALL, "hidden_size": 8})
    td = get_task("dependency").prepare(cfg)
    est = estimate({**cfg, "backend": "cuda"}, td)
    assert est.buffers == 0
    assert est.parameters == estimate(cfg, td).parameters


def test_check_refuses_with_one_line_giving_the_estimate_and_the_limit(monkeypatch):
    cfg = resolve({**SMALL, "hidden_size": 300})
    monkeypatch.setenv(memory.ENV, "1M")
    with pytest.raises(MemoryLimitError) as info:
        memory.check(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    est = estimate(cfg, get_task("dependency").prepare(cfg))
    assert msg.startswith(f"memory: the run needs about {format_bytes(est.total)} (parameters ")
    assert "more than the 1 MB RNNFAST_MEMORY_LIMIT=1M" in msg
    monkeypatch.setenv(memory.ENV, "1G")
    assert memory.check(cfg).total == est.total
    monkeypatch.setenv(memory.ENV, "off")
    assert memory.check(cfg) is None


def test_train_refuses_before_setting_up_the_run(monkeypatch):
    import rnnfast.training  # noqa: PLC0415

    def no_setup(*args, **kwargs):
        raise AssertionError("RunSetup reached: the guard came too late")

    monkeypatch.setattr(rnnfast.training, "RunSetup", no_setup)
    with pytest.raises(MemoryLimitError, match=r"^memory: the run needs about .* TB"):
        rnnfast.training.train({"task": "dependency", "hidden_size": 10**6})  # about 16 TB
    monkeypatch.setenv(memory.ENV, "off")
    with pytest.raises(AssertionError, match="RunSetup reached"):
        rnnfast.training.train({"task": "dependency", "hidden_size": 10**6})


GRID = dependency_grid("big", grid="hidden_size = [4, 3000, 2000]\nseed = [0, 1]")


def test_grid_memory_check_names_the_count_and_the_largest_point(tmp_path, monkeypatch):
    f = tmp_path / "g.toml"
    f.write_text(GRID)
    monkeypatch.setenv(memory.ENV, "50M")
    assert len(load_grid(f).points()) == 6  # checked only when asked (run grid)
    with pytest.raises(GridError) as info:
        load_grid(f, check_memory=True)
    (line,) = info.value.problems
    assert line.startswith(f"{f}: memory: 4 of 6 runs need more than the 50 MB ")
    assert "the largest, at grid point hidden_size=3000, seed=0, about " in line
    monkeypatch.setenv(memory.ENV, "off")
    assert len(load_grid(f, check_memory=True).points()) == 6
