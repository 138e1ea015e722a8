"""Execute the workbook notebooks in order into a run folder (`weakhand run`).

    weakhand run --profile smoke --name smoke            # every notebook, tiny sizes
    weakhand run --name cpu --only 00,10 -p seed=1        # a selection, one override
    weakhand run --list                                   # notebooks and their parameters

Each selected notebook ``notebooks/NN_name.ipynb`` is executed with papermill (one process,
kernel "python3", cwd = the notebooks folder) into ``runs/<name>/NN_name.ipynb``; the
parameters ``profile``, ``run_dir`` and ``device`` are injected (plus ``-p`` overrides into
the notebooks that declare them). ``runs/<name>/run.json`` records the command, profile,
device, overrides, per-notebook status/seconds/output and the environment; it is rewritten
atomically after every notebook. Kernel-level stderr (startup warnings, crashes) goes to
``runs/<name>/logs/NN_name.kernel.log``.

Nothing runs unless every selected notebook has exactly one ``parameters`` cell made of
``name = literal  # comment`` lines that papermill can parse, declares the injected
parameters, and every ``-p`` name is declared by at least one selected notebook.

Several processes: ``--nproc N`` (N > 1) re-launches the run under ``python -m
torch.distributed.run --standalone --nproc_per_node N`` (one node; with ``--device cuda``
one GPU per process, NCCL; on the CPU gloo). Every process (rank) runs the runner and executes
the training notebooks (those that construct a ``Trainer(``, or whose metadata says
``{"weakhand": {"ranks": "all"}}``) with papermill; their kernels inherit ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and a fresh ``MASTER_PORT`` per notebook, so
the Trainer in them trains with DistributedDataParallel (see :mod:`weakhand.train.distributed`;
the effective batch is N x the notebook's batch). The other notebooks (data generation,
fitting, plots; or metadata ``"ranks": "rank0"``) run on rank 0 alone, as a plain single
process, while the other ranks wait. No rank starts a notebook before rank 0 has finished the
previous one, and rank 0 goes on after a notebook of all ranks only when every rank has
finished it. Rank 0 writes the usual outputs (``runs/<name>/NN_name.ipynb``, ``run.json``,
kernel logs); rank k > 0 writes its executed notebooks, kernel logs, ``runner.log`` and its own
``run.json`` under ``runs/<name>/logs/rank<k>/`` and never touches ``runs/<name>/run.json``.
When a notebook fails on any rank, torchrun stops the others and ``run.json`` names the failing
rank and cell. ``--nproc N`` with ``--device cuda`` and fewer than N GPUs is refused before
anything starts. In Python: ``run_notebooks(..., nproc=N)``.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import difflib
import io as _io
import json
import logging
import os
import re
import shlex
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TextIO

from . import profiles as _profiles
from ..io import atomic_write_json
from ..progress import HEADLESS_ENV
from .runs import RUN_DIR_ENV, RUN_RECORD, RUNNER_LOG_DIR, notebooks_root, runs_root

KERNEL_NAME = "python3"
NOTEBOOK_RE = re.compile(r"^(?P<num>\d{2})_[A-Za-z0-9_]+\.ipynb$")
INJECTED_PARAMETERS = ("profile", "run_dir", "device")
RESERVED_OVERRIDES = {"profile": "--profile", "run_dir": "--name / --runs-dir", "device": "--device"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
LOG_DIR = RUNNER_LOG_DIR

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class RunnerError(Exception):
    """A usage or convention error detected before anything was executed."""


# --------------------------------------------------------------------------------------------
# notebooks and their parameters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any          # the literal's value
    default_src: str      # the literal as written
    help: str             # the trailing comment
    line: int             # line inside the parameters cell (1-based)


@dataclass
class NotebookSpec:
    name: str                                  # "00_make_data"
    path: Path
    parameters: dict[str, Parameter] = field(default_factory=dict)
    parameters_cell: int = -1                  # index of the parameters cell
    ranks: str = "rank0"                       # with --nproc: "all" ranks run it, or rank 0 only

    @property
    def number(self) -> str:
        return self.name[:2]


def discover_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """``NN_name.ipynb`` files of the folder, sorted (= run order)."""
    d = Path(notebooks_dir) if notebooks_dir else notebooks_root()
    if not d.is_dir():
        raise RunnerError(f"notebooks folder not found: {d}")
    return sorted(p for p in d.iterdir() if p.is_file() and NOTEBOOK_RE.match(p.name))


def _comments_by_line(src: str) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(_io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def _papermill_parameter_names(path: Path, cell) -> set[str]:
    """Names papermill's own parser finds (``papermill.inspect_notebook``); it needs a kernel
    name in the notebook metadata, so without one the Python translator is asked directly."""
    import papermill
    from papermill.translators import PythonTranslator

    with _quiet_logger("papermill"):  # its "Unable to parse line" warning: we explain better
        try:
            return set(papermill.inspect_notebook(str(path)))
        except ValueError:  # "No kernel name found in notebook": we run it with python3 anyway
            return {p.name for p in PythonTranslator.inspect(cell)}


def read_notebook(path: str | os.PathLike) -> NotebookSpec:
    """Parse and check a notebook's `parameters` cell (RunnerError on convention violations).

    Checks: exactly one code cell tagged `parameters`; it holds only ``name = literal``
    assignments; papermill's own parser (``papermill.inspect_notebook``) sees every name
    (it silently drops a line with a second '=', e.g. in the comment).
    """
    import nbformat

    path = Path(path)
    name = path.stem
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        raise RunnerError(f"{name}: cannot read {path}: {exc}") from exc
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        where = f" (cells {', '.join(map(str, tagged))})" if tagged else ""
        raise RunnerError(f"{name}: expected exactly one cell tagged 'parameters', found "
                          f"{len(tagged)}{where}")
    idx = tagged[0]
    cell = nb.cells[idx]
    if cell.cell_type != "code":
        raise RunnerError(f"{name}: the cell tagged 'parameters' (cell {idx}) is not a code cell")
    src = cell.source
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise RunnerError(f"{name}: parameters cell {idx} is not valid Python: {exc}") from exc
    comments = _comments_by_line(src)
    params: dict[str, Parameter] = {}
    for node in tree.body:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target = node.target.id
        text = ast.get_source_segment(src, node) or ""
        if target is None:
            raise RunnerError(f"{name}: parameters cell line {node.lineno} `{text.splitlines()[0] if text else ''}`:"
                              " only `name = literal  # comment` lines are allowed (derive values in the next cell)")
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise RunnerError(f"{name}: parameter {target!r} (line {node.lineno}) must be a plain literal, "
                              f"got `{ast.get_source_segment(src, node.value)}`; compute derived values "
                              "in the cell after the parameters cell") from None
        params[target] = Parameter(target, value, ast.get_source_segment(src, node.value) or repr(value),
                                   comments.get(node.end_lineno, ""), node.lineno)
    seen_by_papermill = _papermill_parameter_names(path, cell)
    lost = [p for p in params.values() if p.name not in seen_by_papermill]
    if lost:
        lines = src.splitlines()
        detail = "; ".join(f"line {p.line} `{lines[p.line - 1].strip()}`" for p in lost)
        raise RunnerError(f"{name}: papermill cannot parse parameter(s) {', '.join(p.name for p in lost)} "
                          f"({detail}): a parameter line must contain a single '=' (none in the comment "
                          "or in a string) or papermill ignores it")
    return NotebookSpec(name, path, params, idx, _notebook_ranks(nb, name))


def _notebook_ranks(nb, name: str) -> str:
    """Which ranks execute a notebook under ``--nproc``: metadata ``weakhand.ranks`` ("all" |
    "rank0") when given, else "all" when a code cell constructs a ``Trainer(``."""
    meta = (nb.metadata.get("weakhand") or {}).get("ranks")
    if meta is not None:
        if meta not in ("all", "rank0"):
            raise RunnerError(f"{name}: metadata weakhand.ranks must be 'all' or 'rank0', got {meta!r}")
        return meta
    trains = any(c.cell_type == "code" and "Trainer(" in c.source for c in nb.cells)
    return "all" if trains else "rank0"


def _match(selector: str, names: list[str]) -> str:
    sel = selector.strip()
    if sel.endswith(".ipynb"):
        sel = sel[:-6]
    hits = [n for n in names if n == sel] or [n for n in names if n.split("_", 1)[0] == sel]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise RunnerError(f"no notebook matches {selector!r}; available: {', '.join(names) or '(none)'}")
    raise RunnerError(f"{selector!r} is ambiguous: {', '.join(hits)}")


def select_notebooks(names: list[str], only: str | list[str] | None = None,
                     start: str | None = None, stop: str | None = None) -> list[str]:
    """Select from sorted notebook names: `only` ("00", "00_make_data", comma list) or the
    inclusive range `start`..`stop`."""
    names = sorted(names)
    if only and (start or stop):
        raise RunnerError("--only cannot be combined with --from/--to")
    if only:
        items = only.split(",") if isinstance(only, str) else [s for o in only for s in o.split(",")]
        chosen = {_match(s, names) for s in items if s.strip()}
        if not chosen:
            raise RunnerError("--only selects nothing")
        return [n for n in names if n in chosen]
    lo = names.index(_match(start, names)) if start else 0
    hi = names.index(_match(stop, names)) if stop else len(names) - 1
    if lo > hi:
        raise RunnerError(f"--from {start} comes after --to {stop}: nothing selected")
    return names[lo:hi + 1]


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value); the value is a Python literal or else a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise RunnerError(f"-p expects key=value with a Python identifier as key, got {item!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = raw
    if not _injectable(value):
        raise RunnerError(f"-p {item!r}: papermill can inject only None, bool, int, float, str, "
                          "list and dict values (write a tuple as a list)")
    return key, value


def _injectable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_injectable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _injectable(v) for k, v in value.items())
    return False


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        k, v = parse_override(item)
        out[k] = v
    return out


def check_overrides(specs: list[NotebookSpec], overrides: dict[str, Any]) -> None:
    """Refuse reserved names and names no selected notebook declares (RunnerError)."""
    for key in overrides:
        if key in RESERVED_OVERRIDES:
            raise RunnerError(f"-p {key}=... is not allowed: use {RESERVED_OVERRIDES[key]}")
    declared = {n for s in specs for n in s.parameters}
    unknown = [k for k in overrides if k not in declared]
    if unknown:
        lines = []
        for k in unknown:
            close = difflib.get_close_matches(k, sorted(declared), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            lines.append(f"unknown parameter {k!r}{hint}: not declared in the parameters cell of any "
                         "selected notebook")
        lines.append("valid names per notebook:")
        lines += [f"  {s.name}: {', '.join(s.parameters) or '(none)'}" for s in specs]
        raise RunnerError("\n".join(lines))


def check_override_types(specs: list[NotebookSpec], overrides: dict[str, Any]) -> None:
    """Refuse (RunnerError, before anything runs) an override whose value does not fit: a
    profile knob against the profile table (an int knob needs an integer: not "abc", not 2.5),
    another parameter against its notebook default's type (see
    :func:`weakhand.workbook.profiles.check_parameter_value`)."""
    problems = []
    for key, value in overrides.items():
        defaults = [s.parameters[key].default for s in specs if key in s.parameters]
        default = next((d for d in defaults if d is not None), None)
        why = _profiles.check_parameter_value(key, value, default)
        if why:
            problems.append(f"-p {why}")
    if problems:
        raise RunnerError("invalid parameter value(s), nothing was run:\n  "
                          + "\n  ".join(problems))


def check_injected(specs: list[NotebookSpec]) -> None:
    for s in specs:
        missing = [p for p in INJECTED_PARAMETERS if p not in s.parameters]
        if missing:
            raise RunnerError(f"{s.name}: its parameters cell must declare {', '.join(INJECTED_PARAMETERS)} "
                              f"(missing: {', '.join(missing)}); see weakhand.workbook.profiles")


def describe_notebooks(paths: list[Path], profile: str | None = None) -> str:
    """Text listing of notebooks and their parameters (name, default, comment); with
    `profile`, the value a `None` knob takes under that profile is shown too."""
    out = []
    table = _profiles.PROFILES.get(profile or "", {})
    for p in paths:
        try:
            spec = read_notebook(p)
        except RunnerError as exc:
            out.append(f"{p.stem}\n  !! {exc}")
            continue
        out.append(f"{spec.name}  ({len(spec.parameters)} parameters)")
        if not spec.parameters:
            continue
        wn = max(len(n) for n in spec.parameters)
        wd = min(24, max(len(q.default_src) for q in spec.parameters.values()))
        for q in spec.parameters.values():
            extra = ""
            if profile and q.default is None and q.name in table:
                extra = f"  [{profile}: {table[q.name]!r}]"
            comment = f"  # {q.help}" if q.help else ""
            out.append(f"  {q.name:<{wn}} = {q.default_src:<{wd}}{extra}{comment}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------------
def _profile_or_error(profile: str | None) -> str:
    try:
        return _profiles.profile_name(profile)
    except ValueError as exc:
        raise RunnerError(str(exc)) from None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """Set (a value) or unset (None) environment variables for the block."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _fd2_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2, which the kernel process inherits, to `path`.

    This process's own Python-level stderr (papermill's progress bar, warnings) keeps going
    to the original stderr: `sys.stderr` is pointed at a copy of the original descriptor.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    old_stderr = sys.stderr
    swapped = None
    try:
        with open(path, "wb") as fh:
            os.dup2(fh.fileno(), 2)
            try:
                try:
                    is_fd2 = old_stderr.fileno() == 2
                except (AttributeError, OSError, ValueError):
                    is_fd2 = False
                if is_fd2:
                    swapped = os.fdopen(os.dup(saved), "w", buffering=1,
                                        encoding=getattr(old_stderr, "encoding", None) or "utf-8",
                                        errors="backslashreplace")
                    sys.stderr = swapped
                yield
            finally:
                if swapped is not None:
                    sys.stderr = old_stderr
                    with contextlib.suppress(Exception):
                        swapped.close()
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _first_line(src: str | None) -> str:
    for line in (src or "").splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""


