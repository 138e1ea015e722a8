"""Multi-process (torch.distributed) helpers for the :class:`~weakhand.train.Trainer`.

A process belongs to a distributed job when it was started by ``torchrun`` (or ``weakhand run
--nproc N``), i.e. when the environment holds ``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. Then:

- :func:`init_distributed` creates the default process group once per process: NCCL when the
  training device is CUDA (each process on ``cuda:LOCAL_RANK``), gloo on the CPU;
- :func:`shard_loader` gives each rank its share of the training data (a
  ``DistributedSampler`` for a shuffled / sequential DataLoader, every ``world_size``-th batch
  starting at ``rank`` for a custom batch sampler such as
  :class:`~weakhand.data.torch_data.MixedBatchSampler`);
- :class:`TrainView` is what a step function receives in place of a trained module: calling
  it runs the DistributedDataParallel (and/or ``torch.compile``) wrapper, so gradients are
  all-reduced, while attributes (``model.cfg``, ``model.stride``) come from the module itself;
- :func:`on_main` runs something on rank 0 only (checkpoint writes, validation) and hands its
  result or its failure to every rank, so no rank waits forever for a rank that failed.

Outside a distributed job every helper is a no-op (rank 0 of a world of 1).
"""
from __future__ import annotations

import atexit
import datetime as _dt
import itertools
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import (DataLoader, DistributedSampler, IterableDataset, RandomSampler,
                              Sampler, SequentialSampler)

TIMEOUT_ENV = "WEAKHAND_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 60.0

__all__ = ["DistEnv", "dist_env", "is_distributed", "rank", "world_size", "is_main_process",
           "init_distributed", "local_cuda_index", "pin_cuda_device_from_env", "barrier",
           "on_main", "RankFailedError", "ShardedBatchSampler", "shard_loader", "TrainView",
           "rank0_first", "TIMEOUT_ENV"]


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


def is_distributed() -> bool:
    """True when the default process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a distributed job; from the environment before the
    process group exists)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    env = dist_env()
    return env.rank if env else 0


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    env = dist_env()
    return env.world_size if env else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run)."""
    return rank() == 0


def local_cuda_index(local_rank: int | None = None) -> int:
    """CUDA device index of this process: ``LOCAL_RANK`` (one GPU per process), or 0 when each
    process sees a single GPU (e.g. ``CUDA_VISIBLE_DEVICES`` set per process)."""
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
    if env is None or not torch.cuda.is_available():
        return
    try:
        torch.cuda.set_device(local_cuda_index(env.local_rank))
    except RuntimeError as exc:  # reported properly when a Trainer asks for the device
        warnings.warn(f"could not select this process's GPU: {exc}", stacklevel=2)


def _timeout() -> _dt.timedelta:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        minutes = float(raw) if raw else DEFAULT_TIMEOUT_MIN
    except ValueError:
        raise RuntimeError(f"{TIMEOUT_ENV}={raw!r} is not a number of minutes") from None
    return _dt.timedelta(minutes=minutes)


def init_distributed(device: torch.device | str) -> torch.device:
    """Join the torchrun job (once per process) and return this process's training device.

    `device` is the resolved training device: CUDA -> NCCL process group, this process on
    ``cuda:local_cuda_index()``; CPU -> gloo. Outside a distributed job `device` is returned
    unchanged and nothing happens. Collective timeout: ``$WEAKHAND_DIST_TIMEOUT_MIN`` minutes
    (default 60: a rank waits that long for rank 0's validation or checkpoint).
    """
    device = torch.device(device)
    env = dist_env()
    if env is None:
        return device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(var):
            raise RuntimeError(f"WORLD_SIZE={env.world_size} is set but {var} is not: start the "
                               "job with torchrun (python -m torch.distributed.run)")
    if device.type == "cuda":
        idx = local_cuda_index(env.local_rank)
        if device.index is not None and device.index != idx:
            warnings.warn(f"device {device} ignored in a distributed job: rank {env.rank} trains "
                          f"on cuda:{idx} (LOCAL_RANK={env.local_rank})", stacklevel=3)
        device = torch.device("cuda", idx)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kw: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=_timeout(), **kw)
        atexit.register(_destroy)
    elif dist.get_world_size() != env.world_size:
        raise RuntimeError(f"the process group has {dist.get_world_size()} ranks but "
                           f"WORLD_SIZE={env.world_size}")
    return device


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # interpreter shutdown: nothing useful to report
            pass


