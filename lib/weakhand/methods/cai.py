"""Cai et al. (ECCV 2018): weakly-supervised 3D hand pose with a depth regulariser.

Stage 1 trains :class:`weakhand.models.CaiPoseNet` (2D heatmaps + depth regression) on the fully
labelled source domain with :func:`losses`; stage 2 trains the depth regulariser
(:class:`weakhand.models.DepthRegularizer`) to render normalised depth maps from ground-truth
joints (:func:`regularizer_step`); stage 3 fine-tunes the pose model on half-source,
half-target batches (:func:`build` -> :class:`~weakhand.methods.base.Stage`, :func:`step`), each
variant of :data:`VARIANTS` adding its weak signals (:mod:`weakhand.methods.weak_signals`) on the
target samples. :func:`predict` collects predictions and labels;
:func:`weakhand.evaluation.scores.score_predictions` scores them with the papers' protocol
(ground-truth root depth and scale known at test time).

Units: uv in input pixels; zn root-relative depth in units of the scale bone (middle MCP→PIP);
kp3d mm, camera frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .. import skeleton as sk
from ..bmc import BMCWeights
from ..data.torch_data import to_device
from ..losses import CaiWeights, cai_loss, coord_loss, depth_loss, depth_map_loss, heatmap_loss
from ..models import (CaiPoseNet, PoseNetConfig, depth_map_targets, gaussian_heatmaps,
                      regularizer_input_from_3d)
from ..models.registry import build_model
from ..train.checkpoint import load_checkpoint
from . import weak_signals as ws
from .base import Stage, Variant, joint_labels

#: the method's configuration: the pose network and its heatmap target σ (``config["net"]``)
Config = PoseNetConfig


def losses(batch: dict, out: dict, sigma: float, stride: float,
           weights: CaiWeights = CaiWeights()) -> dict:
    """λ2D·heatmap MSE (all stages) + λz·smooth-L1(zn), each on the samples carrying its label;
    with ``weights.coord > 0`` also λuv·smooth-L1 of the readout ``out["uv"]`` in heatmap cells.

    out: :class:`~weakhand.models.CaiPoseNet` output ("heatmaps": per stage (B, 21, h, w),
    "zn": (B, 21) scale-bone units); sigma: Gaussian target σ in heatmap cells; stride: input
    px per heatmap cell. Returns {"loss", "heatmap", "depth"(, "coord")} scalars."""
    lab = joint_labels(batch)
    h, w = out["heatmaps"][-1].shape[-2:]
    target = gaussian_heatmaps(torch.nan_to_num(batch["kp2d"], nan=-1e4), (h, w), stride, sigma)
    terms = {"heatmap": heatmap_loss(out["heatmaps"], target, lab["valid2d"]),
             "depth": depth_loss(out["zn"], lab["zn"], lab["has_3d"])}
    if weights.coord:
        terms["coord"] = coord_loss(out["uv"], batch["kp2d"], lab["valid2d"], stride)
    return cai_loss(terms, weights)


@torch.no_grad()
def predict(model: nn.Module, loader, device: str) -> dict:
    """Run the model over a loader; returns numpy arrays (N,...) of predictions and labels:
    "uv" (N, 21, 2) px, "zn" (N, 21) scale-bone units, "kp2d" (N, 21, 2) px, "kp3d" (N, 21, 3)
    mm camera frame, "vis" (N, 21), "K" (N, 3, 3) px, "has_3d" (N,)."""
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


# ----------------------------------------------------------------------------- stage 2

def render_from_gt(model: nn.Module, batch: dict, out_size: int) -> dict:
    """Depth maps rendered by the regulariser from ground-truth joints, with their targets, for
    the samples with 3D, depth and enough hand pixels only (the others never enter the forward
    pass): {"pred": (b,1,S,S), "target", "pixel_valid", "has": (b,) all True, "index": (b,)
    their positions in the batch}. Maps in normalised depth units (near → larger), S = out_size."""
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
    normalised depth map, only on samples with 3D and depth, excluding sensor holes.
    Returns {"loss", "depth_map_l1"} in normalised depth units."""
    r = render_from_gt(model, batch, out_size)
    if r["pred"] is None:  # no usable sample: a zero loss that still reaches every parameter
        l1 = sum(p.sum() for p in model.parameters()) * 0.0
    else:
        l1 = depth_map_loss(r["pred"], r["target"], r["has"], r["pixel_valid"])
    return {"loss": l1, "depth_map_l1": l1.detach()}


