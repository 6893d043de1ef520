"""The driver compiles a grid's kernels once before its workers start, and says so when it
really compiles (rnnfast.warmup)."""

import io

from numba import njit

from rnnfast import warmup
from rnnfast.executors import Task


def _jitted(module: str):
    """A fresh jitted function that Numba sees as defined in `module` (uncached: every
    call of this helper compiles anew)."""
    ns: dict = {"__name__": module}
    exec("def f(x):\n    return x + 1\n", ns)  # noqa: S102
    return njit(ns["f"])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_notice_once_when_an_rnnfast_kernel_compiles():
    out = io.StringIO()
    with warmup.compile_notice(42, out):
        _jitted("numpy.fake")(1)  # not rnnfast's: no word
        assert out.getvalue() == ""
        _jitted("rnnfast.fake")(1)
        _jitted("rnnfast.fake")(2)
    assert out.getvalue() == "compiling kernels for first use (about 42 s)\n"


def test_notice_quiet_without_a_compile_and_after_the_block():
    f = _jitted("rnnfast.fake")
    f(1)  # compiled before the block
    out = io.StringIO()
    with warmup.compile_notice(5, out):
        f(2)
    _jitted("rnnfast.fake")(1)  # the listener is gone
    assert out.getvalue() == ""


def test_notice_goes_below_a_progress_bar_on_a_terminal():
    out = _Tty()
    with warmup.compile_notice(5, out):
        _jitted("rnnfast.fake")(1)
    assert out.getvalue() == "\ncompiling kernels for first use (about 5 s)\n"


def test_estimate_adds_the_evaluation_loop():
    assert warmup.estimate(True) == warmup.LOOP_SECONDS + warmup.EVALUATE_SECONDS
    assert warmup.estimate(False) == warmup.LOOP_SECONDS


def test_warm_up_takes_the_first_cpu_task_with_its_threads(monkeypatch):
    seen = []
    monkeypatch.setattr(warmup, "warm_up_config", lambda cfg, threads, stream: seen.append(
        (cfg["seed"], threads)))  # fmt: skip
    tasks = [Task("a", {"backend": "cuda", "seed": 0}, threads=1),
             Task("b", {"seed": 1}, threads=2), Task("c", {"seed": 2}, threads=3)]  # fmt: skip
    warmup.warm_up(tasks)
    assert seen == [(1, 2)]
    warmup.warm_up([tasks[0]])  # nothing on the CPU
    assert seen == [(1, 2)]


def test_warm_up_leaves_a_bad_or_cuda_config_to_the_run(monkeypatch):
    built = []
    import rnnfast.run_setup  # noqa: PLC0415

    monkeypatch.setattr(rnnfast.run_setup, "RunSetup", lambda cfg: built.append(cfg))
    warmup.warm_up_config({"task": "no-such-task"})  # resolve fails: no exception here
    warmup.warm_up_config({"task": "dependency", "backend": "cuda"})
    assert built == []
    warmup.warm_up_config({"task": "dependency"})  # a CPU run gets set up
    assert [c["task"] for c in built] == ["dependency"]


def test_warm_up_refuses_what_the_memory_guard_refuses(monkeypatch):
    import rnnfast.memory  # noqa: PLC0415
    import rnnfast.run_setup  # noqa: PLC0415

    built = []
    monkeypatch.setattr(rnnfast.run_setup, "RunSetup", lambda cfg: built.append(cfg))

    def refuse(cfg, data):
        raise rnnfast.memory.MemoryLimitError("too big")

    monkeypatch.setattr(rnnfast.memory, "check", refuse)
    warmup.warm_up_config({"task": "dependency", "hidden_size": 20000})
    assert built == []


def test_run_one_says_so_when_its_kernels_compile(monkeypatch):
    """The notice wraps run one's training (which sets itself up once): a kernel compiled
    while it trains gives the one line on stderr."""
    from click.testing import CliRunner  # noqa: PLC0415

    import rnnfast.training  # noqa: PLC0415
    from rnnfast.cli import main  # noqa: PLC0415

    real = rnnfast.training.train

    def train(config, **kw):
        _jitted("rnnfast.fake")(1)  # as a cold cache would
        return real(config, **kw)

    monkeypatch.setattr(rnnfast.training, "train", train)
    args = ["run", "one", "--task", "dependency", "sequence_length=4000", "batch_size=20",
            "num_steps=5", "hidden_size=2"]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    expected = f"compiling kernels for first use (about {warmup.estimate(True)} s)"
    assert expected in r.stderr.splitlines()
