"""Plotly figures for the notebooks. Functions return `go.Figure` and never display anything.

Images are embedded as PNG data URIs (compact in executed notebooks), not as JSON pixel arrays.
"""
from __future__ import annotations

import base64
from typing import Mapping, Sequence

import cv2
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import skeleton as sk

FINGER_COLORS = ("#e6194b", "#f58231", "#3cb44b", "#4363d8", "#911eb4")
DOMAIN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def png_uri(img: np.ndarray) -> str:
    """uint8 RGB (H,W,3) or grey (H,W) → PNG data URI."""
    if img.ndim == 3:
        img = img[..., ::-1]  # cv2 encodes BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def colorize_depth(depth_mm: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(H,W) depth in mm → uint8 RGB with a turbo colour map over the valid range (near = red
    end when hand-masked range is used); missing (0) pixels are black."""
    valid = depth_mm > 0
    ref = valid & (mask > 0) if mask is not None and (valid & (mask > 0)).any() else valid
    out = np.zeros(depth_mm.shape + (3,), np.uint8)
    if not ref.any():
        return out
    lo, hi = np.percentile(depth_mm[ref], [1, 99])
    hi = max(hi, lo + 1.0)
    norm = np.clip((depth_mm - lo) / (hi - lo), 0, 1)
    col = cv2.applyColorMap((255 * (1 - norm)).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    out[valid] = col[valid]
    return out


def colorize_parts(parts: np.ndarray) -> np.ndarray:
    """(H,W) part labels → uint8 RGB (fixed random palette, background black)."""
    rng = np.random.default_rng(7)
    pal = rng.integers(60, 256, (256, 3)).astype(np.uint8)
    pal[0] = 0
    return pal[parts]


def _skeleton_traces(kp2d: np.ndarray, vis: np.ndarray, showlegend: bool = False) -> list:
    traces = []
    for f, color in enumerate(FINGER_COLORS):
        chain = [0, *sk.FINGERS[f]]
        traces.append(go.Scatter(x=kp2d[chain, 0], y=kp2d[chain, 1], mode="lines",
                                 line=dict(color=color, width=2), hoverinfo="skip",
                                 showlegend=False))
    v = vis.astype(bool)
    for sel, symbol, name in ((v, "circle", "visible"), (~v, "circle-open", "occluded")):
        idx = np.flatnonzero(sel)
        traces.append(go.Scatter(
            x=kp2d[idx, 0], y=kp2d[idx, 1], mode="markers", name=name, legendgroup=name,
            showlegend=showlegend, marker=dict(size=5, symbol=symbol, color="white",
                                               line=dict(color="black", width=1)),
            text=[sk.JOINT_NAMES[i] for i in idx], hoverinfo="text"))
    return traces


def sample_grid(data, indices: Sequence[int], ncols: int = 8, title: str = "") -> go.Figure:
    """RGB crops with the 2-D skeleton (filled = visible, hollow = occluded joints), from a
    :class:`~weakhand.data.HandData`'s raw ``rgb`` (N, H, W, 3) uint8 and ``kp2d`` (N, 21, 2) crop
    px at `indices`; 150 px per row."""
    indices = list(indices)
    nrows = -(-len(indices) // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, horizontal_spacing=0.005, vertical_spacing=0.01,
                        subplot_titles=[f"#{i} {'R' if data.arrays['side'][i] else 'L'}"
                                        for i in indices])
    for k, i in enumerate(indices):
        r, c = k // ncols + 1, k % ncols + 1
        fig.add_trace(go.Image(source=png_uri(np.asarray(data.arrays["rgb"][i]))), r, c)
        if data.arrays["has_2d"][i]:
            for tr in _skeleton_traces(np.asarray(data.arrays["kp2d"][i]),
                                       np.asarray(data.arrays["vis"][i]), showlegend=(k == 0)):
                fig.add_trace(tr, r, c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=9)
    # no fixed width: the figure follows the notebook's output width (images keep their aspect)
    fig.update_layout(title=title, height=150 * nrows + 60, autosize=True,
                      margin=dict(l=5, r=5, t=60, b=5),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom"))
    return fig


def modality_panel(data, indices: Sequence[int], title: str = "") -> go.Figure:
    """One row per sample: RGB | depth (turbo, missing = black) | hand mask | part labels, from a
    :class:`~weakhand.data.HandData` (depth read in mm by ``depth_mm``; each image (H, W) px)."""
    indices = list(indices)
    cols = ("RGB", "depth", "mask", "parts")
    fig = make_subplots(rows=len(indices), cols=4, horizontal_spacing=0.01, vertical_spacing=0.01,
                        column_titles=list(cols))
    for k, i in enumerate(indices):
        d = data.depth_mm(i)
        m = np.asarray(data.arrays["mask"][i])
        imgs = [np.asarray(data.arrays["rgb"][i]), colorize_depth(d, m),
                np.repeat((m * 255)[..., None], 3, -1).astype(np.uint8)]
        imgs.append(colorize_parts(np.asarray(data.arrays["parts"][i])) if "parts" in data
                    else np.zeros_like(imgs[0]))
        for c, img in enumerate(imgs):
            fig.add_trace(go.Image(source=png_uri(img), name=f"#{i} {cols[c]}"), k + 1, c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=140 * len(indices) + 60, width=560,
                      margin=dict(l=5, r=5, t=60, b=5))
    return fig


def skeletons_3d(kps: Sequence[np.ndarray], names: Sequence[str] | None = None,
                 title: str = "", ncols: int | None = None, row_height: int = 300) -> go.Figure:
    """3-D skeletons (mm) in a grid, `ncols` per row (default: up to 4), bones coloured by
    finger, each labelled with its name.

    Each hand is centred in its cell in x and y (the camera's image plane) and keeps its depth
    relative to the root. All cells have the size of the largest hand, the axis ranges are
    fixed and equally scaled, and the camera looks from slightly above the image-plane view,
    so the hands fill the figure at every count (no thin strip of far-away hands).
    """
    pts = [np.asarray(kp, float) for kp in kps]
    n = len(pts)
    ncols = max(1, min(n, ncols or 4))
    nrows = max(1, -(-n // ncols))
    centred = []
    for p in pts:
        q = p - p[0]
        ok = np.isfinite(q).all(axis=1)
        if ok.any():
            q[:, :2] -= 0.5 * (np.nanmin(q[ok, :2], axis=0) + np.nanmax(q[ok, :2], axis=0))
        centred.append(q)
    finite = [q[np.isfinite(q).all(axis=1)] for q in centred]
    finite = [q for q in finite if len(q)] or [np.zeros((1, 3))]
    half = max(float(np.max(np.abs(q[:, :2]))) for q in finite) + 15.0     # cell half-size (mm)
    cell = 2 * half
    zmin = min(float(q[:, 2].min()) for q in finite) - 15.0
    zmax = max(float(q[:, 2].max()) for q in finite) + 15.0
    fig = go.Figure()
    lx, ly, lz, lt = [], [], [], []
    for k, q in enumerate(centred):
        r, c = divmod(k, ncols)
        ox, oy = c * cell, -r * (cell + 30)    # plot x = image x, plot z = -image y (up)
        name = names[k] if names else f"#{k}"
        for f, color in enumerate(FINGER_COLORS):
            chain = [0, *sk.FINGERS[f]]
            fig.add_trace(go.Scatter3d(x=q[chain, 0] + ox, y=q[chain, 2], z=-q[chain, 1] + oy,
                                       mode="lines+markers", line=dict(color=color, width=6),
                                       marker=dict(size=3, color=color), showlegend=False,
                                       name=name))
        lx.append(ox); ly.append(zmin); lz.append(oy + half + 14); lt.append(name.replace(" ", "<br>", 1))
    fig.add_trace(go.Scatter3d(x=lx, y=ly, z=lz, mode="text", text=lt, textfont=dict(size=11),
                               hoverinfo="skip", showlegend=False, name="labels"))
    xr = [-half, (ncols - 1) * cell + half]
    zr = [-(nrows - 1) * (cell + 30) - half, half + 30]   # 30 mm above each row: its labels
    spans = np.array([xr[1] - xr[0], zmax - zmin, zr[1] - zr[0]])
    ratio = 2.4 * spans / spans.max()     # > 1: the box fills the figure (plotly fits ~1 unit)
    fig.update_layout(
        title=title, height=max(360, row_height * nrows + 60), margin=dict(l=0, r=0, t=40, b=0),
        scene=dict(aspectmode="manual",
                   aspectratio=dict(x=float(ratio[0]), y=float(ratio[1]), z=float(ratio[2])),
                   xaxis=dict(title="x (mm)", range=xr, autorange=False),
                   yaxis=dict(title="z (mm)", range=[zmin, zmax], autorange=False),
                   zaxis=dict(title="-y (mm)", range=zr, autorange=False),
                   camera=dict(eye=dict(x=0.0, y=-2.0, z=0.6), up=dict(x=0, y=0, z=1),
                               projection=dict(type="orthographic"))))
    return fig


def domain_histograms(kp3d: Mapping[str, np.ndarray], vis: Mapping[str, np.ndarray],
                      title: str = "") -> go.Figure:
    """Per-domain distributions: bone lengths (mm), joint bend angles (deg), wrist depth (mm),
    and the fraction of samples in which each joint is visible."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "bone length (mm, all 20 bones)", "joint bend angle (deg, 15 finger joints)",
        "wrist depth z (mm)", "visible fraction per joint"))
    for k, (name, kp) in enumerate(kp3d.items()):
        color = DOMAIN_COLORS[k % len(DOMAIN_COLORS)]
        kp = np.asarray(kp, float)
        kp = kp[np.isfinite(kp).all(axis=(1, 2))]
        common = dict(name=name, legendgroup=name, marker_color=color, opacity=0.55,
                      histnorm="probability density")
        if len(kp):
            fig.add_trace(go.Histogram(x=sk.bone_lengths(kp).ravel(), nbinsx=60, **common), 1, 1)
            fig.add_trace(go.Histogram(x=np.degrees(sk.joint_bend_angles(kp)).ravel(), nbinsx=60,
                                       showlegend=False, **common), 1, 2)
            fig.add_trace(go.Histogram(x=kp[:, 0, 2], nbinsx=40, showlegend=False, **common), 2, 1)
        v = np.asarray(vis[name], bool)
        fig.add_trace(go.Scatter(x=list(sk.JOINT_NAMES), y=v.mean(0), name=name,
                                 legendgroup=name, mode="lines+markers", line_color=color,
                                 showlegend=False), 2, 2)
    fig.update_layout(title=title, barmode="overlay", height=640, width=980,
                      margin=dict(l=40, r=10, t=70, b=80))
    fig.update_xaxes(tickangle=60, tickfont_size=8, row=2, col=2)
    return fig


