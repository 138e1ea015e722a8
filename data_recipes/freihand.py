"""FreiHAND v2 (Zimmermann et al., ICCV 2019) -> the workbook's dataset format.

Source root: the folder holding training/, evaluation/ and the *_K.json / *_xyz.json lists
(FreiHAND_pub_v2.zip, with FreiHAND_pub_v2_eval.zip unpacked into the same folder for the
evaluation ground truth). See data_recipes/freihand.md.

* xyz: N x 21 x 3 metres, OpenCV camera frame, already in the canonical joint order.
* Training images come in 4 versions per annotation: image id = idx + 32560 k, k = 0 "gs"
  (green screen), 1 "hom", 2 "sample", 3 "auto"; all share annotation idx and mask idx
  (masks exist for k = 0 ids only). Option `versions`: "gs" (default), "all" or a comma list.
* Right hands only; no visibility labels (all joints count); no depth.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from weakhand.recipes.base import (Candidate, RawDataError, RawLayoutError, Requirement,
                                   expect_shape, read_json)

NAME = "freihand"
SPLITS = ("train", "eval")
OPTIONS = {"versions": "gs"}
VERSIONS = ("gs", "hom", "sample", "auto")
TRAIN_UNIQUE = 32560   # offset between image versions of one annotation
EXPECTED_COUNTS = {"train": 32560, "train_all_versions": 130240, "eval": 3960}
IMAGE_SHAPE = (224, 224)
_RAW = {"train": "training", "eval": "evaluation"}


def parse_versions(value: str) -> list[int]:
    """"gs" | "all" | "gs,hom" -> version indices k."""
    names = list(VERSIONS) if value == "all" else [v.strip() for v in str(value).split(",") if v.strip()]
    bad = [v for v in names if v not in VERSIONS]
    if bad or not names:
        raise ValueError(f"freihand: versions must be 'all' or a comma list of {VERSIONS}, "
                         f"got {value!r}")
    return sorted({VERSIONS.index(v) for v in names})


def layout(src: Path, options: dict) -> list[Requirement]:
    parse_versions(options.get("versions", "gs"))
    reqs = []
    for split in options.get("splits", SPLITS):
        raw = _RAW[split]
        reqs += [Requirement(f"{raw}/rgb", "colour JPEGs"),
                 Requirement(f"{raw}_K.json", "intrinsics list"),
                 Requirement(f"{raw}_xyz.json",
                             "3D keypoints" + (" (from FreiHAND_pub_v2_eval.zip, the evaluation "
                                               "ground-truth package)" if split == "eval" else ""))]
        if split == "train":
            reqs.append(Requirement("training/mask", "hand masks (JPEG, one per annotation)"))
    return reqs


def groups() -> list[str]:
    return list(VERSIONS)


def _lists(src: Path, raw: str) -> tuple[np.ndarray, np.ndarray]:
    K = read_json(src / f"{raw}_K.json")
    xyz = read_json(src / f"{raw}_xyz.json")
    K = expect_shape(K, (-1, 3, 3), str(src / f"{raw}_K.json"))
    xyz = expect_shape(xyz, (-1, 21, 3), str(src / f"{raw}_xyz.json"))
    if len(K) != len(xyz):
        raise RawDataError(f"{src / f'{raw}_xyz.json'}: {len(xyz)} entries but "
                           f"{src / f'{raw}_K.json'} has {len(K)}")
    bad = np.flatnonzero(~np.isfinite(xyz).all(axis=(1, 2)) | ~np.isfinite(K).all(axis=(1, 2)))
    if bad.size:
        raise RawDataError(f"{src / f'{raw}_xyz.json'}: non-finite values at index {int(bad[0])}")
    return K, xyz


def candidates(src: Path, split: str, options: dict) -> list[Candidate]:
    src = Path(src)
    raw = _RAW[split]
    K, xyz = _lists(src, raw)
    versions = parse_versions(options.get("versions", "gs")) if split == "train" else [0]
    cands, missing = [], []
    for k in versions:
        for idx in range(len(xyz)):
            img_id = idx + TRAIN_UNIQUE * k
            rgb = src / raw / "rgb" / f"{img_id:08d}.jpg"
            mask = src / "training" / "mask" / f"{idx:08d}.jpg" if split == "train" else None
            for p in (rgb, mask):
                if p is not None and not p.is_file():
                    missing.append(p)
            cands.append(Candidate(
                key=f"{raw}/{img_id:08d}", rgb=str(rgb), K=K[idx], side=1,
                kp3d=xyz[idx] * 1000.0, mask=None if mask is None else str(mask),
                mask_codec="threshold", image_shape=IMAGE_SHAPE, raw_index=img_id, group=k))
    if missing:
        shown = "\n".join(f"  {p}" for p in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise RawLayoutError(f"freihand/{split}: {len(missing)} image file(s) named by the "
                             f"annotation lists are missing:\n{shown}{more}")
    return cands


def protocol(options: dict) -> dict:
    return {
        "root": "wrist",
        "scale_bone": [9, 10],
        "thresholds_mm": "linspace(0, 50, 100)",
        "align": "unaligned and procrustes (similarity; det(R)=+1 and the FreiHAND-parity "
                 "variant that allows reflections)",
        "eval_split": "eval",
        "eval_keypoints": "all 21 (FreiHAND has no visibility labels)",
        "versions": options.get("versions", "gs"),
        "notes": "FreiHAND v2, right hands only, xyz in metres converted to mm (OpenCV camera "
                 "frame, canonical order as given). Training image versions share the "
                 "annotation and the mask of idx = image id mod 32560. *_scale.json is the "
                 "middle MCP-PIP length, the scale bone used here. Evaluation needs "
                 "evaluation_xyz.json from FreiHAND_pub_v2_eval.zip.",
    }
