"""weakhand.evaluation: scores on hand-computed cases, seed aggregation, gap closure, the results
table, variant discovery, the HTML report, and the ablate command's argument handling."""
import csv
import io
import math
import re

import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import given, strategies as st

from weakhand import evaluation as ev
from weakhand import skeleton as sk
from weakhand.workbook.ablate import parse_seeds
from weakhand.camera import project
from weakhand.models import root_relative_depth
from weakhand.naming import seeded_name, split_seeded_name


def _hands(n=12, seed=0):
    """Random right hands in front of a camera: kp3d (n,21,3) mm, K (n,3,3), labels dict."""
    rng = np.random.default_rng(seed)
    base = np.zeros((21, 3))
    for f, chain in enumerate(sk.FINGERS):  # a flat fan of fingers, ~20 mm per bone
        ang = np.deg2rad(-40 + 20 * f)
        for k, j in enumerate(chain):
            base[j] = [np.sin(ang) * 20 * (k + 2), -np.cos(ang) * 20 * (k + 2), 3.0 * k]
    kp = base[None] + rng.normal(0, 3, (n, 21, 3))
    kp += np.array([0, 0, 400.0]) + rng.normal(0, 30, (n, 1, 3))
    K = np.tile(np.array([[300.0, 0, 32], [0, 300.0, 32], [0, 0, 1]]), (n, 1, 1))
    return kp, K


def _perfect(n=12, seed=0):
    kp, K = _hands(n, seed)
    uv = project(K, kp)
    zn = root_relative_depth(kp)
    return {"uv": uv, "zn": zn, "kp2d": uv.copy(), "kp3d": kp, "vis": np.ones((n, 21), bool), "K": K,
            "has_3d": np.ones(n, bool)}


def test_score_perfect_predictions_are_perfect():
    s = ev.score(_perfect())
    assert s["epe_mm"] < 1e-6 and s["z_err_mm"] < 1e-6 and s["px_2d_mean"] < 1e-9
    # round-off (~1e-13 mm) can miss the t = 0 point of d <= t: at most half a trapezoid lost
    assert s["auc_0_50"] >= 1 - 0.5 / 99 - 1e-12 and s["auc_20_50"] == pytest.approx(1.0)
    assert s["pa_epe_mm"] < 1e-6 and math.isnan(s["rec_epe_mm"])


def test_score_depth_offset_of_non_root_joints_is_counted_per_keypoint():
    p = _perfect()
    delta = 10.0
    s_mm = sk.scale_length(p["kp3d"])
    p["zn"] = p["zn"] + np.where(np.arange(21) == sk.ROOT, 0.0, delta / s_mm[:, None])
    s = ev.score(p)
    # 20 of 21 joints are 10 mm off in depth, the root is exact: keypoint-averaged |dz| = 20/21 * 10
    assert s["z_err_mm"] == pytest.approx(20 / 21 * delta, rel=1e-9)
    assert s["z_bias_mm"] == pytest.approx(20 / 21 * delta, rel=1e-9)
    assert s["per_joint_z"][sk.ROOT] == pytest.approx(0.0, abs=1e-9)
    assert s["epe_mm"] > s["z_err_mm"]  # backprojecting at the wrong depth moves x, y as well
    assert s["pa_epe_mm"] < s["epe_mm"]


def test_score_skips_invisible_joints_and_samples_without_3d():
    p = _perfect()
    p["uv"][0, 5] += 1000.0  # a wild joint, but invisible
    p["vis"][0, 5] = False
    p["uv"][1] += 50.0       # a wild sample, but without a 3D label
    p["has_3d"][1] = False
    s = ev.score(p)
    assert s["n_samples"] == 11 and s["epe_mm"] < 1e-6 and s["px_2d_mean"] < 1e-9


