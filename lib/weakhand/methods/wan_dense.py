"""Wan et al. (CVPR'18) dense 3D regression from depth, as a baseline and as a teacher.

Interface (as every :mod:`weakhand.methods` module): :class:`Config`, :data:`VARIANTS`,
:func:`losses`, :func:`step`, :func:`build`, :func:`predict`; plus :func:`infer` (one batch) and
the teacher's pseudo-labels.

The network (:class:`weakhand.models.hourglass.DenseDepthNet`) sees the depth crop of a
:class:`weakhand.data.HandDataset` sample, normalised over a 300 mm window centred on the hand's
median depth (hand mask pixels; the whole crop where no mask is given). Targets come from the
crop's own back-projected depth points (:mod:`weakhand.dense.targets`); inference votes and
mean-shifts (:mod:`weakhand.dense.aggregate`). ``head="direct"`` regresses (xyz − c)/100 mm from
a pooled feature instead (the ablation "direct regression vs dense voting").

As a **teacher**, the trained model predicts 3D joints for the weakly labelled target RGB-D
training images (:func:`pseudo_labels`); :func:`with_labels` turns them into a dataset whose ``kp3d`` are those
pseudo-labels (with a per-joint confidence), for stage-3 fine-tuning of the RGB model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .. import camera
from .. import skeleton as sk
from ..data.format import HandData
from ..dense import aggregate, dense_targets, point_map
from ..io import atomic_write_bytes
from ..models.hourglass import DenseDepthNet, dense_loss, normalize_depth_crop
from .base import Stage, Variant

DIRECT_UNIT_MM = 100.0


@dataclass
class Config:
    """The dense network's architecture and the method's geometry: target ball radius and depth
    window (mm), voting (top_n candidates, mean-shift bandwidth mm and iterations)."""
    width: int = 32
    stacks: int = 2
    hg_depth: int = 3
    head: str = "dense"        # "dense" (voting) or "direct" (pooled regression)
    use_h2: bool = True         # the 2D heatmap term (ablation)
    radius: float = 80.0        # mm, 3D heatmap / offset ball
    window: float = 300.0       # mm, depth normalisation window
    top_n: int = 5
    bandwidth: float = 40.0     # mm, mean-shift kernel sigma
    iters: int = 10
    dropout: float = 0.1

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON- and checkpoint-safe; no arrays)."""
        return asdict(self)

    def model(self) -> DenseDepthNet:
        """A freshly initialised :class:`~weakhand.models.hourglass.DenseDepthNet` of this size
        (input (B, 1, S, S) normalised depth)."""
        return DenseDepthNet(stacks=self.stacks, width=self.width, hg_depth=self.hg_depth,
                             head=self.head, dropout=self.dropout)


