"""Dense 3D regression for depth-based hand pose (Wan et al., "Dense 3D Regression for Hand Pose
Estimation", CVPR 2018): maths only (no network).

- :mod:`.targets`: ``point_map`` (depth crop -> per-cell 3D points at the output stride),
  ``dense_targets`` (2D cone heatmaps h2, 3D ball heatmaps h3, unit offsets u), ``heatmaps_2d``.
- :mod:`.aggregate`: ``votes`` (P + r (1 - h3) u), ``mean_shift`` (order-invariant weighted
  Gaussian mean-shift) and ``aggregate`` (top-N candidates, h2 weights, push behind the observed
  surface, mean-shift).

Conventions: OpenCV camera frame, mm, integer pixel coordinates are pixel centres, output cell i
centred on input px (i + 0.5) * stride - 0.5, depth 0 = missing, K = input-crop intrinsics.
"""
from .aggregate import DEFAULT_BANDWIDTH, DEFAULT_ITERS, DEFAULT_TOP_N, aggregate, mean_shift, votes
from .targets import DEFAULT_CONE, DEFAULT_RADIUS, DEFAULT_STRIDE, dense_targets, heatmaps_2d, point_map

__all__ = [
    "DEFAULT_BANDWIDTH",
    "DEFAULT_CONE",
    "DEFAULT_ITERS",
    "DEFAULT_RADIUS",
    "DEFAULT_STRIDE",
    "DEFAULT_TOP_N",
    "aggregate",
    "dense_targets",
    "heatmaps_2d",
    "mean_shift",
    "point_map",
    "votes",
]
