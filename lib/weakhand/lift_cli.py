"""2D hand keypoints from any 2D detector → 3D joints with a trained lifter (`weakhand lift`).

::

    from weakhand.lift_cli import lift_keypoints_file, read_keypoints
    doc = lift_keypoints_file("lifter.pt", "hands.json", "hands3d.json", root_depth_mm=550)

    weakhand lift lifter.pt hands.json --out hands3d.json [--root-depth-mm 550] [--scale-mm 48]

Lifter checkpoints are written by :func:`weakhand.methods.lift.save_lifter` (the lifting study,
:mod:`weakhand.evaluation.lifting`, writes ``<source>_<variant>_seed<k>.pt``).

**Input** (``KEYPOINTS.json``, UTF-8 JSON): a list of hands, or ``{"hands": [...], "K": 3×3}``
(the top-level ``K`` is the default for hands without one). Each hand is an object::

    {"id": "frame12_hand0",                  # optional, a string or an integer
     "kp2d": [[u, v], ...],                  # 21 joints, px of the image
     "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],   # px; required unless a top-level K is given
     "side": "left" | "right" | 0 | 1,       # optional, default right (0 = left, 1 = right)
     "root_depth_mm": 550.0}                 # optional wrist depth, mm

Joint order (FreiHAND / MediaPipe): wrist 0, thumb 1-4, index 5-8, middle 9-12, ring 13-16,
little 17-20. Pixel coordinates and K in the same pixels (OpenCV: integer coordinates are pixel
centres), K a pinhole matrix (last row 0 0 1, fx, fy > 0; skew allowed). ``null`` for K, side or
root_depth_mm means "not given"; other keys of a hand (scores, boxes) are ignored. A malformed
file is refused as a whole (:class:`KeypointFileError` naming the file, the hand and the joint).

**Lifting.** The lifter (:class:`weakhand.models.lifter.Lifter`) reads the keypoints as camera
rays K⁻¹(u, v, 1), so any image size or crop works given its K, and predicts the root-relative
depth zⁿ (21,) in units of the scale bone (middle MCP→PIP), zⁿ₀ = 0. It was trained on right
hands: a left hand's keypoints are mirrored through its own K first (u → 2·cx − u for zero skew,
:func:`weakhand.models.lifter.mirror_left`; K·diag(−1, 1, 1)·K⁻¹ in general), which is the
projection of the hand mirrored x → −x about the optical axis. Depth does not change under that
mirror, so the lifted zⁿ is the left hand's own, and its 3D (below, from its own (u, v)) is the
mirrored hand's 3D flipped back x → −x.

**Absolute 3D**: Z_k = Z_root + zⁿ_k · s and (X, Y, Z)_k = Z_k · K⁻¹(u_k, v_k, 1) (mm, camera
frame, OpenCV axes), so the joints reproject exactly onto the input keypoints. Z_root: the hand's
``root_depth_mm``, else ``root_depth_mm`` / ``--root-depth-mm``, else the nominal
:data:`weakhand.predict.DEFAULT_ROOT_DEPTH_MM` (624 mm, the synthetic source's mean wrist depth:
a placeholder, so the absolute position is then nominal; the root-relative shape is not affected
beyond the perspective of K⁻¹). s: ``scale_mm`` / ``--scale-mm``, default
:data:`weakhand.predict.DEFAULT_SCALE_MM` (50.3 mm; real adult hands ≈ 45-55 mm).

**Output** (``--out OUT.json``, written atomically; an existing file is replaced only when it is
an earlier ``weakhand lift`` output, or with ``overwrite``): ``format`` ``"weakhand.lift"``, the
checkpoint, the options and defaults, conventions, and per hand (input order) ``index``, ``id``,
``side``, ``kp2d`` (21×2 px, as given), ``K``, ``zn`` (21), ``root_depth_mm``, ``kp3d_mm``
(21×3), ``kp3d_root_rel_mm`` (= kp3d_mm − kp3d_mm[wrist]), ``assumptions`` (root depth and its
source, scale and its source, K source, hand side) and ``warnings``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import camera

CLI_HELP = ("lift 2D hand keypoints (from any 2D detector, JSON) to 3D joints with a trained "
            "lifter checkpoint")

FORMAT = "weakhand.lift"
VERSION = 1
NUM_JOINTS = 21
_JOINT_ORDER = ("wrist 0, thumb 1-4, index 5-8, middle 9-12, ring 13-16, little 17-20")

__all__ = ["LiftError", "KeypointFileError", "Keypoints", "read_keypoints", "load_lifter",
           "lift_hands", "lift_keypoints_file", "FORMAT"]


class LiftError(ValueError):
    """A usage error of `weakhand lift` (one line): a checkpoint that is not a lifter, a root depth
    or scale (mm) that is not positive, an unusable output path."""


class KeypointFileError(LiftError):
    """A keypoints file that cannot be used (e.g. kp2d not (21, 2) finite px, K not 3×3); the
    message names the file, the hand and the problem."""


class Keypoints(NamedTuple):
    """The hands of a keypoints file: kp2d (N, 21, 2) px, K (N, 3, 3) px, side (N,) int
    0 left / 1 right, ids (list of N, str | int | None), root_depth_mm (N,) mm (NaN: not given)."""
    kp2d: np.ndarray
    K: np.ndarray
    side: np.ndarray
    ids: list
    root_depth_mm: np.ndarray


# ============================================================================================
# keypoints file

def _jtype(x: Any) -> str:
    """The JSON type name of a parsed value."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return "list"
    if isinstance(x, dict):
        return "object"
    return type(x).__name__


