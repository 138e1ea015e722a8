"""Depth regression network of Cai et al. (ECCV'18): image features + heatmaps -> joint depths.

Output z^n_k = (Z_k - Z_root) / s per joint (root = wrist, joint 0; s = |X_9 - X_10|, the middle
MCP -> PIP bone, skeleton.SCALE_BONE), see hand_geometry.root_relative_depth. 3D is recovered
with hand_geometry.reconstruct_3d from the 2D keypoints, K, and a root depth and scale.

Deviation from Kuzphi/UniversalHand3dFrame (the only public re-implementation): Kuzphi stacks
its three FC layers without activations (a single linear map in disguise); we put ReLUs between
them as the paper's "3 FC layers" implies. Kuzphi also flattens the full 32x32 maps; we
adaptive-average-pool to pool x pool first so any input size works and the FC stays small.
"""
from __future__ import annotations

import torch
from torch import nn

from ..skeleton import NUM_JOINTS, ROOT


class DepthRegressionNet(nn.Module):
    """concat(features, heatmaps) -> 2 convs -> adaptive avg pool -> 3 FCs -> (B, K) z^n.

    conv1: 3x3, (in_channels + K) -> width, BN, ReLU; conv2: 3x3 stride 2, width -> width, BN,
    ReLU; AdaptiveAvgPool2d(pool); FC width*pool^2 -> hidden, ReLU, FC hidden -> hidden, ReLU,
    FC hidden -> K - 1. The root entry is inserted as exactly 0 (root-relative by construction).

    in_channels: channels of the image features (Pose2DNet.feature_channels).
    forward(features (B, C, h, w), heatmaps (B, K, h, w)) -> (B, K) unitless (units of s).
    """

    def __init__(self, in_channels: int, num_joints: int = NUM_JOINTS, width: int = 64, pool: int = 4,
                 hidden: int = 256, root: int = ROOT, batch_norm: bool = True):
        super().__init__()
        self.num_joints, self.root = num_joints, root

        def conv(cin, cout, stride):
            layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=not batch_norm)]
            return layers + ([nn.BatchNorm2d(cout)] if batch_norm else []) + [nn.ReLU(inplace=True)]

        self.convs = nn.Sequential(*conv(in_channels + num_joints, width, 1), *conv(width, width, 2),
                                   nn.AdaptiveAvgPool2d(pool), nn.Flatten())
        self.fcs = nn.Sequential(nn.Linear(width * pool * pool, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, num_joints - 1))

    def forward(self, features: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        """features (B, C, h, w), heatmaps (B, K, h, w) -> z^n (B, K) in scale-bone units
        (root-relative depth / middle MCP -> PIP length), exactly 0 at the root."""
        if features.shape[-2:] != heatmaps.shape[-2:]:
            raise ValueError(f"features {tuple(features.shape)} and heatmaps {tuple(heatmaps.shape)} differ in size")
        z = self.fcs(self.convs(torch.cat([features, heatmaps], 1)))
        zero = z.new_zeros(z.shape[:-1] + (1,))
        return torch.cat([z[..., : self.root], zero, z[..., self.root:]], -1)
