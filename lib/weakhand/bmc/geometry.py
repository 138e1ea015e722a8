"""Hand geometry behind the biomechanical constraints (Spurr et al., ECCV 2020), batched torch.

Everything works on the canonical joint order (:mod:`weakhand.skeleton`, FreiHAND/SNAP) of a
**right** hand; left hands are mirrored first (:func:`canonical_pose`), because mirroring flips
the sign of every flexion angle. Inputs may be NumPy arrays or tensors of any float dtype and
device; NumPy in → NumPy out.

Conventions (Spurr et al. ECCV 2020, as in their public re-implementation):

* bones are ``child - parent`` (20 bones, bone ``b`` ends at joint ``b + 1``); the five root bones
  (wrist → MCP) are ordered thumb → little;
* palm plane normals ``n_j = r_{j+1} × r_j`` (next × current), ``j = 1..4``; edge normals
  ``e = (n_1, (n_1+n_2)/|·|, …, n_4)``;
* the 15 *angle bones* are the non-root bones in bone order (thumb PIP/DIP/TIP bone, index …);
  each has a (flexion, abduction) pair in radians, measured in a frame ``(x, y, z)`` whose ``z``
  is the previous bone's direction and whose ``x`` is the inward palm normal ``−n`` (thumb:
  thumb–index plane).  flexion = atan2(b·x, b·z) ∈ (−π, π], abduction = atan2(b·y, |b_xz|)
  ∈ [−π/2, π/2].  Positive flexion bends the finger towards the palm;
* later frames come from the previous one by the minimal rotation taking its ``z`` onto the bone
  (no inverse kinematics).

All angles use atan2 forms and all normalisations are guarded, so straight fingers, collinear
root bones and zero-length bones give finite values and finite gradients.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import skeleton as sk

# the 15 bones that carry (flexion, abduction): every non-root bone, finger-major
ANGLE_BONES = np.array(sorted(set(range(sk.NUM_BONES)) - set(sk.ROOT_BONES.tolist())))
ANGLE_BONE_NAMES = tuple(sk.BONE_NAMES[b] for b in ANGLE_BONES)
NUM_ANGLE_BONES = len(ANGLE_BONES)  # 15
LAYER_NAMES = ("mcp", "pip", "dip")  # joint at which the bone's angle is measured
PAIR_NAMES = tuple(f"{a}-{b}" for a, b in zip(sk.FINGER_NAMES[:-1], sk.FINGER_NAMES[1:]))
_EPS = 1e-8


def angle_bone_index(finger: int | str, layer: int | str) -> int:
    """Index (0..14, an int; unitless) into the (..., 15, 2) angle arrays of finger (0..4 or
    name) at layer (0..2 or 'mcp'/'pip'/'dip': the joint where the bone starts)."""
    f = sk.FINGER_NAMES.index(finger) if isinstance(finger, str) else int(finger)
    l = LAYER_NAMES.index(layer) if isinstance(layer, str) else int(layer)
    if not (0 <= f < 5 and 0 <= l < 3):
        raise ValueError(f"finger {finger!r} / layer {layer!r} out of range (5 fingers, 3 layers)")
    return 3 * f + l


# ----------------------------------------------------------------------------- small helpers
def _as_tensor(x: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    a = np.asarray(x)
    return torch.tensor(a, dtype=torch.float32 if a.dtype == np.float32 else torch.float64), True


def _back(x: torch.Tensor, was_numpy: bool):
    return x.detach().cpu().numpy() if was_numpy else x


def safe_norm(v: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm over ``dim`` of v (..., D) -> (...) (or (..., 1) with keepdim), in v's
    units; its gradient is finite (zero) at v = 0."""
    sq = (v * v).sum(dim, keepdim=keepdim)
    return torch.sqrt(sq.clamp_min(torch.finfo(v.dtype).tiny * 1e6))


