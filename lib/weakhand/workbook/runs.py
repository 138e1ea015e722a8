"""Run folders: where a notebook reads and writes its artifacts.

Every path a notebook touches is resolved from its run folder, never from the cwd::

    run = runs.open_run(cfg.run_dir)           # runs/<name>/ (created)
    out = run.artifact("data/train.npz")        # path to write (parent folder created)
    lim = run.require("limits/bmc.json", producer="10_fit_bmc_limits")  # path to read
    run.list_artifacts()                         # last cell: what this run folder holds

Run folder resolution (`resolve_run_dir`): an explicit `run_dir` wins, else $WEAKHAND_RUN_DIR,
else ``<repo>/runs/interactive``. A relative path (e.g. ``"smoke"``) is taken relative to
``<repo>/runs``, so it never depends on the cwd.
"""
from __future__ import annotations

import html
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ..naming import SEED_SUFFIX, seeded_name, split_seeded_name  # noqa: F401  (re-exported for notebooks)

RUN_DIR_ENV = "WEAKHAND_RUN_DIR"
INTERACTIVE_RUN = "interactive"
RUN_RECORD = "run.json"          # written by the runner
RUNNER_LOG_DIR = "logs"          # kernel logs written by the runner


def repo_root() -> Path:
    """The repository folder (the one containing lib/weakhand), from the package location
    (this file is ``lib/weakhand/workbook/runs.py``)."""
    return Path(__file__).resolve().parents[3]


def runs_root() -> Path:
    """``<repo>/runs``: the default parent of every run folder."""
    return repo_root() / "runs"


def notebooks_root() -> Path:
    """``<repo>/notebooks``."""
    return repo_root() / "notebooks"


def resolve_run_dir(run_dir: str | os.PathLike | None = "") -> Path:
    """Absolute run folder: `run_dir`, else $WEAKHAND_RUN_DIR, else <repo>/runs/interactive.

    Relative paths are relative to <repo>/runs (not the cwd). Nothing is created.
    """
    value = str(run_dir or "").strip() or os.environ.get(RUN_DIR_ENV, "").strip() or INTERACTIVE_RUN
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = runs_root() / path
    return path.resolve()


class MissingArtifactError(FileNotFoundError):
    """An input artifact of a notebook does not exist yet (its producer has not run)."""

    def __init__(self, message: str, *, path: Path, run_dir: Path, producer: str | None):
        super().__init__(message)
        self.path = path
        self.run_dir = run_dir
        self.producer = producer

    def __str__(self) -> str:  # FileNotFoundError's own str() would show errno fields
        return self.args[0]


def run_command(run_dir: Path, only: str | None = None, profile: str | None = None) -> str:
    """The `weakhand run` command line that (re)runs notebooks into `run_dir`."""
    run_dir = Path(run_dir)
    parts = ["weakhand", "run", "--name", run_dir.name]
    if run_dir.parent.resolve() != runs_root().resolve():
        parts += ["--runs-dir", str(run_dir.parent)]
    if profile:
        parts += ["--profile", profile]
    if only:
        parts += ["--only", only]
    return shlex.join(parts)


def _selector(notebook: str) -> str:
    """'00_make_data' -> '00' (the runner's short selector)."""
    head = notebook.split("_", 1)[0]
    return head if head.isdigit() else notebook


@dataclass(frozen=True)
class ArtifactInfo:
    path: str      # relative to the run folder, POSIX separators
    size: int      # bytes
    mtime: float


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


class ArtifactList(list):
    """List of ArtifactInfo that prints as a short table (text and HTML)."""

    def __init__(self, items, root: Path):
        super().__init__(items)
        self.root = Path(root)

    @property
    def total_size(self) -> int:
        return sum(a.size for a in self)

    def __repr__(self) -> str:
        if not self:
            return f"no artifacts under {self.root}"
        w = max(len("artifact"), *(len(a.path) for a in self))
        lines = [f"{len(self)} artifact(s) under {self.root} ({_human(self.total_size)})",
                 f"  {'artifact':<{w}}  {'size':>9}"]
        lines += [f"  {a.path:<{w}}  {_human(a.size):>9}" for a in self]
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(f"<tr><td style='text-align:left'><code>{esc(a.path)}</code></td>"
                       f"<td>{esc(_human(a.size))}</td></tr>" for a in self)
        return (f"<table><caption style='text-align:left'>{len(self)} artifact(s) under "
                f"<code>{esc(str(self.root))}</code> ({esc(_human(self.total_size))})</caption>"
                f"<thead><tr><th>artifact</th><th>size</th></tr></thead><tbody>{rows}</tbody></table>")


class Run:
    """A run folder (absolute `path`); created on construction."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.opened_at = time.time()

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def dir(self, *parts: str) -> Path:
        """Sub-folder of the run (created)."""
        p = self.path.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def artifact(self, relpath: str | os.PathLike) -> Path:
        """Path of an artifact inside the run (its parent folder is created; the file is not)."""
        rel = Path(relpath)
        if rel.is_absolute():
            raise ValueError(f"artifact paths are relative to the run folder, got {relpath!s}")
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def exists(self, relpath: str | os.PathLike) -> bool:
        return (self.path / relpath).exists()

    def record(self) -> dict:
        """The runner's run.json of this run ({} when the run was not made by the runner)."""
        try:
            return json.loads((self.path / RUN_RECORD).read_text())
        except (OSError, ValueError):
            return {}

    def require(self, relpath: str | os.PathLike, producer: str | None = None) -> Path:
        """Path of an existing input artifact, or MissingArtifactError saying how to make it."""
        p = self.path / relpath
        if p.exists():
            return p
        lines = [f"missing artifact {Path(relpath).as_posix()!r}",
                 f"  run folder:  {self.path}",
                 f"  expected at: {p}"]
        if producer:
            profile = self.record().get("profile")
            lines += [f"  produced by: notebook {producer} (notebooks/{producer}.ipynb)",
                      f"  make it with: {run_command(self.path, _selector(producer), profile)}",
                      f"  (or run {producer} interactively with run_dir = {str(self.path)!r})"]
        raise MissingArtifactError("\n".join(lines), path=p, run_dir=self.path, producer=producer)

    def list_artifacts(self, under: str | os.PathLike = "", since: float | None = None,
                       include_run_files: bool = False) -> ArtifactList:
        """Files of the run (relative paths + sizes), sorted; prints as a table.

        `under`: only this sub-folder. `since`: only files modified at/after this timestamp
        (e.g. `run.opened_at` for "written by this notebook"). Hidden files and atomic-write
        temporaries are always left out; the runner's own files (executed notebooks, run.json,
        logs/) unless `include_run_files`.
        """
        from ..io import TMP_MARK

        base = self.path / under
        items = []
        if base.exists():
            for p in sorted(base.rglob("*")):
                rel = p.relative_to(self.path)
                if not p.is_file() or any(part.startswith(".") for part in rel.parts):
                    continue
                if any(TMP_MARK in part for part in rel.parts):
                    continue
                if not include_run_files and (rel.parts[0] == RUNNER_LOG_DIR or (
                        len(rel.parts) == 1 and (p.suffix == ".ipynb" or p.name == RUN_RECORD))):
                    continue
                st = p.stat()
                if since is not None and st.st_mtime < since - 1e-3:
                    continue
                items.append(ArtifactInfo(rel.as_posix(), st.st_size, st.st_mtime))
        return ArtifactList(items, base)


def open_run(run_dir: str | os.PathLike | None = "") -> Run:
    """The run folder for `run_dir` (see `resolve_run_dir`), created if needed."""
    return Run(resolve_run_dir(run_dir))


# --- the last cell of every notebook: a short summary of the run folder -------------------------
@dataclass(frozen=True)
class FolderInfo:
    folder: str    # relative to the run folder, POSIX separators ("." = the run folder itself)
    files: int
    size: int      # bytes


