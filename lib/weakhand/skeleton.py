"""Canonical 21-joint hand skeleton, dataset keypoint orders and pose normalisation.

Canonical order = FreiHAND / "MPII-hand" / MediaPipe order (finger-major, palm outwards)::

    0 wrist
    1 thumb_mcp (anatomical CMC)  2 thumb_pip (MCP)  3 thumb_dip (IP)  4 thumb_tip
    5 index_mcp    6 index_pip    7 index_dip    8 index_tip
    9 middle_mcp  10 middle_pip  11 middle_dip  12 middle_tip
   13 ring_mcp    14 ring_pip    15 ring_dip    16 ring_tip
   17 little_mcp  18 little_pip  19 little_dip  20 little_tip

The thumb names follow the datasets' labels, not anatomy. Keypoints are (..., 21, 3) in mm,
OpenCV camera frame (x right, y down, z forward), unless a docstring says otherwise. Bone b
joins PARENTS[b + 1] -> b + 1 and is named after its child joint.

Every function accepts numpy arrays or torch tensors with any leading batch dims and returns
the same kind it was given (torch is only touched when a tensor is passed in).
"""
from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray | torch.Tensor


# ----------------------------------------------------------------------------------------------
# numpy / torch dispatch (also used by weakhand.camera)


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor cannot exist unless torch is already imported
    return torch is not None and isinstance(x, torch.Tensor)


def _prep(*xs: Any) -> tuple:
    """All inputs as one backend with a floating dtype.

    If any input is a tensor, all become tensors on its device with the promoted float dtype of
    the tensor inputs (numpy inputs adopt it); otherwise numpy arrays (integers -> float64).
    """
    tensors = [x for x in xs if _is_torch(x)]
    if not tensors:
        out = [np.asarray(x) for x in xs]
        return tuple(a if np.issubdtype(a.dtype, np.inexact) else a.astype(np.float64) for a in out)
    torch = sys.modules["torch"]
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    dev = tensors[0].device
    return tuple(torch.as_tensor(x, dtype=dtype, device=dev) for x in xs)


def _asarray(x: Any) -> Array:
    """Tensor unchanged, anything else as a numpy array (dtype kept)."""
    return x if _is_torch(x) else np.asarray(x)


def _take(x: Array, idx: np.ndarray, axis: int) -> Array:
    """x gathered with integer index array idx along axis."""
    if _is_torch(x):
        torch = sys.modules["torch"]
        return torch.index_select(x, axis, torch.tensor(np.asarray(idx).tolist(), dtype=torch.long, device=x.device))
    return np.take(x, idx, axis=axis)


def _norm(x: Array) -> Array:
    """Euclidean norm over the last axis (torch: zero-safe subgradient)."""
    if _is_torch(x):
        return sys.modules["torch"].linalg.vector_norm(x, dim=-1)
    return np.sqrt((x * x).sum(-1))


def _cat(xs: list, axis: int) -> Array:
    return sys.modules["torch"].cat(xs, axis) if _is_torch(xs[0]) else np.concatenate(xs, axis)


def _stack(xs: list, axis: int, like: Array) -> Array:
    """Stack broadcastable arrays/scalars along a new axis, with the backend and dtype of like."""
    if _is_torch(like):
        torch = sys.modules["torch"]
        ts = [torch.as_tensor(x, dtype=like.dtype, device=like.device) for x in xs]
        return torch.stack(torch.broadcast_tensors(*ts), axis)
    return np.stack(np.broadcast_arrays(*[np.asarray(x, like.dtype) for x in xs]), axis)


def _inv(x: Array) -> Array:
    return sys.modules["torch"].linalg.inv(x) if _is_torch(x) else np.linalg.inv(x)


def _where(c: Array, a: Array, b: Array) -> Array:
    if _is_torch(a):
        torch = sys.modules["torch"]
        return torch.where(c, a, torch.as_tensor(b, dtype=a.dtype, device=a.device))
    return np.where(c, a, b)


def _broadcast_to(x: Array, shape: tuple) -> Array:
    if _is_torch(x):
        return sys.modules["torch"].broadcast_to(x, shape)
    return np.broadcast_to(x, shape)


def _readonly(a: Any) -> np.ndarray:
    a = np.array(a, dtype=np.int64)
    a.setflags(write=False)
    return a


# ----------------------------------------------------------------------------------------------
# skeleton constants

NUM_JOINTS = 21
NUM_BONES = 20
ROOT = 0
FINGER_NAMES = ("thumb", "index", "middle", "ring", "little")
_LINK_NAMES = ("mcp", "pip", "dip", "tip")
JOINT_NAMES = ("wrist",) + tuple(f"{f}_{l}" for f in FINGER_NAMES for l in _LINK_NAMES)

#: (5, 4) joint ids per finger, base (MCP; thumb CMC) -> tip.
FINGERS = _readonly(np.arange(1, NUM_JOINTS).reshape(5, 4))
MCPS = _readonly(FINGERS[:, 0])  # [1, 5, 9, 13, 17]
TIPS = _readonly(FINGERS[:, 3])  # [4, 8, 12, 16, 20]

