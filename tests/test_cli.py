"""The installed `weakhand` entry point (subprocess)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import weakhand

WEAKHAND = Path(sys.executable).parent / "weakhand"


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(WEAKHAND), *args], capture_output=True, text=True, timeout=60)


def test_help_and_version():
    assert WEAKHAND.exists(), f"entry point missing: {WEAKHAND} (pip install -e .)"
    r = sh("--help")
    assert r.returncode == 0 and "run" in r.stdout and "COMMAND" in r.stdout
    r = sh("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"weakhand {weakhand.__version__} (git ")


def test_run_help():
    r = sh("run", "--help")
    assert r.returncode == 0
    for flag in ("--name", "--profile", "--device", "--only", "--from", "--to", "-p KEY=VALUE",
                 "--notebooks", "--runs-dir", "--list", "--help-params"):
        assert flag in r.stdout, flag


def test_run_usage_error_exit_code(tmp_path):
    r = sh("run", "--notebooks", str(tmp_path / "nope"), "--device", "cpu")
    assert r.returncode == 2 and "notebooks folder not found" in r.stderr
