"""Pinhole camera in the OpenCV convention.

Camera frame: x right, y down, z forward, mm. Pixels: integer coordinates are pixel centres,
pixel i covers [i - 0.5, i + 0.5] (same as cv2.warpAffine / cv2.projectPoints). Intrinsics
K (..., 3, 3) = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] in pixels (skew s allowed).
Matrices called A or H here are 3x3 pixel-space maps acting on homogeneous (u, v, 1).
A grid of output stride s (heatmaps, dense fields) has cell i centred on input pixel
(i + 0.5) * s - 0.5 (:func:`heatmap_to_input`, :func:`input_to_heatmap`).

Every function accepts numpy arrays or torch tensors with broadcastable leading batch dims;
if any argument is a tensor the result is a tensor (numpy arguments adopt its dtype/device).
"""
from __future__ import annotations

import math

import numpy as np

from .skeleton import Array, _cat, _inv, _is_torch, _prep, _stack, _where


def _mat3(rows: list, like: Array) -> Array:
    """3x3 nested list of broadcastable entries -> (..., 3, 3) with like's backend/dtype."""
    m = _stack([e for row in rows for e in row], -1, like)
    return m.reshape(tuple(m.shape[:-1]) + (3, 3))


def _mT(x: Array) -> Array:
    return x.swapaxes(-1, -2) if not _is_torch(x) else x.transpose(-1, -2)


def _hom(uv: Array) -> Array:
    """(..., 2) -> (..., 3) by appending 1."""
    return _cat([uv, uv[..., :1] * 0 + 1], -1)


def heatmap_to_input(idx, stride: float):
    """Cell coordinate(s) of a grid of output stride `stride` (heatmap px) -> input-image pixel
    coordinate(s) (px): (i + 0.5) * stride - 0.5, i.e. cell i summarises the `stride` x `stride`
    block of input pixels [i * stride, (i + 1) * stride - 1]. Any shape, numbers or arrays."""
    return (idx + 0.5) * stride - 0.5


def input_to_heatmap(u, stride: float):
    """Input-image pixel coordinate(s) (px) -> cell coordinate(s) of a grid of output stride
    `stride` (heatmap px): (u + 0.5) / stride - 0.5, the inverse of :func:`heatmap_to_input`."""
    return (u + 0.5) / stride - 0.5


def project(K: Array, X: Array) -> Array:
    """Project camera-frame points X (..., J, 3) [mm] with K (..., 3, 3) -> uv (..., J, 2) [px].

    uv = (K X)[:2] / (K X)[2]. Points with z <= 0 (at or behind the camera) give NaN; gradients
    of the other points stay finite.
    """
    K, X = _prep(K, X)
    p = X @ _mT(K)
    valid = X[..., 2:3] > 0
    w = _where(valid, p[..., 2:3], 1.0)
    return _where(valid, p[..., :2] / w, float("nan"))


def backproject(K: Array, uv: Array, z: Array) -> Array:
    """Lift pixels uv (..., J, 2) at depth z (..., J) [mm] -> X (..., J, 3) [mm]; inverse of project.

    X = z * K^-1 (u, v, 1) (full inverse, so skew is handled).
    """
    K, uv, z = _prep(K, uv, z)
    ray = _hom(uv) @ _mT(_inv(K))
    return ray * (z[..., None] / ray[..., 2:3])


def apply_homography(H: Array, uv: Array) -> Array:
    """Apply pixel maps H (..., 3, 3) to points uv (..., J, 2) -> (..., J, 2) (dehomogenised)."""
    H, uv = _prep(H, uv)
    p = _hom(uv) @ _mT(H)
    return p[..., :2] / p[..., 2:3]


def crop_transform(box: Array, out_size) -> Array:
    """Pixel affine A (..., 3, 3) from the original image to a crop of box resized to out_size.

    box (..., 4) = (x0, y0, x1, y1) in continuous *edge* coordinates: x0 = 0 is the left edge of
    the image and x1 = width its right edge, i.e. pixel i spans [i, i + 1] (centre coordinate
    u = edge - 0.5). out_size = (W, H) or an int for a square crop. Per axis:
    u' = (u - x0 + 0.5) * W / (x1 - x0) - 0.5. cv2.warpAffine(img, A[:2], (W, H)) renders the crop.
    numpy -> float64; torch keeps a float box dtype (float64 for integer boxes).
    Raises ValueError for empty boxes (x1 <= x0 or y1 <= y0).
    """
    if _is_torch(box):
        if not box.dtype.is_floating_point:
            box = box.double()
    else:
        box = np.asarray(box, dtype=np.float64)
    W, H = (out_size, out_size) if np.ndim(out_size) == 0 else out_size
    x0, y0, x1, y1 = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    if bool(((x1 - x0) <= 0).any()) or bool(((y1 - y0) <= 0).any()):
        raise ValueError("crop box must have x1 > x0 and y1 > y0")
    sx, sy = W / (x1 - x0), H / (y1 - y0)
    return _mat3([[sx, 0, (0.5 - x0) * sx - 0.5], [0, sy, (0.5 - y0) * sy - 0.5], [0, 0, 1]], box)