@dataclass
class RunResult:
    ok: bool
    run_dir: Path
    record: dict
    failed: str | None = None        # name of the failed notebook
    message: str = ""               # failure message ("" when ok)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED


def _format_table(record: dict, names: list[str]) -> str:
    rows = []
    total = 0.0
    for n in names:
        e = record["notebooks"][n]
        s = e.get("seconds")
        total += s or 0.0
        rows.append((n, e["status"], f"{s:.1f}" if s is not None else "-"))
    w = max(len("notebook"), *(len(r[0]) for r in rows))
    lines = [f"  {'notebook':<{w}}  {'status':<11}  {'seconds':>8}"]
    lines += [f"  {n:<{w}}  {st:<11}  {sec:>8}" for n, st, sec in rows]
    lines.append(f"  {'total':<{w}}  {'':<11}  {total:>8.1f}")
    return "\n".join(lines)


def _default_command(name, profile, device, only, start, stop, overrides, nproc=1) -> list[str]:
    argv = ["weakhand", "run", "--name", name, "--profile", profile, "--device", device]
    for flag, v in (("--only", only), ("--from", start), ("--to", stop)):
        if v:
            argv += [flag, v if isinstance(v, str) else ",".join(v)]
    for k, v in overrides.items():
        argv += ["-p", f"{k}={v!r}"]
    if nproc > 1:
        argv += ["--nproc", str(nproc)]
    return argv


