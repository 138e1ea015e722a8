"""Network models: Cai et al. (ECCV'18) 2D CPM, depth regression and depth regulariser; the
2.5D latent-heatmap network and root-depth recovery (Iqbal et al., Spurr et al.); Wan et al.'s
stacked-hourglass dense depth network; and the geometry they share."""
from __future__ import annotations

from torch import nn

from .cai_pose import CaiPoseNet, PoseNetConfig
from .depth_regression import DepthRegressionNet
from .depth_regularizer import (DepthRegularizer, depth_map_targets, regularizer_input,
                                regularizer_input_from_3d)
from .hourglass import (DenseDepthNet, coordinate_maps, dense_loss, downsample_depth,
                        normalize_depth_crop, unit_vectors)
from .hand_geometry import (denormalize_joint_depth, normalize_depth_map, normalize_joint_depth,
                            reconstruct_3d, root_relative_depth)
from .pose2d import (DEFAULT_BETA, DEFAULT_SIGMA, Encoder, Pose2DNet, gaussian_heatmaps, heatmap_to_input,
                     input_to_heatmap, soft_argmax)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with requires_grad unless trainable_only=False)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "CaiPoseNet", "DEFAULT_BETA", "DEFAULT_SIGMA", "DenseDepthNet", "DepthRegressionNet",
    "DepthRegularizer", "Encoder", "Pose2DNet", "PoseNetConfig", "coordinate_maps",
    "count_parameters", "denormalize_joint_depth", "dense_loss", "depth_map_targets",
    "downsample_depth", "gaussian_heatmaps", "heatmap_to_input", "input_to_heatmap",
    "normalize_depth_crop", "normalize_depth_map", "normalize_joint_depth", "reconstruct_3d",
    "regularizer_input", "regularizer_input_from_3d", "root_relative_depth", "soft_argmax",
    "unit_vectors",
]
