"""Cai et al. (ECCV 2018) pipeline glue shared by the stage notebooks: the pose model (2D
heatmap network + depth regression), its label-masked losses, and evaluation with the papers'
protocol (ground-truth root depth and scale known at test time)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from . import metrics
from . import skeleton as sk
from .losses import CaiWeights, cai_loss, depth_loss, heatmap_loss
from .models import (DepthRegressionNet, Pose2DNet, gaussian_heatmaps, reconstruct_3d,
                     root_relative_depth)

IMAGE_MEAN, IMAGE_STD = 0.5, 0.25  # inputs in [0,1] are standardised inside the model


@dataclass
class PoseNetConfig:
    width: int = 16          # encoder width (channels of the first block)
    depth: int = 2           # downsampling blocks: heatmaps at 1/2**depth of the input
    n_stages: int = 3        # CPM stages (intermediate supervision on each)
    beta: float = 20.0       # soft-argmax temperature (fixed)
    reg_width: int = 32      # regression-net conv width
    reg_hidden: int = 128    # regression-net FC width
    sigma: float = 2.0       # Gaussian target sigma, heatmap pixels

    def to_dict(self) -> dict:
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


def joint_labels(batch: dict) -> dict:
    """Per-joint supervision masks and targets from a HandDataset batch.

    2D: joints with a finite label inside the crop, in samples with has_2d (occluded joints are
    labelled too: CPM-style training supervises them). Depth: zn of samples with has_3d.
    """
    kp2d = batch["kp2d"]
    valid2d = (batch["has_2d"].bool()[:, None] & torch.isfinite(kp2d).all(-1)
               & batch.get("in_crop", torch.ones_like(kp2d[..., 0], dtype=torch.bool)).bool())
    has3 = batch["has_3d"].bool()
    zn = root_relative_depth(batch["kp3d"])  # NaN for samples without 3D (masked below)
    zn = torch.where(has3[:, None], zn, torch.full_like(zn, float("nan")))
    return {"valid2d": valid2d, "zn": zn, "has_3d": has3}


def pose_losses(batch: dict, out: dict, sigma: float, stride: float,
                weights: CaiWeights = CaiWeights()) -> dict:
    """λ2D·heatmap MSE (all stages) + λz·smooth-L1(zn), each on the samples carrying its label."""
    lab = joint_labels(batch)
    h, w = out["heatmaps"][-1].shape[-2:]
    target = gaussian_heatmaps(torch.nan_to_num(batch["kp2d"], nan=-1e4), (h, w), stride, sigma)
    return cai_loss({"heatmap": heatmap_loss(out["heatmaps"], target, lab["valid2d"]),
                     "depth": depth_loss(out["zn"], lab["zn"], lab["has_3d"])}, weights)


@torch.no_grad()
def predict(model: nn.Module, loader, device: str) -> dict:
    """Run the model over a loader; returns numpy arrays (N,...) of predictions and labels."""
    model.eval()
    keys = ("kp2d", "kp3d", "vis", "K", "has_3d")
    acc: dict[str, list] = {k: [] for k in ("uv", "zn", *keys)}
    for batch in loader:
        out = model({"image": batch["image"].to(device)})
        acc["uv"].append(out["uv"].float().cpu())
        acc["zn"].append(out["zn"].float().cpu())
        for k in keys:
            acc[k].append(batch[k].cpu())
    return {k: torch.cat(v).numpy() for k, v in acc.items()}


def evaluate_predictions(p: dict) -> dict:
    """Target-domain numbers: 2D px error, z error and signed z bias (mm; > 0: predicted too far
    from the camera), 3D EPE and AUC, on visible joints of samples with 3D labels; 3D from
    (u, v, zn) with GT root depth and GT scale (Z&B/Cai)."""
    sel = p["has_3d"].astype(bool)
    if not sel.any():
        raise ValueError("no sample with a 3D label to evaluate")
    kp3d = p["kp3d"][sel].astype(np.float64)
    vis = p["vis"][sel].astype(bool)
    pred3d = reconstruct_3d(p["uv"][sel].astype(np.float64), p["zn"][sel].astype(np.float64),
                            p["K"][sel].astype(np.float64), kp3d[:, sk.ROOT, 2],
                            sk.scale_length(kp3d))
    e3 = metrics.evaluate_3d(pred3d, kp3d, vis, align="none")
    e2 = metrics.evaluate_2d(p["uv"][sel], p["kp2d"][sel], vis)
    ez = metrics.depth_error(pred3d[..., 2], kp3d[..., 2], vis)
    dz = (pred3d[..., 2] - kp3d[..., 2])[vis]
    return {"n": int(sel.sum()), "px_2d_mean": e2["epe_mean_px"], "z_err_mm": ez["mean_abs_z_mm"],
            "z_bias_mm": float(dz.mean()),
            "epe_mm": e3["epe_mean_mm"], "auc_20_50": e3["auc_20_50"],
            "auc_hand3d_21_50": e3["auc_hand3d_21_50"], "auc_0_50": e3["auc_0_50"],
            "pred3d": pred3d, "gt3d": kp3d}


# ----------------------------------------------------------------------------- stage 2

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
    """
    from .models import normalize_depth_map

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
    the depth map's d_max and range (may fall slightly outside [0,1]: joints are inside the skin)."""
    from .models import normalize_joint_depth, regularizer_input

    dn = normalize_joint_depth(z_mm, d_max, d_range)  # d_max, d_range: (B,)
    return regularizer_input(kp2d, dn, image_hw)