# --------------------------------------------------------------------------------------------
# several processes (--nproc)
# --------------------------------------------------------------------------------------------
NPROC_ENV = "WEAKHAND_NPROC"            # set by the launcher for the ranks it starts
ARGV_ENV = "WEAKHAND_RUN_ARGV"          # the user's command, recorded by rank 0 (JSON list)
OMP_ENV = "WEAKHAND_OMP_NUM_THREADS"    # the launcher's OMP_NUM_THREADS ("" = unset)
_STORE_PREFIX = "weakhand/run/"
_KERNEL_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                     "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME",
                     "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
                     "TORCHELASTIC_ERROR_FILE", "TORCHELASTIC_RUN_ID",
                     "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS")


@dataclass
class _RankJob:
    rank: int
    world: int
    store: Any = None       # the torchrun job's key-value store (rank coordination)


def _check_nproc(nproc: Any) -> int:
    try:
        n = int(nproc)
    except (TypeError, ValueError):
        raise RunnerError(f"--nproc must be a positive integer, got {nproc!r}") from None
    if n < 1 or n != nproc:
        raise RunnerError(f"--nproc must be a positive integer, got {nproc!r}")
    return n


def check_nproc_device(nproc: int, device: str) -> None:
    """RunnerError when `nproc` processes cannot each get their own device: with CUDA every
    process needs a GPU (NCCL refuses two ranks on one GPU)."""
    if nproc > 1 and device.startswith("cuda"):
        import torch
        n = torch.cuda.device_count()
        if n < nproc:
            raise RunnerError(f"--nproc {nproc} with device {device} needs {nproc} GPUs (one per "
                              f"process) but torch sees {n}; use --nproc {max(n, 1)} or --device cpu")


