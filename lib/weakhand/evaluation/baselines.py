"""The trivial baseline every results table carries: a constant hand pose that learned nothing.

Fitted on the **source training split only** (no target label is used):

* shape: the generalised-Procrustes mean (GPA) of the canonical hands, i.e. left hands mirrored
  to right hands (x -> -x), root-relative and divided by the scale bone (middle MCP -> PIP), then
  iteratively rotated onto their mean (det R = +1) until the mean stops moving. Aligned metrics
  (PA-EPE, PA-AUC) place this shape on each test hand with the same similarity Procrustes as
  every model's prediction.
* 2.5D: the per-joint mean of the source's root-relative normalised depth zn (21,) and of the 2D
  keypoints relative to the crop (21, 2), in the mirrored (right-hand) frame the networks are
  trained in. Unaligned metrics (2D px, z error, EPE with GT root and scale) reconstruct this
  constant exactly as a network's (u, v, zn) is reconstructed.

Test predictions scored against it must come from a loader with ``mirror_left=True`` (every
loader of the workbook), so ground truth and constant are both right hands.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .. import metrics
from .. import skeleton as sk
from .scores import score


@dataclass(frozen=True)
class ConstantPose:
    """shape (21, 3) scale-bone units (right hand, root at 0); zn (21,) scale-bone units;
    uv_rel (21, 2): 2D keypoints as a fraction of the crop side (0..1); n: source samples used."""
    shape: np.ndarray
    zn: np.ndarray
    uv_rel: np.ndarray
    n: int

    def to_dict(self) -> dict:
        """JSON-safe dict: nested lists ``shape`` (21, 3), ``zn`` (21,), ``uv_rel`` (21, 2), int ``n``."""
        return {"shape": self.shape.tolist(), "zn": self.zn.tolist(), "uv_rel": self.uv_rel.tolist(),
                "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConstantPose":
        """Inverse of :meth:`to_dict` (float64 arrays (21, 3), (21,), (21, 2))."""
        return cls(np.asarray(d["shape"], float), np.asarray(d["zn"], float),
                   np.asarray(d["uv_rel"], float), int(d["n"]))


def _rotation_onto(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N, J, 3) centred shapes rotated (det +1, no scale) onto ref (J, 3)."""
    h = np.einsum("nji,jk->nik", x, ref)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    dd = np.ones((x.shape[0], 3))
    dd[:, -1] = np.where(d == 0, 1.0, d)
    r = (vt.transpose(0, 2, 1) * dd[:, None, :]) @ u.transpose(0, 2, 1)
    return x @ r.transpose(0, 2, 1)


def gpa_mean(shapes: np.ndarray, iters: int = 20, tol: float = 1e-9) -> np.ndarray:
    """Generalised Procrustes mean of (N, J, 3) shapes (rotation only; the shapes are already
    scale-normalised). Returns (J, 3) with the first joint at the origin."""
    x = shapes - shapes.mean(1, keepdims=True)
    ref = x[0]
    for _ in range(iters):
        x = _rotation_onto(x, ref)
        new = x.mean(0)
        if np.abs(new - ref).max() < tol:
            ref = new
            break
        ref = new
    return ref - ref[sk.ROOT]


def fit_constant_pose(data) -> ConstantPose:
    """The constant pose of a fully labelled (source) split: a dataset path or HandData. Uses
    the samples with finite ``kp3d`` (N, 21, 3) mm and ``kp2d`` (N, 21, 2) px; returns a
    :class:`ConstantPose` (scale-bone units, uv as a fraction of the crop)."""
    from ..data import load_dataset

    d = data if not isinstance(data, (str, os.PathLike)) else load_dataset(data)
    kp3d = np.asarray(d.arrays["kp3d"], np.float64)
    kp2d = np.asarray(d.arrays["kp2d"], np.float64)
    ok = np.isfinite(kp3d).all((1, 2)) & np.isfinite(kp2d).all((1, 2))
    if not ok.any():
        raise ValueError(f"{getattr(d, 'path', 'dataset')}: no sample with 3D and 2D labels to fit "
                         "the constant pose on")
    kp3d, kp2d = kp3d[ok], kp2d[ok]
    # dataset format: side 0 = left, 1 = right
    left = (np.asarray(d.arrays["side"])[ok] == 0 if "side" in d.arrays else np.zeros(len(kp3d), bool))
    h, w = d.image_size
    kp3d = np.where(left[:, None, None], sk.mirror(kp3d), kp3d)
    u = np.where(left[:, None], (w - 1) - kp2d[..., 0], kp2d[..., 0])
    return constant_from_labels(kp3d, np.stack([u, kp2d[..., 1]], -1), (h, w))


