"""Absolute root depth from a 2.5D pose (Iqbal et al. ECCV'18; Spurr et al. ECCV'20 refinement).

2.5D pose: (u_k, v_k) pixels and ẑʳ_k = (Z_k − Z_root) / s, root-relative depth in units of the
scale bone s = ‖P_10 − P_9‖ (middle MCP → PIP, :data:`weakhand.skeleton.SCALE_BONE`; the same
bone as the depth normalisation, the BMC limits and the evaluation rescaling).

Closed form (Iqbal et al. ECCV 2018, the *consistent* form — the paper's printed equations
drop a factor 2 in b, which costs 1–7 % of Ẑ_root): with (x_k, y_k, 1) = K⁻¹(u_k, v_k, 1) and the
unknown scale-normalised root depth Ẑ, the bone constraint ‖Ẑ_n p_n − Ẑ_m p_m‖ = 1,
Ẑ_k = Ẑ + ẑʳ_k, is a Ẑ² + b Ẑ + c = 0 with

    a = (x_n − x_m)² + (y_n − y_m)²
    b = 2 [ẑ_n (x_n² + y_n² − x_n x_m − y_n y_m) + ẑ_m (x_m² + y_m² − x_n x_m − y_n y_m)]
    c = (x_n ẑ_n − x_m ẑ_m)² + (y_n ẑ_n − y_m ẑ_m)² + (ẑ_n − ẑ_m)² − 1

and Ẑ_root = (−b + √(b² − 4ac)) / (2a), guarded for a → 0 (bone pointing at the camera) and a
negative discriminant. Metric: Z_root = s · Ẑ_root.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import skeleton as sk

ROOT_CLAMP = (4.0, 50.0)  # scale-normalised root depth range fed to the refinement MLP


def _backproject_xy(uv: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(..., J, 2) px, K (..., 3, 3) → (..., J, 2) normalised image coordinates (x, y)."""
    ones = torch.ones_like(uv[..., :1])
    rays = torch.linalg.solve(K.unsqueeze(-3), torch.cat([uv, ones], -1).unsqueeze(-1))[..., 0]
    return rays[..., :2] / rays[..., 2:3]


