"""Trained variants of a run folder: discovery, loading and prediction on a test split.

A *variant* is one trained pose model: family ``"cai"`` (notebooks 20/50: heatmaps + depth
regression, evaluated with the ground-truth root depth and scale) or ``"pose25d"`` (notebook 60:
2.5D with a recovered root), stage-3 variant name (``"2d"``, ``"2d_depth"``, ...; ``"source"``
for the stage-1 source-only model) and seed (0 for the default run; ``weakhand ablate --seeds``
adds ``<dir>_seed<k>`` repeats that share stages 1-2).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..naming import split_seeded_name
from ..methods import cai, spurr_bmc
from ..models.registry import POSE_FAMILIES, build_model
from ..train.checkpoint import CheckpointError, checkpoint_info

FAMILIES = ("cai", "pose25d")
FAMILY_LABELS = {"cai": "Cai (GT root)", "pose25d": "2.5D"}
#: table order: the ablation ladder from source-only to the full-3D upper bound
ROW_ORDER = ("constant", "source", "2d", "2d_depth", "2d_depth_hand", "2d_bmc", "2d_bmc_pinned", "2d_depth_bmc",
             "2d_direct", "2d_direct_bmc", "2d_teacher", "full3d")
ROW_LABELS = {
    "constant": "constant pose (source mean hand: learned nothing)",
    "source": "source only",
    "2d": "+ target 2D",
    "2d_depth": "+ target 2D + depth regularizer (Cai et al.)",
    "2d_depth_hand": "+ target 2D + depth regularizer, hand pixels only",
    "2d_bmc": "+ target 2D + BMC (Spurr et al.)",
    "2d_bmc_pinned": "+ target 2D + BMC + drift guard",
    "2d_depth_bmc": "+ target 2D + depth reg. + BMC + drift guard",
    "2d_direct": "+ target 2D + direct depth",
    "2d_direct_bmc": "+ target 2D + direct depth + BMC + drift guard",
    "2d_teacher": "+ target 2D + depth-teacher pseudo-labels",
    "full3d": "full 3D on target (upper bound)",
}
#: folder of the source-only (stage-1) model and prefix of the stage-3 folders, per family
_STAGE1 = {"cai": "stage1_pose/best.pt", "pose25d": "pose25d_stage1/best.pt"}
_PREFIX = {"cai": "stage3_", "pose25d": "pose25d_"}


@dataclass(frozen=True)
class TrainedVariant:
    """One trained model of the study: its family, variant, stage-3 seed and checkpoint path
    (no arrays)."""
    family: str        # "cai" | "pose25d"
    variant: str       # a key of ROW_LABELS
    seed: int          # stage-3 seed (the source-only model: its stage-1 run, seed 0)
    checkpoint: Path

    @property
    def key(self) -> str:
        """``"family/variant"`` (no arrays)."""
        return f"{self.family}/{self.variant}"

    @property
    def label(self) -> str:
        """Display label "family label: row label" (no arrays)."""
        return f"{FAMILY_LABELS[self.family]}: {ROW_LABELS[self.variant]}"


def _known_variants(family: str) -> set[str]:
    return set(_method(family).VARIANTS)


def discover(run_dir: str | os.PathLike, families: Iterable[str] = FAMILIES,
             seeds: Iterable[int] | None = None) -> list[TrainedVariant]:
    """Every trained variant in `run_dir`, sorted by family, ROW_ORDER, seed.

    Stage-3 models are the ``last.pt`` of ``stage3_<variant>[_seed<k>]`` /
    ``pose25d_<variant>[_seed<k>]`` (stage 3 has no validation split); source-only models the
    stage-1 ``best.pt``. `seeds` keeps only those stage-3 seeds (None: all found). No arrays.
    """
    run = Path(run_dir)
    keep = None if seeds is None else {int(s) for s in seeds}
    found: list[TrainedVariant] = []
    for fam in families:
        if fam not in FAMILIES:
            raise ValueError(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}")
        s1 = run / _STAGE1[fam]
        if s1.is_file():
            found.append(TrainedVariant(fam, "source", 0, s1))
        known = _known_variants(fam)
        for d in sorted(run.glob(f"{_PREFIX[fam]}*")):
            base, seed = split_seeded_name(d.name)
            variant = base[len(_PREFIX[fam]):]
            if variant in known and (d / "last.pt").is_file() and (keep is None or seed in keep):
                found.append(TrainedVariant(fam, variant, seed, d / "last.pt"))
    return sorted(found, key=lambda v: (FAMILIES.index(v.family), ROW_ORDER.index(v.variant), v.seed))


def _method(family: str):
    """The method module of a model family (its ``VARIANTS`` table and ``predict``)."""
    return cai if family == "cai" else spurr_bmc


def load_model(tv: TrainedVariant, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on `device`, checkpoint info), the model rebuilt by
    :func:`weakhand.models.registry.build_model` (the pose network of a stage-3 run that also
    trained its regulariser). The info's ``config["train_size"]`` is the crop size (px) the
    model expects. CheckpointError when the checkpoint holds a model of another family."""
    info = checkpoint_info(tv.checkpoint)
    model = build_model(tv.checkpoint, device=device)
    if POSE_FAMILIES.get(type(model).__name__) != tv.family:
        raise CheckpointError(f"{tv.checkpoint} holds a {type(model).__name__}, not a model of the "
                              f"{tv.family!r} family", tv.checkpoint)
    return model, info


def train_size(info: dict) -> int:
    """The square input crop side in px the checkpoint's model was trained at
    (``info["config"]["train_size"]``); CheckpointError when it is missing."""
    size = info["config"].get("train_size")
    if not size:
        raise CheckpointError(f"{info.get('path')}: checkpoint config has no train_size", info.get("path"))
    return int(size)


_PRED_KEYS = ("kp2d", "kp3d", "vis", "K", "has_3d")


@torch.no_grad()
def predict(tv: TrainedVariant, model: torch.nn.Module, loader, device: str = "cpu") -> dict:
    """Predictions of one variant over a loader of :class:`~weakhand.data.HandDataset` batches:
    numpy ``uv`` (N,21,2) input px, ``zn`` (N,21) root-relative depth / scale bone, for 2.5D
    also ``z_root`` / ``z_root_closed`` (N,) in scale-bone units, plus the labels
    (kp2d, kp3d mm, vis, K of the crop, has_3d) and ``index`` (N,) dataset indices."""
    p = _method(tv.family).predict(model, loader, device)
    p["index"] = np.arange(len(p["uv"]))
    return p
