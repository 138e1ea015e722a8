"""Exact resume: the random state and the data position of a training run.

A checkpoint stores the data position (epoch, batches consumed in that epoch), the RNG states at
the start of that epoch (global torch/NumPy/Python and every ``torch.Generator`` attached to the
loader: :func:`epoch_rng_state`) and the RNG states at save time. Resuming re-opens the epoch
under the epoch-start states (:func:`apply_epoch_rng`, :func:`open_epoch`), skips the consumed
batches (:func:`skip_batches`) and then restores the save-time states, so the continued run sees
the same batches and random draws as an uninterrupted one.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data.dataloader import _SingleProcessDataLoaderIter

from ..data.torch_data import set_loader_epoch
from . import checkpoint as ck

__all__ = ["seed_everything", "rank_seed", "loader_generators", "seed_loader", "epoch_rng_state",
           "apply_epoch_rng", "open_epoch", "skip_batches"]


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global RNG (`seed` mod 2**32) and torch (CPU and every
    CUDA device); no arrays."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """The global-RNG seed of a rank: `seed` itself on rank 0 (= a single-process run), a
    distinct derived seed on the others (their dropout/augmentation draws must differ).
    Unitless int."""
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) % 2**32, int(rank)]).generate_state(1)[0])


def loader_generators(loader: Any) -> list[torch.Generator]:
    """Every distinct torch.Generator that drives the loader's order / worker seeds (no arrays;
    [] when none)."""
    found: list[torch.Generator] = []
    cands = [getattr(loader, "generator", None)]
    for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        cands.append(getattr(obj, "generator", None))
        cands.append(getattr(getattr(obj, "sampler", None), "generator", None))
    for g in cands:
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def seed_loader(loader: Any, seed: int) -> None:
    """Seed the loader's generators with ``seed + i``: they drive the data order, the same on
    every rank (sharding needs it); no arrays."""
    for i, g in enumerate(loader_generators(loader)):
        g.manual_seed(seed + i)


def epoch_rng_state(loader: Any) -> dict[str, Any]:
    """The RNG states at the start of an epoch: ``{"rng": global states, "loader": [generator
    states]}`` (stored in checkpoints as ``epoch_rng``); each state a (5056,) uint8 tensor
    for CPU generators, the global ones as :func:`~weakhand.train.checkpoint.rng_state`."""
    return {"rng": ck.rng_state(), "loader": [g.get_state() for g in loader_generators(loader)]}


def apply_epoch_rng(epoch_rng: Mapping[str, Any], loader: Any) -> None:
    """Restore :func:`epoch_rng_state`'s states (global and the loader's generators); no arrays
    returned."""
    ck.set_rng_state(epoch_rng["rng"])
    gens, states = loader_generators(loader), epoch_rng.get("loader", [])
    if len(gens) != len(states):
        warnings.warn(f"the loader has {len(gens)} torch.Generator(s), the checkpoint "
                      f"{len(states)}: the data order after resuming may differ", stacklevel=4)
    for g, s in zip(gens, states):
        g.set_state(s)


def open_epoch(loader: Iterable, epoch: int) -> Iterator:
    """``set_epoch`` (a DataLoader: :func:`~weakhand.data.torch_data.set_loader_epoch`) and a
    fresh iterator over the loader (batches as the loader gives them, shapes (...) unchanged)."""
    if isinstance(loader, DataLoader):
        set_loader_epoch(loader, epoch)
    elif hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    return iter(loader)


def skip_batches(it: Iterator, loader: Iterable, n: int) -> bool:
    """Advance `it` by `n` batches; False if it ran out first (bool; no arrays returned).

    A single-process DataLoader over a map-style dataset only advances its sampler (no data
    is loaded; the global RNG states are restored afterwards anyway); other loaders are
    iterated (workers keep their own RNG streams in step).
    """
    fast = (isinstance(it, _SingleProcessDataLoaderIter) and hasattr(it, "_next_index")
            and isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset))
    try:
        for _ in range(n):
            it._next_index() if fast else next(it)
    except StopIteration:
        return False
    return True