def test_score_refuses_diverged_predictions():
    p = _perfect()
    p["zn"][0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ev.score(p)


def test_score_recovered_root_for_25d_predictions():
    p = _perfect()
    s_mm = sk.scale_length(p["kp3d"])
    p["z_root"] = p["kp3d"][:, sk.ROOT, 2] / s_mm  # the true root in scale-bone units
    s = ev.score(p)
    assert s["rec_epe_mm"] < 1e-6 and s["root_err_mm"] < 1e-9
    p["z_root"] = p["z_root"] + 20.0 / s_mm  # 20 mm too far
    s = ev.score(p)
    assert s["root_err_mm"] == pytest.approx(20.0) and s["rec_z_err_mm"] == pytest.approx(20.0)


def _noisy_predictions(seed: int, n: int = 17) -> dict:
    """float32 predictions as the methods' predict returns them, with invisible joints and
    samples without a 3D label (NaN kp3d), for both families (z_root, z_root_closed)."""
    rng = np.random.default_rng(seed)
    kp3d = (rng.normal(0, 30, (n, 21, 3)) + [0, 0, 500]).astype(np.float32)
    kp2d = rng.uniform(0, 128, (n, 21, 2)).astype(np.float32)
    has_3d = rng.random(n) > 0.3
    has_3d[0] = True
    kp3d[~has_3d] = np.nan
    return {"uv": (kp2d + rng.normal(0, 3, kp2d.shape)).astype(np.float32),
            "zn": rng.normal(0, 1, (n, 21)).astype(np.float32), "kp2d": kp2d, "kp3d": kp3d,
            "vis": rng.random((n, 21)) > 0.2, "has_3d": has_3d,
            "K": np.tile(np.array([[300.0, 0, 64], [0, 300.0, 64], [0, 0, 1]], np.float32), (n, 1, 1)),
            "z_root": rng.uniform(8, 12, n).astype(np.float32),
            "z_root_closed": rng.uniform(8, 12, n).astype(np.float32)}


@pytest.mark.parametrize("seed", range(5))
def test_score_predictions_equals_score_on_shared_keys(seed):
    """One evaluation path: scores.score_predictions (the training notebooks' quick subset; the
    methods' own evaluate functions were removed after a bit-for-bit comparison) gives the same
    numbers as score() under the same keys, with the recovered-root keys only for 2.5D."""
    p = _noisy_predictions(seed)
    new = ev.scores.score_predictions(p)
    assert {"n_samples", "rec_epe_mm", "rec_z_err_mm", "rec_auc_20_50", "root_err_mm",
            "root_closed_err_mm", "rec_pred3d"} <= set(new)
    full = ev.score(p)
    for k in set(new) & set(full):
        np.testing.assert_array_equal(np.asarray(new[k]), np.asarray(full[k]), err_msg=k)
    cai_only = ev.scores.score_predictions({k: v for k, v in p.items() if not k.startswith("z_root")})
    assert not any(k.startswith(("rec_", "root_")) for k in cai_only)


def test_score_camera_frame_of_depth_model_predictions():
    """Camera-frame 3D (the depth models): exact predictions score 0; a 10 mm shift along z
    gives 10 mm everywhere; samples without 3D and invisible joints are left out."""
    p = _noisy_predictions(0)
    p["pred3d"] = p["kp3d"].copy()
    s = ev.scores.score_camera_frame(p)
    assert s["n_samples"] == int(p["has_3d"].sum()) and s["epe_mm"] == 0.0 and s["z_err_mm"] == 0.0
    assert s["per_joint_epe"].shape == (21,) and s["auc_0_50"] == 1.0
    p["pred3d"] = p["kp3d"] + np.float32([0, 0, 10])
    s = ev.scores.score_camera_frame(p)
    assert s["epe_mm"] == pytest.approx(10.0, abs=1e-4) and s["z_err_mm"] == pytest.approx(10.0, abs=1e-4)
    assert s["epe_median_mm"] == pytest.approx(10.0, abs=1e-4)


def test_gap_closed_hand_computed():
    assert ev.gap_closed(50.0, 40.0, 30.0) == pytest.approx(0.5)
    assert ev.gap_closed(50.0, 30.0, 30.0) == pytest.approx(1.0)
    assert ev.gap_closed(50.0, 60.0, 30.0) == pytest.approx(-0.5)
    assert math.isnan(ev.gap_closed(30.0, 20.0, 30.0))


def test_aggregate_mean_and_sample_std():
    agg = ev.aggregate([{"z_err_mm": 1.0, "n_samples": 3}, {"z_err_mm": 2.0, "n_samples": 3},
                        {"z_err_mm": 3.0, "n_samples": 3}])
    assert agg["z_err_mm"] == {"mean": 2.0, "std": 1.0, "n": 3}
    assert "n_samples" not in agg  # ints are counts, not metrics
    one = ev.aggregate([{"z_err_mm": 4.0}])
    assert one["z_err_mm"]["mean"] == 4.0 and math.isnan(one["z_err_mm"]["std"])


def _fake_scores():
    """z error per seed: 2d 50/52/48, full3d 30/30/30, 2d_depth 45/44/46, 2d_bmc 49/53/50."""
    vals = {"source": [60], "2d": [50, 52, 48], "full3d": [30, 30, 30], "2d_depth": [45, 44, 46],
            "2d_bmc": [49, 53, 50]}
    mk = lambda z: {"z_err_mm": float(z), "epe_mm": float(z) + 10, **{k: 0.5 for k, _, _ in ev.TABLE_METRICS  # noqa: E731
                                                                     if k not in ("z_err_mm", "epe_mm")}}
    return {"cai": {v: {s: mk(z) for s, z in enumerate(zs)} for v, zs in vals.items()}}


def test_results_table_gap_closure_pairs_seeds_and_calls_spread():
    t = ev.results_table(_fake_scores())
    rows = {r["variant"]: r for r in t["rows"]}
    assert [r["variant"] for r in t["rows"]] == ["source", "2d", "2d_depth", "2d_bmc", "full3d"]
    assert rows["2d"]["z_err_mm_mean"] == pytest.approx(50.0) and rows["2d"]["z_err_mm_std"] == pytest.approx(2.0)
    assert rows["source"]["seeds"] == [0] and math.isnan(rows["source"]["z_err_mm_std"])
    gaps = {g["variant"]: g for g in t["gaps"]}
    # per seed: (50-45)/20, (52-44)/22, (48-46)/18
    want = [5 / 20, 8 / 22, 2 / 18]
    assert gaps["2d_depth"]["z_err_mm_gap_closed"] == pytest.approx(np.mean(want))
    assert gaps["2d_depth"]["z_err_mm_gap_closed_std"] == pytest.approx(np.std(want, ddof=1))
    assert gaps["2d_depth"]["z_vs_2d"]["verdict"] == "better"          # -5 mm vs spread 2
    assert gaps["2d_bmc"]["z_vs_2d"]["verdict"] == "within seed spread"  # +0.67 mm vs spread 2.08
    shown = ev.display_gaps(t)
    assert shown[0]["z-error gap closed"].startswith("24 %")
    assert ev.display_rows(t)[1]["z err mm"] == "50.0 ± 2.0"


def test_versus_2d_with_one_seed_says_spread_unknown():
    s = _fake_scores()
    s["cai"] = {v: {0: by[0]} for v, by in s["cai"].items()}
    t = ev.results_table(s)
    assert all(g["z_vs_2d"]["verdict"] == "single seed: spread unknown" for g in t["gaps"])


def test_table_csv_round_trips():
    t = ev.results_table(_fake_scores())
    rows = list(csv.DictReader(io.StringIO(ev.table_csv(t))))
    assert [r["variant"] for r in rows] == ["source", "2d", "2d_depth", "2d_bmc", "full3d"]
    assert float(rows[1]["z_err_mm_mean"]) == pytest.approx(50.0) and rows[1]["n_seeds"] == "3"


def test_paper_reference_gap_matches_the_papers_numbers():
    rows = ev.paper_reference_rows()
    assert [r["gap closed"] for r in rows] == ["—", "59 %", "62 %"]


def test_discover_finds_variants_and_seeds(tmp_path):
    for d, f in [("stage1_pose", "best.pt"), ("stage3_2d", "last.pt"), ("stage3_2d_seed2", "last.pt"),
                 ("stage3_full3d", "last.pt"), ("stage3_bogus", "last.pt"), ("stage3_2d_bmc", "best.pt"),
                 ("pose25d_stage1", "best.pt"), ("pose25d_2d_bmc_seed1", "last.pt")]:
        (tmp_path / d).mkdir()
        (tmp_path / d / f).write_bytes(b"")
    found = [(t.family, t.variant, t.seed) for t in ev.discover(tmp_path)]
    assert found == [("cai", "source", 0), ("cai", "2d", 0), ("cai", "2d", 2), ("cai", "full3d", 0),
                     ("pose25d", "source", 0), ("pose25d", "2d_bmc", 1)]
    assert [t.seed for t in ev.discover(tmp_path, families=["cai"], seeds=[2])] == [0, 2]
    with pytest.raises(ValueError, match="unknown family"):
        ev.discover(tmp_path, families=["nope"])


def test_evaluate_run_without_models_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ev.evaluate_run(tmp_path)


def test_report_is_self_contained_and_escaped(tmp_path):
    r = ev.Report("Study <1>")
    r.heading("Results").table([{"model": "a<b", "z": "1.0"}]).text("note & more", note=True)
    r.figure(go.Figure(go.Scatter(x=[1], y=[2]))).figure(go.Figure(go.Bar(x=[1], y=[2])))
    path = r.write(tmp_path / "r.html")
    text = path.read_text()
    assert "a&lt;b" in text and "Study &lt;1&gt;" in text and "note &amp; more" in text
    # plotly.js is embedded exactly once (no CDN): the file works offline
    assert text.count("plotly.js v") == 1 and text.count("Plotly.newPlot") == 2
    assert not re.search(r"<script[^>]*\bsrc=", text)


@given(st.text(alphabet="abcdefgh_0123456789", min_size=1, max_size=12), st.integers(0, 50))
def test_seeded_name_round_trips(name, seed):
    base, _ = split_seeded_name(name)
    if base != name:  # names that already look seeded are out of scope
        return
    assert split_seeded_name(seeded_name(name, seed)) == (name, seed)


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5,0") == [0, 3, 4, 5]
    for bad in ("", "a", "-1", "2-x"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_parse_seed_list_accepts_what_papermill_can_inject():
    assert ev.parse_seed_list("") is None and ev.parse_seed_list(None) is None
    assert ev.parse_seed_list("0, 2") == [0, 2] and ev.parse_seed_list([1, 3]) == [1, 3]
    assert ev.parse_seed_list((0, 1)) == [0, 1] and ev.parse_seed_list(4) == [4]
    with pytest.raises(ValueError, match="seeds"):
        ev.parse_seed_list("a,b")


@pytest.mark.parametrize("skip_shared, evaluated", [(True, ""), (False, "1,2")])
def test_ablate_adding_seeds_evaluates_every_seed_of_the_run(tmp_path, monkeypatch, skip_shared, evaluated):
    """`ablate --seeds 1,2 --skip-shared` after a main job must score seeds 0, 1, 2 (notebook 70 with
    no seed filter), not just the new ones; a fresh study scores exactly the seeds it trained."""
    import types
    from weakhand.workbook import ablate, runner
    from weakhand.workbook.ablate import SHARED_OUTPUTS
    run = tmp_path / "study"
    for rel in (*SHARED_OUTPUTS.values(), ablate.LIFTING_OUTPUT):  # a finished main job: every shared output exists
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text("")
    calls = []

    def fake_run(name, only, overrides, out, **kw):
        calls.append((tuple(only), dict(overrides)))
        return types.SimpleNamespace(ok=True, failed=[], run_dir=run)

    monkeypatch.setattr(runner, "run_notebooks", fake_run)
    assert ablate.run_ablation("study", profile="smoke", seeds=[1, 2], skip_shared=skip_shared,
                               runs_dir=tmp_path, out=io.StringIO()) == 0
    lifting = [] if skip_shared else [("65",)]  # the lifting study: once, its seeds inside, unless it exists
    assert [c[0] for c in calls][-3 - len(lifting):] == [("50", "60"), ("50", "60"), *lifting, ("70",)]
    assert [c[1].get("seed") for c in calls if c[0] == ("50", "60")] == [1, 2]
    assert [c[1]["lift_seeds"] for c in calls if c[0] == ("65",)] == ([] if skip_shared else ["1,2"])
    assert calls[-1][1]["seeds"] == evaluated
