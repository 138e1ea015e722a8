"""Dense 3D regression maths (Wan et al., CVPR 2018): point map, targets, voting, mean-shift, aggregation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weakhand.dense import aggregate, dense_targets, heatmaps_2d, mean_shift, point_map, votes

S = 64  # input crop size
STRIDE = 4
G = S // STRIDE  # output grid size
R = 80.0
FAST = settings(max_examples=25, deadline=None)


def _K(B=1, f=240.0, skew=0.0, dtype=torch.float64):
    c = (S - 1) / 2
    K = torch.tensor([[f, skew, c + 1.3], [0.0, f * 1.05, c - 2.1], [0.0, 0.0, 1.0]], dtype=dtype)
    return K.expand(B, 3, 3).clone()


def _project(K, X):
    q = torch.einsum("bik,bjk->bji", K, X)
    return q[..., :2] / q[..., 2:3]


def _cell_centre(i):
    return (i + 0.5) * STRIDE - 0.5


def _bumpy_depth(B, dtype, seed=0, holes=True):
    """(B, 1, S, S) depth: a tilted plane at ~500 mm with a smooth bump, random dropout and one
    missing block."""
    g = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(S, dtype=dtype), torch.arange(S, dtype=dtype), indexing="ij")
    out = []
    for b in range(B):  # test-data construction only
        z = 500.0 + 40 * b + 0.6 * (u - S / 2) - 0.3 * (v - S / 2)
        z = z - 40.0 * torch.exp(-((u - 30 - 3 * b) ** 2 + (v - 34) ** 2) / (2 * 9.0**2))
        if holes:
            z = torch.where(torch.rand(S, S, generator=g, dtype=dtype) < 0.1, torch.zeros((), dtype=dtype), z)
            z[4 * (b + 1):4 * (b + 2), 0:4] = 0.0
        out.append(z)
    return torch.stack(out)[:, None]


# ----------------------------------------------------------------------------------------------
# point map


def test_point_map_planar_matches_analytic_backprojection():
    K = _K(2, skew=3.0)
    depth = torch.full((2, 1, S, S), 500.0, dtype=torch.float64)
    depth[1] = 720.0
    pts, valid = point_map(depth, K, STRIDE)
    assert pts.shape == (2, G, G, 3) and valid.shape == (2, G, G) and valid.all()
    c = _cell_centre(torch.arange(G, dtype=torch.float64))
    v, u = torch.meshgrid(c, c, indexing="ij")
    for b, z in ((0, 500.0), (1, 720.0)):
        fx, s, cx = K[b, 0]
        fy, cy = K[b, 1, 1], K[b, 1, 2]
        y = (v - cy) / fy * z
        x = (u - cx - s * (v - cy) / fy) / fx * z
        torch.testing.assert_close(pts[b, ..., 2], torch.full_like(x, z), rtol=0, atol=1e-9)
        torch.testing.assert_close(pts[b, ..., 1], y, rtol=0, atol=1e-9)
        torch.testing.assert_close(pts[b, ..., 0], x, rtol=0, atol=1e-9)
    # (B, S, S) input gives the same
    pts2, valid2 = point_map(depth[:, 0], K, STRIDE)
    assert torch.equal(pts2, pts) and torch.equal(valid2, valid)


def test_point_map_missing_and_partial_blocks():
    K = _K()
    depth = torch.full((1, 1, S, S), 500.0, dtype=torch.float64)
    depth[0, 0, 0:4, 0:4] = 0.0  # fully missing block (0, 0)
    blk = torch.tensor([[0.0, 400.0, 410.0, 0.0], [420.0, 0.0, 0.0, 430.0], [0.0] * 4, [0.0, 0.0, 0.0, 440.0]],
                       dtype=torch.float64)
    depth[0, 0, 4:8, 8:12] = blk  # partially missing block (row 1, col 2)
    pts, valid = point_map(depth, K, STRIDE)
    assert not valid[0, 0, 0] and torch.equal(pts[0, 0, 0], torch.zeros(3, dtype=torch.float64))
    assert valid[0, 1, 2] and valid.sum() == G * G - 1
    assert pts[0, 1, 2, 2].item() == pytest.approx(blk[blk > 0].mean().item(), abs=1e-12)
    # the partial block is still back-projected through its block centre
    uv = _project(K, pts[:, 1:2, 2])
    torch.testing.assert_close(uv[0, 0], torch.tensor([_cell_centre(2), _cell_centre(1)], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# targets


def test_targets_h3_u_h2_on_planar_scene():
    K = _K()
    depth = torch.full((1, 1, S, S), 500.0, dtype=torch.float64)
    pts, valid = point_map(depth, K, STRIDE)
    ci, cj = 7, 9  # row, column of the joint's cell
    J = pts[:, ci, cj][:, None]  # (1, 1, 3): joint exactly on the point of cell (7, 9)
    kp2d = _project(K, J)
    t = dense_targets(pts, valid, J, kp2d, STRIDE, R, cone=4.0)
    h2, h3, u = t["h2"][0, 0], t["h3"][0, 0], t["u"][0, 0]
    assert h2.shape == (G, G) and h3.shape == (G, G) and u.shape == (3, G, G)

    # h3: 1 at the joint's cell, linear in the distance, 0 beyond r
    assert h3[ci, cj].item() == 1.0
    dist = torch.linalg.vector_norm(pts[0] - J[0, 0], dim=-1)
    torch.testing.assert_close(h3, torch.clamp((R - dist) / R, min=0.0), rtol=0, atol=1e-12)
    assert (h3[dist >= R] == 0).all() and (h3[dist < R] > 0).all()
    assert (dist >= R).any()
    # moving along the row, h3 decreases strictly while inside the ball
    row = h3[ci, cj:]
    inside = row > 0
    assert (row[inside][1:] < row[inside][:-1]).all()

    # u: unit norm inside (except on the joint itself), pointing at the joint
    n = torch.linalg.vector_norm(u, dim=0)
    ins = (h3 > 0) & (dist > 0)
    torch.testing.assert_close(n[ins], torch.ones_like(n[ins]), rtol=0, atol=1e-12)
    assert (n[~ins] == 0).all()
    torch.testing.assert_close(pts[0][ins] + dist[ins, None] * u.permute(1, 2, 0)[ins],
                               J[0, 0].expand(int(ins.sum()), 3), rtol=0, atol=1e-9)

    # h2: peak 1 at the joint's grid cell (kp2d is that cell's centre), linear cone with radius 4
    torch.testing.assert_close(kp2d[0, 0], torch.tensor([_cell_centre(cj), _cell_centre(ci)], dtype=torch.float64))
    assert h2[ci, cj].item() == pytest.approx(1.0, abs=1e-12) and h2.max() == h2[ci, cj]
    assert h2[ci, cj + 1].item() == pytest.approx(0.75, abs=1e-12)
    assert h2[ci + 1, cj + 1].item() == pytest.approx(1 - math.sqrt(2) / 4, abs=1e-12)
    assert h2[ci, cj + 4].item() == 0.0 and h2[ci + 2, cj - 2].item() == pytest.approx(1 - math.sqrt(8) / 4)
    yy, xx = torch.meshgrid(torch.arange(G), torch.arange(G), indexing="ij")
    cone = torch.clamp(1 - torch.sqrt(((yy - ci) ** 2 + (xx - cj) ** 2).double()) / 4, min=0)
    torch.testing.assert_close(h2, cone, rtol=0, atol=1e-12)


def test_targets_nan_joints_and_invalid_cells():
    K = _K()
    depth = _bumpy_depth(1, torch.float64)
    pts, valid = point_map(depth, K, STRIDE)
    assert not valid.all()
    kp3d = torch.stack([pts[0, 8, 8], torch.tensor([float("nan")] * 3, dtype=torch.float64)])[None]
    kp2d = _project(K, kp3d)
    kp2d[0, 0, 0] = float("nan")  # joint 0: NaN 2D, valid 3D
    t = dense_targets(pts, valid, kp3d, kp2d)
    assert (t["h2"][0, 0] == 0).all()
    assert (t["h3"][0, 1] == 0).all() and (t["u"][0, 1] == 0).all()
    assert (t["h3"][0, 0] > 0).any()
    assert (t["h3"][0, 0][~valid[0]] == 0).all() and (t["u"][0, 0][:, ~valid[0]] == 0).all()
    for v in t.values():
        assert torch.isfinite(v).all()


def test_heatmaps_2d_subcell_position():
    uv = torch.tensor([[[_cell_centre(3) + 1.0, _cell_centre(5)]]])  # a quarter cell right of (5, 3)
    h2 = heatmaps_2d(uv, G, G, STRIDE, cone=4.0)[0, 0]
    assert h2[5, 3].item() == pytest.approx(1 - 0.25 / 4) and h2[5, 4].item() == pytest.approx(1 - 0.75 / 4)


# ----------------------------------------------------------------------------------------------
# voting and aggregation from perfect fields


@FAST
@given(ci=st.integers(2, G - 3), cj=st.integers(2, G - 3), depth_behind=st.floats(0.0, 0.95 * R),
       lateral=st.tuples(st.floats(-3.0, 3.0), st.floats(-3.0, 3.0)))
def test_votes_and_aggregate_recover_joint_exactly(ci, cj, depth_behind, lateral):
    K = _K()
    depth = torch.full((1, 1, S, S), 500.0, dtype=torch.float64)
    pts, valid = point_map(depth, K, STRIDE)
    J = pts[:, ci, cj].clone()
    J[:, 0] += lateral[0]
    J[:, 1] += lateral[1]
    J[:, 2] += depth_behind  # on the surface (0) up to 0.95 r behind it
    J = J[:, None]
    t = dense_targets(pts, valid, J, _project(K, J), STRIDE, R)
    v = votes(pts, t["h3"], t["u"], R)
    assert v.shape == (1, 1, G, G, 3)
    inside = t["h3"][0, 0] > 0
    assert inside.sum() >= 5
    torch.testing.assert_close(v[0, 0][inside], J[0, 0].expand(int(inside.sum()), 3), rtol=0, atol=1e-4)

    out = aggregate(pts, valid, t["h2"], t["h3"], t["u"], K, STRIDE, R, top_n=5)
    assert out["candidates"].shape == (1, 1, 5, 3) and out["weights"].shape == (1, 1, 5)
    assert (out["weights"] > 0).all()
    torch.testing.assert_close(out["joints"], J, rtol=0, atol=1e-4)


def test_votes_exact_on_bumpy_surface_with_holes():
    K = _K(skew=2.0)
    depth = _bumpy_depth(1, torch.float64)
    pts, valid = point_map(depth, K, STRIDE)
    J = (pts[0, 9, 7] + torch.tensor([4.0, -6.0, 55.0], dtype=torch.float64))[None, None]
    t = dense_targets(pts, valid, J, _project(K, J))
    v = votes(pts, t["h3"], t["u"])
    inside = t["h3"][0, 0] > 0
    assert inside.sum() > 10
    torch.testing.assert_close(v[0, 0][inside], J[0, 0].expand(int(inside.sum()), 3), rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-2), (torch.float64, 1e-6)])
def test_batched_pipeline_B3_J21(dtype, atol):
    B, NJ = 3, 21
    K = _K(B, skew=1.5, dtype=dtype)
    depth = _bumpy_depth(B, dtype)
    pts, valid = point_map(depth, K, STRIDE)
    assert pts.dtype == dtype and pts.shape == (B, G, G, 3)
    g = torch.Generator().manual_seed(3)
    cells = torch.randint(3, G - 3, (B, NJ, 2), generator=g)
    bidx = torch.arange(B)[:, None].expand(B, NJ)
    P = pts[bidx, cells[..., 0], cells[..., 1]]  # (B, NJ, 3)
    assert (P[..., 2] > 0).all()  # chosen cells are valid for this seed
    behind = torch.rand(B, NJ, generator=g, dtype=dtype) * 60.0
    kp3d = P * (1 + behind / P[..., 2])[..., None]  # along the pixel ray: projects on the cell centre
    kp2d = _project(K, kp3d)
    t = dense_targets(pts, valid, kp3d, kp2d)
    assert t["h2"].shape == (B, NJ, G, G) and t["u"].shape == (B, NJ, 3, G, G)
    assert all(x.dtype == dtype for x in t.values())
    v = votes(pts, t["h3"], t["u"])
    assert v.shape == (B, NJ, G, G, 3) and v.dtype == dtype
    out = aggregate(pts, valid, t["h2"], t["h3"], t["u"], K)
    assert out["joints"].shape == (B, NJ, 3) and out["joints"].dtype == dtype
    assert out["candidates"].shape == (B, NJ, 5, 3) and out["weights"].shape == (B, NJ, 5)
    torch.testing.assert_close(out["joints"], kp3d, rtol=0, atol=atol)


# ----------------------------------------------------------------------------------------------
# mean-shift


@FAST
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12), data=st.data())
def test_mean_shift_permutation_invariant(seed, n, data):
    rng = np.random.default_rng(seed)
    B, NJ = 2, 3
    c = rng.normal(size=(B, NJ, n, 3)) * rng.choice([5.0, 40.0, 150.0]) + 300.0
    if n > 2:  # duplicates and exact ties
        c[..., 1, :] = c[..., 0, :]
    w = rng.uniform(0, 1, size=(B, NJ, n)) * (rng.uniform(size=(B, NJ, n)) > 0.2)
    w[0, 0] = 0.0  # an all-zero joint
    if n > 2:
        w[..., 1] = w[..., 0]
    perm = data.draw(st.permutations(list(range(n))))
    ct, wt = torch.tensor(c), torch.tensor(w)
    a = mean_shift(ct, wt)
    b = mean_shift(ct[:, :, perm], wt[:, :, perm])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a[0, 0], ct[0, 0].mean(0))  # all-zero weights -> plain mean


def test_mean_shift_tie_broken_by_coordinates_not_index():
    c = torch.tensor([[[[500.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]], dtype=torch.float64)  # far apart
    w = torch.ones(1, 1, 2, dtype=torch.float64)
    for order in ([0, 1], [1, 0]):
        m = mean_shift(c[:, :, order], w)
        torch.testing.assert_close(m[0, 0], torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-9)


def test_mean_shift_ignores_outlier():
    g = torch.Generator().manual_seed(0)
    centre = torch.tensor([10.0, -20.0, 450.0], dtype=torch.float64)
    cluster = centre + 3.0 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    c = torch.cat([cluster, (centre + torch.tensor([0.0, 250.0, 80.0], dtype=torch.float64))[None]])
    w = torch.rand(10, generator=g, dtype=torch.float64) * 0.5 + 0.5
    w[9] = 1.0  # the outlier weighs as much as the best cluster member
    m = mean_shift(c[None, None], w[None, None])[0, 0]
    alone = mean_shift(cluster[None, None], w[None, None, :9])[0, 0]
    torch.testing.assert_close(m, alone, rtol=0, atol=1e-6)  # the outlier has no influence
    wc = w[:9] / w[:9].sum()
    torch.testing.assert_close(m, (wc[:, None] * cluster).sum(0), rtol=0, atol=0.05)
    assert torch.linalg.vector_norm(m - centre) < 5.0


# ----------------------------------------------------------------------------------------------
# surface push, degenerate selections and gradients


def test_candidates_never_in_front_of_observed_surface():
    K = _K()
    depth = torch.full((1, 1, S, S), 500.0, dtype=torch.float64)
    pts, valid = point_map(depth, K, STRIDE)
    # prediction deliberately 50 mm in front of the surface (a joint floating towards the camera)
    J = (pts[0, 8, 8] * (450.0 / 500.0))[None, None]
    t = dense_targets(pts, valid, J, _project(K, J))
    raw = votes(pts, t["h3"], t["u"])[0, 0][t["h3"][0, 0] > 0]
    assert (raw[:, 2] < 499.0).all()  # the raw votes are in front
    out = aggregate(pts, valid, t["h2"], t["h3"], t["u"], K)
    cand = out["candidates"]
    # observed depth at each candidate's projected cell (computed independently)
    uv = _project(K, cand[:, 0])
    gij = torch.round((uv + 0.5) / STRIDE - 0.5).long().clamp(0, G - 1)
    obs = pts[0, gij[0, :, 1], gij[0, :, 0], 2]
    assert (cand[0, 0, :, 2] >= obs).all()
    assert out["joints"][0, 0, 2] >= 500.0 - 1e-9


def test_aggregate_few_valid_cells_and_zero_scores():
    K = _K()
    depth = torch.zeros((1, 1, S, S), dtype=torch.float64)
    depth[0, 0, 0:8, 0:4] = 500.0  # only two valid cells
    pts, valid = point_map(depth, K, STRIDE)
    assert valid.sum() == 2
    NJ = 2
    h2 = torch.ones(1, NJ, G, G, dtype=torch.float64)
    h3 = torch.zeros(1, NJ, G, G, dtype=torch.float64)  # all scores zero
    u = torch.zeros(1, NJ, 3, G, G, dtype=torch.float64)
    out = aggregate(pts, valid, h2, h3, u, K, top_n=5)
    assert out["candidates"].shape == (1, NJ, 5, 3)
    assert (out["weights"] > 0).sum(-1).eq(2).all()  # only the two valid cells carry weight
    assert torch.isfinite(out["joints"]).all()
    # with zero h3 and zero u every valid cell votes its own point; the two equal-weight points
    # (8 mm apart, well inside the bandwidth) shift to their midpoint
    mid = pts[0, :2, 0].mean(0)
    torch.testing.assert_close(out["joints"][0], mid.expand(NJ, 3), rtol=0, atol=1e-3)
    with pytest.raises(ValueError):
        aggregate(pts, valid, h2, h3, u, K, top_n=G * G + 1)


def test_gradients_finite():
    K = _K()
    depth = _bumpy_depth(1, torch.float64)
    pts, valid = point_map(depth, K, STRIDE)
    J = (pts[0, 8, 8] + torch.tensor([0.0, 0.0, 30.0], dtype=torch.float64))[None, None]
    t = dense_targets(pts, valid, J, _project(K, J))
    h3 = (t["h3"] * 0.9 + 0.05).requires_grad_(True)
    u = (t["u"] + 0.01).requires_grad_(True)
    v = votes(pts, h3, u)
    v.square().sum().backward()
    assert h3.grad is not None and torch.isfinite(h3.grad).all() and (h3.grad != 0).any()
    assert u.grad is not None and torch.isfinite(u.grad).all() and (u.grad != 0).any()
    # through aggregate / mean-shift as well
    h3.grad = None
    u.grad = None
    out = aggregate(pts, valid, t["h2"], h3, u, K)
    out["joints"].sum().backward()
    assert torch.isfinite(h3.grad).all() and torch.isfinite(u.grad).all() and (u.grad != 0).any()
