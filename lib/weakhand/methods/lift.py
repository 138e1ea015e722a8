"""The lifting family: root-relative depth zⁿ from 2D keypoints (:class:`~weakhand.models.Lifter`),
trained on the source's 3D labels, then on the target's labelled 2D with each weak signal.

Why it exists: the image models' depth halves are no better than the source's mean depth profile
on two CPU cores, while an MLP that reads zⁿ from the 2D keypoints as camera rays learns depth in
a minute. Its source side needs labels only (poses and cameras, :class:`weakhand.synth.labels.LabelStream`),
so it sees hundreds of thousands of fresh hands; the target side is the target training split's
labelled 2D, visibility, sensor depth map, mask and K (its 3D stays hidden, but for the upper
bound ``full3d``). The weak signals are :mod:`weakhand.methods.weak_signals`' (the same objects
the Cai and 2.5D families use): they act on the lifted zⁿ of the target samples and reach only
the lifter's parameters (the regulariser is frozen).

Stages: :func:`train_source` (source labels, per seed), then :func:`build` / :func:`step` per
variant of :data:`VARIANTS` (mixed: a fresh source batch and a target batch each step).
:func:`predict` lifts a set of 2D keypoints; :func:`protocol_predictions` makes the "2D given"
(labelled 2D in) and "full" (a 2D network's predictions in) predictions dicts that
:func:`weakhand.evaluation.scores.score` scores.

Units: kp2d px of the crop, K px, zⁿ root-relative depth / scale bone (middle MCP→PIP), kp3d mm.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .. import skeleton as sk
from ..bmc import BMCWeights
from ..data.torch_data import to_device
from ..models import root_relative_depth
from ..models.lifter import Lifter, LifterConfig, mirror_left
from ..progress import progress
from ..synth.labels import LabelStream
from . import weak_signals as ws
from .base import Stage, Variant

#: the method's configuration: the lifter network
Config = LifterConfig

#: stage-3 variants of the lifter (signals on the target's labelled 2D; "source": no target)
VARIANTS = {
    "source": Variant("source labels only (the same steps on the source, no target)", target="source"),
    "reg": Variant("+ depth regulariser (Cai et al.: frozen stage-2 net, labelled 2D + lifted zn vs the sensor map)",
                   ("regularizer",)),
    "bmc": Variant("+ biomechanical constraints (Spurr et al.)", ("bmc",)),
    "bmc_pinned": Variant("+ BMC + drift guard (ours)", ("bmc", "drift")),
    "direct": Variant("+ direct depth: zn toward the sensor depth at labelled visible joints (ours)", ("direct",)),
    "direct_root": Variant("+ direct depth anchored at the observed wrist (ours: pins the fingers-vs-wrist shift)",
                           ("direct_root",)),
    "direct_bmc": Variant("+ direct depth + BMC + drift guard (as the Cai family's 2d_direct_bmc)",
                          ("direct", "bmc", "drift")),
    "direct_root_bmc": Variant("+ wrist-anchored direct depth + BMC (ours)", ("direct_root", "bmc")),
    "reg_bmc": Variant("+ depth regulariser + BMC", ("regularizer", "bmc")),
    "teacher": Variant("+ the depth teacher's pseudo-3D labels (confidence-weighted)", target="teacher"),
    "full3d": Variant("+ target full 3D labels (upper bound)", target="full3d"),
}
#: one signal each: the candidates for "best single weak signal"; the rest combine signals
SINGLE_SIGNALS = ("reg", "bmc", "direct", "direct_root", "teacher")
COMBINATIONS = ("bmc_pinned", "direct_bmc", "direct_root_bmc", "reg_bmc")
#: labels of the variants in tables
ROW_LABELS = {"constant": "mean depth profile / constant pose (learned nothing)",
              **{k: ("source only" if k == "source" else v.description.split(" (")[0].split(":")[0])
                 for k, v in VARIANTS.items()}}
ROW_LABELS["full3d"] = "full 3D on target (upper bound)"


@dataclass
class LiftOptions:
    """Knobs of the lifting study (no arrays): batch sizes (hands), steps, Adam learning rates
    (cosine decay to 5 %), λ of each weak signal (the Cai family's defaults), and the 2D noise
    (px of a 64-px crop, σ per coordinate) added to the source labels (0: exact labels)."""
    source_steps: int = 2000
    source_batch: int = 256
    source_lr: float = 2e-3
    stage3_steps: int = 300
    stage3_source_batch: int = 128
    stage3_target_batch: int = 64
    stage3_lr: float = 2e-3
    reg_weight: float = 1.0
    bmc_weight: float = 0.05
    drift_weight: float = ws.DRIFT_WEIGHT
    direct_weight: float = ws.DIRECT_WEIGHT
    teacher_weight: float = 1.0
    full3d_weight: float = 1.0
    source_noise_px: float = 0.0

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON- and checkpoint-safe; no arrays)."""
        return asdict(self)


# ----------------------------------------------------------------------------- data

def right_handed(batch: Mapping[str, torch.Tensor]) -> dict:
    """A label batch with left hands mirrored to right ones: kp2d (B, 21, 2) px about the
    principal point, kp3d (B, 21, 3) mm x → −x; side (B,) 0 left / 1 right becomes all 1."""
    out = dict(batch)
    left = batch["side"] == 0
    out["kp2d"] = mirror_left(batch["kp2d"], batch["K"], batch["side"])
    if "kp3d" in batch:
        k = batch["kp3d"].clone()
        k[left, :, 0] = -k[left, :, 0]
        out["kp3d"] = k
    out["side"] = torch.ones_like(batch["side"])
    return out


class LabelPool:
    """A finite label-only source: the fully labelled hands of a (real) source's training split,
    drawn with replacement. `labels`: :func:`collate_dataset`'s dict (right-handed; kp2d (N, 21, 2)
    crop px, kp3d (N, 21, 3) mm, K (N, 3, 3)); hands without 3D or 2D are dropped. The lifter reads
    rays K⁻¹(u, v, 1), so the crop size the labels were collated at does not matter."""

    def __init__(self, labels: Mapping[str, torch.Tensor], name: str):
        ok = torch.isfinite(labels["kp3d"]).all(-1).all(-1) & torch.isfinite(labels["kp2d"]).all(-1).all(-1)
        if not bool(ok.any()):
            raise ValueError(f"label source {name}: no hand with both 2D and 3D labels")
        self.name = name
        self.kp2d, self.kp3d, self.K = (labels[k][ok].float() for k in ("kp2d", "kp3d", "K"))

    def __len__(self) -> int:
        return len(self.kp2d)

    def to_dict(self) -> dict:
        """{"name", "kind": "dataset", "hands"} (no arrays)."""
        return {"name": self.name, "kind": "dataset", "hands": len(self)}

    def batches(self, seed: int, batch: int) -> Iterator[dict]:
        """Endless batches of `batch` hands drawn with replacement (seeded): kp2d (B, 21, 2) px,
        kp3d (B, 21, 3) mm, K (B, 3, 3), side (B,) all 1 (right-handed)."""
        g = torch.Generator().manual_seed(int(seed))
        while True:
            i = torch.randint(len(self), (int(batch),), generator=g)
            yield {"kp2d": self.kp2d[i], "kp3d": self.kp3d[i], "K": self.K[i],
                   "side": torch.ones(len(i), dtype=torch.long)}


def source_batches(style, seed: int, batch: int, size: int = 64, noise_px: float = 0.0) -> Iterator[dict]:
    """Endless source hands (right-handed), labels only: fresh hands of a synthetic `style`, or
    draws from a :class:`LabelPool`: kp2d (B, 21, 2) crop px (+ N(0, noise_px²) when given),
    K (B, 3, 3), kp3d (B, 21, 3) mm, zn (B, 21)."""
    g = torch.Generator().manual_seed(int(seed) + 7919)
    stream = style.batches(seed, batch) if isinstance(style, LabelPool) else LabelStream(style, seed, batch, size=size)
    for b in stream:
        b = right_handed(b)
        if noise_px:
            b["kp2d"] = b["kp2d"] + noise_px * torch.randn(b["kp2d"].shape, generator=g)
        b["zn"] = root_relative_depth(b["kp3d"].double()).float()
        yield b


#: fields of a target set kept in memory for stage 3 (what the weak signals read, plus labels)
TARGET_FIELDS = ("kp2d", "vis", "K", "depth", "mask", "has_2d", "has_3d", "has_depth", "kp3d", "side")


def collate_dataset(dataset, fields=TARGET_FIELDS, batch_size: int = 256) -> dict:
    """Every sample of a :class:`~weakhand.data.HandDataset` (right-handed, unaugmented) as one
    dict of stacked tensors: kp2d (N, 21, 2) px, vis (N, 21), K (N, 3, 3), depth/mask
    (N, 1, H, W) mm / {0, 1}, has_* (N,), kp3d (N, 21, 3) mm (NaN without 3D), side (N,),
    and ``kp3d_conf`` (N, 21) when the dataset carries it. No images."""
    from torch.utils.data import DataLoader

    keep = tuple(fields) + (("kp3d_conf",) if "kp3d_conf" in dataset[0] else ())
    acc: dict[str, list] = {k: [] for k in keep}
    for b in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        for k in keep:
            acc[k].append(b[k])
    return {k: torch.cat(v) for k, v in acc.items()}


def target_batches(t: Mapping[str, torch.Tensor], batch: int, seed: int) -> Iterator[dict]:
    """Endless random batches of an in-memory target set (every tensor (batch, ...), units as
    stored: px, mm), reshuffled per epoch, order seeded by `seed`; a set smaller than `batch`
    gives batches of the whole set."""
    g = torch.Generator().manual_seed(int(seed) + 104729)
    n = len(t["kp2d"])
    if n == 0:
        raise ValueError("target_batches: the target set is empty")
    batch = min(int(batch), n)
    while True:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - batch + 1, batch):
            idx = perm[i:i + batch]
            yield {k: v[idx] for k, v in t.items()}


