"""Real-browser test of the BMC hull editor: JupyterLab in headless Chromium runs
notebooks/10_fit_bmc_limits.ipynb (smoke profile); the plot titles are visible (not under the
modebar) and name the bone the user picked; a hull vertex is selected by clicking the plot,
moved by typing into the flexion number box, nudged by one 0.5° slider step with the keyboard,
and moved to an empty point of the plot by a click; an ignored click says why in the status
line; the hull is saved, and a headless re-run replays the edits. Skipped (with the reason)
where Chromium or playwright is missing."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from jupyterlab_browser import browser_unavailable_reason, lab_session
from weakhand import bmc
from weakhand.workbook import profiles, runner
from weakhand.synth.dataset import make_default_datasets

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "10_fit_bmc_limits.ipynb"
BONE = "index_pip"  # finger "index", bone "MCP→PIP" in the editor (limits.json key index_pip)
LABEL = "index MCP→PIP (index_pip)"


def _overlap(a: dict, b: dict) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def test_edit_a_hull_vertex_in_jupyterlab_and_save(tmp_path):
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    run = tmp_path / "runs" / "browser"
    smoke = profiles.PROFILES["smoke"]
    make_default_datasets(run / "data", smoke, seed=0, size=smoke["image_size"])
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    shutil.copy(NOTEBOOK, nb_dir / NOTEBOOK.name)  # a copy: JupyterLab may write to it
    env = {"WEAKHAND_PROFILE": "smoke", "WEAKHAND_RUN_DIR": str(run)}
    limits_path = run / "bmc" / "limits.json"

    with lab_session(nb_dir, env=env, artifacts_dir=tmp_path / "browser") as lab:
        lab.open_notebook(NOTEBOOK.name)
        lab.run_all_cells(timeout=180)
        fitted = bmc.load_limits(limits_path)
        assert fitted.edits == []
        k = bmc.ANGLE_BONE_NAMES.index(BONE)
        hull = fitted.hulls[k]
        i = int(np.argmax(hull[:, 0]))  # the most flexed vertex: moving it further is outward

        lab.set_dropdown("finger", "index")
        lab.set_dropdown("bone", "MCP→PIP")
        lab.expect_widget_text(f"{LABEL}: {len(hull)} vertices", css_class="bmc-editor-status")

        # titles: what the user picked, not under the modebar (shown while hovering the plot)
        for cls in ("bmc-hull-plot", "bmc-hand-preview"):
            lab.widget(css_class=cls).hover()
            boxes = lab.plot_boxes(cls, [".gtitle", ".modebar"])
            assert boxes[".gtitle"] and boxes[".modebar"], (cls, boxes)
            for t in boxes[".gtitle"]:
                for m in boxes[".modebar"]:
                    assert not _overlap(t, m), (cls, t, m)
        assert lab.plotly_state("bmc-hull-plot")["layout"]["title"]["text"].startswith(
            f"{LABEL}: coverage")

        lab.click_plot_point("bmc-hull-plot", trace=2, index=i)  # click mode "select"
        lab.wait_until(lambda: lab.plotly_state("bmc-hull-plot")["data"][3]["x"][0]
                       == pytest.approx(np.degrees(hull[i, 0])), what="vertex selected by click")

        # 1. the number box: an exact value
        target = float(np.round(np.degrees(hull[i, 0]) + 15.0))
        lab.set_text("flexion°", target)
        lab.expect_widget_text(f"move on {LABEL}: ok", css_class="bmc-editor-status")
        xs = lab.plotly_state("bmc-hull-plot")["data"][2]["x"]
        assert any(abs(x - target) < 1e-6 for x in xs), (target, xs)  # the plot redrew the hull

        # 2. the slider: the data's range (not -180..180), 0.5° steps, arrow keys nudge
        handle = lab.widget(css_class="bmc-flex-slider").locator(".noUi-handle").first
        lo, hi = float(handle.get_attribute("aria-valuemin")), float(handle.get_attribute("aria-valuemax"))
        assert -180 < lo < np.degrees(hull[:, 0].min()) and np.degrees(hull[:, 0].max()) < hi < 180
        handle.focus()
        handle.press("ArrowRight")
        box = lab.widget("flexion°").locator("input").first
        lab.wait_until(lambda: float(box.input_value()) == pytest.approx(target + 0.5),
                       what="flexion nudged by one 0.5° step")
        lab.wait_until(lambda: any(abs(x - (target + 0.5)) < 1e-6 for x in
                                   lab.plotly_state("bmc-hull-plot")["data"][2]["x"]),
                       what="the hull redrawn after the nudge")

        # 3. click = move here, on an empty point of the plot (no marker there)
        lab.expect_widget_text("2 edit(s)", css_class="bmc-editor-status")
        lab.click_button("move here")
        now = np.radians([target + 0.5, np.degrees(hull[i, 1])])
        centre = hull.mean(0)
        empty = np.degrees(now + 0.15 * (now - centre))
        lab.wait_until(lambda: lab.plotly_state("bmc-hull-plot")["layout"]["xaxis"]["range"][1]
                       > empty[0] + 2, what="the plot's range (and click grid) updated")
        lab.click_plot_xy("bmc-hull-plot", float(empty[0]), float(empty[1]))
        lab.expect_widget_text("3 edit(s)", css_class="bmc-editor-status")
        lab.expect_widget_text(f"move on {LABEL}: ok", css_class="bmc-editor-status")
        lab.wait_until(lambda: abs(lab.plotly_state("bmc-hull-plot")["data"][3]["x"][0]
                                   - empty[0]) < 1.0, what="selected vertex moved to the click")
        moved_to = lab.plotly_state("bmc-hull-plot")["data"][3]
        assert abs(moved_to["y"][0] - empty[1]) < 1.0, (moved_to, empty)

        # 4. an ignored click says why: "select" far from every vertex
        lab.click_button("select")
        c = np.degrees(centre)
        lab.click_plot_xy("bmc-hull-plot", float(c[0]), float(c[1]))
        lab.expect_widget_text("ignored: no vertex within", css_class="bmc-editor-status")
        if shots := os.environ.get("WEAKHAND_EDITOR_SCREENSHOT"):
            lab.widget(css_class="bmc-hull-plot").hover()
            lab.page.locator(".jp-OutputArea-output:has(.bmc-hull-plot)").first.screenshot(path=shots)

        assert json.loads(limits_path.read_text())["edits"] == []  # nothing saved yet
        lab.click_button("save")
        lab.expect_widget_text("saved 3 edit", css_class="bmc-editor-status")

    saved = bmc.load_limits(limits_path)
    assert [e["op"] for e in saved.edits] == ["move"] * 3 and all(e["bone"] == k for e in saved.edits)
    edit = saved.edits[0]
    assert edit["index"] == i
    np.testing.assert_allclose(edit["to"], [np.radians(target), hull[i, 1]], atol=1e-9)
    np.testing.assert_allclose(saved.edits[1]["to"], [np.radians(target + 0.5), hull[i, 1]],
                               atol=1e-9)
    np.testing.assert_allclose(np.degrees(saved.edits[2]["to"]), empty, atol=1.0)
    assert np.any(np.all(np.abs(saved.hulls[k] - saved.edits[2]["to"]) < 1e-9, axis=1))
    for j in range(15):
        if j != k:
            np.testing.assert_array_equal(saved.hulls[j], fitted.hulls[j])

    # a headless re-run refits and replays the saved edit
    res = runner.run_notebooks("browser", profile="smoke", device="cpu", only="10",
                               runs_dir=run.parent)
    assert res.ok, res.message
    replayed = bmc.load_limits(limits_path)
    assert replayed.edits == saved.edits
    np.testing.assert_allclose(replayed.hulls[k], saved.hulls[k])
