"""Dense 3D regression inference (Wan et al., CVPR 2018): pixel-wise votes, candidate selection,
surface push and weighted mean-shift.

Shapes: B batch, J joints, (h, w) output grid, N candidates per joint. Conventions as in
:mod:`weakhand.dense.targets` (OpenCV camera frame, mm, pixel centres at integers, stride-s grid
cell i centred on input px (i + 0.5) * s - 0.5).
"""
from __future__ import annotations

import torch

from ..camera import input_to_heatmap
from .targets import DEFAULT_RADIUS, DEFAULT_STRIDE

DEFAULT_TOP_N = 5
DEFAULT_BANDWIDTH = 40.0  # mm, sigma of the Gaussian mean-shift kernel
DEFAULT_ITERS = 10


def _vote(p: torch.Tensor, h3: torch.Tensor, u: torch.Tensor, radius: float) -> torch.Tensor:
    """Elementwise vote p + r (1 - h3) u with p, u (..., 3) and h3 (...)."""
    return p + (radius * (1.0 - h3))[..., None] * u


def votes(points: torch.Tensor, h3: torch.Tensor, u: torch.Tensor, radius: float = DEFAULT_RADIUS) -> torch.Tensor:
    """Per-pixel joint votes J_j(p) = P(p) + r (1 - H3_j(p)) U_j(p) -> (B, J, h, w, 3) mm.

    points (B, h, w, 3) mm, h3 (B, J, h, w), u (B, J, 3, h, w) (network layout). Linear in h3 and
    u, so differentiable everywhere. No masking: invalid cells vote from their zero point.
    """
    return _vote(points[:, None], h3, u.permute(0, 1, 3, 4, 2), radius)


