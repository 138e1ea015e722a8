"""BMC joint-angle hulls: fitting, validation, editing and the differentiable hull distance."""
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from weakhand.bmc import hull as H

SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
TRIANGLE = np.array([[-0.5, -0.2], [0.3, -0.1], [0.0, 0.4]])
SEEDS = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=25, deadline=None)


def _cloud(seed: int) -> np.ndarray:
    """A random (N, 2) angle cloud: Gaussian, uniform, or a coarse grid (duplicates, collinear)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    kind = seed % 3
    if kind == 0:
        return rng.normal(size=(n, 2)) * rng.uniform(0.05, 0.8, 2) + rng.uniform(-1, 1, 2)
    if kind == 1:
        return rng.uniform(-1.0, 1.0, size=(n, 2))
    return np.round(rng.uniform(-1.0, 1.0, size=(n, 2)), 1)


def _hull_or_skip(pts: np.ndarray) -> np.ndarray:
    try:
        return H.convex_hull(pts)
    except ValueError:
        assume(False)


def _is_subset(rows: np.ndarray, of: np.ndarray) -> bool:
    return bool((rows[:, None, :] == of[None, :, :]).all(-1).any(1).all())


def _strictly_convex(poly: np.ndarray) -> bool:
    e = np.roll(poly, -1, axis=0) - poly
    return bool((H._cross(np.roll(e, 1, axis=0), e) > 0).all())


def _greedy_reference(poly, pts, min_coverage):
    """Brute-force greedy pruning (recomputes every candidate's coverage from scratch)."""
    p = poly.copy()
    while len(p) > 3:
        cov = np.array([H.coverage(pts, np.delete(p, i, axis=0)) for i in range(len(p))])
        area = 0.5 * H._cross(p - np.roll(p, 1, axis=0), np.roll(p, -1, axis=0) - p)
        best = int(np.lexsort((area, -cov))[0])
        if cov[best] < min_coverage:
            break
        p = np.delete(p, best, axis=0)
    return p


def _dist(theta, poly, dtype=torch.float64):
    """hull_distance for one polygon (M, 2) and angles (..., 2) -> (...)."""
    t = torch.as_tensor(theta if torch.is_tensor(theta) else np.asarray(theta),
                        dtype=dtype)[..., None, :]
    return H.hull_distance(t, torch.as_tensor(poly[None], dtype=dtype))[..., 0]


# ------------------------------------------------------------------------------ convex hull
@FAST
@given(SEEDS)
def test_convex_hull_contains_points_is_convex_ccw_and_uses_input_points(seed):
    pts = _cloud(seed)
    hull = _hull_or_skip(pts)
    assert H.polygon_problem(hull) is None
    assert H.signed_area(hull) > 0
    assert _strictly_convex(hull)                      # collinear points were dropped
    assert _is_subset(hull, pts)
    assert H.points_in_polygon(pts, hull).all()
    assert len(np.unique(hull, axis=0)) == len(hull)


def test_convex_hull_duplicates_collinear_and_bad_input():
    pts = np.concatenate([np.repeat(SQUARE, 5, axis=0), [[0.5, 0.5], [0.5, 0.0]]])
    hull = H.convex_hull(pts)
    assert len(hull) == 4 and _is_subset(hull, SQUARE) and H.signed_area(hull) == 1.0
    with pytest.raises(ValueError, match="got 2 distinct point"):
        H.convex_hull([[0.0, 0.0]] * 5 + [[1.0, 1.0]])
    with pytest.raises(ValueError, match="4 distinct points that are all collinear"):
        H.convex_hull([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        H.convex_hull([[0.0, 0.0], [1.0, 0.0], [0.0, np.nan], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        H.convex_hull(np.zeros((5, 3)))


# ------------------------------------------------------------------------------- validation
ARROW = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [1.0, 1.0], [0.0, 2.0]])
PENTAGON = np.stack([np.cos(np.arange(5) * 2 * np.pi / 5), np.sin(np.arange(5) * 2 * np.pi / 5)], 1)


@pytest.mark.parametrize("poly, reason", [
    (SQUARE[::-1], "clockwise (signed area"),
    (ARROW, "not convex: clockwise turn at vertex 3"),
    (np.where([[0, 0], [0, 0], [1, 0], [0, 0]], np.nan, SQUARE), "non-finite value (NaN or inf) at vertex 2"),
    (SQUARE[:2], "at least 3 vertices, got 2"),
    (np.insert(SQUARE, 2, SQUARE[1], axis=0), "vertices 1 and 2 coincide"),
    (np.zeros((4, 3)), "(M, 2)"),
    (np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]), "zero area"),
    (PENTAGON[[0, 2, 4, 1, 3]], "winds 2 times"),
    (np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 1.5], [0.0, 1.0]]),
     "clockwise turn at vertex 4"),                                      # a spike
])
def test_polygon_problem_names_the_reason(poly, reason):
    problem = H.polygon_problem(poly)
    assert problem is not None and reason in problem, problem
    with pytest.raises(ValueError, match=r"^bone 3: "):
        H.check_polygon(poly, name="bone 3")


