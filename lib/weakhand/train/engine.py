"""The training loop shared by every training notebook.

::

    trainer = Trainer(model, optimizer, loss_fn, run_dir=cfg.run_dir, name="hand2d",
                      max_steps=cfg.max_steps, device=cfg.device, seed=cfg.seed,
                      val_fn=validate, val_every=200, best_metric="val_mpjpe", config=cfg)
    history = trainer.fit(train_loader, resume=True)   # continues a killed run exactly
    trainer.loss_figure()

Everything a run produces lives in ``<run_dir>/<name>/``: ``last.pt`` (newest checkpoint),
``best.pt`` (best validation metric so far) and ``metrics.jsonl`` (one JSON object per line:
``kind`` "train" every `log_every` steps, "val" per validation, "start"/"resume"/"error" events).

Step numbering: ``trainer.step`` counts completed optimizer updates; "step k" is the k-th
update (1-based), a checkpoint "at step k" holds the weights after k updates.

Exact resume: a checkpoint stores the data position (epoch, batches consumed in that epoch), the
RNG states at the start of that epoch (global torch/NumPy/Python and every ``torch.Generator``
attached to the loader) and the RNG states at save time. ``fit(resume=True)`` re-opens the epoch
under the epoch-start states, skips the consumed batches (without loading them for a
single-process DataLoader over a map-style dataset) and then restores the save-time states, so the
continued run sees the same batches and random draws (dropout, augmentation) as an uninterrupted
one. Requirements: the loader's order depends only on its seeded generator / ``set_epoch`` (a
``shuffle=True`` DataLoader, :class:`~weakhand.data.torch_data.MixedBatchSampler`, ...), and
``persistent_workers=False`` (the default).

Several processes (``torchrun --nproc_per_node N`` or ``weakhand run --nproc N``): the Trainer
joins the job (NCCL on CUDA with one GPU per process, gloo on the CPU; see
:mod:`weakhand.train.distributed`), wraps every module with trainable parameters in
``DistributedDataParallel`` and gives each rank its share of the data (``shard_data``). The
effective batch is N x the loader's batch. Rank 0 alone writes ``metrics.jsonl``, shows the
progress bar, runs `val_fn` and writes checkpoints; the other ranks receive its validation
metrics and wait for its writes. Logged loss terms are means over the ranks, ``images_per_s``
counts all ranks. The model(s) start from rank 0's weights; every rank resumes from
``last.pt``, which also stores each rank's RNG states. Checkpoints hold the unwrapped modules'
``state_dict`` (no ``module.`` prefix), exactly as in a single process.

Host-device syncs: on the CPU the loss terms are read every step (the NaN check then runs
before the update, as always); on CUDA they stay on the device and are read, checked and
averaged only at log / validation / checkpoint steps (``sync_every_step``), so the CPU can
queue the next steps while the GPU works.

Where the pieces live: this module is the loop (:meth:`Trainer.fit`, one update in
:meth:`Trainer._train_step`, checks, checkpoint contents); :mod:`.distributed` the DDP wrapping,
the (deferred) reading of the loss terms and the other collectives; :mod:`.resume` the RNG
states and data position of an exact resume; :mod:`.history` the metrics log and its figure;
:mod:`.checkpoint` the file format.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import __version__
from ..data.torch_data import to_device  # re-exported: weakhand.train.to_device
from ..device import resolve_device
from ..io import atomic_write_text
from ..models.registry import describe as describe_model
from ..progress import progress
from . import checkpoint as ck
from . import distributed as _dist
from . import resume as _resume
from .history import (LOG_FILE, RECORD_KEYS, append_record, jsonable, loss_figure, read_history,
                      read_records)
from .resume import seed_everything  # re-exported

LAST_FILE = "last.pt"
BEST_FILE = "best.pt"

__all__ = ["Trainer", "NonFiniteLossError", "seed_everything", "to_device", "read_history",
           "loss_figure", "LOG_FILE", "LAST_FILE", "BEST_FILE"]

_AMP_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
               "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


class NonFiniteLossError(FloatingPointError):
    """A loss term (or the gradient norm, or a weight) became NaN/inf; training stopped.

    Attributes: ``step`` (the 1-based update that failed), ``epoch``, ``terms`` (names of the
    non-finite quantities), ``values`` (every loss term's scalar value at that step),
    ``checkpoint`` (the last good checkpoint, left untouched, or None).
    """

    def __init__(self, message: str, *, step: int, epoch: int, terms: list[str],
                 values: dict[str, float], checkpoint: Path | None):
        super().__init__(message)
        self.step, self.epoch, self.terms = step, epoch, list(terms)
        self.values, self.checkpoint = dict(values), checkpoint


# --------------------------------------------------------------------------------------------
# batches

def _channels_last(obj: Any) -> Any:
    """Every 4D floating-point tensor (B,C,H,W) of a nested batch in channels_last memory
    format (same values and shape; only the strides change)."""
    if isinstance(obj, torch.Tensor):
        if obj.ndim == 4 and obj.is_floating_point():
            return obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, Mapping):
        return {k: _channels_last(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_channels_last(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_channels_last(v) for v in obj)
    return obj


def _batch_size(batch: Any) -> int:
    """Leading dimension of the batch ("image" when present, else the first tensor found)."""
    if isinstance(batch, Mapping) and isinstance(batch.get("image"), torch.Tensor):
        return int(batch["image"].shape[0]) if batch["image"].ndim else 1
    stack = [batch]
    while stack:
        x = stack.pop(0)
        if isinstance(x, torch.Tensor):
            return int(x.shape[0]) if x.ndim else 1
        if isinstance(x, Mapping):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
    return 0


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _named_models(model: Any, has_loss_fn: bool) -> tuple[dict[str, nn.Module], nn.Module]:
    """``(name -> module, what the step function gets)`` for a module or a dict of modules."""
    if isinstance(model, nn.Module) and not isinstance(model, nn.ModuleDict):
        return {ck.SINGLE_MODEL_KEY: model}, model
    if not isinstance(model, (Mapping, nn.ModuleDict)):
        raise TypeError(f"model must be an nn.Module or a dict of them, got {type(model).__name__}")
    models = dict(model.items())
    if not models or not all(isinstance(m, nn.Module) for m in models.values()):
        raise TypeError("model must be an nn.Module or a non-empty dict of nn.Modules")
    if has_loss_fn:
        raise ValueError("a dict of models needs step_fn(models, batch) (loss_fn gets "
                         "model(batch), which a dict cannot compute)")
    return models, model if isinstance(model, nn.ModuleDict) else nn.ModuleDict(models)


def _amp_settings(device: torch.device, amp: bool | None, amp_dtype: str | torch.dtype
                  ) -> tuple[bool, torch.dtype, Any]:
    """``(amp, amp_dtype, GradScaler or None)``: AMP on CUDA only (None = on for CUDA), a
    GradScaler for float16."""
    is_cuda = device.type == "cuda"
    if amp is None:
        amp = is_cuda
    if amp and not is_cuda:
        raise ValueError("amp=True needs a CUDA device (AMP is only used on CUDA); pass "
                         "amp=None to switch it on automatically when training on a GPU")
    dtype = _AMP_DTYPES.get(amp_dtype, amp_dtype) if isinstance(amp_dtype, str) else amp_dtype
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"amp_dtype must be 'float16' or 'bfloat16', got {amp_dtype!r}")
    scaler = torch.amp.GradScaler("cuda") if amp and dtype == torch.float16 else None
    return bool(amp), dtype, scaler


# --------------------------------------------------------------------------------------------
# the trainer

LossFn = Callable[[Any, Any], Mapping[str, Any]]
StepFn = Callable[[nn.Module, Any], Mapping[str, Any]]


class Trainer:
    """Seeded, resumable training loop with logging, validation and best-model tracking.

    Model and loss (exactly one of `loss_fn` / `step_fn`):

    - ``loss_fn(batch, outputs) -> {"loss": tensor, <term>: tensor, ...}`` with
      ``outputs = model(batch)`` (the batch already on the device);
    - ``step_fn(model, batch) -> {"loss": ..., ...}`` does the forward pass itself (needed when
      `model` is a dict of modules; it then receives them as an ``nn.ModuleDict``). In a
      distributed or compiled run it receives a :class:`~weakhand.train.distributed.TrainView`
      per trained module: call it (``model(x)``, ``models["pose"](x)``) so that the wrapper
      runs; attributes (``model.cfg``) resolve on the module itself.

    ``"loss"`` is what gets back-propagated; every other term is only logged. Terms must be
    scalars; the names in :data:`~weakhand.train.history.RECORD_KEYS` ("lr", "step", ...) are reserved.

    One optimizer covers all trained parameters; `scheduler` (optional) is stepped after every
    update, except ``ReduceLROnPlateau`` which is stepped after each validation with
    `best_metric` (or the first metric). `grad_clip` clips the global gradient L2 norm.

    `device`: "auto" | "cpu" | "cuda[:N]" (see :func:`weakhand.device.resolve_device`; "cuda"
    without a GPU raises RuntimeError). The model(s) are moved there. `amp`: None = on for CUDA,
    off for CPU; True on CPU is an error. AMP uses ``torch.autocast`` with `amp_dtype`
    ("float16" with a GradScaler, or "bfloat16" without one).

    `val_fn() -> {metric: float}` runs every `val_every` steps and after the last step, with the
    model(s) in eval mode under ``torch.no_grad()`` (training modes restored afterwards).
    `best_metric` (a key of val_fn's dict) with `best_mode` "min"/"max" selects ``best.pt``.

    `log_every`: steps per "train" log record (values are means over those steps).
    `ckpt_every`: steps per ``last.pt`` (None: ``max(1, min(1000, max_steps // 10))``); a
    checkpoint is always written after the last step. `config`: the notebook's configuration
    (e.g. the profiles Config), stored JSON-safe in every checkpoint.

    Performance options (none changes what is computed or saved):

    - `channels_last`: model(s) and every 4D floating-point batch tensor (B,C,H,W) in
      channels_last memory format (faster convolutions on recent GPUs, esp. with AMP).
    - `compile`: ``torch.compile`` the trained module(s); True for the defaults or a dict of
      ``torch.compile`` keyword arguments (e.g. ``{"mode": "max-autotune"}``). Checkpoints
      still hold the original modules' state_dicts. The first steps pay the compile time.
    - `sync_every_step`: read the loss terms on the host (and check them for NaN/inf) every
      step (True), or keep them on the device and do that only at log / validation /
      checkpoint steps (False: no per-step host-device sync). None (default) = True on the
      CPU, where reading costs nothing, False on CUDA. With False a non-finite step is still
      reported with its own step number and no checkpoint is written after it, but the weights
      in memory have gone through the following steps up to the check.

    Distributed (see the module docstring): `find_unused_parameters` is passed to
    ``DistributedDataParallel``; leave it False unless a step leaves some trainable parameter
    without a gradient (the Trainer then stops at that step, before the update, naming the
    parameters). `ddp_kwargs`: further ``DistributedDataParallel`` arguments (e.g.
    ``{"static_graph": True}``). `shard_data`: give each rank its share of the loader (False
    when the loader already yields only this rank's data). In a distributed run every rank
    must build the same Trainer and call the same methods (``fit``, ``load_weights``), and
    step functions must return the same loss terms on every rank.
    """

    def __init__(self, model: nn.Module | Mapping[str, nn.Module], optimizer: torch.optim.Optimizer,
                 loss_fn: LossFn | None = None, *, run_dir: str | Path, max_steps: int,
                 name: str = "train", step_fn: StepFn | None = None, device: str = "auto",
                 amp: bool | None = None, amp_dtype: str | torch.dtype = "float16", seed: int = 0,
                 log_every: int = 10, val_every: int | None = None, ckpt_every: int | None = None,
                 grad_clip: float | None = None, scheduler: Any = None,
                 val_fn: Callable[[], Mapping[str, Any]] | None = None,
                 best_metric: str | None = None, best_mode: str = "min",
                 config: Mapping[str, Any] | None = None, show_progress: bool = True,
                 channels_last: bool = False, compile: bool | Mapping[str, Any] = False,
                 sync_every_step: bool | None = None, find_unused_parameters: bool = False,
                 ddp_kwargs: Mapping[str, Any] | None = None, shard_data: bool = True):
        if (loss_fn is None) == (step_fn is None):
            raise ValueError("give exactly one of loss_fn(batch, outputs) and step_fn(model, batch)")
        self.models, self.model = _named_models(model, loss_fn is not None)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.loss_fn, self.step_fn, self.val_fn = loss_fn, step_fn, val_fn
        self.name = str(name)
        self.dir = Path(run_dir) / self.name
        self.seed = int(seed)

        # cadence
        self.max_steps = int(max_steps)
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}")
        self.log_every = max(1, int(log_every))
        self.val_every = None if not val_every else int(val_every)
        self.ckpt_every = (max(1, min(1000, self.max_steps // 10)) if ckpt_every is None
                           else max(1, int(ckpt_every)))
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        if best_metric is not None and val_fn is None:
            raise ValueError("best_metric needs a val_fn that returns it")
        self.best_metric, self.best_mode = best_metric, best_mode

        # device, processes, performance
        self.device = _dist.init_distributed(resolve_device(device))
        self.rank, self.world_size = _dist.rank(), _dist.world_size()
        self.is_main = self.rank == 0
        self.channels_last = bool(channels_last)
        self.compile_options: dict[str, Any] | None = (
            dict(compile) if isinstance(compile, Mapping) else {} if compile else None)
        self.sync_every_step = (self.device.type != "cuda" if sync_every_step is None
                                else bool(sync_every_step))
        self.find_unused_parameters = bool(find_unused_parameters)
        self.ddp_kwargs = dict(ddp_kwargs or {})
        self.shard_data = bool(shard_data)
        for m in self.models.values():
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)
        self.amp, self.amp_dtype, self.scaler = _amp_settings(self.device, amp, amp_dtype)
        self._params = [p for g in optimizer.param_groups for p in g["params"]]

        self.config = jsonable(dict(config)) if config is not None else {}
        self.show_progress = bool(show_progress)
        self._train_model: nn.Module | None = None  # what step_fn / the forward gets (fit)
        self._views: list[tuple[str, _dist.TrainView]] = []  # DDP-wrapped modules
        self._rank_states: list[Any] | None = None
        self._reset_state()

    # -- paths / settings ---------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        """``<dir>/last.pt``, the latest checkpoint (no arrays)."""
        return self.dir / LAST_FILE

    @property
    def best_path(self) -> Path:
        """``<dir>/best.pt``, the checkpoint with the best validation metric (no arrays)."""
        return self.dir / BEST_FILE

    @property
    def log_path(self) -> Path:
        """``<dir>/metrics.jsonl``, the metrics log (no arrays)."""
        return self.dir / LOG_FILE

    def settings(self) -> dict[str, Any]:
        """The trainer's own settings (stored in checkpoints next to `config`), JSON-safe with
        no arrays: step counts, grad_clip (a norm), optimizer defaults, parameter counts."""
        return jsonable({
            "name": self.name, "seed": self.seed, "max_steps": self.max_steps,
            "log_every": self.log_every, "val_every": self.val_every,
            "ckpt_every": self.ckpt_every, "grad_clip": self.grad_clip, "device": str(self.device),
            "amp": self.amp, "amp_dtype": str(self.amp_dtype).replace("torch.", ""),
            "best_metric": self.best_metric, "best_mode": self.best_mode,
            "optimizer": type(self.optimizer).__name__, "optimizer_defaults": self.optimizer.defaults,
            "scheduler": None if self.scheduler is None else type(self.scheduler).__name__,
            "loss": getattr(self.loss_fn or self.step_fn, "__qualname__", repr(self.loss_fn or self.step_fn)),
            "models": {k: {"class": type(m).__name__,
                           "params": int(sum(p.numel() for p in m.parameters()))}
                       for k, m in self.models.items()},
            # only when not the default, so that older checkpoints resume without warnings
            **({"world_size": self.world_size} if self.world_size > 1 else {}),
            **({"channels_last": True} if self.channels_last else {}),
            **({"compile": self.compile_options} if self.compile_options is not None else {}),
        })

    def _reset_state(self) -> None:
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.last_train: dict[str, Any] | None = None
        self.last_val: dict[str, Any] | None = None
        self._elapsed_before = 0.0
        self._epoch_rng: dict[str, Any] | None = None
        self._acc: dict[str, float] = {}
        self._acc_steps = 0
        self._acc_images = 0
        self._terms = _dist.StepTerms()  # loss terms not yet read on the host
        self._t_fit = time.perf_counter()
        self._t_interval = self._t_fit

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._t_fit)

    # -- public API ----------------------------------------------------------------------------
    def fit(self, loader: Iterable, resume: bool | str | Path = True) -> dict[str, Any]:
        """Train until ``max_steps`` updates; returns :meth:`history`.

        `loader` is iterated epoch after epoch (a DataLoader gets ``set_loader_epoch`` each
        epoch). `resume`: True = continue from ``last.pt`` when it exists (else start fresh);
        a path = continue from that checkpoint; False = start fresh (removes this trainer's old
        ``last.pt``, ``best.pt`` and log). A fresh start seeds Python/NumPy/torch and every
        ``torch.Generator`` attached to the loader from `seed`.
        Raises :class:`NonFiniteLossError` on a NaN/inf loss term or gradient norm.
        In a distributed run every rank calls ``fit`` with its own copy of the same loader;
        the loader is sharded here (``shard_data``). The history's ``elapsed_s`` is in seconds,
        loss terms and metrics are scalars in the units `step_fn` / `val_fn` give them.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        if (isinstance(loader, DataLoader) and loader.num_workers > 0
                and loader.persistent_workers):
            warnings.warn("persistent_workers=True: the workers keep their dataset copy across "
                          "epochs, so set_epoch (augmentation) and exact resume do not reach "
                          "them; use persistent_workers=False", stacklevel=2)
        if self.world_size > 1 and self.shard_data:
            loader = _dist.shard_loader(loader, self.world_size, self.rank, seed=self.seed)
        path = None
        if isinstance(resume, (str, Path)):
            path = Path(resume)
        elif resume and self.last_path.exists():
            path = self.last_path
        path = _dist.on_main(lambda: path)  # every rank follows rank 0's decision
        it = self._restore(path, loader) if path is not None else self._fresh_start(loader)
        if self.step >= self.max_steps:
            _dist.barrier()  # rank 0 has rewritten the log
            return self.history()

        self.model.train()
        model = self._training_model()
        model.train()
        bar = progress(total=self.max_steps, initial=self.step, desc=self.name, unit="step",
                       disable=not (self.show_progress and self.is_main))
        empty_epochs = 0
        try:
            while self.step < self.max_steps:
                if it is None:
                    it = self._open_epoch(loader)
                try:
                    batch = next(it)
                except StopIteration:
                    empty_epochs = empty_epochs + 1 if self.batch_in_epoch == 0 else 0
                    if empty_epochs > 1:
                        raise ValueError("the training loader yielded no batches") from None
                    it, self.epoch, self.batch_in_epoch = None, self.epoch + 1, 0
                    continue
                values = self._train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                bar.update(1)
                final = self.step >= self.max_steps
                log_now = final or self.step % self.log_every == 0
                val_now = self.val_fn is not None and (final or bool(
                    self.val_every and self.step % self.val_every == 0))
                ckpt_now = final or self.step % self.ckpt_every == 0
                if self._terms.pending and (log_now or val_now or ckpt_now):
                    values = self._flush()
                if values is not None:
                    bar.set_postfix({"loss": _fmt(values["loss"]), "epoch": self.epoch},
                                    refresh=False)
                if log_now:
                    self._log_train()
                targets = []
                if val_now and self._validate():
                    targets.append(self.best_path)
                if ckpt_now:
                    targets.append(self.last_path)
                if targets:
                    self._save(targets)
        finally:
            bar.close()
        _dist.barrier()  # (the final checkpoint write already synchronised the ranks)
        return self.history()

    def history(self) -> dict[str, Any]:
        """This trainer's metrics log as lists (see :func:`read_history`; ``elapsed_s`` in
        seconds)."""
        return read_history(self.log_path)

    def loss_figure(self, title: str | None = None, log_y: bool = False):
        """:func:`loss_figure` of :meth:`history` (x: optimizer step; y: each scalar loss term)."""
        return loss_figure(self.history(), title=title or self.name, log_y=log_y)

    def load_weights(self, which: str | Path = "best", strict: bool = True) -> dict[str, Any]:
        """Load the weights of "best", "last" or a checkpoint path into the model(s).

        Returns the checkpoint's info (:func:`~weakhand.train.checkpoint.checkpoint_info`;
        ``elapsed_s`` in seconds). Stored tensors must match the models' shapes (...).
        """
        path = {"best": self.best_path, "last": self.last_path}.get(str(which), Path(which))
        _dist.barrier()  # never read a checkpoint that rank 0 may still be writing
        return ck.load_checkpoint(path, self.models, strict=strict)

    # -- start / resume ------------------------------------------------------------------------
    def _fresh_start(self, loader: Iterable) -> None:
        self._reset_state()
        if self.is_main:
            for p in (self.last_path, self.best_path, self.log_path):
                p.unlink(missing_ok=True)
        seed_everything(_resume.rank_seed(self.seed, self.rank))
        _resume.seed_loader(loader, self.seed)
        self._append({"kind": "start", "step": 0, "time": time.time()})
        return None

    def _restore(self, path: Path, loader: Iterable) -> Iterator | None:
        ckpt = ck.read_checkpoint(path)
        ck._load_models(ckpt, self.models, path, strict=True)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            # a changed length (finished run extended) rebuilds the schedule: see restore_scheduler
            rebuilt = ck.restore_scheduler(self.scheduler, ckpt.get("scheduler"), int(ckpt["step"]))
            if self.scaler is not None and ckpt.get("scaler") is not None:
                self.scaler.load_state_dict(ckpt["scaler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ck.CheckpointError(f"checkpoint {path}: optimizer/scheduler state does not fit "
                                     f"this trainer: {exc}", path) from exc
        if rebuilt and self.is_main:
            warnings.warn(f"resuming {path}: {rebuilt}", stacklevel=3)
        if self.is_main:
            self._warn_config_changes(ckpt, path)
        self._reset_state()
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        best = ckpt.get("best") or {}
        if best.get("metric") == self.best_metric and best.get("mode") == self.best_mode:
            self.best_value, self.best_step = best.get("value"), best.get("step")
        metrics = ckpt.get("metrics") or {}
        self.last_train, self.last_val = metrics.get("train"), metrics.get("val")
        self._elapsed_before = float(ckpt.get("elapsed_s") or 0.0)
        acc = ckpt.get("log_acc") or {}
        self._acc = dict(acc.get("sums", {}))
        self._acc_steps, self._acc_images = int(acc.get("steps", 0)), int(acc.get("images", 0))

        # the log keeps what the checkpoint has seen; later records belong to the lost work
        if self.is_main:
            kept = [r for r in read_records(self.log_path) if int(r.get("step", 0)) <= self.step]
            atomic_write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in kept))
            self._append({"kind": "resume", "step": self.step, "time": time.time(),
                          "resumed_from": str(path)})

        # this rank's RNG states (a checkpoint of a distributed run holds every rank's; else
        # rank 0's = the single-process ones)
        ranks = ckpt.get("ranks")
        mine = ranks[self.rank] if isinstance(ranks, list) and len(ranks) == self.world_size else None
        it = None
        if self.step < self.max_steps:
            # re-open the epoch under its starting RNG states and skip what was consumed
            self._epoch_rng = mine["epoch_rng"] if mine else ckpt["epoch_rng"]
            _resume.apply_epoch_rng(self._epoch_rng, loader)
            it = self._open_epoch(loader, capture=False)
            if not _resume.skip_batches(it, loader, self.batch_in_epoch):
                warnings.warn(f"the loader has fewer than {self.batch_in_epoch} batches per "
                              f"epoch now (checkpoint {path}); continuing with the next epoch",
                              stacklevel=3)
                it, self.epoch, self.batch_in_epoch = None, self.epoch + 1, 0
        ck.set_rng_state(mine["rng"] if mine else ckpt["rng"])
        self._t_fit = self._t_interval = time.perf_counter()
        return it

    def _warn_config_changes(self, ckpt: Mapping[str, Any], path: Path) -> None:
        cadence = {"max_steps", "log_every", "val_every", "ckpt_every", "device", "loss",
                   "channels_last", "compile"}
        old, new = ckpt.get("trainer", {}), self.settings()
        changed = sorted(k for k in set(old) | set(new) if k not in cadence and old.get(k) != new.get(k))
        old_c = ckpt.get("config", {})
        changed += sorted(f"config.{k}" for k in set(old_c) | set(self.config)
                          if old_c.get(k) != self.config.get(k))
        if changed:
            warnings.warn(f"resuming from {path} with changed settings: {', '.join(changed)}",
                          stacklevel=4)

    def _open_epoch(self, loader: Iterable, capture: bool = True) -> Iterator:
        if capture:  # the RNG states an exact resume of this epoch starts from
            self._epoch_rng = _resume.epoch_rng_state(loader)
        return _resume.open_epoch(loader, self.epoch)

    # -- one update ----------------------------------------------------------------------------
    def _training_model(self) -> nn.Module:
        """What the forward pass calls: `self.model` itself in a plain single-process run,
        else its DDP / compiled views (:func:`~weakhand.train.distributed.wrap_for_training`,
        created once, on first use)."""
        if self._train_model is None:
            self._train_model, self._views = _dist.wrap_for_training(
                self.models, self.model, self.device, compile_options=self.compile_options,
                find_unused_parameters=self.find_unused_parameters, ddp_kwargs=self.ddp_kwargs)
        return self._train_model

    def _forward(self, batch: Any) -> Mapping[str, Any]:
        model = self._training_model()
        if self.step_fn is not None:
            return self.step_fn(model, batch)
        return self.loss_fn(batch, model(batch))

    def _train_step(self, batch: Any) -> dict[str, float] | None:
        """One update; returns the loss terms as floats (averaged over the ranks), or None when
        their reading is deferred (``sync_every_step=False``)."""
        n_images = _batch_size(batch)
        batch = to_device(batch, self.device, non_blocking=self.device.type == "cuda")
        if self.channels_last:
            batch = _channels_last(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.amp:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                losses = self._forward(batch)
        else:
            losses = self._forward(batch)
        terms = self._check_terms(losses)
        loss = terms["loss"]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        if self._views:
            _dist.check_ddp_grads(self._views, self.step + 1, self.find_unused_parameters)

        grad_norm = None
        if self.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        elif self.scaler is None:
            grads = [p.grad for p in self._params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None

        names, has_gn, row = _dist.StepTerms.row(terms, grad_norm, loss.device)
        self._acc_images += n_images
        values = None
        if self.sync_every_step:  # one host sync per step, before the update
            values = self._terms.read(names, has_gn, row, step=self.step + 1)
            bad = self._bad_terms(values, has_gn)
            if bad:  # before the update: the weights stay as they were after the previous step
                self._fail(bad, values, step=self.step + 1, epoch=self.epoch,
                           batch=self.batch_in_epoch + 1)
        else:
            self._terms.defer(names, has_gn, row, self.step + 1, self.epoch, self.batch_in_epoch + 1)

        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None and not isinstance(
                self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        if values is not None:
            self._accumulate(values)
        return values

    def _bad_terms(self, values: dict[str, float], has_gn: bool) -> list[str]:
        bad = [k for k, v in values.items() if k != "grad_norm" and not math.isfinite(v)]
        # with a GradScaler inf/NaN gradients are expected now and then: it skips the step
        if has_gn and not bad and self.scaler is None and not math.isfinite(values["grad_norm"]):
            bad = ["grad_norm"]
        return bad

    def _accumulate(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self._acc[k] = self._acc.get(k, 0.0) + v
        self._acc_steps += 1

    def _flush(self) -> dict[str, float] | None:
        """Read, check and log-accumulate the deferred steps (one host sync); returns the
        last step's values. A non-finite step raises NonFiniteLossError naming that step."""
        values = None
        for values, has_gn, step, epoch, batch in self._terms.flush(step=self.step + 1):
            bad = self._bad_terms(values, has_gn)
            if bad:
                self._fail(bad, values, step=step, epoch=epoch, batch=batch, detected_at=self.step)
            self._accumulate(values)
        return values

    def _check_terms(self, losses: Any) -> dict[str, torch.Tensor]:
        if not isinstance(losses, Mapping) or "loss" not in losses:
            raise TypeError("the loss function must return a dict of scalar tensors with a "
                            f"'loss' entry, got {type(losses).__name__}"
                            + (f" with keys {list(losses)}" if isinstance(losses, Mapping) else ""))
        terms: dict[str, torch.Tensor] = {}
        for k, v in losses.items():
            if k in RECORD_KEYS:
                raise ValueError(f"loss term name {k!r} is reserved (reserved: {sorted(RECORD_KEYS)})")
            t = v if isinstance(v, torch.Tensor) else torch.as_tensor(float(v))
            if t.numel() != 1:
                raise ValueError(f"loss term {k!r} must be a scalar, got shape {tuple(t.shape)}")
            terms[str(k)] = t
        if not terms["loss"].requires_grad:
            raise ValueError("the 'loss' term does not require grad (was it computed under "
                             "torch.no_grad() or from detached tensors?)")
        return terms

    def _fail(self, bad: list[str], values: dict[str, float], step: int, batch: int,
              epoch: int | None = None, detected_at: int | None = None) -> None:
        """Log and raise NonFiniteLossError for `step` (nothing is written but the log line).

        `detected_at`: the step at which a deferred check (``sync_every_step=False``) found it.
        """
        epoch = self.epoch if epoch is None else epoch
        good = self.last_path if self.last_path.exists() else None
        what = ("gradient norm" if bad == ["grad_norm"] else
                "weights" if all(b.startswith("weight:") for b in bad) else "loss")
        shown = ", ".join(f"{k}={values[k]}" if k in values else k for k in bad)
        finite = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items() if math.isfinite(v))
        late = ""
        if detected_at is not None and detected_at != step:
            late = (f" Found at step {detected_at} (sync_every_step=False checks at log/"
                    f"validation/checkpoint steps): the weights in memory went through steps "
                    f"{step}..{detected_at}.")
        msg = (f"non-finite {what} at step {step} (epoch {epoch}, batch {batch} of the "
               f"epoch) in trainer {self.name!r}: {shown}"
               + (f"; finite: {finite}" if finite else "") + ". Training stopped; "
               + (f"the last good checkpoint {good} (step {self._checkpoint_step(good)}) was "
                  "left untouched." if good else "no checkpoint had been written yet.")
               + late
               + " Check the batch data, the learning rate and the loss (log/sqrt/division "
                 "at 0?).")
        self._append({"kind": "error", "step": step, "epoch": epoch, "time": time.time(),
                      "terms": bad, "message": msg})
        raise NonFiniteLossError(msg, step=step, epoch=epoch, terms=bad, values=values,
                                 checkpoint=good)

    @staticmethod
    def _checkpoint_step(path: Path) -> Any:
        try:
            return ck.checkpoint_info(path)["step"]
        except ck.CheckpointError:
            return "?"

    # -- logging / validation ------------------------------------------------------------------
    def _append(self, rec: Mapping[str, Any]) -> None:
        if self.is_main:  # one log per run: rank 0's
            append_record(self.log_path, rec)

    def _log_train(self) -> None:
        if not self._acc_steps:
            return
        images = _dist.sum_over_ranks(self._acc_images, self.device)  # all ranks together
        now = time.perf_counter()
        dt = max(now - self._t_interval, 1e-9)
        rec: dict[str, Any] = {
            "kind": "train", "step": self.step, "epoch": self.epoch, "time": time.time(),
            "elapsed_s": round(self._elapsed(), 3), "images_per_s": images / dt,
            "lr": float(self.optimizer.param_groups[0]["lr"]), "steps": self._acc_steps,
        }
        rec.update({k: v / self._acc_steps for k, v in self._acc.items()})
        self._append(rec)
        self.last_train = rec
        self._acc, self._acc_steps, self._acc_images = {}, 0, 0
        self._t_interval = now

    def _validate(self) -> bool:
        """Run val_fn (on rank 0; the other ranks receive its metrics), log it; True when
        `best_metric` improved."""
        def run() -> tuple[dict[str, float], dict[str, Any]]:
            modes = [(m, m.training) for m in self.model.modules()]
            self.model.eval()
            t0 = time.perf_counter()
            try:
                with torch.no_grad():
                    raw = self.val_fn()
            finally:
                for m, mode in modes:
                    m.training = mode
            if not isinstance(raw, Mapping):
                raise TypeError(f"val_fn must return a dict of floats, got {type(raw).__name__}")
            metrics = {}
            for k, v in raw.items():
                if k in RECORD_KEYS:
                    raise ValueError(f"validation metric name {k!r} is reserved")
                metrics[str(k)] = float(v.item() if isinstance(v, torch.Tensor) else v)
            rec = {"kind": "val", "step": self.step, "epoch": self.epoch, "time": time.time(),
                   "elapsed_s": round(self._elapsed(), 3), "val_s": time.perf_counter() - t0,
                   **metrics}
            self._append(rec)
            return metrics, rec

        metrics, rec = _dist.on_main(run)
        self.last_val = rec

        key = self.best_metric
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and metrics:
            self.scheduler.step(metrics[key] if key in metrics else next(iter(metrics.values())))
        if key is None:
            return False
        if key not in metrics:
            raise KeyError(f"best_metric {key!r} is not among val_fn's metrics {list(metrics)}")
        value = metrics[key]
        if not math.isfinite(value):
            return False
        better = (self.best_value is None or
                  (value < self.best_value if self.best_mode == "min" else value > self.best_value))
        if better:
            self.best_value, self.best_step = value, self.step
        return better

    # -- checkpoints ---------------------------------------------------------------------------
    def _save(self, paths: list[Path]) -> None:
        """Write the checkpoint to `paths` (rank 0; every rank returns once it is written)."""
        self._rank_states = None
        if self.world_size > 1:  # every rank's RNG states, for an exact resume of each
            self._rank_states = _dist.gather_from_ranks({"rng": ck.rng_state(),
                                                         "epoch_rng": self._epoch_rng})

        def write() -> list[str]:
            bad = self._nonfinite_weights()
            if not bad:  # never write NaN weights over a good checkpoint
                ck.write_checkpoint(self.state_dict(), paths)
            return bad

        try:
            bad = _dist.on_main(write)
        finally:
            self._rank_states = None
        if bad:
            self._fail(bad, {}, step=self.step, batch=self.batch_in_epoch)

    def _nonfinite_weights(self) -> list[str]:
        """Names ("weight:<model>.<key>") of floating-point state entries holding NaN/inf
        (one host sync)."""
        names, flags = [], []
        for name, m in self.models.items():
            for k, v in m.state_dict().items():
                if isinstance(v, torch.Tensor) and v.is_floating_point():
                    names.append(f"weight:{name}.{k}")
                    flags.append(torch.isfinite(v).all().to(self.device))
        if not flags:
            return []
        ok = torch.stack(flags).tolist()
        return [n for n, good in zip(names, ok) if not good]

    def state_dict(self) -> dict[str, Any]:
        """The full checkpoint dict (what ``last.pt`` holds): state dicts (tensors in their
        parameters' shapes (...)), RNG states, config, metrics, ``elapsed_s`` in seconds."""
        return {
            "format": ck.FORMAT, "version": ck.VERSION, "name": self.name,
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "model_specs": {k: describe_model(m) for k, m in self.models.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": ck.rng_state(),
            "epoch_rng": self._epoch_rng,
            "config": self.config,
            "trainer": self.settings(),
            "metrics": {"train": self.last_train, "val": self.last_val},
            "best": {"metric": self.best_metric, "mode": self.best_mode,
                     "value": self.best_value, "step": self.best_step},
            "log_acc": {"sums": dict(self._acc), "steps": self._acc_steps,
                        "images": self._acc_images},
            **({"ranks": self._rank_states} if self._rank_states is not None else {}),
            "elapsed_s": self._elapsed(),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"weakhand": __version__, "torch": torch.__version__},
        }

    def __repr__(self) -> str:
        return (f"Trainer({self.name!r}, dir={str(self.dir)!r}, step={self.step}/{self.max_steps}, "
                f"device={str(self.device)!r}, amp={self.amp})")
