"""Label-only sampler of the synthetic source (synth.labels), the generate_block split into
sample_scene + render_scene, and the render_gap style."""
import hashlib

import numpy as np
import pytest
import torch
from scipy import stats

from weakhand import camera
from weakhand.synth import domains, generator, poses
from weakhand.synth.labels import LabelStream, sample_labels

# sha256 over every array of generate_block's dict, computed with the code before it was split
# into sample_scene + render_scene (numpy 2.x, numba renderer; deterministic run to run).
BLOCK_HASHES = {
    "render": "20bca40711b33ade0dfd3820ad1b9d7a3af0be82c939ca896a9610da138efea8",
    "sensor": "0fa854ecdae7136742593dd5683e7bef3b115b9c8539b0d91848e65fde764cb1",
    "full_frame": "8bac2d0bfe3b56a583c2038607fa5360cc95ffcf873eb930701a5ec81c9520d5",
}


def _block_hash(b: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(b):
        a = np.ascontiguousarray(b[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", ["render", "sensor"])
def test_generate_block_output_is_unchanged(name):
    st = domains.make_style(name)
    b = generator.generate_block(st, generator.block_rng(7, st, "train", 1), 8, 32,
                                 generator.subject_pool(st, 7))
    assert _block_hash(b) == BLOCK_HASHES[name]


def test_generate_block_full_frame_with_given_K_is_unchanged():
    st = domains.make_style("render", name="render_ff", image_wh=(48, 40),
                            distance_mm=(700.0, 900.0))
    K = np.array([[40.0, 0, 23.5], [0, 40.0, 19.5], [0, 0, 1]])
    b = generator.generate_block(st, np.random.default_rng(3), 4, 0, K_full=K, full_frame=True)
    assert b["rgb"].shape == (4, 40, 48, 3)
    assert _block_hash(b) == BLOCK_HASHES["full_frame"]


def test_sample_scene_without_geometry_gives_the_same_labels_and_rng_state():
    st = domains.RENDER
    r1, r2 = generator.block_rng(1, st, "x", 0), generator.block_rng(1, st, "x", 0)
    a = generator.sample_scene(st, r1, 40, 48)
    b = generator.sample_scene(st, r2, 40, 48, geometry=False)
    for k in ("kp_cam", "kp2d", "K", "box", "side", "family", "T"):
        np.testing.assert_array_equal(a[k], b[k])
    assert "caps" in a and "caps" not in b
    assert r1.random() == r2.random()


def _collect(style, n, seed, split, size):
    blocks = [b for _, b in generator.generate(style, n, seed, split=split, size=size)]
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


@pytest.mark.parametrize("name,split", [("render", "train"), ("sensor", "train"),
                                        ("sensor", "test")])
def test_sample_labels_equal_generate_labels(name, split):
    st = domains.make_style(name)
    n = 2 * generator.BLOCK + 3
    g = _collect(st, n, 5, split, 32)
    lab = sample_labels(name, n, 5, size=32, split=split)
    assert lab["kp3d"].shape == (n, 21, 3) and lab["kp3d"].dtype == np.float32
    assert lab["kp2d"].shape == (n, 21, 2) and lab["kp2d"].dtype == np.float32
    assert lab["K"].shape == (n, 3, 3) and lab["K"].dtype == np.float32
    assert lab["side"].dtype == np.uint8 and lab["family"].dtype == np.int16
    for k in ("kp2d", "K", "side", "family"):
        np.testing.assert_array_equal(lab[k], g[k], err_msg=k)
    if g["has_3d"].all():
        np.testing.assert_array_equal(lab["kp3d"], g["kp3d"])
    else:  # generate withholds these 3D labels; the sampler still has them, consistent
        assert np.isnan(g["kp3d"]).all() and np.isfinite(lab["kp3d"]).all()
        uv = camera.project(lab["K"].astype(np.float64), lab["kp3d"].astype(np.float64))
        np.testing.assert_allclose(uv, lab["kp2d"], atol=1e-3)


def test_sample_labels_other_block_size_is_deterministic():
    a = sample_labels("render", 300, 2, block=100)
    b = sample_labels("render", 300, 2, block=100)
    c = sample_labels("render", 300, 2)
    np.testing.assert_array_equal(a["kp3d"], b["kp3d"])
    assert not np.array_equal(a["kp3d"][100:], c["kp3d"][100:])


# ------------------------------------------------------------------ distribution checks

def _scalars(lab: dict) -> dict:
    """Per-hand scalars: wrist depth (mm), middle-tip root-relative z / bone 9→10, crop-px
    extent of kp2d, fx (px), and finger extension (mean wrist→tip distance of the four
    fingers / wrist→middle MCP distance, view-invariant)."""
    kp = lab["kp3d"].astype(np.float64)
    bone = np.linalg.norm(kp[:, 10] - kp[:, 9], axis=1)
    ext = lab["kp2d"].max(1) - lab["kp2d"].min(1)
    reach = np.linalg.norm(kp[:, [8, 12, 16, 20]] - kp[:, :1], axis=2).mean(1)
    return {"wrist_z": kp[:, 0, 2], "mid_tip_zn": (kp[:, 12, 2] - kp[:, 0, 2]) / bone,
            "kp2d_extent": ext.max(1), "fx": lab["K"][:, 0, 0].astype(np.float64),
            "extension": reach / np.linalg.norm(kp[:, 9] - kp[:, 0], axis=1)}


def _assert_same_distribution(a: dict, b: dict, p_left: float):
    sa, sb = _scalars(a), _scalars(b)
    for k in sa:
        p = stats.ks_2samp(sa[k], sb[k]).pvalue
        assert p > 1e-3, (k, p)
    left = [int((x["side"] == 0).sum()) for x in (a, b)]
    n = [len(x["side"]) for x in (a, b)]
    if 0 < p_left < 1:
        for lf, m in zip(left, n):
            assert stats.binomtest(lf, m, p_left).pvalue > 1e-3
        table = [[left[0], n[0] - left[0]], [left[1], n[1] - left[1]]]
        assert stats.chi2_contingency(table).pvalue > 1e-3
    else:
        assert left == [round(p_left * m) for m in n]
    fams = np.union1d(a["family"], b["family"])
    counts = [[(x["family"] == f).sum() for f in fams] for x in (a, b)]
    assert stats.chi2_contingency(counts).pvalue > 1e-3


def test_sampled_labels_match_rendered_source_in_distribution():
    """3000 label-only hands vs 3000 rendered hands of another seed (render: fresh subjects)."""
    n, size = 3000, 64
    a = sample_labels("render", n, seed=11, size=size)
    b = _collect(domains.RENDER, n, 12, "train", size)
    _assert_same_distribution(a, b, domains.RENDER.p_left)


def test_sampled_labels_match_rendered_sensor_source_in_distribution():
    """Sensor (4-subject pool per seed): same seed, the sampler's own split vs rendered test."""
    n, size = 1500, 64
    a = sample_labels("sensor", n, seed=3, size=size, split="labels")
    b = _collect(domains.SENSOR, n, 3, "test", size)
    _assert_same_distribution(a, b, domains.SENSOR.p_left)


def test_distribution_check_detects_the_pose_coverage_gap():
    """Power: the finger-extension statistic tells render from render_gap (which differ only
    in poses) at the sizes used above. (The camera-frame middle-tip zn is much weaker under
    uniform viewpoints, p ~ 1e-5 here; crop fx differs too, as fists get tighter crops.)"""
    a = _scalars(sample_labels("render", 3000, seed=21))
    b = _scalars(sample_labels(domains.GAP_STYLE_NAME, 3000, seed=22))
    assert stats.ks_2samp(a["extension"], b["extension"]).pvalue < 1e-6


# ------------------------------------------------------------------ render_gap style

def test_render_gap_style_is_render_without_random_and_counting_poses():
    gap = domains.make_style("render_gap")
    assert gap is domains.DOMAINS[domains.GAP_STYLE_NAME] and gap.name == domains.GAP_STYLE_NAME
    assert [d["knob"] for d in domains.style_diff(domains.RENDER, gap)] == ["family_weights"]
    assert set(gap.family_weights) == {"open", "fist", "point", "pinch", "grasp"}
    fam = sample_labels(gap, 2000, 0)["family"]
    names = {poses.FAMILIES[i] for i in np.unique(fam)}
    assert names == {"open", "fist", "point", "pinch", "grasp"}


# ------------------------------------------------------------------ LabelStream

def test_label_stream_shapes_determinism_and_fresh_batches():
    s = LabelStream("render", seed=4, batch=96, size=64)
    b0, b1 = next(s), next(s)
    assert set(b0) == {"kp2d", "kp3d", "K", "side"}
    shapes = {"kp2d": (96, 21, 2), "kp3d": (96, 21, 3), "K": (96, 3, 3), "side": (96,)}
    for k, shp in shapes.items():
        assert isinstance(b0[k], torch.Tensor) and b0[k].dtype == torch.float32
        assert tuple(b0[k].shape) == shp
    assert set(b0["side"].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(b0["kp3d"], b1["kp3d"])
    uv = camera.project(b0["K"].double(), b0["kp3d"].double())
    assert torch.allclose(uv, b0["kp2d"].double(), atol=1e-3)

    again = LabelStream("render", seed=4, batch=96, size=64)
    for ref in (b0, b1):
        nxt = next(again)
        assert all(torch.equal(ref[k], nxt[k]) for k in ref)
    resumed = LabelStream("render", seed=4, batch=96, size=64, start=s.next_block - 1)
    assert torch.equal(next(resumed)["kp2d"], b1["kp2d"])
    other = next(LabelStream("render", seed=5, batch=96, size=64))
    assert not torch.equal(other["kp3d"], b0["kp3d"])
