"""Dexter+Object (Sridhar et al., ECCV 2016): an evaluation-only set with fingertip labels.

Raw layout (as used by Minimal-Hand-pytorch (MHP) ``datasets/dexter_object.py``; see
dexter_object.md next to this file and the dataset's own documentation)::

    <src>/data/<SEQ>/color/*.png         640x480 colour (Creative Senz3D)
    <src>/data/<SEQ>/depth/*.png         320x240 ToF depth (not used here)
    <src>/data/<SEQ>/annotations/<SEQ>3D.txt   one line per frame: 5 fields "x, y, z" (mm, depth camera)
    <src>/data/<SEQ>/annotations/<SEQ>2D.txt   one line per frame: 5 fields "u, v" (depth pixels)

with SEQ in Grasp1, Grasp2, Occlusion, Pinch, Rigid, Rotate (3,014 frames). The 5 fields are the
fingertips thumb, index, middle, ring, little; z = 32001 marks a missing tip. Lines may carry
more ';'-separated fields (MHP keeps the first 5 columns); so does this recipe.

What this recipe does — nearly everything about D+O is **[U] unverified** (single third-party
source, MHP), so the conversion is kept simple and explicit:

* tips are moved from the depth (ToF) camera to the colour camera the way MHP does:
  X_color = R · diag(−1, −1, 1) · X_stored + t, with MHP's R (≈ I, rotations below 1°) and
  t = (19.0473, −1.8514, −4.7501) mm. The x/y negation is MHP's; it suggests the stored frame
  has x left / y up. [U] Diagnostic: the <SEQ>2D.txt depth-pixel labels are compared with the
  3D tips projected by the depth K both with and without the negation; the medians are logged
  and kept in LAST_STATS (a warning if the data favour no negation);
* kp3d (21, 3) mm in the colour camera, NaN except the valid tips (canonical 4, 8, 12, 16, 20);
  vis True for the valid tips only; kp2d = their projection with the colour K (base);
* side 0: MHP says "all hands in DexterObjectDataset are left hands" [U];
* crop box (Candidate.box): square around the tips' projections, side = max(DO_BOX_MARGIN ×
  their extent, DO_BOX_MIN_MM projected at the tips' mean depth) — the palm and wrist lie
  outside the tips' extent, so the margin is generous;
* no depth (has_depth False: the ToF depth is 320x240 in another camera with an unverified
  codec and the same sign question) and no masks;
* frames with fewer than 2 valid tips are skipped (count logged, LAST_STATS): the
  tip-centroid alignment of the protocol needs at least 2;
* colour images are paired with annotation lines in natural-sorted file order (MHP: sorted
  order), and the counts must agree per sequence.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from weakhand import camera
from weakhand import skeleton as sk
from weakhand.recipes import base

NAME = "dexter_object"
SPLITS = ("test",)
OPTIONS: dict = {}

SEQUENCES = ("Grasp1", "Grasp2", "Occlusion", "Pinch", "Rigid", "Rotate")
EXPECTED_COUNT = 3014  # frames over the 6 sequences (third-party dataset tables)
IMAGE_SHAPE = (480, 640)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
MISSING = 32001.0  # z value of a missing tip

#: Colour camera (Creative Senz3D, MHP).
K_COLOR = np.array([[587.45209, 0.0, 325.0], [0.0, 600.67456, 249.0], [0.0, 0.0, 1.0]])
#: ToF depth camera, 320x240 (MHP) — used only for the 2D diagnostic.
K_DEPTH = np.array([[224.502, 0.0, 160.0], [0.0, 230.494, 120.0], [0.0, 0.0, 1.0]])
#: Depth -> colour extrinsic (MHP `color_extrisics`): X_color = R X + t, X = XY_SIGN * stored.
R_D2C = np.array([[0.9999, 0.0034, 0.0161],
                  [-0.0033, 1.0000, -0.0079],
                  [-0.0162, 0.0079, 0.9998]])
T_D2C = np.array([19.0473, -1.8514, -4.7501])
XY_SIGN = np.array([-1.0, -1.0, 1.0])  # MHP negates x and y of the stored points [U]

TIPS = sk.TIPS  # canonical indices of thumb, index, middle, ring, little tips: [4, 8, 12, 16, 20]
MIN_TIPS = 2
#: crop side = max(DO_BOX_MARGIN x tip extent, DO_BOX_MIN_MM at the tips' mean depth)
DO_BOX_MARGIN = 2.0
DO_BOX_MIN_MM = 240.0

_log = logging.getLogger(__name__)
#: Statistics of the last candidates() call.
LAST_STATS: dict[str, dict] = {}


# ------------------------------------------------------------------------------- helpers

def groups() -> list[str]:
    """Names of the Candidate.group ids (the 6 sequences, fixed order)."""
    return list(SEQUENCES)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def color_files(folder: Path) -> list[Path]:
    """Colour images of a sequence in natural order ("2.png" before "10.png")."""
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS),
                  key=lambda p: _natural_key(p.name))


def read_annotations(path: str | Path, dims: int) -> np.ndarray:
    """(N, 5, dims) float64 from a D+O annotation text (5 ';'-separated fields of `dims`
    comma-separated numbers per line; further fields ignored; blank lines skipped). Missing tips
    (z = 32001 for 3D, any coordinate 32001 for 2D) become NaN rows."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise base.RawDataError(f"{path}: file not found") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin1")
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(";")
        if len(fields) < 5:
            raise base.RawDataError(f"{path}, line {n}: expected 5 ';'-separated fields, got "
                                    f"{len(fields)}: {line[:80]!r}")
        row = []
        for f in fields[:5]:
            try:
                vals = [float(v) for v in f.split(",")]
            except ValueError:
                vals = []
            if len(vals) != dims:
                raise base.RawDataError(f"{path}, line {n}: field {f.strip()!r} is not {dims} "
                                        "comma-separated numbers")
            row.append(vals)
        rows.append(row)
    if not rows:
        raise base.RawDataError(f"{path}: no annotation lines")
    a = np.asarray(rows, np.float64)
    gone = (a[..., 2] == MISSING) if dims == 3 else (a == MISSING).any(-1)
    a[gone] = np.nan
    return a