def constant_from_labels(kp3d: np.ndarray, kp2d: np.ndarray, image_hw) -> ConstantPose:
    """The constant pose of right-handed labels: kp3d (N, 21, 3) mm, kp2d (N, 21, 2) px of
    crops of `image_hw` = (H, W) px (e.g. label-only source hands; :func:`fit_constant_pose`
    for a dataset)."""
    kp3d, kp2d = np.asarray(kp3d, np.float64), np.asarray(kp2d, np.float64)
    h, w = image_hw
    uv_rel = np.stack([(kp2d[..., 0] + 0.5) / w, (kp2d[..., 1] + 0.5) / h], -1)
    s = sk.scale_length(kp3d)
    canon = (kp3d - kp3d[:, sk.ROOT:sk.ROOT + 1]) / s[:, None, None]
    return ConstantPose(shape=gpa_mean(canon), zn=canon[..., 2].mean(0), uv_rel=uv_rel.mean(0),
                        n=int(len(kp3d)))


def constant_predictions(const: ConstantPose, p: Mapping[str, np.ndarray], image_hw) -> dict:
    """Predictions dict like a model's (``uv``, ``zn`` + the labels of `p`) with the constant's
    2.5D pose on every sample; `image_hw` = (H, W) of the network input the labels are in."""
    n = len(np.asarray(p["kp3d"]))
    h, w = float(image_hw[0]), float(image_hw[1])
    uv = np.broadcast_to(const.uv_rel * np.array([w, h]) - 0.5, (n, sk.NUM_JOINTS, 2)).copy()
    zn = np.broadcast_to(const.zn, (n, sk.NUM_JOINTS)).copy()
    return {**{k: v for k, v in p.items() if k not in ("uv", "zn", "z_root", "z_root_closed")},
            "uv": uv, "zn": zn}


def score_constant_pose(const: ConstantPose, p: Mapping[str, np.ndarray], image_hw=None,
                        limits=None, keep_arrays: bool = True) -> dict:
    """Every number of :func:`weakhand.evaluation.scores.score` for the constant pose on the
    labelled samples of `p` (any model's predictions: only its labels are read). Unaligned
    metrics reconstruct the constant (uv, zn) with the GT root and scale; the aligned (pa_*)
    metrics Procrustes-align the GPA mean shape to each test hand. `image_hw`: (H, W) px of the
    network input (default ``p["image_hw"]``). Errors in mm / px as in :func:`score`."""

    if image_hw is None:
        image_hw = p.get("image_hw")
    if image_hw is None:
        raise ValueError("image_hw (H, W) of the network input is needed to place the constant 2D")
    out = score(constant_predictions(const, p, image_hw), limits=limits, keep_arrays=keep_arrays)
    sel = np.asarray(p["has_3d"]).astype(bool)
    kp3d = np.asarray(p["kp3d"], np.float64)[sel]
    vis = np.asarray(p["vis"])[sel].astype(bool)
    shape = np.broadcast_to(const.shape, kp3d.shape)
    pa = metrics.evaluate_3d(shape, kp3d, vis, align="procrustes")
    out.update({"pa_epe_mm": pa["epe_mean_mm"], "pa_epe_median_mm": pa["epe_median_hand3d_mm"],
                "pa_auc_0_50": pa["auc_0_50"], "pa_auc_20_50": pa["auc_20_50"]})
    if keep_arrays:
        out["pa_pck"] = pa["pck_curve"]
    return out
