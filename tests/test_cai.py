"""Cai pipeline glue: label masks, losses on mixed batches, evaluation protocol."""
import numpy as np
import torch

from weakhand import camera
from weakhand.methods.base import joint_labels
from weakhand.evaluation.scores import score_predictions
from weakhand.methods.cai import losses
from weakhand.models import CaiPoseNet, PoseNetConfig, root_relative_depth


def _batch(b=4, s=32, seed=0):
    g = np.random.default_rng(seed)
    kp3d = np.zeros((b, 21, 3))
    for f in range(5):
        for j in range(4):
            kp3d[:, 1 + 4 * f + j] = [(f - 2) * 15.0, -40.0 - 20.0 * j, 10.0 * j]
    kp3d = kp3d + g.normal(0, 2, kp3d.shape) + [0, 0, 400.0]
    K = np.tile([[60.0, 0, 15.5], [0, 60.0, 15.5], [0, 0, 1]], (b, 1, 1))
    kp2d = camera.project(K, kp3d)
    has3 = np.array([True, True, False, False])[:b]
    kp3d_lab = kp3d.copy()
    kp3d_lab[~has3] = np.nan
    return {"image": torch.rand(b, 3, s, s), "kp2d": torch.tensor(kp2d, dtype=torch.float32),
            "kp3d": torch.tensor(kp3d_lab, dtype=torch.float32),
            "vis": torch.ones(b, 21, dtype=torch.bool), "K": torch.tensor(K, dtype=torch.float32),
            "has_2d": torch.ones(b, dtype=torch.bool), "has_3d": torch.tensor(has3),
            "in_crop": torch.ones(b, 21, dtype=torch.bool)}, kp3d


def test_joint_labels_mask_weak_samples():
    batch, kp3d = _batch()
    lab = joint_labels(batch)
    assert lab["valid2d"].all()
    assert torch.isnan(lab["zn"][2:]).all() and torch.isfinite(lab["zn"][:2]).all()
    np.testing.assert_allclose(lab["zn"][:2].numpy(), root_relative_depth(kp3d[:2]), atol=1e-4)


def test_losses_finite_on_mixed_batch_and_depth_ignores_weak_samples():
    torch.manual_seed(0)
    model = CaiPoseNet(PoseNetConfig(width=8, n_stages=2, reg_width=8, reg_hidden=16))
    batch, _ = _batch()
    out = model(batch)
    terms = losses(batch, out, sigma=1.5, stride=model.stride)
    assert torch.isfinite(terms["loss"]) and terms["depth"] > 0 and terms["heatmap"] > 0
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # a weak sample's depth prediction does not enter the depth term
    out2 = {k: (v.detach().clone() if torch.is_tensor(v) else [x.detach() for x in v])
            for k, v in out.items()}
    out2["zn"][3] += 50.0
    assert torch.equal(losses(batch, out2, 1.5, model.stride)["depth"],
                       losses(batch, {**out2, "zn": out["zn"].detach()}, 1.5, model.stride)["depth"])


def test_evaluation_of_a_perfect_prediction():
    batch, kp3d = _batch()
    has3 = np.ones(4, bool)
    p = {"uv": batch["kp2d"].numpy(), "zn": root_relative_depth(kp3d), "kp2d": batch["kp2d"].numpy(),
         "kp3d": kp3d, "vis": np.ones((4, 21), bool), "K": batch["K"].numpy(), "has_3d": has3}
    e = score_predictions(p)
    assert e["epe_mm"] < 1e-3 and e["z_err_mm"] < 1e-3 and e["px_2d_mean"] < 1e-3
    assert e["auc_20_50"] == 1.0 and e["n_samples"] == 4
    p["zn"] = p["zn"] + 0.5       # half a scale bone too far: ~ 0.5 * s mm of depth error
    e = score_predictions(p)
    s = np.linalg.norm(kp3d[:, 9] - kp3d[:, 10], axis=-1).mean()
    assert abs(e["z_err_mm"] - 0.5 * s * 20 / 21) < 2.0   # root joint stays exact


