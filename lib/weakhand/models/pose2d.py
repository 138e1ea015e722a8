"""CPM-style 2D hand-pose network with a differentiable soft-argmax readout (Cai et al. stage 1).

Pixel convention (shared with weakhand.camera): integer pixel coordinates are pixel centres.
A heatmap of output stride s has cell (row j, column i) centred on the input pixel

    u_in = (i + 0.5) * s - 0.5,    v_in = (j + 0.5) * s - 0.5,

i.e. the s x s block of input pixels [i*s, (i+1)*s - 1] is summarised by cell i. The same map is
used by gaussian_heatmaps (targets) and soft_argmax (readout), so uv -> heatmaps -> soft_argmax
is a round trip.

Readout default: ``mode="softmax"`` with a **fixed** beta = 20 (``learn_beta=True`` makes it a
learnable positive scalar, Iqbal et al.). The 2D network is trained with MSE towards unit-peak
Gaussian targets (sigma = 2 heatmap px by default), so its maps live in [0, 1]; beta must be large
enough that the flat background (N cells at weight ~e^0) is negligible against the peak (~e^beta)
yet small enough that the sharpened peak (width ~sigma/sqrt(beta)) is still sampled by several
cells. beta = 20 with sigma = 2 gives a readout bias < 0.05 heatmap px on exact targets; beta = 1
would pull every estimate towards the map centre by several cells. ``mode="relu"`` (ReLU, then
normalise by the sum) is unbiased on interior Gaussian targets and has no temperature.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..camera import heatmap_to_input, input_to_heatmap  # the grid convention, re-exported
from ..skeleton import NUM_JOINTS, _is_torch

DEFAULT_BETA = 20.0
DEFAULT_SIGMA = 2.0  # heatmap pixels (= 8 input px at stride 4)


# ----------------------------------------------------------------------------------------------
# heatmap <-> coordinates


def soft_argmax(heatmaps: torch.Tensor, beta=DEFAULT_BETA, mode: str = "softmax",
                stride: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Expected location under a normalised heatmap: (..., h, w) -> (..., 2) = (u, v) in input px.

    mode="softmax": p = softmax(beta * H) over the h*w cells (beta: float or scalar tensor,
    e.g. a learnable parameter); mode="relu": p = (ReLU(H) + eps/N) / (sum ReLU(H) + eps), which
    falls back to the uniform distribution (map centre) for an all-non-positive map and keeps
    gradients finite. beta is ignored in relu mode. Returns sum_p p * coord, mapped to input
    pixels with the module convention u = (i + 0.5) * stride - 0.5 (stride=1: heatmap pixels).
    Follows the heatmaps' dtype/device.
    """
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.reshape(heatmaps.shape[:-2] + (h * w,))
    if mode == "softmax":
        p = torch.softmax(flat * beta, dim=-1)
    elif mode == "relu":
        r = torch.relu(flat)
        p = (r + eps / (h * w)) / (r.sum(-1, keepdim=True) + eps)
    else:
        raise ValueError(f"mode must be 'softmax' or 'relu', got {mode!r}")
    p = p.reshape(heatmaps.shape)
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    u = (p.sum(-2) * xs).sum(-1)  # marginal over rows, then E[i]
    v = (p.sum(-1) * ys).sum(-1)
    return heatmap_to_input(torch.stack([u, v], -1), stride)


