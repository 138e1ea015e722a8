"""Convex joint-angle hulls for the BMC angle limits: fitting, validation, editing, and a
differentiable distance for the loss.

A hull is a convex polygon in the (flexion, abduction) plane, both in radians, stored as an
(M, 2) float array of vertices in counter-clockwise (CCW) order, columns (flexion, abduction),
without repeating the first vertex. Flexion lives on a circle (wraps at ±pi); abduction lies in
[-pi/2, pi/2] and does not wrap. Inside tests therefore also try the point shifted by ±2*pi in
flexion.

Tolerances (all documented at each function):

* ``polygon_problem``: edges shorter than ``tol`` (rad) are "repeated vertices", |area| <= tol
  (rad^2) is "zero area", and a turn whose sine is below ``-tol`` is "clockwise". Collinear
  vertices (sine within ``tol`` of 0, same direction) are allowed: the polygon is still convex.
* ``points_in_polygon`` (numpy): a point is inside when its signed distance (rad) to every edge
  line is >= ``-tol``; boundary points count as inside.
* ``hull_distance`` (torch): inside when the raw 2-D cross product edge x (theta - vertex) is
  >= -1e-6 for every edge (units rad^2, i.e. scaled by the edge length).

Fitting and editing use numpy (float64); ``hull_distance`` is torch, batched and differentiable.
"""
from __future__ import annotations

import math

import numpy as np
import torch

TWO_PI = 2.0 * math.pi
_SHIFTS = (0.0, TWO_PI, -TWO_PI)   # flexion copies tried by the inside tests
_CHUNK = 1 << 16                   # points per block in the (N, M) numpy tests
INSIDE_CROSS_TOL = 1e-6            # hull_distance: cross >= -INSIDE_CROSS_TOL counts as inside


# ---------------------------------------------------------------------------------- helpers
def _as_points(points, name: str = "points", allow_empty: bool = False) -> np.ndarray:
    """`points` as a float64 (N, 2) array, or a ValueError naming `name`."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of (flexion, abduction) angles in "
                         f"radians, got shape {p.shape}")
    if not allow_empty and len(p) == 0:
        raise ValueError(f"{name} is empty")
    return p


def _as_xy(xy, name: str) -> np.ndarray:
    """A single finite (2,) point, or a ValueError naming `name`."""
    v = np.asarray(xy, dtype=np.float64)
    if v.shape != (2,) or not np.isfinite(v).all():
        raise ValueError(f"{name} must be a finite (flexion, abduction) pair, got {xy!r}")
    return v


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """2-D cross product u x v over the last axis (..., 2) -> (...)."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _edge_vectors(poly: np.ndarray) -> np.ndarray:
    """(M, 2) edge vectors v_i = p_{i+1} - p_i of a closed polygon."""
    return np.roll(poly, -1, axis=0) - poly


