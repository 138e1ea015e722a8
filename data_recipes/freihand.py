"""FreiHAND v2 (Zimmermann et al., ICCV 2019) → the workbook format. See freihand.md.

Raw root = the unpacked FreiHAND_pub_v2.zip, with FreiHAND_pub_v2_eval.zip unpacked into the
same root (it adds evaluation_xyz.json, the evaluation ground truth)::

    training/rgb/%08d.jpg    130,240 images: id = idx + 32560·k, k = 0 gs, 1 hom, 2 sample, 3 auto
    training/mask/%08d.jpg   32,560 JPEG masks, one per idx (shared by all four versions)
    training_K.json training_xyz.json [training_scale.json]
    evaluation/rgb/%08d.jpg  3,960 images
    evaluation_K.json evaluation_xyz.json (eval package)

Annotations are JSON lists indexed by idx: K (N,3,3) px, xyz (N,21,3) metres in the OpenCV
camera frame, already in the canonical joint order. All hands are right hands; there is no
visibility (all 21 joints count) and no depth.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from weakhand.recipes.base import (Candidate, RawDataError, Requirement, expect_shape,
                                   read_json)

NAME = "freihand"
SPLITS = ("train", "eval")
OPTIONS = {"versions": "gs"}

#: training image versions, k = 0..3 (FH `sample_version`); image id = idx + TRAIN_SIZE · k
VERSIONS = ("gs", "hom", "sample", "auto")
TRAIN_SIZE = 32560  # unique training samples (FH db_size); also the id offset between versions
EVAL_SIZE = 3960
IMAGE_SHAPE = (224, 224)
EVAL_PACKAGE = "FreiHAND_pub_v2_eval.zip"
BASE_PACKAGE = "FreiHAND_pub_v2.zip"

_FILES = {  # split -> (folder, K json, xyz json, scale json)
    "train": ("training", "training_K.json", "training_xyz.json", "training_scale.json"),
    "eval": ("evaluation", "evaluation_K.json", "evaluation_xyz.json", "evaluation_scale.json"),
}


def groups() -> list[str]:
    """Names of Candidate.group ids: the training image version k."""
    return list(VERSIONS)


def parse_versions(value) -> list[int]:
    """The `versions` option → sorted version ids k. Accepts "gs", "all", a comma list of
    version names ("gs,hom") or a list/tuple of names. ValueError for anything else."""
    if isinstance(value, str):
        names = [v.strip().lower() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        names = [str(v).strip().lower() for v in value]
    else:
        raise ValueError(f"{NAME}: option versions must be a string like 'gs', 'all' or "
                         f"'gs,hom', got {value!r}")
    if names == ["all"]:
        return list(range(len(VERSIONS)))
    bad = [n for n in names if n not in VERSIONS]
    if bad or not names:
        raise ValueError(f"{NAME}: unknown training image version(s) {bad or names} in "
                         f"versions={value!r}; use 'all' or a comma list of {list(VERSIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{NAME}: versions={value!r} names a version twice")
    return sorted(VERSIONS.index(n) for n in names)


def layout(src: Path, options: dict) -> list[Requirement]:
    src = Path(src)
    versions = parse_versions(options.get("versions", OPTIONS["versions"]))
    splits = options.get("splits", SPLITS)
    req: list[Requirement] = []
    if "train" in splits:
        req += [Requirement("training/rgb", f"training images, from {BASE_PACKAGE}"),
                Requirement("training/mask", f"training hand masks (JPEG, one per gs id), "
                                             f"from {BASE_PACKAGE}"),
                Requirement("training_K.json", f"training intrinsics, from {BASE_PACKAGE}"),
                Requirement("training_xyz.json", f"training 3D keypoints, from {BASE_PACKAGE}")]
        if (src / "training" / "rgb").is_dir():  # else that folder is already listed missing
            req += [Requirement(f"training/rgb/{TRAIN_SIZE * k:08d}.jpg",
                                f"first image of version {VERSIONS[k]!r} (image id = idx + "
                                f"{TRAIN_SIZE}·{k}); versions={options.get('versions')!r}")
                    for k in versions]
    if "eval" in splits:
        req += [Requirement("evaluation/rgb", f"evaluation images, from {BASE_PACKAGE}"),
                Requirement("evaluation_K.json", f"evaluation intrinsics, from {BASE_PACKAGE}"),
                Requirement("evaluation_xyz.json",
                            f"evaluation ground truth: it is not in {BASE_PACKAGE} but in "
                            f"{EVAL_PACKAGE}; unpack that into the same root (its files must "
                            f"sit next to training_xyz.json, not in a sub-folder)")]
    return req


def _read_list(path: Path, item_shape: tuple, what: str) -> np.ndarray:
    """A JSON list of arrays of shape item_shape as (N, *item_shape) float64; RawDataError
    naming the file (and the first bad index) if it is not one, or holds non-finite values."""
    data = read_json(path)
    if not isinstance(data, list):
        raise RawDataError(f"{path}: expected a JSON list of {what} (one per sample), "
                           f"got {type(data).__name__}")
    if not data:
        raise RawDataError(f"{path}: the list of {what} is empty")
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (len(data),) + tuple(item_shape):
        for i, item in enumerate(data):  # find and name the first offending entry
            expect_shape(item, item_shape, f"{path}[{i}] ({what})")
        raise RawDataError(f"{path}: expected {len(data)} {what} of shape {item_shape}")
    bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(1))
    if bad.size:
        raise RawDataError(f"{path}[{bad[0]}] ({what}): non-finite values "
                           f"({bad.size} entries affected)")
    return arr


def _check_K(K: np.ndarray, path: Path) -> None:
    bad_row = ~np.all(np.abs(K[:, 2] - [0.0, 0.0, 1.0]) < 1e-6, axis=1)
    bad_f = (K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)
    bad = np.flatnonzero(bad_row | bad_f)
    if bad.size:
        raise RawDataError(f"{path}[{bad[0]}]: not a pinhole intrinsic matrix (needs fx, fy > 0 "
                           f"and last row [0, 0, 1]): {K[bad[0]].tolist()}")


def _check_xyz(xyz: np.ndarray, path: Path) -> None:
    z = xyz[..., 2]
    if np.median(z) > 20.0:
        raise RawDataError(f"{path}: median depth {np.median(z):.1f} looks like millimetres; "
                           "FreiHAND xyz are metres")
    bad = np.flatnonzero((z <= 0).any(1))
    if bad.size:
        raise RawDataError(f"{path}[{bad[0]}]: keypoints behind the camera (z <= 0); "
                           f"{bad.size} entries affected")


def _check_scale(path: Path, xyz: np.ndarray) -> None:
    """Optional *_scale.json = ‖xyz[9] − xyz[10]‖ (middle MCP–PIP, metres): a cross-check of
    units and joint order. Problems only warn (the file is not used)."""
    if not path.is_file():
        return
    try:
        s = np.asarray(read_json(path), dtype=np.float64).reshape(-1)
    except (RawDataError, TypeError, ValueError) as e:
        warnings.warn(f"{path}: ignored, unreadable ({e})", stacklevel=3)
        return
    if len(s) != len(xyz):
        warnings.warn(f"{path}: ignored, {len(s)} entries but {len(xyz)} keypoint sets",
                      stacklevel=3)
        return
    bone = np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=1)
    rel = np.abs(s - bone) / np.maximum(bone, 1e-9)
    off = np.flatnonzero(~(rel < 0.01))
    if off.size:
        warnings.warn(f"{path}: {off.size} of {len(s)} entries differ by more than 1 % from the "
                      f"middle MCP–PIP length of the xyz file (first at [{off[0]}]: "
                      f"{s[off[0]]:.5f} vs {bone[off[0]]:.5f} m); check the files belong "
                      "together", stacklevel=3)


def load_annotations(src: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(K (N,3,3) px, xyz (N,21,3) metres) of a split, validated."""
    folder, kname, xname, sname = _FILES[split]
    kpath, xpath = Path(src) / kname, Path(src) / xname
    K = _read_list(kpath, (3, 3), "3x3 intrinsic matrices")
    xyz = _read_list(xpath, (21, 3), "21x3 keypoint arrays (metres)")
    if len(K) != len(xyz):
        raise RawDataError(f"{kpath} has {len(K)} entries but {xpath} has {len(xyz)}; both "
                           "must list the same samples (files from different packages or a "
                           "truncated download?)")
    _check_K(K, kpath)
    _check_xyz(xyz, xpath)
    _check_scale(Path(src) / sname, xyz)
    return K, xyz