def gaussian_heatmaps(uv, size_hw: Sequence[int], stride: float = 4.0, sigma: float = DEFAULT_SIGMA):
    """Unit-peak Gaussian targets: uv (..., K, 2) input px -> (..., K, h, w).

    size_hw = (h, w) is the *heatmap* size; sigma is in heatmap pixels. The Gaussian is centred at
    the heatmap coordinate of uv (see module docstring), so a keypoint on a cell centre gives 1 in
    that cell. Keypoints with any NaN coordinate give all-zero maps. numpy in -> numpy out,
    tensor in -> tensor (same dtype/device; integer input -> default float dtype).
    """
    h, w = int(size_hw[0]), int(size_hw[1])
    if _is_torch(uv):
        if not uv.dtype.is_floating_point:
            uv = uv.to(torch.get_default_dtype())
        c = input_to_heatmap(uv, stride)
        xs = torch.arange(w, dtype=uv.dtype, device=uv.device)
        ys = torch.arange(h, dtype=uv.dtype, device=uv.device)
        gx = torch.exp(-((xs - c[..., 0:1]) ** 2) / (2 * sigma**2))  # (..., K, w)
        gy = torch.exp(-((ys - c[..., 1:2]) ** 2) / (2 * sigma**2))  # (..., K, h)
        g = gy[..., :, None] * gx[..., None, :]
        bad = torch.isnan(uv).any(-1)[..., None, None]
        return torch.where(bad, torch.zeros((), dtype=g.dtype, device=g.device), g)
    uv = np.asarray(uv, dtype=np.result_type(np.asarray(uv).dtype, np.float32))
    c = input_to_heatmap(uv, stride)
    gx = np.exp(-((np.arange(w, dtype=uv.dtype) - c[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((np.arange(h, dtype=uv.dtype) - c[..., 1:2]) ** 2) / (2 * sigma**2))
    g = gy[..., :, None] * gx[..., None, :]
    return np.where(np.isnan(uv).any(-1)[..., None, None], 0.0, g).astype(uv.dtype)


# ----------------------------------------------------------------------------------------------
# network


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, bn: bool = True) -> nn.Sequential:
    """k x k conv ('same' padding for stride 1) + optional BatchNorm + ReLU."""
    layers = [nn.Conv2d(cin, cout, k, stride, padding=dilation * (k - 1) // 2, dilation=dilation, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Image (B, C_in, H, W) -> features (B, width * 2**depth, H / 2**depth, W / 2**depth).

    Stem: two 3x3 convs at full resolution; then `depth` blocks of (3x3 stride-2 conv, 3x3 conv),
    each doubling the channels.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, depth: int = 2, batch_norm: bool = True):
        super().__init__()
        layers = [_conv(in_channels, width, bn=batch_norm), _conv(width, width, bn=batch_norm)]
        c = width
        for _ in range(depth):
            layers += [_conv(c, 2 * c, stride=2, bn=batch_norm), _conv(2 * c, 2 * c, bn=batch_norm)]
            c *= 2
        self.body = nn.Sequential(*layers)
        self.out_channels = c
        self.stride = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C_in, H, W) -> features (B, out_channels, H / stride, W / stride)."""
        return self.body(x)


class Pose2DNet(nn.Module):
    """Convolutional-pose-machine 2D keypoint network.

    Stage 1: F -> 3x3 conv -> 1x1 conv -> 1x1 conv to K heatmaps. Stage t > 1: concat(F, H_{t-1})
    -> len(stage_dilations) convs of stage_kernel x stage_kernel (default three 7x7, receptive field
    +18 cells per stage) -> 1x1 conv -> 1x1 conv to K heatmaps. Heatmap heads are linear (no
    activation), trained by MSE towards gaussian_heatmaps at every stage.

    Args: num_joints K; width (encoder base channels; features have width * 2**depth channels);
    depth (number of stride-2 blocks, output stride 2**depth, default 4); n_stages (>= 1, default 3;
    the paper's CPM uses 6); stage_width (hidden channels of the stages, default 2 * width);
    stage_kernel / stage_dilations (e.g. 3 and (1, 2, 4, 8) for dilated 3x3 stages); readout,
    beta, learn_beta (see soft_argmax / module docstring); batch_norm.

    forward(img (B, C_in, H, W), H and W multiples of the stride) -> dict:
      "heatmaps": list of n_stages tensors (B, K, H/s, W/s);
      "features": F (B, self.feature_channels, H/s, W/s);
      "uv": (B, K, 2) last-stage soft-argmax in input-image pixels.
    """

    def __init__(self, num_joints: int = NUM_JOINTS, width: int = 32, depth: int = 2, n_stages: int = 3,
                 stage_width: int | None = None, stage_kernel: int = 7,
                 stage_dilations: Sequence[int] = (1, 1, 1), readout: str = "softmax",
                 beta: float = DEFAULT_BETA, learn_beta: bool = False, in_channels: int = 3,
                 batch_norm: bool = True):
        super().__init__()
        if n_stages < 1:
            raise ValueError("n_stages must be >= 1")
        if readout not in ("softmax", "relu"):
            raise ValueError(f"readout must be 'softmax' or 'relu', got {readout!r}")
        self.num_joints, self.readout = num_joints, readout
        self.encoder = Encoder(in_channels, width, depth, batch_norm)
        self.stride = self.encoder.stride
        self.feature_channels = cf = self.encoder.out_channels
        sw = stage_width or 2 * width
        self.stages = nn.ModuleList([nn.Sequential(
            _conv(cf, sw, 3, bn=batch_norm), _conv(sw, sw, 1, bn=batch_norm), nn.Conv2d(sw, num_joints, 1))])
        for _ in range(n_stages - 1):
            layers, c = [], cf + num_joints
            for d in stage_dilations:
                layers.append(_conv(c, sw, stage_kernel, dilation=d, bn=batch_norm))
                c = sw
            layers += [_conv(c, sw, 1, bn=batch_norm), nn.Conv2d(sw, num_joints, 1)]
            self.stages.append(nn.Sequential(*layers))
        if learn_beta:
            self.log_beta = nn.Parameter(torch.tensor(math.log(beta)))
        else:
            self.register_buffer("log_beta", torch.tensor(math.log(beta)))

    @property
    def beta(self) -> torch.Tensor:
        """Softmax temperature (positive scalar tensor)."""
        return self.log_beta.exp()

    def forward(self, img: torch.Tensor) -> dict:
        """img (B, C_in, H, W) (H, W multiples of the stride s) -> {"heatmaps": n_stages x
        (B, K, H/s, W/s), "features": (B, feature_channels, H/s, W/s), "uv": (B, K, 2) input px}."""
        s = self.stride
        if img.shape[-2] % s or img.shape[-1] % s:
            raise ValueError(f"input H, W must be multiples of the stride {s}, got {tuple(img.shape[-2:])}")
        feats = self.encoder(img)
        heatmaps = [self.stages[0](feats)]
        for stage in self.stages[1:]:
            heatmaps.append(stage(torch.cat([feats, heatmaps[-1]], 1)))
        beta = self.beta.to(heatmaps[-1].dtype)
        uv = soft_argmax(heatmaps[-1], beta=beta, mode=self.readout, stride=s)
        return {"heatmaps": heatmaps, "features": feats, "uv": uv}