def _signed_line_distances(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed distance (rad) of points (N, 2) to the lines a_k -> b_k (K, 2): (N, K), positive
    on the left. Zero-length lines (padding) give 0, so they never reject a point."""
    v = b - a
    length = np.hypot(v[:, 0], v[:, 1])
    cross = v[None, :, 0] * (points[:, None, 1] - a[None, :, 1]) \
        - v[None, :, 1] * (points[:, None, 0] - a[None, :, 0])
    ok = length > 0
    return np.where(ok, cross / np.where(ok, length, 1.0), 0.0)


def _segment_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of points x (..., 2) to segments a -> b (..., 2) (broadcast) -> (...).
    Zero-length segments give the distance to their point."""
    v = b - a
    vv = (v * v).sum(-1)
    t = np.where(vv > 0, ((x - a) * v).sum(-1) / np.where(vv > 0, vv, 1.0), 0.0)
    d = a + np.clip(t, 0.0, 1.0)[..., None] * v - x
    return np.hypot(d[..., 0], d[..., 1])


def _vertex_index(i, m: int) -> int:
    """Normalise a vertex index (negative allowed) for an M-gon, or raise ValueError."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise ValueError(f"vertex index must be an integer, got {i!r}")
    if not -m <= i < m:
        raise ValueError(f"vertex index {i} out of range for a polygon with {m} vertices")
    return int(i) % m


# ------------------------------------------------------------------------------- hull, area
def _akl_toussaint_filter(p: np.ndarray) -> np.ndarray:
    """Drop points strictly inside the quadrilateral of the extreme points (they can never be
    hull vertices); keeps the monotone-chain loop short on large clouds."""
    quad = p[[np.argmin(p[:, 0]), np.argmin(p[:, 1]), np.argmax(p[:, 0]), np.argmax(p[:, 1])]]
    real = np.hypot(*_edge_vectors(quad).T) > 0       # extreme points may coincide
    if real.sum() < 3:
        return p
    d = _signed_line_distances(p, quad[real], np.roll(quad, -1, axis=0)[real])
    return p[~(d > 0).all(1)]


def _half_chain(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """One monotone chain (left turns only; collinear points are popped)."""
    chain: list[tuple[float, float]] = []
    for x, y in pts:
        while len(chain) >= 2:
            (ox, oy), (ax, ay) = chain[-2], chain[-1]
            if (ax - ox) * (y - oy) - (ay - oy) * (x - ox) > 0:
                break
            chain.pop()
        chain.append((x, y))
    return chain


def convex_hull(points) -> np.ndarray:
    """Convex hull (Andrew's monotone chain) of points (N, 2) -> CCW vertices (M, 2) float64.

    Duplicates are merged and collinear boundary points dropped; hull vertices are exact copies
    of input points. Raises ValueError for non-finite input or fewer than 3 non-collinear points.
    """
    p = _as_points(points, allow_empty=True)
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p).all(1)).sum())
        raise ValueError(f"points contain NaN or inf ({bad} of {len(p)} rows)")
    p = np.unique(p, axis=0)                       # sorted by (flexion, abduction)
    n_distinct = len(p)
    if n_distinct < 3:
        raise ValueError(f"a convex hull needs at least 3 non-collinear points, got "
                         f"{n_distinct} distinct point(s)")
    pts = [tuple(q) for q in _akl_toussaint_filter(p).tolist()]
    lower = _half_chain(pts)
    upper = _half_chain(pts[::-1])
    hull = np.array(lower[:-1] + upper[:-1], dtype=np.float64)
    if len(hull) < 3:
        raise ValueError(f"a convex hull needs at least 3 non-collinear points, got "
                         f"{n_distinct} distinct points that are all collinear")
    return hull


def signed_area(poly) -> float:
    """Shoelace area of a closed polygon (M, 2), rad^2; positive for CCW vertex order."""
    p = np.asarray(poly, dtype=np.float64)
    return float(0.5 * _cross(p, np.roll(p, -1, axis=0)).sum())


def _centroid(poly: np.ndarray) -> np.ndarray:
    """Area centroid (2,) of a polygon with non-zero area."""
    q = np.roll(poly, -1, axis=0)
    c = _cross(poly, q)
    return ((poly + q) * c[:, None]).sum(0) / (3.0 * c.sum())


# ------------------------------------------------------------------------------- validation
def polygon_problem(poly, tol: float = 1e-9) -> str | None:
    """None if `poly` is a valid convex CCW polygon (M >= 3, (flexion, abduction) columns),
    else a human-readable reason. Collinear vertices are allowed (still convex).

    tol: edges shorter than tol (rad) are repeated vertices, |area| <= tol (rad^2) is zero
    area, and a turn whose sine is below -tol is a clockwise (non-convex) turn.
    """
    try:
        p = np.asarray(poly, dtype=np.float64)
    except (TypeError, ValueError):
        return f"not a numeric array (got {type(poly).__name__})"
    if p.ndim != 2 or p.shape[1] != 2:
        return f"expected an (M, 2) array of (flexion, abduction) vertices, got shape {p.shape}"
    m = len(p)
    if m < 3:
        return f"a polygon needs at least 3 vertices, got {m}"
    bad = np.flatnonzero(~np.isfinite(p).all(1))
    if bad.size:
        return f"non-finite value (NaN or inf) at vertex {int(bad[0])}"
    e = _edge_vectors(p)
    length = np.hypot(e[:, 0], e[:, 1])
    short = np.flatnonzero(length <= tol)
    if short.size:
        i = int(short[0])
        return f"vertices {i} and {(i + 1) % m} coincide (repeated consecutive vertex)"
    area = signed_area(p)
    if area < -tol:
        return f"vertices are clockwise (signed area {area:.3g} < 0); store hulls counter-clockwise"
    if area <= tol:
        return f"zero area ({area:.3g}); the vertices are (nearly) collinear"
    e_in = np.roll(e, 1, axis=0)                   # edge arriving at vertex i
    sin_turn = _cross(e_in, e) / (np.roll(length, 1) * length)
    cos_turn = (e_in * e).sum(-1) / (np.roll(length, 1) * length)
    cw = np.flatnonzero(sin_turn < -tol)
    if cw.size:
        return f"not convex: clockwise turn at vertex {int(cw[0])}"
    turning = float(np.arctan2(sin_turn, cos_turn).sum())
    if abs(turning - TWO_PI) > 1e-6:
        return (f"self-intersecting: the boundary winds {turning / TWO_PI:.3g} times around "
                f"(a convex polygon winds once)")
    return None


def check_polygon(poly, name: str = "hull") -> None:
    """Raise ValueError(f"{name}: {reason}") unless `poly` (M, 2) is a valid convex CCW polygon
    (vertices in radians, (flexion, abduction) for the BMC hulls); returns None."""
    reason = polygon_problem(poly)
    if reason is not None:
        raise ValueError(f"{name}: {reason}")


# ------------------------------------------------------------------------------ inside test
def _as_inside_poly(poly) -> np.ndarray:
    """A finite (M >= 3, 2) polygon for the inside tests (padding repeats are allowed)."""
    q = _as_points(poly, name="poly")
    if len(q) < 3 or not np.isfinite(q).all():
        raise ValueError(f"poly must be a finite (M >= 3, 2) polygon, got shape {q.shape}"
                         + ("" if np.isfinite(q).all() else " with NaN/inf"))
    return q


def _inside_copies(points: np.ndarray, poly: np.ndarray, tol: float):
    """The flexion copies (shift 0, ±2*pi) of points (N, 2) that lie inside the convex CCW
    polygon (M, 2) (signed distance >= -tol to every edge line; zero-length edges ignored).

    Returns rows (R, 2) (the shifted copies) and ids (R,) int (their point index, ascending).
    Copies outside the polygon's bounding box are skipped before the (n, M) test.
    """
    a, b = poly, np.roll(poly, -1, axis=0)
    lo, hi = poly.min(0) - tol, poly.max(0) + tol
    rows, ids = [], []
    for s in _SHIFTS:
        x = points + (s, 0.0)
        cand = np.flatnonzero(((x >= lo) & (x <= hi)).all(1))
        for start in range(0, len(cand), _CHUNK):
            idx = cand[start:start + _CHUNK]
            ok = (_signed_line_distances(x[idx], a, b) >= -tol).all(1)
            rows.append(x[idx[ok]])
            ids.append(idx[ok])
    ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    rows = np.concatenate(rows) if rows else np.zeros((0, 2))
    order = np.argsort(ids, kind="stable")
    return rows[order], ids[order]


def points_in_polygon(points, poly, tol: float = 1e-9) -> np.ndarray:
    """Inside test of points (N, 2) against a convex CCW polygon (M, 2) -> bool (N,).

    A point is inside when its signed distance (rad) to every edge line is >= -tol (boundary
    counts inside), for the point itself or its copy shifted by ±2*pi in flexion. Zero-length
    (padding) edges are ignored. NaN points are outside.
    """
    p = _as_points(points, allow_empty=True)
    q = _as_inside_poly(poly)
    inside = np.zeros(len(p), dtype=bool)
    inside[_inside_copies(p, q, tol)[1]] = True
    return inside


def coverage(points, poly, tol: float = 1e-9) -> float:
    """Fraction (0..1) of points (N >= 1, 2) inside the polygon (see points_in_polygon)."""
    p = _as_points(points)
    return float(points_in_polygon(p, poly, tol).mean())


# ---------------------------------------------------------------------------- simplification
def _rdp_chain(poly: np.ndarray, idx: np.ndarray, eps: float, keep: np.ndarray) -> None:
    """Ramer–Douglas–Peucker on the open chain poly[idx] (endpoints already kept): marks the
    vertices to keep in `keep` (M,) in place. Iterative, a stack of (start, end) positions."""
    stack = [(0, len(idx) - 1)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2:
            continue
        inner = idx[lo + 1:hi]
        a, b = poly[idx[lo]], poly[idx[hi]]
        d = _segment_distances(poly[inner], a, b)
        k = int(np.argmax(d))
        if d[k] > eps:
            keep[inner[k]] = True
            stack += [(lo, lo + 1 + k), (lo + 1 + k, hi)]


def simplify_rdp(poly, eps: float) -> np.ndarray:
    """Ramer–Douglas–Peucker simplification of a closed convex CCW polygon (M, 2).

    Removed vertices lie within `eps` (rad) of the kept edge that replaces them. The result is
    a subset of the vertices in their original order (so it stays convex and CCW), with at
    least 3 vertices.
    """
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "simplify_rdp input")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite distance >= 0 (radians), got {eps}")
    m = len(p)
    if m <= 3:
        return p.copy()
    dist = np.hypot(*(p[:, None, :] - p[None, :, :]).transpose(2, 0, 1))
    i0, i1 = (int(k) for k in np.unravel_index(np.argmax(dist), dist.shape))
    i0, i1 = min(i0, i1), max(i0, i1)
    keep = np.zeros(m, dtype=bool)
    keep[[i0, i1]] = True
    _rdp_chain(p, np.arange(i0, i1 + 1), eps, keep)
    _rdp_chain(p, np.r_[np.arange(i1, m), np.arange(0, i0 + 1)], eps, keep)
    if keep.sum() < 3:                             # everything within eps of the diameter
        d = _segment_distances(p, p[i0], p[i1])
        d[[i0, i1]] = -1.0
        keep[int(np.argmax(d))] = True
    return p[keep]


def _chord_fails(rows: np.ndarray, poly: np.ndarray, cols, tol: float) -> np.ndarray:
    """(R, len(cols)) bool: row strictly right of the chord v_{i-1} -> v_{i+1} that replaces
    vertex i (i in cols) of the polygon (M, 2), i.e. lost if vertex i is removed."""
    m = len(poly)
    cols = np.asarray(cols)
    return _signed_line_distances(rows, poly[(cols - 1) % m], poly[(cols + 1) % m]) < -tol


def _kept_counts(fail: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per vertex (M,): distinct points still inside if that vertex is removed, from the
    chord-failure matrix (R, M) of the inside copies with point ids (R,), ascending."""
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else ids
    if len(first) == len(ids):                     # no point has two inside copies
        return len(ids) - fail.sum(0)
    return np.logical_or.reduceat(~fail, first, axis=0).sum(0)


def prune_vertices(poly, points, min_coverage: float) -> np.ndarray:
    """Greedy vertex pruning of a convex CCW polygon (M, 2) against points (N, 2).

    Repeatedly removes the vertex whose removal keeps the most points inside (ties: the one
    cutting off the smallest area), as long as the coverage after removal stays
    >= min_coverage (0..1); never goes below 3 vertices. Returns the pruned polygon, a subset
    of the vertices in order (still convex CCW). Inside test as in points_in_polygon (tol 1e-9).
    """
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "prune_vertices input")
    pts = _as_points(points)
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}")
    tol, n = 1e-9, len(pts)
    # removing a vertex only shrinks the polygon: track the copies inside it, and per vertex
    # which of them its chord would cut off; after a removal only 2 chords change
    rows, ids = _inside_copies(pts, p, tol)
    fail = _chord_fails(rows, p, np.arange(len(p)), tol)
    while len(p) > 3:
        cov = _kept_counts(fail, ids) / n
        lost_area = 0.5 * _cross(p - np.roll(p, 1, axis=0), np.roll(p, -1, axis=0) - p)
        best = int(np.lexsort((lost_area, -cov))[0])   # most coverage, then least area
        if cov[best] < min_coverage:
            break
        keep = ~fail[:, best]
        rows, ids = rows[keep], ids[keep]
        p = np.delete(p, best, axis=0)
        fail = np.delete(fail[keep], best, axis=1)
        nbrs = np.array([best - 1, best]) % len(p)     # the two vertices beside the removed one
        fail[:, nbrs] = _chord_fails(rows, p, nbrs, tol)
    return p


