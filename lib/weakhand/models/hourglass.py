"""Dense 3D regression network of Wan et al., "Dense 3D Regression for Hand Pose Estimation"
(CVPR 2018), small and configurable.

Pipeline (one depth crop per hand):

1. ``normalize_depth_crop``: depth [mm] -> d_n in [0, 1] inside a cube of depth ``window`` mm
   centred on the hand centre, -1 for missing / out-of-window pixels.
2. ``DenseDepthNet``: stacked hourglasses at output stride 4 with three dense heads per stack:
   H2 (2D heatmaps), H3 (3D "closeness" heatmaps) and U (3D unit vectors pointing from each cell
   towards each joint). The 3D heads see the (u, v, d) coordinate maps of the cells
   (``coordinate_maps``) as extra input channels, as in the paper.
3. ``dense_loss``: L2 on H2 (all cells), H3 (valid cells) and U (valid cells with H3 target > 0),
   summed over the stacks (intermediate supervision).

Joint positions are recovered by the caller by mean-shift / weighted voting of
``cell_xyz + r * (1 - h3) * u`` (not part of this module).

Conventions:

* Heatmap cell (row j, column i) at output stride s = 4 is centred on the input pixel
  ((i + 0.5) * s - 0.5, (j + 0.5) * s - 0.5) (same convention as ``models.pose2d``).
  ``coordinate_maps`` maps that to u = (i + 0.5) / w * 2 - 1, i.e. the normalised coordinate
  of the cell centre with the crop's outer *edges* at -1 and +1 (the ``grid_sample``
  ``align_corners=False`` convention); all values lie strictly inside (-1, 1).
* The normalised depth of a cell (channel 3 of the coordinate maps) is the mean of the valid
  (>= 0) input pixels of its 4 x 4 block, -1 if the block has none (``downsample_depth``).
  ``downsample_depth(dn) >= 0`` is the natural ``valid`` mask for ``dense_loss``.
* H2 / H3 are linear (raw) outputs, trained with L2 towards targets in [0, 1]; clamp them at
  inference if needed. U is normalised to unit length per cell and joint (zero vectors stay 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..skeleton import NUM_JOINTS

STRIDE = 4  # output stride of the network (7x7 stride-2 stem conv + 2x2 max pool)
HEADS = ("dense", "direct")


# ----------------------------------------------------------------------------------------------
# inputs


def normalize_depth_crop(depth_mm: torch.Tensor, center_z, window: float = 300.0) -> torch.Tensor:
    """Normalise a depth crop to the hand's depth window.

    depth_mm: (B, 1, S, S) depth in millimetres (0 / negative / NaN = missing; integer sensor
    maps are converted to float32). center_z: (B,) depth of the hand centre in mm (a python
    float or 0-d tensor is broadcast to the batch). window: depth extent of the cube in mm
    (default 300 mm, i.e. +-150 mm around center_z).

    Returns (B, 1, S, S), unitless: d_n = (depth - (center_z - window / 2)) / window, clipped to
    [0, 1], for valid pixels (depth > 0 and center_z - window/2 <= depth <= center_z + window/2,
    both edges included: near edge -> 0, far edge -> 1); -1 for missing pixels and pixels outside
    the window. Follows the input's device and floating dtype.
    """
    if depth_mm.dim() != 4 or depth_mm.shape[1] != 1:
        raise ValueError(f"depth_mm must be (B, 1, S, S), got {tuple(depth_mm.shape)}")
    window = float(window)
    if not window > 0:
        raise ValueError(f"window must be > 0 mm, got {window}")
    depth = depth_mm if depth_mm.dtype.is_floating_point else depth_mm.to(torch.float32)
    b = depth.shape[0]
    cz = torch.as_tensor(center_z, dtype=depth.dtype, device=depth.device)
    if cz.dim() == 0:
        cz = cz.expand(b)
    if cz.shape != (b,):
        raise ValueError(f"center_z must be (B,) = ({b},) mm, got {tuple(cz.shape)}")
    near = (cz - window / 2).reshape(b, 1, 1, 1)
    far = (cz + window / 2).reshape(b, 1, 1, 1)
    # validity from the raw depths (NaN compares False), so rounding cannot drop the window edges
    ok = (depth > 0) & (depth >= near) & (depth <= far)
    dn = ((depth - near) / window).clamp(0.0, 1.0)
    return torch.where(ok, dn, torch.full_like(dn, -1.0))


def downsample_depth(dn: torch.Tensor, factor: int = STRIDE) -> torch.Tensor:
    """(B, 1, H, W) normalised depth -> (B, 1, H/factor, W/factor).

    Each output cell is the mean of the valid (>= 0) pixels of its factor x factor block, or -1
    when the block has no valid pixel (so missing pixels never drag the depth towards -1).
    """
    x = dn.float()
    valid = (x >= 0).to(x.dtype)
    total = F.avg_pool2d(x * valid, factor)
    frac = F.avg_pool2d(valid, factor)
    out = torch.where(frac > 0, total / frac.clamp_min(1e-12), torch.full_like(total, -1.0))
    return out.to(dn.dtype)


def coordinate_maps(B: int, h: int, w: int, dn_lowres: torch.Tensor) -> torch.Tensor:
    """(u, v, d) coordinate maps of an h x w grid of cells -> (B, 3, h, w).

    Channel 0: u = (i + 0.5) / w * 2 - 1 (column i), channel 1: v = (j + 0.5) / h * 2 - 1 (row j),
    i.e. cell centres in [-1, 1] with the crop edges at -1 / +1; channel 2: the normalised depth
    dn_lowres (B, 1, h, w) of the cell (-1 = missing). Follows dn_lowres' device and dtype.
    """
    if dn_lowres.shape != (B, 1, h, w):
        raise ValueError(f"dn_lowres must be (B, 1, h, w) = {(B, 1, h, w)}, got {tuple(dn_lowres.shape)}")
    dtype = dn_lowres.dtype if dn_lowres.dtype.is_floating_point else torch.float32
    kw = dict(dtype=dtype, device=dn_lowres.device)
    u = (torch.arange(w, **kw) + 0.5) / w * 2 - 1
    v = (torch.arange(h, **kw) + 0.5) / h * 2 - 1
    uu = u.view(1, 1, 1, w).expand(B, 1, h, w)
    vv = v.view(1, 1, h, 1).expand(B, 1, h, w)
    return torch.cat([uu, vv, dn_lowres.to(dtype)], 1)


def unit_vectors(v: torch.Tensor, dim: int = 2, eps: float = 1e-6) -> torch.Tensor:
    """v / max(|v|, eps) along `dim`, e.g. (B, J, 3, h, w) -> (B, J, 3, h, w) unitless; zero
    vectors stay zero with finite gradients.

    The norm is taken in float32 (safe under fp16 autocast) and the result cast back to v's dtype.
    """
    x = v.float()
    norm = x.pow(2).sum(dim, keepdim=True).clamp_min(eps * eps).sqrt()
    return (x / norm).to(v.dtype)


# ----------------------------------------------------------------------------------------------
# building blocks


class Residual(nn.Module):
    """Pre-activation bottleneck residual block (Newell et al. hourglass):
    BN-ReLU-1x1(cout/2)-BN-ReLU-3x3(cout/2)-BN-ReLU-1x1(cout) + skip (1x1 conv if cin != cout)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) features -> (B, cout, H, W) (unitless activations)."""
        return self.skip(x) + self.body(x)


def _conv_bn_relu(cin: int, cout: int, k: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Hourglass(nn.Module):
    """Recursive hourglass of depth n at constant width:

    out = Res_skip(x) + up2(Res_after(inner(Res_before(maxpool2(x))))),
    inner = Hourglass(n - 1) for n > 1, a residual block at the bottom (n == 1).
    Maps (B, width, H, W) -> (B, width, H, W); H, W must be multiples of 2**n.
    """

    def __init__(self, depth: int, width: int):
        super().__init__()
        self.skip = Residual(width, width)
        self.before = Residual(width, width)
        self.inner = Hourglass(depth - 1, width) if depth > 1 else Residual(width, width)
        self.after = Residual(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, width, H, W) features -> (B, width, H, W), H and W multiples of 2**depth."""
        low = self.after(self.inner(self.before(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class DenseHeads(nn.Module):
    """The three dense heads of one stack (all 1x1 convs, at the stack's resolution):

    H2: features -> J maps;
    H3: concat(features, coords) -> 1x1 conv (width) + BN + ReLU -> 1x1 conv -> J maps;
    U:  concat(features, H2, H3, coords) -> 1x1 conv (2 width) + BN + ReLU + Dropout
        -> 1x1 conv -> 3J channels -> (B, J, 3, h, w) unit vectors.
    Dropout is element-wise (a 1x1 conv is a per-cell MLP).
    """

    def __init__(self, width: int, num_joints: int, dropout: float):
        super().__init__()
        j = num_joints
        self.num_joints = j
        self.h2 = nn.Conv2d(width, j, 1)
        self.h3 = nn.Sequential(_conv_bn_relu(width + 3, width), nn.Conv2d(width, j, 1))
        self.u = nn.Sequential(_conv_bn_relu(width + 2 * j + 3, 2 * width), nn.Dropout(dropout),
                               nn.Conv2d(2 * width, 3 * j, 1))

    def forward(self, feat: torch.Tensor, coords: torch.Tensor) -> dict:
        """feat (B, width, h, w), coords (B, 3, h, w) normalised (u, v, d) of the cells
        (:func:`coordinate_maps`) -> {"h2": (B, J, h, w), "h3": (B, J, h, w) raw heatmaps,
        "u": (B, J, 3, h, w) unit vectors (unitless)}."""
        coords = coords.to(feat.dtype)
        h2 = self.h2(feat)
        h3 = self.h3(torch.cat([feat, coords], 1))
        u = self.u(torch.cat([feat, h2, h3, coords], 1))
        b, _, h, w = u.shape
        u = unit_vectors(u.reshape(b, self.num_joints, 3, h, w), dim=2)
        return {"h2": h2, "h3": h3, "u": u}


# ----------------------------------------------------------------------------------------------
# network


class DenseDepthNet(nn.Module):
    """Stacked-hourglass dense 3D regression network (Wan et al., CVPR 2018).

    Args:
      num_joints J (default 21); stacks (>= 1) hourglass stacks with intermediate supervision;
      width: channels of the backbone (all hourglasses run at constant width);
      hg_depth (>= 1): number of 2x downsamplings inside each hourglass;
      head: "dense" (the paper) or "direct" (ablation: direct regression, see below);
      dropout: dropout probability in the U head (and the direct MLP).

    Input: normalised depth (B, 1, S, S) from ``normalize_depth_crop`` (-1 = missing), S a multiple
    of 4 * 2**hg_depth (e.g. 64 or 128 with hg_depth 3; non-square H x W with both sides multiples
    also work). Anything else raises ValueError.

    Architecture: stem = 7x7 stride-2 conv + BN + ReLU, a residual block, 2x2 max pool -> (width,
    S/4, S/4). Per stack: hourglass -> residual block -> 1x1 conv + BN + ReLU = features -> the
    three DenseHeads (the 3D heads also get ``coordinate_maps`` of the S/4 grid, whose depth
    channel is ``downsample_depth`` of the input). Between stacks, the usual (Newell et al.)
    merge: x_{s+1} = x_s + 1x1conv(features_s) + 1x1conv(concat(h2_s, h3_s, u_s)), where x_s is
    the stack's input (the residual stream), u_s flattened to 3J channels.

    forward(x) -> list (one per stack) of dicts {"h2": (B, J, h, w), "h3": (B, J, h, w),
    "u": (B, J, 3, h, w)} with h, w = S/4. H2/H3 are raw linear outputs (trained with L2, clamp at
    inference); U has unit length per cell and joint.

    head="direct": the same backbone and the same dense heads on every stack (so the H2/H3/U
    intermediate supervision can still be used, or ignored by the caller); the last stack's dict
    additionally has "joints" (B, J, 3) = MLP(global-average-pool(features)), MLP = Linear(width,
    4 width) + ReLU + Dropout + Linear(4 width, 3J). The model knows no units: the caller trains
    "joints" on (xyz - center) / 100 mm (xyz, center in camera mm) and inverts that at inference.
    """

    stride = STRIDE

    def __init__(self, num_joints: int = NUM_JOINTS, stacks: int = 2, width: int = 64, hg_depth: int = 3,
                 head: str = "dense", dropout: float = 0.1):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if stacks < 1:
            raise ValueError(f"stacks must be >= 1, got {stacks}")
        if hg_depth < 1:
            raise ValueError(f"hg_depth must be >= 1, got {hg_depth}")
        if width < 2:
            raise ValueError(f"width must be >= 2, got {width}")
        if num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {num_joints}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_joints, self.stacks, self.width, self.hg_depth, self.head = num_joints, stacks, width, hg_depth, head
        self.size_multiple = STRIDE * 2**hg_depth
        j = num_joints
        self.stem = nn.Sequential(_conv_bn_relu(1, width, 7, 2), Residual(width, width), nn.MaxPool2d(2))
        self.hourglasses = nn.ModuleList([Hourglass(hg_depth, width) for _ in range(stacks)])
        self.features = nn.ModuleList([nn.Sequential(Residual(width, width), _conv_bn_relu(width, width))
                                       for _ in range(stacks)])
        self.heads = nn.ModuleList([DenseHeads(width, j, dropout) for _ in range(stacks)])
        # merges exist only between stacks (no unused parameters, DDP-friendly)
        self.merge_features = nn.ModuleList([nn.Conv2d(width, width, 1) for _ in range(stacks - 1)])
        self.merge_preds = nn.ModuleList([nn.Conv2d(5 * j, width, 1) for _ in range(stacks - 1)])
        self.direct = None
        if head == "direct":
            self.direct = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4 * width),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(4 * width, 3 * j))

    def output_size(self, size: int) -> int:
        """Heatmap side in cells (int) for an input side `size` in px: size / 4."""
        return size // STRIDE

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"DenseDepthNet expects normalised depth (B, 1, S, S), got shape {tuple(x.shape)}")
        hgt, wid = x.shape[-2:]
        m = self.size_multiple
        if hgt < m or wid < m or hgt % m or wid % m:
            raise ValueError(
                f"input size {hgt}x{wid} is not supported: S must be a positive multiple of "
                f"4 * 2**hg_depth = {m} (hg_depth={self.hg_depth}), e.g. {2 * m} or {4 * m}")

    def forward(self, x: torch.Tensor) -> list:
        """Normalised depth (B, 1, S, S) (-1 = missing) -> one dict per stack: "h2", "h3"
        (B, J, S/4, S/4), "u" (B, J, 3, S/4, S/4) unit vectors; with head="direct" the last also
        "joints" (B, J, 3) in the caller's normalised units (see the class docstring)."""
        self._check_input(x)
        b = x.shape[0]
        h, w = x.shape[-2] // STRIDE, x.shape[-1] // STRIDE
        coords = coordinate_maps(b, h, w, downsample_depth(x, STRIDE))
        y = self.stem(x)
        out = []
        for s in range(self.stacks):
            feat = self.features[s](self.hourglasses[s](y))
            pred = self.heads[s](feat, coords)
            if s < self.stacks - 1:
                p = torch.cat([pred["h2"], pred["h3"], pred["u"].flatten(1, 2).to(pred["h2"].dtype)], 1)
                y = y + self.merge_features[s](feat) + self.merge_preds[s](p)
            elif self.direct is not None:
                pred["joints"] = self.direct(feat).reshape(b, self.num_joints, 3)
            out.append(pred)
        return out