# ----------------------------------------------------------------------------- losses

def zn_loss(zn: torch.Tensor, zn_true: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Smooth-L1 (β = 0.1 scale bones) between zn (B, 21) and the true zn, joints 1-20,
    optionally weighted per joint (B, 21) in [0, 1]; NaN targets are skipped. Scalar."""
    ok = torch.isfinite(zn_true)
    ok[:, sk.ROOT] = False
    w = ok.to(zn) if weight is None else torch.where(ok, weight.to(zn).clamp(0, 1), torch.zeros_like(zn))
    l = F.smooth_l1_loss(zn, torch.nan_to_num(zn_true), reduction="none", beta=0.1)
    return (l * w).sum() / w.sum().clamp_min(1e-6)


def losses(model: Lifter, source: Mapping, target: Mapping | None, variant: str,
           signals: Mapping | None = None, opts: LiftOptions | None = None) -> dict:
    """One stage-3 step's loss terms (scalars; zn (B, 21) in scale-bone units): ``source`` (the supervised zn term on a source batch) +
    the variant's target term(s): Σ λ·signal on the weak target batch, or the teacher's
    pseudo-3D / the target's 3D (smooth-L1 on zn). Returns {"loss", "source", ...} scalars."""
    opts = opts or LiftOptions()
    zs = model(source["kp2d"], source["K"])["zn"]
    terms = {"source": zn_loss(zs, source["zn"])}
    terms["loss"] = terms["source"]
    tgt = VARIANTS[variant].target
    if target is None or tgt == "source":
        terms["source"] = terms["source"].detach()
        return terms
    zt = model(target["kp2d"], target["K"])["zn"]
    if tgt in ("teacher", "full3d"):
        lam = opts.teacher_weight if tgt == "teacher" else opts.full3d_weight
        name = "pseudo3d" if tgt == "teacher" else "target3d"
        v = zn_loss(zt, root_relative_depth(target["kp3d"].double()).float(), target.get("kp3d_conf"))
        terms = {**terms, "loss": terms["loss"] + lam * v, name: v.detach()}
    else:
        terms = ws.add_signal_terms(terms, signals, target, zt, None)
    terms["source"] = terms["source"].detach()
    return terms


def weak_signals_for(variant: str, opts: LiftOptions, *, regularizer=None, reg_size=None,
                     prior=None, limits=None, direct_prior=None, drift_mu=None) -> dict:
    """{name: (λ, signal)} of a lifting variant; raises naming what is missing (the regulariser
    from 30, limits from 10, the direct prior and the drift anchor from the source).
    reg_size: the regulariser's map side (px); prior: Cai's depth anchor prior {skin_offset_mm, s_mm};
    drift_mu (21,) scale-bone units."""
    need = VARIANTS[variant].signals
    ws.check_inputs(variant, need, regularizer=regularizer, bmc=limits, direct=direct_prior,
                    direct_root=direct_prior, drift=drift_mu)
    out = {}
    if "regularizer" in need:
        out["depth_map"] = (opts.reg_weight, ws.RegularizerSignal(regularizer, reg_size, prior, "label",
                                                                  weak_only=True))
    if "bmc" in need:
        w = opts.bmc_weight
        out["bmc"] = (1.0, ws.BMCSignal(limits, BMCWeights(w, w, w), "label"))
    if "direct" in need:
        out["direct_depth"] = (opts.direct_weight, ws.DirectDepthSignal(direct_prior))
    if "direct_root" in need:
        out["direct_depth_root"] = (opts.direct_weight, ws.DirectDepthSignal(direct_prior, anchor="root"))
    if "drift" in need:
        out["drift"] = (opts.drift_weight, ws.DriftGuard(drift_mu))
    return out


# ----------------------------------------------------------------------------- training

def _cosine(opt: torch.optim.Optimizer, steps: int, lr: float):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps), eta_min=lr / 20)