def offset_polygon(poly, margin: float) -> np.ndarray:
    """Move every edge of a convex CCW polygon (M, 2) outward by `margin` >= 0 (rad).

    Vertex i becomes the intersection of the offset lines of its two edges, so vertex count
    and order are kept and edge i of the result lies at distance `margin` outside edge i.
    margin 0 returns a copy. Flexion may leave (-pi, pi] and abduction [-pi/2, pi/2]; the inside
    tests handle that.
    """
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "offset_polygon input")
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite distance >= 0 (radians), got {margin}")
    if margin == 0:
        return p.copy()
    e = _edge_vectors(p)
    n = np.stack([e[:, 1], -e[:, 0]], -1) / np.hypot(e[:, 0], e[:, 1])[:, None]  # outward
    n_in = np.roll(n, 1, axis=0)                   # normal of the edge arriving at vertex i
    # x = v + m (n_in + n) / (1 + n_in . n) satisfies n_in.x = n_in.v + m and n.x = n.v + m
    return p + margin * (n_in + n) / (1.0 + (n_in * n).sum(-1))[:, None]


def fit_hull(points, eps: float = 5e-4, min_coverage: float = 0.9995,
             margin: float = 0.0) -> np.ndarray:
    """Fit a hull to joint angles (N, 2) (flexion, abduction; radians) -> CCW (M, 2).

    Convex hull -> RDP(eps rad) -> offset outward by eps (RDP only cuts inwards, by at most
    eps, so this restores every point: coverage 1) -> prune vertices while coverage >=
    min_coverage -> offset outward by margin rad. The result therefore always covers
    >= min_coverage of the points, even when many lie on the hull boundary (e.g. clipped data).
    Flexion is not unwrapped: angles should not straddle ±pi. Raises ValueError for NaN/inf,
    fewer than 3 non-collinear points, or a cloud of (near) zero area.
    """
    p = _as_points(points)
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p).all(1)).sum())
        raise ValueError(f"fit_hull: {bad} of {len(p)} angle rows contain NaN or inf; "
                         f"drop them before fitting")
    try:
        hull = convex_hull(p)
        check_polygon(hull, "convex hull")
    except ValueError as err:
        raise ValueError(f"fit_hull: the {len(p)} angle pairs span no area ({err}); a joint "
                         f"without abduction range needs jittered data, not a hull") from None
    hull = offset_polygon(simplify_rdp(hull, eps), eps)
    hull = prune_vertices(hull, p, min_coverage)
    return offset_polygon(hull, margin)


