"""The 2.5D model family and BMC as a stage-3 loss term of both families."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from weakhand import bmc
from weakhand import skeleton as sk
from weakhand.evaluation.scores import score_predictions
from weakhand.methods import cai, spurr_bmc
from weakhand.methods.weak_signals import bmc_term
from weakhand.models import CaiPoseNet
from weakhand.models.pose25d_net import Pose25DConfig, Pose25DNet
from weakhand.synth.domains import RENDER
from weakhand.synth.generator import sample_hand_poses
from weakhand.train import Trainer

from test_cai import _batch


@pytest.fixture(scope="module")
def limits():
    kp, side = sample_hand_poses(RENDER, 1500, seed=4)
    return bmc.fit_limits(kp, side == 0)


def _tiny():
    return Pose25DNet(Pose25DConfig(width=8, blocks=(1, 1, 1), refiner_hidden=16))


def _stage1_checkpoint(tmp_path, batch):
    """(config, path) of a tiny 2.5D net trained one step on `batch`: a stage-1 checkpoint."""
    cfg = Pose25DConfig(width=8, blocks=(1, 1, 1), refiner_hidden=16)
    m = Pose25DNet(cfg)
    t = Trainer(m, torch.optim.Adam(m.parameters()), run_dir=tmp_path, name="s1", max_steps=1,
                step_fn=lambda mm, b: spurr_bmc.step(mm, b), show_progress=False)
    t.fit([batch], resume=False)
    return cfg, t.last_path


def test_pose25d_outputs_and_root_convention():
    batch, _ = _batch(b=4, s=32)
    out = _tiny()(batch)
    assert out["uv"].shape == (4, 21, 2) and out["zn"].shape == (4, 21)
    assert out["heatmaps"][0].shape == (4, 21, 8, 8) and out["depth_maps"].shape == (4, 21, 8, 8)
    assert (out["zn"][:, sk.ROOT] == 0).all()
    assert (out["uv"] >= -0.5).all() and (out["uv"] <= 31.5).all()
    assert out["z_root"].shape == (4,) and torch.isfinite(out["z_root"]).all()
    assert "z_root" not in _tiny()(batch["image"])  # no K, no root
    with pytest.raises(ValueError, match="multiples of 8"):
        _tiny()(torch.rand(1, 3, 36, 36))


def test_losses_use_only_the_labels_each_sample_has():
    batch, _ = _batch(b=4, s=32)  # samples 2, 3 have no 3D
    model = _tiny()
    out = model(batch)
    terms = spurr_bmc.losses(batch, out)
    assert all(torch.isfinite(v) for v in terms.values())
    # the 3D terms ignore the weak samples: their predicted depth gets no gradient from them
    zn = out["zn"]
    zn.retain_grad()
    (terms["depth"] + terms["root"]).backward()
    assert zn.grad[2:].abs().sum() == 0 and zn.grad[:2].abs().sum() > 0


def test_bmc_term_acts_on_weak_samples_only_and_stops_at_uv(limits):
    batch, _ = _batch(b=4, s=32)
    model = _tiny()
    out = model(batch)
    out["uv"].retain_grad()
    out["zn"].retain_grad()
    terms = bmc_term({"loss": torch.zeros(())}, out, batch, limits, bmc.BMCWeights(), False)
    assert terms["bmc"] > 0 and {"bmc_bone_length", "bmc_root_bones", "bmc_angles"} <= set(terms)
    terms["loss"].backward()
    assert out["uv"].grad is None or out["uv"].grad.abs().sum() == 0
    assert out["zn"].grad[:2].abs().sum() == 0 and out["zn"].grad[2:].abs().sum() > 0
    # all samples fully labelled: nothing is weak, BMC is zero
    full = dict(batch, has_3d=torch.ones(4, dtype=torch.bool))
    none = bmc_term({"loss": torch.zeros(())}, model(full), full, limits, bmc.BMCWeights(),
                         False)
    assert float(none["bmc"]) == 0.0


def test_bmc_loss_25d_matches_bmc_on_the_reconstructed_pose(limits):
    kp, side = sample_hand_poses(RENDER, 8, seed=9)
    kp = torch.tensor(bmc.canonical_pose(kp, side == 0, normalize=False) + [10.0, -20.0, 450.0])
    K = torch.tensor([[400.0, 0, 64], [0, 400.0, 64], [0, 0, 1]], dtype=torch.float64).expand(8, 3, 3)
    from weakhand.models.root_depth import to_25d
    uv, zn, _ = to_25d(kp, K)
    a = bmc.bmc_loss_25d(uv, zn, K, limits)
    b = bmc.bmc_loss(kp, limits)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-7, rtol=1e-5)


def test_stage3_builders_need_limits_for_bmc_variants(tmp_path, limits):
    batch, _ = _batch(b=4, s=32)
    cfg, ckpt = _stage1_checkpoint(tmp_path, batch)
    with pytest.raises(ValueError, match="needs BMC limits"):
        spurr_bmc.build("2d_bmc", cfg, ckpt)
    st = spurr_bmc.build("2d_bmc", cfg, ckpt, limits=limits)
    model, opt, step = st.models, st.optimizer, st.step
    assert st.model is model
    terms = step(model, batch)
    assert "bmc" in terms and torch.isfinite(terms["loss"])
    st = spurr_bmc.build("2d", cfg, ckpt, limits=limits)
    model, step = st.model, st.step
    assert "bmc" not in step(model, batch)  # limits are ignored by non-BMC variants
    with pytest.raises(ValueError, match="needs BMC limits"):
        cai.build("2d_bmc", cai.Config(width=8, n_stages=1), None, None,
                         {"reg_size": 16}, {})


def test_cai_bmc_variant_step_trains(limits):
    batch, _ = _batch(b=4, s=32)
    net = CaiPoseNet(cai.Config(width=8, n_stages=2, reg_width=8, reg_hidden=16))
    sig = cai.weak_signals_for("2d_bmc", cai.Stage3Options(bmc_weight=1.0), limits=limits)
    out = cai.step(net, batch, 1.5, sig)
    assert out["bmc"] > 0
    out["loss"].backward()
    grads = [p.grad for p in net.reg.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_evaluation_with_known_and_recovered_root():
    batch, kp3d = _batch(b=4, s=32)
    full = dict(batch, kp3d=torch.tensor(kp3d, dtype=torch.float32),
                has_3d=torch.ones(4, dtype=torch.bool))
    model = _tiny().eval()
    p = spurr_bmc.predict(model, [full], "cpu")
    r = score_predictions(p)
    for key in ("epe_mm", "z_err_mm", "rec_epe_mm", "rec_z_err_mm",
                "root_closed_err_mm", "root_err_mm", "rec_auc_20_50"):
        assert np.isfinite(r[key]), key
    # a perfect 2.5D prediction with the true root gives zero error both ways
    from weakhand.models.root_depth import to_25d
    uv, zn, s = to_25d(torch.tensor(kp3d), full["K"].double())
    perfect = dict(p, uv=uv.numpy(), zn=zn.numpy(), z_root=(torch.tensor(kp3d[:, 0, 2]) / s).numpy())
    r = score_predictions(perfect)
    assert r["epe_mm"] < 1e-3 and r["rec_epe_mm"] < 1e-3 and r["root_err_mm"] < 1e-3


def test_bmc_lift_from_labels_judges_depth_not_the_2d_error():
    kp, side = sample_hand_poses(RENDER, 1500, seed=4)  # the poses the limits were fitted on
    lim = bmc.fit_limits(kp, side == 0)
    right = bmc.canonical_pose(kp[:8], side[:8] == 0, normalize=False) + [0.0, 0.0, 500.0]
    inside = bmc.violation_rates(right, lim)["any"]
    K = torch.tensor([[300.0, 0, 32], [0, 300.0, 32], [0, 0, 1]], dtype=torch.float64).expand(8, 3, 3)
    from weakhand.models.root_depth import to_25d
    uv, zn, _ = to_25d(torch.tensor(right), K)
    batch = {"kp2d": uv, "K": K, "has_2d": torch.ones(8, dtype=torch.bool),
             "has_3d": torch.zeros(8, dtype=torch.bool)}
    noisy_uv = uv + 4.0 * torch.randn(uv.shape, generator=torch.Generator().manual_seed(0))
    out = {"uv": noisy_uv, "zn": zn}
    label = bmc_term({"loss": torch.zeros(())}, out, batch, lim, bmc.BMCWeights(), False, "label")
    pred = bmc_term({"loss": torch.zeros(())}, out, batch, lim, bmc.BMCWeights(), False, "pred")
    assert inside == 0.0 and float(label["bmc"]) == 0.0  # true depth + labelled 2D: plausible
    assert float(pred["bmc"]) > 0.05                     # the same depth with a 4 px 2D error is not
    with pytest.raises(ValueError, match="lift"):
        bmc_term({"loss": torch.zeros(())}, out, batch, lim, bmc.BMCWeights(), False, "gt")


def test_pose25d_pinned_and_direct_variants_add_their_terms(tmp_path, limits):
    """The drift guard and the direct term exist in the 2.5D family too: each variant needs its
    inputs, adds its named term, and the guard pulls the weak samples' mean zn toward μ."""
    from weakhand.methods import weak_signals as ws
    from weakhand.methods.weak_signals import DirectDepthPrior
    batch, _ = _batch(b=4, s=32)
    cfg, ckpt = _stage1_checkpoint(tmp_path, batch)
    with pytest.raises(ValueError, match="drift guard"):
        spurr_bmc.build("2d_bmc_pinned", cfg, ckpt, limits=limits)
    with pytest.raises(ValueError, match="direct-depth prior"):
        spurr_bmc.build("2d_direct_bmc", cfg, ckpt, limits=limits, drift_mu=[0.0] * 21)
    mu = np.full(21, 5.0)  # far from any prediction: the guard must be large and pull zn up
    st = spurr_bmc.build("2d_bmc_pinned", cfg, ckpt, limits=limits, drift_mu=mu)
    out = st.model(batch)
    terms = st.step(st.model, batch)
    assert {"bmc", "drift"} <= set(terms) and terms["drift"] > 1.0
    zn = out["zn"]
    assert st.options["drift_weight"] == ws.DRIFT_WEIGHT
    from weakhand.methods.weak_signals import DriftGuard
    r = DriftGuard(mu)(batch, zn)
    zn.retain_grad()
    r["loss"].backward()
    weak = (batch["has_2d"].bool() & ~batch["has_3d"].bool())
    assert (zn.grad[weak] < 0).all() and (zn.grad[~weak] == 0).all()
    prior = DirectDepthPrior(skin_offset_mm=[5.0] * 21, bone_mm=[30.0] * 20, s_mm=35.0, read_error_mm=1.0)
    batch = dict(batch, depth=torch.full((4, 1, 32, 32), 420.0), mask=torch.ones(4, 1, 32, 32),
                 has_depth=torch.ones(4, dtype=torch.bool))
    st = spurr_bmc.build("2d_direct_bmc", cfg, ckpt, limits=limits, drift_mu=mu,
                         direct_prior=prior)
    terms = st.step(st.model, batch)
    assert {"bmc", "drift", "direct_depth"} <= set(terms) and torch.isfinite(terms["loss"])