def render_from_gt(model: nn.Module, batch: dict, out_size: int) -> dict:
    """Depth maps rendered by the regulariser from ground-truth joints, with their targets, for
    the samples with 3D, depth and enough hand pixels only (the others never enter the forward
    pass): {"pred": (b,1,S,S), "target", "pixel_valid", "has": (b,) all True, "index": (b,)
    their positions in the batch}."""
    tgt = depth_map_targets(batch, out_size)
    has = batch["has_3d"].bool() & batch["has_depth"].bool() & tgt["enough"]
    idx = torch.nonzero(has).flatten()
    kp3d = torch.nan_to_num(batch["kp3d"].float()[idx], nan=0.0)
    kp2d = torch.nan_to_num(batch["kp2d"].float()[idx], nan=0.0)
    inp = regularizer_input_from_3d(kp2d, kp3d[..., 2], tgt["d_max"][idx], tgt["d_range"][idx],
                                    batch["image"].shape[-2:])
    # BatchNorm cannot normalise a training batch of fewer than 2 samples: no prediction then
    pred = model(inp) if len(idx) > (1 if model.training else 0) else None
    return {"pred": pred, "target": tgt["map"][idx], "pixel_valid": tgt["pixel_valid"][idx],
            "has": torch.ones_like(idx, dtype=torch.bool), "index": idx}


def regularizer_step(model: nn.Module, batch: dict, out_size: int) -> dict:
    """Stage-2 loss terms: L1 between the map rendered from ground-truth joints and the
    normalised depth map, only on samples with 3D and depth, excluding sensor holes."""
    from .losses import depth_map_loss

    r = render_from_gt(model, batch, out_size)
    if r["pred"] is None:  # no usable sample: a zero loss that still reaches every parameter
        l1 = sum(p.sum() for p in model.parameters()) * 0.0
    else:
        l1 = depth_map_loss(r["pred"], r["target"], r["has"], r["pixel_valid"])
    return {"loss": l1, "depth_map_l1": l1.detach()}


@torch.no_grad()
def regularizer_l1(model: nn.Module, loader, device: str, out_size: int) -> float:
    """Mean L1 (normalised depth units) over a loader, evaluation mode."""
    from .losses import depth_map_loss
    from .train import to_device

    model.eval()
    tot, n = 0.0, 0
    for batch in loader:
        batch = to_device(batch, device)
        r = render_from_gt(model, batch, out_size)
        k = int(r["has"].sum())
        if k and r["pred"] is not None:
            tot += float(depth_map_loss(r["pred"], r["target"], r["has"], r["pixel_valid"])) * k
            n += k
    return tot / max(n, 1)


# ----------------------------------------------------------------------------- stage 3