def stored_to_color(x) -> np.ndarray:
    """(..., 3) stored D+O 3D (mm, depth camera, MHP's x/y sign) -> colour camera, OpenCV, mm."""
    return (np.asarray(x, np.float64) * XY_SIGN) @ R_D2C.T + T_D2C


def tip_box(uv: np.ndarray, z_mean: float, fx: float = K_COLOR[0, 0]) -> np.ndarray:
    """Square crop box (edge coordinates) around the valid tips' projections (M, 2)."""
    box = base.square_box(uv, DO_BOX_MARGIN)
    side = max(box[2] - box[0], fx * DO_BOX_MIN_MM / z_mean)
    c = (box[:2] + box[2:]) / 2
    return np.array([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2])


def _ann(src: Path, seq: str, kind: str) -> Path:
    return src / "data" / seq / "annotations" / f"{seq}{kind}.txt"


# ------------------------------------------------------------------------------- recipe

def layout(src: Path, options: dict) -> list[base.Requirement]:
    reqs = []
    for seq in SEQUENCES:
        reqs.append(base.Requirement(f"data/{seq}/color", f"{seq} colour images (640x480)"))
        reqs.append(base.Requirement(f"data/{seq}/depth", f"{seq} depth images"))
        reqs.append(base.Requirement(f"data/{seq}/annotations/{seq}3D.txt",
                                     f"{seq} fingertip 3D labels"))
        reqs.append(base.Requirement(f"data/{seq}/annotations/{seq}2D.txt",
                                     f"{seq} fingertip 2D labels (depth pixels)"))
    return reqs