def _show(x: Any, limit: int = 40) -> str:
    """A short one-line JSON rendering of a parsed value, for messages."""
    try:
        s = json.dumps(x, ensure_ascii=False)
    except (TypeError, ValueError):
        s = repr(x)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number(x: Any, what: str) -> float:
    """A finite float from a parsed JSON value, else KeypointFileError ``what: ...``."""
    if not _is_number(x):
        shown = "null" if x is None else f"{_show(x)} ({_jtype(x)})"
        raise KeypointFileError(f"{what} is {shown}, not a number")
    v = float(x)
    if not math.isfinite(v):
        raise KeypointFileError(f"{what} is {_show(x)}, not a finite number")
    return v


def _matrix_K(x: Any, what: str) -> np.ndarray:
    """A pinhole K (3, 3) px from a parsed JSON value: 3 rows of 3 finite numbers, last row
    (0, 0, 1), K[1][0] = 0, fx, fy > 0 (so not singular)."""
    if not isinstance(x, list) or len(x) != 3 or not all(isinstance(r, list) for r in x):
        raise KeypointFileError(f"{what} is not a 3×3 matrix (got {_show(x)}); expected "
                                "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in px")
    for i, row in enumerate(x):
        if len(row) != 3:
            raise KeypointFileError(f"{what} is not 3×3: row {i} has {len(row)} entries; "
                                    "expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in px")
    K = np.array([[_number(v, f"{what}[{i}][{j}]") for j, v in enumerate(row)]
                  for i, row in enumerate(x)], dtype=np.float64)
    try:
        return camera.check_pinhole_K(K, what)
    except ValueError as e:
        raise KeypointFileError(str(e)) from None


def _side(x: Any, what: str) -> int:
    if x is None:
        return 1
    if isinstance(x, str) and x.strip().lower() in ("left", "right"):
        return 0 if x.strip().lower() == "left" else 1
    if isinstance(x, int) and not isinstance(x, bool) and x in (0, 1):
        return int(x)
    raise KeypointFileError(f"{what}: side is {_show(x)}; expected \"left\", \"right\", "
                            "0 (left) or 1 (right)")


def _read_json(p: Path) -> Any:
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeypointFileError(f"{p}: no such keypoints file") from None
    except IsADirectoryError:
        raise KeypointFileError(f"{p}: is a folder, not a keypoints JSON file") from None
    except OSError as e:
        raise KeypointFileError(f"{p}: cannot read the file ({e.strerror or e})") from None
    if not data.strip():
        raise KeypointFileError(f"{p}: empty file; expected JSON: a list of hands or "
                                "{\"hands\": [...]}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KeypointFileError(f"{p}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                                f"{e.start}); expected a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise KeypointFileError(f"{p}: not valid JSON: {e.msg} at line {e.lineno} column "
                                f"{e.colno} (char {e.pos})") from None
    except RecursionError:
        raise KeypointFileError(f"{p}: not usable JSON (nested too deeply)") from None


