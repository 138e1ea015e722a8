"""Self-describing training checkpoints, written atomically.

A checkpoint is one ``torch.save`` file (a plain dict, loadable with ``weights_only=True``)::

    format, version          "weakhand.checkpoint", 1
    name, step, epoch        trainer name; optimizer steps done; epoch index of the next batch
    batch_in_epoch           batches of `epoch` already consumed (the data position)
    models                   {module name: state_dict}  (a single model is stored as "model")
    model_specs              {module name: {"kind": class name, "config": constructor config}}:
                             what each model is, so that it can be rebuilt
                             (:func:`weakhand.models.registry.build_model`; older checkpoints
                             lack it: see :func:`model_specs`)
    optimizer, scheduler, scaler   state_dicts (None when absent)
    rng                      RNG states at save time (torch, cuda, numpy, python)
    epoch_rng                RNG + loader-generator states at the start of `epoch` (for resume)
    config, trainer          the notebook's config and the trainer's settings (JSON-safe)
    metrics                  {"train": last logged train record, "val": last validation record}
    best                     {"metric", "mode", "value", "step"}
    elapsed_s, saved_at, versions

Files are serialised in memory and moved into place with :func:`weakhand.io.atomic_write_bytes`,
so a crash (or an exception in ``torch.save``) never leaves a truncated checkpoint and never
touches the previous one.

**Safety.** A checkpoint is only ever read with ``torch.load(weights_only=True)``: unpickling
arbitrary objects can run code, so a file holding anything but tensors, numbers, strings and
plain containers is refused (:class:`UnsafeCheckpointError`), never loaded "fully". The writer
enforces the same rule: NumPy scalars/arrays are converted, any other object raises
:class:`CheckpointError` naming the entry (store such values as a JSON string).
"""
from __future__ import annotations

import io as _io
import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ..io import atomic_write_bytes

FORMAT = "weakhand.checkpoint"
VERSION = 1
SINGLE_MODEL_KEY = "model"

__all__ = ["CheckpointError", "CheckpointNotFoundError", "UnsafeCheckpointError",
           "checkpoint_info", "load_checkpoint", "model_specs",
           "read_checkpoint", "write_checkpoint",
           "restore_scheduler", "rng_state", "set_rng_state", "FORMAT", "VERSION"]


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt, not a weakhand checkpoint, or does not fit the model;
    ``.path`` names the file (no arrays)."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled Python objects that a safe (``weights_only``) load refuses; it was
    not unpickled (no arrays)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (no arrays)."""

    def __str__(self) -> str:  # keep FileNotFoundError from printing errno fields
        return self.args[0]


# --------------------------------------------------------------------------------------------
# RNG states (stored as tensors / lists so that weights_only loading works)

def rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU: a (5056,) uint8 tensor; CUDA: one per GPU, or None),
    NumPy (its 624 Mersenne-Twister keys as a list) and Python's `random`, stored as tensors,
    lists and numbers so that a ``weights_only`` load reads them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": np.asarray(keys).tolist(), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states returned by :func:`rng_state` (CUDA states only when the GPU count
    matches); no arrays returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------------------------
# LR schedulers: resuming with a different training length

#: state-dict entries of torch's LR schedulers that fix the schedule's length
_LENGTH_KEYS = ("T_max", "total_steps", "total_iters", "T_0", "T_mult", "step_size",
                "milestones", "epochs", "steps_per_epoch")


def _schedule_shape(state: Any) -> dict[str, Any]:
    if not isinstance(state, Mapping):
        return {}
    out: dict[str, Any] = {k: state[k] for k in _LENGTH_KEYS if k in state}
    subs = state.get("_schedulers")
    if isinstance(subs, list):
        out["_schedulers"] = [_schedule_shape(x) for x in subs]
    return out


def _describe_shape(shape: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in shape.items() if k != "_schedulers") or "nested"


def restore_scheduler(scheduler: Any, state: Mapping[str, Any] | None, step: int) -> str | None:
    """Restore a checkpoint's LR-scheduler `state` into `scheduler` (built for this run), at
    optimizer step `step`.

    Semantics when the schedule's length changed (``T_max``, ``total_steps``, ``milestones``...
    differ, e.g. a finished 6-step run extended with ``-p steps_stage1=400``): the stored state
    is *not* loaded (it would make the LR cycle with the old period); the scheduler keeps its
    new configuration and is fast-forwarded to `step`, so the LR continues from the value the
    *new* schedule has at that step, as if the run had been planned with the new length from
    the start (the weights and optimizer moments are those of the checkpoint). `step` counts
    optimizer steps (unitless). Returns a sentence describing the rebuild, or None when the
    state was simply loaded.
    """
    if scheduler is None or state is None:
        return None
    fresh = scheduler.state_dict()
    old, new = _schedule_shape(state), _schedule_shape(fresh)
    if old == new:
        scheduler.load_state_dict(state)
        return None
    import copy
    import warnings

    fresh = copy.deepcopy(fresh)
    base = fresh.get("base_lrs")
    fresh["last_epoch"] = 0
    fresh["_step_count"] = 1
    opt = getattr(scheduler, "optimizer", None)
    if opt is not None:
        for i, g in enumerate(opt.param_groups):
            lr0 = base[i] if isinstance(base, list) and i < len(base) else g.get("initial_lr", g["lr"])
            g["lr"] = g["initial_lr"] = lr0
    scheduler.load_state_dict(fresh)
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()"
        warnings.simplefilter("ignore")
        for _ in range(int(step)):
            scheduler.step()
    lr = [round(float(g["lr"]), 10) for g in opt.param_groups] if opt is not None else []
    return (f"the LR schedule changed length ({type(scheduler).__name__} "
            f"{_describe_shape(old)} -> {_describe_shape(new)}): it is rebuilt for the new length "
            f"and continues at step {int(step)} with lr {lr} (the old scheduler state is not "
            "restored)")


# --------------------------------------------------------------------------------------------
# writing

def write_checkpoint(ckpt: Mapping[str, Any], paths: str | os.PathLike | Iterable[str | os.PathLike]
                     ) -> list[Path]:
    """Serialise `ckpt` once and write it atomically to each of `paths`.

    An exception anywhere (serialisation, disk full, kill) leaves every existing file untouched
    and no temporary file behind. NumPy arrays in `ckpt` are stored as tensors of the same
    shape (...) and dtype. Returns the paths written.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    safe = _safe_copy(dict(ckpt), "checkpoint")
    buf = _io.BytesIO()
    torch.save(safe, buf)
    data = buf.getvalue()
    try:  # what we write must load with weights_only=True (the only way it is ever read)
        torch.load(_io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"refusing to write a checkpoint that a safe load "
                              f"(torch.load(weights_only=True)) cannot read: {exc}") from exc
    return [atomic_write_bytes(p, data) for p in paths]


