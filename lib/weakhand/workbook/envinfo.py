"""What a run was computed with: Python, platform, package versions, GPU, git commit and
whether the tree was dirty, the dependency lock (requirements.lock) and whether the environment
matches it."""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import os
import re
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# reported name -> distribution names to try (first installed wins)
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "numba": ("numba",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
               "opencv-contrib-python"),
    "plotly": ("plotly",),
    "papermill": ("papermill",),
}


def package_version(*dists: str) -> str | None:
    """Installed version of the first of `dists` found, else None (nothing is imported)."""
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def _torch_info() -> dict[str, Any]:
    info: dict[str, Any] = {"torch": None, "cuda_available": False, "cuda_device": None,
                            "cuda_version": None}
    try:
        import torch
    except Exception:  # not installed or broken install: report as missing
        return info
    info["torch"] = str(torch.__version__)
    info["cuda_version"] = getattr(torch.version, "cuda", None)
    try:
        if torch.cuda.is_available():
            info["cuda_available"] = True
            info["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    return info


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float | None:
    """Best-of-`repeats` float32 n x n matmul throughput on the CPU in GFLOP/s (~0.1 s), or None
    without torch. Wall times of runs on different machines compare through this number: the
    same job takes ~2x longer on a VM whose figure is half as large."""
    try:
        import time

        import torch
    except Exception:
        return None
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b  # warm-up (thread pool, caches)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return round(2 * n**3 / best / 1e9, 1)


def cpu_vector_flags() -> list[str]:
    """The CPU's wide-vector instruction sets (avx2, fma, avx512*) from /proc/cpuinfo ([] elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return sorted({f for f in line.split() if f in ("avx2", "fma") or f.startswith("avx512")})


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """`git rev-parse HEAD` of the repository (None when not a git checkout or git missing)."""
    if path is None:
        from .runs import repo_root
        path = repo_root()
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def environment_info() -> dict[str, Any]:
    """JSON-friendly description of the environment (missing packages -> None)."""
    info: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cpu_affinity"] = None
    info.update(_torch_info())
    info["cpu_matmul_gflops"] = matmul_gflops()
    info["cpu_vector_flags"] = cpu_vector_flags()
    for name, dists in PACKAGES.items():
        info[name] = package_version(*dists)
    info["weakhand"] = package_version("weakhand")
    git = git_state()
    info["git_commit"] = git["commit"]
    info["git_dirty"] = git["dirty"]
    info["git_dirty_files"] = git["dirty_files"]
    info["lock"] = lock_info()
    return info


def _git(args: list[str], path: str | os.PathLike) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(path: str | os.PathLike | None = None, max_files: int = 20) -> dict[str, Any]:
    """The checkout's commit and whether its tracked files differ from it.

    ``{"commit": sha | None, "dirty": bool | None, "dirty_files": [...]}`` (at most `max_files`
    paths, ``git status --porcelain`` of tracked files; untracked files do not count). None
    values when `path` is not a git checkout (e.g. a non-editable install) or git is missing.
    """
    if path is None:
        from .runs import repo_root
        path = repo_root()
    commit = git_commit(path)
    if commit is None:
        return {"commit": None, "dirty": None, "dirty_files": []}
    status = _git(["status", "--porcelain", "--untracked-files=no"], path)
    if status is None:
        return {"commit": commit, "dirty": None, "dirty_files": []}
    files = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "dirty": bool(files), "dirty_files": files[:max_files]}


def version_text() -> str:
    """``weakhand 0.1.0 (git 1a2b3c4d5e6f, dirty: 3 tracked files changed)`` for ``--version``."""
    from .. import __version__

    g = git_state()
    if g["commit"] is None:
        where = "not a git checkout"
    elif g["dirty"] is None:
        where = f"git {g['commit'][:12]}, dirty state unknown"
    elif g["dirty"]:
        n = len(g["dirty_files"])
        where = f"git {g['commit'][:12]}, dirty: {n}{'+' if n >= 20 else ''} tracked file(s) changed"
    else:
        where = f"git {g['commit'][:12]}, clean"
    return f"weakhand {__version__} ({where})"


class VersionAction(argparse.Action):
    """``--version`` that computes the git state only when asked (not at every CLI start)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show the version, the git commit and whether the tree is dirty, and exit"):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())                              # stdout, as argparse's "version"
        parser.exit()


# --- the dependency lock --------------------------------------------------------------------------
LOCK_FILE = "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Jinja2`` -> ``jinja2``, ``a_b`` -> ``a-b``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | os.PathLike) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a lock file."""
    pins: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[canonical_name(m.group(1))] = m.group(2)
    return pins


def lock_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The lock file, its SHA-256, and whether the installed packages match its pins.

    ``matches`` is True when every pinned distribution is installed at the pinned version
    (a local version label such as ``+cpu`` is ignored); ``mismatches`` lists the others as
    ``name: installed X, locked Y``. ``path`` None: <repo>/requirements.lock.
    """
    if path is None:
        from .runs import repo_root
        path = repo_root() / LOCK_FILE
    path = Path(path)
    if not path.is_file():
        return {"file": str(path), "sha256": None, "matches": None, "mismatches": []}
    data = path.read_bytes()
    mismatches = []
    for name, want in read_lock(path).items():
        have = package_version(name)
        if have is None or have.split("+", 1)[0] != want.split("+", 1)[0]:
            mismatches.append(f"{name}: installed {have}, locked {want}")
    return {"file": str(path), "sha256": hashlib.sha256(data).hexdigest(),
            "matches": not mismatches, "mismatches": mismatches[:50]}
