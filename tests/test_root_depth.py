"""Closed-form root depth, 2.5D ↔ 3D round trip, and the root refinement MLP."""
from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest
import torch

from weakhand import skeleton as sk
from weakhand.models import root_depth as rd
from weakhand.synth.domains import RENDER, SENSOR
from weakhand.synth.generator import random_rotations, sample_hand_poses


def _random_scenes(n: int, seed: int, style=RENDER):
    """Random hands (any rotation) anywhere in front of random cameras, many far off-axis."""
    kp, _ = sample_hand_poses(style, n, seed=seed)
    rng = np.random.default_rng(seed)
    kp = np.einsum("nij,nkj->nki", random_rotations(rng, n), kp)
    z = rng.uniform(200, 1500, n)
    off = np.tan(np.radians(rng.uniform(0, 60, n)))  # up to 60° off the optical axis
    phi = rng.uniform(0, 2 * np.pi, n)
    kp = kp + np.stack([z * off * np.cos(phi), z * off * np.sin(phi), z], -1)[:, None]
    keep = (kp[..., 2] > 30).all(1)
    kp = kp[keep]
    m = len(kp)
    K = np.zeros((m, 3, 3))
    f = rng.uniform(200, 1500, m)
    K[:, 0, 0], K[:, 1, 1] = f, f * rng.uniform(0.95, 1.05, m)
    K[:, 0, 1] = rng.uniform(-1, 1, m)  # a little skew: the full inverse is used
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = rng.uniform(0, 640, m), rng.uniform(0, 480, m), 1.0
    return torch.tensor(kp), torch.tensor(K)


def _roots(uv, zr, K):
    """Both roots of the consistent quadratic (reference implementation, float64)."""
    xy = rd._backproject_xy(uv, K)
    m, n = sk.SCALE_BONE
    xn, yn, zn = xy[:, n, 0], xy[:, n, 1], zr[:, n]
    xm, ym, zm = xy[:, m, 0], xy[:, m, 1], zr[:, m]
    # direct expansion of |(Z+zn) p_n - (Z+zm) p_m|^2 = 1 as a Z^2 + b Z + c
    pn = torch.stack([xn, yn, torch.ones_like(xn)], -1)
    pm = torch.stack([xm, ym, torch.ones_like(xm)], -1)
    d = pn - pm
    e = zn[:, None] * pn - zm[:, None] * pm
    a, b, c = (d * d).sum(-1), 2 * (d * e).sum(-1), (e * e).sum(-1) - 1
    disc = torch.sqrt(b * b - 4 * a * c)
    return (-b + disc) / (2 * a), (-b - disc) / (2 * a)


@pytest.mark.parametrize("style", [RENDER, SENSOR], ids=["render", "sensor"])
def test_round_trip_3d_to_25d_to_3d_is_exact(style):
    kp, K = _random_scenes(3000, seed=7, style=style)
    uv, zr, s = rd.to_25d(kp, K)
    true = kp[:, sk.ROOT, 2] / s
    far, near = _roots(uv, zr, K)
    # the maths: the true root always solves the consistent quadratic (to float64 precision)
    best = torch.minimum((far - true).abs(), (near - true).abs())
    assert best.max() < 1e-9 * true.max()
    # the closed form: exact whenever the positive root is unique (c < 0), and the bone-length
    # prior picks the right one of two positive roots in nearly every ambiguous case
    z = rd.root_depth_closed_form(uv, zr, K)
    exact = (z - true).abs() / true < 1e-9
    unique = near <= 0
    assert exact[unique].all()
    assert exact[~unique].float().mean() > 0.95  # measured: 97 % of the ambiguous cases
    assert exact.float().mean() > 0.99
    # 3D from the recovered root and the true scale: round trip < 1e-6 mm
    rec = rd.reconstruct_25d(uv, zr, K, scale=s)
    err = (rec - kp).norm(dim=-1).max(-1).values
    assert err[exact].max() < 1e-6
    # with the known root depth the reconstruction is exact everywhere
    assert (rd.reconstruct_25d(uv, zr, K, true, s) - kp).abs().max() < 1e-6


