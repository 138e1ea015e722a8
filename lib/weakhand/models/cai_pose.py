"""Cai et al. (ECCV 2018) pose model: the CPM-style 2D heatmap network (soft-argmax readout) and
the depth regression on its features and heatmaps, as one module.

Input images are (B, 3, S, S) in [0, 1], standardised inside the model with
``(x − IMAGE_MEAN) / IMAGE_STD``. Outputs are in input pixels (uv) and in units of the scale
bone (zn: root-relative depth / length of the middle MCP→PIP bone)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .depth_regression import DepthRegressionNet
from .pose2d import Pose2DNet

IMAGE_MEAN, IMAGE_STD = 0.5, 0.25  # inputs in [0,1] are standardised inside the model


@dataclass
class PoseNetConfig:
    """Architecture of :class:`CaiPoseNet` and the σ (heatmap pixels) of its Gaussian heatmap
    targets; stored in checkpoints as ``config["net"]``."""
    width: int = 16          # encoder width (channels of the first block)
    depth: int = 2           # downsampling blocks: heatmaps at 1/2**depth of the input
    n_stages: int = 3        # CPM stages (intermediate supervision on each)
    beta: float = 20.0       # soft-argmax temperature (fixed)
    reg_width: int = 32      # regression-net conv width
    reg_hidden: int = 128    # regression-net FC width
    sigma: float = 2.0       # Gaussian target sigma, heatmap pixels

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON- and checkpoint-safe; no arrays, units as above)."""
        return asdict(self)


class CaiPoseNet(nn.Module):
    """Image (B,3,S,S) in [0,1] -> {"heatmaps": [per stage (B,21,h,w)], "uv": (B,21,2) input px,
    "zn": (B,21) root-relative depth in units of the scale bone (middle MCP->PIP)}."""

    def __init__(self, cfg: PoseNetConfig = PoseNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.pose = Pose2DNet(width=cfg.width, depth=cfg.depth, n_stages=cfg.n_stages, beta=cfg.beta)
        self.reg = DepthRegressionNet(self.pose.feature_channels, width=cfg.reg_width,
                                      hidden=cfg.reg_hidden)

    @property
    def stride(self) -> float:
        """Input pixels per heatmap cell (2**depth)."""
        return float(self.pose.stride)

    def forward(self, batch: dict | torch.Tensor, head_only: torch.Tensor | None = None) -> dict:
        """`head_only` (B,) bool: for these samples the depth regression sees detached features
        and heatmaps, in a forward pass of its own (its BatchNorm statistics would otherwise carry
        their gradient to the other samples' features), so losses on their zn train the depth
        regression only, never the 2D network (Cai et al. §3.3 for the regulariser)."""
        img = batch["image"] if isinstance(batch, dict) else batch
        out = self.pose((img - IMAGE_MEAN) / IMAGE_STD)
        feats, hm = out["features"], out["heatmaps"][-1]
        if head_only is None or not bool(head_only.any()):
            out["zn"] = self.reg(feats, hm)
            return out
        m = head_only.to(feats.device).bool()
        zn = feats.new_zeros(feats.shape[0], self.reg.num_joints)
        zn = zn.index_put((m,), self.reg(feats[m].detach(), hm[m].detach()))
        if bool((~m).any()):
            zn = zn.index_put((~m,), self.reg(feats[~m], hm[~m]))
        out["zn"] = zn
        return out
