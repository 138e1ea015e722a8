"""Tests for weakhand.metrics: hand-computed values, protocol details and alignment invariants."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weakhand import metrics as M

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
FAST = settings(max_examples=25, deadline=None)
BRUTE = settings(max_examples=8, deadline=None)


# ----------------------------------------------------------------------------- helpers
def random_rotation(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Uniform random rotation(s), det = +1; shape (3, 3) or (n, 3, 3)."""
    a = rng.normal(size=(n or 1, 3, 3))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q if n else q[0]


def random_hands(rng: np.random.Generator, n: int, j: int = 21) -> np.ndarray:
    """Non-planar random 'hands' in mm, spread ~40 mm, somewhere in front of a camera."""
    return rng.normal(scale=40.0, size=(n, j, 3)) + np.array([0.0, 0.0, 500.0])


def poses_with_distances(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gt and pred (N, J, 3) whose keypoint distances are exactly `dist` (offset along a unit axis)."""
    n, j = dist.shape
    gt = np.zeros((n, j, 3))
    pred = gt.copy()
    pred[..., 1] = dist
    return pred, gt


def sse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample sum of squared errors (N,)."""
    return ((a - b) ** 2).sum(axis=(1, 2))


def best_sse_over(q: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Brute force: for each candidate q (K, 3, 3), min_{s >= 0, t} ||s P q^T + t - G||^2.

    pred, gt: (J, 3). For centred P, G and fixed q the optimum is t = 0,
    s = max(<P q^T, G>, 0) / ||P||^2 and the residual ||G||^2 - s^2 ||P||^2. (s >= 0 matters:
    a negative s would smuggle the reflection -q into a search over rotations.)
    """
    p = pred - pred.mean(0)
    g = gt - gt.mean(0)
    inner = np.maximum(np.einsum("ji,kli,jl->k", p, q, g), 0.0)
    return (g**2).sum() - inner**2 / (p**2).sum()


def brute_force_min_sse(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator, reflections: bool) -> float:
    """Random search over rotations (optionally also reflections), then stochastic hill-climbing.

    Independent of the SVD code under test: it only evaluates the objective at candidate
    matrices. Each connected component (det +1 / det -1) is refined from its own best start.
    """
    rots = random_rotation(rng, 1000)
    groups = [rots, rots * np.array([-1.0, 1.0, 1.0])] if reflections else [rots]
    eye = np.eye(3)
    result = np.inf
    for cands in groups:
        vals = best_sse_over(cands, pred, gt)
        best_q, best = cands[vals.argmin()], vals.min()
        for radius in np.geomspace(0.3, 1e-6, 80):
            w = rng.normal(scale=radius, size=(64, 3))
            a = np.zeros((64, 3, 3))
            a[:, 0, 1], a[:, 0, 2], a[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
            a -= a.transpose(0, 2, 1)
            qs = best_q @ np.linalg.solve(eye - a, eye + a)  # Cayley transform: rotation near I
            v = best_sse_over(qs, pred, gt)
            if v.min() < best:
                best_q, best = qs[v.argmin()], v.min()
        result = min(result, best)
    return float(result)


# ----------------------------------------------------------------------------- constants
def test_threshold_grids_are_the_published_ones():
    assert M.THRESHOLDS_0_50.shape == (100,) and M.THRESHOLDS_0_50[[0, -1]].tolist() == [0, 50]
    assert M.THRESHOLDS_20_50.shape == (100,) and M.THRESHOLDS_20_50[[0, -1]].tolist() == [20, 50]
    assert M.HAND3D_THRESHOLDS.shape == (20,)
    # hand3d's "20-50 mm" slice really starts at 8 * 50 / 19 = 21.05 mm and has 12 points
    assert M.HAND3D_20_50.shape == (12,)
    assert M.HAND3D_20_50[0] == pytest.approx(8 * 50 / 19) and M.HAND3D_20_50[0] > 21.0
    assert M.THRESHOLDS_2D_PX.shape == (20,) and M.THRESHOLDS_2D_PX[-1] == 30


# ----------------------------------------------------------------------------- distances
def test_keypoint_distances_values_and_visibility():
    gt = np.zeros((2, 2, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], [[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]]])
    d = M.keypoint_distances(pred, gt)
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d, [[5.0, 2.0], [3.0, 0.0]])
    vis = np.array([[True, False], [True, True]])
    gt_nan = gt.copy()
    gt_nan[0, 1] = np.nan  # invisible keypoints may carry NaN
    dv = M.keypoint_distances(pred, gt_nan, vis)
    assert np.isnan(dv[0, 1])
    np.testing.assert_array_equal(dv[[0, 1, 1], [0, 0, 1]], [5.0, 3.0, 0.0])
    # 2D works the same (pixels)
    np.testing.assert_array_equal(M.keypoint_distances(pred[..., :2], gt[..., :2]), [[5.0, 0.0], [np.sqrt(5), 0.0]])


def test_keypoint_distances_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 21, 3\).*\(2, 20, 3\)"):
        M.keypoint_distances(np.zeros((2, 21, 3)), np.zeros((2, 20, 3)))
    with pytest.raises(ValueError, match="vis"):
        M.keypoint_distances(np.zeros((2, 21, 3)), np.zeros((2, 21, 3)), np.ones((2, 20), bool))
    pred = np.zeros((2, 21, 3))
    pred[1, 4, 2] = np.nan  # a NaN prediction on a visible keypoint must not be silently dropped
    with pytest.raises(ValueError, match="sample 1, keypoint 4"):
        M.keypoint_distances(pred, np.zeros((2, 21, 3)))
    with pytest.raises(ValueError):
        M.procrustes_align(pred, np.zeros((2, 21, 3)))


# ----------------------------------------------------------------------------- PCK / AUC
DIST_2x2 = np.array([[1.0, 2.0], [3.0, 4.0]])  # rows = samples, cols = keypoints


def test_pck_by_hand_counts_boundary():
    t = [0.0, 1.0, 2.0, 3.0, 4.0]
    pck = M.pck_curve(DIST_2x2, t)
    # keypoint 0 has {1, 3}, keypoint 1 has {2, 4}; d == t counts (<=)
    np.testing.assert_array_equal(pck, [[0, 0.5, 0.5, 1, 1], [0, 0, 0.5, 0.5, 1]])
    np.testing.assert_array_equal(M.mean_pck_curve(DIST_2x2, t), [0, 0.25, 0.5, 0.75, 1])


@FAST
@given(seed=SEEDS)
def test_pck_and_medians_match_naive_definitions(seed):
    rng = np.random.default_rng(seed)
    n, j = int(rng.integers(1, 30)), int(rng.integers(1, 6))
    dist = rng.integers(0, 12, size=(n, j)).astype(float)  # integer ties with the grid below
    dist[rng.random((n, j)) < 0.3] = np.nan
    t = np.arange(0.0, 12.0, 1.0)
    pck = M.pck_curve(dist, t)
    med = M.epe_median_per_keypoint(dist)
    for k in range(j):
        col = dist[:, k][~np.isnan(dist[:, k])]
        if col.size == 0:
            assert np.isnan(pck[k]).all() and np.isnan(med[k])
            continue
        np.testing.assert_array_equal(pck[k], [(col <= ti).mean() for ti in t])
        assert med[k] == np.median(col)


def test_auc_by_hand_trapezoid_normalised():
    t = [0.0, 1.0, 2.0, 3.0, 4.0]
    # kp0 curve (0, .5, .5, 1, 1): trapezoids .25 + .5 + .75 + 1 = 2.5 -> / 4 = 0.625
    # kp1 curve (0, 0, .5, .5, 1): 0 + .25 + .5 + .75 = 1.5 -> / 4 = 0.375
    np.testing.assert_allclose(M.auc_per_keypoint(DIST_2x2, t), [0.625, 0.375])
    assert M.auc(DIST_2x2, t) == pytest.approx(0.5)
    # a range not starting at 0 is normalised by its own span (here 2):
    # kp0 (.5, 1, 1) -> (.75 + 1) / 2 = .875 ; kp1 (.5, .5, 1) -> (.5 + .75) / 2 = .625
    np.testing.assert_allclose(M.auc_per_keypoint(DIST_2x2, [2.0, 3.0, 4.0]), [0.875, 0.625])
    assert M.auc(DIST_2x2, [2.0, 3.0, 4.0]) == pytest.approx(0.75)


def test_auc_20_50_saturates():
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 19.99, size=(50, 21))
    large = rng.uniform(50.01, 90, size=(50, 21))
    for grid in (M.THRESHOLDS_20_50, M.HAND3D_20_50):
        assert M.auc(small, grid) == 1.0
        assert M.auc(large, grid) == 0.0
    assert M.auc(large, M.THRESHOLDS_0_50) == 0.0


def test_explicit_20_50_grid_differs_from_hand3d_slice():
    # every distance is 20.5 mm: the explicit grid (20, 20.30, 20.61, ...) misses the first two
    # points, the hand3d slice starts at 21.05 mm and sees PCK = 1 throughout
    dist = np.full((4, 21), 20.5)
    step = 30.0 / 99
    assert M.auc(dist, M.THRESHOLDS_20_50) == pytest.approx(1 - 1.5 * step / 30)
    assert M.auc(dist, M.HAND3D_20_50) == 1.0
    res = M.evaluate_3d(*poses_with_distances(dist))
    assert res["auc_20_50"] < res["auc_hand3d_21_50"] == 1.0


def test_keypoint_without_valid_samples_is_excluded():
    dist = np.array([[1.0, np.nan], [3.0, np.nan]])
    t = [0.0, 1.0, 2.0, 3.0, 4.0]
    pck = M.pck_curve(dist, t)
    assert np.isnan(pck[1]).all()
    assert M.auc(dist, t) == pytest.approx(0.625)  # keypoint 0 only, not (0.625 + 0) / 2
    assert M.epe_mean(dist) == 2.0
    assert M.epe_median_hand3d(dist) == 2.0
    res = M.evaluate_3d(*poses_with_distances(np.nan_to_num(dist)), vis=~np.isnan(dist))
    assert res["n_keypoints_scored"] == 1 and res["n_valid_keypoints"] == 2
    assert np.isnan(res["per_keypoint_epe_mm"][1]) and np.isfinite(res["auc_0_50"])


# ----------------------------------------------------------------------------- EPE variants
def test_epe_mean_vs_hand3d_median_vs_plain_median():
    dist = np.array([[1.0, 10.0], [2.0, 11.0], [9.0, 12.0]])
    np.testing.assert_allclose(M.epe_per_keypoint(dist), [4.0, 11.0])
    assert M.epe_mean(dist) == 7.5
    np.testing.assert_allclose(M.epe_median_per_keypoint(dist), [2.0, 11.0])
    assert M.epe_median_hand3d(dist) == 6.5  # mean of per-keypoint medians (2 + 11) / 2
    assert M.epe_median(dist) == 9.5  # median of {1, 2, 9, 10, 11, 12}
    # even count per keypoint: median averages the two middle values
    assert M.epe_median_hand3d(dist[:2]) == pytest.approx((1.5 + 10.5) / 2)


def test_visibility_masking_changes_results_as_expected():
    dist = np.array([[1.0, 10.0], [2.0, 11.0], [9.0, 12.0]])
    pred, gt = poses_with_distances(dist)
    vis = np.array([[True, True], [False, True], [False, True]])
    res = M.evaluate_3d(pred, gt, vis=vis)
    # keypoint-averaged (hand3d): (1 + 11) / 2 = 6, not the pooled (1 + 10 + 11 + 12) / 4 = 8.5
    assert res["epe_mean_mm"] == 6.0
    assert res["epe_median_hand3d_mm"] == 6.0
    assert res["epe_median_mm"] == 10.5
    assert res["n_valid_keypoints"] == 4
    full = M.evaluate_3d(pred, gt)
    assert full["epe_mean_mm"] == 7.5 and full["n_valid_keypoints"] == 6


def test_perfect_prediction():
    rng = np.random.default_rng(1)
    gt = random_hands(rng, 8)
    res = M.evaluate_3d(gt.copy(), gt)
    assert res["epe_mean_mm"] == 0.0 and res["epe_median_mm"] == 0.0
    for key in ("auc_0_50", "auc_20_50", "auc_hand3d_21_50"):
        assert res[key] == 1.0, key  # PCK(t = 0) = 1 needs d <= t
    np.testing.assert_array_equal(res["pck_curve"], 1.0)
    for align in M.ALIGN_MODES[1:]:
        # after an alignment the distances are ~1e-13 mm of rounding, which the exact hand3d
        # "d <= t" rule does not count at t = 0: at most half a grid step of AUC is lost
        res = M.evaluate_3d(gt.copy(), gt, align=align)
        assert res["epe_mean_mm"] == pytest.approx(0.0, abs=1e-4)
        np.testing.assert_array_equal(res["pck_curve"][1:], 1.0)
        assert res["auc_0_50"] >= 1 - 0.5 * (50 / 99) / 50
        assert res["auc_20_50"] == 1.0 and res["auc_hand3d_21_50"] == 1.0
    r2 = M.evaluate_2d(gt[..., :2], gt[..., :2])
    assert r2["epe_mean_px"] == 0.0 and r2["auc_0_30px"] == 1.0


# ----------------------------------------------------------------------------- Procrustes
@FAST
@given(seed=SEEDS)
def test_procrustes_invariant_to_similarity_of_prediction(seed):
    rng = np.random.default_rng(seed)
    gt = random_hands(rng, 4)
    pred = gt + rng.normal(scale=8.0, size=gt.shape)
    s = rng.uniform(0.2, 5.0, size=(4, 1, 1))
    r = random_rotation(rng, 4)
    t = rng.uniform(-500, 500, size=(4, 1, 3))
    moved = s * pred @ r.transpose(0, 2, 1) + t
    a = M.keypoint_distances(M.procrustes_align(pred, gt), gt)
    b = M.keypoint_distances(M.procrustes_align(moved, gt), gt)
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7)
    # rigid variant: invariant to rotation + translation only
    a = M.keypoint_distances(M.procrustes_align(pred, gt, scale=False), gt)
    b = M.keypoint_distances(M.procrustes_align(pred @ r.transpose(0, 2, 1) + t, gt, scale=False), gt)
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7)


@FAST
@given(seed=SEEDS)
def test_alignment_never_increases_squared_error(seed):
    rng = np.random.default_rng(seed)
    gt = random_hands(rng, 6)
    pred = 1.3 * gt @ random_rotation(rng).T + rng.normal(scale=20.0, size=gt.shape) + 30.0
    centred = pred - pred.mean(1, keepdims=True) + gt.mean(1, keepdims=True)
    e_none = sse(pred, gt)
    e_trans = sse(centred, gt)
    e_rigid = sse(M.procrustes_align(pred, gt, scale=False), gt)
    e_sim = sse(M.procrustes_align(pred, gt), gt)
    e_fh = sse(M.procrustes_align_freihand(pred, gt), gt)
    tol = 1e-9 * e_none
    assert np.all(e_sim <= e_rigid + tol) and np.all(e_rigid <= e_trans + tol)
    assert np.all(e_trans <= e_none + tol)
    assert np.all(e_fh <= e_sim + tol)  # larger feasible set (reflections allowed)
    res_none = M.evaluate_3d(pred, gt)
    res_pa = M.evaluate_3d(pred, gt, align="procrustes")
    assert res_pa["epe_mean_mm"] < res_none["epe_mean_mm"]


@BRUTE
@given(seed=SEEDS)
def test_procrustes_rotation_is_proper_and_beats_brute_force(seed):
    rng = np.random.default_rng(seed)
    gt = random_hands(rng, 3, j=6)
    pred = gt + rng.normal(scale=15.0, size=gt.shape)
    pred[1] *= np.array([-1.0, 1.0, 1.0])  # best orthogonal fit for sample 1 is a reflection
    s, r, t = M.procrustes_transform(pred, gt)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-9)
    aligned = M.procrustes_align(pred, gt)
    np.testing.assert_allclose(aligned, s[:, None, None] * pred @ r.transpose(0, 2, 1) + t[:, None], atol=1e-9)
    ours = sse(aligned, gt)
    for i in range(3):
        brute = brute_force_min_sse(pred[i], gt[i], rng, reflections=False)
        assert ours[i] <= brute + 1e-9 * brute
        assert brute <= ours[i] * (1 + 1e-6)  # the search converges, so the bound has teeth


def test_mirror_is_not_undone_by_proper_procrustes_but_is_by_freihand():
    rng = np.random.default_rng(3)
    gt = random_hands(rng, 5)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    _, r, _ = M.procrustes_transform(mirrored, gt)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)
    err_proper = M.evaluate_3d(mirrored, gt, align="procrustes")["epe_mean_mm"]
    err_fh = M.evaluate_3d(mirrored, gt, align="procrustes_freihand")["epe_mean_mm"]
    assert err_proper > 5.0
    assert err_fh < 1e-4  # ~0 up to FreiHAND's eps shrinkage


@FAST
@given(seed=SEEDS, reflect=st.booleans())
def test_freihand_recovers_any_similarity_including_reflections(seed, reflect):
    rng = np.random.default_rng(seed)
    gt = random_hands(rng, 3)
    q = random_rotation(rng, 3)
    if reflect:
        q[:, :, 0] *= -1
    pred = rng.uniform(0.1, 3.0, size=(3, 1, 1)) * gt @ q.transpose(0, 2, 1) + rng.normal(scale=300, size=(3, 1, 3))
    np.testing.assert_allclose(M.procrustes_align_freihand(pred, gt, eps=0.0), gt, atol=1e-8)
    # with FreiHAND's eps the result only shrinks by a relative 2 eps / ||P||_F
    np.testing.assert_allclose(M.procrustes_align_freihand(pred, gt), gt, rtol=1e-5, atol=1e-4)


def test_freihand_default_eps_is_freihands_1e8_metres():
    rng = np.random.default_rng(11)
    gt = random_hands(rng, 3)
    pred = gt + rng.normal(scale=10.0, size=gt.shape)
    mm = M.procrustes_align_freihand(pred, gt)
    metres = M.procrustes_align_freihand(pred / 1000, gt / 1000, eps=1e-8)
    np.testing.assert_allclose(mm, 1000 * metres, rtol=1e-12)
    assert np.abs(mm - M.procrustes_align_freihand(pred, gt, eps=1e-2)).max() > 1e-6  # eps matters


@BRUTE
@given(seed=SEEDS)
def test_freihand_minimises_objective_over_all_orthogonal(seed):
    rng = np.random.default_rng(seed)
    gt = random_hands(rng, 2, j=5)
    pred = gt + rng.normal(scale=25.0, size=gt.shape)
    ours = sse(M.procrustes_align_freihand(pred, gt, eps=0.0), gt)
    for i in range(2):
        brute = brute_force_min_sse(pred[i], gt[i], rng, reflections=True)
        assert ours[i] <= brute + 1e-9 * brute
        assert brute <= ours[i] * (1 + 1e-6)


@FAST
@given(seed=SEEDS)
def test_freihand_equals_proper_procrustes_without_reflection(seed):
    rng = np.random.default_rng(seed)
    gt = random_hands(rng, 4)
    pred = 0.8 * gt @ random_rotation(rng).T + rng.normal(scale=5.0, size=gt.shape)
    np.testing.assert_allclose(M.procrustes_align_freihand(pred, gt), M.procrustes_align(pred, gt), atol=1e-4)


def test_degenerate_inputs_do_not_give_nan():
    rng = np.random.default_rng(4)
    gt = random_hands(rng, 3)
    pred = np.zeros_like(gt)  # FreiHAND zero-predictor sanity case
    pred[1] = 7.0  # all points equal but not at the origin
    for fn in (M.procrustes_align, lambda p, g: M.procrustes_align(p, g, scale=False), M.procrustes_align_freihand):
        out = fn(pred, gt)
        assert np.isfinite(out).all()
        # translation-only fallback: every keypoint lands on the GT centroid
        np.testing.assert_allclose(out, np.broadcast_to(gt.mean(1, keepdims=True), gt.shape), atol=1e-9)
    s, r, _ = M.procrustes_transform(pred, gt)
    np.testing.assert_array_equal(s, 1.0)
    np.testing.assert_array_equal(r, np.broadcast_to(np.eye(3), r.shape))
    flat_gt = np.ones_like(gt)  # degenerate GT: the optimum collapses onto its single point
    assert np.isfinite(M.procrustes_align(gt, flat_gt)).all()
    assert np.isfinite(M.procrustes_align_freihand(gt, flat_gt)).all()
    res = M.evaluate_3d(pred, gt, align="procrustes")
    assert np.isfinite(res["epe_mean_mm"])


def test_procrustes_uses_only_visible_keypoints():
    rng = np.random.default_rng(5)
    gt = random_hands(rng, 2)
    pred = 2.0 * gt @ random_rotation(rng).T + 10.0
    vis = np.ones(gt.shape[:2], bool)
    vis[:, 3] = False
    junk = pred.copy()
    junk[:, 3] = np.nan  # an invisible keypoint may be garbage
    for align in ("procrustes", "procrustes_freihand"):
        res = M.evaluate_3d(junk, gt, vis=vis, align=align)
        assert res["epe_mean_mm"] < 1e-4, align
    outlier = pred.copy()
    outlier[:, 3] += 1000.0
    np.testing.assert_allclose(
        np.delete(M.procrustes_align(outlier, gt, vis=vis), 3, axis=1), np.delete(gt, 3, axis=1), atol=1e-6
    )
    assert M.evaluate_3d(outlier, gt, align="procrustes")["epe_mean_mm"] > 10.0


# ----------------------------------------------------------------------------- root / scale
def test_root_scale_align_makes_root_and_bone_exact():
    rng = np.random.default_rng(6)
    gt = random_hands(rng, 5)
    pred = rng.normal(scale=0.02, size=gt.shape)  # scale-normalised-ish units, arbitrary frame
    out = M.root_scale_align(pred, gt)
    np.testing.assert_allclose(out[:, 0], gt[:, 0], atol=1e-9)
    np.testing.assert_allclose(
        np.linalg.norm(out[:, 9] - out[:, 10], axis=-1), np.linalg.norm(gt[:, 9] - gt[:, 10], axis=-1)
    )
    # pure scaling about the root: directions from the root are unchanged, no rotation
    rel_in, rel_out = pred - pred[:, :1], out - out[:, :1]
    k = np.linalg.norm(rel_out[:, 9] - rel_out[:, 10], axis=-1) / np.linalg.norm(rel_in[:, 9] - rel_in[:, 10], axis=-1)
    np.testing.assert_allclose(rel_out, k[:, None, None] * rel_in, atol=1e-9)
    # other root / bone choices
    out2 = M.root_scale_align(pred, gt, root=9, scale_bone=(0, 9))
    np.testing.assert_allclose(out2[:, 9], gt[:, 9], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(out2[:, 0] - out2[:, 9], axis=-1), np.linalg.norm(gt[:, 0] - gt[:, 9], axis=-1))
    # a prediction that is a scaled + shifted copy of the GT is recovered exactly
    res = M.evaluate_3d(0.01 * gt + 3.0, gt, align="root_scale")
    assert res["epe_mean_mm"] < 1e-9
    zero_bone = pred.copy()
    zero_bone[:, 10] = zero_bone[:, 9]
    assert np.isfinite(M.root_scale_align(zero_bone, gt)).all()


def test_align_root_is_translation_only():
    rng = np.random.default_rng(7)
    gt = random_hands(rng, 3)
    pred = gt + np.array([5.0, -3.0, 100.0])
    assert M.evaluate_3d(pred, gt, align="root")["epe_mean_mm"] < 1e-9
    assert M.evaluate_3d(pred, gt)["epe_mean_mm"] == pytest.approx(np.sqrt(25 + 9 + 1e4))
    scaled = gt.copy()
    scaled[:, 1:] = gt[:, :1] + 2.0 * (gt[:, 1:] - gt[:, :1])  # no rescaling in "root" mode
    assert M.evaluate_3d(scaled, gt, align="root")["epe_mean_mm"] > 10.0
    with pytest.raises(ValueError, match="align"):
        M.evaluate_3d(pred, gt, align="umeyama")


# ----------------------------------------------------------------------------- reports
def test_evaluate_3d_report_types_and_json():
    rng = np.random.default_rng(8)
    gt = random_hands(rng, 10)
    pred = gt + rng.normal(scale=10.0, size=gt.shape)
    res = M.evaluate_3d(pred, gt, align="procrustes")
    arrays = {"pck_thresholds_mm", "pck_curve", "pck_thresholds_20_50_mm", "pck_curve_20_50",
              "per_keypoint_epe_mm", "per_keypoint_auc_0_50"}
    for k, v in res.items():
        if k in arrays:
            assert isinstance(v, np.ndarray), k
        else:
            assert type(v) in (float, int, str), (k, type(v))
    assert res["align"] == "procrustes" and res["n_samples"] == 10 and res["n_valid_keypoints"] == 210
    assert res["pck_curve"].shape == (100,) and res["per_keypoint_epe_mm"].shape == (21,)
    np.testing.assert_allclose(res["epe_mean_mm"], res["per_keypoint_epe_mm"].mean())
    # the keypoint-averaged curve's AUC equals the mean per-keypoint AUC (hand3d eval_full.py)
    t = res["pck_thresholds_mm"]
    c = res["pck_curve"]
    assert res["auc_0_50"] == pytest.approx(((c[1:] + c[:-1]) / 2 * np.diff(t)).sum() / 50)
    json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in res.items()})


def test_evaluate_2d_and_depth_error_by_hand():
    gt = np.zeros((2, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 1.0]], [[0.0, 30.0], [0.0, 40.0]]])  # d = [[5, 1], [30, 40]]
    vis = np.array([[True, True], [True, False]])
    r = M.evaluate_2d(pred, gt, vis)
    assert r["epe_mean_px"] == pytest.approx(((5 + 30) / 2 + 1) / 2)
    assert r["epe_median_hand3d_px"] == pytest.approx(((5 + 30) / 2 + 1) / 2)
    assert r["epe_median_px"] == 5.0
    per_kp = M.auc_per_keypoint(np.array([[5.0, 1.0], [30.0, np.nan]]), M.THRESHOLDS_2D_PX)
    assert r["auc_0_30px"] == pytest.approx(per_kp.mean())
    assert per_kp[1] == pytest.approx(1 - 0.5 * (30 / 19) / 30)  # d = 1 missed only at t = 0
    pz = np.array([[1.0, -2.0, 0.0], [4.0, 0.0, 100.0]])
    dz = M.depth_error(pz, np.zeros((2, 3)), np.array([[1, 1, 1], [1, 1, 0]]))
    assert dz["mean_abs_z_mm"] == pytest.approx((2.5 + 1.0 + 0.0) / 3)
    assert dz["median_abs_z_mm"] == 1.0  # plain median of {1, 2, 0, 4, 0}
    assert dz["median_abs_z_hand3d_mm"] == pytest.approx((2.5 + 1.0 + 0.0) / 3)
    np.testing.assert_allclose(dz["per_keypoint_abs_z_mm"], [2.5, 1.0, 0.0])


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    gt = random_hands(rng, 4)
    pred = gt + rng.normal(scale=5.0, size=gt.shape)
    vis = rng.random(gt.shape[:2]) > 0.2
    a = M.evaluate_3d(pred, gt, vis, align="procrustes")
    b = M.evaluate_3d(torch.tensor(pred, dtype=torch.float64), torch.tensor(gt), torch.tensor(vis), align="procrustes")
    assert a["epe_mean_mm"] == pytest.approx(b["epe_mean_mm"])
    assert M.keypoint_distances(torch.tensor(pred, dtype=torch.float32, requires_grad=True), gt).dtype == np.float64
