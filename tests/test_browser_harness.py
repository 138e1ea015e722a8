"""Real-browser test: a widget notebook in JupyterLab, driven through headless Chromium.

Demonstrates tests/jupyterlab_browser.py: a slider set through the browser reaches the kernel,
a button's callback writes a file, and an HTML widget shows the new value.  Skipped (with the
reason) where Chromium or playwright is missing; see tools/install_browser.sh.
"""
import json

import nbformat
import pytest

from jupyterlab_browser import browser_unavailable_reason, lab_session

pytestmark = pytest.mark.browser

NOTEBOOK_CELLS = [
    """\
import json, os
from pathlib import Path
import ipywidgets as widgets
from IPython.display import display

OUT = Path(os.environ["BROWSER_TEST_OUT"])""",
    """\
gain = widgets.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.01, description="gain")
apply = widgets.Button(description="apply")
shown = widgets.HTML(value="<b>gain = 0.10</b>")
shown.add_class("gain-status")

def on_apply(_button):
    OUT.write_text(json.dumps({"gain": gain.value}))
    shown.value = f"<b>gain = {gain.value:.2f}</b>"

apply.on_click(on_apply)
display(widgets.VBox([gain, apply, shown]))""",
]


def test_slider_button_roundtrip_in_jupyterlab(tmp_path):
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    out = tmp_path / "applied.json"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nbformat.write(nb, nb_dir / "demo.ipynb")

    with lab_session(nb_dir, env={"BROWSER_TEST_OUT": str(out)},
                     artifacts_dir=tmp_path / "browser") as lab:
        lab.open_notebook("demo.ipynb")
        lab.run_all_cells()
        assert lab.widget_text(css_class="gain-status") == "gain = 0.10"
        assert not out.exists()

        lab.set_slider("gain", 0.75)
        lab.click_button("apply")

        lab.expect_widget_text("gain = 0.75", css_class="gain-status")
        assert json.loads(out.read_text()) == {"gain": pytest.approx(0.75)}
