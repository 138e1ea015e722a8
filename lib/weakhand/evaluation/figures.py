"""Plotly figures of the evaluation notebook: PCK curves, per-joint errors, z-error histograms,
3D comparisons, rendered vs sensor depth and failure cases. Functions return figures only."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .. import skeleton as sk
from .. import viz
from ..models import depth_map_targets, regularizer_input_from_3d
from .variants import FAMILY_LABELS, ROW_LABELS

VARIANT_COLORS = {"constant": "#000000", "source": "#7f7f7f", "2d": "#1f77b4", "2d_depth": "#ff7f0e", "2d_depth_hand": "#ffbb78",
                  "2d_bmc": "#9467bd", "2d_bmc_pinned": "#c5b0d5", "2d_depth_bmc": "#d62728",
                  "2d_direct": "#8c564b", "2d_direct_bmc": "#e377c2", "2d_teacher": "#17becf",
                  "full3d": "#2ca02c"}
FAMILY_DASH = {"cai": "solid", "pose25d": "dash"}

Scores = Mapping[str, Mapping[str, Mapping[int, Mapping[str, Any]]]]  # family/variant/seed


def _name(family: str, variant: str) -> str:
    return f"{FAMILY_LABELS[family]}: {ROW_LABELS[variant]}"


def _seed_mean(by_seed: Mapping[int, Mapping[str, Any]], key: str) -> np.ndarray:
    return np.mean([np.asarray(s[key], dtype=np.float64) for s in by_seed.values()], axis=0)


def pck_figure(scores: Scores, aligned: bool = False, title: str = "") -> go.Figure:
    """3D PCK (0-50 mm, GT root) of every variant on one plot (mean curve over seeds)."""
    key = "pa_pck" if aligned else "pck"
    fig = go.Figure()
    for fam, by_variant in scores.items():
        for v, by_seed in by_variant.items():
            t = next(iter(by_seed.values()))["pck_t"]
            fig.add_trace(go.Scatter(x=t, y=_seed_mean(by_seed, key), mode="lines", name=_name(fam, v),
                                     line=dict(color=VARIANT_COLORS[v], dash=FAMILY_DASH[fam], width=2)))
    fig.update_layout(title=title or f"3D PCK on the target test split ({'Procrustes-aligned' if aligned else 'GT root and scale'})",
                      xaxis_title="threshold (mm)", yaxis_title="PCK", yaxis_range=[0, 1], height=450,
                      legend=dict(font_size=10))
    return fig


def per_joint_figure(scores: Scores, family: str = "cai", key: str = "per_joint_epe") -> go.Figure:
    """Grouped bars: per-joint error (mm, mean over seeds) of each variant of one family."""
    fig = go.Figure()
    for v, by_seed in scores[family].items():
        fig.add_trace(go.Bar(x=list(sk.JOINT_NAMES), y=_seed_mean(by_seed, key), name=ROW_LABELS[v],
                             marker_color=VARIANT_COLORS[v]))
    what = "3D EPE" if key == "per_joint_epe" else "|z error|"
    fig.update_layout(barmode="group", title=f"{FAMILY_LABELS[family]}: per-joint {what} (mm)",
                      yaxis_title="mm", height=420, legend=dict(font_size=10))
    return fig


def z_hist_figure(scores: Scores, family: str = "cai", limit_mm: float = 120.0,
                  seed: int | None = None) -> go.Figure:
    """Overlaid histograms of the signed z error (pred - true, mm, visible joints) per variant
    (one seed: `seed`, default the smallest)."""
    fig = go.Figure()
    edges = np.linspace(-limit_mm, limit_mm, 61)
    mid = 0.5 * (edges[1:] + edges[:-1])
    for v, by_seed in scores[family].items():
        s = by_seed[seed if seed in by_seed else min(by_seed)]
        h, _ = np.histogram(np.clip(s["z_signed"], -limit_mm, limit_mm), bins=edges)
        fig.add_trace(go.Scatter(x=mid, y=h / max(h.sum(), 1), mode="lines", line_shape="hvh",
                                 name=ROW_LABELS[v], line=dict(color=VARIANT_COLORS[v], width=2)))
    fig.update_layout(title=f"{FAMILY_LABELS[family]}: signed z error (pred − true; clipped at ±{limit_mm:.0f} mm)",
                      xaxis_title="mm", yaxis_title="fraction of joints", height=400, legend=dict(font_size=10))
    return fig


def skeleton_comparison(scores: Scores, images: Sequence[int], variants: Sequence[str],
                        family: str = "cai", seed: int = 0) -> go.Figure:
    """For each chosen test image: the true 3D skeleton, then the chosen variants' predictions
    (root-relative, GT root; rotate the view to see depth errors): the score's ``gt3d`` /
    ``pred3d`` (N, 21, 3) mm rows `images` (row indices, not dataset indices)."""
    by_variant = scores[family]
    ref = next(iter(by_variant.values()))
    ref = ref[seed if seed in ref else min(ref)]
    kps, names = [], []
    for i in images:
        kps.append(ref["gt3d"][i]); names.append(f"#{int(ref['index'][i])} true")
        for v in variants:
            if v in by_variant:
                s = by_variant[v][seed if seed in by_variant[v] else min(by_variant[v])]
                kps.append(s["pred3d"][i]); names.append(f"#{int(s['index'][i])} {v}")
    shown = [v for v in variants if v in by_variant]
    fig = viz.skeletons_3d(kps, names=names, ncols=1 + len(shown),  # one row per test image
                           title=f"{FAMILY_LABELS[family]}: true, then " + ", ".join(shown)
                           + " (drag to rotate: a novel view shows depth errors)")
    return fig


def failure_cases(scores: Scores, dataset, variant: str, family: str = "cai", k: int = 6,
                  seed: int | None = None) -> go.Figure:
    """The `k` test images with the largest 3D EPE of one variant: the network's input crop with
    true (green circles) and predicted (red crosses) 2D joints (``kp2d`` / ``uv`` (N, 21, 2) input
    px); titles give the sample EPE in mm."""
    by_seed = scores[family][variant]
    s = by_seed[seed if seed in by_seed else min(by_seed)]
    order = np.argsort(-np.nan_to_num(s["sample_epe"], nan=-1.0))[:k]
    fig = make_subplots(rows=1, cols=len(order), horizontal_spacing=0.01,
                        subplot_titles=[f"#{int(s['index'][i])}: {s['sample_epe'][i]:.0f} mm" for i in order])
    for c, i in enumerate(order, start=1):
        item = dataset[int(s["index"][i])]
        img = (item["image"].permute(1, 2, 0).numpy().clip(0, 1) * 255).round().astype(np.uint8)
        fig.add_trace(go.Image(source=viz.png_uri(img)), 1, c)
        for xy, sym, col, nm in ((s["kp2d"][i], "circle-open", "lime", "true"), (s["uv"][i], "x", "red", "predicted")):
            fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=nm, showlegend=(c == 1),
                                     marker=dict(symbol=sym, color=col, size=6)), 1, c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=f"worst test images: {_name(family, variant)}", height=260,
                      margin=dict(l=5, r=5, t=70, b=5))
    return fig


@torch.no_grad()
def rendered_depth(regularizer: torch.nn.Module, dataset, s: Mapping[str, Any], images: Sequence[int],
                   out_size: int) -> dict[str, np.ndarray]:
    """The regulariser's depth maps rendered from a variant's predicted joints and from the true
    joints, next to the sensor's normalised depth map, for chosen rows of score `s`:
    {"sensor", "from_true", "from_pred"} each (n, out_size, out_size) normalised depth."""
    regularizer.eval()
    items = [dataset[int(s["index"][i])] for i in images]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "depth", "mask")}
    tgt = depth_map_targets(batch, out_size)
    hw = batch["image"].shape[-2:]
    f = lambda a: torch.as_tensor(np.asarray(a)[list(images)], dtype=torch.float32)  # noqa: E731
    out = {"sensor": tgt["map"][:, 0].numpy()}
    for name, uv, z in (("from_true", f(s["kp2d"]), f(s["gt3d"])[..., 2]),
                        ("from_pred", f(s["uv"]), f(s["pred3d"])[..., 2])):
        inp = regularizer_input_from_3d(uv, z, tgt["d_max"], tgt["d_range"], hw)
        out[name] = regularizer(inp)[:, 0].numpy()
    return out


def rendered_depth_figure(maps: Mapping[str, np.ndarray], variant: str, titles: Sequence[str] = ()) -> go.Figure:
    """Rows: sensor depth map | rendered from the true joints | rendered from `variant`'s joints;
    `maps` as :func:`rendered_depth` returns them, (n, S, S) normalised depth (shown on [0, 1])."""
    rows = (("sensor", "sensor depth"), ("from_true", "rendered: true joints"),
            ("from_pred", f"rendered: {variant}"))
    n = len(maps["sensor"])
    fig = make_subplots(rows=3, cols=n, horizontal_spacing=0.01, vertical_spacing=0.03,
                        row_titles=[r[1] for r in rows], column_titles=list(titles) or None)
    for r, (key, _) in enumerate(rows, start=1):
        for c in range(n):
            fig.add_trace(go.Heatmap(z=maps[key][c], zmin=0, zmax=1, colorscale="Turbo",
                                     showscale=(r == 1 and c == 0)), r, c + 1)
    fig.update_yaxes(autorange="reversed", visible=False)
    fig.update_xaxes(visible=False)
    for k in range(1, 3 * n + 1):
        fig.layout[f"yaxis{k if k > 1 else ''}"].scaleanchor = f"x{k if k > 1 else ''}"
    fig.update_layout(title="depth regulariser: sensor depth vs maps rendered from joints (normalised, near = 1)",
                      height=170 * 3 + 60, margin=dict(l=5, r=90, t=70, b=5))
    return fig


def image_row(paths: Sequence, title: str = "", height: int = 300) -> go.Figure:
    """Image files (e.g. `weakhand predict` overlays) side by side, titled by file stem;
    `height` in px."""
    import cv2
    from pathlib import Path

    paths = [Path(p) for p in paths]
    fig = make_subplots(rows=1, cols=max(len(paths), 1), subplot_titles=[p.stem for p in paths])
    for c, p in enumerate(paths, start=1):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{p}: not a readable image")
        fig.add_trace(go.Image(source=viz.png_uri(img[..., ::-1])), 1, c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, title=title, margin=dict(l=5, r=5, t=60, b=5))
    return fig


def lifting_headline(table: Mapping[str, Any], labels: Mapping[str, str] | None = None,
                     extra: Sequence[Mapping[str, Any]] = (), title: str = "") -> go.Figure:
    """The study at a glance: PA-EPE (mm) per variant, 2D given (left) and full (right), one
    bar group per source with seed std error bars, and each source's floor (mean depth
    profile / constant pose) as a dashed line. `table`: :func:`weakhand.evaluation.lifting.study_table`;
    `extra`: more bars {"name", "given", "full", "given_std", "full_std"} (e.g. the image
    families) drawn in grey after the lifters."""
    labels = labels or {}
    fig = make_subplots(rows=1, cols=2, shared_yaxes=False,
                        subplot_titles=("2D given: labelled 2D + predicted depth", "full: predicted 2D + depth"))
    sources = list(dict.fromkeys(r["source"] for r in table["rows"]))
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for col, proto in enumerate(("given", "full"), start=1):
        for i, src in enumerate(sources):
            rows = [r for r in table["rows"] if r["source"] == src and r["variant"] != "constant"]
            fig.add_trace(go.Bar(
                x=[labels.get(r["variant"], r["variant"]) for r in rows],
                y=[r[f"{proto}_pa_epe_mm_mean"] for r in rows],
                error_y=dict(type="data", array=[np.nan_to_num(r[f"{proto}_pa_epe_mm_std"]) for r in rows]),
                name=f"lifter, source {src}", marker_color=palette[i % len(palette)],
                legendgroup=src, showlegend=col == 1), row=1, col=col)
            floor = next((r for r in table["rows"] if r["source"] == src and r["variant"] == "constant"), None)
            if floor is not None:
                fig.add_hline(y=floor[f"{proto}_pa_epe_mm_mean"], line_dash="dash",
                              line_color=palette[i % len(palette)], row=1, col=col,
                              annotation_text=f"floor ({src})", annotation_position="top left")
        if extra:
            fig.add_trace(go.Bar(x=[e["name"] for e in extra], y=[e.get(proto, np.nan) for e in extra],
                                 error_y=dict(type="data", array=[np.nan_to_num(e.get(f"{proto}_std", 0.0)) for e in extra]),
                                 name="image models (default source)", marker_color="#7f7f7f",
                                 legendgroup="image", showlegend=col == 1), row=1, col=col)
        fig.update_yaxes(title_text="PA-EPE mm (lower is better)", row=1, col=col)
    fig.update_layout(barmode="group", height=480,
                      title=title or "PA-EPE per variant against the floors (mean ± std over seeds)")
    return fig
