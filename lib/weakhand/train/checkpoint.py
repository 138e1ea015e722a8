"""Self-describing training checkpoints, written atomically.

A checkpoint is one ``torch.save`` file (a plain dict, loadable with ``weights_only=True``)::

    format, version          "weakhand.checkpoint", 1
    name, step, epoch        trainer name; optimizer steps done; epoch index of the next batch
    batch_in_epoch           batches of `epoch` already consumed (the data position)
    models                   {module name: state_dict}  (a single model is stored as "model")
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
"""
from __future__ import annotations

import io as _io
import os
import pickle
import random
import zipfile
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

__all__ = ["CheckpointError", "CheckpointNotFoundError", "checkpoint_info", "load_checkpoint",
           "read_checkpoint", "write_checkpoint", "rng_state", "set_rng_state", "FORMAT",
           "VERSION"]


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt, not a weakhand checkpoint, or does not fit the model."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""

    def __str__(self) -> str:  # keep FileNotFoundError from printing errno fields
        return self.args[0]


# --------------------------------------------------------------------------------------------
# RNG states (stored as tensors / lists so that weights_only loading works)

def rng_state() -> dict[str, Any]:
    """The global RNG states of torch (CPU and CUDA), NumPy and Python's `random`."""
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
    """Restore states returned by :func:`rng_state` (CUDA states only when the GPU count matches)."""
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
# writing

def write_checkpoint(ckpt: Mapping[str, Any], paths: str | os.PathLike | Iterable[str | os.PathLike]
                     ) -> list[Path]:
    """Serialise `ckpt` once and write it atomically to each of `paths`.

    An exception anywhere (serialisation, disk full, kill) leaves every existing file untouched
    and no temporary file behind.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    buf = _io.BytesIO()
    torch.save(dict(ckpt), buf)
    data = buf.getvalue()
    return [atomic_write_bytes(p, data) for p in paths]


# --------------------------------------------------------------------------------------------
# reading

def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint dict; clear :class:`CheckpointError` naming `path` when it is missing,
    truncated/corrupt or not a weakhand checkpoint."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            present = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f" ({path.parent} holds: {', '.join(present) if present else 'no .pt files'})"
        raise CheckpointNotFoundError(f"checkpoint not found: {path}{hint}", path)
    try:
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            if "weights only" not in str(exc).lower():
                raise
            # a scheduler/config holding an arbitrary object: our own file, load it fully
            ckpt = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(exc).__name__}: {exc})", path) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a weakhand training checkpoint (no "
                              f"format={FORMAT!r} entry); was it written by weakhand.train?", path)
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt['version']}, newer than "
                              f"this weakhand (version {VERSION}); update the code", path)
    return ckpt


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
    saved_at, versions, models`` (``models`` maps each stored module to its parameter count).
    The tensors are memory-mapped, not read.
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
    into the modules' own devices. Returns :func:`checkpoint_info`'s dict.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    if model is not None:
        _load_models(ckpt, model, path, strict)
    try:
        if optimizer is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: optimizer/scheduler state does not fit: {exc}",
                              path) from exc
    return _info(ckpt, path)