_SAFE_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype,
                torch.device)


def _safe_copy(obj: Any, where: str) -> Any:
    """`obj` with NumPy scalars/arrays converted (to numbers / tensors); CheckpointError naming
    the entry for anything a ``weights_only`` load would refuse (functions, custom classes...)."""
    if isinstance(obj, torch.Tensor) or type(obj) in _SAFE_LEAVES:
        return obj
    for base in (bool, int, float, str, bytes):  # e.g. torch.__version__ (a str subclass)
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise CheckpointError(f"cannot store {where}: a NumPy object array")
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise CheckpointError(f"cannot store {where}: key {k!r} is a {type(k).__name__} "
                                      "(keys must be strings or numbers)")
            out[k] = _safe_copy(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_safe_copy(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, (set, frozenset)):
        return [_safe_copy(v, f"{where}{{}}") for v in sorted(obj, key=repr)]
    raise CheckpointError(
        f"cannot store {where}: a {type(obj).__module__}.{type(obj).__qualname__} object. "
        "Checkpoints hold only tensors, numbers, strings and plain containers, so that they load "
        "with torch.load(weights_only=True) (loading pickled objects can run code); store it as "
        "plain data (e.g. json.dumps(...) for a configuration)")


# --------------------------------------------------------------------------------------------
# reading

_LEGACY_SAFE_GLOBALS = [torch.torch_version.TorchVersion]


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint dict; clear :class:`CheckpointError` naming `path` when it is missing,
    truncated/corrupt or not a weakhand checkpoint. Tensors keep their stored shapes (...) on
    `map_location` (memory-mapped with `mmap`)."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            present = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f" ({path.parent} holds: {', '.join(present) if present else 'no .pt files'})"
        raise CheckpointNotFoundError(f"checkpoint not found: {path}{hint}", path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc})", path) from None
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        what = ("the file is empty" if not head else
                f"corrupt or truncated, or another kind of file: its first bytes are {head!r}")
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({what}); give a .pt file "
                              "written by weakhand (e.g. <run>/stage1_pose/best.pt)", path)
    try:
        # always the safe loader (weights_only=True): unpickling arbitrary objects can execute code. Checkpoints
        # written before the writer was made strict store torch.__version__ as a TorchVersion
        # (a plain str subclass): allowing that one class keeps them loadable.
        with torch.serialization.safe_globals(_LEGACY_SAFE_GLOBALS):
            ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            first = _first_line(exc)
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it holds pickled Python objects that a safe load "
                f"refuses ({first}). Loading it could run arbitrary code, so it was not "
                "unpickled. weakhand checkpoints hold only tensors, numbers, strings and plain "
                "containers: use a checkpoint written by weakhand's Trainer (retrain, or re-run "
                "the notebook that makes it with -p resume=False); never load files from an "
                "untrusted source", path) from None
        raise _corrupt(path, exc) from None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # text file, truncated zip, ...: torch raises many types
        raise _corrupt(path, exc) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a weakhand training checkpoint (no "
                              f"format={FORMAT!r} entry); was it written by weakhand.train?", path)
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt['version']}, newer than "
                              f"this weakhand (version {VERSION}); update the code", path)
    return ckpt


