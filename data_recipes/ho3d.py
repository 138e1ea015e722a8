"""HO-3D v2 / v3 (Hampali et al., CVPR 2020): a right hand manipulating a YCB object, 640x480.

Raw layout (HO-3D README; see ho3d.md next to this file and the dataset's own documentation)::

    <src>/train.txt, <src>/evaluation.txt        one "SEQ/%04d" per line
    <src>/train/<SEQ>/rgb/<id>.png               (v3: .jpg)
    <src>/train/<SEQ>/depth/<id>.png             3-channel, metres = (R + 256 G) * 0.00012498664727900177
    <src>/train/<SEQ>/meta/<id>.pkl              per-frame annotation pickle (Python 2: latin1)
    <src>/evaluation/<SEQ>/{rgb,depth,meta}/...

What this recipe does:

* ``train``: ``handJoints3D`` (21, 3) metres, OpenGL camera frame (+y up, hand at −z) →
  OpenCV (x, −y, −z) → mm → canonical joint order (``skeleton.to_canonical(kp, "ho3d")``,
  MANO's 16 joints + 5 tips). ``camMat`` (per frame) is the colour K. Right hands only (side 1).
  No visibility labels (vis all True). Depth is registered to the colour image and decoded
  exactly (base.decode_depth_ho3d). HO-3D ships no hand masks here, so masks come from the
  depth heuristic base.mask_from_depth (pixels near the 2D skeleton within the keypoints'
  depth range ± 60 mm — it includes object pixels that touch the hand: approximate).
* ``eval``: the raw evaluation meta holds only the ROOT joint (``handJoints3D`` of shape (3,),
  the wrist) and ``handBoundingBox`` [x1, y1, x2, y2] (pixels). Samples carry kp3d with joint 0
  only (other rows NaN), ``has_3d`` True, vis True for joint 0 only, kp2d = the root's
  projection, and a crop box made square around the bounding box (EVAL_BOX_MARGIN). No mask
  (zeros): the depth heuristic needs a skeleton. The full evaluation ground truth
  (``evaluation_xyz.json``, released Nov 2024) is a separate package and is not read here.
* Frames whose annotation is None (``objRot`` or ``handJoints3D`` is None: HO-3D's marker of
  an unannotated frame) are dropped before conversion; their number is logged and kept in
  ``LAST_STATS``.
* Candidate.group indexes the sorted sequence names of the split (``groups()``);
  Candidate.raw_index is the line number (0-based) of the frame in the split list.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from weakhand import camera
from weakhand import skeleton as sk
from weakhand.recipes import base

NAME = "ho3d"
#: annotation files in the dataset's own pickle format (read with a restricted unpickler)
PICKLE_FILES = "train/<SEQ>/meta/<id>.pkl, evaluation/<SEQ>/meta/<id>.pkl"
SPLITS = ("train", "eval")
#: version: "v2" (rgb .png) or "v3" (rgb .jpg; README "Update Jul 2021").
OPTIONS = {"version": "v2"}
VERSIONS = {"v2": ".png", "v3": ".jpg"}

SPLIT_DIRS = {"train": "train", "eval": "evaluation"}
SPLIT_LISTS = {"train": "train.txt", "eval": "evaluation.txt"}
SUBFOLDERS = ("rgb", "depth", "meta")
IMAGE_SHAPE = (480, 640)  # (H, W), colour and depth
#: Official sizes (HO3D utils/vis_utils.py db_size): annotated train frames, evaluation frames.
EXPECTED_COUNTS = {"v2": {"train": 66034, "eval": 11524}, "v3": {"train": 78297, "eval": 20137}}
#: OpenGL -> OpenCV camera axes: X_cv = X_gl @ diag(1, -1, -1).
GL_TO_CV = np.array([1.0, -1.0, -1.0])
#: Eval crops: side = EVAL_BOX_MARGIN x the larger side of handBoundingBox, centred on it. The
#: train crops are 1.5 x the 2D keypoint extent (convert's default margin); a hand's silhouette
#: box is ~1.15 x its keypoint extent (skin around the outer joints), so 1.3 gives eval crops
#: of about the same scale. (candidates() does not receive convert's `margin`.)
EVAL_BOX_MARGIN = 1.3
#: Listing cap for missing sequence folders / frame files (the total is always stated).
LIST_CAP = 20

_ID = re.compile(r"^([A-Za-z0-9_\-]+)/(\d+)$")
_log = logging.getLogger(__name__)

#: Per split, statistics of the last candidates() call: listed, unannotated (skipped), kept.
LAST_STATS: dict[str, dict] = {}
_GROUPS: list[str] = []


# ------------------------------------------------------------------------------- helpers

def _version(options: dict) -> str:
    v = options.get("version", OPTIONS["version"])
    if v not in VERSIONS:
        raise ValueError(f"{NAME}: unknown value {v!r} for option 'version'; allowed: "
                         + ", ".join(f"{k!r} (rgb {e})" for k, e in VERSIONS.items()))
    return v


def _splits(options: dict) -> tuple[str, ...]:
    splits = tuple(options.get("splits") or SPLITS)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"{NAME}: unknown splits {bad}; known: {SPLITS}")
    return splits


def read_split_list(path: str | os.PathLike) -> list[str]:
    """Ids of one HO-3D split list ("SEQ/%04d" per line; blank lines and CRLF tolerated).

    Raises RawDataError naming the file (and line) if it is missing, malformed, empty or has
    duplicate ids."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise base.RawDataError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise base.RawDataError(f"{path}: not a text split list: {e}") from None
    ids, seen = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not _ID.match(line):
            raise base.RawDataError(f"{path}, line {n}: {line[:60]!r} is not 'SEQ/NNNN'")
        if line in seen:
            raise base.RawDataError(f"{path}, line {n}: duplicate id {line!r}")
        seen.add(line)
        ids.append(line)
    if not ids:
        raise base.RawDataError(f"{path}: the split list is empty")
    return ids