def safe_normalize(v: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unit vectors v / max(|v|, eps) along ``dim``, (..., D) -> (..., D) unitless; the zero
    vector stays zero (finite gradient)."""
    return v / safe_norm(v, dim, keepdim=True).clamp_min(_EPS)


def angle_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unsigned angle in [0, π] between (..., 3) vectors, via atan2(|u×v|, u·v).

    Stable gradient near 0 and π, unlike a clamped arccos; 0 when either vector is zero."""
    return torch.atan2(safe_norm(torch.linalg.cross(u, v)), (u * v).sum(-1))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _rotate_minimal(z: torch.Tensor, b_hat: torch.Tensor, vecs: torch.Tensor) -> torch.Tensor:
    """Apply the minimal rotation taking unit z onto unit b_hat to vecs (..., K, 3).

    Rodrigues with an unnormalised axis s = z × b: R v = c v + s × v + s (s·v) / (1 + c),
    c = z·b. Exactly the identity when z ∥ b (a straight finger); 1 + c is guarded (a bone that
    turns back by 180° has no unique minimal rotation).
    """
    c = _dot(z, b_hat)[..., None, None]
    s = torch.linalg.cross(z, b_hat)[..., None, :].expand_as(vecs)
    sv = _dot(s, vecs)[..., None]
    return c * vecs + torch.linalg.cross(s, vecs) + s * sv / (1.0 + c).clamp_min(1e-6)


# ----------------------------------------------------------------------------- normalisation
def canonical_pose(kp3d: Any, is_left: Any = None, normalize: bool = True):
    """Bring poses to the frame the limits live in: (..., 21, 3) → (..., 21, 3).

    Left hands (``is_left`` (...) bool, or ``side == 0`` in the dataset format) are mirrored
    (x → −x); with ``normalize`` the pose is made root-relative and divided by the length of the
    project's scale bone (:data:`weakhand.skeleton.SCALE_BONE`, middle MCP → PIP), so that bone has
    length 1 and the result is unitless. A zero-length scale bone gives a finite (unscaled) pose.
    """
    kp, was_np = _as_tensor(kp3d)
    if is_left is not None:
        left = torch.as_tensor(np.array(is_left) if not isinstance(is_left, torch.Tensor)
                               else is_left, device=kp.device).to(torch.bool)
        sign = torch.where(left, -1.0, 1.0).to(kp.dtype)
        kp = torch.cat([kp[..., :1] * sign[..., None, None], kp[..., 1:]], -1)
    if normalize:
        kp = kp - kp[..., sk.ROOT : sk.ROOT + 1, :]
        a, b = sk.SCALE_BONE
        scale = safe_norm(kp[..., b, :] - kp[..., a, :]).clamp_min(_EPS)
        kp = kp / scale[..., None, None]
    return _back(kp, was_np)


# ----------------------------------------------------------------------------- palm
def palm_normals(root_bones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root bones (..., 5, 3) thumb→little → (plane normals n (..., 4, 3), edge normals (..., 5, 3))."""
    r = root_bones
    n = safe_normalize(torch.linalg.cross(r[..., 1:, :], r[..., :-1, :]))
    mid = safe_normalize(n[..., :-1, :] + n[..., 1:, :])
    e = torch.cat([n[..., :1, :], mid, n[..., -1:, :]], -2)
    return n, e


def palm_features(kp3d: Any) -> dict:
    """Palm structure of (..., 21, 3) poses.

    Returns ``curvature`` (..., 4) (discrete curvature between neighbouring root bones, units of
    1/length) and ``angular_distance`` (..., 4) (radians, angle between neighbouring root bones),
    pairs ordered thumb–index, index–middle, middle–ring, ring–little.
    """
    kp, was_np = _as_tensor(kp3d)
    r = sk.bone_vectors(kp)[..., sk.ROOT_BONES.tolist(), :]
    _, e = palm_normals(r)
    dr = r[..., 1:, :] - r[..., :-1, :]
    de = e[..., 1:, :] - e[..., :-1, :]
    curv = _dot(de, dr) / (dr * dr).sum(-1).clamp_min(_EPS)
    phi = angle_between(r[..., :-1, :], r[..., 1:, :])
    return {"curvature": _back(curv, was_np), "angular_distance": _back(phi, was_np)}


def _first_frames(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Root bones (..., 5, 3) → frames x, y, z (..., 5, 3) of the MCP layer."""
    n, _ = palm_normals(r)
    palm = torch.stack([n[..., 0, :], n[..., 1, :],
                        safe_normalize(n[..., 1, :] + n[..., 2, :]),
                        safe_normalize(n[..., 2, :] + n[..., 3, :]), n[..., 3, :]], -2)
    z = safe_normalize(r)
    x = -palm
    y = safe_normalize(torch.linalg.cross(z, x))
    return x, y, z


def _angles_in_frame(b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor):
    bx, by, bz = _dot(b, x), _dot(b, y), _dot(b, z)
    flex = torch.atan2(bx, bz)
    abd = torch.atan2(by, safe_norm(torch.stack([bx, bz], -1)))
    return torch.stack([flex, abd], -1)


def joint_angles(kp3d: Any) -> Any:
    """(..., 21, 3) right-hand poses → (..., 15, 2) (flexion, abduction) in radians.

    Bone k of the output is ``ANGLE_BONES[k]`` (thumb PIP, DIP, TIP bone, then index, …). Invariant
    to rotation, translation and scale of the pose; mirror left hands first
    (:func:`canonical_pose`).
    """
    kp, was_np = _as_tensor(kp3d)
    bones = sk.bone_vectors(kp)
    fingers = bones.reshape(*bones.shape[:-2], 5, 4, 3)  # (..., finger, link, 3)
    x, y, z = _first_frames(fingers[..., 0, :])
    out = []
    for layer in range(1, 4):  # three layers, all five fingers at once
        b = fingers[..., layer, :]
        out.append(_angles_in_frame(b, x, y, z))
        if layer < 3:
            b_hat = safe_normalize(b)
            x, y = _rotate_minimal(z, b_hat, torch.stack([x, y], -2)).unbind(-2)
            z = b_hat
    ang = torch.stack(out, -2).reshape(*bones.shape[:-2], NUM_ANGLE_BONES, 2)
    return _back(ang, was_np)


def pose_from_angles(kp3d: Any, angles: Any) -> Any:
    """Forward kinematics: re-pose the fingers of (..., 21, 3) hands to (..., 15, 2) angles.

    Keeps the wrist, the MCP joints (palm) and every bone length; the direction of each angle
    bone is rebuilt from its (flexion, abduction) in the propagated frame, so that
    ``joint_angles(pose_from_angles(kp, a)) == a`` for flexion in (−π, π) and abduction in
    (−π/2, π/2). Used by the hull editor's hand preview.
    """
    kp, was_np = _as_tensor(kp3d)
    ang, _ = _as_tensor(angles)
    ang = ang.to(kp)
    batch = torch.broadcast_shapes(kp.shape[:-2], ang.shape[:-2])
    kp, ang = kp.expand(*batch, *kp.shape[-2:]), ang.expand(*batch, *ang.shape[-2:])
    bones = sk.bone_vectors(kp)
    fingers = bones.reshape(*bones.shape[:-2], 5, 4, 3)
    lengths = safe_norm(fingers)
    ang = ang.reshape(*batch, 5, 3, 2)
    x, y, z = _first_frames(fingers[..., 0, :])
    new = [fingers[..., 0, :]]
    for layer in range(1, 4):
        f, a = ang[..., layer - 1, 0], ang[..., layer - 1, 1]
        d = (torch.cos(a)[..., None] * (torch.sin(f)[..., None] * x + torch.cos(f)[..., None] * z)
             + torch.sin(a)[..., None] * y)
        new.append(d * lengths[..., layer : layer + 1])
        if layer < 3:
            x, y = _rotate_minimal(z, d, torch.stack([x, y], -2)).unbind(-2)
            z = d
    new_fingers = torch.stack(new, -2)  # (..., 5, 4, 3) bone vectors
    joints = kp[..., :1, None, :] + torch.cumsum(new_fingers, -2)  # relative to the wrist
    out = torch.cat([kp[..., :1, :], joints.reshape(*kp.shape[:-2], 20, 3)], -2)
    return _back(out, was_np)


def bmc_features(kp3d: Any, is_left: Any = None) -> dict:
    """All constrained quantities of raw poses (..., 21, 3), in the limits' frame.

    Mirrors left hands and normalises by the scale bone first. Returns ``bone_length`` (..., 20)
    (unitless, scale bone = 1), ``curvature`` (..., 4), ``angular_distance`` (..., 4) (rad) and
    ``angles`` (..., 15, 2) (rad).
    """
    kp, was_np = _as_tensor(kp3d)
    kp = canonical_pose(kp, is_left)
    palm = palm_features(kp)
    out = {"bone_length": safe_norm(sk.bone_vectors(kp)), **palm, "angles": joint_angles(kp)}
    return {k: _back(v, was_np) for k, v in out.items()}
