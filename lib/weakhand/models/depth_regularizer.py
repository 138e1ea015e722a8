"""Depth regulariser of Cai et al. (ECCV'18): 2.5D joints -> normalised hand depth map.

Input (B, K, 3) = (u_n, v_n, d^n) per joint, with u_n = (u + 0.5) / W and v_n = (v + 0.5) / H
(edge-normalised input-image coordinates, the image spans exactly [0, 1]; see regularizer_input)
and d^n the joint depth normalised like the ground-truth map (hand_geometry.normalize_joint_depth:
near -> larger, same d_max and range as the map). Kuzphi feeds raw pixels next to [0, 1] depth;
we normalise all three.

Layout (6 transposed convs; out_size S = 4 * 2**n, n in 1..5, i.e. S in {8, 16, 32, 64, 128}):
  layer 1: ConvT k4 s1 on the (B, 3K, 1, 1) input -> 4 x 4;
  layers 2..6: (5 - n) size-keeping ConvT k3 s1 p1 first (cheap, at 4 x 4), then n upsampling
  ConvT k4 s2 p1 (x2 each; k4/s2 has no checkerboard gaps, unlike Kuzphi's k2/s2).
  S = 128: 4 -> 8 -> 16 -> 32 -> 64 -> 128;  S = 64: 4 -> 4 -> 8 -> 16 -> 32 -> 64.
Layers 1-5: ConvT -> BatchNorm -> Dropout -> ReLU; layer 6: ConvT (1 channel) -> ReLU, so the
map is >= 0 like the target (background 0). Note a final ReLU can die (all-zero output, no
gradient) if the last layer's pre-activations go negative everywhere; watch the loss.

Recommended use (the paper leaves it open; see docs/methods.md §2.3): freeze the regulariser
when fine-tuning on weakly labelled data, or give it a >= 10x lower learning rate.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..skeleton import NUM_JOINTS, _is_torch


def regularizer_input(uv, dn, image_hw: Sequence[float]):
    """Build the regulariser input: uv (..., K, 2) input px, dn (..., K), image_hw = (H, W) ->
    (..., K, 3) = ((u + 0.5) / W, (v + 0.5) / H, dn). Tensor or numpy (follows uv)."""
    H, W = float(image_hw[0]), float(image_hw[1])
    u, v = (uv[..., 0] + 0.5) / W, (uv[..., 1] + 0.5) / H
    if _is_torch(uv):
        return torch.stack([u, v, torch.as_tensor(dn, dtype=u.dtype, device=u.device).expand_as(u)], -1)
    return np.stack(np.broadcast_arrays(u, v, dn), -1)


class DepthRegularizer(nn.Module):
    """(B, K, 3) normalised joints -> (B, 1, S, S) normalised depth map (>= 0).

    widths: channels of layers 1-5 (default (256, 128, 64, 32, 16)); dropout: probability in
    layers 1-5 (default 0.2, our choice; the paper gives none).
    """

    def __init__(self, num_joints: int = NUM_JOINTS, out_size: int = 128,
                 widths: Sequence[int] = (256, 128, 64, 32, 16), dropout: float = 0.2):
        super().__init__()
        n = {8: 1, 16: 2, 32: 3, 64: 4, 128: 5}.get(out_size)
        if n is None:
            raise ValueError(f"out_size must be one of 8, 16, 32, 64, 128, got {out_size}")
        if len(widths) != 5:
            raise ValueError("widths must give the channels of the first five layers")
        self.num_joints, self.out_size = num_joints, out_size
        chans = [3 * num_joints] + list(widths) + [1]
        specs = [(4, 1, 0)] + [(3, 1, 1)] * (5 - n) + [(4, 2, 1)] * n  # (kernel, stride, padding)
        layers = []
        for i, (k, s, p) in enumerate(specs):
            last = i == 5
            layers.append(nn.ConvTranspose2d(chans[i], chans[i + 1], k, s, p, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(chans[i + 1]), nn.Dropout(dropout)]
            layers.append(nn.ReLU(inplace=not last))
        self.net = nn.Sequential(*layers)

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        """joints (B, K, 3) normalised (u_n, v_n, d^n) -> (B, 1, S, S) normalised depth map (>= 0,
        near -> larger, background 0), S = out_size."""
        if joints.shape[-2:] != (self.num_joints, 3):
            raise ValueError(f"expected (B, {self.num_joints}, 3), got {tuple(joints.shape)}")
        return self.net(joints.reshape(joints.shape[0], -1, 1, 1))
