"""Atomic file and directory writes: a killed process never leaves a half-written artifact.

Every artifact is first written next to its destination under a temporary name and then
moved into place with `os.replace` (atomic on POSIX within one filesystem).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

TMP_MARK = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_sibling(path: Path, is_dir: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{path.name}{TMP_MARK}{os.getpid()}-"  # the writer's pid: see clean_stale_temporaries
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)
        return tmp
    fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp creates 0600; artifacts are ordinary files
    return Path(name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the final path."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write `obj` as JSON atomically (NumPy scalars/arrays and Paths are converted)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to `path` only on success.

    Yields the temporary directory to fill. On any exception (or KeyboardInterrupt) the
    temporary directory is removed and `path` is untouched. With `overwrite=True` an existing
    `path` is replaced (the old one is removed only after the new one is complete). Without
    it, a `path` that another process completed meanwhile wins and this build is dropped.
    Leftover temporaries of killed runs are removed by `clean_stale_temporaries`.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
    clean_stale_temporaries(path)
    tmp = _tmp_sibling(path, is_dir=True)
    try:
        yield tmp
        if path.exists() and not overwrite:
            # another process (e.g. a second DDP rank) completed the same artifact first: keep
            # theirs, drop ours
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if path.exists():
            old = _tmp_sibling(path, is_dir=True)
            old.rmdir()
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove `<name>.tmp-<pid>-*` siblings of `path` left behind by killed writers.

    A temporary whose writer (pid in its name, on this machine) is still alive is kept: several
    processes (e.g. DDP ranks) may build the same artifact at once. Names without a pid (older
    versions) count as stale.
    """
    path = Path(path)
    removed = []
    if path.parent.exists():
        for p in path.parent.glob(f"{path.name}{TMP_MARK}*"):
            pid = p.name[len(path.name) + len(TMP_MARK):].split("-", 1)[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed
