#!/usr/bin/env python3
"""Create or update the project's virtual environment (.venv) idempotently.

Standard library only, so it runs on a fresh machine before anything is installed.

* The dependency list is read from the `pip:` section of environment.yml, so the venv
  route and the conda route install exactly the same set.
* A stamp file (hash of environment.yml + pyproject.toml) makes a second call a no-op.
* torch is installed first and on its own; before that, a dry run checks that pip would
  not pull a CUDA build (nvidia-* wheels, several GB) onto a machine without an NVIDIA GPU.
  Set WEAKHAND_TORCH_INDEX_URL to install torch from a specific wheel index (e.g. a CUDA
  or CPU index), or WEAKHAND_ALLOW_CUDA_TORCH=1 to accept a CUDA build anyway.

Usage: python3 tools/bootstrap.py [--venv .venv] [--force]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP_NAME = ".weakhand-bootstrap-stamp"


def pip_requirements(env_file: Path) -> list[str]:
    """Return the entries of the `pip:` list in a conda environment.yml (no YAML library)."""
    reqs: list[str] = []
    pip_indent = None
    for raw in env_file.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if pip_indent is None:
            if stripped in ("- pip:", "-pip:"):
                pip_indent = indent
            continue
        if indent <= pip_indent:
            break
        if stripped.startswith("- "):
            reqs.append(stripped[2:].strip())
    if not reqs:
        sys.exit(f"bootstrap: {env_file} has no `pip:` list under dependencies")
    return reqs


def has_nvidia_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def install_torch(py: str, spec: str) -> None:
    extra = []
    index = os.environ.get("WEAKHAND_TORCH_INDEX_URL")
    if index:
        extra = ["--index-url", index]
    probe = subprocess.run([py, "-c", "import torch, sys; print(torch.__version__)"],
                           capture_output=True, text=True)
    want = spec.split("==", 1)[1] if "==" in spec else None
    if probe.returncode == 0 and (want is None or probe.stdout.strip().split("+")[0] == want):
        print(f"bootstrap: torch {probe.stdout.strip()} already installed")
        return
    if not has_nvidia_gpu() and not os.environ.get("WEAKHAND_ALLOW_CUDA_TORCH"):
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            run([py, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                 "--report", str(report), spec, *extra])
            planned = [item["metadata"]["name"].lower()
                       for item in json.loads(report.read_text()).get("install", [])]
        cuda = [n for n in planned if n.startswith("nvidia-") or n == "triton"]
        if cuda:
            sys.exit(
                "bootstrap: refusing to install a CUDA build of torch on a machine without an "
                f"NVIDIA GPU (pip planned: {', '.join(cuda[:5])}...).\n"
                "Point pip at a CPU wheel: set WEAKHAND_TORCH_INDEX_URL to a CPU wheel index, or "
                "put the CPU wheel in a pip find-links folder; set WEAKHAND_ALLOW_CUDA_TORCH=1 "
                "to override.")
    run([py, "-m", "pip", "install", spec, *extra])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    ap.add_argument("--force", action="store_true", help="reinstall even if the stamp matches")
    args = ap.parse_args()

    venv = Path(args.venv)
    env_file = ROOT / "environment.yml"
    digest = hashlib.sha256()
    for f in (env_file, ROOT / "pyproject.toml"):
        digest.update(f.read_bytes())
    stamp = venv / STAMP_NAME
    py = str(venv / "bin" / "python")

    if (not args.force and stamp.exists() and stamp.read_text().strip() == digest.hexdigest()
            and Path(py).exists()):
        return  # up to date: nothing to do, print nothing

    if not Path(py).exists():
        run([sys.executable, "-m", "venv", str(venv)])
    reqs = pip_requirements(env_file)
    torch_specs = [r for r in reqs if r.split("=")[0].split(">")[0].split("<")[0].strip() == "torch"]
    for spec in torch_specs:
        install_torch(py, spec)
    rest = [r for r in reqs if r not in torch_specs]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, dir=ROOT) as fh:
        fh.write("\n".join(rest) + "\n")
        req_file = fh.name
    try:
        run([py, "-m", "pip", "install", "-r", req_file], cwd=ROOT)
    finally:
        os.unlink(req_file)
    # Register the venv's kernel under the standard name so papermill/nbval/JupyterLab agree.
    run([py, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3",
         "--display-name", "Python 3 (ipykernel)"], stdout=subprocess.DEVNULL)
    stamp.write_text(digest.hexdigest() + "\n")
    print(f"bootstrap: environment ready in {venv}")


if __name__ == "__main__":
    main()
