"""Which device this process computes on: ``"auto"``/``"cpu"``/``"cuda[:N]"`` resolution and,
inside a ``torchrun`` job, which GPU belongs to this process.

Low-level on purpose (no torch import at module level, nothing happens at import): the
notebook configuration (:func:`weakhand.workbook.profiles.resolve`), the Trainer, ``weakhand predict``
and the runner all resolve their device here.

A process belongs to a multi-process job when ``torchrun`` (or ``weakhand run --nproc N``) put
``WORLD_SIZE`` > 1, ``RANK`` and ``LOCAL_RANK`` into its environment (:func:`dist_env`). In such a
process on a CUDA machine, resolving a CUDA device also selects this process's GPU
(``torch.cuda.set_device(LOCAL_RANK)``), so that ``"cuda"`` means that GPU for the rest of the
notebook, also for tensors created before the Trainer.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

__all__ = ["DistEnv", "dist_env", "local_cuda_index", "pin_cuda_device_from_env",
           "resolve_device"]


@dataclass(frozen=True)
class DistEnv:
    """What torchrun put into the environment."""
    rank: int
    world_size: int
    local_rank: int


def dist_env() -> DistEnv | None:
    """The torchrun environment of this process, or None when not in a multi-process job
    (``WORLD_SIZE`` unset or 1). A malformed environment raises RuntimeError."""
    ws = os.environ.get("WORLD_SIZE", "").strip()
    if not ws:
        return None
    try:
        world = int(ws)
        if world <= 1:
            return None
        r = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", r))
    except (KeyError, ValueError) as exc:
        raise RuntimeError(f"WORLD_SIZE={ws} is set but RANK/LOCAL_RANK are missing or not "
                           f"integers ({exc}); start the job with torchrun") from None
    if not 0 <= r < world:
        raise RuntimeError(f"RANK={r} is outside 0..WORLD_SIZE-1={world - 1}")
    return DistEnv(r, world, local)


def local_cuda_index(local_rank: int | None = None) -> int:
    """CUDA device index of this process: ``LOCAL_RANK`` (one GPU per process), or 0 when each
    process sees a single GPU (e.g. ``CUDA_VISIBLE_DEVICES`` set per process)."""
    import torch  # local here and below: the command line resolves devices without torch loaded

    lr = int(os.environ.get("LOCAL_RANK", 0)) if local_rank is None else int(local_rank)
    n = torch.cuda.device_count()
    if n == 1:
        return 0
    if lr >= n:
        raise RuntimeError(f"LOCAL_RANK={lr} but only {n} CUDA device(s) are visible: start at "
                           f"most {n} processes per node (one GPU each)")
    return lr


def pin_cuda_device_from_env() -> None:
    """In a torchrun process on a CUDA machine, make ``"cuda"`` mean ``cuda:LOCAL_RANK``
    (``torch.cuda.set_device``), so tensors a notebook moves to ``"cuda"`` before the Trainer
    exists land on this process's GPU. No-op otherwise (and never an error)."""
    try:
        env = dist_env()
    except RuntimeError:
        return
    if env is None:
        return
    import torch

    if not torch.cuda.is_available():
        return
    try:
        torch.cuda.set_device(local_cuda_index(env.local_rank))
    except RuntimeError as exc:  # reported properly when a Trainer asks for the device
        warnings.warn(f"could not select this process's GPU: {exc}", stacklevel=2)


def resolve_device(device: str | None = "auto") -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; "cuda[:N]" without a GPU -> RuntimeError.

    Inside a torchrun process a CUDA result also selects this process's GPU
    (:func:`pin_cuda_device_from_env`); elsewhere nothing but the string changes.
    """
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return "cpu"
    if device != "auto" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda' (or 'cuda:N')")
    try:
        import torch
        available = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if available else 0
        why = "torch.cuda.is_available() is False (CPU-only torch build or no visible GPU)"
    except ImportError:
        available, count, why = False, 0, "torch is not installed"
    if device == "auto":
        device = "cuda" if available else "cpu"
        if available:
            pin_cuda_device_from_env()
        return device
    if not available:
        raise RuntimeError(f"device {device!r} was requested but CUDA is not usable: {why}. "
                           "Use device='auto' or 'cpu' (runner: --device auto|cpu).")
    if ":" in device:
        idx = device.split(":", 1)[1]
        if not idx.isdigit() or int(idx) >= count:
            raise RuntimeError(f"device {device!r} was requested but only {count} CUDA device(s) exist")
    pin_cuda_device_from_env()
    return device
