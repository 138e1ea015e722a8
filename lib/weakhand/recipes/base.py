"""Shared machinery of the dataset conversion recipes (data_recipes/<name>.py stay thin).

A recipe describes a raw dataset: the files it must find (`layout`), and per split a list of
`Candidate`s — one per output sample, already in the workbook's conventions (canonical joint
order, millimetres, OpenCV camera frame of the colour image, full-image pixels). This module
does the rest, identically for every dataset:

1. checks the raw layout and lists *everything* missing before any work;
2. decodes images, depth (exact per-dataset codecs, no uint8 overflow) and masks in parallel
   worker processes;
3. crops a square around the hand, resizes to `size` and computes the crop's K;
4. validates each sample (kp3d projects onto kp2d within 1 px, plausible bone lengths, depth at
   visible joints agrees with kp3d) and rejects, with a reason, what fails;
5. writes all splits atomically (a temporary folder moved into place at the end, so a failed or
   interrupted conversion leaves nothing; re-running redoes it cleanly) with provenance.

A raw file that is missing, truncated or corrupt stops the conversion with `RawDataError`
naming the file and the problem; nothing is written.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import cv2
import numpy as np

from .. import camera
from .. import io as _io
from .. import skeleton as sk
from ..data.format import DatasetWriter
from ..progress import progress


class RawDataError(Exception):
    """A raw dataset file is missing, unreadable, truncated or has unexpected content."""


class RawLayoutError(RawDataError):
    """Files or folders the recipe needs are missing (the message lists all of them)."""


# ------------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class Requirement:
    """A path (relative to the source root; may contain glob wildcards) that must exist."""
    path: str
    what: str = ""
    min_count: int = 1  # for glob patterns: at least this many matches


def check_layout(src: str | os.PathLike, requirements: Iterable[Requirement],
                 dataset: str = "dataset") -> None:
    """Raise RawLayoutError listing every missing requirement (with where it was expected)."""
    src = Path(src)
    if not src.is_dir():
        raise RawLayoutError(f"{dataset}: source folder {src} does not exist")
    missing = []
    for req in requirements:
        if any(ch in req.path for ch in "*?["):
            n = sum(1 for _ in src.glob(req.path))
            if n < req.min_count:
                missing.append(f"  {src / req.path}  ({req.what or 'files'}: found {n}, "
                               f"need at least {req.min_count})")
        elif not (src / req.path).exists():
            missing.append(f"  {src / req.path}" + (f"  ({req.what})" if req.what else ""))
    if missing:
        raise RawLayoutError(f"{dataset}: the raw layout under {src} is incomplete; missing:\n"
                             + "\n".join(missing))


# ------------------------------------------------------------------------------- readers

def read_image(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR,
               shape: tuple | None = None) -> np.ndarray:
    """Read an image; colour images are returned in RGB order (OpenCV reads BGR).

    `flags=cv2.IMREAD_UNCHANGED` returns the raw channels in the file's order (BGR[A]) — what
    depth decoders want. Raises RawDataError naming the file if it is missing/corrupt or its
    shape differs from `shape` (checked on the first len(shape) dimensions)."""
    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: file not found")
    img = cv2.imread(str(path), flags)
    if img is None:
        raise RawDataError(f"{path}: cannot decode image (corrupt or truncated file?)")
    if flags == cv2.IMREAD_COLOR:
        img = img[..., ::-1]
    if shape is not None and tuple(img.shape[:len(shape)]) != tuple(shape):
        raise RawDataError(f"{path}: image shape {img.shape} differs from the expected {shape}")
    return np.ascontiguousarray(img)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise RawDataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RawDataError(f"{path}: not valid JSON (truncated?): {e}") from None
    except OSError as e:
        raise RawDataError(f"{path}: cannot read: {e}") from None


#: Why some recipes read pickles at all, printed by the converter and kept in the manifest.
PICKLE_NOTICE = ("{dataset}'s own annotation format is Python pickle ({files}). Unpickling can "
                 "run code, so weakhand reads these files with a restricted unpickler that only "
                 "rebuilds NumPy arrays and plain containers and refuses anything else; still, "
                 "convert only a copy downloaded from the dataset's official source that you "
                 "trust.")

# the only globals a dataset annotation pickle may reference: NumPy array/scalar/dtype
# reconstruction and plain containers (no callables that run commands or import code)
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("collections", "OrderedDict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("builtins", "slice"), ("builtins", "bytearray"), ("__builtin__", "set"),
    ("__builtin__", "frozenset"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
    ("_codecs", "encode"),  # bytes in protocol 0-2 pickles: encode(str, "latin1")
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: a dataset annotation pickle may only hold "
            "NumPy arrays and plain containers (this file could run code; is it the original "
            "download?)")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in annotation pickles")


def read_pickle(path: str | os.PathLike) -> Any:
    """Load a dataset's annotation pickle (RHD ``anno_*.pickle``, HO-3D ``meta/*.pkl``) with a
    restricted unpickler (NumPy arrays and plain containers only; see :data:`PICKLE_NOTICE`),
    falling back to latin1 (Python 2 pickles, e.g. HO-3D meta)."""
    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: file not found")
    errors = []
    for kw in ({}, {"encoding": "latin1"}):
        try:
            with open(path, "rb") as fh:
                return _RestrictedUnpickler(fh, **kw).load()
        except pickle.UnpicklingError as e:
            if "refusing to load global" in str(e):
                raise RawDataError(f"{path}: {e}") from None
            errors.append(f"{type(e).__name__}: {e}")
        except (EOFError, UnicodeDecodeError, ValueError, AttributeError, ImportError,
                IndexError, TypeError, KeyError, OverflowError, MemoryError) as e:
            errors.append(f"{type(e).__name__}: {e}")
    raise RawDataError(f"{path}: cannot unpickle (truncated or corrupt?): {errors[-1]}")


def read_mat(path: str | os.PathLike, variable: str) -> np.ndarray:
    """One variable from a MATLAB v5 .mat file (scipy.io.loadmat)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: file not found")
    try:
        data = loadmat(str(path), variable_names=[variable])
    except Exception as e:  # scipy raises several types for truncated/corrupt files
        raise RawDataError(f"{path}: cannot read MATLAB file (truncated or corrupt?): "
                           f"{type(e).__name__}: {e}") from None
    if variable not in data:
        raise RawDataError(f"{path}: variable {variable!r} not found")
    return np.asarray(data[variable])