def hand_center(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre depth (B,) mm, 3D centre (B, 3) mm) of each crop's hand: the median valid depth
    inside the hand mask (the whole crop without one), back-projected at the mask centroid."""
    depth = batch["depth"][:, 0].float()
    mask = batch.get("mask")
    m = (mask[:, 0] > 0.5) if mask is not None else torch.ones_like(depth, dtype=torch.bool)
    ok = depth > 0
    sel = ok & m
    sel = torch.where(sel.flatten(1).any(1)[:, None, None], sel, ok)
    vals = torch.where(sel, depth, torch.full_like(depth, float("nan"))).flatten(1)
    cz = torch.nanmedian(vals, dim=1).values.nan_to_num(500.0)
    h, w = depth.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, device=depth.device), torch.arange(w, device=depth.device),
                            indexing="ij")
    wsum = sel.flatten(1).sum(1).clamp_min(1)
    uv = torch.stack([(xs * sel).flatten(1).sum(1) / wsum, (ys * sel).flatten(1).sum(1) / wsum], -1)
    c3 = camera.backproject(batch["K"].float(), uv[:, None].float(), cz[:, None])[:, 0]
    return cz, c3


#: variants: one row each, named after the head they set in Config (use_h2=False is a knob)
VARIANTS = {
    "dense": Variant("pixel-wise 3D heatmaps + offsets, votes and mean-shift (Wan et al.)", target="source"),
    "direct": Variant("direct regression of (xyz − centre) from a pooled feature (ablation)", target="source"),
}


def inputs(batch: dict, cfg: Config) -> dict:
    """Network input and geometry of a batch: "dn" (B,1,S,S) normalised depth, "points"
    (B, S/4, S/4, 3) mm camera frame and "valid" (B, S/4, S/4) at stride 4, "center_z" (B,) mm,
    "center" (B, 3) mm camera frame."""
    cz, c3 = hand_center(batch)
    depth = batch["depth"].float()
    dn = normalize_depth_crop(depth, cz, cfg.window)
    win = (depth > 0) & ((depth - cz[:, None, None, None]).abs() <= cfg.window / 2)
    points, valid = point_map(depth * win, batch["K"].float(), stride=4)
    return {"dn": dn, "points": points, "valid": valid, "center_z": cz, "center": c3}


def losses(batch: dict, out: list, cfg: Config, geo: dict) -> dict:
    """Training loss on samples with 3D labels (source domain): dense L2 on H2/H3/U of every
    stack (+ L2 on the normalised joints, in units of 100 mm, for the direct head).

    out: the network's per-stack outputs on geo["dn"]; geo: :func:`inputs` of the batch.
    Returns {"loss", ...terms} scalars."""
    has3 = batch["has_3d"].bool()
    kp3d = torch.nan_to_num(batch["kp3d"].float(), nan=0.0)
    kp2d = torch.where(has3[:, None, None], batch["kp2d"].float(),
                       torch.full_like(batch["kp2d"].float(), float("nan")))
    tgt = dense_targets(geo["points"], geo["valid"], torch.where(has3[:, None, None], kp3d,
                        torch.full_like(kp3d, float("nan"))), kp2d, stride=4, radius=cfg.radius)
    valid = geo["valid"] & has3[:, None, None]
    terms = dense_loss(out, tgt, valid, use_h2=cfg.use_h2)
    if cfg.head == "direct":
        target = (kp3d - geo["center"][:, None]) / DIRECT_UNIT_MM
        err = (out[-1]["joints"] - target).square().sum(-1).mean(-1)
        direct = (err * has3).sum() / has3.sum().clamp_min(1)
        terms = {**terms, "loss": terms["loss"] + direct, "direct": direct.detach()}
    return terms


def step(model: DenseDepthNet, batch: dict, cfg: Config) -> dict:
    """One training step's loss dict (scalar terms): :func:`inputs`, the forward pass on the
    (B, 1, S, S) normalised depth, :func:`losses`."""
    geo = inputs(batch, cfg)
    return losses(batch, model(geo["dn"]), cfg, geo)


def build(variant: str, cfg: Config, lr: float = 1e-3) -> Stage:
    """The :class:`~weakhand.methods.base.Stage` of a variant (its head, :data:`VARIANTS`): a
    fresh network (``cfg.model()`` with ``head=variant``), Adam at `lr` with β1 = 0.5 (the paper's
    code) and :func:`step`; options: the Config used (no arrays)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    cfg = replace(cfg, head=variant)
    model = cfg.model()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    return Stage(model, opt, lambda m, b: step(m, b, cfg), model, options=cfg)


@torch.no_grad()
def infer(model: DenseDepthNet, batch: dict, cfg: Config) -> dict:
    """3D joints (B, 21, 3) mm and a per-joint confidence (B, 21) in [0, 1] (mean candidate
    weight, i.e. the 2D heatmap value where the votes land; 1 for the direct head)."""
    geo = inputs(batch, cfg)
    out = model(geo["dn"])[-1]
    if cfg.head == "direct":
        joints = out["joints"].float() * DIRECT_UNIT_MM + geo["center"][:, None]
        return {"kp3d": joints, "conf": torch.ones(joints.shape[:2], device=joints.device)}
    agg = aggregate(geo["points"], geo["valid"], out["h2"].float().clamp(0, 1),
                    out["h3"].float().clamp(0, 1), out["u"].float(), batch["K"].float(), stride=4,
                    radius=cfg.radius, top_n=cfg.top_n, bandwidth=cfg.bandwidth, iters=cfg.iters)
    return {"kp3d": agg["joints"], "conf": agg["weights"].mean(-1).clamp(0, 1),
            "candidates": agg["candidates"], "weights": agg["weights"]}


@torch.no_grad()
def predict(model: DenseDepthNet, loader, device: str, *, cfg: Config) -> dict:
    """Predictions over a loader as numpy arrays: "pred3d" (N, 21, 3) mm camera frame, "conf"
    (N, 21) in [0, 1], and the labels "kp3d" (N, 21, 3) mm, "vis", "has_3d", "index", "mirrored"."""
    model.eval()
    acc: dict[str, list] = {k: [] for k in ("pred3d", "conf", "kp3d", "vis", "has_3d", "index",
                                            "mirrored")}
    for batch in loader:
        b = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        r = infer(model, b, cfg)
        acc["pred3d"].append(r["kp3d"].cpu())
        acc["conf"].append(r["conf"].cpu())
        for k in ("kp3d", "vis", "has_3d", "index", "mirrored"):
            acc[k].append(batch[k].cpu())
    return {k: torch.cat(v).numpy() for k, v in acc.items()}


