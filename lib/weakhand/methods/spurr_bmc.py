"""The 2.5D model family trained with biomechanical constraints (Iqbal et al. ECCV'18; Spurr et
al. ECCV'20): losses, the training step, stage-3 variants, prediction with recovered root depth,
scored by :func:`weakhand.evaluation.scores.score_predictions`.

Stage 1 trains :class:`weakhand.models.pose25d_net.Pose25DNet` on the fully labelled source
domain (L1 on normalised (u, v), L1 on ẑʳ, L1 of the refined root against the true Ẑ_root) with
:func:`step`. Stage 3 fine-tunes on half-source, half-target batches (:func:`build`); variants
(:data:`VARIANTS`):

* ``2d``: target 2D labels only;
* ``2d_bmc``: plus L_BMC on the predicted 3D of target samples (limits from ``bmc/limits.json``);
* ``2d_bmc_pinned``: ``2d_bmc`` + the drift guard (the target batch's mean zn held at the source's
  mean depth profile; ours, as in the Cai family);
* ``2d_direct_bmc``: ``2d_bmc_pinned`` + the direct depth term (zn toward the sensor depth read at
  the labelled 2D of visible joints; ours);
* ``full3d``: target with full 3D labels (upper bound).

The weak signals are the Cai family's (:mod:`weakhand.methods.weak_signals`, functions of zn);
in this family they reach the whole network, as Spurr et al. train end to end.

Units: uv in input pixels; zn root-relative depth in units of the scale bone (middle MCP→PIP);
z_root the absolute root depth in scale-bone units; kp3d mm, camera frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .. import skeleton as sk
from ..bmc import BMCWeights
from ..losses import masked_mean
from ..models import gaussian_heatmaps
from ..models.pose25d_net import Pose25DConfig, Pose25DNet
from ..train.checkpoint import load_checkpoint
from .base import Stage, Variant, joint_labels
from . import weak_signals as ws

#: the method's configuration: the 2.5D network (``config["net"]`` of its checkpoints)
Config = Pose25DConfig

#: stage-3 variants: one row each (description, weak signals on target samples, target set)
VARIANTS = {
    "2d": Variant("target 2D only (2D on both domains, 3D on the source)"),
    "2d_bmc": Variant("target 2D + biomechanical constraints on the predicted 3D of target samples",
                      ("bmc",)),
    "2d_bmc_pinned": Variant("target 2D + BMC + drift guard: target mean depth held at the source's (ours)",
                             ("bmc", "drift")),
    "2d_direct_bmc": Variant("target 2D + direct depth + BMC + drift guard (ours)", ("direct", "bmc", "drift")),
    "full3d": Variant("target with full 3D labels (upper bound)", target="full3d"),
}


@dataclass(frozen=True)
class Pose25DWeights:
    """L = λ_uv·L1(uv / S) + λ_z·L1(ẑʳ) + λ_root·L1(Ẑ_root); the λ are unitless weights."""
    uv: float = 1.0
    depth: float = 1.0
    root: float = 0.1

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON- and checkpoint-safe; no arrays)."""
        return asdict(self)


def true_root(batch: dict) -> torch.Tensor:
    """(B,) scale-normalised root depth Z_root / s of the labels (NaN without 3D)."""
    kp3d = batch["kp3d"]
    return kp3d[:, sk.ROOT, 2] / sk.scale_length(kp3d)


def losses(batch: dict, out: dict, weights: Pose25DWeights = Pose25DWeights()) -> dict:
    """Stage losses on the samples that carry each label (2D: has_2d and finite, in the crop;
    3D: has_3d).

    out: :class:`~weakhand.models.pose25d_net.Pose25DNet` output ("uv" (B, 21, 2) px, "zn"
    (B, 21) and optionally "z_root" (B,) in scale-bone units). Returns {"loss", "uv", "depth"
    [, "root"]} scalars; uv error in units of the image side S."""
    lab = joint_labels(batch)
    size = float(batch["image"].shape[-1])
    kp2d = torch.nan_to_num(batch["kp2d"].to(out["uv"]), nan=0.0)
    l_uv = masked_mean((out["uv"] - kp2d).abs().sum(-1) / size, lab["valid2d"])
    zn = torch.nan_to_num(lab["zn"].to(out["zn"]), nan=0.0)
    l_z = masked_mean((out["zn"] - zn).abs(), lab["has_3d"][:, None])
    terms = {"uv": l_uv, "depth": l_z}
    loss = weights.uv * l_uv + weights.depth * l_z
    if "z_root" in out:
        zr = torch.nan_to_num(true_root(batch).to(out["z_root"]), nan=0.0)
        terms["root"] = masked_mean((out["z_root"] - zr).abs(), lab["has_3d"])
        loss = loss + weights.root * terms["root"]
    return {"loss": loss, **terms}