def _rank_job() -> _RankJob | None:
    """This process's place in a job started by the launcher (:func:`_launch`); None in any
    other process (the launcher itself, a kernel, a plain run)."""
    n = os.environ.get(NPROC_ENV)
    if not n or os.environ.get("TORCHELASTIC_RUN_ID") is None:
        return None
    ws, r = os.environ.get("WORLD_SIZE"), os.environ.get("RANK")
    if ws != n or r is None:
        raise RunnerError(f"{NPROC_ENV}={n} but the torchrun job has WORLD_SIZE={ws}, RANK={r}")
    return _RankJob(int(r), int(ws))


def _job_store(job: _RankJob):
    """Client of the torchrun job's store (the ranks agree on per-notebook ports through it)."""
    if job.store is None:
        import datetime as dt

        import torch.distributed as dist
        job.store, _, _ = next(dist.rendezvous("env://", timeout=dt.timedelta(days=7)))
    return job.store


def _free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _rank_dir(run_dir: Path, rank: int) -> Path:
    return run_dir / LOG_DIR / f"rank{rank}"


def _sync_notebook(job: _RankJob, index: int, spec: NotebookSpec) -> dict:
    """Rank 0 publishes how notebook `index` runs (after finishing the previous one); the other
    ranks wait for that: {"name", "ranks": "all" | "rank0", "port"}."""
    store = _job_store(job)
    key = f"{_STORE_PREFIX}{index}"
    if job.rank == 0:
        info = {"name": spec.name, "ranks": spec.ranks,
                "port": _free_port() if spec.ranks == "all" else 0}
        store.set(key, json.dumps(info))
        return info
    while not store.check([key]):  # poll: a blocking get would not see torchrun's SIGTERM
        time.sleep(0.2)
    info = json.loads(store.get(key))
    if info["name"] != spec.name:
        raise RunnerError(f"rank {job.rank} expected notebook {spec.name}, rank 0 runs {info['name']}")
    return info


