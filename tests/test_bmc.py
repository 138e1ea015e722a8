"""BMC geometry, limits, loss and the hull-editor model (Spurr et al., ECCV 2020)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weakhand import bmc
from weakhand.bmc import editor as hull_editor
from weakhand import skeleton as sk
from weakhand.bmc import geometry as g
from weakhand.bmc import hull as H
from weakhand.synth.domains import RENDER, SENSOR
from weakhand.synth.generator import sample_hand_poses

DEG = np.pi / 180


@pytest.fixture(scope="module")
def source():
    kp, side = sample_hand_poses(RENDER, 3000, seed=1)
    return kp, side == 0


@pytest.fixture(scope="module")
def limits(source):
    kp, left = source
    return bmc.fit_limits(kp, left, dataset="synth_render", split="train")


def _rotation(q) -> np.ndarray:
    q = np.asarray(q, float)
    q = q / np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _flat_hand() -> np.ndarray:
    """A right hand with the palm in the z = 0 plane (palm normal +z, so flexion bends to -z),
    fingers straight along their root bones, every bone of length 1 in the fingers."""
    kp = np.zeros((21, 3))
    xs = (-0.8, -0.3, 0.0, 0.3, 0.6)
    for f, x in enumerate(xs):
        root = np.array([x, 1.0, 0.0])
        d = root / np.linalg.norm(root)
        for link in range(4):
            kp[sk.FINGERS[f][link]] = root + link * d
    return kp


# ----------------------------------------------------------------------------- geometry
quats = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1)


@settings(max_examples=40, deadline=None)
@given(q=quats, scale=st.floats(0.01, 100), shift=st.lists(st.floats(-500, 500), min_size=3,
                                                         max_size=3))
def test_angles_and_palm_invariant_to_rigid_motion_and_scale(source, q, scale, shift):
    kp = g.canonical_pose(source[0][:50], source[1][:50], normalize=False)
    moved = scale * kp @ _rotation(q).T + np.asarray(shift)
    a, b = g.joint_angles(kp), g.joint_angles(moved)
    np.testing.assert_allclose(a, b, atol=1e-9)
    pa, pb = g.palm_features(kp), g.palm_features(moved)
    np.testing.assert_allclose(pa["angular_distance"], pb["angular_distance"], atol=1e-9)
    # curvature has units 1/length: invariant once the pose is normalised
    fa, fb = g.bmc_features(kp), g.bmc_features(moved)
    for key in fa:
        np.testing.assert_allclose(fa[key], fb[key], atol=1e-8)


def test_mirroring_flips_flexion_and_keeps_abduction(source):
    kp = g.canonical_pose(source[0][:200], source[1][:200], normalize=False)
    a, m = g.joint_angles(kp), g.joint_angles(sk.mirror(kp))
    np.testing.assert_allclose(m[..., 0], -a[..., 0], atol=1e-12)
    np.testing.assert_allclose(m[..., 1], a[..., 1], atol=1e-12)
    # canonical_pose undoes it: a mirrored left hand has the right hand's angles
    np.testing.assert_allclose(g.joint_angles(g.canonical_pose(sk.mirror(kp), np.ones(200, bool))),
                               a, atol=1e-12)


def test_known_constructed_poses_give_known_angles():
    kp = _flat_hand()
    np.testing.assert_allclose(g.joint_angles(kp), 0.0, atol=1e-12)  # straight fingers
    # middle finger (root along +y): proximal bone flexed 30°, middle bone 75° (absolute, towards
    # -z = palm), distal bone straight again
    mid = sk.FINGERS[2]
    th1, th2 = 30 * DEG, 75 * DEG
    kp[mid[1]] = kp[mid[0]] + np.array([0, np.cos(th1), -np.sin(th1)])
    kp[mid[2]] = kp[mid[1]] + np.array([0, np.cos(th2), -np.sin(th2)])
    kp[mid[3]] = kp[mid[2]] + np.array([0, 1.0, 0])
    ang = g.joint_angles(kp)
    np.testing.assert_allclose(ang[g.angle_bone_index("middle", "mcp")], [th1, 0], atol=1e-12)
    np.testing.assert_allclose(ang[g.angle_bone_index("middle", "pip")], [th2 - th1, 0], atol=1e-12)
    np.testing.assert_allclose(ang[g.angle_bone_index("middle", "dip")], [-th2, 0], atol=1e-12)
    # sideways: bend the ring finger's proximal bone by 20° within the palm plane towards -x
    ring = sk.FINGERS[3]
    r = kp[ring[0]] / np.linalg.norm(kp[ring[0]])
    side = np.array([-r[1], r[0], 0.0])  # r rotated +90° about +z: towards the thumb (-x)
    a = 20 * DEG
    kp[ring[1]] = kp[ring[0]] + np.cos(a) * r + np.sin(a) * side
    for link in (2, 3):
        kp[ring[link]] = kp[ring[link - 1]] + (kp[ring[1]] - kp[ring[0]])
    ang = g.joint_angles(kp)
    np.testing.assert_allclose(ang[g.angle_bone_index("ring", "mcp")], [0, a], atol=1e-12)
    np.testing.assert_allclose(ang[g.angle_bone_index("ring", "pip")], [0, 0], atol=1e-12)


def test_forward_kinematics_round_trip(source):
    kp = g.canonical_pose(source[0][:300], source[1][:300], normalize=False)
    rng = np.random.default_rng(0)
    a = np.stack([rng.uniform(-3.0, 3.0, (300, 15)), rng.uniform(-1.5, 1.5, (300, 15))], -1)
    posed = g.pose_from_angles(kp, a)
    np.testing.assert_allclose(g.joint_angles(posed), a, atol=1e-9)
    np.testing.assert_allclose(sk.bone_lengths(posed), sk.bone_lengths(kp), atol=1e-9)
    np.testing.assert_array_equal(posed[:, [0, *sk.MCPS]], kp[:, [0, *sk.MCPS]])


def _degenerate_poses() -> torch.Tensor:
    kp = _flat_hand()
    zero = np.zeros((21, 3))
    collinear = kp.copy()
    collinear[sk.MCPS] = np.array([0.0, 1.0, 0.0]) * np.arange(1, 6)[:, None]  # root bones ∥
    zero_bone = kp.copy()
    zero_bone[sk.FINGERS[1][2]] = zero_bone[sk.FINGERS[1][1]]  # zero-length index bone
    backwards = kp.copy()
    backwards[sk.FINGERS[2][2]] = kp[sk.FINGERS[2][1]] - (kp[sk.FINGERS[2][2]] - kp[sk.FINGERS[2][1]])
    return torch.tensor(np.stack([kp, zero, collinear, zero_bone, backwards]), requires_grad=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_inputs_give_finite_values_and_gradients(limits, dtype):
    kp = _degenerate_poses().detach().to(dtype).requires_grad_(True)
    f = g.bmc_features(kp)
    for key, v in f.items():
        assert torch.isfinite(v).all(), key
    out = bmc.bmc_loss(kp, limits)
    (sum(v.sum() for v in f.values()) + out["bmc"]).backward()
    assert torch.isfinite(out["bmc"]) and torch.isfinite(kp.grad).all()


# ----------------------------------------------------------------------------- limits
def test_fitted_limits_contain_training_poses_up_to_the_stated_coverage(source, limits):
    kp, left = source
    f = bmc.bmc_features(kp, left)
    for key in ("bone_length", "curvature", "angular_distance"):
        lim = getattr(limits, key)
        assert (f[key] >= lim[:, 0] - 1e-12).all() and (f[key] <= lim[:, 1] + 1e-12).all(), key
    cov = limits.provenance["fit"]["hull_coverage"]
    for k in range(15):
        assert H.coverage(f["angles"][:, k], limits.hulls[k]) >= cov - 1e-12, g.ANGLE_BONE_NAMES[k]
    rates = bmc.violation_rates(kp, limits, left)
    assert rates["bone_length"] == rates["curvature"] == rates["angular_distance"] == 0.0
    assert rates["per_item"]["angles"].max() <= 1 - cov + 1e-9
    np.testing.assert_allclose(limits.bone_length[sk.SCALE_BONE_ID], [1.0, 1.0], atol=1e-9)


def test_percentile_and_margin_shape_the_intervals(source):
    kp, left = source
    tight = bmc.fit_limits(kp, left, percentile=5.0)
    wide = bmc.fit_limits(kp, left, margin=0.1)
    full = bmc.fit_limits(kp, left)
    w = lambda lim: lim.curvature[:, 1] - lim.curvature[:, 0]  # noqa: E731
    assert (w(tight) < w(full)).all()
    np.testing.assert_allclose(w(wide), 1.2 * w(full))


def test_fit_refuses_test_splits_and_bad_input(source):
    kp, left = source
    with pytest.raises(ValueError, match="training data only"):
        bmc.fit_limits(kp, left, split="test")
    bad = kp[:100].copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bmc.fit_limits(bad)
    with pytest.raises(ValueError, match=r"\(N, 21, 3\)"):
        bmc.fit_limits(kp[:, :20])


def test_save_load_round_trip_and_provenance(tmp_path, limits):
    p = bmc.save_limits(limits, tmp_path / "bmc" / "limits.json")
    back = bmc.load_limits(p)
    for key in ("bone_length", "curvature", "angular_distance"):
        np.testing.assert_array_equal(getattr(back, key), getattr(limits, key))
    for a, b in zip(back.hulls, limits.hulls):
        np.testing.assert_array_equal(a, b)
    prov = json.loads(p.read_text())["provenance"]
    assert prov["dataset"] == "synth_render" and prov["split"] == "train"
    assert prov["count"] == 3000 and prov["normalisation"]["scale_bone"] == ["middle_mcp",
                                                                           "middle_pip"]
    assert {"hull_eps", "hull_coverage", "percentile", "margin"} <= set(prov["fit"])
    assert "created" in prov


def _corrupt(tmp_path, limits, fn, name="bad.json"):
    d = limits.to_json()
    fn(d)
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("fn, msg", [
    (lambda d: d["bone_length"]["min"].pop(), r"bone_length.min.* needs 20"),
    (lambda d: d["hulls"]["index_pip"].reverse(), r"index_pip.*clockwise"),
    (lambda d: d["hulls"]["ring_dip"].insert(1, [0.0, 0.0]) or
     d["hulls"]["ring_dip"].__setitem__(1, list(np.mean(d["hulls"]["ring_dip"], axis=0))),
     r"ring_dip.*convex"),
    (lambda d: d["curvature"]["max"].__setitem__(2, float("nan")), r"curvature.*NaN"),
    (lambda d: d.__setitem__("schema_version", 99), r"unknown schema_version 99"),
    (lambda d: d.__setitem__("schema", "something.else"), r"not a BMC limits file"),
    (lambda d: d["hulls"].pop("thumb_tip"), r"lacks bones \['thumb_tip'\]"),
])
def test_load_rejects_malformed_files_with_a_clear_message(tmp_path, limits, fn, msg):
    p = _corrupt(tmp_path, limits, fn)
    with pytest.raises(bmc.LimitsError, match=msg) as err:
        bmc.load_limits(p)
    assert str(p) in str(err.value)


def test_save_refuses_invalid_limits_and_leaves_no_file(tmp_path, limits):
    bad = limits.copy()
    bad.hulls[0] = bad.hulls[0][::-1].copy()
    with pytest.raises(bmc.LimitsError, match="clockwise"):
        bmc.save_limits(bad, tmp_path / "limits.json")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- loss
def test_training_poses_inside_cost_nothing(source, limits):
    kp, left = source
    inside = bmc.violation_rates(kp, limits, left)
    assert inside["any"] <= 15 * (1 - limits.provenance["fit"]["hull_coverage"]) + 1e-9
    f = bmc.bmc_features(kp, left)
    ok = np.stack([H.points_in_polygon(f["angles"][:, k], limits.hulls[k]) for k in range(15)],
                  1).all(1)
    out = bmc.bmc_loss(torch.tensor(kp[ok]), limits, torch.tensor(left[ok]))
    assert float(out["bmc"]) == 0.0


@pytest.mark.parametrize("what", ["hyperextend", "sideways"])
def test_implausible_finger_is_penalised_and_gradient_points_back_inside(source, limits, what):
    kp, left = source
    base = g.canonical_pose(kp[:8], left[:8], normalize=False)
    ang = g.joint_angles(base).copy()
    k = g.angle_bone_index("index", "pip")
    if what == "hyperextend":
        ang[:, k, 0] = -80 * DEG
    else:
        ang[:, k, 1] = 60 * DEG
    bad = torch.tensor(g.pose_from_angles(base, ang), requires_grad=True)
    out = bmc.bmc_loss(bad, limits)
    assert out["angles"].item() > 0
    out["bmc"].backward()
    assert torch.isfinite(bad.grad).all()
    with torch.no_grad():
        stepped = bad - 0.5 * bad.grad / bad.grad.norm()
    after = g.joint_angles(stepped.detach().numpy())[:, k]
    if what == "hyperextend":
        assert (after[:, 0] > ang[:, k, 0]).all()  # flexes back towards the hull
    else:
        assert (np.abs(after[:, 1]) < np.abs(ang[:, k, 1])).all()
    assert bmc.bmc_loss(stepped, limits)["angles"].item() < out["angles"].item()


def test_loss_is_scale_free_and_mirrors_left_hands(source, limits):
    kp, left = source
    x = torch.tensor(kp[:64])
    l_mm = bmc.bmc_loss(x, limits, torch.tensor(left[:64]))
    l_m = bmc.bmc_loss(x / 1000.0, limits, torch.tensor(left[:64]))
    for key in l_mm:
        assert torch.allclose(l_mm[key], l_m[key], atol=1e-9)
    # forgetting to mirror the left hands costs: flexion signs flip
    wrong = bmc.bmc_loss(x[torch.tensor(left[:64])], limits)
    assert float(wrong["angles"]) > 10 * float(l_mm["angles"]) + 1e-3


def test_loss_terms_weights_and_mask(source, limits):
    kp, left = source
    rng = np.random.default_rng(0)
    x = torch.tensor(kp[:16] + rng.normal(0, 8, (16, 21, 3)))
    out = bmc.bmc_loss(x, limits, torch.tensor(left[:16]), bmc.BMCWeights(2.0, 3.0, 5.0))
    expect = 2 * out["bone_length"] + 3 * out["root_bones"] + 5 * out["angles"]
    assert torch.allclose(out["bmc"], expect) and float(out["bmc"]) > 0
    m = torch.zeros(16, dtype=torch.bool)
    m[3] = True
    one = bmc.bmc_loss(x, limits, torch.tensor(left[:16]), mask=m)
    ref = bmc.bmc_loss(x[3:4], limits, torch.tensor(left[3:4]))
    assert torch.allclose(one["bmc"], ref["bmc"])
    none = bmc.bmc_loss(x, limits, torch.tensor(left[:16]), mask=torch.zeros(16, dtype=torch.bool))
    assert float(none["bmc"]) == 0.0


def test_noisy_poses_violate_far_more_than_held_out_clean_ones(limits):
    kp, side = sample_hand_poses(RENDER, 2000, seed=2)  # not the fitted poses
    clean = bmc.violation_rates(kp, limits, side == 0)
    noisy = kp + np.random.default_rng(0).normal(0, 6.0, kp.shape)  # 6 mm joint noise
    bad = bmc.violation_rates(noisy, limits, side == 0)
    assert clean["any"] < 0.15
    assert bad["any"] > 0.8 and bad["angles"] > 3 * clean["angles"]


# ----------------------------------------------------------------------------- editor model
@pytest.fixture()
def model(source, limits, tmp_path):
    kp, left = source
    angles = bmc.bmc_features(kp, left)["angles"]
    return hull_editor.HullEditorModel(limits, angles, hull_editor.preview_base_pose(kp, left),
                               path=tmp_path / "limits.json")


def test_editor_move_vertex_outward_raises_coverage_and_poses_preview(model):
    model.select_bone("index", "pip")
    hull = model.hull.copy()
    c = hull.mean(0)
    i = 0
    before = model.coverage()
    target = hull[i] + 0.3 * (hull[i] - c)
    assert model.move_vertex(target)
    np.testing.assert_allclose(model.hull[i], target)
    assert model.coverage() >= before
    assert model.limits.edits[-1] == {"op": "move", "bone": model.bone, "index": i,
                                      "to": list(map(float, target))}
    pose = model.preview_pose()
    np.testing.assert_allclose(g.joint_angles(pose)[model.bone], target, atol=1e-9)
    assert model.dirty


def test_editor_refuses_non_convex_move_and_says_why(model):
    model.select_bone("middle", "mcp")
    hull = model.hull.copy()
    c = hull.mean(0)
    assert not model.move_vertex(c + 0.05 * (hull[1] - c))  # pulled deep inside: a dent
    assert "refused" in model.message and "convex" in model.message
    np.testing.assert_array_equal(model.hull, hull)
    assert model.limits.edits == []


def test_editor_add_delete_scale_translate_undo_reset(model):
    model.select_bone("thumb", "dip")
    fitted = model.hull.copy()
    m = len(fitted)
    assert model.insert_vertex()  # default: just outside the selected edge's midpoint
    assert len(model.hull) == m + 1 and H.polygon_problem(model.hull) is None
    assert model.delete_vertex() and len(model.hull) == m
    np.testing.assert_allclose(model.hull, fitted)
    assert model.scale(1.5)
    assert H.signed_area(model.hull) == pytest.approx(2.25 * H.signed_area(fitted))
    assert model.translate([0.1, -0.05])
    np.testing.assert_allclose(model.hull.mean(0), H.scale_polygon(fitted, 1.5).mean(0)
                               + [0.1, -0.05], atol=1e-12)
    assert len(model.limits.edits) == 4
    assert model.undo() and model.undo()
    assert len(model.limits.edits) == 2
    np.testing.assert_allclose(model.hull, fitted)
    assert model.reset_bone()
    np.testing.assert_allclose(model.hull, fitted)
    model.reset_all()
    assert model.limits.edits == [] and not model.dirty
    while model.undo():
        pass
    assert model.message == "nothing to undo"
    for _ in range(len(model.hull) - 3):
        assert model.delete_vertex()
    assert not model.delete_vertex() and "3" in model.message


def test_editor_save_load_and_headless_replay(model, source):
    model.select_bone("ring", "mcp")
    c = model.hull.mean(0)
    model.move_vertex(model.hull[2] + 0.2 * (model.hull[2] - c))
    model.select_bone("little", "dip")
    model.scale(1.2)
    path = model.save()
    assert not model.dirty and "saved 2 edit" in model.message
    back = bmc.load_limits(path)
    assert back.edits == model.limits.edits
    for a, b in zip(back.hulls, model.limits.hulls):
        np.testing.assert_allclose(a, b)
    # a headless run refits (same data → same fit) and replays the saved edits
    kp, left = source
    refit = bmc.fit_limits(kp, left, dataset="synth_render", split="train")
    replayed = refit.with_edits(back.edits)
    for a, b in zip(replayed.hulls, model.limits.hulls):
        np.testing.assert_allclose(a, b)
    assert [len(h) for h in replayed.fitted_hulls] == [len(h) for h in refit.hulls]


def test_replaying_an_impossible_edit_names_it(limits):
    with pytest.raises(bmc.LimitsError, match=r"edit #0 .*out of range"):
        limits.with_edits([{"op": "delete", "bone": 0, "index": 99}])
    with pytest.raises(bmc.LimitsError, match="unknown edit op"):
        limits.with_edits([{"op": "twist", "bone": 0}])


def test_editor_view_callbacks_drive_the_model_headless(model):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    view = hull_editor.HullEditor(model)
    view.finger.value = "ring"
    view.layer.value = "pip"
    assert model.bone == g.angle_bone_index("ring", "pip")
    assert len(view.fig.data[2].x) == len(model.hull) + 1  # closed polygon drawn
    view.vertex.value = 1
    old = model.hull[1].copy()
    c = model.hull.mean(0)
    new = np.degrees(old + 0.2 * (old - c))
    view.flex.value = round(float(new[0]), 1)
    assert model.limits.edits and model.limits.edits[-1]["op"] == "move"
    np.testing.assert_allclose(view.fig.data[2].x[1], np.degrees(model.hull[1, 0]))
    assert view.fig.data[2].x[1] == pytest.approx(round(float(new[0]), 1))
    # the flexion slider moved only flexion: abduction keeps its exact (unrounded) value
    assert model.hull[1, 1] == old[1]
    view.save_btn.click()
    assert model.path.exists() and "saved" in view.status.value