def sequences(ids: list[str]) -> list[str]:
    """Sorted unique sequence names of split-list ids."""
    return sorted({i.split("/", 1)[0] for i in ids})


def groups() -> list[str]:
    """Names of the Candidate.group ids of the split converted last (its sorted sequences)."""
    return list(_GROUPS)


def gl_to_cv_mm(x_m) -> np.ndarray:
    """(..., 3) metres, HO-3D's OpenGL camera frame -> mm, OpenCV frame (x, -y, -z)."""
    return np.asarray(x_m, np.float64) * GL_TO_CV * 1000.0


def eval_box(bbox, margin: float = EVAL_BOX_MARGIN) -> np.ndarray:
    """Square crop box (x0, y0, x1, y1), edge coordinates, around handBoundingBox
    [x1, y1, x2, y2] (taken as pixel-centre coordinates, like keypoints): centred on it, side
    = margin x its larger side (base.square_box on its two corners)."""
    b = np.asarray(bbox, np.float64).reshape(4)
    return base.square_box(np.array([[b[0], b[1]], [b[2], b[3]]]), margin)


def _listing(missing: list[str], what: str, indent: str = "  ") -> str:
    shown = "\n".join(f"{indent}{m}" for m in missing[:LIST_CAP])
    more = (f"\n{indent}... and {len(missing) - LIST_CAP} more ({len(missing)} {what} missing "
            "in all)"
            if len(missing) > LIST_CAP else "")
    return shown + more


def _camera(meta: dict, path: Path) -> np.ndarray:
    K = base.expect_shape(meta.get("camMat"), (3, 3), f"{path}: camMat")
    if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0
            and np.allclose(K[2], [0.0, 0.0, 1.0])):
        raise base.RawDataError(f"{path}: camMat is not an OpenCV intrinsic matrix: {K.tolist()}")
    return K