def pad_hulls(polys) -> tuple[np.ndarray, np.ndarray]:
    """Pad H polygons (M_i, 2) to a common M_max by repeating each one's last vertex.

    Returns verts (H, M_max, 2) float64 and counts (H,) int64 (the true M_i). The repeats add
    zero-length edges, which change neither the inside tests nor hull_distance.
    """
    polys = list(polys)
    if not polys:
        raise ValueError("pad_hulls needs at least one polygon")
    arrs = []
    for h, q in enumerate(polys):
        q = np.asarray(q, dtype=np.float64)
        check_polygon(q, f"hull {h}")
        arrs.append(q)
    counts = np.array([len(q) for q in arrs], dtype=np.int64)
    m_max = int(counts.max())
    verts = np.stack([np.concatenate([q, np.repeat(q[-1:], m_max - len(q), axis=0)])
                      for q in arrs])
    return verts, counts


# ---------------------------------------------------------------------------------- editing
def _edited(new: np.ndarray, what: str) -> np.ndarray:
    """Return `new` if it is a valid convex CCW polygon, else ValueError(f"{what}: reason")."""
    reason = polygon_problem(new)
    if reason is not None:
        raise ValueError(f"{what} would leave an invalid hull: {reason}")
    return new


def move_vertex(poly, i: int, new_xy) -> np.ndarray:
    """Copy of poly (M, 2) with vertex i moved to new_xy (flexion, abduction; rad)."""
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "polygon")
    k = _vertex_index(i, len(p))
    xy = _as_xy(new_xy, "new_xy")
    new = p.copy()
    new[k] = xy
    return _edited(new, f"moving vertex {k} to ({xy[0]:.4g}, {xy[1]:.4g})")