def test_valid_polygons_pass():
    for poly in (SQUARE, TRIANGLE, PENTAGON, np.insert(SQUARE, 1, [0.5, 0.0], axis=0)):
        assert H.polygon_problem(poly) is None      # a collinear vertex is still convex
        H.check_polygon(poly)
    assert H.signed_area(SQUARE) == 1.0 and H.signed_area(SQUARE[::-1]) == -1.0


# ------------------------------------------------------------------------------ inside test
def test_points_in_polygon_boundary_wrap_and_coverage():
    pts = np.array([[0.5, 0.5], [1.0, 1.0], [0.5, 0.0], [1.0 + 1e-6, 0.5], [np.nan, 0.5]])
    assert H.points_in_polygon(pts, SQUARE).tolist() == [True, True, True, False, False]
    assert H.coverage(pts[:4], SQUARE) == 0.75
    seam = np.array([[3.0, -0.1], [3.3, -0.1], [3.3, 0.1], [3.0, 0.1]])   # crosses flexion = pi
    inside = H.points_in_polygon([[-3.1, 0.0], [3.1, 0.0], [0.0, 0.0], [-3.1, 0.2]], seam)
    assert inside.tolist() == [True, True, False, False]
    assert H.points_in_polygon(np.zeros((0, 2)), SQUARE).shape == (0,)


# --------------------------------------------------------------------- simplify, prune, fit
@FAST
@given(SEEDS, st.sampled_from([1e-3, 0.02, 0.2]))
def test_rdp_keeps_points_within_eps_and_convexity(seed, eps):
    pts = _cloud(seed)
    hull = _hull_or_skip(pts)
    simple = H.simplify_rdp(hull, eps)
    assert H.polygon_problem(simple) is None and 3 <= len(simple) <= len(hull)
    assert _is_subset(simple, hull)
    # every removed vertex is within eps of the kept edge, so every point is within eps too
    assert H.points_in_polygon(pts, H.offset_polygon(simple, eps + 1e-9)).all()
    ang = np.sort(np.random.default_rng(seed).uniform(0, 2 * np.pi, 12))
    circle = H.convex_hull(np.stack([np.cos(ang), np.sin(ang)], 1))
    assert np.array_equal(H.simplify_rdp(circle, 0.0), circle)


@FAST
@given(SEEDS, st.sampled_from([0.999, 0.99, 0.9, 0.7]))
def test_prune_keeps_coverage_and_convexity_and_stops_when_it_must(seed, min_coverage):
    pts = _cloud(seed)
    hull = _hull_or_skip(pts)
    pruned = H.prune_vertices(hull, pts, min_coverage)
    assert H.polygon_problem(pruned) is None and _is_subset(pruned, hull)
    assert H.coverage(pts, pruned) >= min_coverage
    if len(pruned) > 3:                                  # no further removal is allowed
        assert all(H.coverage(pts, np.delete(pruned, i, axis=0)) < min_coverage
                   for i in range(len(pruned)))


@pytest.mark.parametrize("center, spread", [(0.0, 0.5), (3.0, 0.4), (0.0, 1.8)])
def test_prune_matches_brute_force_greedy_including_wrap_around(center, spread):
    rng = np.random.default_rng(7)
    raw = rng.normal(size=(1500, 2)) * [spread, 0.3] + [center, 0.0]
    hull = H.convex_hull(raw)
    pts = raw.copy()
    pts[:, 0] = (pts[:, 0] + np.pi) % (2 * np.pi) - np.pi     # angles as measured: wrapped
    assert H.coverage(pts, hull) == 1.0
    for mc in (0.99, 0.9):
        assert np.array_equal(H.prune_vertices(hull, pts, mc), _greedy_reference(hull, pts, mc))