@torch.no_grad()
def depth_anchor_prior(loader, max_batches: int = 20) -> dict:
    """Constants for weak samples, measured on fully labelled (source) data:
    skin_offset_mm = median(Z_wrist − sensor depth at the wrist pixel) and the mean scale bone
    length s_mm. Weak target samples get Z_root = depth at the labelled wrist + skin_offset and
    s = s_mm (see weak_anchor)."""
    from .weak_signals import labelled_depth_batches

    offs, scales = [], []
    for batch, has in labelled_depth_batches(loader, max_batches):
        d = wrist_depth(batch["depth"][:, 0], batch["kp2d"][:, sk.ROOT])
        ok = has & (d > 0)
        offs.append((batch["kp3d"][ok, sk.ROOT, 2] - d[ok]).float())
        scales.append(torch.as_tensor(sk.scale_length(batch["kp3d"][ok].double())).float())
    if not offs or not torch.cat(offs).numel():
        raise ValueError("no fully labelled sample with depth at the wrist to measure the prior")
    return {"skin_offset_mm": float(torch.cat(offs).median()),
            "s_mm": float(torch.cat(scales).mean())}


def wrist_depth(depth: torch.Tensor, uv: torch.Tensor, half: int = 2) -> torch.Tensor:
    """Median of the valid (> 0) depths in a (2·half+1)² window at uv (B,2); 0 if none."""
    B, H, W = depth.shape
    u = uv[:, 0].round().long().clamp(0, W - 1)
    v = uv[:, 1].round().long().clamp(0, H - 1)
    offs = torch.arange(-half, half + 1, device=depth.device)
    vv = (v[:, None, None] + offs[None, :, None]).clamp(0, H - 1)
    uu = (u[:, None, None] + offs[None, None, :]).clamp(0, W - 1)
    win = depth[torch.arange(B, device=depth.device)[:, None, None], vv, uu].reshape(B, -1)
    win = torch.where(win > 0, win, torch.full_like(win, float("nan")))
    med = torch.nanmedian(win, dim=1).values
    ok = torch.isfinite(uv).all(-1)
    return torch.where(torch.isfinite(med) & ok, med, torch.zeros_like(med))