#: (21,) parent joint id; -1 for the wrist, 0 for the MCPs, i - 1 otherwise.
PARENTS = _readonly([-1] + [0 if i in set(MCPS.tolist()) else i - 1 for i in range(1, NUM_JOINTS)])
#: (20, 2) rows (parent, child); bone index b = child - 1.
BONES = _readonly(np.stack([PARENTS[1:], np.arange(1, NUM_JOINTS)], axis=1))
BONE_NAMES = JOINT_NAMES[1:]

#: Bone ids by layer (BMC naming): wrist->MCP, MCP->PIP, PIP->DIP, DIP->tip; each (5,) thumb..little.
ROOT_BONES = _readonly(MCPS - 1)  # [0, 4, 8, 12, 16]
PIP_BONES = _readonly(MCPS)  # [1, 5, 9, 13, 17]
DIP_BONES = _readonly(MCPS + 1)  # [2, 6, 10, 14, 18]
TIP_BONES = _readonly(MCPS + 2)  # [3, 7, 11, 15, 19]

#: Scale bone: middle MCP -> middle PIP. Z&B's paper text says "first bone of the index finger",
#: but their code (hand3d, "normalized by length of 12->11" in RHD order) and FreiHAND's
#: *_scale.json both use middle MCP-PIP; so do we.
SCALE_BONE = (9, 10)
SCALE_BONE_ID = SCALE_BONE[1] - 1  # = 9

#: Palm-centre construction used by hand3d for RHD: 0.5 * (wrist + middle MCP).
MIDDLE_MCP = 9
#: STB palm -> wrist extrapolation reference (Z&B, Ge et al.): ring MCP, factor 2.
RING_MCP = 13


# ----------------------------------------------------------------------------------------------
# dataset orders: common[i] = source[MAP[i]]


def _ait_map() -> np.ndarray:
    # PeCLR/BMC "ait" order is layer-major: ait id = 1 + finger + 5 * layer, canonical = 1 + 4 * finger + layer.
    finger, layer = np.divmod(np.arange(NUM_JOINTS - 1), 4)
    return np.concatenate([[0], 1 + finger + 5 * layer])


_IDENTITY = np.arange(NUM_JOINTS)
_HO3D = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]

#: Source-order -> canonical index maps, ``canonical[i] = source[ORDERS[name][i]]``.
#:
#: * ``rhd``: per hand; RHD's 42-keypoint arrays hold the left hand at 0-20 and the right at
#:   21-41, so slice ``kp[..., 21:, :]`` (i.e. add 21 to the map) for the right hand. Fingers tip->MCP.
#: * ``stb``: joint 0 is the **palm centre**, not the wrist (see wrist_from_palm_stb); fingers
#:   little->thumb, MCP->tip. An involution.
#: * ``ho3d`` / ``mano``: MANO's 16 joints with the 5 tips appended (HO-3D ``handJoints3D``).
#: * ``ait``: PeCLR/BMC layer-major order (0 wrist, 1-5 MCPs thumb..little, 6-10 PIPs,
#:   11-15 DIPs, 16-20 tips).
#: * ``canonical`` / ``freihand`` / ``mediapipe``: identity.
ORDERS: dict[str, np.ndarray] = {
    "canonical": _readonly(_IDENTITY),
    "freihand": _readonly(_IDENTITY),
    "mediapipe": _readonly(_IDENTITY),
    "rhd": _readonly([0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17]),
    "stb": _readonly([0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4]),
    "ho3d": _readonly(_HO3D),
    "mano": _readonly(_HO3D),
    "ait": _readonly(_ait_map()),
}
_INVERSE = {k: _readonly(np.argsort(v)) for k, v in ORDERS.items()}


def _lookup(order: str, table: dict) -> np.ndarray:
    key = order.lower() if isinstance(order, str) else order
    if key not in table:
        raise ValueError(f"unknown keypoint order {order!r}; known: {', '.join(sorted(ORDERS))}")
    return table[key]


def _check_count(kp: Array, axis: int) -> None:
    n = kp.shape[axis] if -kp.ndim <= axis < kp.ndim else None
    if n != NUM_JOINTS:
        raise ValueError(
            f"expected {NUM_JOINTS} joints on axis {axis}, got shape {tuple(kp.shape)}"
            " (RHD stores 42 keypoints: pass kp[..., :21, :] for the left or kp[..., 21:, :] for the right hand)"
        )


def to_canonical(kp: Array, order: str, axis: int = -2) -> Array:
    """Reorder (..., 21, D) keypoints (or any per-joint data along axis) from order to canonical."""
    kp = _asarray(kp)
    idx = _lookup(order, ORDERS)
    _check_count(kp, axis)
    return _take(kp, idx, axis)


def from_canonical(kp: Array, order: str, axis: int = -2) -> Array:
    """Reorder (..., 21, D) canonical keypoints (or per-joint data along axis) into order."""
    kp = _asarray(kp)
    idx = _lookup(order, _INVERSE)
    _check_count(kp, axis)
    return _take(kp, idx, axis)


# ----------------------------------------------------------------------------------------------
# geometry on canonical keypoints (all D-agnostic unless noted; D = 3 for mm poses)


