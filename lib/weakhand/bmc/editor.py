"""Interactive flexion/abduction hull editor: a state model plus a thin ipywidgets view.

:class:`HullEditorModel` holds all logic (selection, edits, undo, coverage, preview pose, save)
and works without any front end, so it is unit-tested directly. :class:`HullEditor` wraps it
in ipywidgets + a plotly ``FigureWidget``: every callback is a method that can be called without
an event (setting a widget's ``value`` from code fires the same path as a user would).

Every accepted edit is appended to ``limits.edits``; saving writes the limits JSON atomically,
and :meth:`BMCLimits.with_edits` replays the saved edits onto a fresh fit in a headless run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .. import skeleton as sk
from ..viz import FINGER_COLORS
from . import hull as H
from .geometry import (ANGLE_BONE_NAMES, LAYER_NAMES, NUM_ANGLE_BONES, angle_bone_index,
                       bmc_features, canonical_pose, joint_angles, pose_from_angles)
from .figures import LAYER_LABELS, bone_label
from .limits import BMCLimits, LimitsError, apply_edit, save_limits

_ADD_OUTWARD = np.radians(2.0)  # a new vertex sits this far outside its edge's midpoint
CLICK_MODES = ("select", "move here", "add here")
SOURCE_COLOR = "rgba(60,60,60,0.45)"    # training (source) angles
TARGET_COLOR = "rgba(230,110,0,0.65)"   # target-domain angles, when given


class HullEditorModel:
    """Edit state for the 15 hulls of a :class:`BMCLimits`.

    angles: (N, 15, 2) training angles (radians) shown as the data cloud and used for coverage.
    base_pose: (21, 3) right-hand pose used for the 3D preview (mm or normalised units).
    target_angles: optional (M, 15, 2) angles of the target domain (e.g. from pseudo-labels or a
    labelled twin), shown in a second colour with their own coverage.
    """

    def __init__(self, limits: BMCLimits, angles: np.ndarray, base_pose: np.ndarray,
                 path: str | os.PathLike | None = None, target_angles: np.ndarray | None = None):
        self.limits = limits.copy()
        self.angles = np.asarray(angles, dtype=np.float64)
        if self.angles.ndim != 3 or self.angles.shape[1:] != (NUM_ANGLE_BONES, 2):
            raise ValueError(f"angles must be (N, 15, 2), got {self.angles.shape}")
        self.target_angles = None
        if target_angles is not None:
            t = np.asarray(target_angles, dtype=np.float64)
            if t.ndim != 3 or t.shape[1:] != (NUM_ANGLE_BONES, 2):
                raise ValueError(f"target_angles must be (M, 15, 2), got {t.shape}")
            self.target_angles = t[np.isfinite(t).all(axis=(1, 2))]
        self.base_pose = np.asarray(base_pose, dtype=np.float64)
        self.path = None if path is None else Path(path)
        self.bone = 0
        self.vertex = 0
        self.message = ""
        self._undo: list[tuple[list[np.ndarray], list[dict], int, int]] = []
        self._listeners: list[Callable[["HullEditorModel"], None]] = []
        self._saved_edits = list(self.limits.edits)

    # ------------------------------------------------------------------ observers
    def on_change(self, fn: Callable[["HullEditorModel"], None]) -> None:
        """Call `fn(model)` after every change (no arrays; unitless)."""
        self._listeners.append(fn)

    def _changed(self) -> None:
        for fn in self._listeners:
            fn(self)

    # ------------------------------------------------------------------ state
    @property
    def hull(self) -> np.ndarray:
        """(M, 2) current hull of the selected bone (radians)."""
        return self.limits.hulls[self.bone]

    @property
    def fitted_hull(self) -> np.ndarray:
        """The selected bone's hull as fitted from data, before edits: (V, 2) radians (flexion, abduction)."""
        return self.limits.fitted_hulls[self.bone]

    @property
    def bone_name(self) -> str:
        """The hull's key in limits.json (e.g. ``index_dip`` for the bone PIP→DIP); a string, unitless."""
        return ANGLE_BONE_NAMES[self.bone]

    @property
    def bone_label(self) -> str:
        """What the user picked, with the JSON key: ``index PIP→DIP (index_dip)``; a string, unitless."""
        return bone_label(self.bone)

    def angle_range(self, margin_deg: float = 15.0, bone: int | None = None) -> np.ndarray:
        """[[flex_lo, flex_hi], [abd_lo, abd_hi]] in degrees: the training (and target) angles,
        the hull and the fitted hull of `bone`, widened by `margin_deg` and rounded outward to
        5°, within [-180, 180]. The sliders and the plot axes use it."""
        k = self.bone if bone is None else bone
        pts = [self.angles[:, k], self.limits.hulls[k], self.limits.fitted_hulls[k]]
        if self.target_angles is not None and len(self.target_angles):
            pts.append(self.target_angles[:, k])
        a = np.degrees(np.vstack(pts))
        a = a[np.isfinite(a).all(axis=1)]
        lo, hi = a.min(0) - margin_deg, a.max(0) + margin_deg
        return np.clip(np.stack([np.floor(lo / 5) * 5, np.ceil(hi / 5) * 5], axis=1), -180, 180)

    @property
    def dirty(self) -> bool:
        """bool: True when the hulls differ from what was last saved (or loaded)."""
        return self.limits.edits != self._saved_edits

    def coverage(self, bone: int | None = None) -> float:
        """Fraction of training angles inside the current hull of `bone` (default: selected)."""
        k = self.bone if bone is None else bone
        return H.coverage(self.angles[:, k], self.limits.hulls[k])

    def fitted_coverage(self, bone: int | None = None) -> float:
        """Fraction in [0, 1] of the fitting angles inside the fitted hull of `bone` (default: selected)."""
        k = self.bone if bone is None else bone
        return H.coverage(self.angles[:, k], self.limits.fitted_hulls[k])

    def target_coverage(self, bone: int | None = None) -> float | None:
        """Fraction of the target angles inside the current hull (None without target angles)."""
        if self.target_angles is None or not len(self.target_angles):
            return None
        k = self.bone if bone is None else bone
        return H.coverage(self.target_angles[:, k], self.limits.hulls[k])

    def select_bone(self, finger: int | str, layer: int | str) -> None:
        """Select the bone by finger and layer (index or name; no arrays, unitless)."""
        self.select(angle_bone_index(finger, layer))

    def select(self, bone: int, vertex: int = 0) -> None:
        """Select angle bone `bone` (0..NUM_ANGLE_BONES-1) and one of its hull vertices (unitless)."""
        if not 0 <= bone < NUM_ANGLE_BONES:
            raise ValueError(f"bone {bone} out of range 0..{NUM_ANGLE_BONES - 1}")
        self.bone = int(bone)
        self.vertex = int(np.clip(vertex, 0, len(self.hull) - 1))
        self.message = ""
        self._changed()

    def select_vertex(self, i: int) -> None:
        """Select vertex `i` of the current hull (an index; unitless)."""
        if not 0 <= i < len(self.hull):
            raise ValueError(f"vertex {i} out of range (hull has {len(self.hull)} vertices)")
        self.vertex = int(i)
        self._changed()

    def nearest_vertex(self, xy) -> int:
        """Index of the current hull's vertex closest to `xy` = (flexion, abduction) in radians."""
        return int(np.argmin(np.linalg.norm(self.hull - np.asarray(xy, float), axis=1)))

    # ------------------------------------------------------------------ edits
    def _apply(self, edit: dict, select_after: Callable[[np.ndarray], int] | None = None) -> bool:
        edit = {"op": edit["op"], "bone": self.bone, **{k: v for k, v in edit.items()
                                                         if k not in ("op", "bone")}}
        try:
            hulls = apply_edit(self.limits.hulls, edit, self.limits.fitted_hulls)
        except ValueError as err:
            self.message = f"refused {edit['op']} on {self.bone_label}: {err}"
            self._changed()
            return False
        self._undo.append(([h.copy() for h in self.limits.hulls], list(self.limits.edits),
                           self.bone, self.vertex))
        self.limits.hulls = hulls
        self.limits.edits = self.limits.edits + [edit]
        self.limits._cache = {}
        n = len(self.hull)
        self.vertex = int(np.clip(select_after(self.hull) if select_after else self.vertex, 0, n - 1))
        dropped = len(self._undo[-1][0][self.bone]) - n + (edit["op"] == "insert")
        self.message = f"{edit['op']} on {self.bone_label}: ok" + (
            f" ({dropped} neighbouring vertex(es) became reflex and were dropped)"
            if edit["op"] in ("move", "insert") and dropped > 0 else "")
        self._changed()
        return True

    def move_vertex(self, to) -> bool:
        """Move the selected vertex to `to` = (flexion, abduction) in radians."""
        to = [float(to[0]), float(to[1])]
        return self._apply({"op": "move", "index": self.vertex, "to": to},
                           select_after=lambda h: int(np.argmin(np.linalg.norm(h - to, axis=1))))

    def insert_vertex(self, at=None) -> bool:
        """Insert a vertex at `at` (radians); default: just outside the midpoint of the edge
        that follows the selected vertex. The new vertex becomes the selection."""
        if at is None:
            a, b = self.hull[self.vertex], self.hull[(self.vertex + 1) % len(self.hull)]
            edge = b - a
            outward = np.array([edge[1], -edge[0]]) / max(np.linalg.norm(edge), 1e-12)
            at = 0.5 * (a + b) + _ADD_OUTWARD * outward
        at = [float(at[0]), float(at[1])]
        return self._apply({"op": "insert", "at": at},
                           select_after=lambda h: int(np.argmin(np.linalg.norm(h - at, axis=1))))

    def click(self, xy, mode: str = "select", tolerance_deg: float = 6.0) -> bool:
        """A click on the plot at `xy` = (flexion, abduction) radians, anywhere in the plot area.

        ``select``: select the nearest vertex (within `tolerance_deg`); ``move here``: move the
        selected vertex to `xy`; ``add here``: insert a vertex at `xy`. A click that changes
        nothing says why in :attr:`message` and returns False.
        """
        xy = np.asarray(xy, dtype=np.float64)
        where = f"({np.degrees(xy[0]):.1f}°, {np.degrees(xy[1]):.1f}°)"
        if mode not in CLICK_MODES:
            raise ValueError(f"click mode {mode!r} not in {CLICK_MODES}")
        if not np.isfinite(xy).all():
            self.message = f"click ignored: no angle at {where}"
            self._changed()
            return False
        if mode == "select":
            i = self.nearest_vertex(xy)
            dist = np.degrees(np.linalg.norm(self.hull[i] - xy))
            if dist > tolerance_deg:
                self.message = (f"click at {where} ignored: no vertex within {tolerance_deg:.0f}° "
                                f"(nearest: vertex {i}, {dist:.1f}° away); choose click "
                                "'move here' or 'add here' to edit at an empty point")
                self._changed()
                return False
            self.vertex = i
            self.message = f"selected vertex {i} by click"
            self._changed()
            return True
        if mode == "move here":
            if np.degrees(np.abs(self.hull[self.vertex] - xy)).max() < 1e-6:
                self.message = f"click at {where} ignored: the selected vertex is already there"
                self._changed()
                return False
            return self.move_vertex(xy)
        if H.coverage(xy[None], self.hull) > 0:
            self.message = (f"click at {where} ignored: inside the hull, a vertex there would "
                            "make it non-convex (add outside it, or move a vertex)")
            self._changed()
            return False
        return self.insert_vertex(xy)

    def delete_vertex(self) -> bool:
        """Delete the selected vertex (undoable); bool: False when the edit was refused."""
        return self._apply({"op": "delete", "index": self.vertex},
                           select_after=lambda h: min(self.vertex, len(h) - 1))

    def scale(self, factor: float) -> bool:
        """Scale the selected hull about its centroid (factor > 1 widens the limits; unitless);
        bool: False when the edit was refused."""
        return self._apply({"op": "scale", "factor": float(factor)})

    def translate(self, by) -> bool:
        """Shift the selected hull by `by` = (dflexion, dabduction) radians."""
        return self._apply({"op": "translate", "by": [float(by[0]), float(by[1])]})

    def reset_bone(self) -> bool:
        """Back to the fitted hull for the selected bone (undoable); bool: False when refused."""
        return self._apply({"op": "reset"})

    def undo(self) -> bool:
        """Undo the last edit; bool: False when there was nothing to undo."""
        if not self._undo:
            self.message = "nothing to undo"
            self._changed()
            return False
        hulls, edits, self.bone, self.vertex = self._undo.pop()
        self.limits.hulls, self.limits.edits = hulls, edits
        self.limits._cache = {}
        self.message = "undone"
        self._changed()
        return True

    def reset_all(self) -> None:
        """Back to the fitted hulls with no edits (undoable; no arrays, unitless)."""
        self._undo.append(([h.copy() for h in self.limits.hulls], list(self.limits.edits),
                           self.bone, self.vertex))
        self.limits.hulls = [h.copy() for h in self.limits.fitted_hulls]
        self.limits.edits = []
        self.limits._cache = {}
        self.vertex = min(self.vertex, len(self.hull) - 1)
        self.message = "all hulls reset to the fitted ones"
        self._changed()

    # ------------------------------------------------------------------ preview / save
    def preview_pose(self) -> np.ndarray:
        """(21, 3) base pose with the selected bone posed at the selected vertex's angles
        (the other bones keep the base pose's angles)."""
        ang = joint_angles(self.base_pose).copy()
        ang[self.bone] = self.hull[self.vertex]
        return pose_from_angles(self.base_pose, ang)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the limits (with their edit log) atomically to `path` (default: self.path); hull
        vertices are stored in radians. Returns the path written."""
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("no path to save to: pass one or construct the editor with path=")
        try:
            out = save_limits(self.limits, path)
        except LimitsError as err:
            self.message = f"not saved: {err}"
            self._changed()
            raise
        self.path = out
        self._saved_edits = list(self.limits.edits)
        self.message = f"saved {len(self.limits.edits)} edit(s) to {out.name}"
        self._changed()
        return out

    def summary(self) -> str:
        """One status line: selected bone, vertex count, coverage in percent of the fitting angles."""
        tc = self.target_coverage()
        target = "" if tc is None else (f", {100 * tc:.2f}% of {len(self.target_angles)} "
                                        "target angles")
        return (f"{self.bone_label}: {len(self.hull)} vertices, coverage "
                f"{100 * self.coverage():.2f}% of {len(self.angles)} training angles "
                f"(fitted hull: {100 * self.fitted_coverage():.2f}%){target}, "
                f"{len(self.limits.edits)} edit(s)")


# ============================================================================ the view
class HullEditor:
    """ipywidgets view of a :class:`HullEditorModel` (``display(editor.widget)``).

    Angles are shown and typed in degrees; the model works in radians.
    """

    def __init__(self, model: HullEditorModel, max_points: int = 4000):
        import ipywidgets as W
        import plotly.graph_objects as go

        self.model = model
        self._syncing = False
        rng = np.random.default_rng(0)
        n = len(model.angles)
        self._shown = rng.choice(n, size=min(n, max_points), replace=False) if n else np.arange(0)

        lay = W.Layout(width="190px")
        self.finger = W.Dropdown(options=list(sk.FINGER_NAMES), description="finger", layout=lay)
        # the bone by the joints it spans; the value is the joint where its angles are measured
        self.layer = W.Dropdown(options=list(zip(LAYER_LABELS, LAYER_NAMES)), description="bone",
                                layout=lay)
        self.vertex = W.Dropdown(options=[], description="vertex", layout=W.Layout(width="270px"))
        # sliders over the data's range (set per bone in refresh), 0.5° steps, arrow keys nudge
        # by one step once the handle has focus; the number boxes show and take the exact value
        slider = dict(min=-180.0, max=180.0, step=0.5, continuous_update=False, readout=False,
                      layout=W.Layout(width="300px"))
        self.flex = W.FloatSlider(**slider)
        self.abd = W.FloatSlider(**slider)
        box = dict(min=-180.0, max=180.0, step=0.5, layout=W.Layout(width="190px"))
        self.flex_box = W.BoundedFloatText(description="flexion°", **box)
        self.abd_box = W.BoundedFloatText(description="abduction°", **box)
        self.click_mode = W.ToggleButtons(options=list(CLICK_MODES), description="click",
                                          style={"button_width": "95px"})
        self.add_btn = W.Button(description="add vertex", icon="plus")
        self.del_btn = W.Button(description="delete vertex", icon="trash")
        self.factor = W.BoundedFloatText(value=1.1, min=0.1, max=10.0, step=0.05,
                                         description="factor", layout=W.Layout(width="150px"))
        self.scale_btn = W.Button(description="scale hull")
        self.dflex = W.FloatText(value=0.0, description="Δflex°", layout=W.Layout(width="150px"))
        self.dabd = W.FloatText(value=0.0, description="Δabd°", layout=W.Layout(width="150px"))
        self.shift_btn = W.Button(description="offset hull")
        self.undo_btn = W.Button(description="undo", icon="undo")
        self.reset_btn = W.Button(description="reset bone")
        self.reset_all_btn = W.Button(description="reset all")
        self.save_btn = W.Button(description="save", icon="save", button_style="primary")
        self.status = W.HTML()

        rng_t = np.random.default_rng(1)
        nt = 0 if model.target_angles is None else len(model.target_angles)
        self._shown_target = (rng_t.choice(nt, size=min(nt, max_points), replace=False)
                              if nt else np.arange(0))
        self.fig = go.FigureWidget()
        # trace order (indices are used by tests): 0 source angles, 1 fitted hull, 2 hull,
        # 3 selected vertex, 4 target angles, 5 an invisible grid over the axes' range that
        # catches clicks on empty plot area (plotly reports clicks on points only; the click's
        # position is that of the nearest grid point)
        self.fig.add_scattergl(x=[], y=[], mode="markers", name="training angles (source)",
                               marker=dict(size=5, color=SOURCE_COLOR))
        self.fig.add_scatter(x=[], y=[], mode="lines", name="fitted hull", hoverinfo="skip",
                             line=dict(color="gray", dash="dash"))
        self.fig.add_scatter(x=[], y=[], mode="lines+markers", name="hull", fill="toself",
                             fillcolor="rgba(31,119,180,0.12)", line=dict(color="#1f77b4"),
                             marker=dict(size=9))
        self.fig.add_scatter(x=[], y=[], mode="markers", name="selected vertex", hoverinfo="skip",
                             marker=dict(size=15, color="#d62728", symbol="circle-open",
                                         line=dict(width=3)))
        self.fig.add_scattergl(x=[], y=[], mode="markers", name="target angles",
                               visible=bool(nt), showlegend=bool(nt),
                               marker=dict(size=6, color=TARGET_COLOR, symbol="diamond"))
        self.fig.add_scattergl(x=[], y=[], mode="markers", name="click grid", hoverinfo="none",
                               showlegend=False, marker=dict(size=8, color="rgba(0,0,0,0)"))
        self._trace = {"source": 0, "fitted": 1, "hull": 2, "selected": 3, "target": 4, "grid": 5}
        # titles left-aligned, the modebar upright at the right edge: it never covers a title
        self.fig.update_layout(height=450, width=600, margin=dict(l=50, r=40, t=40, b=40),
                               title=dict(x=0.01, xanchor="left", font=dict(size=14)),
                               modebar=dict(orientation="v"), hovermode="closest",
                               xaxis=dict(title="flexion (deg)", autorange=False),
                               yaxis=dict(title="abduction (deg)", autorange=False),
                               legend=dict(orientation="h", y=-0.2))
        self.preview = go.FigureWidget()
        for _ in range(5):
            self.preview.add_scatter3d(x=[], y=[], z=[], mode="lines+markers",
                                       marker=dict(size=2), line=dict(width=5), showlegend=False)
        self.preview.update_layout(height=450, width=380, margin=dict(l=0, r=30, t=40, b=0),
                                   title=dict(text="pose at the selected vertex", x=0.02,
                                              xanchor="left", font=dict(size=14)),
                                   modebar=dict(orientation="v"),
                                   scene=dict(aspectmode="data", xaxis_visible=False,
                                              yaxis_visible=False, zaxis_visible=False,
                                              camera=dict(eye=dict(x=0.2, y=-1.6, z=0.9))))

        self.finger.observe(self._on_bone, "value")
        self.layer.observe(self._on_bone, "value")
        self.vertex.observe(self._on_vertex, "value")
        for w in (self.flex, self.abd, self.flex_box, self.abd_box):
            w.observe(self._on_slider, "value")
        self.add_btn.on_click(lambda _: self.model.insert_vertex())
        self.del_btn.on_click(lambda _: self.model.delete_vertex())
        self.scale_btn.on_click(lambda _: self.model.scale(self.factor.value))
        self.shift_btn.on_click(lambda _: self.model.translate(
            np.radians([self.dflex.value, self.dabd.value])))
        self.undo_btn.on_click(lambda _: self.model.undo())
        self.reset_btn.on_click(lambda _: self.model.reset_bone())
        self.reset_all_btn.on_click(lambda _: self.model.reset_all())
        self.save_btn.on_click(lambda _: self._save())
        for name in ("grid", "source", "target", "hull"):
            self.fig.data[self._trace[name]].on_click(self._on_plot_click)
        model.on_change(lambda _m: self.refresh())
        # stable hooks for browser tests and custom CSS
        self.fig.add_class("bmc-hull-plot")
        self.preview.add_class("bmc-hand-preview")
        self.status.add_class("bmc-editor-status")
        self.flex.add_class("bmc-flex-slider")
        self.abd.add_class("bmc-abd-slider")

        self.widget = W.VBox([
            W.HBox([self.finger, self.layer, self.vertex]),
            W.HBox([self.flex_box, self.flex, self.abd_box, self.abd]),
            self.click_mode,
            W.HBox([self.add_btn, self.del_btn, self.undo_btn, self.reset_btn,
                    self.reset_all_btn, self.save_btn]),
            W.HBox([self.factor, self.scale_btn, self.dflex, self.dabd, self.shift_btn]),
            W.HBox([self.fig, self.preview]),
            self.status,
        ])
        self.refresh()

    # ------------------------------------------------------------------ callbacks
    def _on_bone(self, _change=None) -> None:
        if not self._syncing:
            self.model.select_bone(self.finger.value, self.layer.value)

    def _on_vertex(self, change=None) -> None:
        if not self._syncing and self.vertex.value is not None:
            self.model.select_vertex(int(self.vertex.value))

    def _on_slider(self, change=None) -> None:
        if self._syncing:
            return
        # only the coordinate whose slider moved changes: the other keeps its exact value
        # (the sliders show 0.5° steps)
        to = self.model.hull[self.model.vertex].copy()
        owner = getattr(change, "owner", None) if not isinstance(change, dict) else change.get("owner")
        flex = self.flex_box.value if owner is self.flex_box else self.flex.value
        abd = self.abd_box.value if owner is self.abd_box else self.abd.value
        if owner not in (self.abd, self.abd_box):
            to[0] = np.radians(flex)
        if owner not in (self.flex, self.flex_box):
            to[1] = np.radians(abd)
        if np.allclose(to, self.model.hull[self.model.vertex], atol=1e-12):
            return
        self.model.move_vertex(to)

    def _on_plot_click(self, trace, points, _state=None) -> None:
        """plotly calls this once per registered trace; only the clicked one has points."""
        if not points.point_inds:
            return
        self.model.click(np.radians([points.xs[0], points.ys[0]]), self.click_mode.value)

    def _save(self) -> None:
        try:
            self.model.save()
        except (LimitsError, ValueError, OSError):
            pass  # the model put the reason into its message, shown in the status line

    # ------------------------------------------------------------------ redraw
    _grid_range: tuple | None = None

    @staticmethod
    def _grid(x0: float, x1: float, y0: float, y1: float, n: int = 160):
        """Points of the click grid: about `n` columns/rows, steps multiples of 0.5°."""
        sx = max(0.5, np.round((x1 - x0) / n * 2) / 2)
        sy = max(0.5, np.round((y1 - y0) / n * 2) / 2)
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1e-9, sx), np.arange(y0, y1 + 1e-9, sy))
        return gx.ravel(), gy.ravel()

    def refresh(self) -> None:
        """Redraw the figure and the controls from the model (angles shown in degrees; no arrays)."""
        m = self.model
        deg = np.degrees
        hull = m.hull
        closed = np.vstack([hull, hull[:1]])
        fitted = np.vstack([m.fitted_hull, m.fitted_hull[:1]])
        cloud = m.angles[self._shown, m.bone]
        finger, layer = divmod(m.bone, 3)
        (x0, x1), (y0, y1) = m.angle_range()
        T = self._trace
        self._syncing = True
        try:
            self.finger.value = sk.FINGER_NAMES[finger]
            self.layer.value = LAYER_NAMES[layer]
            self.vertex.options = [(f"{i}: ({deg(v[0]):.1f}°, {deg(v[1]):.1f}°)", i)
                                   for i, v in enumerate(hull)]
            self.vertex.value = m.vertex
            v = deg(hull[m.vertex])
            # the boxes take any angle (-180..180): typing may go beyond the slider's range
            for w, lo, hi, val in ((self.flex, x0, x1, v[0]), (self.abd, y0, y1, v[1])):
                lo, hi = min(lo, val), max(hi, val)
                if (w.min, w.max) != (lo, hi):   # order matters: never min > max on the way
                    w.max = max(hi, w.min)
                    w.min, w.max = lo, hi
                w.value = float(np.round(val * 2) / 2)
            self.flex_box.value = float(np.round(v[0], 2))
            self.abd_box.value = float(np.round(v[1], 2))
            with self.fig.batch_update():
                if self._grid_range != (x0, x1, y0, y1):
                    gx, gy = self._grid(x0, x1, y0, y1)
                    self.fig.data[T["grid"]].x, self.fig.data[T["grid"]].y = gx, gy
                    self._grid_range = (x0, x1, y0, y1)
                    self.fig.layout.xaxis.range = [x0, x1]
                    self.fig.layout.yaxis.range = [y0, y1]
                self.fig.data[T["source"]].x = deg(cloud[:, 0])
                self.fig.data[T["source"]].y = deg(cloud[:, 1])
                if m.target_angles is not None and len(self._shown_target):
                    tgt = m.target_angles[self._shown_target, m.bone]
                    self.fig.data[T["target"]].x = deg(tgt[:, 0])
                    self.fig.data[T["target"]].y = deg(tgt[:, 1])
                self.fig.data[T["fitted"]].x = deg(fitted[:, 0])
                self.fig.data[T["fitted"]].y = deg(fitted[:, 1])
                self.fig.data[T["hull"]].x = deg(closed[:, 0])
                self.fig.data[T["hull"]].y = deg(closed[:, 1])
                self.fig.data[T["selected"]].x = [v[0]]
                self.fig.data[T["selected"]].y = [v[1]]
                tc = m.target_coverage()
                self.fig.layout.title.text = (
                    f"{m.bone_label}: coverage {100 * m.coverage():.1f}%"
                    + ("" if tc is None else f", target {100 * tc:.1f}%"))
            pose = m.preview_pose()
            p = pose - pose[0]
            with self.preview.batch_update():
                for f in range(5):
                    chain = [0, *sk.FINGERS[f]]
                    tr = self.preview.data[f]
                    tr.x, tr.y, tr.z = p[chain, 0], p[chain, 2], -p[chain, 1]
                    hot = f == finger
                    tr.line = dict(color=FINGER_COLORS[f], width=9 if hot else 4)
        finally:
            self._syncing = False
        msg = f"<br><b>{m.message}</b>" if m.message else ""
        self.status.value = f"<span class='bmc-status'>{m.summary()}{msg}</span>"


def preview_base_pose(kp3d: np.ndarray, is_left: np.ndarray | None = None) -> np.ndarray:
    """(21, 3) normalised right-hand pose for the editor preview: the training pose whose
    angles are closest to the per-bone median (a typical, not an extreme, hand)."""
    kp = canonical_pose(np.asarray(kp3d, dtype=np.float64), is_left)
    ang = bmc_features(kp)["angles"]
    i = int(np.argmin(np.abs(ang - np.median(ang, axis=0)).sum((1, 2))))
    return kp[i]
