"""Synthetic hand generator: geometry consistency, labels, sensor models, determinism."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weakhand import camera, skeleton as sk
from weakhand.synth import anatomy, domains, generator, poses, raycast
from weakhand.synth.anatomy import PART_OCCLUDER


@pytest.fixture(scope="module")
def render_block():
    style = domains.RENDER
    return generator.generate_block(style, generator.block_rng(0, style, "t", 0), 96, 96)


@pytest.fixture(scope="module")
def sensor_block():
    style = domains.SENSOR
    return generator.generate_block(style, generator.block_rng(0, style, "t", 0), 64, 96,
                                    generator.subject_pool(style, 0))


def test_block_arrays_have_schema_dtypes_and_shapes(render_block):
    b = render_block
    assert b["rgb"].shape == (96, 96, 96, 3) and b["rgb"].dtype == np.uint8
    assert b["depth"].shape == (96, 96, 96) and b["depth"].dtype == np.float32
    assert b["kp3d"].shape == (96, 21, 3) and b["kp2d"].shape == (96, 21, 2)
    assert b["vis"].dtype == bool and b["K"].shape == (96, 3, 3)
    assert set(np.unique(b["mask"])) <= {0, 1}
    assert np.isfinite(b["kp3d"]).all() and (b["kp3d"][..., 2] > 100).all()


def test_keypoints_project_with_crop_K(render_block):
    b = render_block
    uv = camera.project(b["K"].astype(np.float64), b["kp3d"].astype(np.float64))
    np.testing.assert_allclose(uv, b["kp2d"], atol=1e-3)


def test_rendered_depth_agrees_with_3d_joints_where_visible(render_block):
    """At a visible joint's pixel the surface lies between the joint centre and one finger
    radius (plus a pixel's worth of slope) in front of it: renderer and kinematics agree."""
    b = render_block
    n = len(b["rgb"])
    pix = np.rint(b["kp2d"]).astype(int)
    d = b["depth"][np.arange(n)[:, None], pix[..., 1].clip(0, 95), pix[..., 0].clip(0, 95)]
    z = b["kp3d"][..., 2]
    v = b["vis"]
    assert v.mean() > 0.3
    gap = (z - d)[v]
    assert np.quantile(gap, 0.02) > -3.0     # surface is not behind the joint centre
    assert np.quantile(gap, 0.98) < 30.0      # nor further in front than a thick finger/palm
    assert np.median(gap) < 15.0


def test_visible_joints_lie_on_the_hand_mask(render_block):
    b = render_block
    n = len(b["rgb"])
    pix = np.rint(b["kp2d"]).astype(int).clip(0, 95)
    on_mask = b["mask"][np.arange(n)[:, None], pix[..., 1], pix[..., 0]] == 1
    inner = np.ones(21, bool)
    inner[sk.TIPS] = False   # tips sit on the skin surface, often on the silhouette
    inner[0] = False         # the wrist is the hand/forearm boundary (forearm is not "hand")
    sel = b["vis"] & inner
    assert on_mask[sel].mean() > 0.97
    lab = b["parts"][np.arange(n), pix[:, 0, 1], pix[:, 0, 0]]
    wrist_seen = b["vis"][:, 0]
    assert np.isin(lab[wrist_seen], [anatomy.PART_ARM, anatomy.PART_PALM]).mean() > 0.9


def test_joints_behind_an_occluder_are_not_visible(render_block):
    b = render_block
    n = len(b["rgb"])
    pix = np.rint(b["kp2d"]).astype(int)
    inside = ((pix >= 0) & (pix < 96)).all(-1)
    pix = pix.clip(0, 95)
    lab = b["parts"][np.arange(n)[:, None], pix[..., 1], pix[..., 0]]
    occluded = inside & (lab == PART_OCCLUDER)
    assert occluded.any(), "expected some joints behind occluders in 96 render samples"
    assert not b["vis"][occluded].any()


def test_bone_lengths_are_anthropometric(render_block):
    kp = render_block["kp3d"].astype(np.float64)
    scale = sk.scale_length(kp)  # middle MCP->PIP
    assert (scale > 35).all() and (scale < 70).all()
    lengths = sk.bone_lengths(kp)
    assert (lengths > 8).all() and (lengths < 120).all()


def test_side_label_matches_hand_chirality():
    """Curled fingers move to the palm side, whose normal (index MCP - wrist) x (little MCP -
    wrist) flips orientation under mirroring: a left hand must give the opposite sign."""
    style = domains.RENDER.replace(family_weights={"fist": 1}, p_left=0.5)
    b = generator.generate_block(style, np.random.default_rng(5), 48, 64)
    kp = b["kp3d"].astype(np.float64)
    n = np.cross(kp[:, 5] - kp[:, 0], kp[:, 17] - kp[:, 0])
    s = np.sign(((kp[:, 12] - kp[:, 9]) * n).sum(-1))
    assert set(np.unique(b["side"])) == {0, 1}
    np.testing.assert_array_equal(s, np.where(b["side"] == 1, 1.0, -1.0))


def test_sampled_poses_respect_joint_limits():
    rng = np.random.default_rng(1)
    p = poses.sample_poses(rng, 2000, domains.RENDER.family_weights)
    a = p["angles"]
    assert (a >= poses.LIMITS[..., 0] - 1e-12).all() and (a <= poses.LIMITS[..., 1] + 1e-12).all()
    # DIP follows PIP: strong positive correlation for the four fingers
    r = np.corrcoef(a[:, 1:, 2].ravel(), a[:, 1:, 3].ravel())[0, 1]
    assert r > 0.8
    with pytest.raises(ValueError, match="unknown pose families"):
        poses.sample_poses(rng, 3, {"wave": 1})


def test_sensor_domain_models_depth_and_label_policy(sensor_block, render_block):
    s, r = sensor_block, render_block
    hand = s["mask"] == 1
    holes = (s["depth"] == 0) & hand
    assert holes.sum() > 0.005 * hand.sum()                      # silhouette/grazing holes
    valid = s["depth"][s["depth"] > 0]
    np.testing.assert_allclose(valid, np.round(valid), atol=1e-3)  # 1 mm quantisation
    assert ((r["depth"] == 0) & (r["mask"] == 1)).sum() == 0        # render depth is perfect
    assert (s["side"] == 0).all()                                   # STB-like: left hands only
    assert set(np.unique(s["subject"])) <= set(range(domains.SENSOR.n_subjects))
    # a different camera: the sensor frame is 640x480 with f = 607.9 px
    box = s["crop_box"]
    np.testing.assert_allclose(s["K"][:, 0, 0] * (box[:, 2] - box[:, 0]) / 96, 607.9, rtol=1e-4)


def test_train_split_of_sensor_domain_withholds_3d():
    style = domains.SENSOR
    (_, b), = list(generator.generate(style, 8, seed=0, split="train", size=32))
    assert np.isnan(b["kp3d"]).all() and not b["has_3d"].any() and b["has_2d"].all()
    (_, b), = list(generator.generate(style, 8, seed=0, split="test", size=32))
    assert np.isfinite(b["kp3d"]).all() and b["has_3d"].all()


def test_generation_is_deterministic_per_seed():
    style = domains.SENSOR
    a = dict(generator.generate(style, 20, seed=3, split="x", size=32))[0]
    b = dict(generator.generate(style, 20, seed=3, split="x", size=32))[0]
    c = dict(generator.generate(style, 20, seed=4, split="x", size=32))[0]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["rgb"], c["rgb"])