def bone_vectors(kp: Array) -> Array:
    """(..., 21, D) -> (..., 20, D) child - parent, bone b has child b + 1."""
    kp = _asarray(kp)
    return kp[..., 1:, :] - _take(kp, PARENTS[1:], -2)


def bone_lengths(kp: Array) -> Array:
    """(..., 21, D) -> (..., 20) bone lengths (units of kp, e.g. mm)."""
    return _norm(bone_vectors(kp))


def scale_length(kp: Array) -> Array:
    """(..., 21, D) -> (...) length of SCALE_BONE (middle MCP -> PIP)."""
    kp = _asarray(kp)
    a, b = SCALE_BONE
    return _norm(kp[..., b, :] - kp[..., a, :])


def root_relative(kp: Array) -> Array:
    """(..., 21, D) -> (..., 21, D) with the root (joint 0) moved to the origin."""
    kp = _asarray(kp)
    return kp - kp[..., ROOT : ROOT + 1, :]


def normalize(kp: Array, eps: float = 1e-8) -> tuple:
    """Z&B normalisation: (..., 21, D) -> (kp_norm, root (..., D), scale (...)).

    kp_norm = (kp - root) / scale, with scale = scale_length(kp) (unitless result, scale in the
    units of kp). Raises ValueError if any scale < eps (degenerate pose; would divide by ~0).
    """
    kp = _prep(kp)[0]
    root = kp[..., ROOT, :]
    scale = scale_length(kp)
    if bool((scale < eps).any()):
        raise ValueError(f"degenerate pose: scale bone {SCALE_BONE} shorter than eps={eps}")
    return (kp - root[..., None, :]) / scale[..., None, None], root, scale


def denormalize(kp_norm: Array, root: Array, scale: Array) -> Array:
    """Inverse of normalize: kp_norm (..., 21, D), root (..., D), scale (...) -> (..., 21, D)."""
    kp_norm, root, scale = _prep(kp_norm, root, scale)
    return kp_norm * scale[..., None, None] + root[..., None, :]


def mirror(kp: Array) -> Array:
    """Negate x (axis -1, component 0): turns a left hand into a right one and back.

    3D points in the camera frame (pairs with camera.mirror_K for the flipped image); not for
    pixel coordinates (those flip as u -> width - 1 - u).
    """
    kp = _asarray(kp)
    return _cat([-kp[..., :1], kp[..., 1:]], -1)


def palm_from_wrist(kp: Array) -> Array:
    """(..., 21, D) -> (..., D) palm centre 0.5 * (wrist + middle MCP) (hand3d's RHD palm)."""
    kp = _asarray(kp)
    return 0.5 * (kp[..., ROOT, :] + kp[..., MIDDLE_MCP, :])


def wrist_from_palm_stb(kp: Array, factor: float = 2.0, mcp: int = RING_MCP) -> Array:
    """(..., 21, D) canonical keypoints whose joint 0 is the palm centre (STB) -> (..., D) wrist.

    wrist = kp[mcp] + factor * (palm - kp[mcp]); the defaults (ring MCP, 2.0) are Z&B's and
    Ge et al.'s rule. mcp=9, factor=2.2 is Yang's (BiHand) variant; mcp=9, factor=2.0 inverts
    palm_from_wrist. Reorder STB data with to_canonical(kp, "stb") first.
    """
    kp = _asarray(kp)
    ref = kp[..., mcp, :]
    return ref + factor * (kp[..., ROOT, :] - ref)


def replace_root(kp: Array, root: Array) -> Array:
    """(..., 21, D) with joint 0 replaced by root (..., D); e.g. replace_root(kp, palm_from_wrist(kp))."""
    kp, root = _prep(kp, root)
    root = _broadcast_to(root, kp[..., ROOT, :].shape)
    return _cat([root[..., None, :], kp[..., 1:, :]], -2)


#: The 15 finger joints with a bend angle (MCP, PIP, DIP of each finger; thumb CMC, MCP, IP).
BEND_JOINTS = _readonly(FINGERS[:, :3].reshape(-1))


def joint_bend_angles(kp: Array) -> Array:
    """(..., 21, 3) -> (..., 15) unsigned bend angle (radians) at each BEND_JOINTS joint: the
    angle between the bone entering the joint and the bone leaving it (0 = straight).

    Uses atan2(|a × b|, a · b), which is accurate near 0 and π (unlike a clamped arccos).
    Flexion and abduction are not separated here (that needs the BMC frames).
    """
    b = bone_vectors(kp)
    a, c = _take(b, BEND_JOINTS - 1, -2), _take(b, BEND_JOINTS, -2)
    cross = _stack([a[..., 1] * c[..., 2] - a[..., 2] * c[..., 1],
                    a[..., 2] * c[..., 0] - a[..., 0] * c[..., 2],
                    a[..., 0] * c[..., 1] - a[..., 1] * c[..., 0]], -1, a)
    dot = (a * c).sum(-1)
    if _is_torch(dot):
        return sys.modules["torch"].atan2(_norm(cross), dot)
    return np.arctan2(_norm(cross), dot)