def _read(path: str | os.PathLike) -> tuple[Keypoints, list[str]]:
    """(:class:`Keypoints`, per-hand K source) of a keypoints file; see :func:`read_keypoints`."""
    p = Path(path)
    doc = _read_json(p)
    default_K = None
    if isinstance(doc, dict):
        if "hands" not in doc:
            keys = ", ".join(map(repr, list(doc)[:8])) or "none"
            raise KeypointFileError(f"{p}: a JSON object without \"hands\" (its keys: {keys}); "
                                    "expected a list of hands or {\"hands\": [...]}")
        hands = doc["hands"]
        if doc.get("K") is not None:
            default_K = _matrix_K(doc["K"], f"{p}: the top-level default \"K\"")
        if not isinstance(hands, list):
            raise KeypointFileError(f"{p}: \"hands\" is {_jtype(hands)}, expected a list of "
                                    "hands")
    elif isinstance(doc, list):
        hands = doc
    else:
        raise KeypointFileError(f"{p}: the JSON holds {_jtype(doc)} {_show(doc)}; expected a list "
                                "of hands or {\"hands\": [...]}")
    if not hands:
        raise KeypointFileError(f"{p}: no hands (the hand list is empty)")

    from .skeleton import JOINT_NAMES

    n = len(hands)
    kp2d = np.empty((n, NUM_JOINTS, 2))
    Ks = np.empty((n, 3, 3))
    side = np.empty(n, dtype=np.int64)
    root = np.full(n, np.nan)
    ids: list = []
    k_src: list[str] = []
    for i, h in enumerate(hands):
        if not isinstance(h, dict):
            raise KeypointFileError(f"{p}: hand {i} is {_jtype(h)} {_show(h)}; expected an "
                                    "object with \"kp2d\" (and \"K\")")
        hid = h.get("id")
        if hid is not None and (isinstance(hid, bool) or not isinstance(hid, (str, int))):
            raise KeypointFileError(f"{p}: hand {i}: id is {_show(hid)} ({_jtype(hid)}); "
                                    "expected a string or an integer")
        at = f"{p}: hand {i}" + ("" if hid is None else f" (id {_show(hid)})")
        kp = h.get("kp2d")
        if kp is None:
            raise KeypointFileError(f"{at}: no \"kp2d\" (21 [u, v] pairs in px)")
        if not isinstance(kp, list):
            raise KeypointFileError(f"{at}: kp2d is {_jtype(kp)}, expected a list of 21 [u, v] "
                                    "pairs in px")
        if len(kp) != NUM_JOINTS:
            raise KeypointFileError(f"{at}: kp2d has {len(kp)} joints, expected {NUM_JOINTS} "
                                    f"({_JOINT_ORDER})")
        for j, pt in enumerate(kp):
            where = f"{at}, joint {j} ({JOINT_NAMES[j]})"
            if not isinstance(pt, list) or len(pt) != 2:
                raise KeypointFileError(f"{where}: expected [u, v] in px, got {_show(pt)}")
            kp2d[i, j] = [_number(c, f"{where}: {name}") for c, name in zip(pt, "uv")]
        if h.get("K") is not None:
            Ks[i] = _matrix_K(h["K"], f"{at}: K")
            k_src.append("the hand's own K")
        elif default_K is not None:
            Ks[i] = default_K
            k_src.append("the file's top-level default K")
        else:
            raise KeypointFileError(f"{at}: no \"K\" and no top-level default \"K\" in the file "
                                    "(give [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in px)")
        side[i] = _side(h.get("side"), at)
        z = h.get("root_depth_mm")
        if z is not None:
            z = _number(z, f"{at}: root_depth_mm")
            if z <= 0:
                raise KeypointFileError(f"{at}: root_depth_mm is {z:g}; expected a positive "
                                        "depth in mm (or leave it out)")
            root[i] = z
        ids.append(hid)
    return Keypoints(kp2d, Ks, side, ids, root), k_src