class RunSummary:
    """What a run folder holds, in a few lines: file counts and sizes per folder, and the files
    written since a timestamp (e.g. by the notebook that prints it). Prints as text and HTML."""

    def __init__(self, root: Path, folders: list[FolderInfo], written: ArtifactList | None,
                 since: float | None, max_files: int, per_folder: int = 4):
        self.per_folder = per_folder
        self.root = Path(root)
        self.folders = folders
        self.written = written
        self.since = since
        self.max_files = max_files

    @property
    def total_files(self) -> int:
        return sum(f.files for f in self.folders)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.folders)

    def _written_rows(self) -> tuple[list[tuple[str, int]], int, int]:
        """(label, bytes) rows of the written files: a folder with more than `per_folder` new
        files is one row (``data/x/  16 files: a.npy, b.npy, ...``); at most `max_files` rows,
        the rest counted as (rows left out, their bytes)."""
        per: dict[str, list[ArtifactInfo]] = {}
        for a in self.written or []:
            per.setdefault(Path(a.path).parent.as_posix(), []).append(a)
        rows: list[tuple[str, int]] = []
        for folder, items in per.items():
            if len(items) <= self.per_folder:
                rows += [(a.path, a.size) for a in items]
            else:
                names = ", ".join(Path(a.path).name for a in items[:3])
                rows.append((f"{folder}/  {len(items)} files: {names}, ...",
                             sum(a.size for a in items)))
        shown, rest = rows[: self.max_files], rows[self.max_files:]
        return shown, len(rest), sum(r[1] for r in rest)

    def __repr__(self) -> str:
        lines = [f"run folder {self.root}: {self.total_files} file(s), {_human(self.total_size)}"]
        if self.folders:
            w = max(len("folder"), *(len(f.folder + "/") for f in self.folders))
            lines.append(f"  {'folder':<{w}}  {'files':>6}  {'size':>9}")
            lines += [f"  {f.folder + '/':<{w}}  {f.files:>6}  {_human(f.size):>9}"
                      for f in self.folders]
        if self.written is not None:
            shown, n_rest, size_rest = self._written_rows()
            lines.append(f"written by this notebook: {len(self.written)} file(s), "
                         f"{_human(self.written.total_size)}")
            if shown:
                w = max(len(label) for label, _ in shown)
                lines += [f"  {label:<{w}}  {_human(size):>9}" for label, size in shown]
            if n_rest:
                lines.append(f"  ... and {n_rest} more, {_human(size_rest)}")
        return "\n".join(lines)

    def brief(self, max_main: int = 8) -> "RunBrief":
        """The files written since `since` in a few lines: counts and bytes per kind
        (checkpoints, metrics, figures, datasets, training logs, other) and the main files
        (metrics tables, checkpoints, dataset splits, reports), at most `max_main` named."""
        return RunBrief(self.root, list(self.written or []), max_main)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(f"<tr><td style='text-align:left'><code>{esc(f.folder)}/</code></td>"
                       f"<td>{f.files}</td><td>{esc(_human(f.size))}</td></tr>" for f in self.folders)
        out = (f"<table><caption style='text-align:left'>run folder <code>{esc(str(self.root))}</code>: "
               f"{self.total_files} file(s), {esc(_human(self.total_size))}</caption>"
               f"<thead><tr><th>folder</th><th>files</th><th>size</th></tr></thead>"
               f"<tbody>{rows}</tbody></table>")
        if self.written is not None:
            shown, n_rest, size_rest = self._written_rows()
            rows = "".join(f"<tr><td style='text-align:left'><code>{esc(label)}</code></td>"
                           f"<td>{esc(_human(size))}</td></tr>" for label, size in shown)
            if n_rest:
                rows += (f"<tr><td style='text-align:left'>… and {n_rest} more</td>"
                         f"<td>{esc(_human(size_rest))}</td></tr>")
            out += (f"<table><caption style='text-align:left'>written by this notebook: "
                    f"{len(self.written)} file(s), {esc(_human(self.written.total_size))}</caption>"
                    f"<thead><tr><th>file</th><th>size</th></tr></thead><tbody>{rows}</tbody></table>")
        return out


