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
- :func:`wrap_for_training` builds those views once (frozen modules get rank 0's weights
  instead), and :func:`check_ddp_grads` stops a step whose gradients escaped the wrappers;
- :func:`on_main` runs something on rank 0 only (checkpoint writes, validation) and hands its
  result or its failure to every rank, so no rank waits forever for a rank that failed;
- :class:`StepTerms` reads each step's loss terms on the host, averaged over the ranks: at once
  (one host-device sync per step) or deferred to the log / validation / checkpoint steps
  (``sync_every_step=False``: the CPU keeps queueing steps while the GPU works);
  :func:`sum_over_ranks` and :func:`gather_from_ranks` are the other collectives the Trainer
  needs (throughput, every rank's RNG states in a checkpoint).

Outside a distributed job every helper is a no-op (rank 0 of a world of 1). The torchrun
environment itself (:func:`~weakhand.device.dist_env`, :func:`~weakhand.device.local_cuda_index`)
is read in :mod:`weakhand.device`; nothing here runs at import.
"""
from __future__ import annotations

import atexit
import datetime as _dt
import itertools
import os
import warnings
import zlib
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (DataLoader, DistributedSampler, IterableDataset, RandomSampler,
                              Sampler, SequentialSampler)

from ..device import DistEnv, dist_env, local_cuda_index, pin_cuda_device_from_env, resolve_device
from .checkpoint import SINGLE_MODEL_KEY

TIMEOUT_ENV = "WEAKHAND_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 60.0

__all__ = ["DistEnv", "dist_env", "is_distributed", "rank", "world_size", "is_main_process",
           "init_distributed", "local_cuda_index", "pin_cuda_device_from_env", "barrier",
           "on_main", "RankFailedError", "ShardedBatchSampler", "shard_loader", "TrainView",
           "rank0_first", "wrap_for_training", "check_ddp_grads", "StepTerms", "mean_over_ranks",
           "sum_over_ranks", "gather_from_ranks", "TIMEOUT_ENV"]


def is_distributed() -> bool:
    """True when the default process group is initialised with more than one rank (bool)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank, an int index (0 outside a distributed job; from the environment
    before the process group exists); unitless."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    env = dist_env()
    return env.rank if env else 0


def world_size() -> int:
    """Number of processes in the job (1 outside a distributed job); unitless."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    env = dist_env()
    return env.world_size if env else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run); bool."""
    return rank() == 0


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
    (default 60: a rank waits that long for rank 0's validation or checkpoint). No arrays.
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
    """Wait for every rank (no-op in a single process); no arrays."""
    if is_distributed():
        dist.barrier(device_ids=_device_ids())


class RankFailedError(RuntimeError):
    """Raised on the other ranks when rank 0 failed inside :func:`on_main` (no arrays)."""


def on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only; every rank returns its (picklable) result.

    When `fn` raises on rank 0, rank 0 re-raises the exception and every other rank raises
    :class:`RankFailedError` naming it, so that no rank is left waiting. In a single process
    this is just ``fn()``. Acts as a barrier. No arrays of its own (the result is pickled).
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
    the Trainer, picks NCCL or gloo); a no-op in a single process. No arrays.
    """

    def __init__(self, device: str | torch.device = "auto"):
        self.device = device

    def __enter__(self):
        if dist_env() is not None and not (dist.is_available() and dist.is_initialized()):
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
    Yields the wrapped sampler's batches of int indices (no arrays).
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
        """Forward the epoch to the wrapped sampler, if it takes one (no arrays)."""
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    @property
    def generator(self) -> torch.Generator | None:
        """The wrapped sampler's generator (so that the Trainer seeds and saves it), or None;
        no arrays."""
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
    With ``num_replicas == 1`` the loader is returned unchanged. Batches keep the shapes (...)
    the loader gives (only which samples each rank sees changes).
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
    Inputs and outputs are the wrapped module's, shapes (...) unchanged.
    """

    def __init__(self, module: nn.Module, call: nn.Module):
        super().__init__()
        object.__setattr__(self, "_original", module)
        self.wrapped = call
        self.calls = 0  # forward calls since the Trainer last reset it

    @property
    def original(self) -> nn.Module:
        """The unwrapped module (no arrays)."""
        return self.__dict__["_original"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapper (DDP / compiled) with the module's own inputs and outputs, shapes
        (...) as the module's; counts the call."""
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
        """The original module's state dict (tensors in their own shapes (...), no prefix)."""
        return self.original.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """Load into the original module (tensor shapes (...) must match it)."""
        return self.original.load_state_dict(*args, **kwargs)

    def __repr__(self) -> str:
        return f"TrainView({type(self.wrapped).__name__} of {type(self.original).__name__})"


def wrap_for_training(models: Mapping[str, nn.Module], model: nn.Module, device: torch.device,
                      *, compile_options: Mapping[str, Any] | None,
                      find_unused_parameters: bool = False,
                      ddp_kwargs: Mapping[str, Any] | None = None,
                      ) -> tuple[nn.Module, list[tuple[str, TrainView]]]:
    """What the training forward pass calls, and the DDP-wrapped views to check after backward.

    `models` are the Trainer's named modules (already on this rank's `device`), `model` the module
    or ``nn.ModuleDict`` the step function expects. In a plain single-process run without
    `compile_options` this is `model` itself and no views. Otherwise each module with trainable
    parameters is replaced by a :class:`TrainView` of its ``DistributedDataParallel``
    (``device_ids`` = this rank's GPU on CUDA) and/or ``torch.compile`` wrapper; a frozen module
    (e.g. a fixed regulariser) stays as it is, and in a distributed run receives rank 0's
    parameters and buffers (DDP does this for the wrapped ones). Returns ``(train_model,
    views)``: `views` lists ``(name, view)`` of the DDP-wrapped modules (empty without DDP).
    No arrays: modules only, their inputs and outputs unchanged.
    """
    ddp = world_size() > 1
    if not ddp and compile_options is None:
        return model, []
    views: dict[str, nn.Module] = {}
    wrapped: list[tuple[str, TrainView]] = []
    for name, m in models.items():
        if not any(p.requires_grad for p in m.parameters()):
            views[name] = m  # frozen: no gradient to all-reduce
            if ddp:  # but every rank must use rank 0's
                with torch.no_grad():
                    for t in [*m.parameters(), *m.buffers()]:
                        dist.broadcast(t.data, src=0)
            continue
        call: nn.Module = m
        if ddp:
            ids = [device.index] if device.type == "cuda" else None
            call = DistributedDataParallel(
                m, device_ids=ids, find_unused_parameters=find_unused_parameters,
                **dict(ddp_kwargs or {}))
        if compile_options is not None:
            call = torch.compile(call, **compile_options)
        view = TrainView(m, call)
        views[name] = view
        if ddp:
            wrapped.append((name, view))
    if isinstance(model, nn.ModuleDict):
        return nn.ModuleDict(views), wrapped
    return next(iter(views.values())), wrapped


def check_ddp_grads(views: Iterable[tuple[str, TrainView]], step: int,
                    find_unused_parameters: bool) -> None:
    """After backward in a distributed run (`step`: the 1-based update being made): every
    DDP-wrapped module that took part in the step went through its wrapper, and (unless
    `find_unused_parameters`) gave every trainable parameter a gradient; otherwise gradients
    were not all-reduced (the ranks would drift apart silently, or DDP would fail cryptically at
    the next step). Resets each view's call counter. Local, no sync; no arrays."""
    for name, view in views:
        calls, view.calls = view.calls, 0
        params = [(k, p) for k, p in view.original.named_parameters() if p.requires_grad]
        label = "the model" if name == SINGLE_MODEL_KEY else f"model {name!r}"
        if calls == 0:
            if any(p.grad is not None for _, p in params):
                raise RuntimeError(
                    f"step {step}: {label} got gradients without being called: "
                    "the step function must call the module it receives (model(...) / "
                    "models[name](...)), not the original module or one of its methods, so "
                    "that DistributedDataParallel all-reduces the gradients")
            continue
        if not find_unused_parameters:
            missing = [k for k, p in params if p.grad is None]
            if missing:
                shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
                raise RuntimeError(
                    f"step {step}: {len(missing)} trainable parameter(s) of {label} "
                    f"got no gradient ({shown}); DistributedDataParallel needs "
                    "Trainer(..., find_unused_parameters=True) for such models (or freeze "
                    "them with requires_grad_(False))")


# --------------------------------------------------------------------------------------------
# reading the loss terms on the host (averaged over the ranks)

def mean_over_ranks(flat: torch.Tensor, layout: list[tuple[str, ...]], step: int
                    ) -> list[list[float]]:
    """`flat` (M,) (the concatenated rows of `layout`, one row of term values per step; M the
    total number of names) read on the host as one list of floats per row: one sync; in a
    distributed run averaged over the ranks first, after checking that every rank has the same
    layout (else the all-reduce would mix up terms; `step` names the newest step in that
    error)."""
    n_ranks = world_size()
    if n_ranks > 1:
        sig = float(zlib.crc32("|".join(",".join(n) for n in layout).encode()) & 0xFFFFF)
        check = torch.tensor([flat.numel(), sig, -flat.numel(), -sig], dtype=torch.float64,
                             device=flat.device)
        dist.all_reduce(check, op=dist.ReduceOp.MAX)
        hi_n, hi_sig, lo_n, lo_sig = check.tolist()
        if hi_n != -lo_n or hi_sig != -lo_sig:
            raise RuntimeError(
                f"steps up to {step}: the ranks returned different loss terms "
                f"(this rank: {', '.join(layout[-1])}); in a distributed run the step "
                "function must return the same term names on every rank and step")
        flat = flat.clone()
        dist.all_reduce(flat)
        flat /= n_ranks
    out, pos, vals = [], 0, flat.tolist()
    for names in layout:
        n = len(names)
        out.append(vals[pos:pos + n])
        pos += n
    return out


class StepTerms:
    """Each training step's loss terms (and gradient norm) as one row of device scalars, read on
    the host (averaged over the ranks) at once (:meth:`read`) or later, several steps in one
    sync (:meth:`defer`, then :meth:`flush`). Each row is a (T,) float32 tensor, T = terms
    (+ 1 for the gradient norm); values are scalars in the loss's own units."""

    def __init__(self) -> None:
        #: deferred steps: (names, has_grad_norm, row, step, epoch, batch)
        self.pending: list[tuple[tuple[str, ...], bool, torch.Tensor, int, int, int]] = []

    @staticmethod
    def row(terms: Mapping[str, torch.Tensor], grad_norm: torch.Tensor | None,
            device: torch.device) -> tuple[tuple[str, ...], bool, torch.Tensor]:
        """``(names, has_grad_norm, row)``: every term (scalar tensors) then the grad norm as one
        float32 vector (T,) on `device` (no sync)."""
        stacked = [t.detach().float().reshape(()).to(device) for t in terms.values()]
        if grad_norm is not None:
            stacked.append(grad_norm.detach().float().reshape(()).to(device))
        return tuple(terms), grad_norm is not None, torch.stack(stacked)

    @staticmethod
    def _layout(names: tuple[str, ...], has_gn: bool) -> tuple[str, ...]:
        return names + (("grad_norm",) if has_gn else ())

    @staticmethod
    def _values(names: tuple[str, ...], has_gn: bool, row: list[float]) -> dict[str, float]:
        values = dict(zip(names, row))
        if has_gn:
            values["grad_norm"] = row[-1]
        return values

    def read(self, names: tuple[str, ...], has_gn: bool, row: torch.Tensor, step: int
             ) -> dict[str, float]:
        """One step's terms on the host now (one sync), from its (T,) `row`:
        ``{term: value, ["grad_norm": ...]}`` as Python floats."""
        return self._values(names, has_gn,
                            mean_over_ranks(row, [self._layout(names, has_gn)], step)[0])

    def defer(self, names: tuple[str, ...], has_gn: bool, row: torch.Tensor, step: int,
              epoch: int, batch: int) -> None:
        """Queue one step's (T,) `row` to be read by :meth:`flush` (no sync)."""
        self.pending.append((names, has_gn, row, step, epoch, batch))

    def flush(self, step: int) -> list[tuple[dict[str, float], bool, int, int, int]]:
        """Every deferred step read on the host (one sync), oldest first, as
        ``(values, has_grad_norm, step, epoch, batch)`` with values {term: scalar float}, as
        :meth:`read`; `step` is the newest step."""
        pending, self.pending = self.pending, []
        if not pending:
            return []
        layout = [self._layout(names, has_gn) for names, has_gn, *_ in pending]
        rows = mean_over_ranks(torch.cat([p[2] for p in pending]), layout, step)
        return [(self._values(names, has_gn, row), has_gn, s, e, b)
                for (names, has_gn, _, s, e, b), row in zip(pending, rows)]


def sum_over_ranks(value: float, device: torch.device) -> float:
    """`value` (a Python scalar, any unit) summed over the ranks (float64 all-reduce); `value`
    itself in a single process."""
    if world_size() <= 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item()


def gather_from_ranks(obj: Any) -> list[Any] | None:
    """Every rank's (picklable) `obj`, in rank order (a list of world_size items); None in a
    single process. No arrays of its own."""
    if world_size() <= 1:
        return None
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