def init_lifter(cfg: LifterConfig, seed: int) -> Lifter:
    """A fresh lifter (zn (B, 21) from kp2d (B, 21, 2) px) whose initial weights depend only on
    `seed` (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return Lifter(cfg)


def train_source(cfg: LifterConfig, style, seed: int, opts: LiftOptions, device: str = "cpu",
                 size: int = 64, desc: str = "lifter source") -> tuple[Lifter, dict]:
    """Stage 1 of the lifter (zn (B, 21) scale-bone units from kp2d (B, 21, 2) px): `opts.source_steps` Adam steps on fresh source label batches of
    `style` (seeded by `seed`: initial weights and the hands drawn). Returns (lifter in eval mode,
    history {"step": [...], "loss": [...], "elapsed_s"})."""
    model = init_lifter(cfg, seed).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=opts.source_lr)
    sched = _cosine(opt, opts.source_steps, opts.source_lr)
    stream = source_batches(style, seed, opts.source_batch, size, opts.source_noise_px)
    hist: dict = {"step": [], "loss": []}
    t0 = time.perf_counter()
    for i in progress(range(opts.source_steps), desc=desc, unit="step"):
        b = next(stream)
        loss = zn_loss(model(b["kp2d"].to(device), b["K"].to(device))["zn"], b["zn"].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if i % 50 == 0 or i == opts.source_steps - 1:
            hist["step"].append(i)
            hist["loss"].append(float(loss.detach()))
    hist["elapsed_s"] = time.perf_counter() - t0
    return model.eval(), hist


def build(variant: str, source_model: Lifter, opts: LiftOptions, device: str = "cpu", **signal_inputs) -> Stage:
    """The :class:`~weakhand.methods.base.Stage` of one lifting variant (no arrays): a copy of the source
    lifter, Adam at ``opts.stage3_lr``, and ``step(model, {"source", "target"})`` → loss terms.
    `signal_inputs`: :func:`weak_signals_for`'s keyword inputs (regularizer, reg_size, prior,
    limits, direct_prior, drift_mu); only the variant's signals need theirs."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    signals = weak_signals_for(variant, opts, **signal_inputs)
    for _, sig in signals.values():  # the frozen regulariser never trains here
        reg = getattr(sig, "reg", None)
        if reg is not None:
            reg.eval().requires_grad_(False).to(device)
    model = Lifter(source_model.cfg).to(device)
    model.load_state_dict(source_model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=opts.stage3_lr)

    def step_fn(m, batch):
        return losses(m, batch["source"], batch.get("target"), variant, signals, opts)

    return Stage(model, opt, step_fn, model, scheduler=_cosine(opt, opts.stage3_steps, opts.stage3_lr),
                 options=opts)


