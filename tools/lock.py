#!/usr/bin/env python3
"""Regenerate requirements.lock: the exact versions `make env` and CI install.

Standard library only. pip itself resolves the project's dependency ranges (pyproject.toml:
runtime + the `lab` and `test` extras, plus the torch pin of environment.yml) without
installing anything (`pip install --dry-run --ignore-installed --report`), and the resolved
set is written as ``name==version`` lines, sorted, with a header naming the Python, the platform
and a hash of the dependency ranges it was resolved from (so a stale lock is detected).

    python3 tools/lock.py                     # resolve with .venv's pip, write requirements.lock
    python3 tools/lock.py --check             # exit 1 if the lock is stale (ranges changed)
    python3 tools/lock.py --python /path/python3.11 --out requirements.lock

Run it after changing a dependency range in pyproject.toml or to take newer releases, then
`make env` (the bootstrap reinstalls when the lock changes) and the tests; commit both files.
The lock is for the Python/platform in its header (CPython 3.11, Linux x86_64); elsewhere the
bootstrap falls back to the ranges and says so. torch is written without its local label
(``torch==2.13.0``, not ``+cpu``) so the CPU and the CUDA build both satisfy it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
EXTRAS = "lab,test"
SELF = "weakhand"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bootstrap import pip_requirements, torch_spec  # noqa: E402


def dependency_ranges(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The requirement strings the lock is resolved from (runtime + the locked extras)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: no tomllib; the bootstrap then skips the check
        return []
    proj = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(proj.get("dependencies", []))
    for extra in EXTRAS.split(","):
        reqs += [f"[{extra}] {r}" for r in proj.get("optional-dependencies", {}).get(extra, [])]
    return reqs


def inputs_digest(env_file: Path = ROOT / "environment.yml") -> str | None:
    """SHA-256 of what the lock is resolved from: the ranges and environment.yml's torch pin."""
    ranges = dependency_ranges()
    if not ranges:
        return None
    torch = torch_spec(pip_requirements(env_file))
    return hashlib.sha256(json.dumps([ranges, torch]).encode()).hexdigest()


def header_digest(lock: Path) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith("# inputs-sha256:"):
            return line.split(":", 1)[1].strip()
    return None


def is_stale(lock: Path = LOCK) -> bool | None:
    """True if pyproject's ranges or the torch pin changed since the lock was made (None: unknown)."""
    if not lock.exists():
        return True
    now = inputs_digest()
    return None if now is None else now != header_digest(lock)


def resolve(python: str, torch: str) -> tuple[list[tuple[str, str]], dict]:
    """pip's resolution of `torch` + the project with its extras: [(name, version)], environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
               "--report", str(report), torch, "-e", f"{ROOT}[{EXTRAS}]"]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        data = json.loads(report.read_text())
    pins = []
    for item in data.get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if name.lower() == SELF:
            continue
        if name.lower() == "torch":
            version = version.split("+", 1)[0]
        if any(name.lower().startswith(p) for p in ("nvidia-", "triton")):
            sys.exit(f"lock: pip planned a CUDA build of torch ({name}); resolve on a machine "
                     "where torch==X takes the CPU wheel, or pass --python of a venv that has it")
        pins.append((name, version))
    return sorted(pins, key=lambda p: p[0].lower()), data.get("environment", {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                    help="the interpreter whose pip resolves (default .venv/bin/python)")
    ap.add_argument("--out", default=str(LOCK))
    ap.add_argument("--check", action="store_true", help="only say whether the lock is stale")
    args = ap.parse_args()
    out = Path(args.out)
    if args.check:
        stale = is_stale(out)
        print(f"lock: {out.name} is " + {True: "STALE: run python3 tools/lock.py",
                                        False: "up to date", None: "of unknown state"}[stale])
        return 1 if stale else 0
    torch = torch_spec(pip_requirements(ROOT / "environment.yml"))
    pins, env = resolve(args.python, torch)
    lines = [
        "# requirements.lock: the exact versions `make env` (tools/bootstrap.py), CI and the conda",
        "# route (environment.yml) install. Generated by `python3 tools/lock.py`: do not edit by hand.",
        f"# resolved for: Python {env.get('python_full_version', '?')} "
        f"({env.get('implementation_name', '?')}), {env.get('sys_platform', '?')} "
        f"{env.get('platform_machine', '?')}",
        f"# from: pyproject.toml dependencies + [{EXTRAS}] and environment.yml's {torch}",
        f"# inputs-sha256: {inputs_digest()}",
        "# torch is pinned without its local label: install the CPU or CUDA build of it first.",
    ]
    lines += [f"{n}=={v}" for n, v in pins]
    out.write_text("\n".join(lines) + "\n")
    print(f"lock: wrote {len(pins)} pins to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
