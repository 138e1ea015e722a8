"""STB (Stereo Hand Pose Tracking Benchmark, Zhang et al. 2016/2017): RealSense SK colour stream.

Raw layout (both variants are accepted, per sequence)::

    <src>/images/<SEQ>/SK_color_<i>.png, SK_depth_<i>.png   (or <src>/<SEQ>/...; i = 0..1499,
    <src>/labels/<SEQ>_SK.mat                                 not zero-padded)

with SEQ in B1Counting, B1Random, ..., B6Counting, B6Random. ``handPara`` is (3, 21, N) mm in
the SK *depth* camera frame, STB joint order (palm centre, then little..thumb, MCP->tip).

What this recipe does (see stb.md next to it and the dataset's own documentation):

* labels: transpose to (N, 21, 3), move to the SK colour frame X_color = Rᵀ (X_depth − T)
  (R = Rodrigues(r); the readme's extrinsic maps colour -> depth, X_depth = R X_color + T),
  reorder to the canonical order; root option "palm" (STB's palm centre as joint 0, Z&B's
  evaluation) or "wrist" (wrist = ring_MCP + 2 (palm − ring_MCP), Z&B / Ge et al.);
* 2D labels: none are stored; the shared machinery projects kp3d with the colour K;
* depth: SK_depth (mm = R + 256 G) lives in the depth camera; it is re-projected into the colour
  image (base.register_depth) with the depth K and the same R, T;
* masks: STB has none, so the depth heuristic base.mask_from_depth is used (approximate);
* all hands are left hands (side 0); STB has no visibility flags (all True).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from weakhand import skeleton as sk
from weakhand.recipes import base

NAME = "stb"
SPLITS = ("train", "test")
#: root: "palm" keeps STB's palm centre as joint 0; "wrist" extrapolates the wrist from the
#: ring MCP (wrist = ring_mcp + 2 (palm − ring_mcp)).
OPTIONS = {"root": "palm"}
ROOTS = {
    "palm": "STB palm centre kept as joint 0 (Zimmermann & Brox evaluation, use_wrist_coord=False)",
    "wrist": "wrist = ring_MCP + 2 * (palm - ring_MCP) (Zimmermann & Brox use_wrist_coord=True, "
             "Ge et al. CVPR'19 palm2wrist)",
}

#: The 12 sequences in a fixed order; Candidate.group is the index into this tuple.
SEQUENCES = tuple(f"B{b}{kind}" for b in range(1, 7) for kind in ("Counting", "Random"))
SPLIT_SEQUENCES = {"train": SEQUENCES[2:], "test": SEQUENCES[:2]}
FRAMES_PER_SEQUENCE = 1500
EXPECTED_COUNTS = {s: len(seqs) * FRAMES_PER_SEQUENCE for s, seqs in SPLIT_SEQUENCES.items()}
IMAGE_SHAPE = (480, 640)  # (H, W) of every STB stream

#: Intel RealSense F200 intrinsics (STB readme).
K_COLOR = np.array([[607.92271, 0.0, 314.78337],
                    [0.0, 607.88192, 236.42484],
                    [0.0, 0.0, 1.0]])
K_DEPTH = np.array([[475.62768, 0.0, 336.41179],
                    [0.0, 474.77709, 238.77962],
                    [0.0, 0.0, 1.0]])
#: SK extrinsic (STB readme): X_depth = R X_color + T, R = Rodrigues(R_VEC); T in mm.
R_VEC = np.array([0.00531, -0.01196, 0.00301])
T_DEPTH = np.array([-24.0381, -0.4563, -1.2326])


def rodrigues(r) -> np.ndarray:
    """Rotation vector (3,) -> rotation matrix (3, 3) (same as cv2.Rodrigues)."""
    r = np.asarray(r, np.float64).reshape(3)
    theta = float(np.linalg.norm(r))
    if theta < 1e-12:
        return np.eye(3)
    k = r / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * (kx @ kx)


R_DEPTH = rodrigues(R_VEC)
#: what base.register_depth needs to re-project SK_depth into SK_color (X_d = R X_c + T)
DEPTH_CAMERA = {"K": K_DEPTH, "R": R_DEPTH, "T": T_DEPTH}


def depth_to_color(X_depth) -> np.ndarray:
    """(..., 3) mm, SK depth-camera frame -> SK colour-camera frame: Rᵀ (X − T)."""
    return (np.asarray(X_depth, np.float64) - T_DEPTH) @ R_DEPTH  # row form of Rᵀ (X − T)


def color_to_depth(X_color) -> np.ndarray:
    """(..., 3) mm, SK colour-camera frame -> SK depth-camera frame: R X + T."""
    return np.asarray(X_color, np.float64) @ R_DEPTH.T + T_DEPTH


# ------------------------------------------------------------------------------- helpers

def _root(options: dict) -> str:
    root = options.get("root", OPTIONS["root"])
    if root not in ROOTS:
        raise ValueError(f"{NAME}: unknown value {root!r} for option 'root'; allowed: "
                         + "; ".join(f"{k!r} ({v})" for k, v in ROOTS.items()))
    return root


def _splits(options: dict) -> tuple[str, ...]:
    splits = tuple(options.get("splits") or SPLITS)
    bad = [s for s in splits if s not in SPLIT_SEQUENCES]
    if bad:
        raise ValueError(f"{NAME}: unknown splits {bad}; known: {SPLITS}")
    return splits


def _image_rel(src: Path, seq: str) -> str | None:
    """Relative image folder of `seq`: images/<SEQ> (the readme's layout) or <SEQ> (HAND3D's)."""
    for rel in (f"images/{seq}", seq):
        if (src / rel).is_dir():
            return rel
    return None


def _label_rel(seq: str) -> str:
    return f"labels/{seq}_SK.mat"


def groups() -> list[str]:
    """Names of the Candidate.group ids (the 12 sequences, fixed order)."""
    return list(SEQUENCES)


def split_of(seq: str) -> str:
    return next(s for s, seqs in SPLIT_SEQUENCES.items() if seq in seqs)


def read_labels(path: Path) -> np.ndarray:
    """handPara of one <SEQ>_SK.mat as (N, 21, 3) mm, still in STB order and the depth frame."""
    hp = base.read_mat(path, "handPara")
    if hp.ndim != 3 or hp.shape[:2] != (3, 21) or hp.shape[2] < 1:
        raise base.RawDataError(f"{path}: handPara has shape {hp.shape}, expected (3, 21, N) "
                                f"= (xyz, joint, frame) (N = {FRAMES_PER_SEQUENCE} in STB)")
    hp = base.expect_shape(hp, (3, 21, -1), f"{path}: handPara")
    if not np.isfinite(hp).all():
        raise base.RawDataError(f"{path}: handPara contains non-finite values")
    return np.ascontiguousarray(hp.transpose(2, 1, 0))


def labels_to_canonical(kp_depth: np.ndarray, root: str) -> np.ndarray:
    """(N, 21, 3) STB-order SK labels (depth frame) -> canonical order, colour frame, mm, with
    joint 0 the palm centre (root="palm") or the ring-MCP-extrapolated wrist (root="wrist")."""
    kp = sk.to_canonical(depth_to_color(kp_depth), "stb")
    if root == "wrist":
        kp = sk.replace_root(kp, sk.wrist_from_palm_stb(kp))
    return np.asarray(kp, np.float64)


# ------------------------------------------------------------------------------- protocol

def layout(src: Path, options: dict) -> list[base.Requirement]:
    src = Path(src)
    _root(options)  # an unknown option value fails before anything else
    reqs = []
    for split in _splits(options):
        for seq in SPLIT_SEQUENCES[split]:
            rel = _image_rel(src, seq)
            reqs.append(base.Requirement(
                rel or f"images/{seq}",
                f"{split} image folder of {seq} with SK_color_<i>.png / SK_depth_<i>.png"
                + ("" if rel else f" (or {seq}/ directly under the source root)")))
            reqs.append(base.Requirement(_label_rel(seq), f"{split} labels of {seq} (handPara)"))
    return reqs


def candidates(src: Path, split: str, options: dict) -> list[base.Candidate]:
    src = Path(src)
    root = _root(options)
    if split not in SPLIT_SEQUENCES:
        raise ValueError(f"{NAME}: unknown split {split!r}; known: {SPLITS}")
    vis = np.ones(sk.NUM_JOINTS, bool)
    out: list[base.Candidate] = []
    missing: list[str] = []
    for seq in SPLIT_SEQUENCES[split]:
        group = SEQUENCES.index(seq)
        rel = _image_rel(src, seq)
        if rel is None:
            raise base.RawLayoutError(f"{NAME}: image folder of {seq} not found: "
                                      f"{src / 'images' / seq} (or {src / seq})")
        img_dir = src / rel
        kp = labels_to_canonical(read_labels(src / _label_rel(seq)), root)
        present = {p.name for p in img_dir.iterdir()}
        for i in range(kp.shape[0]):
            rgb, depth = f"SK_color_{i}.png", f"SK_depth_{i}.png"
            missing += [str(img_dir / f) for f in (rgb, depth) if f not in present]
            out.append(base.Candidate(
                key=f"{seq}/SK_{i}", rgb=str(img_dir / rgb), K=K_COLOR, side=0,
                kp2d=None, kp3d=kp[i], vis=vis,
                depth=str(img_dir / depth), depth_codec="stb", depth_camera=DEPTH_CAMERA,
                mask=None, mask_from_depth=True, image_shape=IMAGE_SHAPE,
                raw_index=i, group=group))
    if missing:
        shown = "\n".join(f"  {m}" for m in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise base.RawLayoutError(f"{NAME}/{split}: {len(missing)} image file(s) named by the "
                                  f"labels are missing:\n{shown}{more}")
    return out


def protocol(options: dict) -> dict:
    root = _root(options)
    return {
        "root": root,
        "scale_bone": [9, 10],
        "thresholds_mm": "hand3d linspace(0,50,20); report AUC 20-50 on [8:] (21.05-50) and "
                         "explicit linspace(20,50,100)",
        "align": "root + scale (GT root and scale known), no rotation",
        "eval_split": "test",
        "notes": (
            "STB SK (RealSense F200) colour stream, 640x480, left hands only, no visibility "
            "flags (all visible). Labels moved from the SK depth frame to the colour frame with "
            "X_color = R^T (X_depth - T), R = Rodrigues([0.00531, -0.01196, 0.00301]), "
            "T = [-24.0381, -0.4563, -1.2326] mm. Joint 0 = "
            + ("STB palm centre (Z&B evaluation; not a wrist)" if root == "palm" else
               "wrist extrapolated as ring_MCP + 2 (palm - ring_MCP) (Z&B use_wrist_coord / "
               "Ge et al.); compare with palm-rooted results only after the same conversion")
            + ". Scale bone = middle MCP-PIP (hand3d code; the Z&B paper text says index). "
            "Test = B1Counting + B1Random (3,000), train = B2-B6 (15,000). Depth = SK_depth "
            "re-projected into the colour image (one-pixel splat holes are left at 0); masks "
            "are a depth heuristic (pixels near the 2D skeleton within the keypoints' depth "
            "range +-60 mm), not ground truth."),
    }