@FAST
@given(SEEDS, st.sampled_from([0.999, 0.95]), st.sampled_from([1e-3, 0.05, 0.3]))
def test_fit_hull_keeps_min_coverage(seed, min_coverage, eps):
    pts = _cloud(seed)
    _hull_or_skip(pts)
    for margin in (0.0, eps):
        fitted = H.fit_hull(pts, eps=eps, min_coverage=min_coverage, margin=margin)
        assert H.polygon_problem(fitted) is None
        assert H.coverage(pts, fitted) >= min_coverage


def test_fit_hull_on_points_piled_on_the_boundary_is_small_and_covers():
    # clipped data: many points exactly on a curved limit; chords alone would cut them off
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2 * np.pi, 1000)
    pts = np.concatenate([np.stack([np.cos(a), 0.5 * np.sin(a)], 1),
                          rng.uniform(-0.6, 0.6, (2000, 2)) * [1.0, 0.5]])
    assert len(H.convex_hull(pts)) == 1000
    fitted = H.fit_hull(pts, eps=2e-3, min_coverage=0.9995)
    assert H.polygon_problem(fitted) is None and len(fitted) < 100
    assert H.coverage(pts, fitted) >= 0.9995
    assert H.coverage(pts, H.simplify_rdp(H.convex_hull(pts), 2e-3)) < 0.9   # why eps is re-added