def _sync_done(job: _RankJob, index: int) -> None:
    """After notebook `index` of all ranks succeeded here: ranks > 0 report it, rank 0 waits
    for their reports (so no rank still writes into the run folder when rank 0 goes on)."""
    store = _job_store(job)
    if job.rank != 0:
        store.set(f"{_STORE_PREFIX}{index}/done/{job.rank}", "1")
        return
    keys = [f"{_STORE_PREFIX}{index}/done/{k}" for k in range(1, job.world)]
    while not store.check(keys):  # a rank that fails exits, and torchrun then stops this one
        time.sleep(0.2)


def _kernel_env(job: _RankJob | None, info: dict | None) -> dict[str, str | None]:
    """Distributed variables for a kernel: the job's, with a fresh MASTER_PORT and its own
    store, for a notebook of all ranks; none (a plain single process) for a rank-0 notebook."""
    if job is None:
        return {}
    launcher = {NPROC_ENV: None, ARGV_ENV: None, OMP_ENV: None}  # not for the kernels
    if info["ranks"] == "all":
        return {"MASTER_PORT": str(info["port"]), "TORCHELASTIC_USE_AGENT_STORE": None,
                "TORCHELASTIC_ERROR_FILE": None, **launcher}
    env: dict[str, str | None] = {k: None for k in _KERNEL_DIST_VARS}
    env.update(launcher)
    omp = os.environ.get(OMP_ENV)
    if omp is not None:  # the whole machine for a single process
        env["OMP_NUM_THREADS"] = omp or None
    return env


def _launch_command(nproc: int, run_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(nproc), "-m", "weakhand.workbook.cli", "run", *run_args]


def _child_args(name, profile, device, only, start, stop, overrides, nb_dir, runs_parent,
                progress_bar, nproc) -> list[str]:
    # (no --nproc: torchrun's own parser would take it for --nproc-per-node; the ranks get
    # the count from $WEAKHAND_NPROC)
    args = _default_command(name, profile, device, only, start, stop, overrides)[2:]
    args += ["--notebooks", str(nb_dir), "--runs-dir", str(runs_parent)]
    if progress_bar:
        args.append("--progress-bar")
    return args


def _merge_rank_failures(run_dir: Path, nproc: int) -> tuple[dict, str | None, str]:
    """After the job: fold the first failure of a rank > 0 into run.json (rank 0 was then
    interrupted by torchrun). Returns (record, failed notebook, message)."""
    record_path = run_dir / RUN_RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {"notebooks": {}, "status": "failed"}
    failed, message = None, ""
    for name, e in record.get("notebooks", {}).items():
        if e.get("status") == "failed":
            failed = name
            break
    for k in range(1, nproc):
        try:
            rec_k = json.loads((_rank_dir(run_dir, k) / RUN_RECORD).read_text())
        except (OSError, ValueError):
            continue
        for name, e in rec_k.get("notebooks", {}).items():
            if e.get("status") != "failed" or name not in record.get("notebooks", {}):
                continue
            entry = record["notebooks"][name]
            if entry.get("status") != "failed":  # rank 0 was stopped because of rank k
                entry.update(status="failed", error=e.get("error"), failed_rank=k,
                             rank_output=e.get("output"), rank_kernel_log=e.get("kernel_log"))
                failed = failed or name
                err = e.get("error") or {}
                where = (f"cell {err['cell_index']} of {name}" if err.get("cell_index") is not None
                         else f"{name} (kernel log {e.get('kernel_log')})")
                message = (f"notebook {name} failed on rank {k}: {where}\n"
                           f"  error: {err.get('ename')}: {err.get('evalue')}\n"
                           f"  executed notebook of rank {k}: {e.get('output')}")
            break
    if failed:
        record["status"] = "failed"
        atomic_write_json(record_path, record)
    return record, failed, message


def _launch(nproc: int, run_dir: Path, child_args: list[str], command: list[str],
            out: TextIO, err: TextIO) -> RunResult:
    """Run `weakhand run <child_args>` under torchrun with `nproc` ranks; wait for it."""
    import subprocess

    env = dict(os.environ)
    env[NPROC_ENV] = str(nproc)
    env[ARGV_ENV] = json.dumps(command)
    env[OMP_ENV] = os.environ.get("OMP_NUM_THREADS", "")
    if not env.get("OMP_NUM_THREADS"):  # share the cores (torchrun would say 1, with a warning)
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    cmd = _launch_command(nproc, child_args)
    print(f"weakhand run: {nproc} processes: {shlex.join(cmd)}", file=out, flush=True)
    for f in (out, err):
        with contextlib.suppress(Exception):
            f.flush()
    proc = subprocess.Popen(cmd, env=env)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:  # the ranks got the SIGINT too; let them clean up
        with contextlib.suppress(KeyboardInterrupt):
            proc.wait(timeout=60)
        raise
    record, failed, message = _merge_rank_failures(run_dir, nproc)
    if rc == 0 and not failed:
        return RunResult(True, run_dir, record)
    if not failed and record.get("status") == "interrupted":
        raise KeyboardInterrupt
    if message:
        print(f"\n{message}", file=err, flush=True)
    elif not failed:
        message = f"the distributed run exited with status {rc} (see the output above)"
        print(f"\nweakhand run: {message}", file=err, flush=True)
    return RunResult(False, run_dir, record, failed=failed, message=message)


