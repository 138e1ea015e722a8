"""Weak depth signals (direct depth, drift guard, BMC via the shared interface) and the oracle
descent that checks each of them can teach depth."""
import numpy as np
import pytest
import torch

from weakhand import camera
from weakhand import skeleton as sk
from weakhand.methods import weak_signals as ws
from weakhand.evaluation import oracle
from weakhand.models import root_relative_depth


def _hands(b=6, seed=0, noise=3.0):
    """(B,21,3) mm right hands ~400 mm in front of a 64-px camera, with depth articulation."""
    g = np.random.default_rng(seed)
    kp = np.zeros((b, 21, 3))
    for f in range(5):
        for j in range(4):
            kp[:, 1 + 4 * f + j] = [(f - 2) * 14.0, -35.0 - 18.0 * j, 8.0 * j * (f % 3 - 1)]
    kp += g.normal(0, noise, kp.shape)
    kp[:, :, 2] += g.normal(0, 10, (b, 1))              # per-hand distance jitter
    kp[..., 2] += 420.0
    return kp


def _weak_batch(kp3d, offset=6.0, s=64, occlude=()):
    """A weak batch whose depth map reads Z_k − offset in a 3×3 window at every joint (mask 1
    there, background 0 elsewhere); joints in `occlude` are labelled invisible."""
    b = len(kp3d)
    K = np.tile([[120.0, 0, 31.5], [0, 120.0, 31.5], [0, 0, 1]], (b, 1, 1))
    kp2d = camera.project(K, kp3d)
    depth = np.zeros((b, 1, s, s), np.float32)
    mask = np.zeros((b, 1, s, s), np.float32)
    for i in range(b):
        for k in np.argsort(-kp3d[i, :, 2]):            # far first, near joints overwrite
            u, v = np.round(kp2d[i, k]).astype(int)
            depth[i, 0, v - 1:v + 2, u - 1:u + 2] = kp3d[i, k, 2] - offset
            mask[i, 0, v - 1:v + 2, u - 1:u + 2] = 1
    vis = np.ones((b, 21), bool)
    vis[:, list(occlude)] = False
    batch = {"image": torch.zeros(b, 3, s, s), "kp2d": torch.tensor(kp2d, dtype=torch.float32),
             "kp3d": torch.tensor(kp3d, dtype=torch.float32), "vis": torch.tensor(vis),
             "K": torch.tensor(K, dtype=torch.float32), "depth": torch.tensor(depth),
             "mask": torch.tensor(mask), "has_2d": torch.ones(b, dtype=torch.bool),
             "has_3d": torch.ones(b, dtype=torch.bool), "has_depth": torch.ones(b, dtype=torch.bool)}
    return batch


def _prior(kp3d, offset=6.0):
    return ws.DirectDepthPrior([offset] * 21, sk.bone_lengths(kp3d).mean(0).tolist(),
                               float(sk.scale_length(kp3d).mean()))


def test_read_depth_takes_the_median_of_valid_hand_pixels_only():
    d = torch.zeros(1, 8, 8)
    d[0, 3, 3], d[0, 3, 4], d[0, 4, 3], d[0, 4, 4] = 100.0, 110.0, 120.0, 900.0
    mask = torch.ones(1, 8, 8)
    mask[0, 4, 4] = 0                                   # background: ignored
    uv = torch.tensor([[[3.0, 3.0], [7.0, 7.0], [20.0, 3.0]]])
    r = ws.read_depth(d, uv, 1, mask)
    assert r[0, 0].item() == 110.0 and r[0, 1].item() == 0.0 and r[0, 2].item() == 0.0


def test_measured_prior_recovers_the_skin_offset():
    kp = _hands(8)
    batch = _weak_batch(kp, offset=7.0)
    p = ws.measure_direct_prior([batch])
    np.testing.assert_allclose(p.skin_offset_mm, 7.0, atol=0.05)
    assert p.read_error_mm < 0.5


