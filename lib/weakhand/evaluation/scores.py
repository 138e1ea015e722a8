"""Scores of predictions, their aggregation over seeds, and the results table: the one
evaluation path of the workbook (training notebooks and notebook 70 alike).

Protocol (the hand3d / FreiHAND evaluation code): hand3d/FreiHAND ``EvalUtil`` semantics (visible joints,
``d <= t``, per-keypoint averaging), AUC on ``linspace(0, 50, 100)`` and ``linspace(20, 50, 100)``
mm, "median" = mean of per-keypoint medians. "Known root": 3D from (u, v, zn) with the
ground-truth root depth and scale bone (Zimmermann & Brox / Cai). "Aligned": similarity
Procrustes per sample with det(R) = +1. "Recovered root" (2.5D only): the model's own refined root
depth times the ground-truth scale.

Two entry points take the same predictions dict ``p`` (what every method's ``predict`` returns:
``uv`` (N, 21, 2) input px, ``zn`` (N, 21) root-relative depth / scale bone, 2.5D also ``z_root``
and ``z_root_closed`` (N,) scale-bone units; labels ``kp2d`` (N, 21, 2) px, ``kp3d`` (N, 21, 3)
mm camera frame, ``vis`` (N, 21), ``K`` (N, 3, 3) px, ``has_3d`` (N,)):

* :func:`score_predictions`: the quick subset (no Procrustes, no BMC) for validation during
  training and the training notebooks' tables;
* :func:`score`: every number, for notebook 70's table and figures.

:func:`score_camera_frame` scores models that predict camera-frame 3D directly (``pred3d``; the
depth models of notebook 40) under the same keys.

**Key vocabulary** (one name per quantity in both; only samples with a 3D label are scored,
joints with vis = 0 are skipped; "known root" unless prefixed):

===========================  =========================================================
``n_samples``                samples scored (int)
``px_2d_mean``               2D keypoint error, px (``px_2d_median``: mean of per-joint medians)
``z_err_mm``                 mean |z error|, mm (``z_err_median_mm``); ``z_bias_mm`` its signed mean
                             (> 0: predicted too far from the camera)
``occ_z_err_mm``             |z error| / ``occ_epe_mm`` 3D error of occluded (vis = 0) joints, mm
``epe_mm``                   3D end-point error, mm (``epe_median_mm``)
``auc_0_50``, ``auc_20_50``  PCK area on 0-50 / 20-50 mm; ``auc_hand3d_21_50`` hand3d's 21-50 mm grid
``pa_*``                     the same after Procrustes alignment (``pa_epe_mm``, ``pa_auc_0_50``...)
``lab2d_pa_epe_mm``          PA-EPE of the labelled 2D with the predicted depth, mm: the depth half
                             alone (the constant pose's value is "labelled 2D + the source's mean
                             depth profile", what a depth head that learned nothing scores)
``rec_*``                    2.5D, recovered root: ``rec_epe_mm``, ``rec_z_err_mm``, ``rec_auc_0_50``,
                             ``rec_auc_20_50`` (NaN for models without a root)
``root_err_mm``              2.5D: mean |refined root depth error|, mm; ``root_closed_err_mm`` the
                             closed-form root's (before refinement)
``bmc_violation_*``          BMC violation rates of the predicted poses (:func:`violation_summary`)
arrays                       ``pred3d``/``gt3d`` (N, 21, 3) mm, ``rec_pred3d`` (N, 21, 3) mm (2.5D),
                             ``uv``/``kp2d`` (N, 21, 2) px, ``index`` (N,), ``pck_t``/``pck``/``pa_pck``
                             (100,), ``per_joint_epe``/``per_joint_z`` (21,) mm, ``z_signed`` mm,
                             ``sample_epe`` (N,) mm
===========================  =========================================================
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .. import metrics
from .. import skeleton as sk
from ..bmc import violation_rates
from ..models import reconstruct_3d
from ..models.root_depth import reconstruct_25d
from .variants import FAMILY_LABELS, ROW_LABELS, ROW_ORDER

#: scalar metrics of :func:`score` shown in the results table (key, column title, digits)
TABLE_METRICS: tuple[tuple[str, str, int], ...] = (
    ("px_2d_mean", "2D px", 2),
    ("z_err_mm", "z err mm", 1),
    ("epe_mm", "EPE mm", 1),
    ("epe_median_mm", "EPE median mm", 1),
    ("auc_0_50", "AUC 0-50", 3),
    ("auc_20_50", "AUC 20-50", 3),
    ("occ_z_err_mm", "occluded z err mm", 1),
    ("pa_epe_mm", "PA-EPE mm", 1),
    ("pa_auc_0_50", "PA-AUC 0-50", 3),
    ("pa_auc_20_50", "PA-AUC 20-50", 3),
    ("lab2d_pa_epe_mm", "PA-EPE mm, labelled 2D", 1),
    ("rec_epe_mm", "EPE mm (recovered root)", 1),
    ("rec_auc_20_50", "AUC 20-50 (recovered root)", 3),
    ("bmc_violation_items", "BMC items violated", 3),
)
#: the metrics whose (target 2D -> full 3D) gap closure is reported
GAP_METRICS = ("z_err_mm", "epe_mm")
#: error metrics (mm) compared with "+ target 2D" seed by seed (:func:`paired_versus`): title
PAIRED_METRICS = {"z_err_mm": "z err", "occ_z_err_mm": "occluded z err", "pa_epe_mm": "PA-EPE",
                  "lab2d_pa_epe_mm": "PA-EPE, labelled 2D"}
#: weak variants whose gap closure is reported (the references are "2d" and "full3d")
WEAK_VARIANTS = ("2d_depth", "2d_depth_hand", "2d_bmc", "2d_bmc_pinned", "2d_depth_bmc", "2d_direct", "2d_direct_bmc",
                 "2d_teacher")

# The papers' own numbers, as a reference on *different data* (not a target for ours).
PAPER_REFERENCE = (
    {"paper": "Cai et al. ECCV 2018", "data": "STB (real RGB-D)", "metric": "AUC 20-50 mm",
     "target 2D": 0.807, "+ depth regularizer / + BMC": 0.889, "full 3D": None},
    {"paper": "Spurr et al. ECCV 2020", "data": "FreiHAND (2.5D, GT root)", "metric": "3D EPE mm",
     "target 2D": 20.92, "+ depth regularizer / + BMC": 13.78, "full 3D": 8.78},
    {"paper": "Spurr et al. ECCV 2020", "data": "FreiHAND (2.5D, GT root)", "metric": "z error mm",
     "target 2D": 17.02, "+ depth regularizer / + BMC": 9.97, "full 3D": 5.69},
)


def _per_sample_mean(d: np.ndarray) -> np.ndarray:
    """(N, J) distances with NaN = not scored -> (N,) mean over scored joints (NaN if none)."""
    cnt = np.isfinite(d).sum(1)
    return np.where(cnt > 0, np.nansum(d, 1) / np.maximum(cnt, 1), np.nan)


def _known_root(p: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The scored samples of `p` (those with a 3D label) as float64 arrays, and their 3D pose
    with the ground-truth root depth and scale bone: ``sel`` (N,) bool, ``kp3d`` (n, 21, 3) mm,
    ``uv``/``kp2d`` (n, 21, 2) px, ``zn`` (n, 21), ``K`` (n, 3, 3), ``vis`` (n, 21) bool,
    ``scale`` (n,) mm, ``pred3d`` (n, 21, 3) mm."""
    sel = np.asarray(p["has_3d"]).astype(bool)
    if not sel.any():
        raise ValueError("no sample with a 3D label to evaluate")
    f64 = lambda k: np.asarray(p[k], dtype=np.float64)[sel]  # noqa: E731
    g = {"sel": sel, "kp3d": f64("kp3d"), "uv": f64("uv"), "zn": f64("zn"), "K": f64("K"),
         "kp2d": f64("kp2d"), "vis": np.asarray(p["vis"])[sel].astype(bool)}
    g["scale"] = sk.scale_length(g["kp3d"])
    g["pred3d"] = reconstruct_3d(g["uv"], g["zn"], g["K"], g["kp3d"][:, sk.ROOT, 2], g["scale"])
    return g