def run_notebooks(name: str | None = None, *, profile: str = "auto", device: str = "auto",
                  only: str | list[str] | None = None, start: str | None = None,
                  stop: str | None = None, overrides: dict[str, Any] | None = None,
                  notebooks_dir: str | os.PathLike | None = None,
                  runs_dir: str | os.PathLike | None = None, command: list[str] | None = None,
                  progress_bar: bool = False, out: TextIO | None = None,
                  err: TextIO | None = None, kernel_name: str = KERNEL_NAME,
                  nproc: int = 1) -> RunResult:
    """Execute the selected notebooks in order into `runs_dir/name` (see module doc).

    `nproc` > 1: the same run with that many processes (``--nproc``; the function launches
    torchrun and returns when every rank is done; inside the job it runs as one rank).
    Raises RunnerError (nothing executed) on usage/convention errors; a failing notebook
    returns a RunResult with ok=False (later notebooks are not executed).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    overrides = dict(overrides or {})
    nproc = _check_nproc(nproc)
    profile = _profile_or_error(profile)
    name = name or profile
    if not NAME_RE.match(name):
        raise RunnerError(f"invalid run name {name!r}: use letters, digits, '.', '_' or '-'")

    nb_dir = (Path(notebooks_dir) if notebooks_dir else notebooks_root()).resolve()
    paths = {p.stem: p for p in discover_notebooks(nb_dir)}
    if not paths:
        raise RunnerError(f"no NN_name.ipynb notebooks in {nb_dir}")
    selected = select_notebooks(list(paths), only, start, stop)
    specs = [read_notebook(paths[n]) for n in selected]
    check_injected(specs)
    check_overrides(specs, overrides)
    check_override_types(specs, overrides)
    try:
        device = _profiles.resolve_device(device)
    except (RuntimeError, ValueError) as exc:
        raise RunnerError(str(exc)) from exc
    check_nproc_device(nproc, device)

    runs_parent = (Path(runs_dir) if runs_dir else runs_root()).resolve()
    run_dir = runs_parent / name
    argv = list(command) if command else _default_command(name, profile, device, only, start,
                                                          stop, overrides, nproc)
    job = _rank_job()
    if job is not None:
        if nproc not in (1, job.world):
            raise RunnerError(f"--nproc {nproc} inside a job of {job.world} processes")
        nproc = job.world
    elif nproc > 1:
        # only the launcher locks the run folder; its ranks inherit the lock's token
        with _locked(run_dir, argv, err):
            return _launch(nproc, run_dir, _child_args(name, profile, device, only, start, stop,
                                                       overrides, nb_dir, runs_parent,
                                                       progress_bar, nproc), argv, out, err)
    main = job is None or job.rank == 0
    if job is not None and os.environ.get(ARGV_ENV):
        with contextlib.suppress(ValueError):
            argv = list(json.loads(os.environ[ARGV_ENV]))
    if not main:  # rank k > 0: its own folder, and its messages to a file
        import signal  # torchrun stops a rank with SIGTERM: clean up (kernel) as on Ctrl-C
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        out_dir = _rank_dir(run_dir, job.rank)
        out_dir.mkdir(parents=True, exist_ok=True)
        rank_log = open(out_dir / "runner.log", "w", encoding="utf-8", buffering=1)
        try:
            return _execute(specs, selected, job=job, main=False, run_dir=run_dir,
                            out_dir=out_dir, log_dir=out_dir, record_path=out_dir / RUN_RECORD,
                            name=name, profile=profile, device=device, overrides=overrides,
                            nb_dir=nb_dir, argv=argv, progress_bar=False, out=rank_log,
                            err=rank_log, kernel_name=kernel_name, nproc=nproc)
        finally:
            rank_log.close()
    if job is not None:
        import signal
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_dir.mkdir(parents=True, exist_ok=True)
    # a rank of a --nproc job runs under its launcher's lock
    with (contextlib.nullcontext() if job is not None else _locked(run_dir, argv, err)):
        return _execute(specs, selected, job=job, main=True, run_dir=run_dir, out_dir=run_dir,
                        log_dir=run_dir / LOG_DIR, record_path=run_dir / RUN_RECORD, name=name,
                        profile=profile, device=device, overrides=overrides, nb_dir=nb_dir,
                        argv=argv, progress_bar=progress_bar, out=out, err=err,
                        kernel_name=kernel_name, nproc=nproc)


@contextlib.contextmanager
def _locked(run_dir: Path, argv: list[str], err: TextIO) -> Iterator[None]:
    """The run folder's exclusive lock (:mod:`weakhand.workbook.runlock`) as a RunnerError when taken."""
    from .runlock import RunLockedError, run_lock

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_lock(run_dir, argv,
                                         say=lambda m: print(m, file=err, flush=True)))
        except RunLockedError as exc:
            raise RunnerError(str(exc)) from None
        yield


