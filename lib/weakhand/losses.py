"""Loss terms with per-sample label masks (weak supervision: each term only sees the samples
that carry its label), and the Cai et al. (ECCV 2018) combination.

Every term returns a scalar that is exactly 0 — with a finite, zero gradient — when no sample
in the batch carries its label, so a mixed batch never produces NaN from an empty mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the entries where `mask` (broadcastable, bool or 0/1) is set;
    0 if none is. NaN/inf in masked-out entries never propagate (also not into gradients)."""
    mask = mask.to(torch.bool).expand_as(values)
    safe = torch.where(mask, values, torch.zeros_like(values))
    n = mask.sum()
    return safe.sum() / n.clamp(min=1).to(values.dtype)


def heatmap_loss(pred: torch.Tensor | list[torch.Tensor], target: torch.Tensor,
                 joint_valid: torch.Tensor) -> torch.Tensor:
    """Heatmap MSE, summed over stages (intermediate supervision).

    pred: (B,K,h,w) or a list of them (one per stage); target: (B,K,h,w) Gaussian maps;
    joint_valid: (B,K) bool — samples without 2D labels (has_2d False) or joints without a label
    must be False. Per stage: mean squared error over pixels, averaged over valid (sample, joint).
    """
    preds = pred if isinstance(pred, (list, tuple)) else [pred]
    total = target.new_zeros(())
    for p in preds:
        per_joint = ((p.float() - target.float()) ** 2).mean(dim=(-2, -1))  # (B,K)
        total = total + masked_mean(per_joint, joint_valid)
    return total


def depth_loss(zn_pred: torch.Tensor, zn_gt: torch.Tensor, has_3d: torch.Tensor,
               beta: float = 1.0) -> torch.Tensor:
    """Smooth-L1 on root-relative scale-normalised joint depth (B,K), only for samples with a
    3D label and joints whose target is finite."""
    valid = has_3d.to(torch.bool)[:, None] & torch.isfinite(zn_gt)
    gt = torch.where(valid, zn_gt, torch.zeros_like(zn_gt))
    return masked_mean(F.smooth_l1_loss(zn_pred.float(), gt.float(), reduction="none", beta=beta),
                       valid)


def coord_loss(uv_pred: torch.Tensor, uv_gt: torch.Tensor, joint_valid: torch.Tensor,
               cell_px: float, beta: float = 1.0) -> torch.Tensor:
    """Smooth-L1 between the soft-argmax readout and the labelled 2D (integral regression, Sun
    et al. 2018), in heatmap cells: uv_pred, uv_gt (B,K,2) input px; cell_px input px per cell;
    joint_valid (B,K) bool. Averaged over valid (sample, joint, axis). A heatmap MSE alone only
    rewards the blob's shape; this term rewards where its expectation lands."""
    valid = joint_valid.to(torch.bool)[..., None] & torch.isfinite(uv_gt)
    gt = torch.where(valid, uv_gt, torch.zeros_like(uv_gt))
    d = F.smooth_l1_loss(uv_pred.float() / cell_px, gt.float() / cell_px, reduction="none", beta=beta)
    return masked_mean(d, valid)


def depth_map_loss(map_pred: torch.Tensor, map_gt: torch.Tensor, has_depth: torch.Tensor,
                   pixel_valid: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between predicted and target normalised depth maps (B,1,S,S), only for samples with a
    depth label; `pixel_valid` (B,1,S,S) excludes sensor holes inside the hand."""
    valid = has_depth.to(torch.bool)[:, None, None, None].expand_as(map_gt)
    if pixel_valid is not None:
        valid = valid & pixel_valid.to(torch.bool)
    return masked_mean((map_pred.float() - map_gt.float()).abs(), valid)


@dataclass
class CaiWeights:
    """L = λ2D·L2D + λz·Lz + λdep·Ldep (+ λuv·Luv); unitless weights, defaults are the paper's
    (1, 0.1, 1), and λuv = 0: the coordinate term (:func:`coord_loss`) is this project's option,
    not Cai's."""
    heatmap: float = 1.0
    depth: float = 0.1
    depth_map: float = 1.0
    coord: float = 0.0


def cai_loss(terms: dict[str, torch.Tensor], weights: CaiWeights = CaiWeights()) -> dict:
    """Combine available scalar terms {"heatmap", "depth", "depth_map", "coord"} into
    {"loss", **terms}: ``loss`` the weighted scalar sum (keeps the graph), the terms detached
    (all unitless)."""
    w = {"heatmap": weights.heatmap, "depth": weights.depth, "depth_map": weights.depth_map,
         "coord": weights.coord}
    unknown = set(terms) - set(w)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; known: {sorted(w)}")
    loss = sum(w[k] * v for k, v in terms.items())
    return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}