# --------------------------------------------------------------------------------------------
# what a checkpoint holds

def model_specs(ckpt: Mapping[str, Any], path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """What each stored model of a checkpoint dict (read from `path`) is:
    ``{name: {"kind", "config", "input_size", "source"}}`` with kind the class name (None if
    unknown), config its constructor configuration (None if not recorded; ``"missing"`` then
    says why), input_size the side in px of the square crops it was trained on
    (``config["train_size"]``; None if not recorded), source where kind and config came from.

    Checkpoints written since they describe themselves carry ``model_specs``; older ones go
    through the one fallback, :func:`_legacy_model_specs`.
    """
    saved = ckpt.get("model_specs")
    if not saved:
        return _legacy_model_specs(ckpt, Path(path))
    size = (ckpt.get("config") or {}).get("train_size")
    return {name: {"kind": d.get("kind"), "config": d.get("config"), "input_size": size,
                   "source": "checkpoint"} for name, d in saved.items()}


#: older Cai/2.5D stage-3 checkpoints without config["net"]: their run's stage-1 folder holds it
_LEGACY_STAGE1 = {"CaiPoseNet": "stage1_pose", "Pose25DNet": "pose25d_stage1"}


def _legacy_kind(state_dict: Mapping[str, Any]) -> str | None:
    keys = list(state_dict)
    has = lambda p: any(k.startswith(p) for k in keys)  # noqa: E731
    if has("pose.") and has("reg."):
        return "CaiPoseNet"
    if has("stem.") and has("stages.") and has("head."):
        return "Pose25DNet"
    return None


def _legacy_model_specs(ckpt: Mapping[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """THE fallback for checkpoints written before ``model_specs``: the kind from the trainer's
    settings (``trainer["models"][name]["class"]``, else guessed from the state-dict keys), the
    configuration from the notebook's config: ``config["net"]`` (pose networks; a Cai/2.5D
    stage-3 checkpoint without it takes its run's stage-1 one: ``<run>/stage1_pose`` or
    ``<run>/pose25d_stage1``, best.pt then last.pt, next to the checkpoint's folder or under
    ``config["run_dir"]``), ``config["reg_size"/"reg_dropout"]`` (the stage-2 regulariser),
    ``config["dense"]`` (the depth teacher)."""
    config = ckpt.get("config") or {}
    classes = (ckpt.get("trainer") or {}).get("models") or {}
    out: dict[str, dict[str, Any]] = {}
    for name, sd in (ckpt.get("models") or {}).items():
        kind = (classes.get(name) or {}).get("class") or _legacy_kind(sd)
        spec: dict[str, Any] = {"kind": kind, "config": None,
                                "input_size": config.get("train_size"), "source": "checkpoint config"}
        if kind in _LEGACY_STAGE1:
            spec["config"] = config.get("net")
            if spec["config"] is None:
                spec.update(_legacy_stage1_net(kind, path, config))
        elif kind == "DepthRegularizer" and config.get("reg_size"):
            spec["config"] = {"out_size": config["reg_size"], "dropout": config.get("reg_dropout", 0.2)}
        elif kind == "DenseDepthNet" and config.get("dense"):
            d = config["dense"]
            spec["config"] = {k: d[k] for k in ("stacks", "width", "hg_depth", "head", "dropout") if k in d}
        out[name] = spec
    return out


def _legacy_stage1_net(kind: str, path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    folder = _LEGACY_STAGE1[kind]
    roots = [path.resolve().parent.parent] + ([Path(config["run_dir"])] if config.get("run_dir") else [])
    tried = list(dict.fromkeys(r / folder / f for r in roots for f in ("best.pt", "last.pt")))
    for cand in tried:
        if cand.is_file() and cand.resolve() != path.resolve():
            try:
                c1 = read_checkpoint(cand, mmap=True).get("config") or {}
            except CheckpointError:
                continue
            if c1.get("net") is not None:
                return {"config": c1["net"], "source": f"stage-1 checkpoint {cand}",
                        "input_size": config.get("train_size") or c1.get("train_size")}
    return {"missing": f"{path} does not record its network configuration (config['net']) and no "
                       f"stage-1 checkpoint with one was found (tried: {', '.join(map(str, tried))}); "
                       f"keep the checkpoint inside its run folder next to {folder}/"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.lower().startswith("weights only load failed"):
            first = line.split(". ", 1)[0].rstrip(".")  # one sentence
            return first if len(first) <= 200 else first[:197] + "..."
    return text[:200] or type(exc).__name__


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    what = "is empty" if path.stat().st_size == 0 else "is corrupt or truncated (or not a checkpoint)"
    return CheckpointError(
        f"checkpoint {path} {what} and cannot be read ({type(exc).__name__}: "
        f"{_first_line(exc)}). If it is a run's last.pt, delete it or restart that training with "
        "-p resume=False; a best.pt is rewritten by re-running its notebook", path)


def _n_params(state_dict: Mapping[str, Any]) -> int:
    return int(sum(v.numel() for v in state_dict.values() if isinstance(v, torch.Tensor)))


def _info(ckpt: Mapping[str, Any], path: Path) -> dict[str, Any]:
    return {
        "path": str(path),
        "name": ckpt.get("name"),
        "step": ckpt.get("step"),
        "epoch": ckpt.get("epoch"),
        "batch_in_epoch": ckpt.get("batch_in_epoch"),
        "config": ckpt.get("config", {}),
        "trainer": ckpt.get("trainer", {}),
        "metrics": ckpt.get("metrics", {}),
        "best": ckpt.get("best", {}),
        "elapsed_s": ckpt.get("elapsed_s"),
        "saved_at": ckpt.get("saved_at"),
        "versions": ckpt.get("versions", {}),
        "models": {k: _n_params(sd) for k, sd in ckpt.get("models", {}).items()},
    }


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint describes, without loading it into anything.

    Returns ``path, name, step, epoch, batch_in_epoch, config, trainer, metrics, best, elapsed_s,
    saved_at, versions, models`` (``elapsed_s`` training time in seconds; ``models`` maps each
    stored module to its parameter count). The tensors are memory-mapped, not read.
    """
    path = Path(path)
    return _info(read_checkpoint(path, mmap=True), path)


def _load_models(ckpt: Mapping[str, Any], model: nn.Module | Mapping[str, nn.Module], path: Path,
                 strict: bool) -> None:
    stored = ckpt["models"]
    if isinstance(model, nn.Module) and not isinstance(model, nn.ModuleDict):
        if SINGLE_MODEL_KEY in stored:
            targets = {SINGLE_MODEL_KEY: model}
        elif len(stored) == 1:
            targets = {next(iter(stored)): model}
        else:
            raise CheckpointError(
                f"checkpoint {path} holds several models ({', '.join(stored)}); pass a dict "
                "{name: module} naming the one(s) to load", path)
    else:
        targets = dict(model.items())
    for name, module in targets.items():
        if name not in stored:
            raise CheckpointError(f"checkpoint {path} has no model {name!r} (it holds: "
                                  f"{', '.join(stored)})", path)
        try:
            module.load_state_dict(stored[name], strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path}: model {name!r} does not match the given "
                                  f"module: {exc}", path) from exc


def load_checkpoint(path: str | os.PathLike, model: nn.Module | Mapping[str, nn.Module] | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    scaler: Any = None, *, strict: bool = True) -> dict[str, Any]:
    """Load the weights (and optionally optimizer/scheduler/GradScaler state) of a checkpoint.

    `model` is a module (gets the stored "model", or the only stored module) or a dict
    ``{name: module}`` (each named module is loaded). Tensors are loaded on the CPU and copied
    into the modules' own devices; each stored tensor must have the shape (...) of the module's
    (CheckpointError otherwise, with `strict` also for missing keys). Returns
    :func:`checkpoint_info`'s dict (``elapsed_s`` in seconds).
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    if model is not None:
        _load_models(ckpt, model, path, strict)
    try:
        if optimizer is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            restore_scheduler(scheduler, ckpt["scheduler"], int(ckpt.get("step") or 0))
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: optimizer/scheduler state does not fit: {exc}",
                              path) from exc
    return _info(ckpt, path)