def _execute(specs: list[NotebookSpec], selected: list[str], *, job: _RankJob | None, main: bool,
             run_dir: Path, out_dir: Path, log_dir: Path, record_path: Path, name: str,
             profile: str, device: str, overrides: dict[str, Any], nb_dir: Path, argv: list[str],
             progress_bar: bool, out: TextIO, err: TextIO, kernel_name: str,
             nproc: int) -> RunResult:
    from .envinfo import environment_info

    previous: dict = {}
    if main:
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads(record_path.read_text()).get("notebooks", {}) or {}
    entries: dict[str, dict] = {k: v for k, v in previous.items() if k not in selected}
    for s in specs:
        injected = {"profile": profile, "run_dir": str(run_dir), "device": device}
        injected.update({k: v for k, v in overrides.items() if k in s.parameters})
        entries[s.name] = {"status": "pending", "seconds": None,
                           "output": str(out_dir / f"{s.name}.ipynb"),
                           "source": str(s.path), "parameters": injected}
        if job is not None:
            entries[s.name]["ranks"] = s.ranks
    record: dict[str, Any] = {
        "name": name, "run_dir": str(run_dir), "status": "running",
        "command": shlex.join(argv), "argv": argv, "cwd": os.getcwd(),
        "profile": profile, "device": device, "overrides": overrides,
        "notebooks_dir": str(nb_dir), "selected": selected,
        "started_at": _now(), "finished_at": None, "seconds": None,
        "notebooks": dict(sorted(entries.items())),
        "environment": environment_info() if main else {},
    }
    if job is not None:
        record.update(nproc=nproc, rank=job.rank,
                      rank_dirs=[str(_rank_dir(run_dir, k)) for k in range(1, nproc)])

    def save() -> None:
        atomic_write_json(record_path, record)

    save()
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    def say(msg: str = "", end: str = "\n") -> None:
        print(msg, end=end, file=out, flush=True)

    procs = f", {nproc} processes" if job is not None else ""
    say(f"weakhand run: {len(specs)} notebook(s) -> {run_dir}  (profile {profile}, device "
        f"{device}{procs})" + ("" if main else f"  [rank {job.rank}]"))
    t_run = time.perf_counter()
    result = RunResult(True, run_dir, record)
    env = {HEADLESS_ENV: "1", _profiles.PROFILE_ENV: profile, RUN_DIR_ENV: str(run_dir)}
    for i, s in enumerate(specs, 1):
        entry = record["notebooks"][s.name]
        info = _sync_notebook(job, i, s) if job is not None else None
        if info is not None and info["ranks"] == "rank0" and not main:
            entry.update(status="rank0-only", seconds=0.0)
            save()
            say(f"[{i}/{len(specs)}] {s.name} ... runs on rank 0 only")
            continue
        entry.update(status="running", started_at=_now())
        entry.pop("error", None)
        save()
        head = f"[{i}/{len(specs)}] {s.name} ... "
        # with a progress bar (stderr) in between, the status goes on its own line
        say(head, end="\n" if progress_bar else "")
        tail = head if progress_bar else ""
        log_path = log_dir / f"{s.name}.kernel.log"
        t0 = time.perf_counter()
        error: dict | None = None
        try:
            with _environ(**env, **_kernel_env(job, info)), _fd2_to(log_path):
                pm.execute_notebook(
                    str(s.path), entry["output"], parameters=entry["parameters"],
                    kernel_name=kernel_name, cwd=str(nb_dir), progress_bar=progress_bar,
                    log_output=False, request_save_on_cell_execute=True,
                    store_widget_state=False)
        except PapermillExecutionError as exc:
            idx = exc.cell_index
            # papermill inserts the injected-parameters cell right after the parameters cell
            src_idx = idx - 1 if idx > s.parameters_cell else idx
            error = {"ename": exc.ename, "evalue": exc.evalue, "cell_index": src_idx,
                     "executed_cell_index": idx, "exec_count": exc.exec_count,
                     "cell_first_line": _first_line(exc.source)}
        except KeyboardInterrupt:
            entry.update(status="interrupted", seconds=round(time.perf_counter() - t0, 3))
            record.update(status="interrupted", finished_at=_now(),
                          seconds=round(time.perf_counter() - t_run, 3))
            save()
            say("interrupted")
            raise
        except Exception as exc:  # kernel died, timeout, papermill error...
            error = {"ename": type(exc).__name__, "evalue": str(exc).strip()[:2000],
                     "cell_index": None, "executed_cell_index": None, "exec_count": None,
                     "cell_first_line": ""}
        seconds = round(time.perf_counter() - t0, 3)
        entry.update(seconds=seconds, finished_at=_now(), kernel_log=str(log_path))
        if error is None:
            entry["status"] = "ok"
            save()
            if info is not None and info["ranks"] == "all":
                _sync_done(job, i)
            say(f"{tail}done in {seconds:.1f} s")
            continue
        entry.update(status="failed", error=error)
        if job is not None:
            entry["failed_rank"] = job.rank
        later = [x.name for x in specs[i:]]
        for n in later:
            record["notebooks"][n]["status"] = "skipped"
        say(f"{tail}FAILED after {seconds:.1f} s")
        if error["cell_index"] is not None:
            ec = f" (In [{error['exec_count']}])" if error["exec_count"] is not None else ""
            first = f": {error['cell_first_line']}" if error["cell_first_line"] else ""
            where = f"  failing cell: cell {error['cell_index']}{ec} of {s.path.name}{first}"
        else:
            where = f"  the notebook could not be executed (see the kernel log {log_path})"
        rank_note = f" on rank {job.rank}" if job is not None else ""
        msg = [f"notebook {s.name} failed{rank_note}", where,
               f"  error: {error['ename']}: {error['evalue']}",
               f"  partial executed notebook: {entry['output']}"]
        if later:
            msg.append(f"  not executed: {', '.join(later)}")
        result = RunResult(False, run_dir, record, failed=s.name, message="\n".join(msg))
        break
    record.update(status="ok" if result.ok else "failed", finished_at=_now(),
                  seconds=round(time.perf_counter() - t_run, 3))
    save()
    say("")
    say(_format_table(record, selected))
    if not result.ok:
        print(f"\n{result.message}", file=err, flush=True)
    say(f"run folder: {run_dir}\nrecord:     {record_path}")
    return result


