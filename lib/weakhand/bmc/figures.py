"""Plotly figures of BMC limits: distributions with fitted intervals, per-bone angle clouds
with hulls, and violation rates per constraint."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import skeleton as sk
from .geometry import ANGLE_BONE_NAMES, PAIR_NAMES
from .limits import BMCLimits

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")

# One vocabulary for the 15 angle hulls (editor dropdown, titles, messages, these figures): the
# bone by the joints it spans, e.g. "index PIP→DIP" -- its angles are measured at its first joint
# (the editor's "bone" dropdown value "pip") and limits.json keys its hull by the joint it ends
# at ("index_dip", ANGLE_BONE_NAMES), which every label below also names.
_JOINT_LABELS = ("MCP", "PIP", "DIP", "tip")
LAYER_LABELS = tuple(f"{a}→{b}" for a, b in zip(_JOINT_LABELS[:-1], _JOINT_LABELS[1:]))
BONE_LABELS = tuple(f"{sk.FINGER_NAMES[k // 3]} {LAYER_LABELS[k % 3]}" for k in range(15))


def bone_label(k: int, key: bool = True) -> str:
    """'index PIP→DIP (index_dip)': hull `k` (0..14) by its bone, with its limits.json key (a
    str; no arrays)."""
    return f"{BONE_LABELS[k]} ({ANGLE_BONE_NAMES[k]})" if key else BONE_LABELS[k]


def _sample(a: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    if len(a) <= n:
        return a
    return a[np.random.default_rng(seed).choice(len(a), n, replace=False)]


def distributions(features: Mapping[str, dict], limits: BMCLimits, max_points: int = 3000,
                  title: str = "") -> go.Figure:
    """Bone lengths (unitless, scale bone = 1), palm curvature and angular distance (deg) per
    dataset (``features``: name → :func:`weakhand.bmc.geometry.bmc_features` output), with the
    fitted [min, max] intervals as black bars."""
    fig = make_subplots(rows=2, cols=2, specs=[[{"colspan": 2}, None], [{}, {}]],
                        vertical_spacing=0.15,
                        subplot_titles=("bone length / scale bone", "palm curvature (1/scale)",
                                        "angle between neighbouring root bones (deg)"))
    for c, (name, f) in enumerate(features.items()):
        color = COLORS[c % len(COLORS)]
        for key, row, col, names, conv in (("bone_length", 1, 1, sk.BONE_NAMES, 1.0),
                                           ("curvature", 2, 1, PAIR_NAMES, 1.0),
                                           ("angular_distance", 2, 2, PAIR_NAMES, 180 / np.pi)):
            v = _sample(np.asarray(f[key]), max_points) * conv
            fig.add_trace(go.Box(x=np.repeat(np.asarray(names), len(v)), y=v.T.reshape(-1),
                                 name=name, legendgroup=name, showlegend=key == "bone_length",
                                 marker_color=color, boxpoints=False, offsetgroup=name),
                          row=row, col=col)
    for key, row, col, names, conv in (("bone_length", 1, 1, sk.BONE_NAMES, 1.0),
                                       ("curvature", 2, 1, PAIR_NAMES, 1.0),
                                       ("angular_distance", 2, 2, PAIR_NAMES, 180 / np.pi)):
        lim = np.asarray(getattr(limits, key)) * conv
        fig.add_trace(go.Scatter(x=list(names), y=lim[:, 1], mode="markers", name="fitted limits",
                                 marker=dict(symbol="line-ew-open", size=22, color="black"),
                                 error_y=dict(type="data", symmetric=False, array=0 * lim[:, 1],
                                              arrayminus=lim[:, 1] - lim[:, 0], width=0),
                                 legendgroup="limits", showlegend=key == "bone_length"),
                      row=row, col=col)
    fig.update_layout(boxmode="group", height=720, title=title,
                      margin=dict(l=40, r=10, t=70, b=40))
    return fig


def angle_hulls(angles: Mapping[str, np.ndarray], limits: BMCLimits, max_points: int = 1500,
                title: str = "") -> go.Figure:
    """5 × 3 grid (finger × joint) of (flexion, abduction) clouds in degrees per dataset
    (``angles``: name → (N, 15, 2) radians) with the current hull (solid) and, where edited,
    the fitted hull (dashed)."""
    fig = make_subplots(rows=5, cols=3, horizontal_spacing=0.06, vertical_spacing=0.04,
                        subplot_titles=[bone_label(k) for k in range(15)])
    deg = np.degrees
    for k in range(15):
        r, c = k // 3 + 1, k % 3 + 1
        for d, (name, a) in enumerate(angles.items()):
            v = deg(_sample(np.asarray(a)[:, k], max_points, seed=k))
            fig.add_trace(go.Scattergl(x=v[:, 0], y=v[:, 1], mode="markers", name=name,
                                       legendgroup=name, showlegend=k == 0,
                                       marker=dict(size=4, color=COLORS[d % len(COLORS)],
                                                   opacity=0.5)), row=r, col=c)
        for hull, dash, nm in ((limits.hulls[k], "solid", "hull"),
                               (limits.fitted_hulls[k], "dash", "fitted hull")):
            if dash == "dash" and np.array_equal(limits.hulls[k], limits.fitted_hulls[k]):
                continue
            h = deg(np.vstack([hull, hull[:1]]))
            fig.add_trace(go.Scatter(x=h[:, 0], y=h[:, 1], mode="lines", name=nm,
                                     legendgroup=nm, showlegend=k == 0 and dash == "solid",
                                     line=dict(color="black", width=1.5, dash=dash)),
                          row=r, col=c)
    for c, layer in enumerate(LAYER_LABELS):
        fig.update_xaxes(title_text=f"flexion of {layer} (deg)", row=5, col=c + 1)
    for r in range(5):
        fig.update_yaxes(title_text="abd (deg)", row=r + 1, col=1)
    fig.update_layout(height=1300, title=title, margin=dict(l=50, r=10, t=70, b=40))
    return fig


def violation_bars(rates: Mapping[str, dict], title: str = "") -> go.Figure:
    """Grouped bars: percent of poses violating each constraint family, one bar per dataset
    (``rates``: name → :func:`weakhand.bmc.loss.violation_rates` output, fractions in [0, 1])."""
    keys = ("bone_length", "curvature", "angular_distance", "angles", "any")
    fig = go.Figure()
    for d, (name, r) in enumerate(rates.items()):
        y = [100 * r[k] for k in keys]
        fig.add_trace(go.Bar(x=list(keys), y=y, name=name, marker_color=COLORS[d % len(COLORS)],
                             text=[f"{v:.1f}%" for v in y], textposition="outside"))
    fig.update_layout(barmode="group", yaxis_title="% of poses violating", title=title,
                      height=380, margin=dict(l=50, r=10, t=60, b=40))
    return fig


def per_bone_violations(rates: Mapping[str, dict], title: str = "") -> go.Figure:
    """Percent of poses outside each of the 15 bones' angle hulls, one bar group per dataset
    (``rates`` as for :func:`violation_bars`: ``per_item["angles"]`` (15,) fractions)."""
    fig = go.Figure()
    for d, (name, r) in enumerate(rates.items()):
        fig.add_trace(go.Bar(x=list(ANGLE_BONE_NAMES), y=100 * np.asarray(r["per_item"]["angles"]),
                             name=name, marker_color=COLORS[d % len(COLORS)]))
    fig.update_layout(barmode="group", yaxis_title="% outside hull", title=title, height=360,
                      margin=dict(l=50, r=10, t=60, b=80))
    return fig