def test_direct_signal_is_zero_at_the_truth_and_blind_to_a_global_offset():
    kp = _hands(noise=0.0)
    batch = oracle.hide_3d(_weak_batch(kp))
    sig = ws.DirectDepthSignal(_prior(kp))
    zn = torch.tensor(root_relative_depth(kp), dtype=torch.float32)
    assert sig(batch, zn)["loss"].item() < 1e-4
    assert sig(batch, zn + 0.7)["loss"].item() < 1e-4     # the per-sample offset is solved away
    wrong = zn.clone()
    wrong[:, 4] += 1.0
    assert sig(batch, wrong)["loss"].item() > 1e-3
    # labelled (non-weak) samples are not its business
    assert ws.DirectDepthSignal(_prior(kp))(_weak_batch(kp), wrong)["n"] == 0


def test_drift_guard_pins_the_weak_batch_mean():
    kp = _hands()
    batch = oracle.hide_3d(_weak_batch(kp))
    zn = torch.tensor(root_relative_depth(kp), dtype=torch.float32)
    guard = ws.DriftGuard(zn.mean(0).numpy())
    assert guard(batch, zn)["loss"].item() < 1e-10
    z = (zn + 0.5).requires_grad_(True)
    out = guard(batch, z)
    assert out["loss"].item() == pytest.approx(21 * 0.25, rel=1e-5)
    out["loss"].backward()
    assert (z.grad > 0).all()                             # descent moves the mean back down


def test_oracle_descent_direct_signal_moves_toward_the_truth():
    kp = _hands(8, seed=1)
    batch = _weak_batch(kp, occlude=(4, 8))
    sig = ws.DirectDepthSignal(_prior(kp))
    rows = oracle.oracle_table({"direct": sig}, batch, noise_mm=20.0, starts=("noisy",), steps=200)
    r = rows[0]
    assert r["z_before_mm"] == pytest.approx(20.0, rel=0.35)
    assert r["z_after_mm"] < 0.5 * r["z_before_mm"] and r["verdict"] == "moves toward the truth"
    assert r["loss_after"] < r["loss_before"]


def test_oracle_flags_a_signal_whose_minimum_is_not_the_truth():
    kp = _hands(8, seed=2)
    batch = _weak_batch(kp)

    def flattening(b, zn, uv_pred=None):                  # prefers a flat hand: gameable
        return {"loss": (zn ** 2).mean(), "n": len(zn)}

    rows = oracle.oracle_table({"flat": flattening}, batch, noise_mm=5.0, starts=("noisy", "flat"),
                               steps=300, lr=0.05)
    noisy = next(r for r in rows if r["start"] == "noisy")
    assert noisy["verdict"] == "moves away from the truth" and noisy["change_mm"] > 0
    assert "raises" in oracle.flags(rows)["flat"]
    assert next(r for r in rows if r["start"] == "flat")["verdict"] == "no change"


def test_oracle_hides_the_3d_labels_from_the_signal():
    kp = _hands(4)
    batch = _weak_batch(kp)
    seen = {}

    def spy(b, zn, uv_pred=None):
        seen["has_3d"] = b["has_3d"].clone()
        seen["kp3d_finite"] = bool(torch.isfinite(b["kp3d"]).any())
        return {"loss": zn.sum() * 0.0, "n": 0}

    oracle.oracle_table({"spy": spy}, batch, noise_mm=5.0, starts=("noisy",), steps=1)
    assert not seen["has_3d"].any() and not seen["kp3d_finite"]


def test_bmc_signal_with_drift_guard_does_not_tilt_the_hand(tmp_path):
    """The drift guard pins the target's mean depth: BMC + guard from the truth plus noise never
    ends with the whole hand far behind the wrist (the +68 mm failure mode)."""
    from weakhand import bmc
    from weakhand.synth.generator import sample_hand_poses
    from weakhand.synth.domains import make_style

    poses, side = sample_hand_poses(make_style("render"), 400, seed=0)
    limits = bmc.fit_limits(poses, side == 0)
    right = poses[side == 1][:8]
    kp = right - right.mean(1, keepdims=True) + [0.0, 0.0, 420.0]   # hand frame ~ camera frame
    batch = _weak_batch(kp)
    zn_true = torch.tensor(root_relative_depth(kp), dtype=torch.float32)
    b_sig = ws.BMCSignal(limits, bmc.BMCWeights())
    guard = ws.DriftGuard(zn_true.mean(0).numpy())
    rows = oracle.oracle_table({"bmc+guard": [(1.0, b_sig), (1.0, guard)]}, batch, noise_mm=15.0,
                               starts=("noisy",), steps=150)
    g = torch.Generator().manual_seed(0)
    z0 = oracle.start_zn(zn_true, torch.tensor(sk.scale_length(kp), dtype=torch.float32), "noisy", 15.0, g)
    zf, _, _ = oracle.descend([(1.0, b_sig), (1.0, guard)], oracle.hide_3d(batch), z0, 150)
    s = torch.tensor(sk.scale_length(kp), dtype=torch.float32)
    bias = float(((zf - zn_true) * s[:, None]).mean())
    assert abs(bias) < 10.0, bias
    assert rows[0]["z_after_mm"] < rows[0]["z_before_mm"] + 5.0