def stage3_source(style, seed: int, opts: LiftOptions, size: int = 64) -> list[dict]:
    """The source batches of one stage-3 run (``opts.stage3_steps`` dicts: kp2d (B, 21, 2) px,
    K (B, 3, 3), kp3d (B, 21, 3) mm, zn (B, 21); ``opts.stage3_steps`` fresh batches of
    ``opts.stage3_source_batch`` hands, seeded by `seed`): every variant of a seed sees the
    same ones, so they are drawn once and shared."""
    it = source_batches(style, seed + 1000, opts.stage3_source_batch, size, opts.source_noise_px)
    return [next(it) for _ in range(max(1, opts.stage3_steps))]


def mixed_batches(style, target: Mapping | None, seed: int, opts: LiftOptions, size: int = 64,
                  source: list[dict] | None = None) -> Iterator[dict]:
    """{"source": a source batch (kp2d (B, 21, 2) px, zn (B, 21)), "target": a target batch (absent when `target` is None)};
    `source`: :func:`stage3_source`'s batches (drawn here when None), cycled."""
    src_list = source if source is not None else stage3_source(style, seed, opts, size)
    tgt = target_batches(target, opts.stage3_target_batch, seed) if target is not None else None
    i = 0
    while True:
        out = {"source": src_list[i % len(src_list)]}
        i += 1
        if tgt is not None:
            out["target"] = next(tgt)
        yield out


