"""Notebook conventions (structure) and the ordered smoke pipeline through the runner."""
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from weakhand.workbook import profiles, runner
from weakhand.data import load_dataset
from weakhand.methods import cai, spurr_bmc
from weakhand.synth.dataset import DEFAULT_SPLITS

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NB_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    assert re.fullmatch(r"\d\d_[a-z0-9]+(_[a-z0-9]+)+\.ipynb", path.name), "NN_verb_object.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    names = re.findall(r"^(\w+)\s*=", params[0].source, flags=re.M)
    for required in ("profile", "run_dir", "device", "seed"):
        assert required in names, f"parameters cell lacks {required!r}"
    for line in params[0].source.splitlines():
        assert re.fullmatch(r"\w+ = .+  # [^=]+", line), f"flat literal + comment, no '=' in comment: {line!r}"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        assert not c.get("outputs") and c.get("execution_count") is None, "commit without outputs"
        assert "sys.path" not in c.source and "pip install" not in c.source


TRAINING = [p for p in NOTEBOOKS if p.name[:2] in ("20", "30", "40", "50", "60")]


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_notebooks_use_the_library_paths(path):
    """One evaluation path (evaluation.scores), one checkpoint loader (build_model), the data
    loaders of weakhand.data: no per-notebook scoring, model rebuilding or loader boilerplate."""
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    for banned in ("evaluate_predictions", "wan_dense.evaluate(", "HandDataset(", "load_checkpoint(",
                   "AugmentConfig("):
        assert banned not in code, f"{path.name} uses {banned}"
    if path.name[:2] in ("50", "60"):  # the reader sees what each variant optimises
        assert "loss_terms(" in code


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_states_no_measured_numbers(path):
    """Interpretation text never quotes an approximate measured number (~3 mm, ≈ 0.05, +45 mm):
    such numbers are printed from the run's results instead."""
    for c in nbformat.read(path, as_version=4).cells:
        if c.cell_type == "markdown":
            hit = re.search(r"(~|≈ ?)\d+(\.\d+)?|\+\d+(\.\d+)? ?(mm|px|%)", c.source)
            assert hit is None, f"{path.name}: {hit.group(0)!r} in {c.source[:80]!r}"
    assert nbformat.read(path, as_version=4).cells[-1].source.rstrip().endswith(".brief()")