def test_oracle_shifted_start_exposes_an_offset_blind_signal():
    """The direct signal solves each sample's depth offset away, so with the wrist unobserved it
    cannot pull a hand whose fingers all sit one scale bone too far back toward the truth; the
    'shifted' start shows that null space (a network trained on it alone can drift)."""
    kp = _hands(8, seed=4)
    batch = _weak_batch(kp, occlude=(0,))                 # the wrist is not observed
    rows = oracle.oracle_table({"direct": ws.DirectDepthSignal(_prior(kp))}, batch, noise_mm=10.0,
                               starts=("shifted",), steps=150)
    r = rows[0]
    assert r["z_before_mm"] > 15                       # one scale bone (~19 mm here)
    assert r["z_after_mm"] > 0.9 * r["z_before_mm"]      # ... and it stays: the signal is blind to it
    assert r["loss_after"] < 1e-3                         # while the signal itself is satisfied


def test_root_anchored_direct_signal_pins_the_fingers_against_an_observed_wrist():
    """With the wrist observed, the median-anchored direct signal is still blind to every finger
    sitting one scale bone too far back (the median follows the 20 fingers); anchoring the offset
    at the wrist's observed depth (zn₀ = 0) pulls that hand back to the truth."""
    kp = _hands(8, seed=5)
    batch = _weak_batch(kp)                                 # every joint observed, the wrist too
    rows = oracle.oracle_table({"median": ws.DirectDepthSignal(_prior(kp)),
                                "root": ws.DirectDepthSignal(_prior(kp), anchor="root")},
                               batch, noise_mm=10.0, starts=("shifted", "noisy"), steps=150)
    r = {(x["signal"], x["start"]): x for x in rows}
    assert r["median", "shifted"]["z_after_mm"] > 0.9 * r["median", "shifted"]["z_before_mm"]
    assert r["root", "shifted"]["z_after_mm"] < 0.3 * r["root", "shifted"]["z_before_mm"]
    assert r["root", "noisy"]["z_after_mm"] < r["root", "noisy"]["z_before_mm"]
    with pytest.raises(ValueError, match="anchor"):
        ws.DirectDepthSignal(_prior(kp), anchor="mean")


def test_wrist_depth_is_missing_when_the_wrist_leaves_the_crop():
    """An augmented crop can cut the wrist off; the anchor must then be missing (0), not the
    border pixel's depth, and weak_anchor must drop the sample."""
    depth = torch.zeros(3, 16, 16)
    depth[:, :, 0] = 900.0   # the border column: an arm or the background, not the wrist
    depth[:, 6:10, 6:10] = 500.0
    uv = torch.tensor([[8.0, 8.0], [-3.0, 8.0], [float("nan"), 8.0]])
    d = ws.wrist_depth(depth, uv)
    assert d.tolist() == [500.0, 0.0, 0.0]
    kp2d = torch.zeros(3, 21, 2)
    kp2d[:, sk.ROOT] = uv
    batch = {"depth": depth[:, None], "kp2d": kp2d, "kp3d": torch.full((3, 21, 3), float("nan")),
             "has_3d": torch.zeros(3, dtype=torch.bool), "has_depth": torch.ones(3, dtype=torch.bool)}
    z, s, valid = ws.weak_anchor(batch, {"skin_offset_mm": 10.0, "s_mm": 30.0})
    assert valid.tolist() == [True, False, False] and z[0] == 510.0
