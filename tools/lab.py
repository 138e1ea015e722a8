#!/usr/bin/env python3
"""`make lab`: JupyterLab on working copies of the notebooks, never on the tracked ones.

The tracked notebooks (notebooks/) are copied into runs/interactive/notebooks/ (git-ignored, in
the interactive run folder the notebooks write to by default) and JupyterLab opens there, so
running cells, autosaves and edited parameters never reach git. A copy is refreshed from
notebooks/ when the tracked notebook changed and the copy was not edited since it was made; an
edited copy is kept (and said so): delete it to take the new version, or copy your change into
notebooks/ yourself to share it (the nbstripout git filter then keeps its outputs out of git).

    python tools/lab.py                       # copy/refresh, then `jupyter lab` there
    python tools/lab.py --prepare-only        # only copy/refresh; print the folder
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "notebooks"
DEST = ROOT / "runs" / "interactive" / "notebooks"
STATE = ".lab-copies.json"   # hidden: {name: {"source": sha256 copied from, "copy": sha256 of the copy}}


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare(source: Path = SOURCE, dest: Path = DEST, say=print) -> Path:
    """Copy new/changed tracked notebooks into `dest`, keeping copies the user edited."""
    dest.mkdir(parents=True, exist_ok=True)
    state_path = dest / STATE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    for src in sorted(source.glob("*.ipynb")):
        copy = dest / src.name
        src_sha = _sha(src)
        rec = state.get(src.name)
        if copy.exists():
            if rec and rec.get("source") == src_sha:
                continue                                    # up to date
            if not rec or rec.get("copy") != _sha(copy):    # edited or run since it was copied
                say(f"lab: kept your edited copy {_show(copy)}; notebooks/{src.name} "
                    "changed since: delete the copy to take the new version")
                continue
        shutil.copy2(src, copy)
        state[src.name] = {"source": src_sha, "copy": _sha(copy)}
        say(f"lab: {'refreshed' if rec else 'copied'} notebooks/{src.name} -> {_show(copy)}")
    state_path.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=str(DEST))
    ap.add_argument("--jupyter", default=str(Path(sys.executable).with_name("jupyter")))
    ap.add_argument("--prepare-only", action="store_true")
    args, jupyter_args = ap.parse_known_args()
    dest = prepare(dest=Path(args.dest).absolute())
    print(f"lab: JupyterLab works on COPIES in {dest} (git-ignored): running and saving them never "
          "changes notebooks/. To change a notebook for everyone, edit notebooks/ "
          "(outputs are stripped for git by the nbstripout filter).", flush=True)
    if args.prepare_only:
        return 0
    os.execv(args.jupyter, [args.jupyter, "lab", str(dest), *jupyter_args])
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
