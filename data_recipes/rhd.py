"""RHD — Rendered Hand Pose Dataset (Zimmermann & Brox, ICCV 2017), v1.1 (see rhd.md).

Raw layout (``src`` = the folder ``RHD_published_v2/`` that RHD_v1-1.zip unpacks to)::

    <set>/color/%05d.png         320x320 RGB
    <set>/depth/%05d.png         R = high byte, G = low byte of round(depth_m / 5 * 65535)
    <set>/mask/%05d.png          uint8 labels: 0 bg, 1 body, 2-17 left hand, 18-33 right hand
    <set>/anno_<set>.pickle      {int id: {'xyz' (42,3) m, 'uv_vis' (42,3), 'K' (3,3)}}

with <set> = training (split "train", 41,258 images) or evaluation ("eval", 2,728).
Keypoints 0-20 are the left hand, 21-41 the right, each wrist + fingers tip->MCP; both hands
are always annotated. One output sample per image by Z&B's mask-area rule (option
``hand="area"``), or one per hand with at least one visible keypoint (``hand="both"``).
Left hands are written as they are (not mirrored) with side = 0.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from weakhand import skeleton as sk
from weakhand.recipes.base import (Candidate, RawDataError, RawLayoutError, Requirement,
                                   expect_shape, read_image, read_pickle)

NAME = "rhd"
#: annotation files in the dataset's own pickle format (read with a restricted unpickler)
PICKLE_FILES = "training/anno_training.pickle, evaluation/anno_evaluation.pickle"
SPLITS = ("train", "eval")
#: output split -> raw set folder
SETS = {"train": "training", "eval": "evaluation"}
OPTIONS = {"hand": "area"}
#: "area": one hand per image, the one with more mask pixels (Z&B / hand3d; tie -> right);
#: "both": one sample per hand that has at least one visible keypoint.
HAND_RULES = ("area", "both")
IMAGE_SHAPE = (320, 320)
#: images per split in RHD v1.1 (= samples written with hand="area")
EXPECTED_COUNTS = {"train": 41258, "eval": 2728}
#: inclusive mask label ranges of each hand (side 0 left, 1 right)
HAND_LABELS = {0: (2, 17), 1: (18, 33)}
ANNO_KEYS = ("xyz", "uv_vis", "K")


def _hand_rule(options: dict) -> str:
    rule = options.get("hand", OPTIONS["hand"])
    if rule not in HAND_RULES:
        raise ValueError(f"{NAME}: option hand={rule!r} is not one of {list(HAND_RULES)}")
    return rule


def layout(src: Path, options: dict) -> list[Requirement]:
    _hand_rule(options)
    reqs = []
    for split in options.get("splits") or SPLITS:
        s = SETS[split]
        reqs += [Requirement(f"{s}/color", f"{split}: colour PNG folder"),
                 Requirement(f"{s}/depth", f"{split}: depth PNG folder"),
                 Requirement(f"{s}/mask", f"{split}: mask PNG folder"),
                 Requirement(f"{s}/anno_{s}.pickle", f"{split}: annotation pickle")]
    return reqs


# ------------------------------------------------------------------------------- annotations

def load_annotations(path: Path) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Read and validate anno_<set>.pickle -> [(id, xyz m (42,3), uv_vis (42,3), K (3,3))],
    sorted by id (float64). Raises RawDataError naming the pickle (and the sample id)."""
    anno = read_pickle(path)
    if not isinstance(anno, dict):
        raise RawDataError(f"{path}: expected a dict keyed by integer sample id, "
                           f"got {type(anno).__name__}")
    if not anno:
        raise RawDataError(f"{path}: the annotation dict is empty")
    out = []
    for sid, rec in anno.items():
        if isinstance(sid, bool) or not isinstance(sid, (int, np.integer)) or sid < 0:
            raise RawDataError(f"{path}: key {sid!r} is not a non-negative integer sample id")
        sid = int(sid)
        if not isinstance(rec, dict):
            raise RawDataError(f"{path}: sample {sid}: expected a dict with keys "
                               f"{list(ANNO_KEYS)}, got {type(rec).__name__}")
        missing = [k for k in ANNO_KEYS if k not in rec]
        if missing:
            raise RawDataError(f"{path}: sample {sid}: missing key(s) {missing} "
                               f"(has {sorted(map(str, rec))})")
        xyz = expect_shape(rec["xyz"], (42, 3), f"{path}: sample {sid} 'xyz'")
        uv_vis = expect_shape(rec["uv_vis"], (42, 3), f"{path}: sample {sid} 'uv_vis'")
        K = expect_shape(rec["K"], (3, 3), f"{path}: sample {sid} 'K'")
        if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0
                and np.allclose(K[2], [0, 0, 1])):
            raise RawDataError(f"{path}: sample {sid} 'K' is not a pinhole intrinsic matrix: "
                               f"{K.tolist()}")
        out.append((sid, xyz, uv_vis, K))
    out.sort(key=lambda r: r[0])
    return out


# ------------------------------------------------------------------------------- hand choice

def hand_areas(labels: np.ndarray) -> tuple[int, int]:
    """(left, right) pixel counts of an RHD mask: labels 2..17 and 18..33."""
    counts = np.bincount(np.asarray(labels, np.uint8).ravel(), minlength=256)
    (l0, l1), (r0, r1) = HAND_LABELS[0], HAND_LABELS[1]
    return int(counts[l0:l1 + 1].sum()), int(counts[r0:r1 + 1].sum())