@torch.no_grad()
def regularizer_l1(model: nn.Module, loader, device: str, out_size: int) -> float:
    """Mean L1 (normalised depth units) over a loader, evaluation mode."""
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
    s = s_mm (see :func:`weakhand.methods.weak_signals.weak_anchor`)."""
    offs, scales = [], []
    for batch, has in ws.labelled_depth_batches(loader, max_batches):
        d = ws.wrist_depth(batch["depth"][:, 0], batch["kp2d"][:, sk.ROOT])
        ok = has & (d > 0)
        offs.append((batch["kp3d"][ok, sk.ROOT, 2] - d[ok]).float())
        scales.append(torch.as_tensor(sk.scale_length(batch["kp3d"][ok].double())).float())
    if not offs or not torch.cat(offs).numel():
        raise ValueError("no fully labelled sample with depth at the wrist to measure the prior")
    return {"skin_offset_mm": float(torch.cat(offs).median()),
            "s_mm": float(torch.cat(scales).mean())}


#: stage-3 variants: one row each (description, weak signals on target samples, target set)
VARIANTS = {
    "2d": Variant("target 2D only (heatmaps on both domains, depth regression on the source)"),
    "2d_depth": Variant("target 2D + depth regulariser (Cai et al.: labelled 2D in, gradient to the depth head only)",
                        ("regularizer",)),
    "2d_depth_hand": Variant("target 2D + depth regulariser, L1 on the hand pixels only (ours)",
                             ("regularizer",)),
    "2d_bmc": Variant("target 2D + biomechanical constraints (Spurr et al.'s terms alone)", ("bmc",)),
    "2d_bmc_pinned": Variant("target 2D + BMC + drift guard: target mean depth held at the source's (ours)",
                             ("bmc", "drift")),
    "2d_depth_bmc": Variant("target 2D + depth regulariser + BMC + drift guard",
                            ("regularizer", "bmc", "drift")),
    "2d_direct": Variant("target 2D + direct depth: zn toward the sensor depth at labelled visible joints (ours)",
                         ("direct",)),
    "2d_direct_bmc": Variant("target 2D + direct depth + BMC + drift guard (ours)", ("direct", "bmc", "drift")),
    "2d_teacher": Variant("target 2D + pseudo-3D labels from the depth teacher (confidence-weighted)",
                          target="teacher"),
    "full3d": Variant("target with full 3D labels (upper bound)", target="full3d"),
}
USES_REGULARIZER = {v for v, x in VARIANTS.items() if "regularizer" in x.signals}
USES_BMC = {v for v, x in VARIANTS.items() if "bmc" in x.signals}
USES_DIRECT = {v for v, x in VARIANTS.items() if "direct" in x.signals}
USES_DRIFT = {v for v, x in VARIANTS.items() if "drift" in x.signals}
WEAK_GRADS = ("head", "all")
REG_MODES = ("frozen", "lowlr")


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
    drift_weight: float = ws.DRIFT_WEIGHT
    direct_weight: float = ws.DIRECT_WEIGHT

    def __post_init__(self):
        if self.reg_input_2d not in ws.REG_INPUTS_2D:
            raise ValueError(f"reg_input_2d must be one of {ws.REG_INPUTS_2D}, got {self.reg_input_2d!r}")
        if self.weak_grad not in WEAK_GRADS:
            raise ValueError(f"weak_grad must be one of {WEAK_GRADS}, got {self.weak_grad!r}")
        if self.bmc_lift not in ws.BMC_LIFTS:
            raise ValueError(f"bmc_lift must be one of {ws.BMC_LIFTS}, got {self.bmc_lift!r}")

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON- and checkpoint-safe; no arrays)."""
        return asdict(self)


def confidence_depth_loss(batch: dict, out: dict) -> torch.Tensor:
    """Smooth-L1 on zn like :func:`weakhand.losses.depth_loss`, each joint weighted by
    ``batch["kp3d_conf"]`` (B, 21) in [0, 1] (1 for true labels, the teacher's confidence for
    pseudo-labels). out["zn"] (B, 21) scale-bone units; returns a scalar."""
    lab = joint_labels(batch)
    valid = lab["has_3d"][:, None] & torch.isfinite(lab["zn"])
    w = torch.where(valid, batch["kp3d_conf"].to(out["zn"]).clamp(0, 1), torch.zeros_like(out["zn"]))
    l = F.smooth_l1_loss(out["zn"].float(), torch.nan_to_num(lab["zn"]).float(), reduction="none")
    return (l * w).sum() / w.sum().clamp_min(1e-6)


def check_signal_inputs(variant: str, *, regularizer=True, limits=None, direct_prior=None,
                        drift_mu=None) -> None:
    """Raise ValueError naming what a variant's weak signals need and was not given (no arrays:
    each input is only checked for None)."""
    ws.check_inputs(variant, VARIANTS[variant].signals, regularizer=regularizer, bmc=limits,
                    direct=direct_prior, drift=drift_mu)


