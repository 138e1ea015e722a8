"""Procedural hand anatomy: subject sampling and forward kinematics (batched NumPy).

Hand-local frame of a RIGHT hand (mm): origin at the wrist joint centre, +y distal (towards the
middle finger), +z dorsal (out of the back of the hand), +x = y × z, which points to the ulnar
(little-finger) side; the thumb lies towards -x. Left hands are the mirror image (x → -x), which
`forward_kinematics` applies after posing, so joint angles mean the same thing on both sides.

Anthropometric sources (approximate, adult population):
* hand length (wrist crease to middle fingertip) and hand breadth (metacarpal): Pheasant &
  Haslegrave, *Bodyspace* (3rd ed., 2006), British adults: men 189 ± 10 mm / 87 ± 5 mm,
  women 174 ± 9 mm / 76 ± 4 mm; length–breadth correlation ≈ 0.6.
* segment lengths as fractions of hand length (joint centre to joint centre; distal segment to
  the fingertip): Buchholz, Armstrong & Goldstein, J. Biomech. 25(2), 1992, Table 1.
* finger and palm widths: set from hand breadth so that proximal phalanx diameter ≈ 0.22 ×
  breadth (≈ 19 mm for a 87 mm hand) and palm thickness ≈ 0.3 × breadth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Segment lengths / hand length (Buchholz et al. 1992). Rows: thumb, index, middle, ring, little.
# Columns: metacarpal, proximal, middle (thumb: none), distal phalanx.
BUCHHOLZ = np.array([
    [0.251, 0.196, np.nan, 0.158],
    [0.374, 0.265, 0.143, 0.097],
    [0.373, 0.277, 0.170, 0.108],
    [0.336, 0.259, 0.165, 0.107],
    [0.295, 0.206, 0.117, 0.093],
])
CARPAL_FRACTION = 0.072  # wrist joint centre → metacarpal base, so that the middle finger sums to 1

# Relative finger radius (proximal phalanx) and taper along the three segments.
FINGER_RADIUS = np.array([1.12, 0.95, 1.0, 0.93, 0.82])
SEGMENT_TAPER = np.array([1.0, 0.88, 0.78])

# Part labels written to the `parts` image.
PART_BACKGROUND, PART_ARM, PART_SLEEVE, PART_PALM = 0, 1, 2, 3
PART_FINGER0 = 4  # finger f (thumb..little), segment s (proximal..distal): 4 + 3 f + s
PART_OCCLUDER = 19
NUM_PARTS = 20
HAND_PARTS = tuple(range(PART_PALM, PART_FINGER0 + 15))  # what counts as "hand" in the mask


@dataclass
class Subjects:
    """A batch of B hand subjects. Lengths in mm.

    seg_len: (B,5,3) bone lengths of each finger chain (thumb: CMC→MCP→IP→tip;
        others: MCP→PIP→DIP→tip).
    base: (B,5,3) chain bases in the hand frame at rest (thumb CMC, finger MCPs).
    radius: (B,5,3) capsule radius of each finger segment.
    breadth, length: (B,) hand breadth and length; skin: (B,3) sRGB albedo in [0,1].
    """

    seg_len: np.ndarray
    base: np.ndarray
    radius: np.ndarray
    breadth: np.ndarray
    length: np.ndarray
    skin: np.ndarray

    def take(self, idx: np.ndarray) -> "Subjects":
        """The subjects at `idx` ((M,) ints or a mask): every field indexed on its B axis,
        e.g. seg_len (M, 5, 3) mm."""
        return Subjects(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.length)


# sRGB skin albedos, light → dark (roughly Fitzpatrick I–VI).
SKIN_TONES = np.array([
    [0.95, 0.78, 0.68], [0.89, 0.69, 0.56], [0.80, 0.58, 0.45],
    [0.67, 0.47, 0.34], [0.52, 0.34, 0.23], [0.36, 0.23, 0.16],
])


def sample_subjects(rng: np.random.Generator, n: int, skin_weights=None,
                    size_scale: float = 1.0) -> Subjects:
    """Sample `n` subjects: sex, hand length/breadth, per-segment proportions, widths, skin tone.
    Returns :class:`Subjects` with B = n (lengths in mm, scaled by `size_scale`)."""
    male = rng.random(n) < 0.5
    z = rng.standard_normal((n, 2))
    z[:, 1] = 0.6 * z[:, 0] + np.sqrt(1 - 0.6**2) * z[:, 1]
    z = np.clip(z, -2.5, 2.5)
    length = np.where(male, 189 + 10 * z[:, 0], 174 + 9 * z[:, 0]) * size_scale
    breadth = np.where(male, 87 + 5 * z[:, 1], 76 + 4 * z[:, 1]) * size_scale

    ratios = BUCHHOLZ * rng.normal(1.0, 0.035, (n, 5, 4))
    seg = ratios * length[:, None, None]
    seg_len = np.empty((n, 5, 3))
    seg_len[:, 0] = seg[:, 0][:, [0, 1, 3]]  # thumb chain: metacarpal, proximal, distal
    seg_len[:, 1:] = seg[:, 1:, 1:]
    # Metacarpal lengths (fingers) set the wrist → MCP distances.
    wrist_to_mcp = (CARPAL_FRACTION * rng.normal(1.0, 0.05, (n, 1)) * length[:, None]
                    + seg[:, 1:, 0])

    # Knuckle spacing across the palm (joint centres), middle finger on the hand axis.
    spacing = 0.215 * breadth * rng.normal(1.0, 0.04, n)
    x = spacing[:, None] * np.array([-1.0, 0.0, 0.95, 1.85])[None]
    z_arch = -spacing[:, None] * np.array([0.05, 0.0, 0.12, 0.3])[None]  # transverse palmar arch
    y = np.sqrt(np.maximum(wrist_to_mcp**2 - x**2 - z_arch**2, 1.0))
    base = np.empty((n, 5, 3))
    base[:, 1:, 0], base[:, 1:, 1], base[:, 1:, 2] = x, y, z_arch
    # Thumb CMC: radial, a little distal and volar of the wrist centre.
    base[:, 0] = np.stack([-0.30 * breadth, 0.16 * length, -0.10 * breadth], -1)

    r0 = 0.11 * breadth * rng.normal(1.0, 0.05, n)
    radius = r0[:, None, None] * FINGER_RADIUS[None, :, None] * SEGMENT_TAPER[None, None, :]

    return Subjects(seg_len=seg_len, base=base, radius=radius, breadth=breadth,
                    length=length, skin=_sample_skin(rng, n, skin_weights))


def _sample_skin(rng: np.random.Generator, n: int, weights=None) -> np.ndarray:
    w = np.ones(len(SKIN_TONES)) if weights is None else np.asarray(weights, float)
    idx = rng.choice(len(SKIN_TONES), size=n, p=w / w.sum())
    t = rng.random(n)[:, None]  # blend towards the next tone for a continuum
    nxt = np.minimum(idx + 1, len(SKIN_TONES) - 1)
    skin = (1 - 0.5 * t) * SKIN_TONES[idx] + 0.5 * t * SKIN_TONES[nxt]
    return np.clip(skin * rng.normal(1.0, 0.03, (n, 3)), 0.05, 1.0)


# --------------------------------------------------------------------------- rotations

def rot_x(a: np.ndarray) -> np.ndarray:
    """(...)-shaped angles (rad) → (...,3,3) rotations about x."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                     np.stack([z, s, c], -1)], -2)