def test_depth_map_targets_and_regularizer_step_masks():
    from weakhand.methods.cai import regularizer_step
    from weakhand.models import depth_map_targets
    from weakhand.models import DepthRegularizer

    batch, kp3d = _batch()
    s = batch["image"].shape[-1]
    depth = torch.zeros(4, 1, s, s)
    mask = torch.zeros(4, 1, s, s)
    mask[:, :, 8:24, 8:24] = 1
    depth[:, :, 8:24, 8:24] = torch.linspace(380, 420, 16)[None, None, None, :]  # left is nearer
    depth[0, 0, 10, 10] = 0.0                                                   # a sensor hole
    batch.update(depth=depth, mask=mask, has_depth=torch.ones(4, dtype=torch.bool))
    t = depth_map_targets(batch, out_size=s)
    m = t["map"][1, 0]
    assert (m[mask[1, 0] == 0] == 0).all()                                       # background 0
    assert m[16, 9] > m[16, 22]                                                  # near -> larger
    assert not t["pixel_valid"][0, 0, 10, 10] and t["pixel_valid"][1, 0, 10, 10]
    torch.manual_seed(0)
    reg = DepthRegularizer(out_size=s)
    out = regularizer_step(reg, batch, s)                 # samples 2,3 have no 3D: excluded
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    batch["has_3d"] = torch.zeros(4, dtype=torch.bool)
    assert regularizer_step(reg, batch, s)["loss"].item() == 0.0


def test_weak_anchor_uses_gt_for_3d_samples_and_depth_prior_otherwise():
    from weakhand.methods.weak_signals import weak_anchor, wrist_depth

    batch, kp3d = _batch()
    s = batch["image"].shape[-1]
    depth = torch.full((4, 1, s, s), 390.0)
    depth[3] = 0.0                                     # no depth at all on sample 3
    batch.update(depth=depth, has_depth=torch.ones(4, dtype=torch.bool))
    z_root, scale, valid = weak_anchor(batch, {"skin_offset_mm": 12.0, "s_mm": 44.0})
    np.testing.assert_allclose(z_root[:2].numpy(), kp3d[:2, 0, 2], rtol=1e-6)
    assert z_root[2].item() == 402.0 and scale[2].item() == 44.0
    np.testing.assert_allclose(scale[:2].numpy(), np.linalg.norm(kp3d[:2, 10] - kp3d[:2, 9], axis=-1), rtol=1e-5)
    assert valid.tolist() == [True, True, True, False]
    d = torch.zeros(1, 8, 8)
    d[0, 3, 3], d[0, 3, 4], d[0, 4, 3] = 100.0, 110.0, 120.0
    assert wrist_depth(d, torch.tensor([[3.0, 3.0]])).item() == 110.0   # median of valid only


def _depth_batch():
    batch, kp3d = _batch()
    s = batch["image"].shape[-1]
    depth = torch.zeros(4, 1, s, s)
    mask = torch.zeros(4, 1, s, s)
    mask[:, :, 6:26, 6:26] = 1
    depth[:, :, 6:26, 6:26] = torch.linspace(390, 430, 20)[None, None, None, :]
    batch.update(depth=depth, mask=mask, has_depth=torch.ones(4, dtype=torch.bool))
    return batch, kp3d


def _frozen_reg(size=16):
    from weakhand.models import DepthRegularizer
    torch.manual_seed(1)
    reg = DepthRegularizer(out_size=size).eval()
    return reg.requires_grad_(False)