def weak_signals_for(variant: str, opts: Stage3Options, *, regularizer=None, reg_size=None,
                     prior=None, limits=None, bmc_weights=None, direct_prior=None,
                     drift_mu=None) -> dict:
    """{name: (λ, signal)} of one variant (its :data:`VARIANTS` signals); raises naming what is
    missing. reg_size: the regulariser's map size S (px); prior: :func:`depth_anchor_prior`;
    drift_mu: (21,) mean zn profile in scale-bone units."""
    need = VARIANTS[variant].signals
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


def step(model: nn.Module, batch: dict, sigma: float, signals: dict | None = None,
         weights: CaiWeights = CaiWeights(), weak_grad: str = "head") -> dict:
    """Stage-3 loss on a mixed batch: heatmaps (all samples with 2D), smooth-L1 zn (samples
    with 3D; confidence-weighted with pseudo-labels), plus Σ λ·signal(batch, zn) of each weak
    signal ({name: (λ, signal)}, :func:`weak_signals_for`) on the target samples.

    weak_grad="head": the weak samples' zn comes from detached features and heatmaps, so weak
    signals train the depth regression only (Cai et al.: the regulariser never reaches the 2D
    network); "all": they also reach the 2D network through the shared features.
    sigma: heatmap target σ in heatmap cells. Returns the loss dict ("loss" scalar + terms)."""
    head_only = ws.weak_mask(batch) if (signals and weak_grad == "head") else None
    out = model(batch, head_only=head_only)
    terms = losses(batch, out, sigma, model.stride, weights)
    if "kp3d_conf" in batch:  # pseudo-labels: the depth term weighted by per-joint confidence
        new = confidence_depth_loss(batch, out)
        terms = {**terms, "loss": terms["loss"] + weights.depth * (new - terms["depth"]),
                 "depth": new.detach()}
    return ws.add_signal_terms(terms, signals, batch, out["zn"], out["uv"])


def build(variant: str, net_cfg: Config, stage1_ckpt, stage2_ckpt, reg_cfg: dict,
          prior: dict, reg_mode: str = "frozen", lr: float = 3e-4, device: str = "cpu",
          opts: Stage3Options | None = None, limits=None, bmc_weights=None,
          direct_prior=None, drift_mu=None) -> Stage:
    """The :class:`~weakhand.methods.base.Stage` of one stage-3 variant, initialised from the
    stage-1 (pose) and stage-2 (regulariser) checkpoints: models for the Trainer, optimizer,
    step function, the pose model, and `opts` as options. A frozen regulariser stays outside the
    Trainer (evaluation mode, no gradients, not checkpointed); with reg_mode "lowlr" it trains at
    lr/10 and is checkpointed (models = {"pose", "reg"}). The weak signals' inputs (`limits`,
    `direct_prior`, `drift_mu` (21,) scale-bone units) are needed by the variants that use them
    (:data:`VARIANTS`); prior: {"skin_offset_mm", "s_mm"} in mm; reg_cfg["reg_size"] the
    regulariser's map side in px."""
    if variant not in VARIANTS or reg_mode not in REG_MODES:
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
        reg = build_model(stage2_ckpt)  # eval mode; trained at lr/10 unless frozen
        if reg_mode != "frozen":
            reg.train()
        if reg_mode == "frozen":
            reg.eval().requires_grad_(False).to(device)
    signals = weak_signals_for(variant, opts, regularizer=reg, reg_size=size, prior=prior,
                               limits=limits, bmc_weights=bmc_weights, direct_prior=direct_prior,
                               drift_mu=drift_mu)
    kw = dict(sigma=net_cfg.sigma, signals=signals, weak_grad=opts.weak_grad)
    if reg is None or reg_mode == "frozen":
        return Stage(model, torch.optim.Adam(params), (lambda m, b: step(m, b, **kw)), model,
                     options=opts)
    params.append({"params": reg.parameters(), "lr": lr / 10})
    return Stage({"pose": model, "reg": reg}, torch.optim.Adam(params),
                 (lambda m, b: step(m["pose"], b, **kw)), model, options=opts)


def gradient_shares(model: CaiPoseNet, batch: dict, sigma: float, signals: dict,
                    weights: CaiWeights = CaiWeights(), weak_grad: str = "head") -> list[dict]:
    """Size of each term's gradient on the depth regression's parameters for one batch:
    rows {term, λ, value, grad_norm, share_vs_depth} where share_vs_depth = ‖∇(λ·term)‖ /
    ‖∇(λ_z·L_z)‖ of the source depth term. Use it to set λ so a weak signal neither drowns nor
    dwarfs the supervised depth term. Leaves the model's gradients zeroed. Values and norms are
    scalars (unitless ratios for share_vs_depth); sigma in heatmap cells."""
    model.train()
    head_only = ws.weak_mask(batch) if weak_grad == "head" else None
    params = [p for p in model.reg.parameters() if p.requires_grad]

    def norm_of(loss):
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum((x.float() ** 2).sum() for x in g if x is not None)))

    out = model(batch, head_only=head_only)
    base = losses(batch, out, sigma, model.stride, weights)
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
