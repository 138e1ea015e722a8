"""What a run was computed with: Python, platform, package versions, GPU, git commit."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
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
    for name, dists in PACKAGES.items():
        info[name] = package_version(*dists)
    info["weakhand"] = package_version("weakhand")
    info["git_commit"] = git_commit()
    return info
