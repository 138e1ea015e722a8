"""Shared helpers for the recipe tests: real-looking hands rendered with a dataset's real
intrinsics, so fixture files written in a raw format have exactly known ground truth."""
from __future__ import annotations

import numpy as np

from weakhand.synth import domains, generator


def render_hands(K: np.ndarray, image_wh: tuple[int, int], n: int, seed: int = 0,
                 p_left: float = 0.0, distance_mm=(350.0, 600.0)) -> dict:
    """Render `n` full frames (W,H = image_wh) with intrinsics K (3,3) or (n,3,3).

    Returns rgb (n,H,W,3) uint8, depth (n,H,W) float32 mm (exact, 0 = none), mask (n,H,W)
    uint8 hand mask, parts (n,H,W) uint8, kp3d (n,21,3) mm camera frame (canonical order),
    kp2d (n,21,2) px, vis (n,21) bool, side (n,) uint8 (1 right).
    """
    style = domains.make_style("render", image_wh=tuple(image_wh), distance_mm=distance_mm,
                               p_occluder=0.0, p_left=p_left, rgb_blur_sigma_px=(0.0, 0.0))
    b = generator.generate_block(style, np.random.default_rng(seed), n, 0, K_full=K,
                                 full_frame=True)
    return {k: b[k] for k in ("rgb", "depth", "mask", "parts", "kp3d", "kp2d", "vis", "side")}