def read_keypoints(path: str | os.PathLike) -> Keypoints:
    """The hands of a keypoints JSON file (format: module docstring), as a :class:`Keypoints`
    tuple ``(kp2d (N, 21, 2) px, K (N, 3, 3) px, side (N,) 0 left / 1 right, ids (N,),
    root_depth_mm (N,) mm, NaN where not given)``. Raises :class:`KeypointFileError` (a
    ValueError) with one line naming the file, the hand (index and id) and the problem."""
    return _read(path)[0]


# ============================================================================================
# checkpoint and lifting

def load_lifter(checkpoint: str | os.PathLike, device: str = "cpu") -> tuple[Any, dict]:
    """(:class:`~weakhand.models.lifter.Lifter` in eval mode on `device`: kp2d (B, 21, 2) px,
    K (B, 3, 3) px -> zn (B, 21); description, plain data) from a lifter checkpoint file (or a folder holding best.pt / last.pt). Raises :class:`LiftError`
    for a missing or corrupt file, or a checkpoint holding another model (RGB pose networks:
    use ``weakhand predict``)."""
    from .models.registry import POSE_FAMILIES, build_model, describe
    from .train.checkpoint import CheckpointError, model_specs, read_checkpoint

    path = Path(checkpoint)
    if path.is_dir():
        found = next((path / f for f in ("best.pt", "last.pt") if (path / f).is_file()), None)
        if found is None:
            raise LiftError(f"{path} is a folder without best.pt or last.pt; give a lifter "
                            "checkpoint file")
        path = found
    try:
        ckpt = read_checkpoint(path)
        specs = model_specs(ckpt, path)
    except CheckpointError as e:
        raise LiftError(str(e)) from None
    name = ckpt.get("name")
    lifters = [k for k, s in specs.items() if s["kind"] == "Lifter"]
    if not lifters:
        held = (", ".join(f"{s['kind'] or 'an unrecognised model'} ({k!r})"
                          for k, s in specs.items()) or "no model")
        if any(s["kind"] in POSE_FAMILIES for s in specs.values()):
            raise LiftError(f"{path} is a {name!r} checkpoint holding {held}: an RGB pose network "
                            "that reads image crops, not a 2D→3D lifter; use `weakhand predict "
                            f"{path} IMAGES --out DIR` for it. weakhand lift needs a Lifter "
                            "checkpoint (weakhand.methods.lift.save_lifter)")
        raise LiftError(f"{path} is a {name!r} checkpoint holding {held}, not a 2D→3D lifter; "
                        "weakhand lift needs a Lifter checkpoint (weakhand.methods.lift.save_lifter)")
    key = "model" if "model" in lifters else lifters[0]
    try:
        model = build_model(ckpt, key, device=device, path=path)
    except CheckpointError as e:
        raise LiftError(str(e)) from None
    info = {"path": str(path), "kind": "Lifter", "name": name, "step": ckpt.get("step"),
            "net_config": describe(model)["config"], "config": ckpt.get("config") or {}}
    return model, info


def _mirror_px(kp2d: np.ndarray, K: np.ndarray) -> np.ndarray:
    """kp2d (N, 21, 2) px of the hands mirrored x → −x in the camera frame, through the same
    K (N, 3, 3): K·diag(−1, 1, 1)·K⁻¹·(u, v, 1); u → 2·cx − u for zero skew."""
    h = np.concatenate([kp2d, np.ones(kp2d.shape[:-1] + (1,))], -1)
    H = K @ np.diag([-1.0, 1.0, 1.0]) @ np.linalg.inv(K)
    m = h @ np.swapaxes(H, -1, -2)
    return m[..., :2] / m[..., 2:3]