def expect_shape(arr: Any, shape: tuple, what: str) -> np.ndarray:
    """np.asarray(arr, float64) with a clear error if its shape is not `shape` (-1 = any)."""
    try:
        a = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise RawDataError(f"{what}: expected a numeric array of shape {shape}") from None
    if a.ndim != len(shape) or any(s not in (-1, t) for s, t in zip(shape, a.shape)):
        raise RawDataError(f"{what}: array shape {a.shape} differs from the expected {shape}")
    return a


# ------------------------------------------------------------------------------- depth codecs
# Each codec takes the raw PNG channels as cv2 returns them (BGR order) and returns float32 mm.
# Channels are widened to int32 before combining: NumPy 2 raises on uint8 * 256 overflow.

def decode_depth_rhd(bgr: np.ndarray) -> np.ndarray:
    """RHD: R = high byte, G = low byte, 16 bits over 0-5 m (mm = (R*256+G)/65535*5000)."""
    b = bgr.astype(np.int32)
    return ((b[..., 2] * 256 + b[..., 1]).astype(np.float32) * np.float32(5000.0 / 65535.0))


def decode_depth_stb(bgr: np.ndarray) -> np.ndarray:
    """STB SK_depth: depth (mm) = R + 256 * G."""
    b = bgr.astype(np.int32)
    return (b[..., 2] + 256 * b[..., 1]).astype(np.float32)


HO3D_DEPTH_SCALE_M = 0.00012498664727900177


def decode_depth_ho3d(bgr: np.ndarray) -> np.ndarray:
    """HO-3D: metres = (R + 256 * G) * 0.00012498664727900177."""
    b = bgr.astype(np.int32)
    return ((b[..., 2] + 256 * b[..., 1]).astype(np.float64)
            * (HO3D_DEPTH_SCALE_M * 1000.0)).astype(np.float32)


DEPTH_CODECS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rhd": decode_depth_rhd, "stb": decode_depth_stb, "ho3d": decode_depth_ho3d}


