"""Depth normalisation (Cai et al. Eq. 4/5) and 2.5D -> 3D reconstruction.

Depth normalisation, shared by ground-truth depth maps and joints so that rendered and
ground-truth maps live in one space::

    D^n = (d_max - D) / d_range,   d_range = max(d_max - d_min, eps)

on hand pixels (mask > 0 and finite depth > 0); background and missing depth are 0 ("farther than
anything"), near -> larger. d_min / d_max are the `quantiles` of the hand-pixel depths, taken as
actual samples (d_min rounds its rank up, d_max down, so a single outlier never leaks in by
interpolation). Default (0.01, 0.99): robust to a few mixed/flying pixels at the mask boundary
(real sensors, e.g. STB; widen the quantiles if leakage exceeds ~1 % of the hand pixels),
at the price of clamping the ~2 % extreme hand pixels into [0, 1] (the far ones become 0, like
background; the paper's exact-min/max formula already sends the farthest pixel to 0).
quantiles=(0, 1) is the paper's exact min/max (no clamping needed). Joints use the same d_max and
range and are not clamped (joint centres lie inside the finger, so they can fall slightly
outside [0, 1]).

All functions accept numpy arrays or torch tensors with leading batch dims and return the same
kind (torch results follow the input device and floating dtype).
"""
from __future__ import annotations

import sys

import numpy as np

from .. import camera
from ..skeleton import ROOT, Array, _is_torch, _prep, scale_length


def _torch():
    return sys.modules["torch"]


def normalize_depth_map(depth_mm: Array, mask: Array, quantiles=(0.01, 0.99), eps: float = 1e-3) -> tuple:
    """depth (..., H, W) mm, mask (..., H, W) -> (dn (..., H, W), d_max (...), d_range (...)).

    dn = clip((d_max - D) / d_range, 0, 1) on hand pixels (mask > 0, depth finite and > 0), 0
    elsewhere; d_min, d_max = quantiles of the hand-pixel depths (lower/upper sample, see module
    docstring; quantiles=(0, 1) is exact min/max),
    d_range = max(d_max - d_min, eps) [mm]. A map with no hand pixel gives dn = 0, d_max = 0 and
    d_range = eps.
    """
    depth, mask = _prep(depth_mm, mask)
    q_lo, q_hi = float(quantiles[0]), float(quantiles[1])
    if not 0.0 <= q_lo <= q_hi <= 1.0:
        raise ValueError(f"quantiles must satisfy 0 <= lo <= hi <= 1, got {quantiles}")
    lead = tuple(depth.shape[:-2])
    flat = depth.reshape(lead + (-1,))
    if _is_torch(depth):
        torch = _torch()
        valid = (mask > 0) & torch.isfinite(depth) & (depth > 0)
        vflat = valid.reshape(lead + (-1,))
        if (q_lo, q_hi) == (0.0, 1.0):
            inf = torch.tensor(float("inf"), dtype=flat.dtype, device=flat.device)
            d_min = torch.where(vflat, flat, inf).amin(-1)
            d_max = torch.where(vflat, flat, -inf).amax(-1)
        else:
            nan = torch.where(vflat, flat, torch.tensor(float("nan"), dtype=flat.dtype, device=flat.device))
            d_min = torch.nanquantile(nan, q_lo, dim=-1, interpolation="higher")
            d_max = torch.nanquantile(nan, q_hi, dim=-1, interpolation="lower")
        any_ = vflat.any(-1)
        d_max = torch.where(any_, d_max, torch.zeros_like(d_max))
        d_min = torch.where(any_, d_min, torch.zeros_like(d_min))
        d_range = (d_max - d_min).clamp_min(eps)
        dn = ((d_max[..., None, None] - depth) / d_range[..., None, None]).clamp(0.0, 1.0)
        dn = torch.where(valid, dn, torch.zeros_like(dn))
        return dn, d_max, d_range
    valid = (mask > 0) & np.isfinite(depth) & (depth > 0)
    vflat = valid.reshape(lead + (-1,))
    any_ = vflat.any(-1)
    if (q_lo, q_hi) == (0.0, 1.0):
        d_min = np.where(vflat, flat, np.inf).min(-1)
        d_max = np.where(vflat, flat, -np.inf).max(-1)
    else:
        # fill empty rows with 0 first so nanquantile does not warn on all-NaN slices
        nan = np.where(vflat | ~any_[..., None], np.where(vflat, flat, 0.0), np.nan)
        d_min = np.nanquantile(nan, q_lo, axis=-1, method="higher")
        d_max = np.nanquantile(nan, q_hi, axis=-1, method="lower")
    d_max = np.where(any_, d_max, 0.0).astype(depth.dtype)
    d_min = np.where(any_, d_min, 0.0).astype(depth.dtype)
    d_range = np.maximum(d_max - d_min, eps).astype(depth.dtype)
    with np.errstate(invalid="ignore"):
        dn = np.clip((d_max[..., None, None] - depth) / d_range[..., None, None], 0.0, 1.0)
    return np.where(valid, dn, 0.0).astype(depth.dtype), d_max, d_range


def normalize_joint_depth(z_mm: Array, d_max: Array, d_range: Array) -> Array:
    """Joint depths z (..., K) mm -> (d_max - z) / d_range (..., K), with d_max, d_range (...) from
    normalize_depth_map. Not clamped."""
    z, d_max, d_range = _prep(z_mm, d_max, d_range)
    return (d_max[..., None] - z) / d_range[..., None]


def denormalize_joint_depth(dn: Array, d_max: Array, d_range: Array) -> Array:
    """Inverse of normalize_joint_depth: dn (..., K) -> z = d_max - dn * d_range (..., K) mm."""
    dn, d_max, d_range = _prep(dn, d_max, d_range)
    return d_max[..., None] - dn * d_range[..., None]


def root_relative_depth(kp3d: Array, eps: float = 1e-8) -> Array:
    """(..., 21, 3) mm camera-frame joints -> zn (..., 21) = (Z_k - Z_root) / s, root = wrist
    (joint 0), s = skeleton.scale_length (middle MCP -> PIP), floored at eps mm."""
    (kp,) = _prep(kp3d)
    s = scale_length(kp)
    s = s.clamp_min(eps) if _is_torch(s) else np.maximum(s, eps)
    return (kp[..., 2] - kp[..., ROOT : ROOT + 1, 2]) / s[..., None]


def reconstruct_3d(uv: Array, zn: Array, K: Array, root_z: Array, scale: Array) -> Array:
    """2.5D -> 3D: uv (..., J, 2) px, zn (..., J), K (..., 3, 3), root_z (...) mm, scale (...) mm
    -> (..., J, 3) mm with Z_k = root_z + zn_k * scale and (X, Y, Z) = Z * K^-1 (u, v, 1) (full
    inverse, skew-safe; camera.backproject). Inverse of (project, root_relative_depth)."""
    uv, zn, K, root_z, scale = _prep(uv, zn, K, root_z, scale)
    z = root_z[..., None] + zn * scale[..., None]
    return camera.backproject(K, uv, z)
