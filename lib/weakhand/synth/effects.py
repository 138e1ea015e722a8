"""Sensor models (compiled): RGB camera finish and depth-camera artefacts.

Random numbers come from an integer hash of (pixel, channel, per-image seed), so results are
deterministic per seed and independent of thread scheduling.
"""
from __future__ import annotations

import cv2
import numpy as np
from numba import njit, prange

from .raycast import _hash, _hash_int


@njit(cache=True, inline="always")
def _gauss(a, b, c, s):
    """Approximately standard-normal value from 3 hashed uniforms (unit variance)."""
    return (_hash(a, b, c, s) + _hash(a, b, c, s + 101) + _hash(a, b, c, s + 202) - 1.5) * 2.0


@njit(cache=True, inline="always")
def _tri(a, b, c, s):
    """Cheap zero-mean unit-variance noise: triangular from the two 16-bit halves of one hash."""
    h = _hash_int(a, b, c, s)
    return ((h & 0xFFFF) + (h >> 16)) * (2.449489742783178 / 65536.0) - 2.449489742783178


@njit(cache=True, parallel=True, fastmath=True)
def finish_rgb(rgb, gains, gamma, noise_std, seeds, out):
    """Float RGB (B,H,W,3) in [0,1] → uint8 (B,H,W,3): white-balance gains (B,3), gamma (B,)
    (applied through a 1024-entry table), additive noise with std `noise_std` (B,), 0–255 units."""
    B, H, W, _ = rgb.shape
    for i in prange(B):
        sd, s = noise_std[i], seeds[i]
        lut = (np.arange(1025) / 1024.0) ** gamma[i] * 255.0
        for v in range(H):
            for u in range(W):
                for c in range(3):
                    x = min(max(rgb[i, v, u, c] * gains[i, c], 0.0), 1.0)
                    y = lut[int(x * 1024.0)]
                    if sd > 0.0:
                        y += sd * _tri(u, v, c, s)
                    out[i, v, u, c] = np.uint8(min(max(y + 0.5, 0.0), 255.0))


@njit(cache=True, parallel=True, fastmath=True)
def depth_artefacts(depth, normal_z, cam, params, seeds, out):
    """Metric depth (B,H,W) mm → sensor depth in `out` (0 = missing).

    normal_z: (B,H,W) z component of the surface normal (0 where unknown); cam (B,4) (fx, fy,
    cx, cy); params (8,): noise a, noise b (σ = a + b (z/1000)² mm), edge threshold mm,
    p(edge hole), p(grazing hole), p(dropout), quantisation step mm (0 = none), max depth mm.
    """
    B, H, W = depth.shape
    a, b, edge_t, p_edge, p_graze, p_drop, q, zmax = (params[0], params[1], params[2], params[3],
                                                       params[4], params[5], params[6], params[7])
    for i in prange(B):
        s = seeds[i]
        fx, fy, cx, cy = cam[i, 0], cam[i, 1], cam[i, 2], cam[i, 3]
        for v in range(H):
            for u in range(W):
                z = depth[i, v, u]
                if z <= 0.0:
                    out[i, v, u] = 0.0
                    continue
                keep = True
                if p_edge > 0.0:
                    jump = 0.0
                    if u > 0:
                        jump = max(jump, abs(depth[i, v, u - 1] - z))
                    if u < W - 1:
                        jump = max(jump, abs(depth[i, v, u + 1] - z))
                    if v > 0:
                        jump = max(jump, abs(depth[i, v - 1, u] - z))
                    if v < H - 1:
                        jump = max(jump, abs(depth[i, v + 1, u] - z))
                    if jump > edge_t and _hash(u, v, 1, s) < p_edge:
                        keep = False
                nz = normal_z[i, v, u]
                if keep and p_graze > 0.0 and nz != 0.0:
                    xu, yv = (u - cx) / fx, (v - cy) / fy
                    cosang = abs(nz) / np.sqrt(xu * xu + yv * yv + 1.0)
                    if cosang < 0.25 and _hash(u, v, 2, s) < p_graze:
                        keep = False
                if keep and p_drop > 0.0 and _hash(u, v, 3, s) < p_drop:
                    keep = False
                if keep:
                    zn = z + (a + b * (z * 1e-3) ** 2) * _gauss(u, v, 4, s)
                    if q > 0.0:
                        zn = np.floor(zn / q + 0.5) * q
                    out[i, v, u] = zn if 0.0 < zn <= zmax else 0.0
                else:
                    out[i, v, u] = 0.0


def rgb_sensor(rng: np.random.Generator, style, rgbf: np.ndarray) -> np.ndarray:
    """Camera finish for a batch: optics blur (cv2), white balance, gamma, noise, JPEG.
    `rgbf`: (B, H, W, 3) float32 RGB in [0, 1] (blurred in place); returns (B, H, W, 3) uint8 RGB."""
    n = len(rgbf)
    sig = rng.uniform(*style.rgb_blur_sigma_px, n)

    for i in np.flatnonzero(sig > 0.05):  # per-image OpenCV calls (tens of µs each)
        cv2.GaussianBlur(rgbf[i], (0, 0), float(sig[i]), dst=rgbf[i])
    gains = (rng.normal(1.0, style.white_balance_std, (n, 3)) if style.white_balance_std > 0
             else np.ones((n, 3))).astype(np.float32)
    gamma = rng.uniform(*style.gamma, n).astype(np.float32)
    noise = rng.uniform(*style.rgb_noise_std, n).astype(np.float32)
    out = np.empty(rgbf.shape, np.uint8)
    finish_rgb(rgbf, gains, gamma, noise, rng.integers(0, 2**31 - 1, n), out)
    if style.jpeg_quality[1] > 0:
        qual = rng.integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1, n)

        for i in range(n):  # OpenCV codecs expect BGR; the round trip keeps RGB order
            ok, buf = cv2.imencode(".jpg", out[i, :, :, ::-1],
                                   [cv2.IMWRITE_JPEG_QUALITY, int(qual[i])])
            out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return out


def depth_sensor(rng: np.random.Generator, style, depth: np.ndarray, normal_z: np.ndarray,
                 cam: np.ndarray) -> np.ndarray:
    """Depth-sensor model of `style` (noise, holes, dropouts, quantisation; see
    :func:`depth_artefacts`): `depth` (B, H, W) float32 mm from the renderer, `normal_z` (B, H, W)
    (0 where unknown), `cam` (B, 4) (fx, fy, cx, cy) px. Returns (B, H, W) mm, 0 = missing."""
    params = np.array([*style.depth_noise_mm, style.depth_edge_threshold_mm,
                       style.p_depth_edge_hole, style.p_depth_grazing_hole, style.p_depth_dropout,
                       style.depth_quant_mm, style.depth_max_mm], np.float64)
    out = np.empty_like(depth)
    depth_artefacts(depth, normal_z, cam, params, rng.integers(0, 2**31 - 1, len(depth)), out)
    return out