def fit(stage: Stage, batches: Iterator[dict], steps: int, device: str = "cpu", desc: str = "") -> dict:
    """Run `steps` optimizer steps of a built stage; returns the history (no arrays) {"step", "loss", terms…,
    "elapsed_s"} (every 25 steps) and leaves the model in eval mode. Raises on a non-finite loss,
    naming the step and the terms."""
    model = stage.model.train()
    hist: dict = {"step": []}
    t0 = time.perf_counter()
    for i in progress(range(steps), desc=desc, unit="step"):
        terms = stage.step(model, to_device(next(batches), device))
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(f"{desc}: non-finite loss at step {i}: "
                                     + ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items()))
        stage.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        stage.optimizer.step()
        if stage.scheduler is not None:
            stage.scheduler.step()
        if i % 25 == 0 or i == steps - 1:
            hist["step"].append(i)
            for k, v in terms.items():
                hist.setdefault(k, []).append(float(v.detach()) if isinstance(v, torch.Tensor) else float(v))
    hist["elapsed_s"] = time.perf_counter() - t0
    model.eval()
    return hist


def save_lifter(model: Lifter, path: str | Path, config: Mapping | None = None) -> Path:
    """Write the lifter atomically as a weakhand checkpoint (no arrays in or out; rebuilt by
    :func:`weakhand.models.registry.build_model`); `config`: plain data recorded with it."""
    from ..models.registry import describe
    from ..train import checkpoint as ck

    ckpt = {"format": ck.FORMAT, "version": ck.VERSION, "name": Path(path).parent.name, "step": 0,
            "epoch": 0, "batch_in_epoch": 0, "models": {"model": model.state_dict()},
            "model_specs": {"model": describe(model)}, "optimizer": None, "scheduler": None,
            "config": dict(config or {}), "metrics": {}}
    return ck.write_checkpoint(ckpt, path)[0]


# ----------------------------------------------------------------------------- prediction

@torch.no_grad()
def predict(model: Lifter, kp2d, K, batch_size: int = 4096, device: str = "cpu") -> np.ndarray:
    """zn (N, 21) scale-bone units of right hands from kp2d (N, 21, 2) px and K (N, 3, 3) px."""
    model = model.eval().to(device)
    kp2d, K = torch.as_tensor(np.asarray(kp2d), dtype=torch.float32), torch.as_tensor(np.asarray(K), dtype=torch.float32)
    out = [model(kp2d[i:i + batch_size].to(device), K[i:i + batch_size].to(device))["zn"].cpu()
           for i in range(0, len(kp2d), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, sk.NUM_JOINTS), np.float32)


def protocol_predictions(model: Lifter, labels: Mapping[str, np.ndarray], uv_pred: np.ndarray | None = None,
                         device: str = "cpu") -> dict:
    """Predictions dicts for :func:`weakhand.evaluation.scores.score` under both protocols:
    {"given": labelled 2D in (uv = kp2d, zn lifted from it), "full": the 2D network's uv_pred
    (N, 21, 2) px in (zn lifted from it; absent without uv_pred)}. `labels`: kp2d, kp3d, vis, K,
    has_3d of the test split (right-handed), numpy."""
    lab = {k: np.asarray(labels[k]) for k in ("kp2d", "kp3d", "vis", "K", "has_3d")}
    out = {"given": {**lab, "uv": lab["kp2d"], "zn": predict(model, lab["kp2d"], lab["K"], device=device)}}
    if uv_pred is not None:
        out["full"] = {**lab, "uv": np.asarray(uv_pred), "zn": predict(model, uv_pred, lab["K"], device=device)}
    return out


# ----------------------------------------------------------------------------- diagnostics

def gradient_shares(model: Lifter, batch: Mapping, variant_signals: Mapping[str, Mapping],
                    opts: LiftOptions | None = None) -> list[dict]:
    """Each weak term's gradient norm on the lifter's parameters relative to the source zn term
    (one mixed batch {"source", "target"}): rows {variant, term, λ, value, grad_norm,
    share_vs_source} (unitless ratios). `variant_signals`: {variant: {name: (λ, signal)}}."""
    model.train()
    params = list(model.parameters())

    def norm_of(loss):
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum((x.float() ** 2).sum() for x in g if x is not None)))

    src, tgt = batch["source"], batch["target"]
    ref_loss = zn_loss(model(src["kp2d"], src["K"])["zn"], src["zn"])
    ref = norm_of(ref_loss)
    zt = model(tgt["kp2d"], tgt["K"])["zn"]
    rows = []
    for variant, sigs in variant_signals.items():
        for name, (lam, sig) in sigs.items():
            v = sig(tgt, zt, None)["loss"]
            g = norm_of(lam * v) if v.requires_grad else 0.0
            rows.append({"variant": variant, "term": name, "λ": lam, "value": float(v), "grad_norm": g,
                         "share_vs_source": g / ref if ref > 0 else math.nan})
    model.zero_grad(set_to_none=True)
    model.eval()
    return rows

