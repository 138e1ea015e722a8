"""Dense 3D regression targets (Wan et al., CVPR 2018): point map, 2D/3D heatmaps, unit offsets.

Conventions (:mod:`weakhand.camera`, also used by :mod:`weakhand.models.pose2d`): OpenCV camera
frame (x right, y down, z forward), mm for 3D and depth, pixels for 2D, integer pixel coordinates
are pixel centres, depth 0 means missing. The network output has stride ``stride`` relative to the
input crop; output cell i is centred on input pixel (i + 0.5) * stride - 0.5 and an input pixel
coordinate u lies at cell coordinate (u + 0.5) / stride - 0.5.

Shapes: B batch, J joints, (h, w) the output grid. Everything is vectorised torch and follows
the dtype/device of its floating-point inputs.
"""
from __future__ import annotations

import torch

from ..camera import heatmap_to_input, input_to_heatmap

DEFAULT_STRIDE = 4
DEFAULT_RADIUS = 80.0  # mm, ball radius of the 3D heatmap / offset field
DEFAULT_CONE = 4.0  # output-grid cells, radius of the linear 2D cone


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype.is_floating_point else x.to(torch.get_default_dtype())


def grid_centres(h: int, w: int, stride: int, like: torch.Tensor):
    """Input-pixel coordinates (u (w,), v (h,)) of the output-grid cell centres."""
    u = heatmap_to_input(torch.arange(w, dtype=like.dtype, device=like.device), stride)
    v = heatmap_to_input(torch.arange(h, dtype=like.dtype, device=like.device), stride)
    return u, v


def point_map(depth_mm: torch.Tensor, K: torch.Tensor, stride: int = DEFAULT_STRIDE):
    """Back-project a depth crop to the output grid: -> (points (B, h, w, 3) mm, valid (B, h, w) bool).

    depth_mm: (B, 1, H, W) or (B, H, W), mm, 0 (or non-finite / negative) = missing; H and W must
    be multiples of ``stride``; h = H / stride, w = W / stride. K: (B, 3, 3) intrinsics of the
    input crop (pixels of the input image; cast to the depth dtype/device).

    Per stride x stride block the depth is the mean of its valid (> 0) pixels; a cell is valid if
    any pixel of its block is. The cell's point is that depth back-projected through the block
    centre (input px (i + 0.5) * stride - 0.5) with the full inverse of K, X = z * K^-1 (u, v, 1)
    scaled so that X_z = z. Invalid cells get points 0.
    """
    d = _float(depth_mm)
    if d.dim() == 4:
        if d.shape[1] != 1:
            raise ValueError(f"depth must be (B, 1, H, W) or (B, H, W), got {tuple(d.shape)}")
        d = d[:, 0]
    if d.dim() != 3:
        raise ValueError(f"depth must be (B, 1, H, W) or (B, H, W), got {tuple(depth_mm.shape)}")
    B, H, W = d.shape
    s = int(stride)
    if H % s or W % s:
        raise ValueError(f"depth size {(H, W)} is not a multiple of stride {s}")
    h, w = H // s, W // s
    ok = torch.isfinite(d) & (d > 0)
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    dsum = torch.where(ok, d, zero).reshape(B, h, s, w, s).sum((2, 4))
    cnt = ok.reshape(B, h, s, w, s).sum((2, 4))
    valid = cnt > 0
    z = dsum / cnt.clamp_min(1).to(d.dtype)

    u, v = grid_centres(h, w, s, d)
    pix = torch.stack([u[None, :].expand(h, w), v[:, None].expand(h, w), torch.ones_like(v)[:, None].expand(h, w)],
                      -1)  # (h, w, 3)
    Kinv = torch.linalg.inv(K.to(dtype=d.dtype, device=d.device))  # (B, 3, 3)
    ray = torch.einsum("bij,hwj->bhwi", Kinv, pix)  # (B, h, w, 3)
    rz = ray[..., 2:3]
    pts = ray * (z[..., None] / torch.where(rz == 0, torch.ones_like(rz), rz))
    pts = torch.where(valid[..., None], pts, zero)
    return pts, valid


def heatmaps_2d(kp2d: torch.Tensor, h: int, w: int, stride: int = DEFAULT_STRIDE,
                cone: float = DEFAULT_CONE) -> torch.Tensor:
    """Linear-cone 2D heatmaps: kp2d (B, J, 2) input px -> (B, J, h, w) = max(0, 1 - d / cone).

    d is the distance, in output-grid cells, between a cell and the joint's grid coordinate
    (u + 0.5) / stride - 0.5. Joints with any NaN coordinate give all-zero maps.
    """
    kp2d = _float(kp2d)
    c = input_to_heatmap(kp2d, stride)  # (B, J, 2) grid coordinates
    xs = torch.arange(w, dtype=c.dtype, device=c.device)
    ys = torch.arange(h, dtype=c.dtype, device=c.device)
    dx = xs - c[..., 0:1]  # (B, J, w)
    dy = ys - c[..., 1:2]  # (B, J, h)
    dist = torch.sqrt(dy[..., :, None] ** 2 + dx[..., None, :] ** 2)
    h2 = (1.0 - dist / cone).clamp_min(0.0)
    bad = torch.isnan(kp2d).any(-1)[..., None, None]
    return torch.where(bad, torch.zeros((), dtype=h2.dtype, device=h2.device), h2)


def dense_targets(points: torch.Tensor, valid: torch.Tensor, kp3d: torch.Tensor, kp2d: torch.Tensor,
                  stride: int = DEFAULT_STRIDE, radius: float = DEFAULT_RADIUS, cone: float = DEFAULT_CONE):
    """Training targets of the dense 3D regression head.

    points (B, h, w, 3) mm and valid (B, h, w) from :func:`point_map`; kp3d (B, J, 3) mm;
    kp2d (B, J, 2) input px (normally the projection of kp3d, but any 2D target works).
    Returns a dict:

    - ``h2`` (B, J, h, w): linear cone max(0, 1 - d / cone), d in output-grid cells
      (:func:`heatmaps_2d`); all zero for joints with NaN 2D.
    - ``h3`` (B, J, h, w): max(0, (r - |J - P|) / r) on valid cells, 0 on invalid cells and for
      joints with NaN 3D.
    - ``u`` (B, J, 3, h, w): (J - P) / |J - P| where h3 > 0 and |J - P| > 0, else 0.

    Voting P + r (1 - h3) u (:func:`weakhand.dense.aggregate.votes`) recovers J exactly from every
    cell with h3 > 0 (a cell with P == J has u = 0 but also h3 = 1, so it votes P = J as well).
    """
    points = _float(points)
    kp3d = kp3d.to(dtype=points.dtype, device=points.device)
    kp2d = kp2d.to(dtype=points.dtype, device=points.device)
    h, w = points.shape[1:3]
    zero = torch.zeros((), dtype=points.dtype, device=points.device)

    h2 = heatmaps_2d(kp2d, h, w, stride, cone)

    diff = kp3d[:, :, None, None, :] - points[:, None]  # (B, J, h, w, 3)
    dist = torch.linalg.vector_norm(diff, dim=-1)  # (B, J, h, w)
    ok = valid[:, None].to(torch.bool) & ~torch.isnan(kp3d).any(-1)[..., None, None]
    h3 = torch.where(ok, ((radius - dist) / radius).clamp_min(0.0), zero)
    inside = (h3 > 0) & (dist > 0)
    u = torch.where(inside[..., None], diff / torch.where(inside, dist, torch.ones_like(dist))[..., None], zero)
    return {"h2": h2, "h3": h3, "u": u.permute(0, 1, 4, 2, 3).contiguous()}
