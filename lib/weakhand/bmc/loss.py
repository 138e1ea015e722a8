"""The BMC loss L_BMC = λ_BL·L_BL + λ_RB·L_RB + λ_A·L_A and per-constraint violation rates.

Predicted poses are brought to the limits' frame first (left hands mirrored, root-relative,
scale bone = 1; :func:`weakhand.bmc.geometry.canonical_pose`), so the limits never impose an
absolute scale. Every term is a soft penalty that is exactly 0 inside the limits.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..models.root_depth import ROOT_CLAMP, reconstruct_25d, root_depth_closed_form
from .geometry import bmc_features
from .hull import hull_distance
from .limits import BMCLimits

TERMS = ("bone_length", "curvature", "angular_distance", "angles")


@dataclass(frozen=True)
class BMCWeights:
    """λ_BL (bone lengths), λ_RB (root bones: curvature + angular distance), λ_A (joint angles):
    unitless weights of :func:`bmc_loss`."""
    bone_length: float = 1.0
    root_bones: float = 1.0
    angles: float = 1.0

    def to_dict(self) -> dict:
        """The three weights as a plain dict of floats (unitless)."""
        return asdict(self)


def interval_penalty(x: torch.Tensor, lo_hi: torch.Tensor) -> torch.Tensor:
    """I(x; a, b) = max(a − x, 0) + max(x − b, 0), elementwise; lo_hi (..., 2) broadcast to x."""
    return torch.relu(lo_hi[..., 0] - x) + torch.relu(x - lo_hi[..., 1])


def bmc_penalties(kp3d: torch.Tensor, limits: BMCLimits, is_left: Any = None) -> dict:
    """Per-sample, per-item penalties of (B, 21, 3) poses (any unit).

    Returns ``bone_length`` (B, 20), ``curvature`` (B, 4), ``angular_distance`` (B, 4) and
    ``angles`` (B, 15) (hull distance); all ≥ 0, zero inside the limits.
    """
    t = limits.tensors(kp3d.device, kp3d.dtype)
    f = bmc_features(kp3d, is_left)
    return {
        "bone_length": interval_penalty(f["bone_length"], t["bone_length"]),
        "curvature": interval_penalty(f["curvature"], t["curvature"]),
        "angular_distance": interval_penalty(f["angular_distance"], t["angular_distance"]),
        "angles": hull_distance(f["angles"], t["hull_vertices"]),
    }


def bmc_loss(kp3d: torch.Tensor, limits: BMCLimits, is_left: Any = None,
             weights: BMCWeights = BMCWeights(), mask: torch.Tensor | None = None) -> dict:
    """L_BMC of (B, 21, 3) predicted poses; ``mask`` (B,) selects the samples it applies to.

    Returns a dict of scalars: ``bmc`` (weighted total) and the unweighted terms
    ``bone_length`` (L_BL), ``root_bones`` (L_RB = curvature + angular-distance penalties, mean
    over the 4 pairs), ``angles`` (L_A, mean hull distance over 15 bones), each a mean over
    the selected samples (0 when none is selected).
    """
    p = bmc_penalties(kp3d, limits, is_left)
    per = {"bone_length": p["bone_length"].mean(-1),
           "root_bones": (p["curvature"] + p["angular_distance"]).mean(-1),
           "angles": p["angles"].mean(-1)}
    if mask is None:
        red = {k: v.mean() for k, v in per.items()}
    else:
        m = mask.to(kp3d.dtype)
        n = m.sum().clamp_min(1.0)
        red = {k: (v * m).sum() / n for k, v in per.items()}
    red["bmc"] = (weights.bone_length * red["bone_length"] + weights.root_bones * red["root_bones"]
                  + weights.angles * red["angles"])
    return red


@torch.no_grad()
def violation_rates(kp3d: Any, limits: BMCLimits, is_left: Any = None, tol: float = 1e-6,
                    batch: int = 8192) -> dict:
    """Fraction of poses (N, 21, 3) that violate each constraint family (penalty > tol).

    Returns ``{"bone_length", "curvature", "angular_distance", "angles", "any"}`` → fraction of
    poses with at least one violating item, and ``per_item`` → the same per bone / pair
    (arrays of length 20, 4, 4, 15).
    """
    kp = torch.as_tensor(np.array(kp3d, dtype=np.float64))
    left = None if is_left is None else np.asarray(is_left).astype(bool)
    viol = {k: [] for k in TERMS}
    for s in range(0, len(kp), batch):
        p = bmc_penalties(kp[s:s + batch], limits, None if left is None else left[s:s + batch])
        for k in TERMS:
            viol[k].append((p[k] > tol).numpy())
    v = {k: np.concatenate(viol[k]) for k in TERMS}
    out = {k: float(v[k].any(-1).mean()) for k in TERMS}
    out["any"] = float(np.stack([v[k].any(-1) for k in TERMS]).any(0).mean())
    out["per_item"] = {k: v[k].mean(0) for k in TERMS}
    return out


def bmc_loss_25d(uv: torch.Tensor, zn: torch.Tensor, K: torch.Tensor, limits: BMCLimits,
                 mask: torch.Tensor | None = None, weights: BMCWeights = BMCWeights(),
                 uv_grad: bool = False, z_root: float | torch.Tensor | None = None) -> dict:
    """L_BMC of 2.5D predictions: uv (B, 21, 2) px, zn (B, 21) root-relative depth / scale bone,
    K (B, 3, 3) (right hands, e.g. a mirror_left dataset).

    3D = (Ẑ_root + ẑʳ) K⁻¹(u, v, 1) with the closed-form root (detached, clamped to [4, 50]),
    in scale-normalised units — BMC normalises by the scale bone anyway, so only the shape
    matters. `z_root` (scale-normalised, a number or (B,)) replaces the closed form, e.g. a
    nominal root depth: the closed form has no solution once the predicted depth extent of the
    scale bone exceeds its length. uv_grad=False stops the gradient at (u, v): weak samples
    carry 2D labels, so BMC should shape depth.
    """
    uv_in = uv if uv_grad else uv.detach()
    if z_root is None:
        root = root_depth_closed_form(uv.detach(), zn.detach(), K).clamp(*ROOT_CLAMP)
    else:
        root = torch.as_tensor(z_root, dtype=zn.dtype, device=zn.device).expand(zn.shape[:-1])
    p3d = reconstruct_25d(uv_in, zn, K, root)
    return bmc_loss(p3d, limits, None, weights or BMCWeights(), mask)