def weak_anchor(batch: dict, prior: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (Z_root mm, s mm, valid) used to turn predicted zn into absolute depth for the
    regulariser: ground truth where the sample has 3D, else the sensor depth at the *labelled*
    2D wrist + the source-measured skin offset, and the source mean scale bone. Detached."""
    has3 = batch["has_3d"].bool()
    kp3d = torch.nan_to_num(batch["kp3d"].float(), nan=0.0)
    d = wrist_depth(batch["depth"][:, 0].float(), batch["kp2d"][:, sk.ROOT].float())
    z_root = torch.where(has3, kp3d[:, sk.ROOT, 2], d + prior["skin_offset_mm"])
    s_gt = torch.linalg.vector_norm(kp3d[:, 10] - kp3d[:, 9], dim=-1)
    s = torch.where(has3, s_gt, torch.full_like(s_gt, prior["s_mm"]))
    valid = batch["has_depth"].bool() & (has3 | (d > 0))
    return z_root.detach(), s.detach(), valid


VARIANTS = {
    "2d": "target 2D only (heatmaps on both domains, depth regression on the source)",
    "2d_depth": "target 2D + depth regulariser (Cai et al.: labelled 2D in, gradient to the depth head only)",
    "2d_depth_hand": "target 2D + depth regulariser, L1 on the hand pixels only (ours)",
    "2d_bmc": "target 2D + biomechanical constraints (Spurr et al.'s terms alone)",
    "2d_bmc_pinned": "target 2D + BMC + drift guard: target mean depth held at the source's (ours)",
    "2d_depth_bmc": "target 2D + depth regulariser + BMC + drift guard",
    "2d_direct": "target 2D + direct depth: zn toward the sensor depth at labelled visible joints (ours)",
    "2d_direct_bmc": "target 2D + direct depth + BMC + drift guard (ours)",
    "2d_teacher": "target 2D + pseudo-3D labels from the depth teacher (confidence-weighted)",
    "full3d": "target with full 3D labels (upper bound)",
}
#: the weak signals (weakhand.weak_signals) each variant adds on target samples
VARIANT_SIGNALS = {
    "2d": (), "2d_teacher": (), "full3d": (),
    "2d_depth": ("regularizer",), "2d_depth_hand": ("regularizer",),
    "2d_bmc": ("bmc",), "2d_bmc_pinned": ("bmc", "drift"),
    "2d_depth_bmc": ("regularizer", "bmc", "drift"), "2d_direct": ("direct",),
    "2d_direct_bmc": ("direct", "bmc", "drift"),
}
USES_REGULARIZER = {v for v, s in VARIANT_SIGNALS.items() if "regularizer" in s}
USES_BMC = {v for v, s in VARIANT_SIGNALS.items() if "bmc" in s}
USES_DIRECT = {v for v, s in VARIANT_SIGNALS.items() if "direct" in s}
USES_DRIFT = {v for v, s in VARIANT_SIGNALS.items() if "drift" in s}
WEAK_GRADS = ("head", "all")

BMC_LIFTS = ("label", "pred")


@dataclass
class Stage3Options:
    """Knobs of the weak signals in stage 3 (weights are the λ of each term).

    reg_input_2d: "label" (paper) or "pred" 2D into the regulariser; weak_grad: "head" (paper:
    weak signals train the depth regression only) or "all" (also the 2D network through the
    shared features); uv_grad: let weak terms move predicted (u, v) (only with "pred" inputs);
    bmc_lift "label"/"pred"; bmc_root: nominal scale-normalised root depth (None: closed form)."""
    reg_weight: float = 1.0
    reg_input_2d: str = "label"
    weak_grad: str = "head"
    uv_grad: bool = False
    bmc_weight: float = 0.05
    bmc_lift: str = "label"
    bmc_root: float | None = None
    drift_weight: float = 0.1
    direct_weight: float = 1.0

    def __post_init__(self):
        from .weak_signals import REG_INPUTS_2D
        if self.reg_input_2d not in REG_INPUTS_2D:
            raise ValueError(f"reg_input_2d must be one of {REG_INPUTS_2D}, got {self.reg_input_2d!r}")
        if self.weak_grad not in WEAK_GRADS:
            raise ValueError(f"weak_grad must be one of {WEAK_GRADS}, got {self.weak_grad!r}")
        if self.bmc_lift not in BMC_LIFTS:
            raise ValueError(f"bmc_lift must be one of {BMC_LIFTS}, got {self.bmc_lift!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def confidence_depth_loss(batch: dict, out: dict) -> torch.Tensor:
    """Smooth-L1 on zn like :func:`weakhand.losses.depth_loss`, each joint weighted by
    ``batch["kp3d_conf"]`` (B, 21) in [0, 1] (1 for true labels, the teacher's confidence for
    pseudo-labels)."""
    from torch.nn import functional as F

    lab = joint_labels(batch)
    valid = lab["has_3d"][:, None] & torch.isfinite(lab["zn"])
    w = torch.where(valid, batch["kp3d_conf"].to(out["zn"]).clamp(0, 1), torch.zeros_like(out["zn"]))
    l = F.smooth_l1_loss(out["zn"].float(), torch.nan_to_num(lab["zn"]).float(), reduction="none")
    return (l * w).sum() / w.sum().clamp_min(1e-6)


def bmc_term(terms: dict, out: dict, batch: dict, limits, bmc_weights, uv_grad: bool,
              lift: str = "label", root: float | None = None) -> dict:
    """Add L_BMC (weights `bmc_weights`) on the 3D of the weakly labelled samples (2D, no 3D),
    lifted from zn and the labelled (lift="label") or predicted (lift="pred", Spurr et al.) 2D;
    see :class:`weakhand.weak_signals.BMCSignal`."""
    from .weak_signals import BMCSignal

    if lift not in BMC_LIFTS:
        raise ValueError(f"lift must be one of {BMC_LIFTS}, got {lift!r}")
    b = BMCSignal(limits, bmc_weights, lift, uv_grad, root)(batch, out["zn"], out["uv"])
    return {**terms, "loss": terms["loss"] + b["loss"], "bmc": b["loss"].detach(),
            "bmc_bone_length": b["bone_length"], "bmc_root_bones": b["root_bones"],
            "bmc_angles": b["angles"]}


def check_signal_inputs(variant: str, *, regularizer=True, limits=None, direct_prior=None,
                        drift_mu=None) -> None:
    """Raise ValueError naming what a variant's weak signals need and was not given."""
    need = VARIANT_SIGNALS[variant]
    missing = [n for n, x in (("regularizer", regularizer), ("bmc", limits), ("direct", direct_prior),
                              ("drift", drift_mu)) if n in need and x is None]
    if missing:
        producers = {"regularizer": "the stage-2 regulariser (30_train_stage2_depth_regularizer)",
                     "bmc": "BMC limits (bmc/limits.json from 10_fit_bmc_limits)",
                     "direct": "the direct-depth prior (weak_signals.measure_direct_prior on the source)",
                     "drift": "the drift guard's mean depth profile (baselines.fit_constant_pose(...).zn)"}
        raise ValueError(f"variant {variant!r} needs " + "; ".join(producers[m] for m in missing))


def weak_signals_for(variant: str, opts: Stage3Options, *, regularizer=None, reg_size=None,
                     prior=None, limits=None, bmc_weights=None, direct_prior=None,
                     drift_mu=None) -> dict:
    """{name: (λ, signal)} of one variant (see VARIANT_SIGNALS); raises naming what is missing."""
    from .bmc import BMCWeights
    from . import weak_signals as ws

    need = VARIANT_SIGNALS[variant]
    check_signal_inputs(variant, regularizer=regularizer, limits=limits, direct_prior=direct_prior,
                        drift_mu=drift_mu)
    out = {}
    if "regularizer" in need:
        out["depth_map"] = (opts.reg_weight, ws.RegularizerSignal(
            regularizer, reg_size, prior, opts.reg_input_2d, opts.uv_grad, weak_only=True,
            hand_only=variant == "2d_depth_hand"))
    if "bmc" in need:
        out["bmc"] = (1.0, ws.BMCSignal(limits, bmc_weights or BMCWeights(
            opts.bmc_weight, opts.bmc_weight, opts.bmc_weight), opts.bmc_lift, opts.uv_grad, opts.bmc_root))
    if "direct" in need:
        out["direct_depth"] = (opts.direct_weight, ws.DirectDepthSignal(direct_prior))
    if "drift" in need:
        out["drift"] = (opts.drift_weight, ws.DriftGuard(drift_mu))
    return out


def stage3_step(model: nn.Module, batch: dict, sigma: float, signals: dict | None = None,
                weights: CaiWeights = CaiWeights(), weak_grad: str = "head") -> dict:
    """Stage-3 loss on a mixed batch: heatmaps (all samples with 2D), smooth-L1 zn (samples
    with 3D; confidence-weighted with pseudo-labels), plus Σ λ·signal(batch, zn) of each weak
    signal ({name: (λ, signal)}, :func:`weak_signals_for`) on the target samples.

    weak_grad="head": the weak samples' zn comes from detached features and heatmaps, so weak
    signals train the depth regression only (Cai et al.: the regulariser never reaches the 2D
    network); "all": they also reach the 2D network through the shared features."""
    from .weak_signals import weak_mask

    head_only = weak_mask(batch) if (signals and weak_grad == "head") else None
    out = model(batch, head_only=head_only)
    terms = pose_losses(batch, out, sigma, model.stride, weights)
    if "kp3d_conf" in batch:  # pseudo-labels: the depth term weighted by per-joint confidence
        new = confidence_depth_loss(batch, out)
        terms = {**terms, "loss": terms["loss"] + weights.depth * (new - terms["depth"]),
                 "depth": new.detach()}
    loss = terms["loss"]
    for name, (lam, signal) in (signals or {}).items():
        r = signal(batch, out["zn"], out["uv"])
        loss = loss + lam * r["loss"]
        terms[name] = r["loss"].detach()
        for k in ("bone_length", "root_bones", "angles"):
            if k in r:
                terms[f"{name}_{k}"] = r[k]
    return {**terms, "loss": loss}


def build_stage3(variant: str, net_cfg: PoseNetConfig, stage1_ckpt, stage2_ckpt, reg_cfg: dict,
                 prior: dict, reg_mode: str = "frozen", lr: float = 3e-4, device: str = "cpu",
                 opts: Stage3Options | None = None, limits=None, bmc_weights=None,
                 direct_prior=None, drift_mu=None):
    """Models, optimizer and step function of one stage-3 variant, initialised from the stage-1
    (pose) and stage-2 (regulariser) checkpoints. Returns (models for the Trainer, optimizer,
    step_fn, pose model). A frozen regulariser stays outside the Trainer (evaluation mode, no
    gradients, not checkpointed); with reg_mode "lowlr" it trains at lr/10 and is checkpointed.
    The weak signals' inputs (`limits`, `direct_prior`, `drift_mu`) are needed by the variants
    that use them (VARIANT_SIGNALS)."""
    from .models import DepthRegularizer
    from .train import load_checkpoint

    if variant not in VARIANTS or reg_mode not in ("frozen", "lowlr"):
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} (got {variant!r}) and "
                         f"reg_mode frozen or lowlr (got {reg_mode!r})")
    opts = opts or Stage3Options()
    check_signal_inputs(variant, limits=limits, direct_prior=direct_prior, drift_mu=drift_mu)
    model = CaiPoseNet(net_cfg)
    load_checkpoint(stage1_ckpt, model)
    params = [{"params": model.parameters(), "lr": lr}]
    size = reg_cfg["reg_size"] if reg_cfg else None
    reg = None
    if variant in USES_REGULARIZER:
        reg = DepthRegularizer(out_size=size, dropout=reg_cfg.get("reg_dropout", 0.2))
        load_checkpoint(stage2_ckpt, reg)
        if reg_mode == "frozen":
            reg.eval().requires_grad_(False).to(device)
    signals = weak_signals_for(variant, opts, regularizer=reg, reg_size=size, prior=prior,
                               limits=limits, bmc_weights=bmc_weights, direct_prior=direct_prior,
                               drift_mu=drift_mu)
    kw = dict(sigma=net_cfg.sigma, signals=signals, weak_grad=opts.weak_grad)
    if reg is None or reg_mode == "frozen":
        return model, torch.optim.Adam(params), (lambda m, b: stage3_step(m, b, **kw)), model
    params.append({"params": reg.parameters(), "lr": lr / 10})
    return ({"pose": model, "reg": reg}, torch.optim.Adam(params),
            (lambda m, b: stage3_step(m["pose"], b, **kw)), model)