def insert_vertex(poly, xy) -> np.ndarray:
    """Copy of poly (M, 2) with the point xy (rad) inserted into the edge closest to it where
    the result stays convex CCW (tried in order of point-to-edge distance)."""
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "polygon")
    xy = _as_xy(xy, "xy")
    order = np.argsort(_segment_distances(xy, p, np.roll(p, -1, axis=0)), kind="stable")
    first_reason = None
    for j in order:                                # <= M tries, M is small
        new = np.insert(p, j + 1, xy, axis=0)
        reason = polygon_problem(new)
        if reason is None:
            return new
        first_reason = first_reason or (int(j), reason)
    j, reason = first_reason
    raise ValueError(f"inserting ({xy[0]:.4g}, {xy[1]:.4g}) would leave an invalid hull at every "
                     f"position (closest edge {j}->{(j + 1) % len(p)}: {reason}); a new vertex "
                     f"must lie outside the hull, beyond exactly one edge")


def delete_vertex(poly, i: int) -> np.ndarray:
    """Copy of poly (M, 2) without vertex i; refuses to go below 3 vertices."""
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "polygon")
    k = _vertex_index(i, len(p))
    if len(p) <= 3:
        raise ValueError(f"cannot delete vertex {k}: a hull needs at least 3 vertices "
                         f"(it has {len(p)})")
    return _edited(np.delete(p, k, axis=0), f"deleting vertex {k}")