def _device_ids() -> list[int] | None:
    if dist.get_backend() == "nccl":
        return [torch.cuda.current_device()]
    return None


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier(device_ids=_device_ids())


class RankFailedError(RuntimeError):
    """Raised on the other ranks when rank 0 failed inside :func:`on_main`."""


def on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only; every rank returns its (picklable) result.

    When `fn` raises on rank 0, rank 0 re-raises the exception and every other rank raises
    :class:`RankFailedError` naming it, so that no rank is left waiting. In a single process
    this is just ``fn()``. Acts as a barrier.
    """
    if not is_distributed():
        return fn()
    if dist.get_rank() == 0:
        try:
            result = fn()
        except BaseException as exc:
            dist.broadcast_object_list([("error", f"{type(exc).__name__}: {exc}")], src=0)
            raise
        dist.broadcast_object_list([("ok", result)], src=0)
        return result
    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    status, payload = box[0]
    if status == "error":
        raise RankFailedError(f"rank 0 failed: {payload}")
    return payload


class rank0_first:
    """Context manager: rank 0 runs the block first, the other ranks run it afterwards.

    For work that writes a shared artifact and reuses it when it exists (e.g. building a
    dataset): ``with rank0_first(cfg.device): make_labelled_twin(src, out)``; the other ranks
    then find it and load it. Joins the job first when no Trainer has yet (`device`, as for
    the Trainer, picks NCCL or gloo); a no-op in a single process.
    """

    def __init__(self, device: str | torch.device = "auto"):
        self.device = device

    def __enter__(self):
        if dist_env() is not None and not (dist.is_available() and dist.is_initialized()):
            from ..profiles import resolve_device
            init_distributed(resolve_device(str(self.device)))
        if is_distributed() and dist.get_rank() != 0:
            barrier()
        return self

    def __exit__(self, exc_type, exc, tb):
        if is_distributed() and dist.get_rank() == 0:
            barrier()  # also on an exception: the others must not wait forever
        return False


# --------------------------------------------------------------------------------------------
# data sharding

class ShardedBatchSampler(Sampler):
    """Every `num_replicas`-th batch of `batch_sampler`, starting at `rank`.

    Every rank gets ``len(batch_sampler) // num_replicas`` batches (the at most
    ``num_replicas - 1`` last batches are dropped), so all ranks make the same number of steps
    per epoch. ``set_epoch`` is forwarded. The wrapped sampler must produce the same batches on
    every rank (its order may depend only on its seed, the epoch and generators seeded the same
    on all ranks, as the Trainer does). Works on a plain sampler too (every k-th index).
    """

    def __init__(self, batch_sampler: Iterable, num_replicas: int, rank: int):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.inner, self.num_replicas, self.rank = batch_sampler, int(num_replicas), int(rank)
        n = len(batch_sampler)  # type: ignore[arg-type]
        if n < self.num_replicas:
            raise ValueError(f"the batch sampler yields {n} batch(es) per epoch, fewer than the "
                             f"{self.num_replicas} processes: every rank needs at least one")

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    @property
    def generator(self) -> torch.Generator | None:
        """The wrapped sampler's generator (so that the Trainer seeds and saves it)."""
        g = getattr(self.inner, "generator", None)
        return g if g is not None else getattr(getattr(self.inner, "sampler", None), "generator", None)

    def __len__(self) -> int:
        return len(self.inner) // self.num_replicas  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        stop = len(self) * self.num_replicas
        return itertools.islice(iter(self.inner), self.rank, stop, self.num_replicas)


class _ShardedIterable:
    """Every k-th item of a plain iterable of batches (a list, a generator factory, ...)."""

    def __init__(self, loader: Iterable, num_replicas: int, rank: int):
        self.loader, self.num_replicas, self.rank = loader, num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader) // self.num_replicas  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        stop = None
        if hasattr(self.loader, "__len__"):
            stop = len(self) * self.num_replicas
        return itertools.islice(iter(self.loader), self.rank, stop, self.num_replicas)