def candidates(src: Path, split: str, options: dict) -> list[Candidate]:
    src = Path(src)
    K, xyz = load_annotations(src, split)
    kp3d = xyz * 1000.0  # metres → mm; order is already canonical (identity)
    n = len(K)
    vis = np.ones(21, bool)
    if split == "train":
        if n > TRAIN_SIZE:
            raise RawDataError(f"{src / 'training_xyz.json'}: {n} entries, more than the "
                               f"{TRAIN_SIZE} of FreiHAND v2 (image ids idx + {TRAIN_SIZE}·k "
                               "would overlap)")
        versions = parse_versions(options.get("versions", OPTIONS["versions"]))
    else:
        versions = [0]  # only gs exists for the evaluation set
    folder = _FILES[split][0]
    out = []
    for k in versions:
        for idx in range(n):
            image_id = idx + TRAIN_SIZE * k
            mask = (str(src / folder / "mask" / f"{idx:08d}.jpg") if split == "train"
                    else None)  # masks exist for the gs ids only; all versions share them
            out.append(Candidate(
                key=f"{split}/{VERSIONS[k]}/{image_id:08d}",
                rgb=str(src / folder / "rgb" / f"{image_id:08d}.jpg"),
                K=K[idx], side=1, kp2d=None, kp3d=kp3d[idx], vis=vis,
                mask=mask, mask_codec="threshold" if mask else None, mask_from_depth=False,
                image_shape=IMAGE_SHAPE, raw_index=image_id, group=k))
    return out


def protocol(options: dict) -> dict:
    versions = [VERSIONS[k] for k in parse_versions(options.get("versions",
                                                                OPTIONS["versions"]))]
    return {
        "root": "wrist",
        "scale_bone": [9, 10],
        "thresholds_mm": "linspace(0, 50, 100)",
        "align": "procrustes (similarity; report both det(R)=+1 and the FreiHAND-parity "
                 "variant) and unaligned",
        "eval_split": "eval",
        "notes": (
            "FreiHAND v2 eval.py protocol: per-joint Euclidean error over all 21 joints (no "
            "visibility), PCK counts d <= t, AUC per keypoint over linspace(0, 50 mm, 100) "
            "then averaged; report unaligned and Procrustes-aligned (per sample: centre, "
            "Frobenius-normalise, scipy orthogonal_procrustes with scale; FreiHAND does not "
            "exclude reflections, so report it as the parity variant next to the det(R)=+1 "
            "similarity). Scale bone = middle MCP-PIP (9-10), the bone of *_scale.json. "
            "All right hands (side 1). No depth (has_depth False). Train masks are the "
            "JPEG masks of the gs ids (> 127), shared by all versions; eval has no mask. "
            f"Training image versions written: {versions} (group = version id k, "
            f"raw_index = idx + {TRAIN_SIZE}*k); different versions of one idx share "
            "the same pose, so never split train/val across versions of one idx."),
    }