def candidates(src: Path, split: str, options: dict) -> list[base.Candidate]:
    src = Path(src)
    if split not in SPLITS:
        raise ValueError(f"{NAME}: unknown split {split!r}; known: {SPLITS}")
    out: list[base.Candidate] = []
    few: list[str] = []
    err_neg, err_raw = [], []
    total = 0
    for group, seq in enumerate(SEQUENCES):
        ann3 = _ann(src, seq, "3D")
        tips3 = read_annotations(ann3, 3)
        images = color_files(src / "data" / seq / "color")
        if len(images) != len(tips3):
            raise base.RawDataError(
                f"{ann3}: {len(tips3)} annotation lines but {len(images)} colour images in "
                f"{src / 'data' / seq / 'color'}; frames are paired by sorted file order")
        tips2 = read_annotations(_ann(src, seq, "2D"), 2)
        if len(tips2) == len(tips3):
            both = np.isfinite(tips3).all(-1) & np.isfinite(tips2).all(-1)
            x = tips3[both]
            err_neg.append(np.linalg.norm(camera.project(K_DEPTH, x * XY_SIGN) - tips2[both], axis=-1))
            err_raw.append(np.linalg.norm(camera.project(K_DEPTH, x) - tips2[both], axis=-1))
        else:
            _log.warning(f"{NAME}: {_ann(src, seq, '2D')} has {len(tips2)} lines, "
                         f"{ann3.name} {len(tips3)}; 2D diagnostic skipped for {seq}")
        total += len(tips3)
        for i, (img, t) in enumerate(zip(images, tips3)):
            valid = np.isfinite(t).all(-1)
            key = f"{seq}/{img.name}"
            if valid.sum() < MIN_TIPS:
                few.append(key)
                continue
            tc = stored_to_color(t)
            if (tc[valid, 2] <= 0).any():
                raise base.RawDataError(f"{ann3}, frame {i}: a fingertip lies behind the colour "
                                        f"camera (z <= 0 after the depth->colour transform)")
            kp3d = np.full((sk.NUM_JOINTS, 3), np.nan)
            kp3d[TIPS[valid]] = tc[valid]
            vis = np.zeros(sk.NUM_JOINTS, bool)
            vis[TIPS[valid]] = True
            uv = camera.project(K_COLOR, tc[valid])
            out.append(base.Candidate(
                key=key, rgb=str(img), K=K_COLOR, side=0, kp3d=kp3d, vis=vis,
                box=tip_box(uv, float(tc[valid, 2].mean())), image_shape=IMAGE_SHAPE,
                raw_index=i, group=group))
    diag = {}
    if err_neg and sum(e.size for e in err_neg):
        diag = {"xy_negated_px": float(np.median(np.concatenate(err_neg))),
                "as_stored_px": float(np.median(np.concatenate(err_raw)))}
        msg = (f"{NAME} [U] x/y sign check, 3D tips vs <SEQ>2D.txt in the depth image: median "
               f"{diag['xy_negated_px']:.2f} px with MHP's x/y negation (used), "
               f"{diag['as_stored_px']:.2f} px as stored")
        # a warning either way: the first real conversion should show this verification
        if diag["as_stored_px"] < diag["xy_negated_px"]:
            _log.warning(msg + " -- the data favour NO negation: check the colour-frame tips "
                         "(they may be mirrored about the principal point)")
        else:
            _log.warning(msg + " -- consistent with MHP's convention")
    LAST_STATS[split] = {"frames": total, "fewer_than_2_tips": len(few), "candidates": len(out),
                         "expected_frames": EXPECTED_COUNT, "skipped_ids": few[:100],
                         "depth_2d_check": diag}
    msg = (f"{NAME}/{split}: {len(out)} frames of {total} (official {EXPECTED_COUNT}); "
           f"{len(few)} with fewer than {MIN_TIPS} valid tips skipped")
    (_log.warning if total != EXPECTED_COUNT else _log.info)(msg)
    return out


def protocol(options: dict) -> dict:
    return {
        "root": "wrist",
        "scale_bone": None,
        "thresholds_mm": "linspace(0, 100, 20) (Sridhar/Mueller/Iqbal curves); MHP uses "
                         "linspace(20, 50, 15)",
        "align": "fingertips only: translate by tip centroid and scale by mean tip-to-centroid "
                 "distance (MHP global_align) — state clearly",
        "eval_split": "test",
        "notes": (
            "Dexter+Object: 6 sequences (Grasp1, Grasp2, Occlusion, Pinch, Rigid, Rotate), "
            "3,014 frames, evaluation only. Only the 5 fingertips are labelled (canonical 4, 8, "
            "12, 16, 20); all other kp3d rows are NaN (joint 0 included), vis marks the valid "
            "tips; score fingertips only, over valid tips, needing >= 2 per frame for the "
            "alignment (frames with fewer were dropped). Alignment: the prediction's tips are "
            "translated to the GT tip centroid and scaled by the ratio of mean tip-to-centroid "
            "distances (MHP global_align, key 'do'). The published Sridhar/Mueller/Iqbal curves use "
            "3D PCK over linspace(0, 100 mm, 20); their exact alignment was not verified here. "
            "Report thresholds and alignment with every number. "
            "[U] unverified: tips moved from the ToF depth camera with MHP's x/y negation and "
            "extrinsic (R ~ I, t = (19.0473, -1.8514, -4.7501) mm); colour K fx 587.45209, "
            "fy 600.67456, cx 325, cy 249; hands are left (side 0) per MHP. No depth, no masks."),
    }