def table(rows: Sequence[Mapping], title: str = "") -> go.Figure:
    """A plotly table from a list of dicts with the same keys (cells shown as given, units in
    the keys; no arrays); height 28 px per row."""
    keys = list(rows[0])
    fig = go.Figure(go.Table(header=dict(values=keys, align="left"),
                             cells=dict(values=[[r[k] for r in rows] for k in keys],
                                        align="left")))
    fig.update_layout(title=title, height=80 + 28 * len(rows) + 40,
                      margin=dict(l=5, r=5, t=40, b=5))
    return fig


def standalone_html(fig: go.Figure, include_plotlyjs: str | bool = "plotly.min.js") -> str:
    """`fig` as a full HTML page that it fills: the figure is as tall as the window (at least
    its own layout height in px) and as wide, and follows window resizes. No arrays."""
    page = go.Figure(fig)
    min_h = int(page.layout.height or 450)
    page.layout.height = None
    page.layout.width = None
    page.layout.autosize = True
    text = page.to_html(include_plotlyjs=include_plotlyjs, full_html=True,
                        default_height="100vh", default_width="100%",
                        config={"responsive": True})
    text = text.replace('style="height:100vh; width:100%;"',
                        f'style="height:100vh; min-height:{min_h}px; width:100%;"', 1)
    return text.replace("<head>", "<head><style>html, body { margin: 0; padding: 0; }</style>", 1)


