"""An exclusive lock on a run folder: one `weakhand run` / `weakhand ablate` writes into it at a time.

::

    with run_lock(run_dir, command="weakhand run --name cpu"):
        ...   # a second process asking for the same folder gets RunLockedError naming us

The lock is ``<run_dir>/.weakhand-run.lock``: an ``fcntl.flock`` on that file (held by the
kernel for the open file, so it is released when the holder exits, even on ``kill -9``), and
in the file a JSON record of the holder: pid, host, command, start time, token.

* A second writer is refused with :class:`RunLockedError` naming the holder (pid, host,
  command, since when) and what to do.
* A lock file left by a holder that died (the ``flock`` is free but the file still names a
  pid) is *stale*: it is taken over and reported (the dead pid, or "another host").
* Re-entrant for the holder's own children: while the lock is held, ``$WEAKHAND_RUN_LOCK``
  carries its token, so ``weakhand ablate`` (which calls the runner for each step), the ranks
  of ``weakhand run --nproc N`` (torchrun children of the launcher) and anything else started
  by the holder pass through without taking it again.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

LOCK_FILE = ".weakhand-run.lock"
LOCK_ENV = "WEAKHAND_RUN_LOCK"

__all__ = ["LOCK_FILE", "LOCK_ENV", "RunLockedError", "run_lock", "lock_holder"]


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""

    def __init__(self, message: str, holder: dict | None = None, path: Path | None = None):
        super().__init__(message)
        self.holder = holder or {}
        self.path = path


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_holder(run_dir: str | os.PathLike) -> dict:
    """The record in the lock file of `run_dir` ({} when there is none). It may be stale."""
    return _read(Path(run_dir) / LOCK_FILE)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _describe(h: dict) -> str:
    cmd = h.get("command") or "?"
    return (f"pid {h.get('pid', '?')} on host {h.get('host', '?')} ({cmd!s}, since "
            f"{h.get('started_at', '?')})")


def _env_tokens() -> set[str]:
    return {t for t in os.environ.get(LOCK_ENV, "").split(os.pathsep) if t}


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, command: str | list[str] = "",
             say: Callable[[str], Any] | None = None) -> Iterator[dict]:
    """Hold the exclusive lock of `run_dir` (created if needed) for the block; yields the
    holder record. Raises :class:`RunLockedError` when another process holds it. `say` gets
    the report of a stale lock taken over (default: stderr)."""
    import fcntl

    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    if isinstance(command, (list, tuple)):
        import shlex
        command = shlex.join(str(c) for c in command)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = _read(path)
            if holder.get("token") and holder["token"] in _env_tokens():
                yield holder  # our own parent holds it (ablate -> run, launcher -> ranks)
                return
            raise RunLockedError(
                f"run folder {run_dir} is in use by another weakhand process: "
                f"{_describe(holder)}. Wait for it to finish (or stop it: kill "
                f"{holder.get('pid', '<pid>')}), or write to another run folder (--name). "
                f"The lock is {path}.", holder, path) from None
        try:  # the file may have been removed by its last holder between open and flock
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        break
    try:
        old = _read(path)
        if old.get("pid") is not None:
            here = socket.gethostname()
            if old.get("host") == here:
                why = ("is no longer running" if not _pid_alive(int(old["pid"]))
                       else "no longer holds it (the pid was reused)")
            else:
                why = "ran on another host and no longer holds the lock"
            say(f"weakhand: run folder {run_dir}: taking over a stale lock of "
                f"{_describe(old)}: that process {why}")
        token = f"{os.getpid()}-{secrets.token_hex(8)}"  # (no os.pathsep: joined in the env)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started_at": _dt.datetime.now(_dt.timezone.utc).astimezone()
                  .isoformat(timespec="seconds"), "token": token}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        prev_env = os.environ.get(LOCK_ENV)
        os.environ[LOCK_ENV] = os.pathsep.join([*(t for t in (prev_env or "").split(os.pathsep)
                                                  if t), token])
        try:
            yield holder
        finally:
            if prev_env is None:
                os.environ.pop(LOCK_ENV, None)
            else:
                os.environ[LOCK_ENV] = prev_env
            with contextlib.suppress(OSError):
                os.unlink(path)  # (still holding the flock: nobody can take it in between)
    finally:
        os.close(fd)