# ----------------------------------------------------------------------------- teacher
CONF_FIELD = "kp3d_conf"


def stored_frame(p: dict) -> np.ndarray:
    """Predicted joints (N, 21, 3) of :func:`predict` back in the dataset's stored frame (a
    mirror_left dataset predicts left hands mirrored: x → −x undoes it), ordered by sample
    index."""
    pred = p["pred3d"].astype(np.float32).copy()
    pred[p["mirrored"].astype(bool), :, 0] *= -1
    out = np.full_like(pred, np.nan)
    out[p["index"].astype(int)] = pred
    return out


def with_labels(base, kp3d: np.ndarray | None = None, conf: np.ndarray | None = None,
                name: str | None = None):
    """A :class:`~weakhand.data.HandData` sharing `base`'s images but with 3D labels `kp3d`
    (N, 21, 3) mm (stored frame; default: base's own) marked as present, and a per-joint
    confidence array ``kp3d_conf`` (N, 21) (default: 1). In memory only; request the field
    with ``HandDataset(..., fields=DEFAULT_FIELDS + ("kp3d_conf",))``."""
    n = base.count
    arrays = dict(base.arrays)
    if kp3d is not None:
        kp3d = np.asarray(kp3d, np.float32)
        if kp3d.shape != (n, sk.NUM_JOINTS, 3):
            raise ValueError(f"pseudo-labels for {base.path}: expected ({n}, 21, 3), got {kp3d.shape}")
        arrays["kp3d"] = kp3d
        arrays["has_3d"] = np.isfinite(kp3d).all((1, 2))
    conf = np.ones((n, sk.NUM_JOINTS), np.float32) if conf is None else np.asarray(conf, np.float32)
    if conf.shape != (n, sk.NUM_JOINTS):
        raise ValueError(f"confidence for {base.path}: expected ({n}, 21), got {conf.shape}")
    arrays[CONF_FIELD] = conf
    manifest = dict(base.manifest, name=name or base.name)
    return HandData(base.path, manifest, arrays, mmap=False)


def pseudo_labels(model: DenseDepthNet, dataset, cfg: Config, device: str,
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Teacher predictions for every sample of a (mirror_left, un-augmented) HandDataset:
    (kp3d (N, 21, 3) mm in the stored frame, conf (N, 21) in [0, 1])."""
    p = predict(model, torch.utils.data.DataLoader(dataset, batch_size=batch_size), device, cfg=cfg)
    conf = np.zeros((len(dataset), sk.NUM_JOINTS), np.float32)
    conf[p["index"].astype(int)] = p["conf"]
    return stored_frame(p), conf


def save_pseudo_labels(path, kp3d: np.ndarray, conf: np.ndarray):
    """Write pseudo-labels as an .npz atomically: kp3d (N, 21, 3) mm (stored frame), conf (N, 21)."""
    import io as _io

    buf = _io.BytesIO()
    np.savez(buf, kp3d=np.asarray(kp3d, np.float32), conf=np.asarray(conf, np.float32))
    return atomic_write_bytes(path, buf.getvalue())


def pseudo_label_quality(kp3d: np.ndarray, conf: np.ndarray, truth: np.ndarray) -> dict:
    """Error of pseudo-labels (N, 21, 3) against held-back truth (mm), split at the median
    confidence, and the rank correlation between confidence and error (< 0: confidence is a
    useful weight). A report only: the truth must never reach training."""
    err = np.linalg.norm(np.asarray(kp3d, np.float64) - np.asarray(truth, np.float64), axis=-1)
    hi = conf >= np.median(conf)
    rank = lambda a: np.argsort(np.argsort(a.ravel()))  # noqa: E731
    return {"n": int(len(err)), "epe_mm": float(err.mean()),
            "epe_mm_confident_half": float(err[hi].mean()),
            "epe_mm_other_half": float(err[~hi].mean()),
            "conf_err_spearman": float(np.corrcoef(rank(conf), rank(err))[0, 1])}


def frames_per_second(model: DenseDepthNet, dataset, cfg: Config, device: str,
                      batch_size: int, repeats: int = 3) -> float:
    """Median inference throughput (forward + voting + mean-shift) in frames/s at one batch
    size (after a warm-up; CUDA synchronised); frames/s is a scalar."""
    import time

    n = min(batch_size, len(dataset))
    x = next(iter(torch.utils.data.DataLoader(dataset, batch_size=n)))
    x = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in x.items()}
    model.eval()
    cuda = str(device).startswith("cuda")
    infer(model, x, cfg)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        infer(model, x, cfg)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return n / float(np.median(times))