def _canonical_order(cands: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Permutation (B, J, N) sorting candidates lexicographically by (x, y, z, weight).

    Built from stable sorts on the least significant key first. Identical (x, y, z, w) rows are
    interchangeable, so the sorted candidates do not depend on the input order.
    """
    N = cands.shape[-2]
    perm = torch.arange(N, device=cands.device).expand(weights.shape).contiguous()
    for key in (weights, cands[..., 2], cands[..., 1], cands[..., 0]):
        _, order = torch.sort(key.gather(-1, perm), dim=-1, stable=True)
        perm = perm.gather(-1, order)
    return perm


def mean_shift(cands: torch.Tensor, weights: torch.Tensor, bandwidth: float = DEFAULT_BANDWIDTH,
               iters: int = DEFAULT_ITERS) -> torch.Tensor:
    """Weighted Gaussian mean-shift mode of each joint's candidates -> (B, J, 3).

    cands (B, J, N, 3), weights (B, J, N) (negative weights are clamped to 0). Kernel
    k(d) = exp(-d^2 / (2 bandwidth^2)) (bandwidth = Gaussian sigma, mm).

    Initialisation: the candidate with the largest weighted kernel density
    sum_k w_k k(|c_i - c_k|); densities within a relative 64 * eps(dtype) of the maximum count as
    tied and the tie goes to the lexicographically smallest (x, y, z). Then ``iters`` steps of
    m <- sum_i w_i k(|c_i - m|) c_i / sum_i w_i k(|c_i - m|) (m is kept if that denominator
    underflows to 0).

    The candidates are first put in a canonical order (lexicographic by x, y, z, weight), so the
    result is exactly (bit-for-bit) invariant to the order of the candidates. A joint whose
    weights are all zero returns the plain mean of its candidates. Differentiable w.r.t. cands and
    weights through the iterations (the initial pick is a discrete choice).
    """
    cands = cands if cands.dtype.is_floating_point else cands.to(torch.get_default_dtype())
    w = weights.to(dtype=cands.dtype, device=cands.device).clamp_min(0.0)
    perm = _canonical_order(cands, w)
    c = cands.gather(-2, perm[..., None].expand(cands.shape))
    w = w.gather(-1, perm)
    inv2s2 = 1.0 / (2.0 * float(bandwidth) ** 2)

    # initial mode: highest weighted density, ties -> first in canonical (lexicographic) order
    d2 = ((c[..., :, None, :] - c[..., None, :, :]) ** 2).sum(-1)  # (B, J, N, N)
    dens = (torch.exp(-d2 * inv2s2) * w[..., None, :]).sum(-1)  # (B, J, N)
    top = dens.max(-1, keepdim=True).values
    tol = 64.0 * torch.finfo(dens.dtype).eps
    tied = (dens >= top - tol * top.abs()).to(torch.uint8)
    first = tied.argmax(-1)  # first maximum of a 0/1 tensor = first tied index
    m = c.gather(-2, first[..., None, None].expand(c.shape[:-2] + (1, 3)))[..., 0, :]  # (B, J, 3)

    for _ in range(int(iters)):
        a = w * torch.exp(-((c - m[..., None, :]) ** 2).sum(-1) * inv2s2)  # (B, J, N)
        den = a.sum(-1, keepdim=True)
        ok = den > 0
        new = (a[..., None] * c).sum(-2) / torch.where(ok, den, torch.ones_like(den))
        m = torch.where(ok, new, m)

    none = (w.sum(-1) <= 0)[..., None]
    return torch.where(none, c.mean(-2), m)


def aggregate(points: torch.Tensor, valid: torch.Tensor, h2: torch.Tensor, h3: torch.Tensor, u: torch.Tensor,
              K: torch.Tensor, stride: int = DEFAULT_STRIDE, radius: float = DEFAULT_RADIUS,
              top_n: int = DEFAULT_TOP_N, bandwidth: float = DEFAULT_BANDWIDTH, iters: int = DEFAULT_ITERS):
    """Joints from dense predictions -> dict(joints (B, J, 3), candidates (B, J, N, 3), weights (B, J, N)).

    points (B, h, w, 3), valid (B, h, w) from :func:`weakhand.dense.targets.point_map`; h2, h3
    (B, J, h, w) and u (B, J, 3, h, w) predicted (or target) fields; K (B, 3, 3) input-crop
    intrinsics. N = top_n (must be <= h * w).

    1. Per joint, the N cells with the largest score (h2 + 1) * h3 among valid cells (invalid cells
       score -inf, so they are only taken when fewer than N cells are valid; such candidates get
       weight 0). Ties / all-zero scores still give N candidates.
    2. Candidates are those cells' votes P + r (1 - h3) u.
    3. Each candidate is projected with K, mapped to the nearest output-grid cell (clamped into
       the grid; candidates with z <= 0 land on the border). Its weight is h2 (clamped >= 0) at
       that cell; if that cell is valid, the candidate is pushed behind the observed surface,
       z <- max(z, observed z of the cell) (x, y unchanged).
    4. :func:`mean_shift` of the pushed candidates with these weights. A joint with all-zero
       weights gets the plain mean of its candidates (this includes any invalid-cell candidates).

    The returned candidates are the pushed ones.
    """
    B, h, w = points.shape[:3]
    J = h3.shape[1]
    hw = h * w
    N = int(top_n)
    if not 1 <= N <= hw:
        raise ValueError(f"top_n must be in [1, {hw}], got {top_n}")
    dt, dev = points.dtype, points.device
    valid = valid.to(torch.bool)
    h2 = h2.to(dt)
    h3 = h3.to(dt)
    u = u.to(dt)
    K = K.to(dtype=dt, device=dev)

    # 1. top-N cells by (h2 + 1) * h3 among valid cells
    score = ((h2 + 1.0) * h3).reshape(B, J, hw)
    vflat = valid.reshape(B, 1, hw).expand(B, J, hw)
    score = torch.where(vflat, score, torch.full((), float("-inf"), dtype=dt, device=dev))
    idx = torch.topk(score, N, dim=-1).indices  # (B, J, N)
    cell_ok = vflat.gather(-1, idx)

    # 2. votes of the selected cells
    p = points.reshape(B, 1, hw, 3).expand(B, J, hw, 3).gather(-2, idx[..., None].expand(B, J, N, 3))
    h3c = h3.reshape(B, J, hw).gather(-1, idx)
    uc = u.reshape(B, J, 3, hw).gather(-1, idx[:, :, None, :].expand(B, J, 3, N)).transpose(-1, -2)
    cand = _vote(p, h3c, uc, radius)  # (B, J, N, 3)

    # 3. project into the grid, weight by h2 there, push behind the observed surface
    q = torch.einsum("bik,bjnk->bjni", K, cand)
    qz = q[..., 2:3].clamp_min(1e-6)
    uv = torch.nan_to_num(q[..., :2] / qz, nan=0.0, posinf=1e9, neginf=-1e9).clamp(-1e9, 1e9)
    g = torch.round(input_to_heatmap(uv, stride))
    gx = g[..., 0].clamp(0, w - 1).long()
    gy = g[..., 1].clamp(0, h - 1).long()
    cell = gy * w + gx  # (B, J, N)
    wts = h2.reshape(B, J, hw).gather(-1, cell).clamp_min(0.0)
    wts = torch.where(cell_ok, wts, torch.zeros((), dtype=dt, device=dev))
    obs_ok = vflat.gather(-1, cell)
    obs_z = points[..., 2].reshape(B, 1, hw).expand(B, J, hw).gather(-1, cell)
    z = torch.where(obs_ok, torch.maximum(cand[..., 2], obs_z), cand[..., 2])
    cand = torch.cat([cand[..., :2], z[..., None]], -1)

    # 4. weighted mean-shift
    joints = mean_shift(cand, wts, bandwidth=bandwidth, iters=iters)
    return {"joints": joints, "candidates": cand, "weights": wts}