@torch.no_grad()
def softmax_heatmaps(model: CaiPoseNet, image: torch.Tensor, device: str) -> tuple:
    """Last-stage heatmaps of one image (3,S,S) as the readout sees them (spatial softmax with
    the model's β) and the predicted uv: ((21,h,w) numpy, (21,2) numpy)."""
    model.eval()
    out = model({"image": image[None].to(device)})
    hm = out["heatmaps"][-1][0]
    hm = torch.softmax(hm.flatten(1) * model.cfg.beta, -1).reshape(hm.shape)
    return hm.cpu().numpy(), out["uv"][0].cpu().numpy()


def gradient_shares(model: CaiPoseNet, batch: dict, sigma: float, signals: dict,
                    weights: CaiWeights = CaiWeights(), weak_grad: str = "head") -> list[dict]:
    """Size of each term's gradient on the depth regression's parameters for one batch:
    rows {term, λ, value, grad_norm, share_vs_depth} where share_vs_depth = ‖∇(λ·term)‖ /
    ‖∇(λ_z·L_z)‖ of the source depth term. Use it to set λ so a weak signal neither drowns nor
    dwarfs the supervised depth term. Leaves the model's gradients zeroed."""
    from .weak_signals import weak_mask

    model.train()
    head_only = weak_mask(batch) if weak_grad == "head" else None
    params = [p for p in model.reg.parameters() if p.requires_grad]

    def norm_of(loss):
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum((x.float() ** 2).sum() for x in g if x is not None)))

    out = model(batch, head_only=head_only)
    base = pose_losses(batch, out, sigma, model.stride, weights)
    lab = joint_labels(batch)
    dep = depth_loss(out["zn"], lab["zn"], lab["has_3d"]) * weights.depth
    ref = norm_of(dep) if dep.requires_grad else float("nan")
    rows = [{"term": "source depth (λ_z·L_z)", "λ": weights.depth, "value": float(base["depth"]),
             "grad_norm": ref, "share_vs_depth": 1.0}]
    for name, (lam, signal) in signals.items():
        v = signal(batch, out["zn"], out["uv"])["loss"]
        g = norm_of(lam * v) if v.requires_grad else 0.0
        rows.append({"term": name, "λ": lam, "value": float(v), "grad_norm": g,
                     "share_vs_depth": g / ref if ref > 0 else float("nan")})
    model.zero_grad(set_to_none=True)
    return rows
