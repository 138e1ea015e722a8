"""What every method module shares: the :class:`Stage` that ``build`` returns, the
:class:`Variant` rows of each ``VARIANTS`` table, and the per-joint label masks of a batch."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.torch_data import to_device
from ..models import root_relative_depth

#: target training sets a variant can fine-tune on (the notebooks build one loader per name)
TARGETS = ("weak", "teacher", "full3d", "source")
#: weak signals that read the target's sensor depth map
DEPTH_SIGNALS = frozenset({"regularizer", "direct", "direct_root"})


@dataclass(frozen=True)
class Variant:
    """One row of a method's ``VARIANTS`` table.

    description: one line for tables and metrics files; signals: names of the weak signals the
    variant adds on target samples (:mod:`weakhand.methods.weak_signals`: "regularizer", "bmc",
    "direct", "drift"); target: the target training set (no arrays; ("weak": 2D + sensor depth, "teacher":
    the depth teacher's pseudo-3D labels, "full3d": full 3D labels, the upper bound; "source":
    no target set, trained on the source's full labels))."""
    description: str
    signals: tuple[str, ...] = ()
    target: str = "weak"

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")

    @property
    def target_labels(self) -> tuple[str, ...]:
        """Labels the variant needs on the target's training split, among "2d", "depth", "3d"
        (none for "source"): every target variant reads the 2D; the depth signals and the
        teacher's pseudo-labels (predicted from the depth maps) read depth; only "full3d" reads 3D
        (no arrays)."""
        if self.target == "source":
            return ()
        need = ["2d"]
        if self.target == "teacher" or DEPTH_SIGNALS & set(self.signals):
            need.append("depth")
        if self.target == "full3d":
            need.append("3d")
        return tuple(need)


@dataclass
class Stage:
    """A built training stage, the same shape for every method.

    models: what the Trainer trains and checkpoints (one module, or a dict of named modules);
    optimizer; step: ``step(models, batch) -> dict`` of loss terms with a scalar ``"loss"``;
    model: the pose model to predict with (``predict(model, loader, device)``); scheduler: an LR
    scheduler or None (the notebooks attach theirs); options: the method's knobs as used (for
    the checkpoint's config)."""
    models: nn.Module | dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    step: Callable[[Any, dict], dict]
    model: nn.Module
    scheduler: Any = None
    options: Any = None


def loss_terms(stage: Stage, batch: dict, device: str = "cpu") -> dict[str, float]:
    """What a stage optimises, read on one batch: its ``step`` in training mode without
    gradients or an optimizer step, {term: value} as Python floats (no arrays; ``"loss"`` the
    weighted total; each term unitless or in its own unit, see the method's ``losses``). Read-only for the caller: the models' weights are untouched and the global torch
    RNG state is restored afterwards (dropout draws do not shift later numbers); BatchNorm running
    statistics of `stage`'s models do move, so use a freshly built stage."""
    models = stage.models if isinstance(stage.models, dict) else {"model": stage.models}
    dev = torch.device(device)
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        for m in models.values():
            m.to(device).train()
        terms = stage.step(stage.models, to_device(batch, device))
    return {k: float(v) for k, v in terms.items()}


def joint_labels(batch: dict) -> dict:
    """Per-joint supervision masks and targets from a HandDataset batch.

    2D: joints with a finite label inside the crop, in samples with has_2d (occluded joints are
    labelled too: CPM-style training supervises them). Depth: zn of samples with has_3d.

    batch: ``kp2d`` (B, 21, 2) px (NaN: unlabelled), ``has_2d``/``has_3d`` (B,), ``kp3d``
    (B, 21, 3) mm camera frame, optional ``in_crop`` (B, 21). Returns {"valid2d": (B, 21) bool,
    "zn": (B, 21) root-relative depth in scale-bone units (NaN without 3D), "has_3d": (B,) bool}.
    """
    kp2d = batch["kp2d"]
    valid2d = (batch["has_2d"].bool()[:, None] & torch.isfinite(kp2d).all(-1)
               & batch.get("in_crop", torch.ones_like(kp2d[..., 0], dtype=torch.bool)).bool())
    has3 = batch["has_3d"].bool()
    zn = root_relative_depth(batch["kp3d"])  # NaN for samples without 3D (masked below)
    zn = torch.where(has3[:, None], zn, torch.full_like(zn, float("nan")))
    return {"valid2d": valid2d, "zn": zn, "has_3d": has3}