def lift_hands(model: Any, kp2d: Any, K: Any, side: Any = None, root_depth_mm: Any = None,
               scale_mm: float | None = None, device: str = "cpu") -> dict[str, np.ndarray]:
    """3D joints of hands from 2D keypoints with a lifter.

    kp2d (N, 21, 2) px, K (N, 3, 3) px, side (N,) 0 left / 1 right (None: right),
    root_depth_mm (N,) or scalar mm (None / NaN: :data:`weakhand.predict.DEFAULT_ROOT_DEPTH_MM`),
    scale_mm (None: :data:`weakhand.predict.DEFAULT_SCALE_MM`). Returns float64 numpy ``zn``
    (N, 21) scale-bone units, ``root_depth_mm`` (N,), ``kp3d_mm`` (N, 21, 3) camera frame,
    ``kp3d_root_rel_mm`` (N, 21, 3). Left hands are mirrored for the lifter; their 3D is their
    own (see the module docstring)."""
    from .methods.lift import predict
    from .predict import DEFAULT_ROOT_DEPTH_MM, DEFAULT_SCALE_MM

    kp2d = np.asarray(kp2d, np.float64)
    K = np.array(np.broadcast_to(np.asarray(K, np.float64), (len(kp2d), 3, 3)))
    side = np.ones(len(kp2d), np.int64) if side is None else np.asarray(side).reshape(-1)
    scale = DEFAULT_SCALE_MM if scale_mm is None else float(scale_mm)
    root = np.broadcast_to(np.asarray(DEFAULT_ROOT_DEPTH_MM if root_depth_mm is None
                                      else root_depth_mm, np.float64), (len(kp2d),))
    root = np.where(np.isfinite(root), root, DEFAULT_ROOT_DEPTH_MM)
    left = side == 0
    right_kp = kp2d.copy()
    if left.any():
        right_kp[left] = _mirror_px(kp2d[left], K[left])
    zn = np.asarray(predict(model, right_kp, K, device=device), np.float64)
    Z = root[:, None] + zn * scale
    h = np.concatenate([kp2d, np.ones(kp2d.shape[:-1] + (1,))], -1)
    ray = np.linalg.solve(K[:, None], h[..., None])[..., 0]
    X = ray / ray[..., 2:3] * Z[..., None]
    return {"zn": zn, "root_depth_mm": root.copy(), "kp3d_mm": X,
            "kp3d_root_rel_mm": X - X[:, :1]}


# ============================================================================================
# file -> file

