#!/usr/bin/env python3
"""Create or update the project's virtual environment (.venv) idempotently.

Standard library only, so it runs on a fresh machine before anything is installed.

* The install list is read from the `pip:` section of environment.yml (torch, the lock
  `-r requirements.lock`, the project `-e .[lab,test]`), so the venv route and the conda route
  install exactly the same set: the exact versions of requirements.lock (tools/lock.py makes
  it from pyproject.toml's ranges). A lock that is stale (ranges changed since it was made) is
  refused; on a Python other than the lock's, the ranges are installed instead, with a warning.
  After installing, the venv is checked against the lock (every pin at its version).
* A stamp file (hash of environment.yml + pyproject.toml + requirements.lock) makes a second
  call a no-op.
* In a git checkout, nbstripout is registered as the repository-local git filter named in
  .gitattributes, so notebooks opened and saved in place never show outputs to git.
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


def req_name(req: str) -> str:
    """'torch==2.13.0' -> 'torch' (the distribution name of a requirement line)."""
    for sep in "=<>!~[; ":
        req = req.split(sep, 1)[0]
    return req.strip().lower()


def torch_spec(reqs: list[str]) -> str:
    specs = [r for r in reqs if req_name(r) == "torch"]
    if len(specs) != 1:
        sys.exit("bootstrap: environment.yml's pip: list must name torch exactly once "
                 f"(found {specs})")
    return specs[0]


def lock_entries(reqs: list[str]) -> list[Path]:
    """The lock files named by `-r FILE` entries (relative to the repository)."""
    return [ROOT / r.split(None, 1)[1] for r in reqs if r.startswith("-r ")]


def lock_python(lock: Path) -> str | None:
    """'3.11' from the lock header's `# resolved for: Python 3.11.7 ...` line."""
    for line in lock.read_text().splitlines():
        if line.startswith("# resolved for: Python "):
            return ".".join(line.split()[4].split(".")[:2])
    return None


def venv_python_version(py: str) -> str:
    out = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def check_venv_against_locks(py: str, locks: list[Path]) -> None:
    """Every pin of each lock installed at its version (local labels such as +cpu ignored)."""
    for lock in locks:
        code = ("import json, sys; from weakhand.workbook.envinfo import lock_info; "
                "print(json.dumps(lock_info(sys.argv[1])))")
        out = subprocess.run([py, "-c", code, str(lock)], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bootstrap: could not check the venv against {lock.name}:\n{out.stderr}")
        info = json.loads(out.stdout)
        if not info["matches"]:
            sys.exit(f"bootstrap: the venv does not match {lock.name}:\n  "
                     + "\n  ".join(info["mismatches"])
                     + "\nRecreate it (rm -rf .venv; make env) or refresh the lock "
                       "(python3 tools/lock.py).")
        print(f"bootstrap: venv matches {lock.name} (sha256 {info['sha256'][:12]})")


NBSTRIPOUT_ARGS = ("--keep-id --extra-keys '" + " ".join(
    f"metadata.language_info.{k}" for k in ("codemirror_mode", "file_extension", "mimetype",
                                            "nbconvert_exporter", "pygments_lexer", "version"))
    + "'")


def install_git_filter(py: str, repo: Path = ROOT) -> bool:
    """Register nbstripout as this repository's (local) `nbstripout` git filter and `ipynb` diff.

    .gitattributes maps *.ipynb to them; the commands run the venv's nbstripout, keeping cell
    ids and reducing `language_info` to its name, so a notebook executed and saved in place
    (outputs, execution counts, widget state, kernel version) is byte-identical to the committed
    one for git. Returns False (and says why) when not a git checkout or nbstripout is missing.
    """
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=repo,
                            capture_output=True, text=True)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        print("bootstrap: not a git checkout: no nbstripout filter to register")
        return False
    if subprocess.run([py, "-m", "nbstripout", "--version"], capture_output=True).returncode:
        print("bootstrap: nbstripout is not installed in the venv: git filter not registered")
        return False
    strip = f"'{py}' -m nbstripout {NBSTRIPOUT_ARGS}"
    for key, value in (("filter.nbstripout.clean", strip),
                       ("filter.nbstripout.smudge", "cat"),
                       ("diff.ipynb.textconv", strip + " -t")):
        subprocess.run(["git", "config", "--local", key, value], cwd=repo, check=True)
    print("bootstrap: nbstripout registered as the repository's git filter for notebooks")
    return True


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

    venv = Path(args.venv).absolute()
    env_file = ROOT / "environment.yml"
    reqs = pip_requirements(env_file)
    locks = lock_entries(reqs)
    digest = hashlib.sha256()
    for f in (env_file, ROOT / "pyproject.toml", *[lk for lk in locks if lk.exists()]):
        digest.update(f.read_bytes())
    stamp = venv / STAMP_NAME
    py = str(venv / "bin" / "python")

    if (not args.force and stamp.exists() and stamp.read_text().strip() == digest.hexdigest()
            and Path(py).exists()):
        return  # up to date: nothing to do, print nothing

    if not Path(py).exists():
        run([sys.executable, "-m", "venv", str(venv)])
    for lock in locks:
        if not lock.exists():
            sys.exit(f"bootstrap: {lock} is missing: make it with python3 tools/lock.py")
        sys.path.insert(0, str(ROOT / "tools"))
        from lock import is_stale
        if is_stale(lock):
            sys.exit(f"bootstrap: {lock.name} is stale (pyproject.toml's dependency ranges or "
                     "the torch pin changed since it was made): run python3 tools/lock.py")
    spec = torch_spec(reqs)
    install_torch(py, spec)
    rest = [r for r in reqs if r != spec]
    pyver = venv_python_version(py)
    foreign = [lk for lk in locks if lock_python(lk) not in (None, pyver)]
    if foreign:
        print(f"bootstrap: WARNING: {', '.join(lk.name for lk in foreign)} was resolved for "
              f"Python {lock_python(foreign[0])}, this venv has {pyver}: installing "
              "pyproject.toml's ranges instead (not reproducible; see README, 'The lock')",
              flush=True)
        rest = [r for r in rest if not (r.startswith("-r ") and ROOT / r.split(None, 1)[1] in foreign)]
        locks = [lk for lk in locks if lk not in foreign]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, dir=ROOT) as fh:
        fh.write("\n".join(rest) + "\n")
        req_file = fh.name
    try:
        run([py, "-m", "pip", "install", "-r", req_file], cwd=ROOT)
    finally:
        os.unlink(req_file)
    check_venv_against_locks(py, locks)
    install_git_filter(py)
    # Register the venv's kernel under the standard name so papermill/nbval/JupyterLab agree.
    run([py, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3",
         "--display-name", "Python 3 (ipykernel)"], stdout=subprocess.DEVNULL)
    stamp.write_text(digest.hexdigest() + "\n")
    print(f"bootstrap: environment ready in {venv}")


if __name__ == "__main__":
    main()
