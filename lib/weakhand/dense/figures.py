"""Plotly figures of the dense depth model: the predicted fields of one joint, votes and
mean-shift in 3D, and per-joint errors."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import skeleton as sk


def field_panels(dn: np.ndarray, h2: np.ndarray, h3: np.ndarray, u: np.ndarray, joint: int,
                 title: str = "") -> go.Figure:
    """Input depth (S, S) normalised, and for one joint the predicted H2 (h, w), H3 (h, w) and
    the three components of U (3, h, w)."""
    name = sk.JOINT_NAMES[joint]
    fig = make_subplots(rows=1, cols=6, horizontal_spacing=0.02, subplot_titles=(
        "depth input", f"H2 {name}", f"H3 {name}", "U x", "U y", "U z"))
    panels = [(dn, "gray", None, None), (h2, "viridis", 0, 1), (h3, "viridis", 0, 1),
              (u[0], "RdBu", -1, 1), (u[1], "RdBu", -1, 1), (u[2], "RdBu", -1, 1)]
    for c, (img, cs, lo, hi) in enumerate(panels):
        fig.add_trace(go.Heatmap(z=np.asarray(img)[::-1], colorscale=cs, zmin=lo, zmax=hi,
                                 showscale=False), row=1, col=c + 1)
        fig.update_xaxes(visible=False, row=1, col=c + 1)
        fig.update_yaxes(visible=False, scaleanchor=f"x{c + 1}" if c else "x", row=1, col=c + 1)
    fig.update_layout(height=260, title=title, margin=dict(l=5, r=5, t=60, b=5))
    return fig


def votes_3d(points: np.ndarray, valid: np.ndarray, votes: np.ndarray, h3: np.ndarray,
             candidates: np.ndarray, weights: np.ndarray, result: np.ndarray,
             truth: np.ndarray | None, joint: int, min_h3: float = 0.05,
             title: str = "") -> go.Figure:
    """One joint in 3D (mm): the observed surface points, every pixel's vote (coloured by H3,
    only where H3 > min_h3), the top-N candidates (size ∝ weight), the mean-shift result and
    the ground truth."""
    p = points[valid]
    sel = valid & (h3 > min_h3)
    v = votes[sel]
    fig = go.Figure()
    fig.add_trace(go.Scatter3d(x=p[:, 0], y=p[:, 2], z=-p[:, 1], mode="markers", name="surface",
                               marker=dict(size=1.5, color="lightgray")))
    fig.add_trace(go.Scatter3d(x=v[:, 0], y=v[:, 2], z=-v[:, 1], mode="markers", name="votes",
                               marker=dict(size=2, color=h3[sel], colorscale="Viridis",
                                           cmin=0, cmax=1, colorbar=dict(title="H3", len=0.5))))
    w = np.asarray(weights, float)
    fig.add_trace(go.Scatter3d(x=candidates[:, 0], y=candidates[:, 2], z=-candidates[:, 1],
                               mode="markers", name="top-N candidates",
                               marker=dict(size=4 + 10 * w / max(w.max(), 1e-9), color="orange")))
    fig.add_trace(go.Scatter3d(x=[result[0]], y=[result[2]], z=[-result[1]], mode="markers",
                               name="mean-shift", marker=dict(size=8, color="red", symbol="x")))
    if truth is not None:
        fig.add_trace(go.Scatter3d(x=[truth[0]], y=[truth[2]], z=[-truth[1]], mode="markers",
                                   name="ground truth", marker=dict(size=8, color="green",
                                                                    symbol="diamond")))
    fig.update_layout(title=title or f"votes for {sk.JOINT_NAMES[joint]}", height=480,
                      margin=dict(l=0, r=0, t=40, b=0),
                      scene=dict(aspectmode="data", xaxis_title="x (mm)", yaxis_title="z (mm)",
                                 zaxis_title="-y (mm)"))
    return fig


def per_joint_errors(errors: Mapping[str, np.ndarray], title: str = "") -> go.Figure:
    """Grouped bars of the mean 3D error (mm) per joint, one group per model/split."""
    fig = go.Figure()
    for name, e in errors.items():
        fig.add_trace(go.Bar(x=list(sk.JOINT_NAMES), y=np.asarray(e), name=name))
    fig.update_layout(barmode="group", yaxis_title="mean 3D error (mm)", title=title, height=380,
                      margin=dict(l=50, r=10, t=60, b=90))
    return fig