def _positive(v: Any, what: str) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise LiftError(f"{what} must be a positive number of mm, got {v!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise LiftError(f"{what} must be a positive number of mm, got {v!r}")
    return f


def _check_out(out: Path, keypoints_path: Path, overwrite: bool) -> None:
    """Refuse an --out that is a folder, the input file, or a file not written by weakhand lift
    (unless `overwrite`)."""
    if out.is_dir():
        raise LiftError(f"--out {out} is a folder; give the output JSON file's path")
    if out.exists() and keypoints_path.exists() and out.resolve() == keypoints_path.resolve():
        raise LiftError(f"--out {out} is the keypoints file itself; choose another output file")
    if out.exists() and not overwrite:
        try:
            prev = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            prev = None
        if not (isinstance(prev, dict) and prev.get("format") == FORMAT):
            raise LiftError(f"--out {out} exists and is not an earlier `weakhand lift` output; "
                            "choose another file, or pass --overwrite to replace it")


def lift_keypoints_file(checkpoint: Any, keypoints_path: str | os.PathLike,
                        out_path: str | os.PathLike, root_depth_mm: float | None = None,
                        scale_mm: float | None = None, device: str = "cpu",
                        overwrite: bool = False) -> dict:
    """Lift every hand of a keypoints JSON file (format: module docstring) and write `out_path`
    (JSON, atomically). `checkpoint`: a lifter checkpoint path (or folder), or a loaded
    :class:`~weakhand.models.lifter.Lifter`. root_depth_mm: wrist depth (mm) for hands without
    their own (default 624 mm, nominal); scale_mm: middle MCP→PIP bone (default 50.3 mm).

    Returns the written document (plain data: lists, the per-hand entries under ``"hands"``).
    Raises :class:`KeypointFileError` / :class:`LiftError` (one line) before anything is written.
    """
    from .io import atomic_write_json
    from .predict import DEFAULT_ROOT_DEPTH_MM, DEFAULT_SCALE_MM
    from .skeleton import JOINT_NAMES

    root_opt = _positive(root_depth_mm, "root depth (--root-depth-mm)")
    scale_opt = _positive(scale_mm, "scale (--scale-mm)")
    scale = DEFAULT_SCALE_MM if scale_opt is None else scale_opt
    src, out = Path(keypoints_path), Path(out_path)
    _check_out(out, src, overwrite)
    kps, k_src = _read(src)
    if isinstance(checkpoint, (str, os.PathLike)):
        model, info = load_lifter(checkpoint, device=device)
    else:
        from .models.lifter import Lifter
        from .models.registry import describe

        if not isinstance(checkpoint, Lifter):
            raise LiftError(f"expected a lifter checkpoint path or a Lifter, got "
                            f"{type(checkpoint).__name__}")
        model, info = checkpoint, {"path": None, "kind": "Lifter", "name": None, "step": None,
                                   "net_config": describe(checkpoint)["config"], "config": {}}

    given = np.isfinite(kps.root_depth_mm)
    fallback = DEFAULT_ROOT_DEPTH_MM if root_opt is None else root_opt
    root = np.where(given, kps.root_depth_mm, fallback)
    res = lift_hands(model, kps.kp2d, kps.K, kps.side, root, scale, device=device)

    scale_src = ("given (--scale-mm)" if scale_opt is not None else
                 "default: mean middle MCP→PIP bone of the synthetic hands")
    hands = []
    for i in range(len(kps.kp2d)):
        if given[i]:
            r_src = "the hand's root_depth_mm in the keypoints file"
        elif root_opt is not None:
            r_src = "given (--root-depth-mm)"
        else:
            r_src = ("default: nominal mean wrist depth of the synthetic source data (the "
                     "absolute position is a placeholder; give root_depth_mm)")
        X = res["kp3d_mm"][i]
        warnings = []
        behind = np.flatnonzero(X[:, 2] <= 0)
        if behind.size:
            warnings.append("joints at or behind the camera with this root depth and scale: "
                            + ", ".join(JOINT_NAMES[k] for k in behind))
        left = int(kps.side[i]) == 0
        hands.append({
            "index": i, "id": kps.ids[i], "side": "left" if left else "right",
            "kp2d": kps.kp2d[i].tolist(), "K": kps.K[i].tolist(),
            "zn": res["zn"][i].tolist(), "root_depth_mm": float(X[0, 2]),
            "kp3d_mm": X.tolist(), "kp3d_root_rel_mm": res["kp3d_root_rel_mm"][i].tolist(),
            "assumptions": {
                "root_depth_mm": float(root[i]), "root_depth_source": r_src,
                "scale_mm": scale, "scale_source": scale_src, "K_source": k_src[i],
                "hand": ("left: mirrored through K for the lifter (trained on right hands), "
                         "3D mirrored back") if left else "right"},
            "warnings": warnings,
        })
    doc = {
        "format": FORMAT, "version": VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": info, "input": str(src),
        "options": {"root_depth_mm": root_opt, "scale_mm": scale_opt},
        "defaults": {"root_depth_mm": DEFAULT_ROOT_DEPTH_MM, "scale_mm": DEFAULT_SCALE_MM},
        "conventions": {
            "joints": f"FreiHAND/MediaPipe order ({_JOINT_ORDER})",
            "joint_names": list(JOINT_NAMES),
            "kp2d": "pixels of the image as given (with its K); integer coordinates are pixel "
                    "centres",
            "zn": "root-relative depth in units of the scale bone (middle MCP->PIP), zn[0] = 0",
            "kp3d_mm": "camera frame in mm, OpenCV axes (x right, y down, z forward): "
                       "Z_k = root_depth + zn_k * scale, X_k = Z_k K^-1 (u_k, v_k, 1)",
            "kp3d_root_rel_mm": "kp3d_mm - kp3d_mm[wrist]",
        },
        "n_hands": len(hands), "n_left": int((kps.side == 0).sum()),
        "hands": hands,
    }
    atomic_write_json(out, doc)
    return doc


# ============================================================================================
# CLI

_FORMAT_HELP = """\
KEYPOINTS.json: a list of hands, or {"hands": [...], "K": 3x3 default}. Each hand:
  {"id": "any string or int",             (optional)
   "kp2d": [[u, v], ... 21 joints],       px; wrist 0, thumb 1-4, index 5-8,
                                          middle 9-12, ring 13-16, little 17-20
   "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],   px; required unless a top-level K
   "side": "left" | "right" | 0 | 1,      (optional, default right; 0 = left)
   "root_depth_mm": 550.0}                (optional wrist depth, mm)
Other keys are ignored; null means "not given".

Output: per hand zn (21, root-relative depth / middle MCP->PIP bone), kp3d_mm
(21x3, camera frame: Z = root depth + zn * scale, X = Z K^-1 (u, v, 1), so it
reprojects onto kp2d), kp3d_root_rel_mm, root_depth_mm and the assumptions used.
Exit status 0: written; 2: usage error (bad file, checkpoint or option; nothing
is written)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .predict import DEFAULT_ROOT_DEPTH_MM, DEFAULT_SCALE_MM

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Lift 2D hand keypoints from any 2D detector to 3D joints (mm, camera frame) with a\n"
        "trained lifter checkpoint (weakhand.methods.lift.save_lifter). Left hands are\n"
        "mirrored for the lifter (trained on right hands) and mirrored back.")
    parser.epilog = _FORMAT_HELP
    parser.add_argument("checkpoint", help="lifter checkpoint (.pt file, or a folder holding "
                        "best.pt / last.pt)")
    parser.add_argument("keypoints", metavar="KEYPOINTS.json",
                        help="the 2D keypoints (format below)")
    parser.add_argument("--out", required=True, metavar="OUT.json",
                        help="output JSON file (written atomically; an existing file is replaced "
                        "only if it is an earlier lift output, or with --overwrite)")
    parser.add_argument("--root-depth-mm", type=float, default=None, metavar="MM",
                        help="wrist depth in mm for hands without their own root_depth_mm "
                        f"(default {DEFAULT_ROOT_DEPTH_MM:g} mm, the synthetic source's mean: "
                        "a nominal placement)")
    parser.add_argument("--scale-mm", type=float, default=None, metavar="MM",
                        help=f"middle MCP→PIP bone length (default {DEFAULT_SCALE_MM} mm, the "
                        "synthetic hands' mean)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file that is not a lift output")


def cli_main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    err = sys.stderr
    try:
        doc = lift_keypoints_file(args.checkpoint, args.keypoints, args.out,
                                  root_depth_mm=args.root_depth_mm, scale_mm=args.scale_mm,
                                  overwrite=args.overwrite)
    except LiftError as e:
        print(f"weakhand lift: {e}", file=err)
        return 2
    for h in doc["hands"]:
        for w in h["warnings"]:
            label = f"hand {h['index']}" + ("" if h["id"] is None else f" (id {h['id']!r})")
            print(f"warning: {label}: {w}", file=err)
    own = sum(h["assumptions"]["root_depth_source"].startswith("the hand's") for h in doc["hands"])
    rest = doc["n_hands"] - own
    fallback = doc["options"]["root_depth_mm"]
    parts = ([f"{own} from the file"] if own else []) + (
        [f"{rest} at {fallback:g} mm (--root-depth-mm)" if fallback is not None else
         f"{rest} at the nominal {doc['defaults']['root_depth_mm']:g} mm (give root_depth_mm or "
         "--root-depth-mm for real positions)"] if rest else [])
    print(f"lifted {doc['n_hands']} hand(s) ({doc['n_left']} left) with the lifter "
          f"{doc['checkpoint']['path']}; scale {doc['hands'][0]['assumptions']['scale_mm']:g} mm; "
          f"root depth: {', '.join(parts)}")
    print(f"wrote {args.out}")
    return 0