def scale_polygon(poly, factor: float, center=None) -> np.ndarray:
    """Copy of poly (M, 2) scaled by factor > 0 about `center` (2,) (rad); default: the area
    centroid."""
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "polygon")
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"scale factor must be finite and > 0, got {factor}")
    c = _centroid(p) if center is None else _as_xy(center, "center")
    return _edited(c + factor * (p - c), f"scaling by {factor:.4g}")


def translate_polygon(poly, dxy) -> np.ndarray:
    """Copy of poly (M, 2) shifted by dxy = (dflexion, dabduction) (rad)."""
    p = np.asarray(poly, dtype=np.float64)
    check_polygon(p, "polygon")
    d = _as_xy(dxy, "dxy")
    return _edited(p + d, f"translating by ({d[0]:.4g}, {d[1]:.4g})")


# ------------------------------------------------------------------------------------ torch
def hull_distance(theta: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
    """Differentiable distance of joint angles to their hulls.

    theta: (..., H, 2) (flexion, abduction) in radians; verts: (H, M, 2) padded CCW hulls
    (pad_hulls). Returns (..., H) in theta's dtype/device: 0 inside (cross product
    edge x (theta - vertex) >= -1e-6 for every edge), otherwise the min over edges of the L1
    distance between the circle embeddings (cos, sin) of both angles of theta and of its
    Euclidean projection onto the edge segment. Flexion is taken modulo 2*pi (into [-pi, pi))
    and the copies at ±2*pi are also tried (inside if any is, distance = min), so the result is
    2*pi-periodic in flexion. Gradients are finite everywhere and 0 inside.
    """
    if not torch.is_tensor(theta):
        raise ValueError(f"theta must be a torch tensor (..., H, 2), got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise ValueError(f"theta must be a floating-point tensor, got {theta.dtype}")
    verts = torch.as_tensor(verts, dtype=theta.dtype, device=theta.device)
    if verts.ndim != 3 or verts.shape[-1] != 2 or verts.shape[1] < 1:
        raise ValueError(f"verts must be (H, M, 2) padded hull vertices, got {tuple(verts.shape)}")
    if theta.ndim < 2 or theta.shape[-1] != 2 or theta.shape[-2] != verts.shape[0]:
        raise ValueError(f"theta must be (..., H, 2) with H = {verts.shape[0]} (one angle pair "
                         f"per hull), got {tuple(theta.shape)}")

    flex = torch.remainder(theta[..., 0] + math.pi, TWO_PI) - math.pi
    base = torch.stack([flex, theta[..., 1]], -1)                       # (..., H, 2)
    shifts = theta.new_tensor([[s, 0.0] for s in _SHIFTS])              # (S, 2)
    x = (base.unsqueeze(-2) + shifts).unsqueeze(-2)                     # (..., H, S, 1, 2)

    a = verts.unsqueeze(1)                                              # (H, 1, M, 2)
    v = torch.roll(verts, -1, dims=1).unsqueeze(1) - a                  # (H, 1, M, 2)
    w = x - a                                                           # (..., H, S, M, 2)
    cross = v[..., 0] * w[..., 1] - v[..., 1] * w[..., 0]               # (..., H, S, M)
    inside = (cross >= -INSIDE_CROSS_TOL).all(-1).any(-1)               # (..., H)

    vv = (v * v).sum(-1)                                                # (H, 1, M)
    nonzero = vv > 0
    t = torch.where(nonzero, (w * v).sum(-1) / torch.where(nonzero, vv, torch.ones_like(vv)),
                    torch.zeros_like(vv)).clamp(0.0, 1.0)
    p = a + t.unsqueeze(-1) * v                                         # (..., H, S, M, 2)
    emb = (torch.cos(x) - torch.cos(p)).abs() + (torch.sin(x) - torch.sin(p)).abs()
    dist = emb.sum(-1).amin(-1).amin(-1)                                # (..., H)
    return torch.where(inside, torch.zeros_like(dist), dist)