#: (kind, test on the run-relative path) in the order a brief summary counts them
_KINDS = (("checkpoints", lambda p: p.endswith(".pt")),
          ("training logs", lambda p: p.endswith("metrics.jsonl")),
          ("metrics", lambda p: p.startswith("metrics/")),
          ("figures", lambda p: p.startswith("figures/")),
          ("datasets", lambda p: p.startswith("data/")),
          ("other", lambda p: True))


def _kind(path: str) -> str:
    return next(k for k, test in _KINDS if test(path))


def _is_main(path: str) -> bool:
    """Metrics tables, best (else last) checkpoints, reports and labels: what a reader opens."""
    name = Path(path).name
    return ((path.startswith("metrics/") and name.endswith((".json", ".csv")))
            or name in ("best.pt", "report.html", "limits.json") or path.endswith(".npz"))


class RunBrief:
    """What a notebook wrote, in a few lines (:meth:`RunSummary.brief`): per kind the number of
    files and bytes, then the main files (a dataset split counts as one entry)."""

    def __init__(self, root: Path, written: list[ArtifactInfo], max_main: int = 8):
        self.root = Path(root)
        self.kinds: dict[str, list[int]] = {}
        for a in written:
            acc = self.kinds.setdefault(_kind(a.path), [0, 0])
            acc[0] += 1
            acc[1] += a.size
        self.kinds = {k: self.kinds[k] for k, _ in _KINDS if k in self.kinds}
        folders = {Path(a.path).parent.as_posix() for a in written}
        best = {Path(a.path).parent.as_posix() for a in written if Path(a.path).name == "best.pt"}
        main = [a.path for a in written
                if _is_main(a.path) or (Path(a.path).name == "last.pt" and Path(a.path).parent.as_posix() not in best)]
        main += sorted(f + "/" for f in folders if f.startswith("data/"))
        self.main, self.n_more = main[:max_main], max(0, len(main) - max_main)

    def __repr__(self) -> str:
        total = sum(n for n, _ in self.kinds.values())
        lines = [f"written by this notebook under {self.root}: {total} file(s), "
                 f"{_human(sum(b for _, b in self.kinds.values()))}"]
        lines += [f"  {k:<14} {n:>4} file(s)  {_human(b):>9}" for k, (n, b) in self.kinds.items()]
        if self.main:
            lines.append("main files: " + ", ".join(self.main)
                         + (f" (and {self.n_more} more)" if self.n_more else ""))
        return "\n".join(lines)

    __str__ = __repr__


def summarize_run_dir(run_dir: "Run | str | os.PathLike", since: float | None = None, *,
                      max_files: int = 20, per_folder: int = 4,
                      include_run_files: bool = False) -> RunSummary:
    """Summary of a run folder for a notebook's last cell.

    Per folder (a file's parent folder, relative to the run): how many files and bytes. With
    `since` (e.g. ``run.opened_at``), also the files modified at/after that time, i.e. what the
    notebook wrote: by name, except that a folder with more than `per_folder` new files is one
    line; at most `max_files` lines (the rest counted). Hidden files,
    atomic-write temporaries and, unless `include_run_files`, the runner's own files are left out
    (as in :meth:`Run.list_artifacts`). Nothing is created.
    """
    path = run_dir.path if isinstance(run_dir, Run) else resolve_run_dir(run_dir)
    if not path.exists():
        return RunSummary(path, [], ArtifactList([], path) if since is not None else None,
                          since, max_files, per_folder)
    run = run_dir if isinstance(run_dir, Run) else Run(path)
    arts = run.list_artifacts(include_run_files=include_run_files)
    per: dict[str, list[int]] = {}
    for a in arts:
        folder = Path(a.path).parent.as_posix()
        acc = per.setdefault(folder, [0, 0])
        acc[0] += 1
        acc[1] += a.size
    folders = [FolderInfo(k, v[0], v[1]) for k, v in sorted(per.items())]
    written = None
    if since is not None:
        written = ArtifactList([a for a in arts if a.mtime >= since - 1e-3], run.path)
    return RunSummary(run.path, folders, written, since, max_files, per_folder)
