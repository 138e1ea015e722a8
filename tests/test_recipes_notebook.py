"""Real-format fixture datasets go through notebook 00 (real_data) and are drawn there."""
import json

import nbformat
import numpy as np
import pytest

from test_recipe_rhd import write_rhd_tree
from test_recipe_stb import FRAMES, write_raw_stb
from weakhand.workbook import runner
from weakhand.data import load_dataset


@pytest.mark.slow
def test_notebook_00_converts_and_draws_real_format_datasets(tmp_path):
    rhd, stb = tmp_path / "RHD_published_v2", tmp_path / "STB"
    write_rhd_tree(rhd)
    write_raw_stb(stb, FRAMES)
    res = runner.run_notebooks("real", profile="smoke", device="cpu", runs_dir=tmp_path / "runs",
                               only="00", overrides={"real_data": f"rhd:{rhd}; stb:{stb}"})
    assert res.ok, res.message
    run = tmp_path / "runs" / "real"
    for name, split in [("rhd", "train"), ("rhd", "eval"), ("stb", "train"), ("stb", "test")]:
        d = load_dataset(run / "data" / name / split, verify="full")
        assert (run / "figures" / f"00_samples_{name}_{split}.html").exists()
        # keypoints on the hand: visible joints (not the wrist or tips, which sit on the hand's
        # boundary) fall on the hand mask of the converted crops
        kp, vis, mask = (np.asarray(d.arrays[k]) for k in ("kp2d", "vis", "mask"))
        pix = np.rint(kp).astype(int).clip(0, d.image_size[0] - 1)
        on = mask[np.arange(d.count)[:, None], pix[..., 1], pix[..., 0]] == 1
        inner = np.ones(21, bool)
        inner[[0, 4, 8, 12, 16, 20]] = False
        assert on[vis & inner].mean() > 0.9, (name, split)
    nb = nbformat.read(run / "00_make_data.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    assert "converted datasets" in text and "rhd / train" in text and "stb / test" in text
