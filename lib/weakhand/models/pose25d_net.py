"""2.5D pose network with latent heatmaps (Iqbal et al. ECCV'18, as used by Spurr et al. ECCV'20).

A small ResNet-style backbone (configurable width and blocks per stage) with a top-down fusion
back to stride 4 emits 2K maps: latent 2D heatmaps H*_k and latent depth maps Z*_k. With
H_k = softmax(β H*_k) over the map,

* (u_k, v_k) = Σ_p H_k(p) · p            (soft-argmax, input pixels)
* ẑʳ_k       = Σ_p H_k(p) · Z*_k(p) − (same for the root)   (root-relative, in scale-bone units)

Only (u, v) and ẑʳ are supervised; the maps themselves are latent. The root's ẑʳ is exactly 0.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .. import skeleton as sk
from .pose2d import DEFAULT_BETA, soft_argmax
from .root_depth import RootRefiner

IMAGE_MEAN, IMAGE_STD = 0.5, 0.25


@dataclass
class Pose25DConfig:
    """Architecture of :class:`Pose25DNet` (no arrays); stored in checkpoints as ``config["net"]``."""
    width: int = 16                  # channels of the first stage (doubles per stage)
    blocks: tuple = (1, 1, 1)        # residual blocks per stage (strides 2, 4, 8)
    beta: float = DEFAULT_BETA       # softmax temperature of the latent heatmaps
    learn_beta: bool = False
    refiner_hidden: int = 128        # root refinement MLP width (0: no refiner)

    def to_dict(self) -> dict:
        """The fields as a plain dict, blocks as a list (JSON- and checkpoint-safe; no arrays)."""
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        return d


class BasicBlock(nn.Module):
    """3×3 conv-BN-ReLU-3×3 conv-BN + (projected) identity, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H / stride, W / stride)."""
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        return F.relu(self.b2(self.c2(y)) + self.skip(x), inplace=True)


class Pose25DNet(nn.Module):
    """Image (B, 3, S, S) in [0, 1], S a multiple of 8 → dict:

    "uv" (B, 21, 2) input px; "zn" (B, 21) root-relative depth / scale bone (named like the Cai
    model's output so predictions and evaluation are shared); "heatmaps" [latent logits
    (B, 21, S/4, S/4)]; "depth_maps" (B, 21, S/4, S/4); with a refiner and K given,
    "z_root_closed" / "z_root" (B,) scale-normalised absolute root depth.
    """

    stride = 4

    def __init__(self, cfg: Pose25DConfig = Pose25DConfig()):
        super().__init__()
        self.cfg = cfg
        w, k = cfg.width, sk.NUM_JOINTS
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        stages, cin = [], w
        for i, n in enumerate(cfg.blocks):
            cout = w * 2**i
            layers = [BasicBlock(cin, cout, 2)] + [BasicBlock(cout, cout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        if len(stages) < 2:
            raise ValueError("Pose25DNet needs at least 2 stages (stride 4 output)")
        # top-down: from the deepest stage back to stride 4 (stage index 1)
        c4 = w * 2
        self.lateral = nn.ModuleList([nn.Conv2d(w * 2**i, c4, 1) for i in range(1, len(stages))])
        self.head = nn.Sequential(BasicBlock(c4, c4), nn.Conv2d(c4, 2 * k, 1))
        log_beta = torch.tensor(math.log(cfg.beta))
        if cfg.learn_beta:
            self.log_beta = nn.Parameter(log_beta)
        else:
            self.register_buffer("log_beta", log_beta)
        self.refiner = RootRefiner(cfg.refiner_hidden) if cfg.refiner_hidden else None
        self.feature_channels = c4

    @property
    def beta(self) -> torch.Tensor:
        """Softmax temperature of the latent heatmaps, a scalar tensor (unitless)."""
        return self.log_beta.exp()

    def forward(self, batch: dict | torch.Tensor) -> dict:
        """Image (B, 3, S, S) in [0, 1] or a batch dict with "image" (and "K" (B, 3, 3) px for the
        root); the output dict of the class docstring."""
        img = batch["image"] if isinstance(batch, dict) else batch
        if img.shape[-1] % 8 or img.shape[-2] % 8:
            raise ValueError(f"input H, W must be multiples of 8, got {tuple(img.shape[-2:])}")
        x = self.stem((img - IMAGE_MEAN) / IMAGE_STD)
        feats = []
        for st in self.stages:
            x = st(x)
            feats.append(x)
        top = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, 0, -1):
            top = F.interpolate(top, size=feats[i].shape[-2:], mode="nearest") + self.lateral[i - 1](feats[i])
        maps = self.head(top)
        k = sk.NUM_JOINTS
        hm, dm = maps[:, :k], maps[:, k:]
        uv = soft_argmax(hm, self.beta, stride=self.stride)
        p = torch.softmax(hm.flatten(-2) * self.beta, -1)
        z = (p * dm.flatten(-2)).sum(-1)
        out = {"uv": uv, "zn": z - z[:, sk.ROOT : sk.ROOT + 1], "heatmaps": [hm], "depth_maps": dm,
               "features": top}
        if self.refiner is not None and isinstance(batch, dict) and "K" in batch:
            out.update(self.refiner(out["uv"], out["zn"], batch["K"].to(uv)))
        return out