def test_the_erratum_form_is_measurably_wrong():
    """The paper's printed form (b without the factor 2, same /2a) misses the root by percent."""
    kp, K = _random_scenes(500, seed=3)
    uv, zr, s = rd.to_25d(kp, K)
    true = kp[:, sk.ROOT, 2] / s
    xy = rd._backproject_xy(uv, K)
    m, n = sk.SCALE_BONE
    xn, yn, zn = xy[:, n, 0], xy[:, n, 1], zr[:, n]
    xm, ym, zm = xy[:, m, 0], xy[:, m, 1], zr[:, m]
    a = (xn - xm) ** 2 + (yn - ym) ** 2
    cross = xn * xm + yn * ym
    b_wrong = zn * (xn**2 + yn**2 - cross) + zm * (xm**2 + ym**2 - cross)
    c = (xn * zn - xm * zm) ** 2 + (yn * zn - ym * zm) ** 2 + (zn - zm) ** 2 - 1
    wrong = 0.5 * (-b_wrong + torch.sqrt((b_wrong**2 - 4 * a * c).clamp_min(0))) / a
    assert ((wrong - true).abs() / true).median() > 0.005


def test_degenerate_inputs_stay_finite():
    uv = torch.zeros(3, 21, 2, dtype=torch.float64, requires_grad=True)
    zr = torch.zeros(3, 21, dtype=torch.float64, requires_grad=True)
    K = torch.eye(3, dtype=torch.float64).expand(3, 3, 3).clone()
    with torch.no_grad():
        zr[1, 10] = 5.0   # bone straight along the ray (a = 0) and negative discriminant
        uv[2, 10] = 1e-12
    z = rd.root_depth_closed_form(uv, zr, K)
    z.sum().backward()
    assert torch.isfinite(z).all() and torch.isfinite(uv.grad).all() and torch.isfinite(zr.grad).all()


def test_refinement_reduces_root_error_on_held_out_noisy_predictions():
    torch.manual_seed(0)

    def noisy(seed, n):
        kp, side = sample_hand_poses(RENDER, n, seed=seed)
        rng = np.random.default_rng(seed)
        kp = np.einsum("nij,nkj->nki", random_rotations(rng, n), kp)
        kp = kp + np.stack([rng.uniform(-80, 80, n), rng.uniform(-80, 80, n),
                            rng.uniform(350, 800, n)], -1)[:, None]
        K = torch.tensor([[300.0, 0, 64], [0, 300.0, 64], [0, 0, 1]]).expand(n, 3, 3)
        kp = torch.tensor(kp, dtype=torch.float32)
        uv, zr, s = rd.to_25d(kp, K)
        g = torch.Generator().manual_seed(seed)
        uv = uv + 1.5 * torch.randn(uv.shape, generator=g)   # a network's 2D error, px
        zr = zr + 0.08 * torch.randn(zr.shape, generator=g)  # and its relative-depth error
        return uv, zr, K, kp[:, sk.ROOT, 2] / s

    train, held_out = noisy(1, 4000), noisy(2, 1000)
    ref = rd.RootRefiner(hidden=64)
    opt = torch.optim.Adam(ref.parameters(), 3e-3)
    for step in range(300):
        idx = torch.randint(0, 4000, (256,))
        out = ref(train[0][idx], train[1][idx], train[2][idx])
        loss = (out["z_root"] - train[3][idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ref.eval()
    with torch.no_grad():
        out = ref(*held_out[:3])
    err_closed = (out["z_root_closed"] - held_out[3]).abs().mean()
    err_refined = (out["z_root"] - held_out[3]).abs().mean()
    assert err_refined < 0.7 * err_closed, (float(err_closed), float(err_refined))


def test_refiner_starts_as_the_closed_form_and_detaches_its_inputs():
    kp, K = _random_scenes(64, seed=5)
    uv, zr, _ = rd.to_25d(kp.float(), K.float())
    uv.requires_grad_(True)
    ref = rd.RootRefiner().eval()
    out = ref(uv, zr, K.float())
    torch.testing.assert_close(out["z_root"], out["z_root_closed"])
    assert not out["z_root"].requires_grad or out["z_root"].grad_fn is not None
    out["z_root"].sum().backward() if out["z_root"].requires_grad else None
    assert uv.grad is None  # the pose network never gets the root loss's gradient


def test_bone_prior_is_the_generators_mean_and_the_model_does_not_import_synth():
    """The written-out prior equals its recomputation from the procedural generator (bit for
    bit), and models/root_depth stands without weakhand.synth."""
    kp, _ = sample_hand_poses(RENDER, 2000, seed=12345)
    lengths = torch.as_tensor(sk.bone_lengths(kp))
    ratios = (lengths / lengths[..., sk.SCALE_BONE_ID : sk.SCALE_BONE_ID + 1]).mean(0).float()
    assert torch.equal(rd.default_bone_prior(), ratios)
    tree = ast.parse(inspect.getsource(rd))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not any("synth" in m for m in imported), imported
