"""The 2D → depth lifter: an MLP that reads root-relative depth zⁿ from 2D keypoints as camera
rays, so it never sees pixels and its source side needs labels only (poses and cameras).

Input features (:func:`ray_features`), all invariant to the crop (two crops of one frame have
intrinsics K₁, K₂ but the same rays K⁻¹(u, v, 1) for the same 3D point):

* the 21 rays (x/z, y/z), root-relative and divided by the hand's 2D extent in ray space
  (max of the x and y ranges): the hand's 2D shape, free of distance and crop scale;
* the root ray (x/z, y/z) of the wrist: where the hand sits in the view (perspective);
* log of the extent: the hand's angular size (how strong perspective is across the hand).

Output zⁿ (B, 21): root-relative depth divided by the scale bone (middle MCP→PIP), zⁿ₀ = 0.
Right hands: mirror left hands first (:func:`mirror_left`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..skeleton import NUM_JOINTS, ROOT

#: features per hand: 21 normalised rays (x, y), the root ray (x, y), log extent
NUM_FEATURES = 2 * NUM_JOINTS + 3


def rays(kp2d: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Normalised camera rays (x/z, y/z) of pixels: K⁻¹(u, v, 1).

    kp2d (..., J, 2) px, K (..., 3, 3) px -> (..., J, 2) unitless (tan of the ray angles)."""
    Kinv = torch.linalg.inv(K.to(torch.float64))
    h = torch.cat([kp2d.to(torch.float64), torch.ones_like(kp2d[..., :1], dtype=torch.float64)], -1)
    r = h @ Kinv.transpose(-1, -2)
    return (r[..., :2] / r[..., 2:3]).to(kp2d.dtype)


def ray_features(kp2d: torch.Tensor, K: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The lifter's input (B, :data:`NUM_FEATURES`) from 2D keypoints (B, 21, 2) px and crop
    intrinsics K (B, 3, 3) px; see the module docstring. Unitless; crop-invariant."""
    r = rays(kp2d, K)
    root = r[:, ROOT]
    rel = r - root[:, None]
    ext = (rel.amax(1) - rel.amin(1)).amax(-1).clamp_min(eps)  # (B,)
    return torch.cat([(rel / ext[:, None, None]).flatten(1), root, torch.log(ext)[:, None]], 1)


def mirror_left(kp2d: torch.Tensor, K: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """2D keypoints (B, 21, 2) px of left hands (side 0) mirrored about the principal point
    (u → 2·cx − u), i.e. the projection through the same K of the 3D hand mirrored x → −x; right
    hands (side 1) unchanged. K (B, 3, 3) px (zero skew), side (B,) 0 left / 1 right."""
    left = (side.to(kp2d.device) == 0)[:, None]
    u = torch.where(left, 2 * K[:, None, 0, 2].to(kp2d) - kp2d[..., 0], kp2d[..., 0])
    return torch.stack([u, kp2d[..., 1]], -1)


@dataclass(frozen=True)
class LifterConfig:
    """width: hidden units per layer; layers: hidden layers (≥ 1); dropout: after each hidden
    layer; residual: skip connections between equal-width hidden layers (no arrays)."""
    width: int = 512
    layers: int = 3
    dropout: float = 0.0
    residual: bool = True

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON- and checkpoint-safe; no arrays)."""
        return asdict(self)


class Lifter(nn.Module):
    """zⁿ (B, 21) in scale-bone units (zⁿ₀ = 0) from 2D keypoints (B, 21, 2) px and K (B, 3, 3)
    px of right hands: ``model(kp2d, K)`` or ``model({"kp2d": …, "K": …})`` -> {"zn"}."""

    def __init__(self, cfg: LifterConfig = LifterConfig()):
        super().__init__()
        if cfg.layers < 1 or cfg.width < 1:
            raise ValueError(f"a lifter needs layers >= 1 and width >= 1, got {cfg}")
        self.cfg = cfg
        self.inp = nn.Linear(NUM_FEATURES, cfg.width)
        self.hidden = nn.ModuleList(nn.Linear(cfg.width, cfg.width) for _ in range(cfg.layers - 1))
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.width, NUM_JOINTS - 1)

    def forward(self, kp2d, K: torch.Tensor | None = None) -> dict:
        """kp2d (B, 21, 2) px (or a dict with "kp2d", "K"), K (B, 3, 3) px -> {"zn": (B, 21)}."""
        if isinstance(kp2d, dict):
            kp2d, K = kp2d["kp2d"], kp2d["K"]
        h = self.drop(torch.relu(self.inp(ray_features(kp2d.float(), K.float()))))
        for layer in self.hidden:
            y = self.drop(torch.relu(layer(h)))
            h = h + y if self.cfg.residual else y
        zn = self.out(h)
        return {"zn": torch.cat([torch.zeros_like(zn[:, :1]), zn], 1)}