# ----------------------------------------------------------------------------------------------
# loss


def _masked_mse(diff_sq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(diff_sq.dtype).expand_as(diff_sq)
    return (diff_sq * m).sum() / m.sum().clamp_min(1.0)


def dense_loss(preds: list, targets: dict, valid: torch.Tensor, use_h2: bool = True) -> dict:
    """L2 loss of DenseDepthNet's dense outputs, summed over stacks.

    preds: forward()'s list of dicts; targets: {"h2": (B, J, h, w), "h3": (B, J, h, w),
    "u": (B, J, 3, h, w)}; valid: (B, h, w) bool, cells with a valid depth (e.g.
    ``downsample_depth(dn) >= 0``[:, 0]).

    Per stack (all terms are means of squared errors, computed in float32):
      h2: over all cells and joints;
      h3: over valid cells (all joints);
      u:  over valid cells where the target h3 of that joint is > 0 (the three components
          averaged), i.e. only near the joint, where the unit vector is meaningful.
    A term with an empty mask is 0. With use_h2=False the 2D-heatmap term is dropped (ablation
    "without H2") and reported as 0. Returns {"loss", "h2", "h3", "u"} (scalar tensors; loss =
    h2 + h3 + u). The "joints" output of head="direct" is not part of this loss.
    """
    if not preds:
        raise ValueError("preds must be a non-empty list of per-stack dicts")
    t_h2, t_h3, t_u = (targets[k].float() for k in ("h2", "h3", "u"))
    if valid.dim() != 3 or valid.shape != (t_h3.shape[0],) + tuple(t_h3.shape[-2:]):
        raise ValueError(f"valid must be (B, h, w) matching targets {tuple(t_h3.shape)}, got {tuple(valid.shape)}")
    if t_u.shape != t_h3.shape[:2] + (3,) + t_h3.shape[2:] or t_h2.shape != t_h3.shape:
        raise ValueError(f"inconsistent target shapes: h2 {tuple(t_h2.shape)}, h3 {tuple(t_h3.shape)}, "
                         f"u {tuple(t_u.shape)}")
    cell = valid.bool()[:, None]                           # (B, 1, h, w)
    near = cell & (t_h3 > 0)                               # (B, J, h, w)
    zero = t_h3.new_zeros(())
    l_h2, l_h3, l_u = zero, zero, zero
    for i, p in enumerate(preds):
        for k, t in (("h2", t_h2), ("h3", t_h3), ("u", t_u)):
            if p[k].shape != t.shape:
                raise ValueError(f"stack {i}: prediction {k} {tuple(p[k].shape)} != target {tuple(t.shape)}")
        if use_h2:
            l_h2 = l_h2 + (p["h2"].float() - t_h2).pow(2).mean()
        l_h3 = l_h3 + _masked_mse((p["h3"].float() - t_h3).pow(2), cell)
        l_u = l_u + _masked_mse((p["u"].float() - t_u).pow(2), near[:, :, None])
    return {"loss": l_h2 + l_h3 + l_u, "h2": l_h2, "h3": l_h3, "u": l_u}