def _annotated(meta: dict, path: Path) -> bool:
    if not isinstance(meta, dict):
        raise base.RawDataError(f"{path}: expected a dict of annotations, got {type(meta).__name__}")
    if "handJoints3D" not in meta:
        raise base.RawDataError(f"{path}: no 'handJoints3D' key (keys: {sorted(meta)[:12]})")
    return meta["handJoints3D"] is not None and meta.get("objRot", 0) is not None


def _in_front(kp_cv: np.ndarray, path: Path) -> None:
    if not np.isfinite(kp_cv).all():
        raise base.RawDataError(f"{path}: handJoints3D contains non-finite values")
    if (kp_cv[..., 2] <= 0).any():
        raise base.RawDataError(
            f"{path}: handJoints3D has joints at z >= 0 in HO-3D's OpenGL frame (behind the "
            "camera; HO-3D hands lie at negative z) — not HO-3D OpenGL coordinates?")


# ------------------------------------------------------------------------------- recipe

def _missing_frames(src: Path, split: str, ids: list[str], version: str) -> list[str]:
    """Paths of the meta/rgb/depth files named by `ids` that do not exist (one listdir per
    folder, so this is cheap even for 66k frames)."""
    d = src / SPLIT_DIRS[split]
    exts = {"meta": ".pkl", "rgb": VERSIONS[version], "depth": ".png"}
    present: dict[tuple[str, str], set] = {}
    missing = []
    for fid in ids:
        seq, frame = fid.split("/")
        for sub, ext in exts.items():
            if (seq, sub) not in present:
                try:
                    present[seq, sub] = set(os.listdir(d / seq / sub))
                except OSError:
                    present[seq, sub] = set()
            if frame + ext not in present[seq, sub]:
                missing.append(str(d / seq / sub / (frame + ext)))
    return missing


def _version_hint(missing: list[str], version: str) -> str:
    """A hint when the rgb images exist with the other version's extension."""
    ext = VERSIONS[version]
    for other, oext in VERSIONS.items():
        if other != version and any(p.endswith(ext) and Path(p).with_suffix(oext).exists()
                                    for p in missing[:50]):
            return (f"\n  (the rgb images exist as {oext}: HO-3D {other}; pass the option "
                    f"version={other!r})")
    return ""


def layout(src: Path, options: dict) -> list[base.Requirement]:
    """Split lists and split folders; the rgb/depth/meta folders of every sequence the lists
    name; and every frame file they name. Everything missing is listed at once (long listings
    capped at LIST_CAP per kind, always with the total)."""
    src = Path(src)
    version = _version(options)
    reqs: list[base.Requirement] = []
    folders: list[str] = []  # missing sequence folders, "path  (what)"
    frames: list[str] = []   # missing frame files
    for split in _splits(options):
        d, lst = SPLIT_DIRS[split], SPLIT_LISTS[split]
        reqs.append(base.Requirement(lst, f"{split} split list, one 'SEQ/NNNN' per line"))
        reqs.append(base.Requirement(d, f"{split} folder with one sub-folder per sequence"))
        if not (src / lst).is_file() or not (src / d).is_dir():
            continue  # the sequences cannot be checked yet
        ids = read_split_list(src / lst)
        complete = set()
        for seq in sequences(ids):
            if not (src / d / seq).is_dir():
                folders.append(f"{src / d / seq}  ({split} sequence {seq} with rgb/, depth/, meta/)")
                continue
            gone = [sub for sub in SUBFOLDERS if not (src / d / seq / sub).is_dir()]
            folders += [f"{src / d / seq / sub}  ({split} sequence {seq}: {sub} folder)"
                        for sub in gone]
            if not gone:
                complete.add(seq)
        frames += _missing_frames(src, split, [i for i in ids if i.split("/")[0] in complete],
                                  version)
    top = [f"{src / r.path}  ({r.what})" for r in reqs if not (src / r.path).exists()]
    if not (top or folders or frames):
        return reqs
    parts = [f"{NAME}: the raw layout under {src} is incomplete; missing:"]
    parts += [f"  {t}" for t in top]
    if folders:
        parts.append(f"  {len(folders)} sequence folder(s) named by the split lists:")
        parts.append(_listing(folders, "sequence folders", "    "))
    if frames:
        parts.append(f"  {len(frames)} frame file(s) named by the split lists:")
        parts.append(_listing(frames, "frame files", "    ") + _version_hint(frames, version))
    raise base.RawLayoutError("\n".join(parts))


