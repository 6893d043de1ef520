"""Provenance: every key present with the right type, and no probe ever fails a run."""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import rnnfast
from rnnfast import provenance

KEYS = {
    "rnnfast": str, "git_commit": (str, type(None)), "git_dirty": (bool, type(None)),
    "source_sha256": (str, type(None)),
    "python": str, "numpy": str, "numba": str, "scipy": str, "pandas": str,
    "pyarrow": (str, type(None)), "numba_cuda": (str, type(None)), "os": str, "platform": str,
    "machine": str, "hostname": str, "cpu": (str, type(None)), "cpu_count": (int, type(None)),
    "cpu_affinity": (int, type(None)), "numba_threads": (int, type(None)),
    "numba_threading_layer": (str, type(None)), "thread_env": dict,
    "blas": (list, type(None)), "blas_threads": (int, type(None)), "gpu": (str, type(None)),
}  # fmt: skip


def test_keys_and_types():
    p = provenance.collect()
    assert set(p) == set(KEYS)
    for k, t in KEYS.items():
        assert isinstance(p[k], t), (k, p[k])
    assert p["rnnfast"] == rnnfast.__version__
    assert len(p["source_sha256"]) == 64
    json.dumps(p)  # stored as JSON in every run file
    assert all(isinstance(v, str) for v in p["thread_env"].values())


def test_threads_argument_is_reported(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    p = provenance.collect(threads=3)
    assert p["numba_threads"] == 3 and p["thread_env"]["OMP_NUM_THREADS"] == "3"


def test_blas_info_when_threadpoolctl_present():
    pytest.importorskip("threadpoolctl")
    p = provenance.collect()
    assert p["blas"] is not None and all("num_threads" in d for d in p["blas"])


def test_without_threadpoolctl(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tpc(name, *a, **k):
        if name == "threadpoolctl":
            raise ImportError("hidden")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tpc)
    p = provenance.collect()
    assert p["blas"] is None and p["blas_threads"] is None


def test_not_a_git_checkout(tmp_path, monkeypatch):
    pkg = tmp_path / "rnnfast"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    assert provenance.git_info(pkg) == (None, None)
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", pkg)
    p = provenance.collect()
    assert p["git_commit"] is None and p["git_dirty"] is None


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout  # fmt: skip


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_checkout_commit_and_dirty(tmp_path):
    repo = tmp_path / "repo"
    pkg = repo / "rnnfast"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert provenance.git_info(pkg) == (head, False)
    (pkg / "__init__.py").write_text("x = 2\n")
    assert provenance.git_info(pkg) == (head, False)  # cached per process
    provenance.git_info.cache_clear()
    assert provenance.git_info(pkg) == (head, True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_untracked_copy_inside_another_repo_claims_no_commit(tmp_path):
    repo = tmp_path / "other"
    (repo / "venv" / "rnnfast").mkdir(parents=True)
    (repo / "README").write_text("x")
    _git(repo, "init", "-q")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "init")
    (repo / "venv" / "rnnfast" / "__init__.py").write_text("")
    assert provenance.git_info(repo / "venv" / "rnnfast") == (None, None)


def test_git_and_nvidia_smi_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    provenance.gpu_name.cache_clear()
    try:
        assert provenance.git_info(tmp_path) == (None, None)
        assert provenance.gpu_name() is None
    finally:
        provenance.gpu_name.cache_clear()


def _fake(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    f = bin_dir / name
    f.write_text(f"#!/bin/sh\n{body}\n")
    f.chmod(f.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(os.name != "posix", reason="shell scripts as fake commands")
def test_slow_or_failing_tools_give_none(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "git", "sleep 10")
    _fake(bin_dir, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(provenance, "TIMEOUT_S", 0.3)
    provenance.gpu_name.cache_clear()
    try:
        assert provenance.git_info(tmp_path / "x") == (None, None)
        assert provenance.gpu_name() is None
        provenance.gpu_name.cache_clear()
        _fake(bin_dir, "nvidia-smi", "printf 'NVIDIA H100 80GB HBM3\\nNVIDIA H100 80GB HBM3\\n'")
        assert provenance.gpu_name() == "NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3"
    finally:
        provenance.gpu_name.cache_clear()


def test_expensive_probes_run_once(monkeypatch, tmp_path):
    calls = []
    real = subprocess.run

    def counting(args, *a, **k):
        calls.append(args[0])
        return real(args, *a, **k)

    monkeypatch.setattr(provenance.subprocess, "run", counting)
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", tmp_path)
    provenance.gpu_name.cache_clear()
    try:
        provenance.collect()
        n = len(calls)
        provenance.collect()
        assert len(calls) == n and n >= 1
    finally:
        provenance.gpu_name.cache_clear()
