"""Oracle descent: can a weak signal teach depth at all?

Before a training number for a weak signal is believed, optimise *only that signal* over the
joint depths, starting near the truth, and see whether it moves toward the truth:

* take labelled target samples (the sensor test split), hide their 3D labels (``has_3d`` False,
  ``kp3d`` NaN: the signal sees what a weak sample carries: 2D labels, visibility, depth map, K);
* start from the true root-relative depth zn plus Gaussian noise at the base model's measured
  z error (σ = z_err / √(2/π), so the expected |dz| equals it), or from a flat hand (zn = 0), the
  depth-mirrored hand (zn → −zn), or the true hand with every joint but the root moved one scale
  bone away from the camera ("shifted": a signal blind to that global offset leaves it, and a
  network trained on it alone is free to drift there);
* minimise the signal over zn alone (2D fixed at the labels; Adam; the root stays 0);
* report the mean |Z − Z_true| in mm over visible non-root joints, with the GT scale, before and
  after. A signal whose descent *raises* the error from near the truth has no useful minimum
  there: it is flagged, whatever training later reports.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from .. import skeleton as sk
from ..models import root_relative_depth

STARTS = ("noisy", "flat", "mirrored", "shifted")
Signal = Callable[..., dict]


def hide_3d(batch: dict) -> dict:
    """A copy of a labelled batch that looks weak: has_3d (B,) False, has_2d (B,) True,
    kp3d (B, 21, 3) NaN; the other entries are shared, not copied."""
    out = dict(batch)
    out["has_3d"] = torch.zeros_like(batch["has_3d"], dtype=torch.bool)
    out["has_2d"] = torch.ones_like(batch["has_3d"], dtype=torch.bool)
    out["kp3d"] = torch.full_like(batch["kp3d"], float("nan"))
    return out


def z_error_mm(zn: torch.Tensor, zn_true: torch.Tensor, s_mm: torch.Tensor, vis: torch.Tensor) -> float:
    """Mean |Δzn|·s over visible non-root joints, mm."""
    m = vis.bool().clone()
    m[:, sk.ROOT] = False
    d = ((zn - zn_true).abs() * s_mm[:, None])[m]
    return float(d.mean()) if d.numel() else math.nan


def start_zn(zn_true: torch.Tensor, s_mm: torch.Tensor, start: str, noise_mm: float,
             generator: torch.Generator) -> torch.Tensor:
    """(B, 21) starting zn: noisy (truth + N(0, σ²) mm, σ = noise_mm/√(2/π)), flat, mirrored,
    shifted (truth + 1 scale bone on every non-root joint)."""
    if start == "noisy":
        sigma = noise_mm / math.sqrt(2 / math.pi)
        eps = torch.randn(zn_true.shape, generator=generator, dtype=zn_true.dtype) * sigma
        z = zn_true + eps / s_mm[:, None]
    elif start == "flat":
        z = torch.zeros_like(zn_true)
    elif start == "mirrored":
        z = -zn_true
    elif start == "shifted":
        z = zn_true + 1.0
    else:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    z = z.clone()
    z[:, sk.ROOT] = 0.0
    return z


def descend(signal: Signal | Sequence[tuple[float, Signal]], batch: dict, zn0: torch.Tensor,
            steps: int = 150, lr: float = 0.02) -> tuple[torch.Tensor, float, float]:
    """Minimise Σ λ·signal(batch, zn) over zn from zn0 (Adam, root fixed at 0).

    `signal`: one callable or [(λ, callable), ...]. Returns (final zn (B, 21) detached, signal
    value at the start, signal value at the end)."""
    terms = [(1.0, signal)] if callable(signal) else list(signal)
    z = zn0.clone().float().requires_grad_(True)
    keep = torch.ones_like(z)
    keep[:, sk.ROOT] = 0.0
    opt = torch.optim.Adam([z], lr=lr)

    def value(zz):
        return sum(lam * sig(batch, zz * keep)["loss"] for lam, sig in terms)

    with torch.no_grad():
        v0 = float(value(z))
    for _ in range(steps):
        opt.zero_grad()
        loss = value(z)
        if not loss.requires_grad:
            break
        loss.backward()
        opt.step()
    with torch.no_grad():
        zf = (z * keep).detach()
        return zf, v0, float(value(zf))


def oracle_table(signals: Mapping[str, Signal | Sequence[tuple[float, Signal]]], batch: dict,
                 noise_mm: float, starts: Sequence[str] = STARTS, steps: int = 150, lr: float = 0.02,
                 seed: int = 0) -> list[dict]:
    """One row per (signal, start): z error before → after (mm) and the signal's value.

    `batch`: labelled target samples (right hands) with kp3d; their 3D is hidden from the signals.
    `noise_mm`: the base model's measured z error (the "noisy" start's expected |dz|).
    Row keys: signal, start, z_before_mm, z_after_mm, change_mm, loss_before, loss_after, verdict
    ("moves toward the truth" / "moves away from the truth" / "no change")."""
    kp3d = batch["kp3d"].double()
    if not torch.isfinite(kp3d).all():
        raise ValueError("the oracle needs samples with full 3D labels (e.g. the sensor test split)")
    zn_true = root_relative_depth(kp3d).float()
    s_mm = sk.scale_length(kp3d).float()
    weak = hide_3d(batch)
    rows = []
    for name, sig in signals.items():
        for start in starts:
            g = torch.Generator().manual_seed(seed)
            z0 = start_zn(zn_true, s_mm, start, noise_mm, g)
            zf, v0, v1 = descend(sig, weak, z0, steps, lr)
            e0, e1 = z_error_mm(z0, zn_true, s_mm, batch["vis"]), z_error_mm(zf, zn_true, s_mm, batch["vis"])
            change = e1 - e0
            tol = 0.02 * max(e0, 1e-6)
            verdict = ("moves toward the truth" if change < -tol else
                       "moves away from the truth" if change > tol else "no change")
            rows.append({"signal": name, "start": start, "z_before_mm": e0, "z_after_mm": e1,
                         "change_mm": change, "loss_before": v0, "loss_after": v1, "verdict": verdict})
    return rows


def flags(rows: Sequence[Mapping]) -> dict[str, str]:
    """signal -> its oracle verdict from the "noisy" start (the table's oracle column): z error
    before → after in mm, with a warning when the descent raises it."""
    out = {}
    for r in rows:
        if r["start"] == "noisy":
            out[r["signal"]] = (f"{r['z_before_mm']:.1f} → {r['z_after_mm']:.1f} mm"
                                + ("" if r["change_mm"] < 0 else "  ⚠ raises z error"))
    return out


def collate(dataset, n: int) -> dict:
    """A batch of the first `n` labelled samples of a HandDataset (fixed, reproducible): its
    tensor fields stacked to (n, ...), e.g. ``kp3d`` (n, 21, 3) mm, ``kp2d`` (n, 21, 2) px."""
    idx = np.arange(min(n, len(dataset)))
    items = [dataset[int(i)] for i in idx]
    return {k: torch.stack([it[k] for it in items]) for k in items[0] if isinstance(items[0][k], torch.Tensor)}
