"""Weak depth signals on target samples (2D labels + a sensor depth map, no 3D), as functions of
the predicted root-relative depth zn, shared by stage-3 training and the oracle descent
(:mod:`weakhand.evaluation.oracle`), so the diagnostic tests exactly what training optimises.

Every signal is a callable ``signal(batch, zn, uv_pred=None) -> dict`` with ``"loss"`` (a scalar,
0 with a finite gradient when no sample qualifies) and ``"n"`` (samples used). ``zn`` is (B, 21)
in scale-bone units (middle MCP -> PIP), ``batch`` a HandDataset batch (right hands: loaders
with ``mirror_left=True``); only its weak labels are read (``kp2d``, ``vis``, ``depth``, ``mask``,
``K``), never ``kp3d`` of a weak sample. Signals:

* :class:`RegularizerSignal` — Cai et al.: L1 between the frozen regulariser's map rendered from
  (u, v, z) and the normalised sensor map; the paper feeds the **labelled** 2D (``input_2d``).
* :class:`BMCSignal` — Spurr et al.: L_BMC of the 3D lifted from the labelled 2D and zn.
* :class:`DirectDepthSignal` — ours: smooth-L1 between zn and the sensor depth read at the
  labelled 2D of visible joints plus a per-joint skin offset measured on the source, up to a
  per-sample depth offset solved in closed form.
* :class:`DriftGuard` — ours: pins the batch mean of zn over weak samples to a mean depth profile
  μ (the workbook uses the source's, i.e. the constant pose's): BMC constrains |dz| but not the
  sign of a global tilt. Anchoring μ at a biased model's mean instead pulls correct hands away
  from the truth (the oracle descent shows it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .. import camera
from .. import skeleton as sk
from ..bmc import BMCWeights, bmc_loss_25d
from ..losses import depth_map_loss, masked_mean
from ..models import depth_map_targets, regularizer_input_from_3d

REG_INPUTS_2D = ("label", "pred")
BMC_LIFTS = ("label", "pred")
#: default λ of the drift guard (scale-bone units²) and of the direct depth term, both families
DRIFT_WEIGHT, DIRECT_WEIGHT = 0.1, 1.0
#: what produces the input each signal needs (for the error of :func:`check_inputs`)
PRODUCERS = {"regularizer": "the stage-2 regulariser (30_train_stage2_depth_regularizer)",
             "direct_root": "the direct-depth prior (weak_signals.measure_direct_prior on the source)",
             "bmc": "BMC limits (bmc/limits.json from 10_fit_bmc_limits)",
             "direct": "the direct-depth prior (weak_signals.measure_direct_prior on the source)",
             "drift": "the drift guard's mean depth profile (evaluation.baselines.fit_constant_pose(...).zn)"}


def check_inputs(variant: str, signals, **given) -> None:
    """Raise ValueError naming what `variant`'s `signals` (names of :data:`PRODUCERS`) need and
    is None in `given` ({signal name: its input}, e.g. ``bmc=limits``); inputs of signals the
    variant does not use are ignored (no arrays are inspected)."""
    missing = [n for n in PRODUCERS if n in signals and n in given and given[n] is None]
    if missing:
        raise ValueError(f"variant {variant!r} needs " + "; ".join(PRODUCERS[m] for m in missing))


def add_signal_terms(terms: dict, signals: dict | None, batch: dict, zn: torch.Tensor,
                     uv_pred: torch.Tensor | None) -> dict:
    """``terms`` (a loss dict with a "loss" scalar) plus Σ λ·signal(batch, zn, uv_pred) of
    `signals` ({name: (λ, signal)}): each term detached under its name (and BMC's parts as
    ``<name>_bone_length`` ...), the weighted sum added to "loss". zn (B, 21) scale-bone units,
    uv_pred (B, 21, 2) px."""
    loss = terms["loss"]
    out = dict(terms)
    for name, (lam, signal) in (signals or {}).items():
        r = signal(batch, zn, uv_pred)
        loss = loss + lam * r["loss"]
        out[name] = r["loss"].detach()
        for k in ("bone_length", "root_bones", "angles"):
            if k in r:
                out[f"{name}_{k}"] = r[k]
    out["loss"] = loss
    return out


def weak_mask(batch: dict) -> torch.Tensor:
    """(B,) samples with a 2D label but no 3D label (the target's weak samples)."""
    return batch["has_2d"].bool() & ~batch["has_3d"].bool()


def labelled_uv(batch: dict, uv_pred: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """(B, 21, 2) labelled 2D where finite, else the (detached) prediction, else 0."""
    kp2d = batch["kp2d"].to(like)
    ok = torch.isfinite(kp2d).all(-1, keepdim=True)
    fill = uv_pred.detach().to(like) if uv_pred is not None else torch.zeros_like(kp2d)
    return torch.where(ok, torch.nan_to_num(kp2d), fill)


def read_depth(depth: torch.Tensor, uv: torch.Tensor, half: int = 1,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Median of the valid (> 0, and on the hand `mask` (B, H, W) when given) sensor depths in a
    (2·half+1)² window at each keypoint.

    depth (B, H, W) mm, uv (B, J, 2) px -> (B, J) mm, 0 where no valid pixel (hole, background,
    outside the image)."""
    if mask is not None:
        depth = torch.where(mask > 0, depth, torch.zeros_like(depth))
    B, H, W = depth.shape
    J = uv.shape[1]
    u = torch.nan_to_num(uv[..., 0], nan=-1e4).round().long()
    v = torch.nan_to_num(uv[..., 1], nan=-1e4).round().long()
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    offs = torch.arange(-half, half + 1, device=depth.device)
    vv = (v[..., None, None] + offs[:, None]).clamp(0, H - 1)
    uu = (u[..., None, None] + offs[None, :]).clamp(0, W - 1)
    b = torch.arange(B, device=depth.device)[:, None, None, None]
    win = depth[b, vv, uu].reshape(B, J, -1).float()
    win = torch.where(win > 0, win, torch.full_like(win, float("nan")))
    med = torch.nanmedian(win, dim=-1).values
    return torch.where(inside & torch.isfinite(med), med, torch.zeros_like(med))


def wrist_depth(depth: torch.Tensor, uv: torch.Tensor, half: int = 2) -> torch.Tensor:
    """Median of the valid (> 0) depths in a (2·half+1)² window at uv (B,2); 0 if none, and 0
    when uv lies outside the image (an augmented crop can cut the wrist off: the border pixel
    there is not the wrist's depth).

    depth (B, H, W) mm, uv (B, 2) px -> (B,) mm."""
    B, H, W = depth.shape
    u_raw = torch.nan_to_num(uv[:, 0], nan=-1e4).round().long()
    v_raw = torch.nan_to_num(uv[:, 1], nan=-1e4).round().long()
    inside = (u_raw >= 0) & (u_raw < W) & (v_raw >= 0) & (v_raw < H)
    u, v = u_raw.clamp(0, W - 1), v_raw.clamp(0, H - 1)
    offs = torch.arange(-half, half + 1, device=depth.device)
    vv = (v[:, None, None] + offs[None, :, None]).clamp(0, H - 1)
    uu = (u[:, None, None] + offs[None, None, :]).clamp(0, W - 1)
    win = depth[torch.arange(B, device=depth.device)[:, None, None], vv, uu].reshape(B, -1)
    win = torch.where(win > 0, win, torch.full_like(win, float("nan")))
    med = torch.nanmedian(win, dim=1).values
    ok = torch.isfinite(uv).all(-1) & inside
    return torch.where(torch.isfinite(med) & ok, med, torch.zeros_like(med))


def weak_anchor(batch: dict, prior: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (Z_root mm, s mm, valid) used to turn predicted zn into absolute depth for the
    regulariser: ground truth where the sample has 3D, else the sensor depth at the *labelled*
    2D wrist + the source-measured skin offset, and the source mean scale bone. Detached.

    prior: {"skin_offset_mm", "s_mm"} (:func:`weakhand.methods.cai.depth_anchor_prior`).
    Returns (Z_root (B,) mm camera frame, s (B,) mm, valid (B,) bool)."""
    has3 = batch["has_3d"].bool()
    kp3d = torch.nan_to_num(batch["kp3d"].float(), nan=0.0)
    d = wrist_depth(batch["depth"][:, 0].float(), batch["kp2d"][:, sk.ROOT].float())
    z_root = torch.where(has3, kp3d[:, sk.ROOT, 2], d + prior["skin_offset_mm"])
    s_gt = torch.linalg.vector_norm(kp3d[:, 10] - kp3d[:, 9], dim=-1)
    s = torch.where(has3, s_gt, torch.full_like(s_gt, prior["s_mm"]))
    valid = batch["has_depth"].bool() & (has3 | (d > 0))
    return z_root.detach(), s.detach(), valid


# ----------------------------------------------------------------------------- Cai regulariser

class RegularizerSignal:
    """λ-free depth-map L1 of the frozen regulariser on weak samples (Cai et al. stage 3).

    `prior`: {"skin_offset_mm", "s_mm"} (:func:`weakhand.methods.cai.depth_anchor_prior`) turns zn into
    absolute depth: Z_root = sensor depth at the labelled wrist + skin offset, s = source mean.
    input_2d="label": the regulariser sees the labelled (u, v) (the paper: its gradient then
    reaches only the depth); "pred": the predicted (u, v) (detached unless `uv_grad`).
    hand_only (ours): the L1 over the hand pixels only; the paper's L1 averages over the whole
    map, where the background (target 0) outnumbers the hand and dilutes the depth signal."""

    def __init__(self, regularizer: torch.nn.Module, reg_size: int, prior: dict,
                 input_2d: str = "label", uv_grad: bool = False, weak_only: bool = False,
                 hand_only: bool = False):
        if input_2d not in REG_INPUTS_2D:
            raise ValueError(f"input_2d must be one of {REG_INPUTS_2D}, got {input_2d!r}")
        self.reg, self.size, self.prior = regularizer, reg_size, prior
        self.input_2d, self.uv_grad, self.weak_only = input_2d, uv_grad, weak_only
        self.hand_only = hand_only

    def __call__(self, batch: dict, zn: torch.Tensor, uv_pred: torch.Tensor | None = None) -> dict:
        tgt = depth_map_targets(batch, self.size)
        z_root, s, valid = weak_anchor(batch, self.prior)
        valid = valid & tgt["enough"]
        if self.weak_only:
            valid = valid & weak_mask(batch)
        z = z_root[:, None] + zn * s[:, None]
        if self.input_2d == "label" or uv_pred is None:
            uv = labelled_uv(batch, uv_pred, zn)
        else:
            uv = uv_pred if self.uv_grad else uv_pred.detach()
        inp = regularizer_input_from_3d(uv, z, tgt["d_max"], tgt["d_range"], batch["depth"].shape[-2:])
        if not valid.any():
            return {"loss": zn.sum() * 0.0, "n": 0}
        pred = self.reg(inp[valid])
        pix = tgt["pixel_valid"][valid]
        if self.hand_only:  # the paper's L1 averages over the crop, mostly background
            pix = pix & (tgt["hand"][valid] > 0.5)
        loss = depth_map_loss(pred, tgt["map"][valid], torch.ones_like(valid[valid]), pix)
        return {"loss": loss, "n": int(valid.sum())}


# ----------------------------------------------------------------------------- BMC

class BMCSignal:
    """L_BMC of weak samples' 3D lifted from (labelled or predicted) 2D (B, 21, 2) px and zn
    (B, 21) scale-bone units; "root" a nominal scale-normalised root depth (None: closed form)."""

    def __init__(self, limits, weights=None, lift: str = "label", uv_grad: bool = False,
                 root: float | None = None):
        self.limits, self.weights = limits, weights or BMCWeights()
        self.lift, self.uv_grad, self.root = lift, uv_grad, root

    def __call__(self, batch: dict, zn: torch.Tensor, uv_pred: torch.Tensor | None = None) -> dict:
        uv = labelled_uv(batch, uv_pred, zn) if (self.lift == "label" or uv_pred is None) else uv_pred
        weak = weak_mask(batch)
        b = bmc_loss_25d(uv, zn, batch["K"].to(zn), self.limits, weak, self.weights,
                         self.uv_grad and self.lift == "pred", self.root)
        return {"loss": b["bmc"], "n": int(weak.sum()), "bone_length": b["bone_length"].detach(),
                "root_bones": b["root_bones"].detach(), "angles": b["angles"].detach()}


def bmc_term(terms: dict, out: dict, batch: dict, limits, bmc_weights, uv_grad: bool,
             lift: str = "label", root: float | None = None) -> dict:
    """Add L_BMC (weights `bmc_weights`) on the 3D of the weakly labelled samples (2D, no 3D),
    lifted from zn and the labelled (lift="label") or predicted (lift="pred", Spurr et al.) 2D;
    see :class:`BMCSignal`.

    terms: a loss dict with a scalar "loss"; out: model output with "zn" (B, 21) scale-bone
    units and "uv" (B, 21, 2) px. Returns terms with "loss" + L_BMC and the detached parts."""
    if lift not in BMC_LIFTS:
        raise ValueError(f"lift must be one of {BMC_LIFTS}, got {lift!r}")
    b = BMCSignal(limits, bmc_weights, lift, uv_grad, root)(batch, out["zn"], out["uv"])
    return {**terms, "loss": terms["loss"] + b["loss"], "bmc": b["loss"].detach(),
            "bmc_bone_length": b["bone_length"], "bmc_root_bones": b["root_bones"],
            "bmc_angles": b["angles"]}


# ----------------------------------------------------------------------------- direct depth

@dataclass
class DirectDepthPrior:
    """Measured on the fully labelled source: per-joint skin offset (21,) mm = median of
    (Z_k − sensor depth at the labelled 2D) over visible joints; mean bone lengths (20,) mm;
    mean scale bone s_mm."""
    skin_offset_mm: list
    bone_mm: list
    s_mm: float
    read_error_mm: float = float("nan")  # mean |Z − (depth + offset)| of visible source joints

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON- and checkpoint-safe; no arrays)."""
        return asdict(self)


def labelled_depth_batches(loader, max_batches: int):
    """(batch, has) of the first `max_batches` batches of a loader that hold samples with both a
    3D label and a depth map; has (B,) marks them."""
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        has = batch["has_3d"].bool() & batch["has_depth"].bool()
        if has.any():
            yield batch, has


@torch.no_grad()
def measure_direct_prior(loader, max_batches: int = 40, half: int = 1) -> DirectDepthPrior:
    """Fit the :class:`DirectDepthPrior` (mm) on batches with 3D and depth (the source); depth
    read in a (2·half+1)² px window."""
    res, bones, scales = [], [], []
    for batch, has in labelled_depth_batches(loader, max_batches):
        kp3d = batch["kp3d"][has].double()
        d = read_depth(batch["depth"][has, 0], batch["kp2d"][has], half, batch["mask"][has, 0]).double()
        ok = batch["vis"][has].bool() & (d > 0)
        res.append(torch.where(ok, kp3d[..., 2] - d, torch.full_like(d, float("nan"))))
        bones.append(sk.bone_lengths(kp3d))
        scales.append(sk.scale_length(kp3d))
    if not res:
        raise ValueError("no sample with 3D and depth labels to measure the direct-depth prior on")
    r = torch.cat(res)
    off = torch.nanmedian(r, dim=0).values
    off = torch.where(torch.isfinite(off), off, torch.nanmedian(r).expand_as(off))
    err = float(torch.nanmean((r - off).abs()))
    return DirectDepthPrior(off.tolist(), torch.cat(bones).mean(0).tolist(),
                            float(torch.cat(scales).mean()), err)


class DirectDepthSignal:
    """Smooth-L1 (in scale-bone units) between zn (B, 21) and the observed depth (mm) of visible
    joints.

    Per weak sample: z_obs_k = D(u_k, v_k) + offset_k at the labelled 2D of joints labelled
    visible with valid depth; the scale ŝ = source mean scale × median over bones with both ends
    observed of (observed length / source mean length), else the source mean; the unknown depth
    offset a = median_k(z_obs_k − zn_k·ŝ) (no gradient), so the target is zn*_k = (z_obs_k − a)/ŝ.
    Samples with fewer than `min_joints` observed joints are skipped.

    anchor="median" (above) is blind to a shift of every non-root joint against the root (the
    median follows the fingers); anchor="root" (ours) takes a = z_obs of the wrist when the wrist
    is observed (zn₀ = 0 by definition), the median otherwise, which pins that shift."""

    ANCHORS = ("median", "root")

    def __init__(self, prior: DirectDepthPrior | dict, beta: float = 0.1, min_joints: int = 3,
                 half: int = 1, anchor: str = "median"):
        if anchor not in self.ANCHORS:
            raise ValueError(f"anchor must be one of {self.ANCHORS}, got {anchor!r}")
        self.anchor = anchor
        p = prior if isinstance(prior, DirectDepthPrior) else DirectDepthPrior(**prior)
        self.offset = torch.as_tensor(p.skin_offset_mm, dtype=torch.float32)
        self.bone = torch.as_tensor(p.bone_mm, dtype=torch.float32)
        self.s_mm, self.beta, self.min_joints, self.half = p.s_mm, beta, min_joints, half

    def targets(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_obs (B, 21) mm, observed (B, 21) bool, ŝ (B,) mm) of the weak samples."""
        kp2d = batch["kp2d"].float()
        d = read_depth(batch["depth"][:, 0].float(), kp2d, self.half, batch["mask"][:, 0])
        obs = (batch["vis"].bool() & (d > 0) & torch.isfinite(kp2d).all(-1)
               & weak_mask(batch)[:, None] & batch["has_depth"].bool()[:, None])
        z_obs = d + self.offset.to(d)
        p3 = camera.backproject(batch["K"].float(), torch.nan_to_num(kp2d), z_obs)
        par, chi = torch.as_tensor(np.array(sk.PARENTS[1:])), torch.arange(1, sk.NUM_JOINTS)
        both = obs[:, par] & obs[:, chi]
        ratio = torch.linalg.vector_norm(p3[:, chi] - p3[:, par], dim=-1) / self.bone.to(d)
        ratio = torch.where(both, ratio, torch.full_like(ratio, float("nan")))
        med = torch.nanmedian(ratio, dim=-1).values
        s_hat = torch.where(torch.isfinite(med), med.clamp(0.7, 1.4), torch.ones_like(med)) * self.s_mm
        return z_obs, obs, s_hat

    def __call__(self, batch: dict, zn: torch.Tensor, uv_pred: torch.Tensor | None = None) -> dict:
        z_obs, obs, s_hat = self.targets(batch)
        z_obs, s_hat = z_obs.to(zn), s_hat.to(zn)
        use = obs & (obs.sum(-1, keepdim=True) >= self.min_joints)
        if not use.any():
            return {"loss": zn.sum() * 0.0, "n": 0}
        rel = zn * s_hat[:, None]
        diff = torch.where(use, (z_obs - rel).detach(), torch.full_like(rel, float("nan")))
        a = torch.nan_to_num(torch.nanmedian(diff, dim=-1).values)
        if self.anchor == "root":  # the wrist's observed depth is the root's: zn_0 = 0
            a = torch.where(use[:, sk.ROOT], z_obs[:, sk.ROOT].detach(), a)
        zt = torch.where(use, (z_obs - a[:, None]) / s_hat[:, None], torch.zeros_like(zn))
        l = F.smooth_l1_loss(zn, zt.detach(), reduction="none", beta=self.beta)
        return {"loss": masked_mean(l, use), "n": int(use.any(-1).sum())}


# ----------------------------------------------------------------------------- drift guard

class DriftGuard:
    """‖mean over weak samples of zn − μ‖² (scale-bone units²), μ (21,) a mean depth profile
    (e.g. :attr:`weakhand.evaluation.baselines.ConstantPose.zn`, the source's): pins the global depth tilt
    BMC cannot see, assuming the target's mean profile is μ."""

    def __init__(self, mu):
        self.mu = torch.as_tensor(np.asarray(mu, dtype=np.float32))

    def __call__(self, batch: dict, zn: torch.Tensor, uv_pred: torch.Tensor | None = None) -> dict:
        weak = weak_mask(batch)
        if not weak.any():
            return {"loss": zn.sum() * 0.0, "n": 0}
        m = zn[weak].mean(0)
        return {"loss": ((m - self.mu.to(zn)) ** 2).sum(), "n": int(weak.sum())}


@torch.no_grad()
def mean_zn(model: torch.nn.Module, loader, device: str, max_batches: int = 50) -> list:
    """Mean predicted zn (21,) of `model` over a loader (e.g. to compare with the guard's μ)."""
    model.eval()
    acc = []
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        acc.append(model({"image": batch["image"].to(device)})["zn"].float().cpu())
    return torch.cat(acc).mean(0).tolist()