def candidates(src: Path, split: str, options: dict) -> list[base.Candidate]:
    global _GROUPS
    src = Path(src)
    version = _version(options)
    if split not in SPLITS:
        raise ValueError(f"{NAME}: unknown split {split!r}; known: {SPLITS}")
    rgb_ext = VERSIONS[version]
    d = src / SPLIT_DIRS[split]
    ids = read_split_list(src / SPLIT_LISTS[split])
    seqs = sequences(ids)
    _GROUPS = seqs
    group_of = {s: i for i, s in enumerate(seqs)}
    missing = _missing_frames(src, split, ids, version)  # layout() checks this too
    if missing:
        raise base.RawLayoutError(
            f"{NAME}/{split}: {len(missing)} file(s) named by {src / SPLIT_LISTS[split]} are "
            f"missing:\n{_listing(missing, 'files')}{_version_hint(missing, version)}")

    out: list[base.Candidate] = []
    skipped: list[str] = []
    vis_all = np.ones(sk.NUM_JOINTS, bool)
    vis_root = np.zeros(sk.NUM_JOINTS, bool)
    vis_root[sk.ROOT] = True
    for raw_index, fid in enumerate(ids):
        seq, frame = fid.split("/")
        meta_path = d / seq / "meta" / f"{frame}.pkl"
        meta = base.read_pickle(meta_path)
        if not _annotated(meta, meta_path):
            skipped.append(fid)
            continue
        K = _camera(meta, meta_path)
        common = dict(key=f"{SPLIT_DIRS[split]}/{fid}", rgb=str(d / seq / "rgb" / (frame + rgb_ext)),
                      K=K, side=1, depth=str(d / seq / "depth" / f"{frame}.png"),
                      depth_codec="ho3d", image_shape=IMAGE_SHAPE, raw_index=raw_index,
                      group=group_of[seq])
        if split == "train":
            kp = base.expect_shape(meta["handJoints3D"], (21, 3), f"{meta_path}: handJoints3D")
            kp_cv = gl_to_cv_mm(kp)
            _in_front(kp_cv, meta_path)
            out.append(base.Candidate(kp3d=np.asarray(sk.to_canonical(kp_cv, "ho3d")),
                                      vis=vis_all, mask_from_depth=True, **common))
        else:
            raw_root = np.asarray(meta["handJoints3D"], dtype=object)
            if raw_root.size != 3:
                raise base.RawDataError(
                    f"{meta_path}: handJoints3D has shape {raw_root.shape}; the evaluation split "
                    "stores only the root joint, shape (3,)")
            root = base.expect_shape(np.asarray(meta["handJoints3D"]).reshape(3), (3,),
                                     f"{meta_path}: handJoints3D (root)")
            root_cv = gl_to_cv_mm(root)
            _in_front(root_cv, meta_path)
            bbox = base.expect_shape(meta.get("handBoundingBox"), (4,),
                                     f"{meta_path}: handBoundingBox")
            if not (np.isfinite(bbox).all() and bbox[2] > bbox[0] and bbox[3] > bbox[1]):
                raise base.RawDataError(f"{meta_path}: handBoundingBox {bbox.tolist()} is not "
                                        "[x1, y1, x2, y2] with x2 > x1, y2 > y1")
            kp3d = np.full((sk.NUM_JOINTS, 3), np.nan)
            kp3d[sk.ROOT] = root_cv
            out.append(base.Candidate(kp3d=kp3d, vis=vis_root, box=eval_box(bbox),
                                      mask_from_depth=False, **common))
    if split == "eval" and out:
        _check_boxes(out)
    LAST_STATS[split] = {"version": version, "listed": len(ids), "unannotated": len(skipped),
                         "candidates": len(out), "expected": EXPECTED_COUNTS[version][split],
                         "unannotated_ids": skipped[:100]}
    msg = (f"{NAME}/{split} ({version}): {len(out)} annotated frames of {len(ids)} listed"
           + (f"; {len(skipped)} without annotation (objRot/handJoints3D None) skipped, e.g. "
              f"{skipped[:3]}" if skipped else "")
           + f"; official count {EXPECTED_COUNTS[version][split]}")
    if skipped or (len(ids) >= EXPECTED_COUNTS[version][split]
                   and len(out) != EXPECTED_COUNTS[version][split]):
        _log.warning(msg)
    else:
        _log.info(msg)
    return out


