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
from .hand_geometry import normalize_depth_map, normalize_joint_depth


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


# ----------------------------------------------------------------------------- targets and inputs

MIN_HAND_PIXELS = 16     # fewer valid hand pixels (full-resolution crop): no depth-map target
MIN_DEPTH_RANGE_MM = 5.0  # floor of d_range: a degenerate map must not blow up the joint input


def depth_map_targets(batch: dict, out_size: int) -> dict:
    """Normalised depth-map targets of a batch at the regulariser's resolution.

    dn = (d_max − D)/d_range on hand pixels (near → larger), background 0 (paper Eq. 4–5), with
    d_max/d_range from the hand-mask pixels of the full-resolution crop; the same d_max and
    range normalise the joints. pixel_valid excludes sensor holes inside the hand (depth 0 under
    the mask), which are not "background". ``enough`` (B,) marks samples with at least
    MIN_HAND_PIXELS valid hand pixels: the others have no usable map and must not even enter the
    regulariser's forward pass (their joint input would be ~1e5 and poison BatchNorm statistics).
    d_range is floored at MIN_DEPTH_RANGE_MM.

    batch: ``depth`` (B, 1, H, W) mm (0 = hole), ``mask`` (B, 1, H, W) hand mask. Returns
    {"map": (B, 1, S, S) normalised depth, "pixel_valid": (B, 1, S, S) bool, "d_max": (B,) mm,
    "d_range": (B,) mm, "enough": (B,) bool, "hand": (B, 1, S, S) hand-pixel fraction}, S = out_size.
    """
    depth = batch["depth"][:, 0].float()
    mask = batch["mask"][:, 0].float()
    dn, d_max, d_range = normalize_depth_map(depth, mask, eps=MIN_DEPTH_RANGE_MM)
    n_hand = ((mask > 0) & (depth > 0)).flatten(1).sum(-1)
    valid = ((depth > 0) | (mask == 0)).float()
    size = (out_size, out_size)
    dn_s = torch.nn.functional.interpolate(dn[:, None], size=size, mode="area")
    valid_s = torch.nn.functional.interpolate(valid[:, None], size=size, mode="area") > 0.999
    hand_s = torch.nn.functional.interpolate(mask[:, None], size=size, mode="area")
    return {"map": dn_s, "pixel_valid": valid_s, "d_max": d_max, "d_range": d_range,
            "enough": n_hand >= MIN_HAND_PIXELS, "hand": hand_s}


def regularizer_input_from_3d(kp2d: torch.Tensor, z_mm: torch.Tensor, d_max: torch.Tensor,
                              d_range: torch.Tensor, image_hw) -> torch.Tensor:
    """(B,21,3) regulariser input: (u, v) normalised to [0,1] and joint depth normalised with
    the depth map's d_max and range (may fall slightly outside [0,1]: joints are inside the skin).

    kp2d (B, 21, 2) input px; z_mm (B, 21) camera-frame depth mm; d_max, d_range (B,) mm;
    image_hw the (H, W) of the input image in px."""
    dn = normalize_joint_depth(z_mm, d_max, d_range)  # d_max, d_range: (B,)
    return regularizer_input(kp2d, dn, image_hw)
