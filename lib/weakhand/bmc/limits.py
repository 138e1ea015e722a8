"""BMC limits: fitted from 3D training poses, edited by hand, saved as versioned JSON.

A :class:`BMCLimits` holds, in the normalised right-hand frame of
:func:`weakhand.bmc.geometry.canonical_pose` (root-relative, scale bone = 1):

* ``bone_length`` (20, 2) [min, max], unitless;
* ``curvature`` (4, 2) and ``angular_distance`` (4, 2) (radians) per neighbouring root-bone pair;
* ``hulls``: 15 convex CCW polygons (M_i, 2) in the (flexion, abduction) plane, radians;
* ``fitted_hulls``: the hulls as fitted (what "reset" returns to), ``edits``: the ordered list of
  hand edits applied to them, so a saved file can be replayed onto a fresh fit;
* ``provenance``: dataset, split, count, normalisation, fitting parameters, date.

Only training splits may be fitted (:func:`fit_limits` refuses a split called test/eval).
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .. import skeleton as sk
from ..io import atomic_write_json
from . import hull as H
from .geometry import ANGLE_BONE_NAMES, NUM_ANGLE_BONES, PAIR_NAMES, bmc_features

SCHEMA = "weakhand.bmc_limits"
SCHEMA_VERSION = 1
_INTERVALS = {"bone_length": sk.NUM_BONES, "curvature": 4, "angular_distance": 4}
EDIT_OPS = ("move", "insert", "delete", "scale", "translate", "reset")


class LimitsError(ValueError):
    """A limits file or object is malformed (message names the file and the problem); no arrays."""


@dataclass
class BMCLimits:
    """Spurr et al.'s biomechanical limits, in the right-hand, root-relative frame where the scale
    bone (middle MCP -> PIP) has length 1 (:func:`weakhand.bmc.geometry.canonical_pose`).

    * ``bone_length`` (20, 2) [min, max] per bone, normalised by the scale bone (unitless);
    * ``curvature`` (4, 2) palm curvature between consecutive root bones (unitless);
    * ``angular_distance`` (4, 2) angle between consecutive root bones, radians;
    * ``hulls`` 15 arrays (M_i, 2): convex CCW polygons in (flexion, abduction) radians, one per
      non-root bone (order :data:`weakhand.bmc.geometry.ANGLE_BONE_NAMES`); ``fitted_hulls``
      the same before any hull-editor edit;
    * ``edits`` the editor's edit log (list of dicts), ``provenance`` where the limits came from.

    Validated on construction (:func:`validate`); raises :class:`LimitsError` when malformed.
    """
    bone_length: np.ndarray
    curvature: np.ndarray
    angular_distance: np.ndarray
    hulls: list[np.ndarray]
    fitted_hulls: list[np.ndarray] | None = None
    edits: list[dict] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.fitted_hulls is None:
            self.fitted_hulls = [h.copy() for h in self.hulls]
        self._cache: dict = {}
        problem = validate(self)
        if problem:
            raise LimitsError(problem)

    # -- tensors for the loss, cached per (device, dtype)
    def tensors(self, device: str | torch.device = "cpu", dtype=torch.float32) -> dict:
        """Intervals and padded hulls as tensors: bone_length (20, 2), curvature (4, 2),
        angular_distance (4, 2), hull_vertices (15, M_max, 2)."""
        key = (str(device), dtype, id(self.hulls), tuple(len(h) for h in self.hulls))
        if key not in self._cache:
            verts, _ = H.pad_hulls(self.hulls)
            t = {k: torch.as_tensor(np.array(getattr(self, k)), dtype=dtype, device=device)
                 for k in _INTERVALS}
            t["hull_vertices"] = torch.as_tensor(verts, dtype=dtype, device=device)
            self._cache = {key: t}
        return self._cache[key]

    def copy(self) -> "BMCLimits":
        """A deep copy (every array, hull, edit and provenance entry copied): bone lengths and
        curvature stay unitless, angles and hull vertices in radians."""
        return BMCLimits(self.bone_length.copy(), self.curvature.copy(),
                         self.angular_distance.copy(), [h.copy() for h in self.hulls],
                         [h.copy() for h in self.fitted_hulls], copy.deepcopy(self.edits),
                         copy.deepcopy(self.provenance))

    def with_edits(self, edits: list[dict]) -> "BMCLimits":
        """A copy whose hulls (15 arrays (M_i, 2), radians) are the fitted hulls with `edits`
        replayed in order; raises LimitsError naming the first edit that fails."""
        out = self.copy()
        hulls = [h.copy() for h in self.fitted_hulls]
        for i, e in enumerate(edits):
            try:
                hulls = apply_edit(hulls, e, fitted=self.fitted_hulls)
            except (ValueError, KeyError, IndexError, TypeError) as err:
                raise LimitsError(f"edit #{i} {e}: {err}") from None
        out.hulls, out.edits = hulls, copy.deepcopy(list(edits))
        out._cache = {}
        return out

    def to_json(self) -> dict:
        """The schema-versioned JSON document (plain lists, no arrays): intervals as min/max lists
        per named bone or pair (bone lengths unitless, curvature unitless, angles in rad), hulls
        as (M, 2) vertex lists in radians keyed by bone name, edits and provenance."""
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "frame": {"order": "canonical (FreiHAND/SNAP)", "side": "right (left hands mirrored)",
                      "root": sk.JOINT_NAMES[sk.ROOT],
                      "scale_bone": [sk.JOINT_NAMES[j] for j in sk.SCALE_BONE],
                      "angle_units": "rad"},
            "bone_length": _interval_json(self.bone_length, sk.BONE_NAMES),
            "curvature": _interval_json(self.curvature, PAIR_NAMES),
            "angular_distance": _interval_json(self.angular_distance, PAIR_NAMES),
            "hulls": {n: np.asarray(h).tolist() for n, h in zip(ANGLE_BONE_NAMES, self.hulls)},
            "fitted_hulls": {n: np.asarray(h).tolist()
                             for n, h in zip(ANGLE_BONE_NAMES, self.fitted_hulls)},
            "edits": self.edits,
            "provenance": self.provenance,
        }


def _interval_json(a: np.ndarray, names) -> dict:
    return {"names": list(names), "min": np.asarray(a)[:, 0].tolist(),
            "max": np.asarray(a)[:, 1].tolist()}


def validate(lim: BMCLimits) -> str | None:
    """Return a description of the first problem with `lim` (a str), or None if it is valid:
    interval shapes (20, 2) / (4, 2) / (4, 2) with min <= max and finite values, 15 convex CCW
    hulls (M, 2) in radians."""
    for key, n in _INTERVALS.items():
        a = np.asarray(getattr(lim, key), dtype=np.float64)
        if a.shape != (n, 2):
            return f"'{key}' must have shape ({n}, 2) [min, max], got {a.shape}"
        if not np.isfinite(a).all():
            return f"'{key}' contains NaN or inf"
        bad = np.flatnonzero(a[:, 0] > a[:, 1])
        if bad.size:
            return f"'{key}' item {int(bad[0])}: min {a[bad[0], 0]} > max {a[bad[0], 1]}"
    for what in ("hulls", "fitted_hulls"):
        hulls = getattr(lim, what)
        if len(hulls) != NUM_ANGLE_BONES:
            return f"'{what}' must hold {NUM_ANGLE_BONES} polygons, got {len(hulls)}"
        for name, h in zip(ANGLE_BONE_NAMES, hulls):
            problem = H.polygon_problem(np.asarray(h, dtype=np.float64))
            if problem:
                return f"'{what}' bone {name}: {problem}"
    return None


# ----------------------------------------------------------------------------- edits
def _convex_with(points: np.ndarray, new: np.ndarray, err: Exception) -> np.ndarray:
    """Convex hull of `points` if the edited vertex `new` is one of its corners: moving a
    vertex outwards (or adding one outside) may leave neighbours reflex, and those are dropped;
    a vertex pulled inside (a dent) is refused with the original reason."""
    try:
        hull = H.convex_hull(points)
    except ValueError:
        raise err from None
    if not np.any(np.all(np.abs(hull - new) <= 1e-12, axis=1)):
        raise err
    return hull


def apply_edit(hulls: list[np.ndarray], edit: dict, fitted: list[np.ndarray]) -> list[np.ndarray]:
    """Apply one edit to a list of 15 hulls; returns a new list (raises ValueError on refusal).

    A move or insert that would leave neighbouring vertices reflex drops them (the result is
    the convex hull with the edited vertex as a corner); one that would dent the hull is refused.
    Edits: ``{"op": "move", "bone": k, "index": i, "to": [flex, abd]}``, ``{"op": "insert",
    "bone": k, "at": [flex, abd]}``, ``{"op": "delete", "bone": k, "index": i}``,
    ``{"op": "scale", "bone": k, "factor": f}``, ``{"op": "translate", "bone": k,
    "by": [dflex, dabd]}``, ``{"op": "reset", "bone": k}`` (k in 0..14, angles in radians).
    """
    op = edit.get("op")
    if op not in EDIT_OPS:
        raise ValueError(f"unknown edit op {op!r} (known: {', '.join(EDIT_OPS)})")
    k = int(edit["bone"])
    if not 0 <= k < NUM_ANGLE_BONES:
        raise ValueError(f"bone index {k} out of range 0..{NUM_ANGLE_BONES - 1}")
    poly = np.asarray(hulls[k], dtype=np.float64)
    if op == "move":
        i = int(edit["index"])
        if not 0 <= i < len(poly):
            raise ValueError(f"vertex {i} out of range (hull has {len(poly)} vertices)")
        to = np.asarray(edit["to"], dtype=np.float64)
        try:
            new = H.move_vertex(poly, i, to)
        except ValueError as err:
            new = _convex_with(np.vstack([np.delete(poly, i, 0), to[None]]), to, err)
    elif op == "insert":
        at = np.asarray(edit["at"], dtype=np.float64)
        try:
            new = H.insert_vertex(poly, at)
        except ValueError as err:
            new = _convex_with(np.vstack([poly, at[None]]), at, err)
    elif op == "delete":
        i = int(edit["index"])
        if not 0 <= i < len(poly):
            raise ValueError(f"vertex {i} out of range (hull has {len(poly)} vertices)")
        new = H.delete_vertex(poly, i)
    elif op == "scale":
        new = H.scale_polygon(poly, float(edit["factor"]))
    elif op == "translate":
        new = H.translate_polygon(poly, np.asarray(edit["by"], dtype=np.float64))
    else:
        new = np.asarray(fitted[k], dtype=np.float64).copy()
    out = list(hulls)
    out[k] = new
    return out


# ----------------------------------------------------------------------------- fitting
def _interval(x: np.ndarray, percentile: float, margin: float) -> np.ndarray:
    lo = np.percentile(x, percentile, axis=0)
    hi = np.percentile(x, 100.0 - percentile, axis=0)
    pad = margin * (hi - lo)
    return np.stack([lo - pad, hi + pad], -1)


def fit_limits(kp3d: np.ndarray, is_left: np.ndarray | None = None, *, percentile: float = 0.0,
               margin: float = 0.0, hull_eps: float = 5e-4, hull_coverage: float = 0.9995,
               hull_margin: float = 0.0, dataset: str = "", split: str = "train",
               progress=None) -> BMCLimits:
    """Fit all limits from (N, 21, 3) training poses (mm or any unit; normalised internally).

    Intervals span the [percentile, 100 − percentile] range of the data, widened by
    ``margin`` × its width on each side; hulls are convex hull → RDP(hull_eps) → vertex pruning
    keeping ≥ hull_coverage of the angles inside → outward offset by hull_margin (rad).
    Refuses test/eval splits (fitting there would leak the evaluation set).
    """
    if any(w in split.lower() for w in ("test", "eval")):
        raise ValueError(f"refusing to fit BMC limits on split {split!r}: fit on training data "
                         f"only (the test split is what the limits are evaluated on)")
    kp = np.asarray(kp3d, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (sk.NUM_JOINTS, 3):
        raise ValueError(f"kp3d must be (N, 21, 3), got {kp.shape}")
    if len(kp) < 10:
        raise ValueError(f"need at least 10 poses to fit limits, got {len(kp)}")
    if not np.isfinite(kp).all():
        raise ValueError("kp3d contains NaN or inf; drop samples without 3D labels first")
    f = bmc_features(kp, is_left)
    hulls = []
    for k in range(NUM_ANGLE_BONES):
        hulls.append(H.fit_hull(f["angles"][:, k], eps=hull_eps, min_coverage=hull_coverage,
                                margin=hull_margin))
        if progress is not None:
            progress(k + 1, NUM_ANGLE_BONES)
    prov = {
        "dataset": dataset, "split": split, "count": int(len(kp)),
        "left_mirrored": int(np.sum(is_left)) if is_left is not None else 0,
        "normalisation": {"root": sk.JOINT_NAMES[sk.ROOT],
                          "scale_bone": [sk.JOINT_NAMES[j] for j in sk.SCALE_BONE]},
        "fit": {"percentile": percentile, "margin": margin, "hull_eps": hull_eps,
                "hull_coverage": hull_coverage, "hull_margin": hull_margin},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "weakhand_version": __version__,
    }
    return BMCLimits(_interval(f["bone_length"], percentile, margin),
                     _interval(f["curvature"], percentile, margin),
                     _interval(f["angular_distance"], percentile, margin), hulls,
                     provenance=prov)


# ----------------------------------------------------------------------------- I/O
def save_limits(limits: BMCLimits, path: str | os.PathLike) -> Path:
    """Write `limits` as JSON atomically (validated first: nothing is written if invalid); returns
    the path written (no arrays; units as in :meth:`BMCLimits.to_json`)."""
    problem = validate(limits)
    if problem:
        raise LimitsError(f"not saving {path}: {problem}")
    return atomic_write_json(path, limits.to_json())


def _intervals_from(d: dict, key: str, n: int, where: str) -> np.ndarray:
    if key not in d or not isinstance(d[key], dict) or not {"min", "max"} <= set(d[key]):
        raise LimitsError(f"{where}: missing '{key}' with 'min' and 'max' lists")
    parts = []
    for side in ("min", "max"):
        try:
            v = np.asarray(d[key][side], dtype=np.float64)
        except (ValueError, TypeError):
            raise LimitsError(f"{where}: '{key}.{side}' is not a list of numbers") from None
        if v.shape != (n,):
            raise LimitsError(f"{where}: '{key}.{side}' needs {n} values, got shape {v.shape}")
        parts.append(v)
    return np.stack(parts, -1)


def _hulls_from(d: dict, key: str, where: str) -> list[np.ndarray]:
    hs = d.get(key)
    if not isinstance(hs, dict):
        raise LimitsError(f"{where}: missing '{key}' (a mapping bone name -> vertex list)")
    missing = [n for n in ANGLE_BONE_NAMES if n not in hs]
    if missing:
        raise LimitsError(f"{where}: '{key}' lacks bones {missing}")
    out = []
    for n in ANGLE_BONE_NAMES:
        try:
            h = np.asarray(hs[n], dtype=np.float64)
        except (ValueError, TypeError):
            raise LimitsError(f"{where}: '{key}' bone {n}: vertices are not a numeric (M, 2) "
                              f"list") from None
        problem = H.polygon_problem(h)
        if problem:
            raise LimitsError(f"{where}: '{key}' bone {n}: {problem}")
        out.append(h)
    return out


def load_limits(path: str | os.PathLike) -> BMCLimits:
    """Read and validate a limits JSON into a :class:`BMCLimits` (bone lengths unitless, angles in
    radians); a clear LimitsError naming the file on any problem."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise FileNotFoundError(f"BMC limits file not found: {path}")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LimitsError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise LimitsError(f"{where}: not a BMC limits file (schema {d.get('schema') if isinstance(d, dict) else None!r}, expected {SCHEMA!r})")
    if d.get("schema_version") != SCHEMA_VERSION:
        raise LimitsError(f"{where}: unknown schema_version {d.get('schema_version')!r} "
                          f"(this weakhand reads version {SCHEMA_VERSION})")
    iv = {k: _intervals_from(d, k, n, where) for k, n in _INTERVALS.items()}
    hulls = _hulls_from(d, "hulls", where)
    fitted = _hulls_from(d, "fitted_hulls", where) if "fitted_hulls" in d else None
    edits = d.get("edits", [])
    if not isinstance(edits, list) or not all(isinstance(e, dict) for e in edits):
        raise LimitsError(f"{where}: 'edits' must be a list of objects")
    try:
        return BMCLimits(iv["bone_length"], iv["curvature"], iv["angular_distance"], hulls,
                         fitted, edits, d.get("provenance", {}))
    except LimitsError as err:
        raise LimitsError(f"{where}: {err}") from None


def limits_table(limits: BMCLimits, angles: np.ndarray | None = None) -> list[dict]:
    """One row per angle bone: hull vertex count, flexion/abduction extent (deg) and, given
    training angles (N, 15, 2), the fraction inside the current hull."""
    rows = []
    for k, (name, h) in enumerate(zip(ANGLE_BONE_NAMES, limits.hulls)):
        d = np.degrees(h)
        row = {"bone": name, "vertices": len(h),
               "flexion (deg)": f"{d[:, 0].min():.0f} … {d[:, 0].max():.0f}",
               "abduction (deg)": f"{d[:, 1].min():.0f} … {d[:, 1].max():.0f}"}
        if angles is not None:
            row["inside (%)"] = round(100 * H.coverage(np.asarray(angles)[:, k], h), 2)
        row["edited"] = "yes" if not np.array_equal(h, limits.fitted_hulls[k]) else ""
        rows.append(row)
    return rows
