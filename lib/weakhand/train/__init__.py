"""Training engine shared by the training notebooks (one loop, no per-notebook copies).

::

    from weakhand.train import Trainer, checkpoint_info, load_checkpoint
    trainer = Trainer(model, optimizer, loss_fn, run_dir=cfg.run_dir, name="hand2d",
                      max_steps=cfg.max_steps, device=cfg.device, seed=cfg.seed, config=cfg)
    history = trainer.fit(train_loader, resume=True)
    trainer.loss_figure()

See :mod:`weakhand.train.engine` (the loop), :mod:`weakhand.train.distributed` (several
processes: ``torchrun`` / ``weakhand run --nproc``; DDP, reading the loss terms on the host),
:mod:`weakhand.train.resume` (RNG states and data position of an exact resume),
:mod:`weakhand.train.history` (the metrics log) and :mod:`weakhand.train.checkpoint` (file
format, loading helpers).

Importing this package changes nothing (no device is selected): inside a ``torchrun`` process,
resolving the notebook's CUDA device (:func:`weakhand.device.resolve_device`, called by
:func:`weakhand.workbook.profiles.resolve` and by the Trainer) selects the process's GPU.
"""
from . import distributed
from .checkpoint import (CheckpointError, CheckpointNotFoundError, checkpoint_info,
                         load_checkpoint, read_checkpoint)
from .distributed import is_main_process, rank0_first
from .engine import BEST_FILE, LAST_FILE, NonFiniteLossError, Trainer, to_device
from .history import LOG_FILE, loss_figure, read_history
from .resume import seed_everything

__all__ = ["Trainer", "NonFiniteLossError", "CheckpointError", "CheckpointNotFoundError",
           "checkpoint_info", "load_checkpoint", "read_checkpoint", "read_history", "loss_figure",
           "seed_everything", "to_device", "is_main_process", "rank0_first", "distributed",
           "LOG_FILE", "LAST_FILE", "BEST_FILE"]