def _recovered_root(p: Mapping[str, np.ndarray], g: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """2.5D: (3D pose (n, 21, 3) mm from the model's own refined root depth x the GT scale bone,
    that root depth (n,) in scale-bone units)."""
    t = lambda x: torch.as_tensor(x)  # noqa: E731
    zr = np.asarray(p["z_root"], dtype=np.float64)[g["sel"]]
    return reconstruct_25d(t(g["uv"]), t(g["zn"]), t(g["K"]), t(zr), t(g["scale"])).numpy(), zr


def _root_err(z_root: np.ndarray, g: Mapping[str, Any]) -> float:
    """Mean |root depth error| in mm of root depths (n,) in scale-bone units."""
    return float(np.mean(np.abs(z_root * g["scale"] - g["kp3d"][:, sk.ROOT, 2])))


def score_predictions(p: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The quick scores of predictions: what validation during training and the training
    notebooks' tables report (no Procrustes, no BMC; the same numbers as :func:`score` under
    the same keys).

    `p`: the predictions dict of the module docstring (``uv`` (N, 21, 2) px, ``zn`` (N, 21);
    2.5D also ``z_root`` / ``z_root_closed`` (N,) scale-bone units; labels ``kp2d`` px,
    ``kp3d`` (N, 21, 3) mm, ``vis``, ``K``, ``has_3d``).

    Returns ``n_samples``, ``px_2d_mean`` px, ``z_err_mm``, ``z_bias_mm``, ``epe_mm`` mm,
    ``auc_20_50``, ``auc_hand3d_21_50``, ``auc_0_50``, arrays ``pred3d`` / ``gt3d`` (n, 21, 3)
    mm; with ``z_root`` also ``rec_z_err_mm``, ``rec_epe_mm``, ``rec_auc_20_50``,
    ``root_err_mm``, ``root_closed_err_mm`` (with ``z_root_closed``) and ``rec_pred3d``
    (n, 21, 3) mm.
    """
    g = _known_root(p)
    kp3d, vis, pred3d = g["kp3d"], g["vis"], g["pred3d"]
    e3 = metrics.evaluate_3d(pred3d, kp3d, vis, align="none")
    e2 = metrics.evaluate_2d(g["uv"], g["kp2d"], vis)
    ez = metrics.depth_error(pred3d[..., 2], kp3d[..., 2], vis)
    dz = (pred3d[..., 2] - kp3d[..., 2])[vis]
    out: dict[str, Any] = {
        "n_samples": int(g["sel"].sum()), "px_2d_mean": e2["epe_mean_px"],
        "z_err_mm": ez["mean_abs_z_mm"], "z_bias_mm": float(dz.mean()),
        "epe_mm": e3["epe_mean_mm"], "auc_20_50": e3["auc_20_50"],
        "auc_hand3d_21_50": e3["auc_hand3d_21_50"], "auc_0_50": e3["auc_0_50"],
        "pred3d": pred3d, "gt3d": kp3d}
    if "z_root" in p:
        rec, zr = _recovered_root(p, g)
        er = metrics.evaluate_3d(rec, kp3d, vis, align="none")
        out.update({"rec_z_err_mm": metrics.depth_error(rec[..., 2], kp3d[..., 2], vis)["mean_abs_z_mm"],
                    "rec_epe_mm": er["epe_mean_mm"], "rec_auc_20_50": er["auc_20_50"]})
        if "z_root_closed" in p:
            zc = np.asarray(p["z_root_closed"], dtype=np.float64)[g["sel"]]
            out["root_closed_err_mm"] = _root_err(zc, g)
        out.update({"root_err_mm": _root_err(zr, g), "rec_pred3d": rec})
    return out


def score_camera_frame(p: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Scores of models that predict 3D joints in the camera frame directly (the depth models:
    the depth map fixes the root, so no ground-truth root is used and nothing is aligned).

    `p`: ``pred3d`` and ``kp3d`` (N, 21, 3) mm camera frame, ``vis`` (N, 21), ``has_3d`` (N,).
    Returns ``n_samples``, ``epe_mm``, ``epe_median_mm``, ``auc_20_50``, ``auc_0_50``,
    ``z_err_mm`` (mm; AUCs unitless) and the array ``per_joint_epe`` (21,) mm, on the visible
    joints of samples with a 3D label.
    """
    sel = np.asarray(p["has_3d"]).astype(bool)
    if not sel.any():
        raise ValueError("no sample with a 3D label to evaluate")
    pred, gt, vis = p["pred3d"][sel].astype(np.float64), p["kp3d"][sel].astype(np.float64), p["vis"][sel]
    e = metrics.evaluate_3d(pred, gt, vis, align="none")
    ez = metrics.depth_error(pred[..., 2], gt[..., 2], vis)
    return {"n_samples": int(sel.sum()), "epe_mm": e["epe_mean_mm"], "epe_median_mm": e["epe_median_mm"],
            "auc_20_50": e["auc_20_50"], "auc_0_50": e["auc_0_50"], "z_err_mm": ez["mean_abs_z_mm"],
            "per_joint_epe": np.asarray(e["per_keypoint_epe_mm"])}


def score(p: Mapping[str, np.ndarray], limits=None, keep_arrays: bool = True) -> dict[str, Any]:
    """Every number of one variant on one test split.

    `p`: predictions as from :func:`weakhand.evaluation.variants.predict` (``uv`` (N,21,2) px,
    ``zn`` (N,21), optional ``z_root`` (N,) scale-bone units) with labels ``kp2d``, ``kp3d`` (mm),
    ``vis``, ``K``, ``has_3d``. Only samples with a 3D label are scored; joints with vis = 0 are
    skipped. `limits`: :class:`weakhand.bmc.BMCLimits` for the violation rates of the predicted
    poses (None: skipped).

    Returns floats (mm, px, fractions; keys of ``TABLE_METRICS`` and more, see the module
    docstring) and, with `keep_arrays`, numpy arrays: ``pck_t`` (100,) mm, ``pck`` (100,),
    ``per_joint_epe`` (21,), ``per_joint_z`` (21,), ``z_signed`` (visible joints of all samples)
    mm, ``sample_epe`` (N,) mm, ``pred3d``/``gt3d`` (N,21,3) mm, ``uv``/``kp2d`` (N,21,2) px,
    ``index`` (N,).
    """
    g = _known_root(p)
    sel, kp3d, uv, zn, kp2d, vis = g["sel"], g["kp3d"], g["uv"], g["zn"], g["kp2d"], g["vis"]
    if not (np.isfinite(uv).all() and np.isfinite(zn).all()):
        raise ValueError("predictions contain NaN or inf (uv or zn): the model diverged")
    pred3d = g["pred3d"]
    e2 = metrics.evaluate_2d(uv, kp2d, vis)
    ez = metrics.depth_error(pred3d[..., 2], kp3d[..., 2], vis)
    e3 = metrics.evaluate_3d(pred3d, kp3d, vis, align="none")
    pa = metrics.evaluate_3d(pred3d, kp3d, vis, align="procrustes")
    z_signed = (pred3d[..., 2] - kp3d[..., 2])[vis]
    occ = ~vis
    occ[:, sk.ROOT] = False  # the root's depth is given (GT root)
    occ &= np.isfinite(kp3d).all(-1)
    occ_dz = np.abs(pred3d[..., 2] - kp3d[..., 2])[occ]
    occ_d = np.linalg.norm(pred3d - kp3d, axis=-1)[occ]
    lab2d = reconstruct_3d(kp2d, zn, g["K"], kp3d[:, sk.ROOT, 2], g["scale"])
    pa_lab2d = metrics.evaluate_3d(lab2d, kp3d, vis, align="procrustes")
    out: dict[str, Any] = {
        "n_samples": int(sel.sum()),
        "px_2d_mean": e2["epe_mean_px"], "px_2d_median": e2["epe_median_hand3d_px"],
        "z_err_mm": ez["mean_abs_z_mm"], "z_err_median_mm": ez["median_abs_z_hand3d_mm"],
        "z_bias_mm": float(z_signed.mean()),
        "occ_z_err_mm": float(occ_dz.mean()) if occ_dz.size else math.nan,
        "occ_epe_mm": float(occ_d.mean()) if occ_d.size else math.nan,
        "epe_mm": e3["epe_mean_mm"], "epe_median_mm": e3["epe_median_hand3d_mm"],
        "auc_0_50": e3["auc_0_50"], "auc_20_50": e3["auc_20_50"],
        "pa_epe_mm": pa["epe_mean_mm"], "pa_epe_median_mm": pa["epe_median_hand3d_mm"],
        "pa_auc_0_50": pa["auc_0_50"], "pa_auc_20_50": pa["auc_20_50"],
        "lab2d_pa_epe_mm": pa_lab2d["epe_mean_mm"],
    }
    if "z_root" in p:  # 2.5D: the model's own root depth (refined closed form) x GT scale
        rec, zr = _recovered_root(p, g)
        er = metrics.evaluate_3d(rec, kp3d, vis, align="none")
        out.update({"rec_epe_mm": er["epe_mean_mm"], "rec_auc_0_50": er["auc_0_50"],
                    "rec_auc_20_50": er["auc_20_50"],
                    "rec_z_err_mm": metrics.depth_error(rec[..., 2], kp3d[..., 2], vis)["mean_abs_z_mm"],
                    "root_err_mm": _root_err(zr, g)})
    else:
        out.update({k: math.nan for k in ("rec_epe_mm", "rec_auc_0_50", "rec_auc_20_50",
                                          "rec_z_err_mm", "root_err_mm")})
    if limits is not None:
        out.update(violation_summary(pred3d, limits))
    else:
        out["bmc_violation_items"] = out["bmc_violation_any"] = math.nan
    if keep_arrays:
        out.update({
            "pck_t": e3["pck_thresholds_mm"], "pck": e3["pck_curve"],
            "pa_pck": pa["pck_curve"],
            "per_joint_epe": e3["per_keypoint_epe_mm"], "per_joint_z": ez["per_keypoint_abs_z_mm"],
            "z_signed": z_signed,
            "sample_epe": _per_sample_mean(metrics.keypoint_distances(pred3d, kp3d, vis)),
            "pred3d": pred3d, "gt3d": kp3d, "uv": uv, "kp2d": kp2d,
            "index": np.asarray(p.get("index", np.arange(len(sel))))[sel],
        })
    return out


def violation_summary(kp3d: np.ndarray, limits) -> dict[str, float]:
    """BMC violation rates of poses (N, 21, 3) mm: ``bmc_violation_items`` = the fraction of all
    (pose, constraint item) pairs violated (20 bones, 4 + 4 palm items, 15 joint hulls),
    ``bmc_violation_<family>`` and ``bmc_violation_any`` = fraction of poses violating at least
    one item of that family / of any family."""
    v = violation_rates(kp3d, limits)
    items = np.concatenate([np.asarray(r, dtype=np.float64) for r in v["per_item"].values()])
    return {"bmc_violation_items": float(items.mean()),
            **{f"bmc_violation_{k}": float(v[k]) for k in v if k != "per_item"}}


def scalars(s: Mapping[str, Any]) -> dict[str, float]:
    """The float/int entries of a :func:`score` dict (JSON-safe): scalar metrics in their
    key's unit (mm, px, fraction), arrays and bools dropped."""
    return {k: (float(v) if isinstance(v, float) else v) for k, v in s.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def aggregate(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Scalar metrics over seeds -> {metric: {"mean", "std", "n"}}; std is the sample standard
    deviation (ddof 1; NaN for a single seed). NaN entries (metric not defined) stay NaN."""
    keys = [k for k, v in scalars(per_seed[0]).items() if isinstance(v, float)]
    out = {}
    for k in keys:
        x = np.array([float(s[k]) for s in per_seed], dtype=np.float64)
        n = int(np.isfinite(x).sum())
        mean = float(np.nanmean(x)) if n else math.nan
        std = float(np.nanstd(x, ddof=1)) if n > 1 else math.nan
        out[k] = {"mean": mean, "std": std, "n": n}
    return out


def gap_closed(weak: float, method: float, full: float) -> float:
    """Fraction of the (target 2D -> full 3D) gap a method closes, for an error metric:
    (weak - method) / (weak - full); 1 = as good as full 3D, 0 = no better than target 2D,
    < 0 = worse. NaN when the gap is (numerically) zero."""
    gap = weak - full
    return (weak - method) / gap if abs(gap) > 1e-9 else math.nan


def _seed_gaps(scores: Mapping[str, Mapping[int, Mapping[str, Any]]], variant: str,
               metric: str) -> list[float]:
    """Per-seed gap closure of `variant`, pairing each of its seeds with the same seed of the
    references when present (else the references' seed mean)."""
    refs = {r: scores.get(r, {}) for r in ("2d", "full3d")}
    if not all(refs.values()):
        return []
    mean = {r: float(np.mean([s[metric] for s in refs[r].values()])) for r in refs}
    out = []
    for seed, s in sorted(scores.get(variant, {}).items()):
        w = refs["2d"][seed][metric] if seed in refs["2d"] else mean["2d"]
        f = refs["full3d"][seed][metric] if seed in refs["full3d"] else mean["full3d"]
        out.append(gap_closed(w, s[metric], f))
    return out


def versus_2d(agg: Mapping[str, Mapping[str, Mapping[str, float]]], variant: str,
              metric: str = "z_err_mm") -> dict[str, Any]:
    """Is `variant` better than "+ target 2D" on an error `metric` by more than the seed spread?

    Returns {"diff": mean difference, "spread", "verdict"}, both in the metric's unit (mm for
    the default); spread = the larger of the two seed standard deviations. Verdicts: "better", "worse",
    "within seed spread", or "single seed: spread unknown" (fewer than 2 seeds on either side).
    """
    a, b = agg[variant][metric], agg["2d"][metric]
    diff = a["mean"] - b["mean"]
    spread = max(a["std"], b["std"]) if min(a["n"], b["n"]) > 1 else math.nan
    if not math.isfinite(spread):
        verdict = "single seed: spread unknown"
    elif abs(diff) <= spread:
        verdict = "within seed spread"
    else:
        verdict = "better" if diff < 0 else "worse"
    return {"diff": diff, "spread": spread, "verdict": verdict}


# two-sided 95 % Student-t quantiles t_{0.975, df}; beyond df = 10, 1.96 + 2.5 / df (error < 0.003)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228}


def t975(df: int) -> float:
    """Two-sided 95 % Student-t quantile for `df` >= 1 degrees of freedom (unitless)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    return _T975.get(int(df), 1.96 + 2.5 / df)


def paired_versus(by_variant: Mapping[str, Mapping[int, Mapping[str, Any]]], variant: str,
                  reference: str = "2d", metric: str = "z_err_mm") -> dict[str, Any]:
    """Paired comparison over seeds of `variant` against `reference` on an error `metric` (mm).

    Seeds pair the runs: seed s of both variants starts from the same stage-1/2 checkpoints and
    draws the same stage-3 RNG stream, so d_s = metric(variant, s) - metric(reference, s) removes
    what the seeds share. Returns {"n": seeds in both, "diff": mean d (mm, < 0 = variant better),
    "sd": std of d (ddof 1), "ci": (lo, hi) 95 % t interval of the mean d, "wins": seeds where
    the variant is better, "verdict"}: "better" / "worse" when the interval excludes 0,
    "not resolved" otherwise, "single seed: no interval" with fewer than 2 paired seeds.
    """
    a, b = by_variant.get(variant, {}), by_variant.get(reference, {})
    seeds = sorted(set(a) & set(b))
    d = np.array([float(a[s][metric]) - float(b[s][metric]) for s in seeds], dtype=np.float64)
    d = d[np.isfinite(d)]
    out: dict[str, Any] = {"n": int(d.size), "diff": float(d.mean()) if d.size else math.nan,
                           "sd": math.nan, "ci": (math.nan, math.nan),
                           "wins": int((d < 0).sum())}
    if d.size < 2:
        out["verdict"] = "single seed: no interval" if d.size else "no paired seeds"
        return out
    sd = float(d.std(ddof=1))
    half = t975(d.size - 1) * sd / math.sqrt(d.size)
    lo, hi = out["diff"] - half, out["diff"] + half
    out.update(sd=sd, ci=(lo, hi),
               verdict="better" if hi < 0 else "worse" if lo > 0 else "not resolved")
    return out


def results_table(scores: Mapping[str, Mapping[str, Mapping[int, Mapping[str, Any]]]]) -> dict[str, Any]:
    """The study's table from ``scores[family][variant][seed] = score(...)``.

    Returns {"rows": [...], "gaps": [...]}: one row per (family, variant) in ROW_ORDER with, per
    metric of TABLE_METRICS, ``<key>_mean`` / ``<key>_std`` and the number of seeds; ``gaps``:
    per family and weak variant, the fraction of the (target 2D -> full 3D) gap closed in each of
    GAP_METRICS (mean and std over seeds) and the z-error comparison with "+ target 2D"
    (:func:`versus_2d`).
    """
    rows, gaps = [], []
    for family, by_variant in scores.items():
        agg = {v: aggregate(list(by_seed.values())) for v, by_seed in by_variant.items() if by_seed}
        for v in sorted(agg, key=ROW_ORDER.index):
            row: dict[str, Any] = {"family": family, "family_label": FAMILY_LABELS[family],
                                   "variant": v, "label": ROW_LABELS[v],
                                   "seeds": sorted(by_variant[v])}
            for k, _, _ in TABLE_METRICS:
                m = agg[v].get(k, {"mean": math.nan, "std": math.nan})
                row[f"{k}_mean"], row[f"{k}_std"] = m["mean"], m["std"]
            for k in ("z_bias_mm", "z_err_median_mm", "pa_epe_median_mm", "root_err_mm"):
                row[f"{k}_mean"] = agg[v].get(k, {"mean": math.nan})["mean"]
            rows.append(row)
        if not {"2d", "full3d"} <= set(agg):
            continue
        for v in WEAK_VARIANTS:
            if v not in agg:
                continue
            g: dict[str, Any] = {"family": family, "variant": v, "label": ROW_LABELS[v]}
            for m in GAP_METRICS:
                per_seed = _seed_gaps(by_variant, v, m)
                g[f"{m}_gap_closed"] = float(np.mean(per_seed))
                g[f"{m}_gap_closed_std"] = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan
            g["z_vs_2d"] = versus_2d(agg, v, "z_err_mm")
            g["epe_vs_2d"] = versus_2d(agg, v, "epe_mm")
            g["paired"] = {m: paired_versus(by_variant, v, "2d", m) for m in PAIRED_METRICS}
            gaps.append(g)
    return {"rows": rows, "gaps": gaps}


def fmt(mean: float, std: float, digits: int) -> str:
    """'12.3 ± 0.4' (or '12.3' for one seed, '—' for undefined): a scalar mean and std in
    the metric's own unit, `digits` after the point."""
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def display_rows(table: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows of :func:`results_table` formatted for :func:`weakhand.viz.table` / the report:
    strings "mean ± std" per TABLE_METRICS column, the unit (mm, px) in the column title."""
    out = []
    for r in table["rows"]:
        d = {"model": f"{r['family_label']}: {r['label']}", "seeds": str(len(r["seeds"]))}
        for k, title, digits in TABLE_METRICS:
            d[title] = fmt(r[f"{k}_mean"], r[f"{k}_std"], digits)
        out.append(d)
    return out


def display_gaps(table: Mapping[str, Any], oracle: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Gap-closure rows formatted (gap closed in %, differences in mm, verdicts) for display;
    `oracle`: variant -> the
    oracle-descent verdict of its weak signal (:func:`weakhand.evaluation.oracle.flags`), shown
    as a column when given."""
    pct = lambda m, s: "—" if not math.isfinite(m) else f"{100 * m:.0f} %" + (  # noqa: E731
        f" ± {100 * s:.0f}" if math.isfinite(s) else "")
    out = []
    for g in table["gaps"]:
        zc, ec = g["z_vs_2d"], g["epe_vs_2d"]
        out.append({
            "family": FAMILY_LABELS[g["family"]], "variant": g["label"],
            "z-error gap closed": pct(g["z_err_mm_gap_closed"], g["z_err_mm_gap_closed_std"]),
            "EPE gap closed": pct(g["epe_mm_gap_closed"], g["epe_mm_gap_closed_std"]),
            "z err vs target 2D (mm)": f"{zc['diff']:+.1f}" + (
                f" (spread {zc['spread']:.1f})" if math.isfinite(zc["spread"]) else ""),
            "z verdict": zc["verdict"], "EPE verdict": ec["verdict"],
            **{f"{title} vs target 2D, paired (mm)": _paired_cell(g.get("paired", {}).get(m))
               for m, title in PAIRED_METRICS.items()},
            **({"oracle descent (z, noisy start)": oracle.get(g["variant"], "—")} if oracle is not None else {}),
        })
    return out


def _paired_cell(p: Mapping[str, Any] | None) -> str:
    """'−3.1 [−5.0, −1.2] better, 3/3 seeds' for one :func:`paired_versus` result."""
    if not p or not p["n"]:
        return "—"
    if p["n"] < 2:
        return f"{p['diff']:+.1f} (1 seed)"
    lo, hi = p["ci"]
    return f"{p['diff']:+.1f} [{lo:+.1f}, {hi:+.1f}] {p['verdict']}, {p['wins']}/{p['n']} seeds better"


def paper_reference_rows() -> list[dict[str, str]]:
    """The papers' figures (different data!) with the gap closure they imply where defined
    (as %), every cell a string (AUC a fraction, errors in mm)."""
    out = []
    for r in PAPER_REFERENCE:
        g = (gap_closed(r["target 2D"], r["+ depth regularizer / + BMC"], r["full 3D"])
             if r["full 3D"] is not None else math.nan)
        out.append({**{k: ("—" if v is None else str(v)) for k, v in r.items()},
                    "gap closed": "—" if not math.isfinite(g) else f"{100 * g:.0f} %"})
    return out


def table_csv(table: Mapping[str, Any]) -> str:
    """The results rows as CSV (one line per family/variant; mean and std columns in each
    metric's unit, mm / px / AUC fraction as the key names)."""
    import csv
    import io
    cols = ["family", "variant", "label", "n_seeds"] + [f"{k}_{s}" for k, _, _ in TABLE_METRICS
                                                         for s in ("mean", "std")]
    cols += ["z_bias_mm_mean", "z_err_median_mm_mean", "pa_epe_median_mm_mean", "root_err_mm_mean"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in table["rows"]:
        w.writerow({**{k: r.get(k) for k in cols if k != "n_seeds"}, "n_seeds": len(r["seeds"])})
    return buf.getvalue()


def target_checks(table: Mapping[str, Any]) -> list[dict[str, str]]:
    """The study's acceptance checks against the results table, per family (mean over seeds):
    rows {family, check, measured, met} with met "yes" / "no" / "—" (a row is missing);
    ``measured`` is text in mm or % of the gap."""
    out = []
    for family in dict.fromkeys(r["family"] for r in table["rows"]):
        rows = {r["variant"]: r for r in table["rows"] if r["family"] == family}
        gaps = {g["variant"]: g for g in table["gaps"] if g["family"] == family}
        m = lambda v, k: rows[v][f"{k}_mean"] if v in rows else math.nan  # noqa: E731

        def add(check, measured, ok):
            out.append({"family": FAMILY_LABELS[family], "check": check, "measured": measured,
                        "met": "—" if ok is None else ("yes" if ok else "no")})

        c, f = m("constant", "pa_epe_mm"), m("full3d", "pa_epe_mm")
        ok = None if not (math.isfinite(c) and math.isfinite(f)) else f <= 0.6 * c
        add("full 3D PA-EPE ≤ 0.6 × constant pose", f"{f:.1f} vs {0.6 * c:.1f} mm", ok)
        learned = [v for v in rows if v != "constant"]
        worse = [v for v in learned if math.isfinite(c) and m(v, "pa_epe_mm") >= c]
        add("every model beats the constant pose (PA-EPE)",
            "all below" if not worse else "not: " + ", ".join(worse), None if not math.isfinite(c) else not worse)
        s, z = m("source", "z_err_mm"), m("full3d", "z_err_mm")
        add("source-only z error ≥ 2 × full 3D", f"{s:.1f} vs {2 * z:.1f} mm",
            None if not (math.isfinite(s) and math.isfinite(z)) else s >= 2 * z)
        for v, need in (("2d_depth", 0.3), ("2d_depth_bmc", 0.6), ("2d_direct_bmc", 0.8)):
            g = gaps.get(v)
            if g is None:
                add(f"{v} closes ≥ {100 * need:.0f} % of the z gap", "—", None)
                continue
            frac, verdict = g["z_err_mm_gap_closed"], g["z_vs_2d"]["verdict"]
            add(f"{v} closes ≥ {100 * need:.0f} % of the z gap (beyond seed spread)",
                f"{100 * frac:.0f} % ({verdict})", bool(frac >= need and verdict == "better"))
        for v in ("2d_bmc", "2d_bmc_pinned"):
            if v in rows and "2d" in rows:
                dz, docc = m(v, "z_err_mm") - m("2d", "z_err_mm"), m(v, "occ_z_err_mm") - m("2d", "occ_z_err_mm")
                spread = max(rows[v]["z_err_mm_std"], rows["2d"]["z_err_mm_std"])
                sp_o = max(rows[v]["occ_z_err_mm_std"], rows["2d"]["occ_z_err_mm_std"])
                ok = None if not math.isfinite(spread) else bool(dz < -spread or docc < -sp_o)
                add(f"{v} improves z or occluded z error beyond seed spread",
                    f"z {dz:+.1f} mm, occluded z {docc:+.1f} mm (spread {spread:.1f} / {sp_o:.1f})", ok)
    return out