def _check_boxes(cands: list[base.Candidate]) -> None:
    """Guard on the [U] handBoundingBox order: the root (wrist) projects into (or next to) the
    box for most frames if it is [x1, y1, x2, y2]; a majority outside means another order."""
    far = 0
    for c in cands:
        uv = camera.project(c.K, c.kp3d[sk.ROOT][None])[0]
        x0, y0, x1, y1 = c.box
        pad = 0.5 * (x1 - x0) / EVAL_BOX_MARGIN  # half the bounding box's larger side
        if not (x0 - pad <= uv[0] <= x1 + pad and y0 - pad <= uv[1] <= y1 + pad):
            far += 1
    if far > len(cands) / 2:
        raise base.RawDataError(
            f"{NAME}/eval: the root joint projects far outside handBoundingBox in {far} of "
            f"{len(cands)} frames; the recipe reads it as [x1, y1, x2, y2] (first: {cands[0].key})")
    if far:
        _log.warning(f"{NAME}/eval: the root joint projects far outside handBoundingBox in {far} "
                     f"of {len(cands)} frames")


def protocol(options: dict) -> dict:
    version = _version(options)
    n = EXPECTED_COUNTS[version]
    return {
        "root": "wrist",
        "scale_bone": [0, 9],
        "thresholds_mm": "linspace(0, 50, 100)",
        "align": "unaligned, procrustes (FreiHAND-style), and scale-translation (HO-3D)",
        "eval_split": "eval",
        "notes": (
            f"HO-3D {version}: right hands holding YCB objects, 640x480, per-frame camMat, "
            "labels converted from OpenGL metres to OpenCV mm (x, -y, -z) and from MANO order "
            "(16 joints + 5 tips) to canonical. Official metrics (HO3D eval.py): mean joint "
            "error unaligned, Procrustes-aligned with scale (FreiHAND align_w_scale) and "
            "scale-translation aligned (prediction scaled so |wrist - middle MCP| matches the GT, "
            "canonical bone [0, 9] = native j0->j4, then the wrist translated onto the GT wrist); "
            "AUC over linspace(0, 50 mm, 100). The workbook's standard scale bone is middle "
            "MCP->PIP [9, 10] (Z&B/FreiHAND); use [0, 9] only for the HO-3D scale-translation "
            "metric. Eval GT is root-only in the raw data: the 'eval' split carries only joint 0 "
            "(wrist, 3D and its 2D projection) plus crops around handBoundingBox; full eval GT "
            "(evaluation_xyz.json, native order, OpenGL metres) can be released separately "
            "(GT packages since Nov 2024) and must be reordered/flipped the same way before "
            "scoring. Train masks are a depth heuristic (pixels near the 2D skeleton within the "
            "keypoints' depth range +-60 mm; includes touching object pixels); eval samples have "
            "no mask. vis = 'joint has a label' (HO-3D has no occlusion flags). Unannotated "
            f"frames (objRot None) are dropped. Expected counts: train {n['train']}, eval "
            f"{n['eval']}."),
    }
