"""Tests for weakhand.models (Cai et al. ECCV'18 networks) and models.hand_geometry."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from weakhand import camera
from weakhand.models import (DepthRegressionNet, DepthRegularizer, Pose2DNet, count_parameters,
                             denormalize_joint_depth, gaussian_heatmaps, normalize_depth_map,
                             normalize_joint_depth, reconstruct_3d, regularizer_input,
                             root_relative_depth, soft_argmax)
from weakhand.skeleton import scale_length

FAST = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def grid(h, w, dtype=torch.float64):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return xs, ys


# ------------------------------------------------------------------ Pose2DNet shapes


@pytest.mark.parametrize("width,depth,n_stages,hw,kernel,dil", [
    (8, 2, 1, (64, 64), 7, (1, 1, 1)),
    (8, 2, 3, (64, 96), 7, (1, 1, 1)),
    (16, 1, 2, (32, 48), 7, (1,)),
    (8, 3, 2, (64, 64), 3, (1, 2, 4)),
])
def test_pose2d_shapes(width, depth, n_stages, hw, kernel, dil):
    torch.manual_seed(0)
    m = Pose2DNet(width=width, depth=depth, n_stages=n_stages, stage_kernel=kernel, stage_dilations=dil).eval()
    H, W = hw
    s = 2**depth
    assert m.stride == s and m.feature_channels == width * s
    out = m(torch.randn(2, 3, H, W))
    assert len(out["heatmaps"]) == n_stages
    for hm in out["heatmaps"]:
        assert hm.shape == (2, 21, H // s, W // s)
    assert out["features"].shape == (2, width * s, H // s, W // s)
    uv = out["uv"]
    assert uv.shape == (2, 21, 2) and torch.isfinite(uv).all()
    # a convex combination of cell centres lies between the first and last centre
    assert (uv[..., 0] >= 0.5 * s - 0.5 - 1e-4).all() and (uv[..., 0] <= W - 0.5 * s - 0.5 + 1e-4).all()
    assert (uv[..., 1] >= 0.5 * s - 0.5 - 1e-4).all() and (uv[..., 1] <= H - 0.5 * s - 0.5 + 1e-4).all()
    # uv is the last stage's readout in input pixels
    ref = soft_argmax(out["heatmaps"][-1], beta=m.beta, stride=s)
    torch.testing.assert_close(uv, ref)


def test_pose2d_rejects_size_not_multiple_of_stride():
    with pytest.raises(ValueError):
        Pose2DNet(width=8)(torch.randn(1, 3, 62, 64))


def test_pose2d_float64_follows_input():
    m = Pose2DNet(width=8, n_stages=2).double().eval()
    out = m(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    assert out["uv"].dtype == torch.float64 and out["heatmaps"][-1].dtype == torch.float64


# ------------------------------------------------------------------ regression / regulariser shapes


@pytest.mark.parametrize("c,hw", [(32, (16, 16)), (64, (8, 12)), (16, (4, 4))])
def test_depth_regression_shapes_and_zero_root(c, hw):
    r = DepthRegressionNet(c, width=16, hidden=32).eval()
    z = r(torch.randn(3, c, *hw), torch.randn(3, 21, *hw))
    assert z.shape == (3, 21) and torch.isfinite(z).all()
    assert (z[:, 0] == 0).all() and (z[:, 1:] != 0).any()


def test_depth_regression_rejects_mismatched_maps():
    with pytest.raises(ValueError):
        DepthRegressionNet(16)(torch.randn(1, 16, 8, 8), torch.randn(1, 21, 16, 16))


@pytest.mark.parametrize("size", [8, 16, 32, 64, 128])
def test_depth_regularizer_shapes(size):
    torch.manual_seed(0)
    g = DepthRegularizer(out_size=size, widths=(32, 16, 16, 8, 8)).eval()
    assert sum(isinstance(l, nn.ConvTranspose2d) for l in g.modules()) == 6
    d = g(torch.rand(2, 21, 3))
    assert d.shape == (2, 1, size, size) and (d >= 0).all() and torch.isfinite(d).all()


def test_depth_regularizer_rejects_bad_config():
    with pytest.raises(ValueError):
        DepthRegularizer(out_size=100)
    with pytest.raises(ValueError):
        DepthRegularizer(widths=(8, 8, 8))
    with pytest.raises(ValueError):
        DepthRegularizer()(torch.rand(2, 21, 2))


def test_regularizer_input_normalises_to_unit_square():
    uv = torch.tensor([[[-0.5, -0.5], [127.5, 63.5], [63.5, 31.5]]])
    x = regularizer_input(uv, torch.tensor([[0.1, 0.2, 0.3]]), (64, 128))
    torch.testing.assert_close(x, torch.tensor([[[0.0, 0.0, 0.1], [1.0, 1.0, 0.2], [0.5, 0.5, 0.3]]]))
    np.testing.assert_allclose(regularizer_input(uv.numpy(), np.array([[0.1, 0.2, 0.3]]), (64, 128)), x.numpy())


def test_count_parameters():
    lin = nn.Linear(3, 4)
    assert count_parameters(lin) == 16
    lin.bias.requires_grad_(False)
    assert count_parameters(lin) == 12 and count_parameters(lin, trainable_only=False) == 16


# ------------------------------------------------------------------ gradients


def _check_grads(model: nn.Module):
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
    for mname, mod in model.named_modules():
        own = list(mod.parameters(recurse=False))
        if own:
            assert any((p.grad != 0).any() for p in own), f"all-zero gradients in module {mname}"


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    pose = Pose2DNet(width=8, n_stages=3, learn_beta=True).train()
    reg = DepthRegressionNet(pose.feature_channels, width=16, hidden=32).train()
    dreg = DepthRegularizer(out_size=64, widths=(32, 16, 16, 8, 8)).train()
    img = torch.randn(2, 3, 64, 64)
    out = pose(img)
    target = gaussian_heatmaps(torch.rand(2, 21, 2) * 63, (16, 16), stride=4)
    loss = sum(((h - target) ** 2).mean() for h in out["heatmaps"])
    zn = reg(out["features"], out["heatmaps"][-1])
    loss = loss + zn.square().mean()
    x = regularizer_input(out["uv"], torch.sigmoid(zn), (64, 64))
    loss = loss + dreg(x).mean()
    loss.backward()
    assert "log_beta" in dict(pose.named_parameters())
    for m in (pose, reg, dreg):
        _check_grads(m)


def test_refinement_stages_consume_previous_heatmaps():
    torch.manual_seed(0)
    pose = Pose2DNet(width=8, n_stages=3).train()
    assert pose.stages[1][0][0].in_channels == pose.feature_channels + 21
    pose(torch.randn(2, 3, 64, 64))["uv"].sum().backward()  # the final readout only
    for i, stage in enumerate(pose.stages):
        assert all(p.grad is not None and (p.grad != 0).any() for p in stage.parameters()), f"stage {i}"


def test_depth_regression_has_relu_between_fcs():
    kinds = [type(l) for l in DepthRegressionNet(16).fcs]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]


# ------------------------------------------------------------------ soft-argmax / heatmaps


def _centres(rng, n, h, w, margin):
    return np.stack([rng.uniform(margin, w - 1 - margin, n), rng.uniform(margin, h - 1 - margin, n)], -1)


def test_soft_argmax_softmax_recovers_subpixel_peak():
    rng = np.random.default_rng(0)
    h, w = 32, 40
    c = torch.from_numpy(_centres(rng, 21, h, w, 7)).reshape(1, 21, 2)
    xs, ys = grid(h, w)
    d2 = (xs - c[..., 0, None, None]) ** 2 + (ys - c[..., 1, None, None]) ** 2
    # unit-peak Gaussian target, sigma = 2 cells, default beta
    est = soft_argmax(torch.exp(-d2 / 8.0))
    assert (est - c).abs().max() < 0.1
    # log-Gaussian logits at beta = 1 are an exact (sampled) Gaussian distribution
    est = soft_argmax(-d2 / 2.0, beta=1.0)
    assert (est - c).abs().max() < 1e-3
    # beta = 1 on a unit-peak map is badly biased towards the centre: beta is really used
    assert (soft_argmax(torch.exp(-d2 / 8.0), beta=1.0) - c).abs().max() > 1.0


def test_soft_argmax_relu_recovers_subpixel_peak():
    rng = np.random.default_rng(1)
    h, w = 24, 32
    c = torch.from_numpy(_centres(rng, 21, h, w, 5)).reshape(1, 21, 2)
    xs, ys = grid(h, w)
    g = torch.exp(-((xs - c[..., 0, None, None]) ** 2 + (ys - c[..., 1, None, None]) ** 2) / 2.0)
    est = soft_argmax(g - 0.05 * g.max(), mode="relu")  # negative background is clipped by the ReLU
    assert (est - c).abs().max() < 0.1


def test_soft_argmax_stride_maps_cell_centres_to_input_pixels():
    hm = torch.zeros(1, 2, 8, 10)
    hm[0, 0, 3, 7] = 1.0  # row 3, column 7
    hm[0, 1, 0, 0] = 1.0
    uv = soft_argmax(hm, mode="relu", stride=4)
    torch.testing.assert_close(uv, torch.tensor([[[7.5 * 4 - 0.5, 3.5 * 4 - 0.5], [1.5, 1.5]]]), atol=1e-5, rtol=0)


def test_soft_argmax_relu_all_zero_map_is_centre_and_differentiable():
    hm = torch.full((1, 1, 6, 8), -1.0, requires_grad=True)
    uv = soft_argmax(hm, mode="relu")
    torch.testing.assert_close(uv, torch.tensor([[[3.5, 2.5]]]))
    uv.sum().backward()
    assert torch.isfinite(hm.grad).all()


def test_soft_argmax_rejects_unknown_mode():
    with pytest.raises(ValueError):
        soft_argmax(torch.zeros(1, 1, 4, 4), mode="argmax")


@pytest.mark.parametrize("mode,sigma", [("relu", 1.0), ("softmax", 2.0)])
def test_heatmap_round_trip_in_input_pixels(mode, sigma):
    rng = np.random.default_rng(2)
    H, W, s = 96, 128, 4
    uv = torch.from_numpy(_centres(rng, 2 * 21, H, W, 4 * s * sigma)).reshape(2, 21, 2)
    hm = gaussian_heatmaps(uv, (H // s, W // s), stride=s, sigma=sigma)
    assert hm.shape == (2, 21, H // s, W // s)
    est = soft_argmax(hm, mode=mode, stride=s)
    assert (est - uv).abs().max() < 0.25


def test_gaussian_heatmaps_values_nan_and_backends():
    s = 4
    uv = torch.tensor([[[(5 + 0.5) * s - 0.5, (2 + 0.5) * s - 0.5], [float("nan"), 3.0], [10.0, 11.0]]])
    hm = gaussian_heatmaps(uv, (8, 12), stride=s, sigma=1.5)
    assert hm.shape == (1, 3, 8, 12)
    assert hm[0, 0, 2, 5] == 1.0 and hm[0, 0].max() == 1.0
    torch.testing.assert_close(hm[0, 0, 2, 6], torch.exp(torch.tensor(-1 / (2 * 1.5**2))))
    assert (hm[0, 1] == 0).all() and (hm[0, 2] > 0).any()
    np.testing.assert_allclose(gaussian_heatmaps(uv.numpy(), (8, 12), stride=s, sigma=1.5), hm.numpy(), rtol=1e-6)
    assert gaussian_heatmaps(uv.double(), (8, 12)).dtype == torch.float64


def test_heatmap_functions_follow_device_and_dtype():
    meta = torch.zeros(2, 21, 2, device="meta", dtype=torch.float64)
    hm = gaussian_heatmaps(meta, (16, 16))
    assert hm.device.type == "meta" and hm.dtype == torch.float64
    for mode in ("softmax", "relu"):
        uv = soft_argmax(hm, mode=mode, stride=4)
        assert uv.device.type == "meta" and uv.dtype == torch.float64 and uv.shape == (2, 21, 2)


# ------------------------------------------------------------------ depth normalisation


def _depth_scene():
    """Two 16x16 maps: hand pixels 400..520 mm, background 2000 mm (unmasked), holes (0) in the hand."""
    rng = np.random.default_rng(3)
    depth = np.full((2, 16, 16), 2000.0)
    mask = np.zeros((2, 16, 16), bool)
    mask[:, 4:12, 3:13] = True
    depth[mask] = rng.uniform(400, 520, mask.sum())
    depth[:, 5, 5] = 0.0  # missing depth inside the mask
    depth[1] += 100.0
    depth[1, 5, 5] = 0.0
    return depth, mask


def test_normalize_depth_map_exact_minmax():
    depth, mask = _depth_scene()
    dn, d_max, d_range = normalize_depth_map(depth, mask, quantiles=(0, 1))
    hand = mask & (depth > 0)
    for b in range(2):
        np.testing.assert_allclose(d_max[b], depth[b][hand[b]].max())
        np.testing.assert_allclose(d_range[b], np.ptp(depth[b][hand[b]]))
    assert (dn[~hand] == 0).all() and dn[:, 5, 5].tolist() == [0.0, 0.0]
    assert (dn[hand] >= 0).all() and (dn[hand] <= 1).all()
    for b in range(2):
        d, v = depth[b][hand[b]], dn[b][hand[b]]
        assert v[np.argmin(d)] == pytest.approx(1.0) and v[np.argmax(d)] == pytest.approx(0.0)
        order = np.argsort(d)
        assert (np.diff(v[order]) <= 0).all()  # nearer -> larger
    # joints map into the same space: a joint at a pixel's depth gets that pixel's value
    z = np.stack([depth[b][hand[b]][:21] for b in range(2)])
    zn = normalize_joint_depth(z, d_max, d_range)
    np.testing.assert_allclose(zn, np.stack([dn[b][hand[b]][:21] for b in range(2)]), rtol=1e-12)
    # and joints are not clamped
    assert normalize_joint_depth(np.array([[d_max[0] + 10.0]]), d_max[:1], d_range[:1])[0, 0] < 0


def test_normalize_depth_map_robust_quantiles():
    depth, mask = _depth_scene()
    depth[0, 4, 3] = 3000.0  # a flying pixel at the mask boundary
    dn_exact, d_max_exact, _ = normalize_depth_map(depth, mask, quantiles=(0, 1))
    dn, d_max, d_range = normalize_depth_map(depth, mask)  # default quantiles
    assert d_max_exact[0] == 3000.0 and d_max[0] < 530.0
    hand = mask & (depth > 0)
    assert (dn[hand] >= 0).all() and (dn[hand] <= 1).all() and (dn[~hand] == 0).all()
    assert dn[0, 4, 3] == 0.0  # the outlier is sent to the far end (background-like)
    # exact min/max lets the outlier squeeze the whole hand into a sliver near 1
    assert np.percentile(dn_exact[0][hand[0]], 5) > 0.9
    assert 0.2 < np.median(dn[0][hand[0]]) < 0.8
    assert (dn[0][hand[0]] == 1.0).sum() >= 1


def test_normalize_depth_map_torch_matches_numpy_and_follows_dtype():
    depth, mask = _depth_scene()
    for q in [(0, 1), (0.01, 0.99)]:
        ref = normalize_depth_map(depth, mask, quantiles=q)
        for dt in (torch.float32, torch.float64):
            out = normalize_depth_map(torch.tensor(depth, dtype=dt), torch.from_numpy(mask), quantiles=q)
            for a, b in zip(out, ref):
                assert a.dtype == dt
                np.testing.assert_allclose(a.numpy(), b, rtol=1e-5, atol=1e-5)


def test_normalize_depth_map_empty_mask_is_safe():
    for depth in (np.zeros((2, 4, 4)), torch.zeros(2, 4, 4)):
        dn, d_max, d_range = normalize_depth_map(depth, depth * 0)
        assert (np.asarray(dn) == 0).all() and (np.asarray(d_max) == 0).all() and (np.asarray(d_range) > 0).all()
    # a single hand pixel (zero range) is eps-safe too
    dn, _, _ = normalize_depth_map(np.array([[0.0, 500.0]]), np.array([[1, 1]]))
    assert np.isfinite(dn).all() and dn.tolist() == [[0.0, 0.0]]


@FAST
@given(seeds)
def test_joint_depth_round_trip(seed):
    rng = np.random.default_rng(seed)
    z = rng.uniform(200, 1500, (3, 21))
    d_max, d_range = rng.uniform(300, 1500, 3), rng.uniform(1, 300, 3)
    zn = normalize_joint_depth(z, d_max, d_range)
    np.testing.assert_allclose(denormalize_joint_depth(zn, d_max, d_range), z, rtol=0, atol=1e-9)
    zt = denormalize_joint_depth(torch.from_numpy(zn), torch.from_numpy(d_max), torch.from_numpy(d_range))
    assert zt.dtype == torch.float64
    np.testing.assert_allclose(zt.numpy(), z, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ 2.5D -> 3D


def random_K(rng, batch):
    K = np.zeros(batch + (3, 3))
    K[..., 0, 0] = rng.uniform(200, 1500, batch)
    K[..., 1, 1] = K[..., 0, 0] * rng.uniform(0.9, 1.1, batch)
    K[..., 0, 1] = rng.uniform(-5, 5, batch)
    K[..., 0, 2] = rng.uniform(50, 500, batch)
    K[..., 1, 2] = rng.uniform(50, 400, batch)
    K[..., 2, 2] = 1.0
    return K


def random_hands(rng, batch):
    """(..., 21, 3) mm: joints scattered around a hand centre 250..1500 mm in front of the camera."""
    centre = np.stack([rng.uniform(-200, 200, batch), rng.uniform(-200, 200, batch),
                       rng.uniform(250, 1500, batch)], -1)
    return centre[..., None, :] + rng.normal(0, 50, batch + (21, 3))


@FAST
@given(seeds, st.sampled_from([(), (3,), (2, 4)]))
def test_reconstruct_3d_inverts_projection(seed, batch):
    rng = np.random.default_rng(seed)
    K, kp = random_K(rng, batch), random_hands(rng, batch)
    uv, zn = camera.project(K, kp), root_relative_depth(kp)
    rec = reconstruct_3d(uv, zn, K, kp[..., 0, 2], scale_length(kp))
    assert rec.shape == kp.shape
    np.testing.assert_allclose(rec, kp, rtol=0, atol=1e-4)
    t = [torch.as_tensor(np.asarray(a)) for a in (uv, zn, K, kp[..., 0, 2], scale_length(kp))]
    rec_t = reconstruct_3d(*t)
    assert rec_t.dtype == torch.float64
    np.testing.assert_allclose(rec_t.numpy(), kp, rtol=0, atol=1e-4)


def test_root_relative_depth_values():
    kp = np.zeros((21, 3))
    kp[:, 2] = 500.0 + np.arange(21)
    kp[10] = [0.0, 30.0, 510.0]  # middle PIP 30 mm from the MCP (0, 0, 509): s = sqrt(900 + 1)
    zn = root_relative_depth(kp)
    s = np.sqrt(901.0)
    np.testing.assert_allclose(zn, np.arange(21) / s)
    assert zn[0] == 0.0


def test_reconstruct_3d_known_value_and_skew():
    K = np.array([[500.0, 10.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])
    X = np.array([[100.0, -50.0, 1000.0]])
    uv = camera.project(K, X)
    out = reconstruct_3d(uv, np.array([2.0]), K, np.array(800.0), np.array(100.0))  # Z = 800 + 2 * 100
    np.testing.assert_allclose(out, X, atol=1e-9)


def test_geometry_follows_device_and_dtype():
    for dt in (torch.float32, torch.float64):
        kp = torch.from_numpy(random_hands(np.random.default_rng(0), (2,))).to(dt)
        assert root_relative_depth(kp).dtype == dt
        K = torch.from_numpy(random_K(np.random.default_rng(1), (2,))).to(dt)
        rec = reconstruct_3d(camera.project(K, kp), root_relative_depth(kp), K, kp[..., 0, 2], scale_length(kp))
        assert rec.dtype == dt
    m = torch.zeros(2, 21, device="meta")
    assert normalize_joint_depth(m, torch.zeros(2, device="meta"), torch.ones(2, device="meta")).device.type == "meta"
    kpm = torch.zeros(2, 21, 3, device="meta", dtype=torch.float64)
    assert root_relative_depth(kpm).device.type == "meta"
    rec = reconstruct_3d(torch.zeros(2, 21, 2, device="meta"), m, torch.eye(3, device="meta"),
                         torch.zeros(2, device="meta"), torch.ones(2, device="meta"))
    assert rec.device.type == "meta" and rec.shape == (2, 21, 3)
