"""Hand pose sampling within biomechanical limits, with joint coupling and gesture families.

Angles are per chain (thumb, index, middle, ring, little) × [base flexion, base abduction,
middle-joint flexion, distal-joint flexion], in radians (see `anatomy.forward_kinematics`).

Active ranges of motion (degrees) are textbook values for healthy adults (e.g. Hume et al.,
J. Hand Surg. 15A, 1990; American Academy of Orthopaedic Surgeons ROM tables); the DIP ≈ 2/3 PIP
coupling follows Rijpkema & Girard (1991). Abduction shrinks as the MCP flexes (collateral
ligaments tighten), which the sampler applies.
"""
from __future__ import annotations

import numpy as np

DEG = np.pi / 180.0

# LIMITS[chain, dof] = (min, max) in degrees; dof = base flex, base abd, mid flex, distal flex.
LIMITS_DEG = np.array([
    [[-25, 55], [-15, 60], [-10, 65], [-20, 85]],     # thumb: CMC flex/abd, MCP, IP
    [[-30, 92], [-20, 25], [-5, 110], [-10, 88]],      # index (abd + = radial)
    [[-30, 95], [-18, 18], [-5, 110], [-10, 88]],      # middle
    [[-30, 95], [-22, 14], [-5, 110], [-10, 88]],      # ring
    [[-35, 98], [-30, 12], [-5, 110], [-10, 88]],      # little
], dtype=float)
LIMITS = LIMITS_DEG * DEG

FAMILIES = ("random", "open", "fist", "point", "pinch", "count1", "count2", "count3",
            "count4", "count5", "grasp")

# Finger templates (degrees): (mcp flex, pip flex, spread fraction) for extended / curled /
# half-curled fingers, and thumb templates (cmc flex, cmc abd, mcp flex, ip flex).
_EXT = (5.0, 5.0)
_CURL = (85.0, 100.0)
_THUMB = {  # fitted by grid search against the anatomy's fingertip targets (see tests)
    "out": (-15.0, 25.0, 5.0, 5.0),
    "over": (-10.0, -5.0, 65.0, 80.0),    # folded over the curled index/middle (fist)
    "across": (10.0, -10.0, 65.0, 80.0),  # across the palm (counting four)
    "pinch": (-5.0, 0.0, 45.0, 40.0),     # tip on the index tip
    "oppose": (15.0, 25.0, 45.0, 40.0),   # opposed to the fingers (grasp)
}
# family → (per finger 1..4 state in {"ext","curl","half","pinch"}, thumb template, spread)
_TEMPLATES = {
    "open": (("ext",) * 4, "out", 0.8),
    "fist": (("curl",) * 4, "over", 0.0),
    "point": (("ext", "curl", "curl", "curl"), "over", 0.0),
    "pinch": (("pinch", "half", "half", "half"), "pinch", 0.2),
    "count1": (("ext", "curl", "curl", "curl"), "over", 0.0),
    "count2": (("ext", "ext", "curl", "curl"), "over", 0.5),
    "count3": (("ext", "ext", "ext", "curl"), "across", 0.4),
    "count4": (("ext", "ext", "ext", "ext"), "across", 0.5),
    "count5": (("ext", "ext", "ext", "ext"), "out", 0.7),
    "grasp": (("half", "half", "half", "half"), "oppose", 0.1),
}
_STATES = {"ext": _EXT, "curl": _CURL, "half": (45.0, 55.0), "pinch": (40.0, 60.0)}


def _couple_and_clip(angles: np.ndarray, rng: np.random.Generator, jitter_deg: float) -> np.ndarray:
    """DIP follows PIP (2/3 ratio), abduction shrinks with MCP flexion, all clipped to limits."""
    n = len(angles)
    fingers = angles[:, 1:]
    fingers[..., 3] = (2.0 / 3.0) * fingers[..., 2] + rng.normal(0, 6 * DEG, (n, 4))
    flex = np.clip(fingers[..., 0], 0, None)
    fingers[..., 1] *= 1.0 - 0.6 * np.clip(flex / (90 * DEG), 0, 1)
    angles += rng.normal(0, jitter_deg * DEG, angles.shape) * np.array([1, 0.5, 1, 0.5])
    return np.clip(angles, LIMITS[..., 0], LIMITS[..., 1])