def rot_z(a: np.ndarray) -> np.ndarray:
    """(...)-shaped angles (rad) → (...,3,3) rotations about z."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def rot_y(a: np.ndarray) -> np.ndarray:
    """(...)-shaped angles (rad) → (...,3,3) rotations about y."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                     np.stack([-s, z, c], -1)], -2)


def _frame_from_axes(y: np.ndarray, z_hint: np.ndarray) -> np.ndarray:
    """Orthonormal frame (columns x, y, z) with y along `y` and z as close to `z_hint`."""
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    z = z_hint - (z_hint * y).sum(-1, keepdims=True) * y
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(y, z)
    return np.stack([x, y, z], -1)


def rest_frames(subjects: Subjects, palm_cup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chain base positions (B,5,3) and rest frames (B,5,3,3) in the hand frame.

    Frame columns are (flexion axis x, bone direction y, dorsal z). Positive flexion bends the
    bone towards -z (palm side); positive abduction turns it towards -x (radial side).
    `palm_cup` in [0,1] deepens the palmar arch (ring and little metacarpals flex).
    """
    base = subjects.base.copy()
    cup = palm_cup[:, None]
    bre = subjects.breadth[:, None]
    base[:, 1:, 2] -= cup * bre * np.array([0.0, 0.0, 0.08, 0.2])[None]
    base[:, 1:, 0] -= cup * bre * np.array([0.0, 0.0, 0.02, 0.07])[None]
    # Finger rest direction: along the wrist→MCP line, bent slightly towards the hand axis.
    d = base[:, 1:].copy()
    d[..., 0] *= 0.35
    d[..., 2] = 0.0
    z_hint = np.broadcast_to(np.array([0.0, 0.0, 1.0]), d.shape).copy()
    z_hint[..., 0] = cup * np.array([0.0, 0.0, 0.15, 0.35])[None]  # cupped fingers face inward
    frames = np.empty(base.shape + (3,))
    frames[:, 1:] = _frame_from_axes(d, z_hint)
    # Thumb: metacarpal points radially, distally and volarly; it is pronated so that its
    # flexion sweeps it across the palm.
    n = len(base)
    ty = np.broadcast_to(np.array([-0.40, 0.85, -0.35]), (n, 3))
    tz = np.broadcast_to(np.array([-0.80, 0.0, 0.60]), (n, 3))
    frames[:, 0] = _frame_from_axes(ty, tz)
    return base, frames


def forward_kinematics(subjects: Subjects, angles: np.ndarray, palm_cup: np.ndarray,
                       side: np.ndarray) -> np.ndarray:
    """Joint positions (B,21,3) in the hand frame (mm), canonical joint order.

    angles: (B,5,4) radians per chain (thumb first): [base flexion, base abduction,
        middle-joint flexion, distal-joint flexion] (thumb: CMC flex, CMC abd, MCP flex, IP flex).
    side: (B,) 1 = right, 0 = left (mirrored x → -x after posing).
    """
    base, frame = rest_frames(subjects, palm_cup)
    R = frame @ rot_z(angles[..., 1]) @ rot_x(-angles[..., 0])
    pts = [base]
    p = base
    for k, a in enumerate((None, angles[..., 2], angles[..., 3])):
        if a is not None:
            R = R @ rot_x(-a)
        p = p + subjects.seg_len[..., k, None] * R[..., :, 1]
        pts.append(p)
    chains = np.stack(pts, 2)  # (B,5,4,3) base→tip
    kp = np.concatenate([np.zeros((len(base), 1, 3)), chains.reshape(len(base), 20, 3)], 1)
    kp[..., 0] *= np.where(side[:, None] == 1, 1.0, -1.0)
    return kp