def choose_side(left_px: int, right_px: int) -> int:
    """Z&B (hand3d BinaryDbReader): left (0) if it has more mask pixels, else right (1)."""
    return 0 if left_px > right_px else 1


def read_mask(path: Path) -> np.ndarray:
    """An RHD mask PNG as a (320, 320) uint8 label image (RawDataError naming the file)."""
    m = read_image(path, cv2.IMREAD_UNCHANGED)
    if m.ndim == 3 and m.shape[2] >= 3 and (m[..., :3] == m[..., :1]).all():
        m = m[..., 0]  # a label image saved as grey RGB: same labels
    if m.ndim != 2 or m.dtype != np.uint8:
        raise RawDataError(f"{path}: expected a single-channel 8-bit label image, got shape "
                           f"{m.shape} {m.dtype}")
    if m.shape != IMAGE_SHAPE:
        raise RawDataError(f"{path}: mask shape {m.shape} differs from the expected {IMAGE_SHAPE}")
    return m


def _mask_side(path: Path) -> int:
    return choose_side(*hand_areas(read_mask(path)))


# ------------------------------------------------------------------------------- candidates

def _hand(xyz_m: np.ndarray, uv_vis: np.ndarray, side: int):
    """Canonical kp3d mm (21,3), kp2d px (21,2), vis (21,) of one hand of the 42 keypoints."""
    sl = slice(0, 21) if side == 0 else slice(21, 42)
    kp3d = sk.to_canonical(xyz_m[sl] * 1000.0, "rhd")
    kp2d = sk.to_canonical(uv_vis[sl, :2], "rhd")
    vis = sk.to_canonical(uv_vis[sl, 2], "rhd", axis=0) == 1
    return kp3d, kp2d, vis


def candidates(src: Path, split: str, options: dict) -> list[Candidate]:
    rule = _hand_rule(options)
    s = SETS[split]
    root = Path(src) / s
    anno = load_annotations(root / f"anno_{s}.pickle")
    names = [f"{sid:05d}.png" for sid, *_ in anno]
    # every image of every annotated sample, listed all at once before any decoding
    missing = [p for n in names for p in (root / "color" / n, root / "depth" / n, root / "mask" / n)
               if not os.path.isfile(p)]
    if missing:
        shown = "\n".join(f"  {p}" for p in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise RawLayoutError(f"{NAME}/{split}: {len(missing)} image file(s) of samples annotated "
                             f"in {root / f'anno_{s}.pickle'} are missing:\n{shown}{more}")
    if rule == "area":
        # the choice needs each mask (about 0.3 ms each; threads: cv2 releases the GIL)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as ex:
            sides = [[side] for side in ex.map(_mask_side, [root / "mask" / n for n in names])]
    else:
        sides = [[side for side in (0, 1) if (uv[21 * side:21 * side + 21, 2] == 1).any()]
                 for _, _, uv, _ in anno]
    out = []
    for (sid, xyz, uv_vis, K), name, hand_sides in zip(anno, names, sides):
        for side in hand_sides:
            kp3d, kp2d, vis = _hand(xyz, uv_vis, side)
            lo, hi = HAND_LABELS[side]
            out.append(Candidate(
                key=f"{s}/{sid:05d}:{'left' if side == 0 else 'right'}",
                rgb=str(root / "color" / name), K=K, side=side,
                kp2d=kp2d, kp3d=kp3d, vis=vis,
                depth=str(root / "depth" / name), depth_codec="rhd",
                mask=str(root / "mask" / name), mask_codec=f"labels:{lo}-{hi}",
                image_shape=IMAGE_SHAPE, raw_index=sid))
    return out


# ------------------------------------------------------------------------------- protocol

def protocol(options: dict) -> dict:
    rule = _hand_rule(options)
    return {
        "root": "wrist",
        "scale_bone": [9, 10],
        "thresholds_mm": "hand3d: linspace(0,50,20), AUC 20-50 on [8:] (21.05-50) and explicit "
                         "linspace(20,50,100)",
        "align": "root + scale (GT root and GT middle MCP-PIP length assumed known; no rotation)",
        "eval_split": "eval",
        "hand_selection": rule,
        "eval_keypoints": "visible only (uv_vis[:, 2] == 1), as hand3d eval_full.py",
        "notes": ("RHD v1.1, one hand per image by Z&B's mask-area rule (left labels 2-17 vs "
                  "right 18-33, tie -> right)" if rule == "area" else
                  "RHD v1.1, one sample per hand with >= 1 visible keypoint (NOT Z&B's "
                  "protocol: eval counts differ from 2,728)")
                 + ". Left hands are stored unmirrored with side=0 (HandDataset(mirror_left=True) "
                   "mirrors them). Written kp3d joint 0 is the wrist; hand3d's published numbers "
                   "are palm-relative (palm = 0.5*(wrist + middle MCP), "
                   "skeleton.palm_from_wrist / replace_root). Scale bone = middle MCP->PIP as in "
                   "hand3d code (bone 12->11 in RHD order; the paper text says index). "
                   "No Procrustes.",
    }