# --------------------------------------------------------------------------------------------
# command line (`weakhand run`), registered by weakhand.workbook.cli
# --------------------------------------------------------------------------------------------
CLI_HELP = "execute the notebooks in order into runs/<name>/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("SEL is a notebook number (00) or name (00_make_data); --only takes a comma "
                     "list.\nexit status: 0 ok, 1 a notebook failed, 2 usage error, 130 interrupted.")
    parser.add_argument("--name", help="run name: output folder <runs-dir>/<name> (default: the profile name)")
    parser.add_argument("--profile", default="auto",
                        help=f"size profile: {', '.join(_profiles.PROFILES)} or auto "
                             f"(${_profiles.PROFILE_ENV}, else {_profiles.DEFAULT_PROFILE})")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--only", metavar="SEL", help="run only these notebooks (comma list)")
    parser.add_argument("--from", dest="start", metavar="SEL", help="first notebook to run")
    parser.add_argument("--to", dest="stop", metavar="SEL", help="last notebook to run (inclusive)")
    parser.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="override a notebook parameter (Python literal, else string); repeatable")
    parser.add_argument("--notebooks", metavar="DIR", help="notebooks folder (default: <repo>/notebooks)")
    parser.add_argument("--runs-dir", metavar="DIR", help="parent of run folders (default: <repo>/runs)")
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters; run nothing")
    parser.add_argument("--help-params", action="store_true",
                        help="show the selected notebooks' parameters with the profile's values; run nothing")
    parser.add_argument("--progress-bar", action="store_true", help="show papermill's per-cell progress bar")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="train with N processes (torchrun, one node): NCCL with one GPU each on "
                             "cuda, gloo on the cpu; rank 0 writes the outputs (default: 1)")


def cli_main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    try:
        if args.list or args.help_params:
            paths = discover_notebooks(args.notebooks)
            names = select_notebooks([p.stem for p in paths], args.only, args.start, args.stop)
            chosen = [p for p in paths if p.stem in names]
            profile = _profile_or_error(args.profile) if args.help_params else None
            print(f"notebooks in {Path(args.notebooks).resolve() if args.notebooks else notebooks_root()}"
                  + (f" (profile {profile})" if profile else ""))
            print(describe_notebooks(chosen, profile))
            if args.help_params:
                print("\nprofiles (a knob declared as None takes the value of the profile):")
                print(_profiles.describe_profiles())
            return EXIT_OK
        overrides = parse_overrides(args.params)
        command = ["weakhand", "run", *argv] if argv is not None else None
        result = run_notebooks(args.name, profile=args.profile, device=args.device, only=args.only,
                               start=args.start, stop=args.stop, overrides=overrides,
                               notebooks_dir=args.notebooks, runs_dir=args.runs_dir,
                               command=command, progress_bar=args.progress_bar,
                               nproc=args.nproc)
        return result.exit_code
    except RunnerError as exc:
        print(f"weakhand run: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("weakhand run: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
