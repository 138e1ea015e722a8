"""Figure layout and the report banner (issue 17): the 3D skeleton viewer is a grid with fixed,
equally scaled ranges (no thin strip of far hands), standalone figures fill their page, and a
smoke-profile report opens with a banner saying its numbers are not meaningful."""
from __future__ import annotations

import json
import re

import numpy as np
import plotly.graph_objects as go

from weakhand import viz
from weakhand.evaluation.report import Report, run_profile
from weakhand.synth.domains import RENDER
from weakhand.synth.generator import sample_hand_poses


def test_skeletons_3d_grid_with_fixed_equal_ranges():
    kp, _ = sample_hand_poses(RENDER, 15, seed=3)
    kp = kp + np.array([0.0, 0.0, 600.0])                      # far from the camera: no matter
    fig = viz.skeletons_3d(kp, names=[f"#{i} v" for i in range(15)], ncols=5)
    sc = fig.layout.scene
    for ax in (sc.xaxis, sc.yaxis, sc.zaxis):
        assert ax.autorange is False and ax.range is not None
    spans = np.array([np.ptp(sc.xaxis.range), np.ptp(sc.yaxis.range), np.ptp(sc.zaxis.range)])
    ratio = np.array([sc.aspectratio.x, sc.aspectratio.y, sc.aspectratio.z])
    np.testing.assert_allclose(ratio / ratio.max(), spans / spans.max())    # equal scale
    assert spans[0] / spans[2] < 2.5           # 5 columns x 3 rows: not a strip
    pts = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(pts) == 15 * 5
    for t in pts:                               # every joint inside the fixed ranges
        assert sc.xaxis.range[0] <= min(t.x) and max(t.x) <= sc.xaxis.range[1]
        assert sc.yaxis.range[0] <= min(t.y) and max(t.y) <= sc.yaxis.range[1]
        assert sc.zaxis.range[0] <= min(t.z) and max(t.z) <= sc.zaxis.range[1]
    labels = fig.data[-1]
    assert labels.mode == "text" and len(labels.text) == 15 and labels.text[0] == "#0<br>v"
    assert fig.layout.height >= 3 * 250
    # the old layout put n hands in one row: 15 hands would be ~15 hand widths wide
    one_row = viz.skeletons_3d(kp[:4])
    assert np.ptp(one_row.layout.scene.xaxis.range) / np.ptp(one_row.layout.scene.zaxis.range) < 5


def test_standalone_figure_fills_the_window():
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    fig.update_layout(height=450, width=700)
    html = viz.standalone_html(fig)
    outer = re.findall(r'<div style="([^"]+)">', html)
    assert outer and "height:100vh" in outer[0] and "min-height:450px" in outer[0]
    assert '"height":450' not in html and '"width":700' not in html
    assert fig.layout.height == 450            # the caller's figure is unchanged


def test_smoke_report_has_a_banner_others_do_not(tmp_path):
    r = Report("weakhand evaluation", "sub", profile="smoke").render()
    banner = r.index("smoke profile: numbers are not meaningful")
    assert banner < r.index("<h1>")
    assert "not meaningful" not in Report("t", profile="cpu").render()
    # found from the run folder the report is written into
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"profile": "smoke"}))
    assert "not meaningful" in Report("t").write(run / "report.html").read_text()
    (run / "run.json").write_text(json.dumps({"profile": "cpu"}))
    assert "not meaningful" not in Report("t").write(run / "report.html").read_text()
    # an interactive run (no run.json): the notebooks' metrics record their config
    (run / "run.json").unlink()
    (run / "metrics").mkdir()
    (run / "metrics" / "70_results.json").write_text(json.dumps({"config": {"profile": "smoke"}}))
    assert run_profile(run) == "smoke"
    assert run_profile(tmp_path / "nothing") is None
