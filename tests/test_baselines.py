"""The constant-pose baseline: generalised Procrustes mean and its scores."""
import numpy as np
import pytest

from weakhand import metrics
from weakhand.evaluation import baselines
from weakhand import skeleton as sk
from weakhand.data import HandData  # noqa: F401  (the dataset type fit_constant_pose reads)


def _rot(g):
    q = g.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _shape(seed=0):
    g = np.random.default_rng(seed)
    kp = np.zeros((21, 3))
    for f in range(5):
        for j in range(4):
            kp[1 + 4 * f + j] = [(f - 2) * 15.0, -40.0 - 20.0 * j, 5.0 * j]
    return kp + g.normal(0, 2, kp.shape)


def test_gpa_mean_of_rotated_copies_is_the_shape():
    g = np.random.default_rng(0)
    shape = _shape()
    copies = np.stack([shape @ _rot(g).T for _ in range(30)])
    mean = baselines.gpa_mean(copies)
    aligned = metrics.procrustes_align(mean[None], shape[None], scale=False)[0]
    assert np.abs(aligned - shape).max() < 1e-6
    assert np.allclose(mean[sk.ROOT], 0)


def test_gpa_mean_beats_the_plain_mean_of_unaligned_shapes():
    g = np.random.default_rng(1)
    shapes = np.stack([_shape(i) @ _rot(g).T for i in range(40)])
    gpa = baselines.gpa_mean(shapes)
    plain = shapes.mean(0)
    err = lambda m: metrics.evaluate_3d(np.broadcast_to(m, shapes.shape), shapes,  # noqa: E731
                                        align="procrustes")["epe_mean_mm"]
    assert err(gpa) < 0.3 * err(plain)


class _FakeData:
    def __init__(self, kp3d, kp2d, side, size=64):
        self.arrays = {"kp3d": kp3d, "kp2d": kp2d, "side": side}
        self.image_size = (size, size)
        self.path = "fake"


def test_constant_pose_mirrors_left_hands_and_scores_zero_on_its_own_shape():
    shape = _shape()
    kp_r = np.stack([shape + [0, 0, 400.0]] * 6)
    kp_l = sk.mirror(kp_r)
    kp2d = np.full((6, 21, 2), 32.0)
    const = baselines.fit_constant_pose(_FakeData(np.concatenate([kp_r, kp_l]),
                                                  np.concatenate([kp2d, kp2d]),
                                                  np.array([1] * 6 + [0] * 6, np.uint8)))
    s = sk.scale_length(shape)
    np.testing.assert_allclose(const.zn, (shape[:, 2] - shape[0, 2]) / s, atol=1e-9)
    p = {"kp3d": kp_r, "kp2d": kp2d, "vis": np.ones((6, 21), bool),
         "K": np.tile(np.eye(3), (6, 1, 1)), "has_3d": np.ones(6, bool),
         "uv": np.zeros((6, 21, 2)), "zn": np.zeros((6, 21))}
    sc = baselines.score_constant_pose(const, p, (64, 64), keep_arrays=False)
    assert sc["pa_epe_mm"] < 1e-6 and sc["n_samples"] == 6
    with pytest.raises(ValueError, match="image_hw"):
        baselines.score_constant_pose(const, p)


def test_constant_pose_refuses_a_split_without_3d():
    nan = np.full((3, 21, 3), np.nan)
    with pytest.raises(ValueError, match="no sample with 3D"):
        baselines.fit_constant_pose(_FakeData(nan, np.zeros((3, 21, 2)), np.ones(3, np.uint8)))


def test_labelled_2d_column_isolates_the_depth_half():
    """PA-EPE with labelled 2D: 0 for the true depth whatever the predicted 2D; for the constant
    pose it is the labelled 2D with the source's mean depth profile."""
    from weakhand.evaluation.scores import score
    from weakhand.models import root_relative_depth
    g = np.random.default_rng(3)
    n = 5
    kp3d = np.stack([_shape(i) @ _rot(g).T + [0, 0, 400.0] for i in range(n)])
    K = np.tile(np.array([[300.0, 0, 32], [0, 300.0, 32], [0, 0, 1]]), (n, 1, 1))
    proj = kp3d @ K[0].T
    kp2d = proj[..., :2] / proj[..., 2:]
    zn = root_relative_depth(kp3d)
    p = {"kp3d": kp3d, "kp2d": kp2d, "vis": np.ones((n, 21), bool), "K": K,
         "has_3d": np.ones(n, bool), "uv": kp2d + g.normal(0, 5, kp2d.shape), "zn": zn}
    s = score(p, keep_arrays=False)
    assert s["lab2d_pa_epe_mm"] < 1e-6 < s["pa_epe_mm"]
    flat = score({**p, "zn": np.zeros_like(zn)}, keep_arrays=False)
    assert flat["lab2d_pa_epe_mm"] > 1.0
    const = baselines.ConstantPose(shape=_shape(), zn=zn.mean(0), uv_rel=np.full((21, 2), 0.5), n=n)
    sc = baselines.score_constant_pose(const, p, (64, 64), keep_arrays=False)
    mean_depth = score({**p, "uv": kp2d, "zn": np.broadcast_to(zn.mean(0), zn.shape)}, keep_arrays=False)
    assert sc["lab2d_pa_epe_mm"] == pytest.approx(mean_depth["lab2d_pa_epe_mm"])