def _loader_kwargs(loader: DataLoader) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=getattr(loader, "pin_memory_device", ""),
    )
    if loader.num_workers > 0:
        kw["prefetch_factor"] = loader.prefetch_factor
    if hasattr(loader, "in_order"):
        kw["in_order"] = loader.in_order
    return kw


def shard_loader(loader: Iterable, num_replicas: int, rank: int, seed: int = 0) -> Iterable:
    """This rank's share of a training loader (a new loader; `loader` is not modified).

    - DataLoader with ``shuffle=True`` / the default sequential order (a ``RandomSampler`` /
      ``SequentialSampler``): the same DataLoader with a seeded ``DistributedSampler``
      (``drop_last=False``: the index list is padded to a multiple of `num_replicas`);
      its order depends on (`seed`, epoch) through ``set_epoch``.
    - DataLoader with any other sampler or a custom ``batch_sampler`` (e.g.
      :class:`~weakhand.data.torch_data.MixedBatchSampler`): a :class:`ShardedBatchSampler`
      over its batch sampler (every `num_replicas`-th batch starting at `rank`).
    - any other iterable of batches (a list, ...): every `num_replicas`-th batch.

    A DataLoader over an ``IterableDataset`` cannot be sharded from outside: ValueError (make
    the dataset yield this rank's share and pass ``shard_data=False`` to the Trainer).
    With ``num_replicas == 1`` the loader is returned unchanged.
    """
    if num_replicas <= 1:
        return loader
    if not isinstance(loader, DataLoader):
        return _ShardedIterable(loader, num_replicas, rank)
    if isinstance(loader.dataset, IterableDataset):
        raise ValueError("cannot shard a DataLoader over an IterableDataset across processes: "
                         "make the dataset yield this rank's share (weakhand.train.distributed."
                         "rank()/world_size()) and pass shard_data=False to the Trainer")
    kw = _loader_kwargs(loader)
    sampler = loader.sampler
    if loader.batch_size is not None and type(sampler) in (RandomSampler, SequentialSampler):
        if isinstance(sampler, RandomSampler) and (sampler.replacement or
                                                   sampler._num_samples is not None):
            pass  # not a plain permutation: shard its batches below instead
        else:
            ds = DistributedSampler(loader.dataset, num_replicas=num_replicas, rank=rank,
                                    shuffle=isinstance(sampler, RandomSampler), seed=int(seed),
                                    drop_last=False)
            return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=ds,
                              drop_last=loader.drop_last, **kw)
    if loader.batch_sampler is not None:
        return DataLoader(loader.dataset,
                          batch_sampler=ShardedBatchSampler(loader.batch_sampler, num_replicas, rank),
                          **kw)
    # no automatic batching: each sampled item is a batch
    return DataLoader(loader.dataset, batch_size=None,
                      sampler=ShardedBatchSampler(sampler, num_replicas, rank), **kw)


# --------------------------------------------------------------------------------------------
# what step functions receive

class TrainView(nn.Module):
    """Stands in for a trained module during training steps.

    Calling it runs `call` (the module wrapped in DistributedDataParallel and/or compiled), so
    gradients are all-reduced across ranks; any other attribute (``cfg``, ``stride``,
    submodules, methods) is looked up on the original `module`. Note that a *method* of the
    module (``model.heads(x)``) runs outside the wrapper: in a distributed run its gradients
    would not be synchronised, and the Trainer stops with an error when it sees that.
    ``state_dict``/``load_state_dict`` are the original module's (no ``module.`` prefixes).
    """

    def __init__(self, module: nn.Module, call: nn.Module):
        super().__init__()
        object.__setattr__(self, "_original", module)
        self.wrapped = call
        self.calls = 0  # forward calls since the Trainer last reset it

    @property
    def original(self) -> nn.Module:
        return self.__dict__["_original"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = self.__dict__.get("_original")
            if original is None:
                raise
            return getattr(original, name)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.original.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.original.load_state_dict(*args, **kwargs)

    def __repr__(self) -> str:
        return f"TrainView({type(self.wrapped).__name__} of {type(self.original).__name__})"
