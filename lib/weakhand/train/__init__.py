"""Training engine shared by the training notebooks (one loop, no per-notebook copies).

::

    from weakhand.train import Trainer, checkpoint_info, load_checkpoint
    trainer = Trainer(model, optimizer, loss_fn, run_dir=cfg.run_dir, name="hand2d",
                      max_steps=cfg.max_steps, device=cfg.device, seed=cfg.seed, config=cfg)
    history = trainer.fit(train_loader, resume=True)
    trainer.loss_figure()

See :mod:`weakhand.train.engine` (loop, logging, exact resume),
:mod:`weakhand.train.checkpoint` (file format, loading helpers) and
:mod:`weakhand.train.distributed` (several processes: ``torchrun`` / ``weakhand run --nproc``).

Importing this package inside a ``torchrun`` process on a CUDA machine selects the process's
GPU (``torch.cuda.set_device(LOCAL_RANK)``), so that ``"cuda"`` means that GPU in the whole
notebook, also for tensors created before the Trainer.
"""
from . import distributed
from .checkpoint import (CheckpointError, CheckpointNotFoundError, checkpoint_info,
                         load_checkpoint, read_checkpoint)
from .distributed import is_main_process, rank0_first
from .engine import (BEST_FILE, LAST_FILE, LOG_FILE, NonFiniteLossError, Trainer, loss_figure,
                     read_history, seed_everything, to_device)

distributed.pin_cuda_device_from_env()

__all__ = ["Trainer", "NonFiniteLossError", "CheckpointError", "CheckpointNotFoundError",
           "checkpoint_info", "load_checkpoint", "read_checkpoint", "read_history", "loss_figure",
           "seed_everything", "to_device", "is_main_process", "rank0_first", "distributed",
           "LOG_FILE", "LAST_FILE", "BEST_FILE"]
