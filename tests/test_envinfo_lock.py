"""run.json's provenance (git commit, dirty tree, the lock and its hash), `weakhand --version`,
the lock being current with pyproject.toml, and the bootstrap's install list (issue 17)."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from project_tools import load_tool
from weakhand.workbook import cli, envinfo

ROOT = Path(__file__).resolve().parent.parent


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_git_state_clean_dirty_and_not_a_checkout(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("1")
    _git(repo, "add", "a.txt")
    _git(repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-q", "-m", "x")
    st = envinfo.git_state(repo)
    assert len(st["commit"]) == 40 and st["dirty"] is False and st["dirty_files"] == []
    (repo / "untracked.txt").write_text("u")              # untracked files do not count
    assert envinfo.git_state(repo)["dirty"] is False
    (repo / "a.txt").write_text("2")
    st = envinfo.git_state(repo)
    assert st["dirty"] is True and st["dirty_files"] == ["a.txt"]
    assert envinfo.git_state(tmp_path) == {"commit": None, "dirty": None, "dirty_files": []}


def test_version_names_commit_and_dirty_state(capsys, monkeypatch):
    monkeypatch.setattr(envinfo, "git_state", lambda *a, **k: {
        "commit": "0123456789abcdef" * 2 + "01234567", "dirty": True, "dirty_files": ["x", "y"]})
    with pytest.raises(SystemExit) as ei:
        cli.main(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out.strip() == \
        "weakhand 0.1.0 (git 0123456789ab, dirty: 2 tracked file(s) changed)"
    monkeypatch.setattr(envinfo, "git_state", lambda *a, **k: {
        "commit": "f" * 40, "dirty": False, "dirty_files": []})
    assert envinfo.version_text().endswith("(git ffffffffffff, clean)")
    monkeypatch.setattr(envinfo, "git_state", lambda *a, **k: {
        "commit": None, "dirty": None, "dirty_files": []})
    assert envinfo.version_text().endswith("(not a git checkout)")


def test_lock_info_hash_and_mismatches(tmp_path):
    np_version = envinfo.package_version("numpy")
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# header\nnumpy=={np_version}\nPlotly=={envinfo.package_version('plotly')}\n")
    info = envinfo.lock_info(lock)
    assert info["sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert info["matches"] is True and info["mismatches"] == []
    lock.write_text("numpy==0.0.1\nsurely-not-installed-xyz==1.0\n")
    info = envinfo.lock_info(lock)
    assert info["matches"] is False
    assert info["mismatches"] == [f"numpy: installed {np_version}, locked 0.0.1",
                                  "surely-not-installed-xyz: installed None, locked 1.0"]
    assert envinfo.lock_info(tmp_path / "nope")["sha256"] is None


def test_environment_info_records_git_and_lock():
    info = envinfo.environment_info()
    for key in ("git_commit", "git_dirty", "git_dirty_files", "lock"):
        assert key in info
    assert info["lock"]["file"].endswith("requirements.lock")
    assert info["lock"]["sha256"] == hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes()).hexdigest()
    # the machine's speed, so wall times of runs on different VMs can be compared
    assert info["cpu_matmul_gflops"] > 0.1 and isinstance(info["cpu_vector_flags"], list)


def test_matmul_gflops_counts_2n3_flops_per_product(monkeypatch):
    """With a clock that advances 1 s per product, an n x n matmul scores 2 n^3 / 1e9 GFLOP/s
    (2.0 for n = 1000)."""
    import time
    ticks = iter(range(0, 1000))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    assert envinfo.matmul_gflops(n=1000, repeats=3) == 2.0


def test_committed_lock_is_current_and_pins_torch_without_local_label():
    lock = load_tool("lock")
    assert lock.is_stale(ROOT / "requirements.lock") is False, \
        "pyproject.toml's ranges changed since requirements.lock was made: run python3 tools/lock.py"
    pins = envinfo.read_lock(ROOT / "requirements.lock")
    assert pins["torch"] == "2.13.0"                      # satisfied by the CPU and CUDA builds
    for name in ("numpy", "plotly", "jupyterlab", "pytest", "nbval", "nbstripout", "playwright"):
        assert name in pins, name
    assert "weakhand" not in pins and not any(n.startswith("nvidia-") for n in pins)


def test_torch_range_admits_2_13_0_and_no_newer_release():
    """pyproject's torch range is satisfied by the installed 2.13.0 (pip adds nothing) and
    excludes the next release, which would come as a multi-GB CUDA build on a CPU machine."""
    packaging = pytest.importorskip("packaging.requirements")
    import tomllib
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = [packaging.Requirement(d) for d in deps if d.startswith("torch")]
    assert len(torch) == 1
    assert torch[0].specifier.contains("2.13.0") and not torch[0].specifier.contains("2.14.0")


def test_environment_yml_installs_the_lock_and_the_extras():
    boot = load_tool("bootstrap")
    reqs = boot.pip_requirements(ROOT / "environment.yml")
    assert reqs == ["torch==2.13.0", "-r requirements.lock", "-e .[lab,test]"]
    assert boot.torch_spec(reqs) == "torch==2.13.0"
    assert boot.lock_entries(reqs) == [ROOT / "requirements.lock"]
    assert boot.lock_python(ROOT / "requirements.lock") == "3.11"