def _random_angles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Broad random poses: a shared curl with correlated per-finger deviations (enslaving)."""
    lo, hi = LIMITS[..., 0], LIMITS[..., 1]
    g = rng.beta(0.8, 0.8, (n, 1))
    dev = rng.normal(0, 0.28, (n, 4))
    dev[:, 3] = 0.6 * dev[:, 2] + 0.8 * dev[:, 3]  # ring and little move together
    curl = np.clip(g + dev, 0, 1)
    a = np.empty((n, 5, 4))
    a[:, 1:, 0] = -15 * DEG + curl * (hi[1:, 0] + 15 * DEG) * rng.uniform(0.6, 1.0, (n, 4))
    a[:, 1:, 2] = curl * hi[1:, 2] * rng.uniform(0.5, 1.0, (n, 4))
    spread = rng.uniform(-0.3, 1.0, (n, 1))
    a[:, 1:, 1] = spread * np.where(np.arange(4) < 2, hi[1:, 1], lo[1:, 1])[None] \
        * np.array([1.0, 0.2, 1.0, 1.0])
    a[:, 1:, 3] = 0.0
    a[:, 0] = lo[0] + rng.random((n, 4)) * (hi[0] - lo[0])
    return a


def _family_angles(rng: np.random.Generator, family: str, n: int) -> np.ndarray:
    states, thumb, spread = _TEMPLATES[family]
    a = np.zeros((n, 5, 4))
    for f, st in enumerate(states, start=1):
        mcp, pip = _STATES[st]
        a[:, f, 0], a[:, f, 2] = mcp * DEG, pip * DEG
    spread_n = np.clip(spread + rng.normal(0, 0.2, (n, 1)), -0.2, 1.0)
    abd_dir = np.array([LIMITS[1, 1, 1], 0.0, LIMITS[3, 1, 0], LIMITS[4, 1, 0]])
    a[:, 1:, 1] = spread_n * abd_dir[None]
    a[:, 0] = np.array(_THUMB[thumb]) * DEG
    return a


def sample_poses(rng: np.random.Generator, n: int, family_weights: dict[str, float],
                 jitter_deg: float = 7.0, cup_range=(0.0, 0.6)) -> dict[str, np.ndarray]:
    """Sample `n` poses. Returns angles (n,5,4) rad, palm_cup (n,), family (n,) int16 index
    into FAMILIES. Families are drawn with `family_weights` (unknown names → ValueError)."""
    unknown = set(family_weights) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown pose families {sorted(unknown)}; known: {FAMILIES}")
    names = list(family_weights)
    w = np.array([family_weights[k] for k in names], float)
    fam = rng.choice(len(names), size=n, p=w / w.sum())
    angles = np.empty((n, 5, 4))
    for i, name in enumerate(names):  # loop over families (≤ 11), vectorised within
        sel = np.flatnonzero(fam == i)
        if len(sel):
            angles[sel] = (_random_angles(rng, len(sel)) if name == "random"
                           else _family_angles(rng, name, len(sel)))
    angles = _couple_and_clip(angles, rng, jitter_deg)
    fam_idx = np.array([FAMILIES.index(k) for k in names], np.int16)[fam]
    cup = rng.uniform(*cup_range, n)
    cup = np.where(np.isin(fam_idx, [FAMILIES.index(k) for k in ("fist", "grasp", "pinch")]),
                   np.clip(cup + 0.3, 0, 1), cup)
    return {"angles": angles, "palm_cup": cup, "family": fam_idx}
