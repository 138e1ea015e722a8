"""The whole workbook on a converted real pair (this also covers notebook 00's conversion and drawing of
real-format datasets): RHD (source) → STB (target), from fixture trees in
the exact raw formats (the recipe tests' writers), converted by notebook 00's `real_data`
parameter and trained/evaluated with `-p source=rhd -p target=stb`; then FreiHAND, a target
without depth maps, on which the depth variants are refused before anything trains."""
from __future__ import annotations

import json
import shutil

import nbformat
import numpy as np
import pytest

from data_recipes import stb
from test_recipe_freihand import write_freihand_tree
from test_recipe_rhd import write_rhd_tree
from test_recipe_stb import write_raw_stb
from weakhand import bmc
from weakhand.data import load_dataset
from weakhand.recipes import convert_dataset
from weakhand.workbook import profiles, runner

pytestmark = pytest.mark.slow
N_RHD_TRAIN, N_RHD_EVAL = 40, 10
SMOKE = profiles.PROFILES["smoke"]


def _variants(knob: str) -> list[str]:
    return [v for v in SMOKE[knob].split(",") if v]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("realpair")
    raw_rhd, raw_stb = base / "raw" / "RHD_published_v2", base / "raw" / "STB"
    write_rhd_tree(raw_rhd, samples={"training": [(i % 2, False) for i in range(N_RHD_TRAIN)],
                                     "evaluation": [(i % 2, False) for i in range(N_RHD_EVAL)]})
    write_raw_stb(raw_stb, {seq: 3 for seq in stb.SEQUENCES})
    res = runner.run_notebooks("rhd_stb", profile="smoke", device="cpu", runs_dir=base / "runs",
                               overrides={"real_data": f"rhd:{raw_rhd}; stb[root=wrist]:{raw_stb}",
                                          "source": "rhd", "target": "stb"})
    return base, res


def test_rhd_to_stb_runs_every_notebook(real_run):
    base, res = real_run
    assert res.ok, res.message
    run = base / "runs" / "rhd_stb"
    record = json.loads((run / "run.json").read_text())
    assert record["notebooks"] and all(n["status"] == "ok" for n in record["notebooks"].values())
    # 00 converted both with the conventions the study needs: STB's joint 0 moved to the wrist
    s_train = load_dataset(run / "data/stb/train")
    assert s_train.manifest["root"] == "wrist" and s_train.label_counts["has_3d"] == s_train.count
    assert s_train.label_counts["left"] == s_train.count  # STB records left hands only (mirrored on reading)
    assert load_dataset(run / "data/rhd/train").count >= N_RHD_TRAIN - 2
    # 00 drew every converted split, and the converted keypoints lie on the hand: visible joints (not the
    # wrist or tips, which sit on the hand's boundary) fall on the converted crops' hand masks
    for name, split in [("rhd", "train"), ("rhd", "eval"), ("stb", "train"), ("stb", "test")]:
        d = load_dataset(run / "data" / name / split, verify="full")
        assert (run / "figures" / f"00_samples_{name}_{split}.html").exists()
        kp, vis, mask = (np.asarray(d.arrays[k]) for k in ("kp2d", "vis", "mask"))
        pix = np.rint(kp).astype(int).clip(0, d.image_size[0] - 1)
        on = mask[np.arange(d.count)[:, None], pix[..., 1], pix[..., 0]] == 1
        inner = np.ones(21, bool)
        inner[[0, 4, 8, 12, 16, 20]] = False
        assert on[vis & inner].mean() > 0.9, (name, split)
    nb00 = json.dumps([c.get("outputs", []) for c in nbformat.read(run / "00_make_data.ipynb", as_version=4).cells
                       if c.cell_type == "code"], ensure_ascii=False)
    assert "converted datasets" in nb00 and "rhd / train" in nb00 and "stb / test" in nb00
    assert "source rhd → target stb" in nb00  # the resolved study table
    # 10: limits from the source's training split, recorded with the dataset name
    limits = bmc.load_limits(run / "bmc/limits.json")
    assert (limits.provenance["dataset"], limits.provenance["split"]) == ("rhd", "train")
    # 20: the stage-1 table was scored on the real test splits
    m20 = json.loads((run / "metrics/20_stage1_pose.json").read_text())
    assert m20["results"]["sensor test"]["n_samples"] == load_dataset(run / "data/stb/test").count
    # 65: the lifter's source is RHD's labelled hands, every variant and seed scored
    m65 = json.loads((run / "metrics/65_lifting.json").read_text())
    assert set(m65["scores"]) == {"rhd"} and m65["study"]["source"] == "rhd"
    assert set(m65["scores"]["rhd"]) == set(_variants("lift_variants"))
    # 70: the results table on stb/test with the constant row and every trained variant, and the report
    res70 = json.loads((run / "metrics/70_results.json").read_text())
    assert res70["split"] == "stb/test" and res70["study"]["source train"] == "rhd/train[0:36]"
    rows = {(r["family"], r["variant"]) for r in res70["rows"]}
    assert rows == ({("cai", v) for v in ("constant", "source", *_variants("stage3_variants"))}
                    | {("pose25d", v) for v in ("constant", "source", *_variants("pose25d_variants"))})
    for r in res70["rows"]:
        assert np.isfinite(r["pa_epe_mm_mean"]) and np.isfinite(r["z_err_mm_mean"]), r
    assert (run / "report.html").read_text().count("<table>") >= 3


