"""The lifting study's table: every lifting variant under both protocols, on each source, over
seeds, with its floors, paired intervals against "source only" and the share of the
source-only → full-3D gap each weak signal closes.

Protocols (both with the ground-truth root depth and scale, visible joints):

* **2D given** — the labelled 2D keypoints are the input; zⁿ is the lifter's. PA-EPE (``pa_epe_mm``),
  z error and occluded-joint z error measure the depth half alone. Floor: the labelled 2D with the
  source's mean depth profile (a depth model that learned nothing).
* **full** — the shared 2D network's predicted keypoints are the input (and the 2D of the 3D
  pose); floor: the constant pose (the source's Procrustes-mean hand).

``scores[source][variant][seed] = {"given": score scalars, "full": score scalars}``; the
constant rows are ``floors[source] = {"given": …, "full": …}`` (one set, no seeds).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import skeleton as sk
from .baselines import ConstantPose, score_constant_pose
from .scores import paired_versus, scalars, score

#: (protocol, metric key of :func:`weakhand.evaluation.scores.score`, column title)
METRICS: tuple[tuple[str, str, str], ...] = (
    ("given", "pa_epe_mm", "2D given: PA-EPE mm"),
    ("given", "z_err_mm", "2D given: z err mm"),
    ("given", "occ_z_err_mm", "2D given: occluded z err mm"),
    ("full", "pa_epe_mm", "full: PA-EPE mm"),
    ("full", "z_err_mm", "full: z err mm"),
    ("full", "px_2d_mean", "full: 2D px"),
)
#: metrics whose share of the source-only → full-3D gap is reported (2D given)
GAP_METRICS = ("pa_epe_mm", "z_err_mm")


def floor_scores(const: ConstantPose, labels: Mapping[str, np.ndarray], image_hw) -> dict:
    """{"given": labelled 2D + the constant's mean zn, "full": the constant pose} scored like a
    model (scalars in mm / px; no arrays). `labels`: kp2d, kp3d, vis, K, has_3d of the test split."""
    lab = {k: np.asarray(labels[k]) for k in ("kp2d", "kp3d", "vis", "K", "has_3d")}
    n = len(lab["kp3d"])
    given = score({**lab, "uv": lab["kp2d"], "zn": np.broadcast_to(const.zn, (n, sk.NUM_JOINTS)).copy()},
                  keep_arrays=False)
    full = score_constant_pose(const, {**lab, "uv": lab["kp2d"], "zn": np.zeros((n, sk.NUM_JOINTS))},
                               image_hw, keep_arrays=False)
    return {"given": scalars(given), "full": scalars(full)}


def score_protocols(preds: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """{"given": scalars, "full": scalars} (mm, px; no arrays) of
    :func:`weakhand.methods.lift.protocol_predictions`."""
    return {proto: scalars(score(p, keep_arrays=False)) for proto, p in preds.items()}


def _flat(by_seed: Mapping[int, Mapping[str, Mapping[str, float]]]) -> dict[int, dict[str, float]]:
    """seed -> {"<protocol>_<metric>": value}."""
    return {s: {f"{proto}_{k}": v for proto, d in x.items() for k, v in d.items()} for s, x in by_seed.items()}


def _mean_std(x: Sequence[float]) -> tuple[float, float]:
    a = np.asarray([v for v in x if np.isfinite(v)], np.float64)
    if not a.size:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def study_table(scores: Mapping[str, Mapping[str, Mapping[int, Mapping]]],
                floors: Mapping[str, Mapping[str, Mapping[str, float]]],
                order: Sequence[str] | None = None) -> dict:
    """Rows (mean, std, seeds per metric of :data:`METRICS`) and gaps (per weak variant: the share
    of the source-only → full-3D gap closed per seed, mean ± std, and the paired 95 % interval
    of the difference to "source only") for each source. Returns {"rows": [...], "gaps": [...]};
    rows of the floor carry variant "constant"."""
    rows, gaps = [], []
    for src, by_variant in scores.items():
        flat = {v: _flat(b) for v, b in by_variant.items() if b}
        fl = floors.get(src)
        if fl is not None:
            r = {"source": src, "variant": "constant", "seeds": []}
            for proto, k, _ in METRICS:
                r[f"{proto}_{k}_mean"], r[f"{proto}_{k}_std"] = fl[proto].get(k, math.nan), math.nan
            rows.append(r)
        names = [v for v in (order or flat) if v in flat]
        for v in names:
            r = {"source": src, "variant": v, "seeds": sorted(flat[v])}
            for proto, k, _ in METRICS:
                r[f"{proto}_{k}_mean"], r[f"{proto}_{k}_std"] = _mean_std([x[f"{proto}_{k}"] for x in flat[v].values()])
            rows.append(r)
        if not {"source", "full3d"} <= set(flat):
            continue
        for v in names:
            if v in ("source", "full3d"):
                continue
            g: dict[str, Any] = {"source": src, "variant": v}
            for k in GAP_METRICS:
                key = f"given_{k}"
                seeds = sorted(set(flat[v]) & set(flat["source"]) & set(flat["full3d"]))
                share = []
                for s in seeds:
                    a, b, c = flat["source"][s][key], flat[v][s][key], flat["full3d"][s][key]
                    share.append((a - b) / (a - c) if abs(a - c) > 1e-9 else math.nan)
                g[f"{key}_gap_closed"], g[f"{key}_gap_closed_std"] = _mean_std(share)
                g[f"{key}_gap_closed_seeds"] = share
            g["paired"] = {f"{p}_{k}": _paired(flat, v, f"{p}_{k}")
                           for p, k in (("given", "pa_epe_mm"), ("given", "z_err_mm"),
                                        ("given", "occ_z_err_mm"), ("full", "pa_epe_mm"))}
            gaps.append(g)
    return {"rows": rows, "gaps": gaps}


def _paired(flat: Mapping[str, Mapping[int, Mapping[str, float]]], variant: str, key: str) -> dict:
    out = paired_versus(flat, variant, "source", key)
    out["ci"] = list(out["ci"])
    return out


def fmt(mean: float, std: float, digits: int = 1) -> str:
    """'12.3 ± 0.4', '12.3' (one seed or a floor) or '—' (no arrays; mm or px as given)."""
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if np.isfinite(std) else "")


def display_rows(table: Mapping, labels: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The rows as strings for :func:`weakhand.viz.table` / the report (mm, px)."""
    labels = labels or {}
    out = []
    for r in table["rows"]:
        d = {"source": r["source"], "model": labels.get(r["variant"], r["variant"]),
             "seeds": str(len(r["seeds"])) if r["seeds"] else "—"}
        for proto, k, title in METRICS:
            d[title] = fmt(r[f"{proto}_{k}_mean"], r[f"{proto}_{k}_std"], 2 if k == "px_2d_mean" else 1)
        out.append(d)
    return out


def _ci_cell(p: Mapping) -> str:
    if not p or not np.isfinite(p.get("diff", math.nan)):
        return "—"
    lo, hi = p["ci"]
    if not np.isfinite(lo):
        return f"{p['diff']:+.2f} ({p['verdict']})"
    return f"{p['diff']:+.2f} [{lo:+.2f}, {hi:+.2f}] {p['verdict']}"


def display_gaps(table: Mapping, oracle: Mapping[str, str] | None = None,
                 labels: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Per source and weak variant: gap closed (PA-EPE, z, 2D given) and the paired differences
    against source only (mm, 95 % t interval, < 0 = better), with the oracle column."""
    labels, oracle = labels or {}, oracle or {}
    out = []
    for g in table["gaps"]:
        d = {"source": g["source"], "variant": labels.get(g["variant"], g["variant"])}
        for k, t in (("pa_epe_mm", "PA-EPE"), ("z_err_mm", "z err")):
            m, s = g[f"given_{k}_gap_closed"], g[f"given_{k}_gap_closed_std"]
            d[f"gap closed, {t} (2D given)"] = "—" if not np.isfinite(m) else (
                f"{100 * m:.0f} %" + (f" ± {100 * s:.0f}" if np.isfinite(s) else ""))
        for key, t in (("given_pa_epe_mm", "Δ PA-EPE (2D given)"), ("given_z_err_mm", "Δ z err (2D given)"),
                       ("given_occ_z_err_mm", "Δ occluded z (2D given)"), ("full_pa_epe_mm", "Δ PA-EPE (full)")):
            d[t] = _ci_cell(g["paired"].get(key, {}))
        d["oracle (noisy start, z mm)"] = oracle.get(g["variant"], "")
        out.append(d)
    return out


def row(table: Mapping, src: str, variant: str) -> Mapping | None:
    """The study-table row of (source, variant), None if absent (no arrays)."""
    return next((r for r in table["rows"] if r["source"] == src and r["variant"] == variant), None)


def _gap(table: Mapping, src: str, variant: str) -> Mapping | None:
    return next((g for g in table["gaps"] if g["source"] == src and g["variant"] == variant), None)


def checks(table: Mapping, default: str, gap: str, singles: Sequence[str], combos: Sequence[str]) -> list[dict]:
    """The issue-22 targets, each as {target, measured, met} (strings, no arrays; mm), from the study table.
    `default`/`gap`: the two source names; `singles`/`combos`: the single-signal and combined
    weak variants."""
    out = []

    def add(target, measured, met):
        out.append({"target": target, "measured": measured,
                    "met": "—" if met is None else ("yes" if met else "no")})

    c, f = row(table, default, "constant"), row(table, default, "full3d")
    if c and f:
        ratio = f["given_pa_epe_mm_mean"] / c["given_pa_epe_mm_mean"]
        add("2D given, full-3D lifter PA-EPE ≤ 0.45 × mean-profile floor (default source)",
            f"{f['given_pa_epe_mm_mean']:.2f} vs floor {c['given_pa_epe_mm_mean']:.2f} mm = {ratio:.2f} ×", ratio <= 0.45)
    for src, need in ((gap, 1.3), (default, None)):
        s, f = row(table, src, "source"), row(table, src, "full3d")
        if s and f:
            ratio = s["given_pa_epe_mm_mean"] / f["given_pa_epe_mm_mean"]
            add(f"2D given, {src}: source-only PA-EPE vs full 3D" + (f" ≥ {need} ×" if need else " (reported)"),
                f"{s['given_pa_epe_mm_mean']:.2f} / {f['given_pa_epe_mm_mean']:.2f} mm = {ratio:.2f} ×",
                (ratio >= need) if need else None)

    def best(names):
        cands = [g for g in (_gap(table, gap, v) for v in names) if g is not None]
        return max(cands, key=lambda g: np.nan_to_num(g["given_pa_epe_mm_gap_closed"], nan=-1e9), default=None)

    for names, share, what, need_ci in ((singles, 0.4, "best single weak signal", True),
                                        (combos, 0.7, "best combination", False)):
        g = best(names)
        if g is None:
            continue
        pa, z = g["given_pa_epe_mm_gap_closed"], g["given_z_err_mm_gap_closed"]
        p_pa, p_z = g["paired"]["given_pa_epe_mm"], g["paired"]["given_z_err_mm"]
        resolved = p_pa.get("verdict") == "better" and p_z.get("verdict") == "better"
        add(f"2D given, {gap}: {what} closes ≥ {int(100 * share)} % of the gap (PA-EPE and z)"
            + (", paired interval excludes 0" if need_ci else ""),
            f"{g['variant']}: PA-EPE {100 * pa:.0f} %, z {100 * z:.0f} %; paired PA {_ci_cell(p_pa)}, z {_ci_cell(p_z)}",
            bool(pa >= share and z >= share and (resolved or not need_ci)))
    g = _gap(table, gap, "bmc")
    if g:
        add(f"2D given, {gap}: BMC alone (reported whatever its sign)",
            f"PA-EPE {_ci_cell(g['paired']['given_pa_epe_mm'])}, z {_ci_cell(g['paired']['given_z_err_mm'])}", None)
    c = row(table, default, "constant")
    models = [r for r in table["rows"] if r["variant"] != "constant"]
    if c and models:
        b = min(models, key=lambda r: np.nan_to_num(r["full_pa_epe_mm_mean"], nan=1e9))
        ratio = b["full_pa_epe_mm_mean"] / c["full_pa_epe_mm_mean"]
        add("full protocol: the best lifter beats the constant pose's PA-EPE (aim ≤ 0.8 ×)",
            f"{b['source']}/{b['variant']}: {b['full_pa_epe_mm_mean']:.2f} vs constant {c['full_pa_epe_mm_mean']:.2f} mm "
            f"= {ratio:.2f} × (2D error {b['full_px_2d_mean_mean']:.2f} px)", ratio < 1.0)
    return out


def run_study(sources: Mapping[str, Any], seeds: Sequence[int], variants: Sequence[str],
              targets: Mapping[str, Mapping], labels: Mapping[str, np.ndarray], uv_pred: np.ndarray | None,
              cfg, opts, signal_inputs: Mapping[str, Any], out_dir=None, device: str = "cpu",
              size: int = 64, log=print) -> dict:
    """Train and score every (source, seed, variant) of the lifting study.

    sources: {name: DomainStyle} of the label-only source; targets: {"weak", "teacher",
    "full3d"} in-memory target training sets (:func:`weakhand.methods.lift.collate_dataset`;
    "weak" with its 3D hidden); labels: the test split's kp2d, kp3d, vis, K, has_3d (right-handed);
    uv_pred (N, 21, 2) px: the shared 2D network's test predictions (the full protocol);
    cfg: :class:`~weakhand.models.lifter.LifterConfig`; opts: :class:`~weakhand.methods.lift.LiftOptions`;
    signal_inputs: :func:`weakhand.methods.lift.weak_signals_for`'s inputs except drift_mu, which
    is each source's mean zn (``sources`` may map a name to (style, drift_mu)).
    out_dir: where ``<source>_<variant>_seed<k>.pt`` lifters are written (None: not written).
    Returns {"scores": scores[source][variant][seed] = {"given", "full"} scalars,
    "history": {(source, variant, seed) key string: training history}, "models": {source: {seed: source lifter}}}."""
    from pathlib import Path

    from ..methods import lift

    scores: dict = {}
    history: dict = {}
    models: dict = {}
    for src, spec in sources.items():
        style, mu = spec if isinstance(spec, tuple) else (spec, None)
        scores[src], models[src] = {v: {} for v in variants}, {}
        for seed in seeds:
            base, h = lift.train_source(cfg, style, seed, opts, device, size, desc=f"lifter {src} seed {seed}")
            history[f"{src}/pretrain/seed{seed}"] = h
            models[src][seed] = base
            src_batches = lift.stage3_source(style, seed, opts, size)  # shared by the seed's variants
            for v in variants:
                tgt_name = lift.VARIANTS[v].target
                target = None if tgt_name == "source" else targets[tgt_name]
                st = lift.build(v, base, opts, device, drift_mu=mu, **signal_inputs)
                with torch_seed(seed):
                    h = lift.fit(st, lift.mixed_batches(style, target, seed, opts, size, src_batches), opts.stage3_steps,
                                 device, desc=f"{src} {v} seed {seed}")
                history[f"{src}/{v}/seed{seed}"] = h
                preds = lift.protocol_predictions(st.model, labels, uv_pred, device)
                scores[src][v][seed] = score_protocols(preds)
                if out_dir is not None:
                    lift.save_lifter(st.model, Path(out_dir) / f"{src}_{v}_seed{seed}.pt",
                                     {"source": src, "variant": v, "seed": seed, "opts": opts.to_dict(),
                                      "net": cfg.to_dict()})
                s = scores[src][v][seed]
                log(f"{src:>10} {v:>11} seed {seed}: 2D given PA-EPE {s['given']['pa_epe_mm']:.2f} mm, "
                    f"z {s['given']['z_err_mm']:.1f} mm" + (f"; full PA-EPE {s['full']['pa_epe_mm']:.2f} mm"
                                                          if "full" in s else "")
                    + f"  ({h['elapsed_s']:.1f} s)")
    return {"scores": scores, "history": history, "models": models}


@contextlib.contextmanager
def torch_seed(seed: int):
    """Context (no arrays): the global torch RNG seeded with `seed` inside, restored after
    (dropout draws of one variant do not shift another's)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def image_model_bars(results: Mapping, variants: Sequence[str] = ("constant", "source", "2d", "2d_depth", "full3d")) -> list[dict]:
    """Bars for :func:`weakhand.evaluation.figures.lifting_headline` from notebook 70's results
    table (the image families): given = PA-EPE with the labelled 2D (``lab2d_pa_epe_mm``), full =
    PA-EPE (``pa_epe_mm``), mm, with their seed std."""
    out = []
    for r in results["rows"]:
        if r["variant"] not in variants or (r["variant"] == "constant" and r["family"] != "cai"):
            continue  # one constant row: the families share the source's constant pose
        out.append({"name": f"{r['family_label']}: {r['variant']}",
                    "given": r["lab2d_pa_epe_mm_mean"], "given_std": r.get("lab2d_pa_epe_mm_std", math.nan),
                    "full": r["pa_epe_mm_mean"], "full_std": r.get("pa_epe_mm_std", math.nan)})
    return out