def test_step_regularizer_term_only_with_regularizer():
    from weakhand.methods.cai import Stage3Options, step, weak_signals_for

    torch.manual_seed(0)
    batch, _ = _depth_batch()
    model = CaiPoseNet(PoseNetConfig(width=8, n_stages=2, reg_width=8, reg_hidden=16))
    no_reg = step(model, batch, 1.5)
    assert "depth_map" not in no_reg
    sig = weak_signals_for("2d_depth", Stage3Options(), regularizer=_frozen_reg(), reg_size=16,
                           prior={"skin_offset_mm": 10.0, "s_mm": 45.0})
    out = step(model, batch, 1.5, sig)
    assert torch.isfinite(out["loss"]) and out["depth_map"] > 0
    out["loss"].backward()
    grads = [p.grad for p in model.reg.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_regularizer_gradient_never_reaches_the_2d_network():
    """Cai et al. §3.3: with weak_grad="head" the depth-map term of weak samples trains the depth
    regression only; with "all" (the old deviation) it also reaches the 2D network."""
    from weakhand.methods.cai import Stage3Options, step, weak_signals_for

    batch, _ = _depth_batch()
    batch["has_3d"] = torch.zeros(4, dtype=torch.bool)       # all weak: no supervised depth term
    batch["kp3d"] = torch.full_like(batch["kp3d"], float("nan"))
    prior = {"skin_offset_mm": 10.0, "s_mm": 45.0}
    for weak_grad, reaches_2d in (("head", False), ("all", True)):
        torch.manual_seed(0)
        model = CaiPoseNet(PoseNetConfig(width=8, n_stages=2, reg_width=8, reg_hidden=16))
        sig = weak_signals_for("2d_depth", Stage3Options(weak_grad=weak_grad), regularizer=_frozen_reg(),
                               reg_size=16, prior=prior)
        lam, signal = sig["depth_map"]
        o = model(batch, head_only=torch.ones(4, dtype=torch.bool) if weak_grad == "head" else None)
        signal(batch, o["zn"], o["uv"])["loss"].backward()
        g2d = sum(float(p.grad.abs().sum()) for p in model.pose.parameters() if p.grad is not None)
        greg = sum(float(p.grad.abs().sum()) for p in model.reg.parameters() if p.grad is not None)
        assert greg > 0
        assert (g2d > 0) == reaches_2d, (weak_grad, g2d)


def test_step_head_only_keeps_2d_network_free_of_weak_gradients():
    """The whole stage-3 step: with weak_grad="head" the 2D network's gradient is the same with
    the weak depth-map term at λ = 1 and at λ = 0 (the term adds nothing to it); with "all" the
    term changes it."""
    from weakhand.methods.cai import Stage3Options, step, weak_signals_for

    batch, _ = _depth_batch()
    prior = {"skin_offset_mm": 10.0, "s_mm": 45.0}
    change = {}
    for weak_grad in ("head", "all"):
        grads = []
        for lam in (0.0, 1.0):
            torch.manual_seed(0)
            model = CaiPoseNet(PoseNetConfig(width=8, n_stages=2, reg_width=8, reg_hidden=16)).double()
            b = {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
            sig = weak_signals_for("2d_depth", Stage3Options(reg_weight=lam, weak_grad=weak_grad),
                                   regularizer=_frozen_reg().double(), reg_size=16, prior=prior)
            out = step(model, b, 1.5, sig, weak_grad=weak_grad)
            out["loss"].backward()
            assert lam == 0.0 or out["depth_map"] > 0
            grads.append(torch.cat([p.grad.flatten() for p in model.pose.parameters()]))
        change[weak_grad] = float((grads[1] - grads[0]).abs().max() / grads[0].abs().max())
    assert change["head"] < 1e-9 < 1e-4 < change["all"], change


def test_regularizer_sees_the_labelled_2d():
    """input_2d="label": moving the predicted (u, v) does not change the term; "pred": it does."""
    from weakhand.methods.weak_signals import RegularizerSignal

    batch, kp3d = _depth_batch()
    batch["has_3d"] = torch.zeros(4, dtype=torch.bool)
    zn = torch.as_tensor(root_relative_depth(kp3d), dtype=torch.float32)
    uv_a = batch["kp2d"].clone()
    uv_b = uv_a + 5.0
    prior = {"skin_offset_mm": 10.0, "s_mm": 45.0}
    lab = RegularizerSignal(_frozen_reg(), 16, prior, input_2d="label")
    pred = RegularizerSignal(_frozen_reg(), 16, prior, input_2d="pred")
    assert float(lab(batch, zn, uv_a)["loss"]) == float(lab(batch, zn, uv_b)["loss"])
    assert float(pred(batch, zn, uv_a)["loss"]) != float(pred(batch, zn, uv_b)["loss"])
    assert float(lab(batch, zn, uv_b)["loss"]) == float(pred(batch, zn, batch["kp2d"])["loss"])


def test_empty_mask_sample_does_not_change_batchnorm_statistics():
    """Stage 2: a crop without hand pixels must not enter the regulariser's forward pass (its
    joint input would be ~1e5 and its batch statistics would poison BatchNorm)."""
    from weakhand.methods.cai import regularizer_step
    from weakhand.models import depth_map_targets
    from weakhand.models import DepthRegularizer

    batch, kp3d = _depth_batch()
    full = {k: v.clone() for k, v in batch.items()}
    full["kp3d"] = torch.tensor(kp3d, dtype=torch.float32)
    full["has_3d"] = torch.ones(4, dtype=torch.bool)
    bad = {k: v.clone() for k, v in full.items()}
    bad["mask"][3] = 0.0                                   # sample 3: no hand pixel at all
    assert depth_map_targets(bad, 16)["enough"].tolist() == [True, True, True, False]
    assert float(depth_map_targets(bad, 16)["d_range"].min()) >= 5.0
    three = {k: v[:3] for k, v in full.items()}
    stats = []
    for b in (bad, three):
        torch.manual_seed(0)
        reg = DepthRegularizer(out_size=16, dropout=0.0).train()
        regularizer_step(reg, b, 16)["loss"].backward()
        stats.append([m.running_var.clone() for m in reg.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    for a, b in zip(*stats):
        torch.testing.assert_close(a, b)
    assert max(float(v.max()) for v in stats[0]) < 1e3


def test_build_wires_variants_from_checkpoints(tmp_path):
    import pytest
    from weakhand.methods.cai import Stage3Options, build
    from weakhand.models import DepthRegularizer
    from weakhand.train import Trainer

    net_cfg = PoseNetConfig(width=8, n_stages=2, reg_width=8, reg_hidden=16)
    batch, _ = _batch()
    pose = CaiPoseNet(net_cfg)
    t1 = Trainer(pose, torch.optim.Adam(pose.parameters()), run_dir=tmp_path, name="s1", max_steps=1,
                 step_fn=lambda m, b: {"loss": m(b)["zn"].square().mean()}, show_progress=False)
    t1.fit([batch], resume=False)
    reg = DepthRegularizer(out_size=16)
    t2 = Trainer(reg, torch.optim.Adam(reg.parameters()), run_dir=tmp_path, name="s2", max_steps=1,
                 step_fn=lambda m, b: {"loss": m(torch.rand(2, 21, 3)).mean()}, show_progress=False)
    t2.fit([batch], resume=False)
    prior = {"skin_offset_mm": 10.0, "s_mm": 45.0}
    reg_cfg = {"reg_size": 16, "reg_dropout": 0.2}
    st = build("2d_depth", net_cfg, t1.last_path, t2.last_path, reg_cfg, prior)
    models, opt, step, model = st.models, st.optimizer, st.step, st.model
    assert st.options == Stage3Options() and st.scheduler is None
    assert models is model and len(opt.param_groups) == 1          # frozen: outside the Trainer
    torch.testing.assert_close(model.state_dict()["reg.fcs.0.weight"], pose.state_dict()["reg.fcs.0.weight"])
    st = build("2d_depth", net_cfg, t1.last_path, t2.last_path, reg_cfg, prior, reg_mode="lowlr", lr=1e-3)
    models, opt, step, model = st.models, st.optimizer, st.step, st.model
    assert torch.isfinite(step(models, _depth_batch()[0])["loss"])
    assert set(models) == {"pose", "reg"} and [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4]
    with pytest.raises(ValueError, match="variant"):
        build("3d", net_cfg, t1.last_path, t2.last_path, reg_cfg, prior)


def test_hand_only_regularizer_ignores_background_pixels():
    """2d_depth_hand: the L1 is taken over hand pixels only, so an error confined to the
    background changes the faithful term but not the hand-only one."""
    from weakhand.methods.weak_signals import RegularizerSignal

    batch, kp3d = _depth_batch()
    batch["has_3d"] = torch.zeros(4, dtype=torch.bool)
    zn = torch.as_tensor(root_relative_depth(kp3d), dtype=torch.float32)
    prior = {"skin_offset_mm": 10.0, "s_mm": 45.0}

    class Painter(torch.nn.Module):                       # a fixed map: 1 on the background, 0.5 on the hand
        def forward(self, joints):
            m = torch.full((joints.shape[0], 1, 16, 16), 1.0)
            m[:, :, 3:13, 3:13] = 0.5
            return m

    full = RegularizerSignal(Painter(), 16, prior)
    hand = RegularizerSignal(Painter(), 16, prior, hand_only=True)
    f, h = float(full(batch, zn)["loss"]), float(hand(batch, zn)["loss"])
    batch2 = {k: v.clone() for k, v in batch.items()}
    batch2["depth"][:, :, :2, :2] = 0.0                  # nothing changes on the hand pixels
    assert float(hand(batch2, zn)["loss"]) == h
    assert f > 2 * h > 0      # the background error (1 on ~60 % of the pixels) inflates the paper's L1