def to_25d(kp3d: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Camera-space joints (..., 21, 3) (mm) → (uv (..., 21, 2) px, zr (..., 21), s (...) mm)."""
    p = torch.einsum("...ij,...kj->...ki", K, kp3d)
    uv = p[..., :2] / p[..., 2:3]
    s = sk.scale_length(kp3d)
    zr = (kp3d[..., 2] - kp3d[..., sk.ROOT : sk.ROOT + 1, 2]) / s[..., None]
    return uv, zr, s


#: (20,) mean bone lengths in units of the scale bone (bone order of
#: :data:`weakhand.skeleton.BONES`) of 2000 hands of the procedural generator's render domain
#: (``sample_hand_poses(RENDER, 2000, seed=12345)``; Buchholz segment ratios, anthropometric, so
#: a fair prior for real hands too). Written out so that the model does not depend on the
#: generator; ``tests/test_root_depth.py`` recomputes it from the generator.
BONE_PRIOR = (0.77277017, 0.90632886, 0.70747834, 0.57098114, 1.613263, 0.9565825, 0.5170945,
              0.35030127, 1.6077873, 1.0, 0.6143812, 0.39021432, 1.4744275, 0.93613654,
              0.59638965, 0.38700652, 1.322621, 0.7440684, 0.4230979, 0.33589265)


def default_bone_prior() -> torch.Tensor:
    """(20,) float32 mean bone lengths in units of the scale bone (:data:`BONE_PRIOR`)."""
    return torch.tensor(BONE_PRIOR, dtype=torch.float32)


def _bone_prior_cost(uv, zr, K, z_root, prior):
    p = reconstruct_25d(uv, zr, K, z_root)
    lengths = sk.bone_lengths(p)
    ratio = lengths / lengths[..., sk.SCALE_BONE_ID : sk.SCALE_BONE_ID + 1].clamp_min(1e-8)
    return (torch.log(ratio.clamp_min(1e-6)) - torch.log(prior.to(ratio))).square().sum(-1)


def root_depth_closed_form(uv: torch.Tensor, zr: torch.Tensor, K: torch.Tensor,
                           eps: float = 1e-8, bone_prior: torch.Tensor | None = None
                           ) -> torch.Tensor:
    """Scale-normalised absolute root depth Ẑ_root (...) from uv (..., 21, 2) px, zr (..., 21)
    and K (..., 3, 3). Finite for any input (a and the discriminant are clamped at eps).

    When c > 0 both roots of the quadratic are positive (the scale bone points far enough
    towards or away from the camera): both put that bone at unit length, and the one whose
    whole skeleton has bone-length ratios closer to `bone_prior` (20,) (default
    :func:`default_bone_prior`) is returned — the wrong root stretches the hand in x, y only.
    """
    xy = _backproject_xy(uv, K)
    m, n = sk.SCALE_BONE
    xn, yn, zn = xy[..., n, 0], xy[..., n, 1], zr[..., n]
    xm, ym, zm = xy[..., m, 0], xy[..., m, 1], zr[..., m]
    a = ((xn - xm) ** 2 + (yn - ym) ** 2).clamp_min(eps)
    cross = xn * xm + yn * ym
    b = 2.0 * (zn * (xn**2 + yn**2 - cross) + zm * (xm**2 + ym**2 - cross))
    c = (xn * zn - xm * zm) ** 2 + (yn * zn - ym * zm) ** 2 + (zn - zm) ** 2 - 1.0
    disc = (b * b - 4.0 * a * c).clamp_min(eps)
    far = (-b + torch.sqrt(disc)) / (2.0 * a)
    near = (-b - torch.sqrt(disc)) / (2.0 * a)
    ambiguous = (near > 0) & (c > 0)
    if not bool(ambiguous.any()):
        return far
    prior = default_bone_prior() if bone_prior is None else torch.as_tensor(bone_prior)
    pick_near = ambiguous & (_bone_prior_cost(uv, zr, K, near, prior)
                             < _bone_prior_cost(uv, zr, K, far, prior))
    return torch.where(pick_near, near, far)


def reconstruct_25d(uv: torch.Tensor, zr: torch.Tensor, K: torch.Tensor,
                    z_root: torch.Tensor | None = None, scale: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """2.5D → camera-space 3D (..., 21, 3): P_k = (Ẑ_root + ẑʳ_k) · K⁻¹(u_k, v_k, 1) · s.

    z_root: scale-normalised root depth (...) (default: the closed form); scale: s (...) in mm
    (default 1: the result stays in scale-normalised units). With the true root and scale this
    is the exact inverse of :func:`to_25d`.
    """
    if z_root is None:
        z_root = root_depth_closed_form(uv, zr, K)
    xy = _backproject_xy(uv, K)
    z = z_root[..., None] + zr
    p = torch.cat([xy * z[..., None], z[..., None]], -1)
    return p if scale is None else p * scale[..., None, None]


class RootRefiner(nn.Module):
    """Refinement of the closed-form root (Spurr et al. ECCV'20; PeCLR's model code):
    input = [ẑʳ (21), back-projected x, y (42), detached clamped Ẑ_root (1)] (64) →
    Linear 128, BN, LeakyReLU → Linear 128, BN, LeakyReLU → Linear 1; output Ẑ_root + residual
    (scale-normalised). Train with L1 against the true Ẑ_root where it is known."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        n_in = sk.NUM_JOINTS * 3 + 1
        self.mlp = nn.Sequential(
            nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)  # starts as the closed form exactly

    def forward(self, uv: torch.Tensor, zr: torch.Tensor, K: torch.Tensor) -> dict:
        """uv (B, 21, 2) px, zr (B, 21), K (B, 3, 3) → {"z_root_closed", "z_root"} (B,).

        Inputs are detached: the refiner is a head on top of the 2.5D pose, and its root loss
        does not reach the pose network (so the pose ablations do not depend on it)."""
        uv, zr = uv.detach(), zr.detach()
        closed = root_depth_closed_form(uv, zr, K).detach().clamp(*ROOT_CLAMP)
        xy = _backproject_xy(uv, K)
        inp = torch.cat([zr, xy.flatten(-2), closed[..., None]], -1)
        return {"z_root_closed": closed, "z_root": closed + self.mlp(inp)[..., 0]}