def test_freihand_target_refuses_depth_variants_before_training(real_run, tmp_path):
    base, res = real_run
    assert res.ok, res.message
    run = tmp_path / "runs" / "rhd_fh"
    shutil.copytree(base / "runs" / "rhd_stb", run, ignore=shutil.ignore_patterns("stage3_*", "pose25d_*", "lift", "logs"))
    raw = tmp_path / "FreiHAND_pub_v2"
    write_freihand_tree(raw)
    # another crop size than the source's (48 vs 64 px) and per-image intrinsics: both resized to train_size
    convert_dataset("freihand", raw, run / "data/freihand", size=48, workers=1, show_progress=False, log=lambda s: None)
    fh = load_dataset(run / "data/freihand/train")
    assert fh.label_counts["has_depth"] == 0 and fh.image_size == (48, 48) != load_dataset(run / "data/rhd/train").image_size
    assert len(set(np.asarray(fh.arrays["K"])[:, 0, 0].round(1).tolist())) == fh.count
    common = {"source": "rhd", "target": "freihand", "steps_stage3": 2}
    bad = runner.run_notebooks("rhd_fh", profile="smoke", device="cpu", runs_dir=run.parent, only="50",
                               overrides=common)
    assert not bad.ok
    err = json.loads((run / "run.json").read_text())["notebooks"]["50_train_stage3_weak"]["error"]
    assert err["ename"] == "StudyError"
    assert ("target freihand/train has no depth maps: the variants 2d_depth, 2d_depth_hand, 2d_depth_bmc, "
            "2d_direct, 2d_direct_bmc, 2d_teacher need them; run the others with "
            "-p stage3_variants=2d,2d_bmc,2d_bmc_pinned,full3d") in err["evalue"]
    assert not list(run.glob("stage3_*")), "nothing may train before the refusal"
    ok = runner.run_notebooks("rhd_fh", profile="smoke", device="cpu", runs_dir=run.parent, only="50",
                              overrides={**common, "stage3_variants": "2d,2d_bmc,full3d"})
    assert ok.ok, ok.message
    for v in ("2d", "2d_bmc", "full3d"):
        r = json.loads((run / f"metrics/50_stage3_{v}.json").read_text())["results"]["sensor test"]
        assert np.isfinite(r["epe_mm"]), v
    assert sorted(p.name for p in run.glob("stage3_*")) == ["stage3_2d", "stage3_2d_bmc", "stage3_full3d"]
    # the 2.5D family and the lifting study refuse the same way, before their first training step
    for nb, name, blocked in (("60", "60_train_pose25d", "the variant 2d_direct_bmc needs them"),
                              ("65", "65_train_depth_lifter", "need them; run the others with -p lift_variants=")):
        r = runner.run_notebooks("rhd_fh", profile="smoke", device="cpu", runs_dir=run.parent, only=nb,
                                 overrides={"source": "rhd", "target": "freihand"})
        err = json.loads((run / "run.json").read_text())["notebooks"][name]["error"]
        assert not r.ok and err["ename"] == "StudyError" and blocked in err["evalue"], err
    assert not list(run.glob("pose25d_*")) and not list(run.glob("lift/rhd_*"))