def test_unknown_style_knob_is_refused():
    with pytest.raises(ValueError, match="unknown style knobs"):
        domains.make_style("render", focal=3)
    with pytest.raises(ValueError, match="unknown domain"):
        domains.make_style("kinect")


# ----------------------------------------------------------------------------- ray caster

def _seg_dist(p, a, b):
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t * ab))


vec = st.tuples(*[st.floats(-40, 40)] * 2, st.floats(200, 400))


@settings(max_examples=150, deadline=None)
@given(a=vec, b=vec, r=st.floats(2, 30), d=st.tuples(st.floats(-0.15, 0.15), st.floats(-0.15, 0.15)))
def test_ray_capsule_hit_is_first_surface_point(a, b, r, d):
    a, b = np.array(a), np.array(b)
    ray = np.array([d[0], d[1], 1.0])
    ray /= np.linalg.norm(ray)
    t, nx, ny, nz = raycast._ray_capsule(*ray, *a, *b, r)
    ts = np.linspace(1.0, 600.0, 3000)
    dists = np.array([_seg_dist(tt * ray, a, b) for tt in ts])
    if t > 0:
        p = t * ray
        assert abs(_seg_dist(p, a, b) - r) < 1e-3 * max(r, 1)            # on the surface
        np.testing.assert_allclose(np.linalg.norm([nx, ny, nz]), 1.0, atol=1e-4)
        before = ts < t - 0.5
        assert (dists[before] >= r - 1e-3).all()                          # nothing earlier
    else:
        assert (dists >= r - 0.05).all()                                   # a true miss