def save_figure(fig: go.Figure, path) -> "Path":
    """Write `fig` as a standalone HTML file (atomic) that fills the browser window
    (:func:`standalone_html`); plotly.js is written once per folder (plotly.min.js next to it),
    so the figures open offline. Returns the path written (no arrays)."""
    from pathlib import Path

    from .io import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    js = path.parent / "plotly.min.js"
    if not js.exists():
        from plotly.offline import get_plotlyjs
        atomic_write_text(js, get_plotlyjs())
    return atomic_write_text(path, standalone_html(fig))


@torch.no_grad()
def softmax_heatmaps(model, image: torch.Tensor, device: str) -> tuple:
    """Last-stage heatmaps of one image (3,S,S) as the readout sees them (spatial softmax with
    the model's β) and the predicted uv: ((21,h,w) numpy, (21,2) numpy, input px), the inputs of
    :func:`heatmap_overview`. `model`: a :class:`weakhand.models.CaiPoseNet`."""
    model.eval()
    out = model({"image": image[None].to(device)})
    hm = out["heatmaps"][-1][0]
    hm = torch.softmax(hm.flatten(1) * model.cfg.beta, -1).reshape(hm.shape)
    return hm.cpu().numpy(), out["uv"][0].cpu().numpy()


def heatmap_overview(image: np.ndarray, heatmaps: np.ndarray, uv_pred: np.ndarray,
                     uv_true: np.ndarray | None = None, title: str = "") -> go.Figure:
    """Image (H,W,3) in [0,1] or uint8 with predicted (x) and true (o) joints | the maximum over
    the 21 heatmaps (K,h,w) | the per-joint heatmaps tiled 3×7."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    hm = np.asarray(heatmaps, np.float32)
    k, h, w = hm.shape
    tiles = np.zeros((3 * h, 7 * w), np.float32)
    for j in range(min(k, 21)):  # 21 small tiles, a display helper (not a hot path)
        r, c = divmod(j, 7)
        tiles[r * h:(r + 1) * h, c * w:(c + 1) * w] = hm[j] / max(float(hm[j].max()), 1e-12)
    fig = make_subplots(rows=1, cols=3, column_widths=[0.3, 0.3, 0.4], horizontal_spacing=0.03,
                        subplot_titles=("image", "max over joints", "per joint (row-major)"))
    fig.add_trace(go.Image(source=png_uri(img)), 1, 1)
    fig.add_trace(go.Scatter(x=uv_pred[:, 0], y=uv_pred[:, 1], mode="markers", name="predicted",
                             marker=dict(symbol="x", color="red", size=6)), 1, 1)
    if uv_true is not None:
        fig.add_trace(go.Scatter(x=uv_true[:, 0], y=uv_true[:, 1], mode="markers", name="true",
                                 marker=dict(symbol="circle-open", color="lime", size=7)), 1, 1)
    fig.add_trace(go.Heatmap(z=hm.max(0), colorscale="Viridis", showscale=False), 1, 2)
    fig.add_trace(go.Heatmap(z=tiles, colorscale="Viridis", showscale=False), 1, 3)
    for c in (2, 3):
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{c}", row=1, col=c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=320, margin=dict(l=5, r=5, t=60, b=5))
    return fig


def depth_map_pairs(target: np.ndarray, pred: np.ndarray, title: str = "") -> go.Figure:
    """Normalised depth maps (N,S,S): targets on the top row, predictions below (0 = far/none)."""
    n = len(target)
    fig = make_subplots(rows=2, cols=n, horizontal_spacing=0.01, vertical_spacing=0.04,
                        row_titles=["true", "rendered"])
    for i in range(n):
        for r, m in enumerate((target[i], pred[i]), start=1):
            fig.add_trace(go.Heatmap(z=m, zmin=0, zmax=1, colorscale="Turbo", showscale=(i == 0 and r == 1)),
                          r, i + 1)
    fig.update_yaxes(autorange="reversed", visible=False)
    fig.update_xaxes(visible=False)
    for k in range(1, 2 * n + 1):  # square pixels in every panel
        fig.layout[f"yaxis{k if k > 1 else ''}"].scaleanchor = f"x{k if k > 1 else ''}"
    fig.update_layout(title=title, height=380, margin=dict(l=5, r=30, t=60, b=5))
    return fig