def register_depth(depth_mm: np.ndarray, K_depth: np.ndarray, K_color: np.ndarray,
                   R: np.ndarray, T: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Re-project a depth map into another camera (z-buffer splat to the nearest pixel).

    Depth pixel (u, v, d) → X_d = d K_depth⁻¹ (u, v, 1); X_c = Rᵀ (X_d − T) (i.e. X_d = R X_c + T,
    STB's convention); projected with K_color; the nearest surface wins; splat holes are filled
    from the nearest valid 3×3 neighbour. Returns float32 mm in the colour image (0 = no data).
    """
    h, w = depth_mm.shape
    v, u = np.nonzero(depth_mm > 0)
    d = depth_mm[v, u].astype(np.float64)
    pts = np.stack([u, v, np.ones_like(u)], 1).astype(np.float64) @ np.linalg.inv(K_depth).T
    Xd = pts * d[:, None]
    Xc = (Xd - np.asarray(T, float)) @ np.asarray(R, float)  # row-vector form of Rᵀ(X − T)
    z = Xc[:, 2]
    ok = z > 0
    uv = camera.project(np.asarray(K_color, float), Xc[ok][None])[0]
    z = z[ok]
    ui, vi = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    H, W = out_hw
    inside = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    ui, vi, z = ui[inside], vi[inside], z[inside]
    out = np.full(H * W, np.inf)
    np.minimum.at(out, vi * W + ui, z)
    out = out.reshape(H, W).astype(np.float32)
    # a longer colour focal length magnifies the depth grid, leaving a regular pattern of
    # empty pixels (~40% for STB): fill each from its nearest valid 3x3 neighbour (min depth)
    near = cv2.erode(out, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    hole = ~np.isfinite(out) & np.isfinite(near)
    out[hole] = near[hole]
    out[~np.isfinite(out)] = 0.0
    return out


def mask_from_depth(depth_mm: np.ndarray, kp2d: np.ndarray, kp3d_z: np.ndarray,
                    slack_mm: float = 60.0, radius_px: float | None = None) -> np.ndarray:
    """Approximate hand mask where a dataset has none: pixels near the 2D skeleton whose depth
    lies within [min kp z − slack, max kp z + slack]. A heuristic (documented as such)."""
    h, w = depth_mm.shape
    zmin, zmax = np.nanmin(kp3d_z) - slack_mm, np.nanmax(kp3d_z) + slack_mm
    if radius_px is None:
        p = kp2d[np.isfinite(kp2d).all(1)]
        radius_px = 0.12 * float(np.ptp(p, axis=0).max()) if len(p) >= 2 else 0.0
    near = np.zeros((h, w), np.uint8)
    for a, b in sk.BONES:  # 20 line draws per sample, not a per-pixel loop
        pa, pb = kp2d[a], kp2d[b]
        if np.isfinite(pa).all() and np.isfinite(pb).all():
            cv2.line(near, tuple(int(round(x)) for x in pa), tuple(int(round(x)) for x in pb), 1,
                     thickness=max(int(2 * radius_px), 1))
    return ((near > 0) & (depth_mm > zmin) & (depth_mm < zmax)).astype(np.uint8)


# ------------------------------------------------------------------------------- samples

@dataclass
class Candidate:
    """One output sample, described by its raw files and labels in workbook conventions.

    kp2d (21,2) full-image px and/or kp3d (21,3) mm in the colour camera's OpenCV frame, with
    NaN rows for joints without a label; vis (21,) bool; K (3,3) colour intrinsics; side 0/1.
    depth: path of a depth PNG decoded by DEPTH_CODECS[depth_codec]; if `depth_camera` is given
    ({"K": K_depth, "R": R, "T": T}) the depth is re-projected into the colour image.
    mask: path of a mask image; mask_codec "labels:LO-HI" (label range is hand), "threshold"
    (grey > 127), or None with mask_from_depth=True for the depth heuristic.
    box: optional full-image (x0, y0, x1, y1) edge-coordinate crop box (else from kp2d).
    """
    key: str
    rgb: str
    K: np.ndarray
    side: int
    kp2d: np.ndarray | None = None
    kp3d: np.ndarray | None = None
    vis: np.ndarray | None = None
    depth: str | None = None
    depth_codec: str | None = None
    depth_camera: dict | None = None
    mask: str | None = None
    mask_codec: str | None = None
    mask_from_depth: bool = False
    box: np.ndarray | None = None
    image_shape: tuple | None = None
    raw_index: int = -1
    group: int = 0


@dataclass
class Reject:
    key: str
    reason: str


# Plausible human bone lengths (mm), per canonical bone (child joint), generous.
BONE_MIN_MM = np.full(20, 8.0)
BONE_MAX_MM = np.full(20, 75.0)
BONE_MIN_MM[sk.ROOT_BONES], BONE_MAX_MM[sk.ROOT_BONES] = 20.0, 140.0


def square_box(kp2d: np.ndarray, margin: float) -> np.ndarray:
    """Square (x0, y0, x1, y1) box in edge coordinates around the finite 2D keypoints: side =
    margin × the larger extent (at least 16 px), centred on the keypoints' bounding box."""
    p = kp2d[np.isfinite(kp2d).all(1)]
    lo, hi = p.min(0), p.max(0)
    side = max(float((hi - lo).max()) * margin, 16.0)
    c = (lo + hi) / 2 + 0.5  # pixel-centre → edge coordinates
    return np.array([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2])


def process_candidate(c: Candidate, size: int, margin: float,
                      depth_tolerance_mm: tuple[float, float] = (-15.0, 45.0)) -> dict | Reject:
    """Load, crop, validate one candidate. Returns the writer's arrays or a Reject."""
    rgb = read_image(c.rgb, shape=c.image_shape)
    H, W = rgb.shape[:2]
    K = np.asarray(c.K, np.float64)
    kp3d = None if c.kp3d is None else np.asarray(c.kp3d, np.float64)
    has3 = kp3d is not None and np.isfinite(kp3d).all(1).any()
    kp2d = None if c.kp2d is None else np.asarray(c.kp2d, np.float64)
    if has3:
        proj = camera.project(K, kp3d)
        if kp2d is None:
            kp2d = proj
        else:
            both = np.isfinite(proj).all(1) & np.isfinite(kp2d).all(1)
            err = np.linalg.norm(proj[both] - kp2d[both], axis=1) if both.any() else np.zeros(0)
            if err.size and err.max() > 1.0:
                return Reject(c.key, "kp3d projected with K misses kp2d by more than 1 px")
        full = np.isfinite(kp3d).all()
        if full:
            bl = sk.bone_lengths(kp3d)
            if ((bl < BONE_MIN_MM) | (bl > BONE_MAX_MM)).any():
                return Reject(c.key, "implausible bone lengths")
    vis = (np.ones(21, bool) if c.vis is None else np.asarray(c.vis, bool)).copy()
    has2 = kp2d is not None and np.isfinite(kp2d).all(1).any()
    if c.box is not None:
        box = np.asarray(c.box, np.float64)
    elif has2:
        box = square_box(kp2d, margin)
    else:
        raise RawDataError(f"{c.key}: no 2D keypoints and no box to crop around")
    A = camera.crop_transform(box, (size, size))
    K_crop = A @ K
    k = int(np.ceil((box[2] - box[0]) / size))
    if k > 1:  # warpAffine has no area filter: warp to k×size, then box-filter down
        big = cv2.warpAffine(rgb, camera.crop_transform(box, (k * size, k * size))[:2],
                             (k * size, k * size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT)
        rgb_c = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    else:
        rgb_c = cv2.warpAffine(rgb, A[:2], (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
    depth_c = np.zeros((size, size), np.float32)
    has_depth = False
    depth_full = None
    if c.depth is not None:
        raw = read_image(c.depth, cv2.IMREAD_UNCHANGED)
        if raw.ndim != 3 or raw.shape[2] < 3:
            raise RawDataError(f"{c.depth}: expected a 3-channel depth PNG, got shape {raw.shape}")
        depth_full = DEPTH_CODECS[c.depth_codec](raw)
        if c.depth_camera is not None:
            cam = c.depth_camera
            depth_full = register_depth(depth_full, cam["K"], K, cam["R"], cam["T"], (H, W))
        elif depth_full.shape != (H, W):
            raise RawDataError(f"{c.depth}: depth size {depth_full.shape} differs from the colour "
                               f"image {(H, W)} but no depth camera is given")
        depth_c = cv2.warpAffine(depth_full, A[:2], (size, size), flags=cv2.INTER_NEAREST)
        has_depth = True
    if c.mask is not None:
        m = read_image(c.mask, cv2.IMREAD_GRAYSCALE)
        if m.shape != (H, W):
            raise RawDataError(f"{c.mask}: mask size {m.shape} differs from the colour image "
                               f"{(H, W)}")
        if c.mask_codec and c.mask_codec.startswith("labels:"):
            lo, hi = (int(x) for x in c.mask_codec[7:].split("-"))
            m = ((m >= lo) & (m <= hi)).astype(np.uint8)
        else:
            m = (m > 127).astype(np.uint8)
        mask_c = cv2.warpAffine(m, A[:2], (size, size), flags=cv2.INTER_NEAREST)
    elif c.mask_from_depth and depth_full is not None and has3 and has2:
        mask_c = mask_from_depth(depth_c, camera.apply_homography(A, kp2d), kp3d[:, 2])
    else:
        mask_c = np.zeros((size, size), np.uint8)
    kp2d_c = (camera.apply_homography(A, kp2d) if has2 else np.full((21, 2), np.nan))
    if has3 and has_depth:
        fin = np.isfinite(kp2d_c).all(1)
        pix = np.zeros((21, 2), np.int64)
        pix[fin] = np.rint(kp2d_c[fin])
        ok = fin & vis & np.isfinite(kp3d).all(1) & (pix >= 0).all(1) & (pix < size).all(1)
        if ok.any():
            d = depth_c[pix[ok, 1], pix[ok, 0]]
            gap = (kp3d[ok, 2] - d)[d > 0]
            if gap.size >= 3:
                # low percentile: self-occlusion only makes gaps larger, and datasets without
                # visibility flags (STB, FreiHAND, HO-3D) count hidden joints as visible
                low = float(np.percentile(gap, 25))
                if not depth_tolerance_mm[0] <= low <= depth_tolerance_mm[1]:
                    return Reject(c.key, "depth at visible joints disagrees with kp3d z")
    return {
        "rgb": rgb_c, "depth": depth_c, "mask": mask_c,
        "kp2d": kp2d_c.astype(np.float32),
        "kp3d": (kp3d if has3 else np.full((21, 3), np.nan)).astype(np.float32),
        "vis": vis, "K": K_crop.astype(np.float32), "side": np.uint8(c.side),
        "has_2d": bool(has2), "has_3d": bool(has3), "has_depth": has_depth,
        "raw_index": np.int64(c.raw_index), "group": np.int32(c.group),
        "crop_box": box.astype(np.float32),
    }


# ------------------------------------------------------------------------------- recipes

class Recipe(Protocol):
    """What a data_recipes/<name>.py module provides (see data_recipes/README.md).

    NAME; SPLITS (output split names); OPTIONS (name -> default); layout(); candidates();
    protocol(options) -> dict with at least "root" (joint 0 of the written kp3d: "wrist" or
    "palm"), "scale_bone", "thresholds_mm", "align" and "notes" — what the evaluation notebook
    applies; optional groups() -> names of Candidate.group ids (e.g. sequences).
    """
    NAME: str
    SPLITS: tuple[str, ...]
    OPTIONS: dict

    def layout(self, src: Path, options: dict) -> list[Requirement]: ...
    def candidates(self, src: Path, split: str, options: dict) -> list[Candidate]: ...
    def protocol(self, options: dict) -> dict: ...


def _worker(args):
    c, size, margin = args
    try:
        return process_candidate(c, size, margin)
    except RawDataError as e:
        return e
    except Exception as e:  # keep the sample's identity in whatever went wrong
        return RawDataError(f"{c.key}: {type(e).__name__}: {e}")


def convert(recipe, src: str | os.PathLike, out: str | os.PathLike,
            splits: Iterable[str] | None = None, size: int = 128, margin: float = 1.5,
            workers: int | None = None, options: dict | None = None,
            show_progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Convert a raw dataset with `recipe` into `out/<split>` (all splits atomically).

    Returns a report {split: {"candidates", "written", "rejected": {reason: n}}, ...}.
    """
    src, out = Path(src), Path(out)
    options = dict(options or {})
    unknown = set(options) - set(getattr(recipe, "OPTIONS", {}))
    if unknown:
        raise ValueError(f"{recipe.NAME}: unknown options {sorted(unknown)}; known: "
                         f"{dict(getattr(recipe, 'OPTIONS', {}))}")
    options = {**getattr(recipe, "OPTIONS", {}), **options}
    splits = tuple(splits or recipe.SPLITS)
    bad = set(splits) - set(recipe.SPLITS)
    if bad:
        raise ValueError(f"{recipe.NAME}: unknown splits {sorted(bad)}; known: {recipe.SPLITS}")
    check_layout(src, recipe.layout(src, {**options, "splits": splits}), recipe.NAME)
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    report: dict[str, Any] = {}
    pickles = getattr(recipe, "PICKLE_FILES", None)
    notice = PICKLE_NOTICE.format(dataset=recipe.NAME, files=pickles) if pickles else None
    if notice:
        log(f"note: {notice}")
    extras = {"raw_index": (np.int64, ()), "group": (np.int32, ()),
              "crop_box": (np.float32, (4,))}
    protocol = recipe.protocol(options)
    # parse every split's annotations before decoding any image: a broken file in the last
    # split should not surface after minutes of work on the first
    all_cands, groups = {}, {}
    for split in splits:
        all_cands[split] = recipe.candidates(src, split, {**options, "size": size,
                                                          "margin": margin, "splits": splits})
        groups[split] = list(getattr(recipe, "groups", lambda: [])())  # names of group ids
    for split, cands in all_cands.items():
        if not cands:
            raise RawDataError(f"{recipe.NAME}/{split}: no samples found under {src}")
    with _io.atomic_directory(out, overwrite=True) as tmp:
        for split in splits:
            cands = all_cands[split]
            rejects: Counter = Counter()
            rejected_keys: dict[str, list] = {}
            source = {"kind": "converted", "dataset": recipe.NAME,
                      "recipe": f"data_recipes.{recipe.NAME}", "src": str(src.resolve()),
                      "split": split, "options": options, "size": size, "margin": margin}
            if notice:
                source["pickle_notice"] = notice
            with DatasetWriter(tmp / split, count=len(cands), image_size=(size, size),
                               name=recipe.NAME, domain=recipe.NAME, split=split, source=source,
                               extras=extras, allow_fewer=True, root=protocol["root"],
                               extra={"protocol": protocol, "groups": groups[split]}) as w:
                jobs = [(c, size, margin) for c in cands]
                bar = progress(total=len(jobs), desc=f"{recipe.NAME}/{split}", unit="img",
                               disable=not show_progress)
                if workers > 1 and len(jobs) >= 64:
                    ctx = mp.get_context("spawn")
                    with ctx.Pool(workers) as pool:
                        results = pool.imap(_worker, jobs, chunksize=16)
                        _collect(results, w, rejects, rejected_keys, bar)
                else:
                    _collect(map(_worker, jobs), w, rejects, rejected_keys, bar)
                bar.close()
                if w.rows_written == 0:
                    raise RawDataError(f"{recipe.NAME}/{split}: every sample was rejected: "
                                       f"{dict(rejects)}")
                written = w.rows_written
            report[split] = {"candidates": len(cands), "written": written,
                             "rejected": dict(rejects)}
            _io.atomic_write_json(tmp / split / "rejects.json",
                                  {**report[split], "examples": rejected_keys})
            log(f"{recipe.NAME}/{split}: {written} written of {len(cands)}"
                + (f"; rejected: {dict(rejects)}" if rejects else ""))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if notice:
        report["notice"] = notice
    return report


def _collect(results, writer, rejects: Counter, rejected_keys: dict, bar) -> None:
    batch: list[dict] = []

    def flush():
        if batch:
            writer.append({k: np.stack([b[k] for b in batch]) for k in batch[0]})
            batch.clear()

    for r in results:
        bar.update(1)
        if isinstance(r, RawDataError):
            raise r
        if isinstance(r, Reject):
            rejects[r.reason] += 1
            keys = rejected_keys.setdefault(r.reason, [])
            if len(keys) < 50:  # the first few raw ids per reason, for inspection
                keys.append(r.key)
            continue
        batch.append(r)
        if len(batch) >= 64:
            flush()
    flush()