def test_fit_hull_rejects_nan_and_too_few_points():
    with pytest.raises(ValueError, match="NaN or inf"):
        H.fit_hull(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match="at least 3 non-collinear points"):
        H.fit_hull(np.array([[0.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="empty"):
        H.fit_hull(np.zeros((0, 2)))
    flat = np.stack([np.linspace(0.0, 1.5, 50), np.r_[0.0, 1e-12, np.zeros(48)]], 1)
    with pytest.raises(ValueError, match="span no area .*zero area"):
        H.fit_hull(flat)                           # e.g. a joint without abduction


# ---------------------------------------------------------------------------------- offset
@FAST
@given(SEEDS, st.floats(1e-3, 0.5))
def test_offset_contains_original_and_moves_each_edge_by_margin(seed, margin):
    hull = _hull_or_skip(_cloud(seed))
    out = H.offset_polygon(hull, margin)
    assert H.polygon_problem(out) is None and out.shape == hull.shape
    assert H.points_in_polygon(hull, out).all()
    # both ends of edge i of the result lie on edge i's line, `margin` outside (right side)
    a, b = hull, np.roll(hull, -1, axis=0)
    d_start = np.diagonal(H._signed_line_distances(out, a, b))
    d_end = np.diagonal(H._signed_line_distances(np.roll(out, -1, axis=0), a, b))
    np.testing.assert_allclose(d_start, -margin, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d_end, -margin, rtol=1e-7, atol=1e-9)


def test_offset_zero_is_copy_and_negative_is_refused():
    out = H.offset_polygon(SQUARE, 0.0)
    assert np.array_equal(out, SQUARE) and out is not SQUARE
    np.testing.assert_allclose(H.offset_polygon(SQUARE, 0.5),
                               [[-0.5, -0.5], [1.5, -0.5], [1.5, 1.5], [-0.5, 1.5]])
    with pytest.raises(ValueError, match="margin"):
        H.offset_polygon(SQUARE, -0.1)


# ------------------------------------------------------------------------------------ padding
def test_pad_hulls_changes_neither_inside_test_nor_distance():
    polys = [SQUARE, TRIANGLE, H.convex_hull(np.random.default_rng(3).normal(size=(300, 2)))]
    verts, counts = H.pad_hulls(polys)
    m_max = max(len(p) for p in polys)
    assert verts.shape == (3, m_max, 2) and verts.dtype == np.float64
    assert counts.dtype == np.int64 and counts.tolist() == [len(p) for p in polys]
    for h, p in enumerate(polys):
        assert (verts[h, len(p):] == p[-1]).all()
    rng = np.random.default_rng(4)
    pts = rng.uniform(-2.5, 2.5, size=(500, 2))
    for h, p in enumerate(polys):
        assert np.array_equal(H.points_in_polygon(pts, verts[h]), H.points_in_polygon(pts, p))
    theta = torch.as_tensor(rng.uniform(-2.5, 2.5, size=(64, 3, 2)))
    padded = H.hull_distance(theta, torch.as_tensor(verts))
    for h, p in enumerate(polys):
        torch.testing.assert_close(padded[:, h], _dist(theta[:, h], p), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="hull 1: vertices are clockwise"):
        H.pad_hulls([SQUARE, SQUARE[::-1]])


# ----------------------------------------------------------------------------- hull_distance
def _embed_l1(a, b):
    return sum(abs(math.cos(x) - math.cos(y)) + abs(math.sin(x) - math.sin(y))
               for x, y in zip(a, b))


def test_hull_distance_zero_inside_and_hand_computed_outside():
    inside = np.array([[0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [0.5, 0.0], [0.999, 0.3]])
    assert (_dist(inside, SQUARE) == 0).all()
    # (1.5, 1.25): the nearest point of the unit square is its corner (1, 1);
    # (1.3, 0.5): straight right of the edge x = 1, nearest point (1, 0.5)
    expected = [
        abs(math.cos(1.5) - math.cos(1.0)) + abs(math.sin(1.5) - math.sin(1.0))
        + abs(math.cos(1.25) - math.cos(1.0)) + abs(math.sin(1.25) - math.sin(1.0)),
        abs(math.cos(1.3) - math.cos(1.0)) + abs(math.sin(1.3) - math.sin(1.0)),
    ]
    got = _dist([[1.5, 1.25], [1.3, 0.5]], SQUARE)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert abs(expected[0] - _embed_l1((1.5, 1.25), (1.0, 1.0))) < 1e-12


@FAST
@given(SEEDS)
def test_hull_distance_is_2pi_periodic_in_flexion(seed):
    rng = np.random.default_rng(seed)
    poly = _hull_or_skip(_cloud(seed))
    theta = np.stack([rng.uniform(-np.pi, np.pi, 50), rng.uniform(-1.5, 1.5, 50)], 1)
    base = _dist(theta, poly)
    for k in (-2, -1, 1, 3):
        torch.testing.assert_close(_dist(theta + [2 * np.pi * k, 0.0], poly), base,
                                   rtol=0, atol=1e-9)


def test_hull_distance_wraps_around_the_flexion_seam():
    seam = np.array([[3.0, -0.1], [3.3, -0.1], [3.3, 0.1], [3.0, 0.1]])
    d = _dist([[-3.1, 0.0], [3.1, 0.0], [-2.9, 0.0]], seam)
    assert d[0] == 0 and d[1] == 0
    np.testing.assert_allclose(d[2].item(), _embed_l1((-2.9, 0.0), (3.3 - 2 * np.pi, 0.0)),
                               rtol=1e-9)


def test_hull_distance_gradients_are_finite_everywhere():
    verts = torch.as_tensor(H.pad_hulls([SQUARE, np.insert(SQUARE, 1, [0.5, 0.0], axis=0),
                                         H.convex_hull(np.random.default_rng(0).normal(
                                             size=(100, 2)))])[0][:2])
    points = [[0.0, 0.0], [1.0, 1.0], [0.5, 0.0], [0.5, 0.5], [1.0, 0.5],   # vertices/edges/in
              [1.5, 1.5], [-0.5, 0.5], [0.5, 2.0], [1.0, 3.0], [np.pi, 0.5],  # outside
              [-np.pi, 0.5], [1.0 + 1e-7, 0.5], [0.0, -1e-9]]
    for dtype in (torch.float32, torch.float64):
        theta = torch.tensor(points, dtype=dtype)[:, None, :].expand(-1, 2, -1).clone()
        theta.requires_grad_(True)
        d = H.hull_distance(theta, verts)
        d.sum().backward()
        assert torch.isfinite(d).all() and torch.isfinite(theta.grad).all()
        inside = d.detach() == 0
        assert (theta.grad[inside] == 0).all()
        assert inside[:5].all() and not inside[5:11].any()


def test_gradient_step_reduces_distance_of_outside_points():
    rng = np.random.default_rng(5)
    ang = rng.uniform(0, 2 * np.pi, 200)
    r = rng.uniform(0.05, 0.6, 200)
    pts = np.array([0.5, 0.5]) + (0.5 + r)[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
    pts = pts[~H.points_in_polygon(pts, SQUARE)]
    theta = torch.tensor(pts, requires_grad=True)
    d = _dist(theta, SQUARE)
    d.sum().backward()
    assert (d > 0).all()
    # the negative gradient points towards the square (positive component towards the nearest point)
    nearest = torch.as_tensor(np.clip(pts, 0.0, 1.0))
    assert ((-theta.grad * (nearest - theta.detach())).sum(-1) > 0).all()
    stepped = theta.detach() - 1e-3 * theta.grad
    assert (_dist(stepped, SQUARE) < d.detach()).all()


@FAST
@given(SEEDS)
def test_torch_inside_agrees_with_numpy(seed):
    rng = np.random.default_rng(seed)
    polys = [_hull_or_skip(_cloud(seed)), H.convex_hull(rng.normal(size=(50, 2))), SQUARE]
    verts, _ = H.pad_hulls(polys)
    theta = np.stack([rng.uniform(-np.pi, np.pi, (200, 3)), rng.uniform(-1.5, 1.5, (200, 3))], -1)
    d = H.hull_distance(torch.as_tensor(theta), torch.as_tensor(verts)).numpy()
    assert (d >= 0).all()
    for h, p in enumerate(polys):
        ref = H.points_in_polygon(theta[:, h], p)
        e = np.roll(p, -1, axis=0)
        margin = np.abs(H._signed_line_distances(theta[:, h], p, e)).min(1)
        clear = margin > 1e-5                      # the two tolerances differ on the boundary
        assert np.array_equal((d[:, h] == 0)[clear], ref[clear])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hull_distance_dtypes_and_batch_shapes(dtype):
    verts64, _ = H.pad_hulls([SQUARE, TRIANGLE])
    verts = torch.as_tensor(verts64)                       # float64 verts, cast to theta's dtype
    rng = np.random.default_rng(6)
    theta = torch.as_tensor(rng.uniform(-2, 2, size=(4, 5, 2, 2)), dtype=dtype)
    d = H.hull_distance(theta, verts)
    assert d.shape == (4, 5, 2) and d.dtype == dtype
    assert H.hull_distance(theta[0], verts).shape == (5, 2)
    assert H.hull_distance(theta[0, 0], verts).shape == (2,)
    torch.testing.assert_close(H.hull_distance(theta[1, 2], verts), d[1, 2])
    ref = H.hull_distance(theta.double(), verts)
    torch.testing.assert_close(d.double(), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="H = 2"):
        H.hull_distance(theta[..., :1, :], verts)
    with pytest.raises(ValueError, match=r"\(H, M, 2\)"):
        H.hull_distance(theta, verts[0])


# ---------------------------------------------------------------------------------- editing
def test_move_vertex():
    out = H.move_vertex(SQUARE, 2, [1.5, 1.5])
    assert out[2].tolist() == [1.5, 1.5] and SQUARE[2].tolist() == [1.0, 1.0]
    assert H.move_vertex(SQUARE, -1, [0.0, 1.2])[3].tolist() == [0.0, 1.2]
    with pytest.raises(ValueError, match="moving vertex 2 .*not convex: clockwise turn"):
        H.move_vertex(SQUARE, 2, [0.3, 0.3])
    with pytest.raises(ValueError, match="coincide"):
        H.move_vertex(SQUARE, 1, [0.0, 0.0])
    with pytest.raises(ValueError, match="out of range"):
        H.move_vertex(SQUARE, 4, [0.0, 0.0])


def test_insert_vertex():
    out = H.insert_vertex(SQUARE, [0.5, -0.2])
    assert out.tolist() == [[0.0, 0.0], [0.5, -0.2], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    assert H.insert_vertex(SQUARE, [1.2, 0.5])[2].tolist() == [1.2, 0.5]
    assert H.insert_vertex(SQUARE, [0.5, 0.0])[1].tolist() == [0.5, 0.0]   # on an edge: allowed
    with pytest.raises(ValueError, match="every position .*not convex"):
        H.insert_vertex(SQUARE, [0.5, 0.5])                                  # inside
    with pytest.raises(ValueError, match="every position"):
        H.insert_vertex(SQUARE, [2.0, 2.0])                                  # beyond two edges
    with pytest.raises(ValueError, match="xy must be a finite"):
        H.insert_vertex(SQUARE, [np.nan, 0.0])


def test_delete_scale_translate():
    tri = H.delete_vertex(SQUARE, 2)
    assert tri.tolist() == [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="at least 3 vertices"):
        H.delete_vertex(tri, 0)
    big = H.scale_polygon(SQUARE, 2.0)
    np.testing.assert_allclose(big, [[-0.5, -0.5], [1.5, -0.5], [1.5, 1.5], [-0.5, 1.5]])
    np.testing.assert_allclose(H.scale_polygon(SQUARE, 2.0, center=[0.0, 0.0]), 2 * SQUARE)
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="factor"):
            H.scale_polygon(SQUARE, bad)
    np.testing.assert_allclose(H.translate_polygon(SQUARE, [0.1, -0.2]), SQUARE + [0.1, -0.2])
    with pytest.raises(ValueError, match="dxy"):
        H.translate_polygon(SQUARE, [0.1])
    with pytest.raises(ValueError, match="polygon: vertices are clockwise"):
        H.translate_polygon(SQUARE[::-1], [0.1, 0.0])