def crop_K(K: Array, box: Array, out_size) -> Array:
    """Intrinsics (..., 3, 3) of the crop described by crop_transform(box, out_size): A @ K."""
    A = crop_transform(box, out_size)
    A, K = _prep(A, K)
    return A @ K


def mirror_K(K: Array, width) -> Array:
    """Intrinsics (..., 3, 3) of the horizontally flipped image (u -> width - 1 - u).

    Paired with skeleton.mirror (x -> -x): project(mirror_K(K, W), mirror(X)) = (W - 1 - u, v).
    cx -> width - 1 - cx and skew s -> -s; width in pixels, scalar or (...).
    """
    K, width = _prep(K, width)
    F = _mat3([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]], K)  # u -> width - 1 - u
    M = _mat3([[-1, 0, 0], [0, 1, 0], [0, 0, 1]], K)  # x -> -x
    return F @ K @ M


def rotation_z(theta: Array) -> Array:
    """Rotation about the optical axis, theta (...) [rad] -> (..., 3, 3).

    Rotates x towards y, i.e. clockwise as seen in the image (y points down).
    """
    (theta,) = _prep(theta)
    c, s = (theta.cos(), theta.sin()) if _is_torch(theta) else (np.cos(theta), np.sin(theta))
    z = c * 0
    return _mat3([[c, -s, z], [s, c, z], [z, z, z + 1]], c)


def homography_rotate_about_axis(K: Array, theta: Array) -> Array:
    """Pixel map H = K R_z(theta) K^-1 (..., 3, 3).

    Warping the image with H equals rotating the scene by R_z(theta) about the optical axis
    (3D labels X -> R_z X, K unchanged); for fx = fy and no skew it is a rotation about (cx, cy).
    """
    K, theta = _prep(K, theta)
    return K @ rotation_z(theta) @ _inv(K)


def similarity_about_center(s: float, theta: float, center, shift=(0.0, 0.0)) -> np.ndarray:
    """Pixel similarity (3, 3) float64: p' = s R(theta) (p - center) + center + shift.

    R(theta) turns u towards v (clockwise as seen in the image, like :func:`rotation_z`); s is
    an isotropic zoom; center and shift in pixels. One sample, plain floats (a data-loader hot
    path)."""
    c, si = math.cos(theta) * s, math.sin(theta) * s
    cx, cy = float(center[0]), float(center[1])
    return np.array([[c, -si, cx + shift[0] - (c * cx - si * cy)],
                     [si, c, cy + shift[1] - (si * cx + c * cy)],
                     [0.0, 0.0, 1.0]])


def scale_about_center(s: Array, center: Array, shift=(0.0, 0.0)) -> Array:
    """Pixel affine (..., 3, 3): p' = s * (p - center) + center + shift.

    s (...) unitless isotropic scale; center (..., 2) and shift (..., 2) in pixels.
    """
    s, center, shift = _prep(s, center, shift)
    tx = (1 - s) * center[..., 0] + shift[..., 0]
    ty = (1 - s) * center[..., 1] + shift[..., 1]
    z = tx * 0
    return _mat3([[s, z, tx], [z, s, ty], [z, z, z + 1]], tx)


def check_pinhole_K(K: np.ndarray, what: str = "K") -> np.ndarray:
    """`K` (3, 3) px as a float64 array if it is a pinhole matrix [[fx, s, cx], [0, fy, cy],
    [0, 0, 1]] with finite entries and fx, fy > 0 (so invertible, not mirrored); else
    ValueError naming `what` and the problem."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{what} is not 3×3 (shape {K.shape})")
    if not np.isfinite(K).all():
        raise ValueError(f"{what} has non-finite entries: {K.tolist()}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0], rtol=0, atol=1e-9) or abs(K[1, 0]) > 1e-9:
        raise ValueError(f"{what} is not a pinhole camera matrix [[fx, s, cx], [0, fy, cy], "
                         f"[0, 0, 1]]: got {K.tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{what} is singular or mirrored: the focal lengths must be positive, "
                         f"got fx = {K[0, 0]:g}, fy = {K[1, 1]:g}")
    return K
