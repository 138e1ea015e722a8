"""Real-browser test of the BMC hull editor: JupyterLab in headless Chromium runs
notebooks/10_fit_bmc_limits.ipynb (smoke profile), a hull vertex is selected by clicking the
plot and moved with the flexion slider, the hull is saved, and a headless re-run replays the
edit. Skipped (with the reason) where Chromium or playwright is missing."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jupyterlab_browser import browser_unavailable_reason, lab_session
from weakhand import bmc, profiles, runner
from weakhand.synth.dataset import make_default_datasets

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "10_fit_bmc_limits.ipynb"
BONE = "index_pip"  # finger "index", joint "mcp" in the editor


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
        lab.set_dropdown("joint", "mcp")
        lab.expect_widget_text(f"{BONE}: {len(hull)} vertices", css_class="bmc-editor-status")
        lab.click_plot_point("bmc-hull-plot", trace=2, index=i)  # click mode "select"
        lab.wait_until(lambda: lab.plotly_state("bmc-hull-plot")["data"][3]["x"][0]
                       == pytest.approx(np.degrees(hull[i, 0])), what="vertex selected by click")

        target = float(np.round(np.degrees(hull[i, 0]) + 15.0))
        lab.set_slider("flexion°", target)
        lab.expect_widget_text("move on index_pip: ok", css_class="bmc-editor-status")
        xs = lab.plotly_state("bmc-hull-plot")["data"][2]["x"]
        assert any(abs(x - target) < 1e-6 for x in xs), (target, xs)  # the plot redrew the hull

        assert json.loads(limits_path.read_text())["edits"] == []  # nothing saved yet
        lab.click_button("save")
        lab.expect_widget_text("saved 1 edit", css_class="bmc-editor-status")

    saved = bmc.load_limits(limits_path)
    assert len(saved.edits) == 1
    edit = saved.edits[0]
    assert edit["op"] == "move" and edit["bone"] == k and edit["index"] == i
    np.testing.assert_allclose(edit["to"], [np.radians(target), hull[i, 1]], atol=1e-9)
    assert np.any(np.all(np.abs(saved.hulls[k] - edit["to"]) < 1e-9, axis=1))
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