@pytest.mark.slow
def test_smoke_pipeline_runs_every_notebook_and_writes_artifacts(tmp_path):
    res = runner.run_notebooks("smoke", profile="smoke", device="cpu", runs_dir=tmp_path)
    assert res.ok, res.message
    run = tmp_path / "smoke"
    record = json.loads((run / "run.json").read_text())
    assert [n["status"] for n in record["notebooks"].values()] == ["ok"] * len(NOTEBOOKS)
    assert record["environment"]["torch"] and record["environment"]["numpy"]
    for nb in NOTEBOOKS:
        assert (run / nb.name).exists()
    # data contract of 00_make_data: every default split, smoke sizes, intact, labels as promised
    smoke = profiles.PROFILES["smoke"]
    for name, style, split, knob in DEFAULT_SPLITS:
        d = load_dataset(run / "data" / name / split, verify="full")
        assert d.count == smoke[knob] and d.image_size == (smoke["image_size"],) * 2
        kp3d = np.asarray(d.arrays["kp3d"])
        if style == "sensor" and split == "train":
            assert np.isnan(kp3d).all()
        else:
            assert np.isfinite(kp3d).all()
    figs = sorted(p.name for p in (run / "figures").glob("00_*.html"))
    assert "00_domain_gap.html" in figs and len(figs) >= 5
    # contract of 10_fit_bmc_limits: valid limits fitted on the source training split
    from weakhand import bmc
    limits = bmc.load_limits(run / "bmc" / "limits.json")
    assert limits.provenance["split"] == "train" and limits.provenance["dataset"] == "synth_render"
    assert limits.provenance["count"] == smoke["n_render_train"]
    rates = json.loads((run / "metrics" / "10_bmc_limits.json").read_text())["violation_rates"]
    assert rates["source train"]["bone_length"] == 0.0 and 0.0 <= rates["target test"]["any"] <= 1.0
    # 50: every stage-3 variant of the Cai family (BMC ones included) has finite target numbers
    # 40: the depth model's target numbers and the teacher's pseudo-labels for every weak sample
    m40 = json.loads((run / "metrics" / "40_depth_teacher.json").read_text())
    assert np.isfinite(m40["results"]["sensor test"]["epe_mm"]) and m40["fps"]["batch 1"] > 0
    pseudo = np.load(run / "teacher" / "pseudo_sensor_train.npz")
    assert pseudo["kp3d"].shape == (smoke["n_sensor_train"], 21, 3)
    assert np.isfinite(pseudo["kp3d"]).all() and ((pseudo["conf"] >= 0) & (pseudo["conf"] <= 1)).all()
    for variant in cai.VARIANTS:
        m = json.loads((run / "metrics" / f"50_stage3_{variant}.json").read_text())
        r = m["results"]["sensor test"]
        assert all(np.isfinite(r[k]) for k in ("z_err_mm", "epe_mm", "auc_20_50", "z_bias_mm")), variant
        assert (m["bmc"] is not None) == (variant in cai.USES_BMC)
    # 60: the 2.5D family, source stage and its weak variants, with known and recovered roots
    s1 = json.loads((run / "metrics" / "60_pose25d_stage1.json").read_text())["results"]
    assert set(s1) == {"render test", "sensor test"}
    for variant in spurr_bmc.VARIANTS:  # the smoke profile trains every 2.5D variant
        r = json.loads((run / "metrics" / f"60_pose25d_{variant}.json").read_text())["results"]
        r = r["sensor test"]
        assert all(np.isfinite(r[k]) for k in ("z_err_mm", "epe_mm", "rec_epe_mm",
                                               "root_err_mm")), variant
    # 65: the lifting study: both sources, every variant and seed, both protocols, floors, oracle, checks
    from weakhand.methods import lift
    smoke_seeds = [int(x) for x in profiles.PROFILES["smoke"]["lift_seeds"].split(",")]
    m65 = json.loads((run / "metrics" / "65_lifting.json").read_text())
    assert set(m65["scores"]) == {"render", "render_gap"}
    for src, by_variant in m65["scores"].items():
        assert set(by_variant) == set(lift.VARIANTS), src
        for v, by_seed in by_variant.items():
            assert sorted(int(k) for k in by_seed) == smoke_seeds, (src, v)
            for s in by_seed.values():
                assert all(np.isfinite(s[p][k]) for p in ("given", "full") for k in ("pa_epe_mm", "z_err_mm")), (src, v)
    rows65 = {(r["source"], r["variant"]) for r in m65["table"]["rows"]}
    assert {("render", "constant"), ("render_gap", "constant"), ("render_gap", "full3d")} <= rows65
    assert {g["variant"] for g in m65["table"]["gaps"]} == set(lift.VARIANTS) - {"source", "full3d"}
    assert {r["signal"] for r in m65["oracle"]} == {v for v in lift.VARIANTS if lift.VARIANTS[v].signals}
    assert m65["checks"] and (run / "figures" / "65_lifting_headline.html").exists()
    assert len(list((run / "lift").glob("*.pt"))) == 2 * len(lift.VARIANTS) * len(smoke_seeds)
    assert (run / "lift" / "render_gap_full3d_seed1.pt").exists()
    # 70: the results table has every variant of both families with finite numbers, the report exists
    res70 = json.loads((run / "metrics" / "70_results.json").read_text())
    rows = {(r["family"], r["variant"]) for r in res70["rows"]}
    assert rows == ({("cai", v) for v in ("constant", "source", *cai.VARIANTS)}
                    | {("pose25d", v) for v in ("constant", "source", *spurr_bmc.VARIANTS)})
    for r in res70["rows"]:
        assert all(np.isfinite(r[f"{k}_mean"]) for k in ("px_2d_mean", "z_err_mm", "epe_mm", "auc_0_50",
                                                          "auc_20_50", "pa_epe_mm", "bmc_violation_items")), r
        assert np.isfinite(r["rec_epe_mm_mean"]) == (r["family"] == "pose25d" and r["variant"] != "constant")
    assert {(g["family"], g["variant"]) for g in res70["gaps"]} >= {("cai", "2d_depth_bmc"), ("pose25d", "2d_bmc")}
    oracle = json.loads((run / "metrics" / "50_oracle_descent.json").read_text())["rows"]
    assert {r["signal"] for r in oracle} == {v for v in cai.VARIANTS if cai.VARIANTS[v].signals}
    assert all(np.isfinite(r["z_before_mm"]) and np.isfinite(r["z_after_mm"]) for r in oracle)
    assert (run / "metrics" / "70_results.csv").read_text().count("\n") == len(res70["rows"]) + 1
    diag = json.loads((run / "metrics" / "70_regularizer_diagnostic.json").read_text())["rows"]
    assert [r["joints"] for r in diag[:3]] == ["true joints", "true 2D, flat depth", "true 2D, depth mirrored"]
    assert all(np.isfinite(r["L1"]) and r["L1"] >= 0 for r in diag) and diag[0]["mean |dz| mm (all joints)"] == 0
    report = (run / "report.html").read_text()
    assert report.count("<table>") >= 3 and "plotly" in report
    # the report opens with the headline figure (both protocols) before any table
    assert report.index("At a glance") < report.index("<table>")
    # weakhand ablate on the same folder: shared stages skipped, stage 3 for seeds 0 and 1, evaluation
    from weakhand.workbook.ablate import run_ablation
    assert run_ablation("smoke", profile="smoke", device="cpu", seeds=[0, 1], skip_shared=True,
                        runs_dir=tmp_path) == 0
    abl = json.loads((run / "ablation.json").read_text())
    assert abl["status"] == "ok" and [s["step"] for s in abl["steps"]] == [
        "stage 3, seed 0", "stage 3, seed 1", "evaluation"]
    assert (run / "stage3_2d_depth_seed1" / "last.pt").exists() and (run / "pose25d_2d_bmc_seed1" / "last.pt").exists()
    assert (run / "logs" / "ablate" / "50_train_stage3_weak_seed1.ipynb").exists()
    res2 = json.loads((run / "metrics" / "70_results.json").read_text())
    for r in res2["rows"]:
        assert r["seeds"] == ([0] if r["variant"] in ("source", "constant") else [0, 1]), r["variant"]
        if r["variant"] not in ("source", "constant"):
            assert np.isfinite(r["z_err_mm_std"]), r["variant"]
    assert all(g["z_vs_2d"]["verdict"] != "single seed: spread unknown" for g in res2["gaps"])