def step(model: Pose25DNet, batch: dict, weights: Pose25DWeights = Pose25DWeights(),
         limits=None, bmc_weights=None, uv_grad: bool = False, bmc_lift: str = "label",
         signals: dict | None = None) -> dict:
    """One training step's loss dict (:func:`losses`; scalar terms); with `limits`, + L_BMC on
    weak samples (2D, no 3D) lifted from the labelled ("label") or predicted ("pred") 2D; plus
    Σ λ·signal(batch, zn) of `signals` ({name: (λ, signal)}, e.g. the drift guard).
    batch: a HandDataset batch, image (B, 3, S, S) in [0, 1]."""
    out = model(batch)
    terms = losses(batch, out, weights)
    if limits is not None:
        terms = ws.bmc_term(terms, out, batch, limits, bmc_weights, uv_grad, bmc_lift)
    return ws.add_signal_terms(terms, signals, batch, out["zn"], out["uv"])


def build(variant: str, cfg: Config, stage1_ckpt, lr: float = 3e-4,
          weights: Pose25DWeights = Pose25DWeights(), limits=None, bmc_weights=None,
          uv_grad: bool = False, bmc_lift: str = "label", direct_prior=None, drift_mu=None,
          drift_weight: float = ws.DRIFT_WEIGHT, direct_weight: float = ws.DIRECT_WEIGHT) -> Stage:
    """The :class:`~weakhand.methods.base.Stage` of one stage-3 variant from the stage-1
    checkpoint (models = model = the 2.5D network, Adam at `lr`); options: the loss weights,
    the BMC weights and lift, the λ of the drift guard / direct term as used (no arrays).
    `drift_mu` (21,) scale-bone units (the source's mean zn) and `direct_prior`
    (:func:`~weakhand.methods.weak_signals.measure_direct_prior`) are needed by the variants
    that use them."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    need = VARIANTS[variant].signals
    ws.check_inputs(variant, need, bmc=limits, drift=drift_mu, direct=direct_prior)
    model = Pose25DNet(cfg)
    load_checkpoint(stage1_ckpt, model)
    uses_bmc = "bmc" in need
    lim = limits if uses_bmc else None
    bw = bmc_weights or BMCWeights()
    signals = {}
    if "direct" in need:
        signals["direct_depth"] = (direct_weight, ws.DirectDepthSignal(direct_prior))
    if "drift" in need:
        signals["drift"] = (drift_weight, ws.DriftGuard(drift_mu))
    step_fn = lambda m, b: step(m, b, weights, lim, bw, uv_grad, bmc_lift, signals)  # noqa: E731
    return Stage(model, torch.optim.Adam(model.parameters(), lr), step_fn, model,
                 options={"weights": weights, "bmc_weights": bw if uses_bmc else None,
                          "uv_grad": uv_grad, "bmc_lift": bmc_lift,
                          "drift_weight": drift_weight if "drift" in need else None,
                          "direct_weight": direct_weight if "direct" in need else None})


@torch.no_grad()
def predict(model: nn.Module, loader, device: str) -> dict:
    """Predictions and labels as numpy arrays (N, ...): "uv" (N, 21, 2) px, "zn" (N, 21),
    "z_root" / "z_root_closed" (N,) refined / closed-form root depth (scale-bone units),
    "kp2d" (N, 21, 2) px, "kp3d" (N, 21, 3) mm camera frame, "vis", "K" (N, 3, 3) px, "has_3d"."""
    model.eval()
    keys = ("kp2d", "kp3d", "vis", "K", "has_3d")
    acc: dict[str, list] = {k: [] for k in ("uv", "zn", "z_root", "z_root_closed", *keys)}
    for batch in loader:
        out = model({"image": batch["image"].to(device), "K": batch["K"].to(device)})
        for k in ("uv", "zn", "z_root", "z_root_closed"):
            acc[k].append(out[k].float().cpu())
        for k in keys:
            acc[k].append(batch[k].cpu())
    return {k: torch.cat(v).numpy() for k, v in acc.items()}


def heatmap_ce(batch: dict, out: dict, model: nn.Module, sigma: float = 1.0) -> torch.Tensor:
    """Cross-entropy between a normalised Gaussian around the labelled 2D joint (σ in heatmap
    cells) and the readout distribution softmax(β·H) of the latent heatmaps, averaged over the
    labelled joints. A direct, scale-free signal on the distribution the soft-argmax reads.
    out["heatmaps"][-1] (B, 21, h, w) latent logits; returns a scalar."""
    lab = joint_labels(batch)
    hm = out["heatmaps"][-1]
    h, w = hm.shape[-2:]
    tgt = gaussian_heatmaps(torch.nan_to_num(batch["kp2d"].to(hm), nan=-1e4), (h, w), model.stride, sigma)
    tgt = tgt.flatten(-2)
    tgt = tgt / tgt.sum(-1, keepdim=True).clamp_min(1e-12)
    logp = torch.log_softmax(hm.flatten(-2).float() * model.beta, -1)
    return masked_mean(-(tgt * logp).sum(-1), lab["valid2d"])