def test_cast_capsules_sphere_silhouette_and_depth():
    """A sphere of radius 20 mm at z=400 mm on the optical axis: area and centre depth."""
    caps = np.zeros((1, 1, 7), np.float32)
    caps[0, 0] = [0, 0, 400, 0, 0, 400, 20]
    H = W = 64
    cam = np.array([[400.0, 400.0, 31.5, 31.5]])
    depth = np.empty((1, H, W), np.float32)
    part = np.empty((1, H, W), np.uint8)
    normal = np.empty((1, H, W, 3), np.float32)
    raycast.cast_capsules(caps, np.array([[7]], np.uint8), np.array([1], np.int32), cam,
                          depth, part, normal)
    hit = part[0] == 7
    r_px = 400 * 20 / np.sqrt(400**2 - 20**2)
    assert abs(hit.sum() - np.pi * r_px**2) < 0.05 * np.pi * r_px**2
    centre = depth[0, 31:33, 31:33].mean()
    assert abs(centre - 380.0) < 0.1
    assert (depth[0][~hit] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(normal[0][hit], axis=-1), 1.0, atol=1e-4)


def test_make_dataset_reuses_identical_recipe_and_redoes_changed(tmp_path):
    from weakhand.data import load_dataset
    from weakhand.synth.dataset import make_dataset

    a = make_dataset(tmp_path / "a", "sensor", 20, seed=2, split="test", size=32,
                     show_progress=False)
    assert not a["reused"]
    again = make_dataset(tmp_path / "a", "sensor", 20, seed=2, split="test", size=32,
                         show_progress=False)
    assert again["reused"]
    b = make_dataset(tmp_path / "b", "sensor", 20, seed=2, split="test", size=32,
                     show_progress=False)
    ma, mb = (load_dataset(tmp_path / p, verify="full").manifest for p in ("a", "b"))
    assert {k: v["sha256"] for k, v in ma["arrays"].items()} == \
           {k: v["sha256"] for k, v in mb["arrays"].items()}          # byte-identical per seed
    changed = make_dataset(tmp_path / "a", "sensor", 20, seed=3, split="test", size=32,
                           show_progress=False)
    assert not changed["reused"]
    assert load_dataset(tmp_path / "a").manifest["source"]["seed"] == 3


def test_labelled_twin_has_identical_images_and_the_withheld_3d(tmp_path):
    from weakhand.data import load_dataset
    from weakhand.synth.dataset import make_dataset, make_labelled_twin

    make_dataset(tmp_path / "weak", "sensor", 12, seed=4, split="train", size=32, show_progress=False)
    make_labelled_twin(tmp_path / "weak", tmp_path / "full", show_progress=False)
    weak, full = load_dataset(tmp_path / "weak"), load_dataset(tmp_path / "full")
    np.testing.assert_array_equal(np.asarray(weak.arrays["rgb"]), np.asarray(full.arrays["rgb"]))
    np.testing.assert_array_equal(np.asarray(weak.arrays["kp2d"]), np.asarray(full.arrays["kp2d"]))
    assert np.isnan(np.asarray(weak.arrays["kp3d"])).all()
    kp3d = np.asarray(full.arrays["kp3d"], np.float64)
    np.testing.assert_allclose(camera.project(np.asarray(full.arrays["K"], np.float64), kp3d),
                               np.asarray(full.arrays["kp2d"]), atol=1e-3)


def test_style_overrides_parse_and_refuse_bad_knobs():
    import pytest
    from weakhand.synth.domains import SENSOR, parse_style_overrides

    s = parse_style_overrides("distance_mm=(450, 800); viewpoint=uniform; n_subjects=2", "sensor")
    assert s.distance_mm == (450.0, 800.0) and s.viewpoint == "uniform" and s.n_subjects == 2
    assert s.name == "sensor" and s.focal_px == SENSOR.focal_px          # the rest is untouched
    assert parse_style_overrides("  ", "render") == parse_style_overrides("", "render")
    assert parse_style_overrides("withhold_3d_splits=('train', 'val')", "sensor").withhold_3d_splits == ("train", "val")
    for bad, msg in (("distanse_mm=(1, 2)", "unknown knob 'distanse_mm'"),
                     ("distance_mm=(800, 450)", "lo <= hi"),
                     ("distance_mm=5", "takes 2 values"),
                     ("viewpoint=sideways", "'uniform' or 'frontal'"),
                     ("n_subjects=abc", "finite number"),
                     ("p_occluder=nan", "finite number"),
                     ("viewpoint", "expected knob=value")):
        with pytest.raises(ValueError, match=msg):
            parse_style_overrides(bad, "sensor")
