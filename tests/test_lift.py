"""The lifting family: crop-invariant ray features, the "2D given" protocol, weak terms that
reach only the lifter, and a lifter that learns depth from source labels."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weakhand import camera
from weakhand import skeleton as sk
from weakhand.evaluation import lifting
from weakhand.methods import lift
from weakhand.methods import weak_signals as ws
from weakhand.models import DepthRegularizer, root_relative_depth
from weakhand.models.lifter import Lifter, LifterConfig, mirror_left, ray_features
from weakhand.models.registry import build_model

from test_weak_signals import _hands, _prior, _weak_batch


def _K(f, cx, cy):
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])


@settings(max_examples=30, deadline=None)
@given(st.floats(0.3, 3.0), st.floats(-200, 200), st.floats(-200, 200), st.integers(0, 10_000))
def test_ray_features_are_invariant_to_the_crop_intrinsics(scale, du, dv, seed):
    """The same hand seen through two crops of one frame (K₂ = A K₁, A a zoom + shift) gives the
    same lifter input, although its pixel coordinates differ."""
    kp3d = _hands(1, seed)
    K1 = _K(300.0, 160.0, 120.0)
    A = np.array([[scale, 0, du], [0, scale, dv], [0, 0, 1.0]])
    K2 = A @ K1
    f = [ray_features(torch.tensor(camera.project(K, kp3d), dtype=torch.float64), torch.tensor(K[None]))
         for K in (K1, K2)]
    assert not torch.allclose(torch.tensor(camera.project(K1, kp3d)), torch.tensor(camera.project(K2, kp3d)))
    assert torch.allclose(f[0], f[1], atol=1e-9)


def test_ray_features_see_depth_through_perspective_only():
    """Moving a hand away (same direction) changes only the extent feature; a different pose
    changes the normalised rays."""
    K = torch.tensor(_K(300.0, 32.0, 32.0)[None])
    kp = _hands(1, 0)
    far = kp * 2.0  # the whole hand scaled about the camera centre: identical rays, double distance
    f0, f1 = (ray_features(torch.tensor(camera.project(K.numpy(), x)), K) for x in (kp, far))
    assert torch.allclose(f0, f1, atol=1e-9)
    other = _hands(1, 1)
    f2 = ray_features(torch.tensor(camera.project(K.numpy(), other)), K)
    assert (f2[:, :42] - f0[:, :42]).abs().max() > 1e-3


def test_mirror_left_is_the_projection_of_the_mirrored_hand():
    K = _K(250.0, 30.0, 34.0)
    kp = _hands(2, 3)
    uv = torch.tensor(camera.project(K, kp))
    Kt = torch.tensor(np.tile(K, (2, 1, 1)))
    out = mirror_left(uv, Kt, torch.tensor([0, 1]))
    want = camera.project(K, sk.mirror(kp[:1]))
    assert np.allclose(out[0].numpy(), want[0], atol=1e-9)
    assert torch.equal(out[1], uv[1])


def test_lifter_outputs_zero_root_depth_and_rebuilds_from_its_checkpoint(tmp_path):
    m = Lifter(LifterConfig(width=16, layers=2))
    kp = _hands(4, 0)
    K = torch.tensor(np.tile(_K(120.0, 31.5, 31.5), (4, 1, 1)), dtype=torch.float32)
    uv = torch.tensor(camera.project(K.numpy(), kp), dtype=torch.float32)
    zn = m(uv, K)["zn"]
    assert zn.shape == (4, 21) and torch.all(zn[:, 0] == 0)
    path = lift.save_lifter(m, tmp_path / "l" / "last.pt", {"note": "test"})
    m2 = build_model(path)
    assert isinstance(m2, Lifter) and torch.equal(m2(uv, K)["zn"], m.eval()(uv, K)["zn"])


def _labels(n=6, seed=0):
    kp3d = _hands(n, seed)
    K = np.tile(_K(120.0, 31.5, 31.5), (n, 1, 1))
    return {"kp2d": camera.project(K, kp3d), "kp3d": kp3d, "vis": np.ones((n, 21), bool), "K": K,
            "has_3d": np.ones(n, bool)}


def test_2d_given_score_is_zero_for_the_true_depth_and_not_otherwise():
    lab = _labels()
    zn_true = root_relative_depth(lab["kp3d"])
    s = lifting.score_protocols({"given": {**lab, "uv": lab["kp2d"], "zn": zn_true}})["given"]
    assert s["pa_epe_mm"] < 1e-6 and s["z_err_mm"] < 1e-6
    bad = lifting.score_protocols({"given": {**lab, "uv": lab["kp2d"], "zn": zn_true * 0.5}})["given"]
    assert bad["pa_epe_mm"] > 0.5


def test_protocol_predictions_feed_the_labelled_2d_and_the_network_2d():
    lab = _labels()
    m = Lifter(LifterConfig(width=8, layers=1))
    noisy = lab["kp2d"] + 3.0
    p = lift.protocol_predictions(m, lab, noisy)
    assert np.array_equal(p["given"]["uv"], lab["kp2d"]) and np.array_equal(p["full"]["uv"], noisy)
    assert np.allclose(p["given"]["zn"], lift.predict(m, lab["kp2d"], lab["K"]))
    assert not np.allclose(p["given"]["zn"], p["full"]["zn"])


def _stage3_batch(n=6):
    kp = _hands(n, 0)
    tgt = oracle_hide(_weak_batch(kp))
    src_kp = _hands(n, 1)
    K = np.tile(_K(120.0, 31.5, 31.5), (n, 1, 1))
    src = {"kp2d": torch.tensor(camera.project(K, src_kp), dtype=torch.float32), "K": torch.tensor(K, dtype=torch.float32),
           "zn": torch.tensor(root_relative_depth(src_kp), dtype=torch.float32)}
    return {"source": src, "target": tgt}, kp


def oracle_hide(batch):
    from weakhand.evaluation import oracle
    return oracle.hide_3d(batch)


def test_weak_terms_reach_only_the_lifter():
    """One stage-3 step of the regulariser + direct variant: every lifter parameter gets a
    gradient; the frozen regulariser gets none and is unchanged; the batch's labels are
    untouched; the weak terms read no 3D."""
    torch.manual_seed(0)
    batch, kp = _stage3_batch()
    reg = DepthRegularizer(out_size=16, widths=(16, 8, 8, 4, 4), dropout=0.0)
    before = {k: v.clone() for k, v in reg.state_dict().items()}
    prior = {"skin_offset_mm": 6.0, "s_mm": float(sk.scale_length(kp).mean())}
    base = Lifter(LifterConfig(width=16, layers=2))
    st = lift.build("reg", base, lift.LiftOptions(stage3_steps=2), regularizer=reg, reg_size=16, prior=prior)
    kp2d_before = batch["target"]["kp2d"].clone()
    no_source = {k: v[:0] for k, v in batch["source"].items()}  # the weak term alone
    terms = st.step(st.model, {"source": no_source, "target": batch["target"]})
    assert "depth_map" in terms and float(terms["depth_map"]) > 0
    st.optimizer.zero_grad()
    terms["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in st.model.parameters())
    assert all(p.grad is None for p in reg.parameters()) and not any(p.requires_grad for p in reg.parameters())
    for k, v in reg.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(batch["target"]["kp2d"], kp2d_before)
    assert torch.isnan(batch["target"]["kp3d"]).all()


def test_weak_signal_gradient_moves_the_lifter_toward_the_sensor_depth():
    """Direct depth alone, from a lifter that predicts a flat hand: a few steps on one target
    batch lower the target's z error (the signal teaches the lifter, not only zn)."""
    batch, kp = _stage3_batch(8)
    torch.manual_seed(0)
    base = Lifter(LifterConfig(width=32, layers=2))
    opts = lift.LiftOptions(stage3_steps=60, stage3_lr=3e-3)
    st = lift.build("direct", base, opts, direct_prior=_prior(kp))
    zt = torch.tensor(root_relative_depth(kp), dtype=torch.float32)

    def zerr():
        with torch.no_grad():
            return float((st.model(batch["target"]["kp2d"], batch["target"]["K"])["zn"] - zt).abs()[:, 1:].mean())

    e0 = zerr()
    no_source = {k: v[:0] for k, v in batch["source"].items()}
    for _ in range(60):
        t = st.step(st.model, {"source": no_source, "target": batch["target"]})
        st.optimizer.zero_grad()
        t["loss"].backward()
        st.optimizer.step()
    assert zerr() < 0.5 * e0


def test_full3d_reads_target_3d_and_weak_variants_do_not():
    batch, kp = _stage3_batch()
    seen = {}

    class Spy:
        def __call__(self, b, zn, uv_pred=None):
            seen["kp3d_finite"] = bool(torch.isfinite(b["kp3d"]).any())
            return {"loss": zn.sum() * 0.0, "n": 0}

    base = Lifter(LifterConfig(width=8, layers=1))
    st = lift.build("bmc", base, lift.LiftOptions(), limits=object())
    st_sig = lift.Stage(st.model, st.optimizer, lambda m, b: lift.losses(m, b["source"], b["target"], "bmc",
                                                                          {"spy": (1.0, Spy())}), st.model)
    st_sig.step(st_sig.model, batch)
    assert seen["kp3d_finite"] is False
    full = dict(batch["target"], kp3d=torch.tensor(kp, dtype=torch.float32), has_3d=torch.ones(len(kp), dtype=torch.bool))
    t = lift.losses(base, batch["source"], full, "full3d")
    assert float(t["target3d"]) > 0


def test_missing_signal_inputs_are_named():
    base = Lifter(LifterConfig(width=8, layers=1))
    with pytest.raises(ValueError, match="limits"):
        lift.build("bmc", base, lift.LiftOptions(), limits=None)
    with pytest.raises(ValueError, match="variant must be one of"):
        lift.build("nope", base, lift.LiftOptions())


def test_study_table_gap_and_paired_interval():
    """Gap closed per seed = (source − variant)/(source − full3d); the paired interval resolves a
    consistent gain."""
    def sc(pa, z):
        return {"given": {"pa_epe_mm": pa, "z_err_mm": z, "occ_z_err_mm": z},
                "full": {"pa_epe_mm": pa + 10, "z_err_mm": z, "px_2d_mean": 5.0}}

    scores = {"gap": {"source": {s: sc(10 + s, 20) for s in range(3)},
                      "direct": {s: sc(7 + s + 0.01 * s * s, 14) for s in range(3)},
                      "full3d": {s: sc(4 + s, 8) for s in range(3)}}}
    floors = {"gap": {"given": {"pa_epe_mm": 13.0, "z_err_mm": 30.0, "occ_z_err_mm": 30.0},
                      "full": {"pa_epe_mm": 19.0, "z_err_mm": 30.0, "px_2d_mean": 16.0}}}
    t = lifting.study_table(scores, floors, order=list(lift.VARIANTS))
    assert [r["variant"] for r in t["rows"]] == ["constant", "source", "direct", "full3d"]
    g = t["gaps"][0]
    assert g["given_pa_epe_mm_gap_closed"] == pytest.approx(np.mean([3 / 6, 2.99 / 6, 2.96 / 6]))
    assert g["given_z_err_mm_gap_closed"] == pytest.approx(0.5)
    assert g["paired"]["given_pa_epe_mm"]["verdict"] == "better"
    rows = lifting.display_rows(t, lift.ROW_LABELS)
    assert rows[0]["model"].startswith("mean depth profile")
    checks = lifting.checks(t, "gap", "gap", lift.SINGLE_SIGNALS, lift.COMBINATIONS)
    assert any("best single" in c["target"] and c["met"] == "yes" for c in checks)


def test_target_batches_of_a_set_smaller_than_the_batch_yield_the_whole_set():
    """A real target's training split can hold fewer hands than the stage-3 target batch (a
    fixture, a small sequence): batches are then the whole set, reshuffled, never an endless wait."""
    t = {"kp2d": torch.arange(5 * 21 * 2, dtype=torch.float32).reshape(5, 21, 2), "vis": torch.ones(5, 21, dtype=torch.bool)}
    it = lift.target_batches(t, 64, seed=0)
    b1, b2 = next(it), next(it)
    assert b1["kp2d"].shape == (5, 21, 2) and sorted(b1["kp2d"][:, 0, 0].tolist()) == [0.0, 42.0, 84.0, 126.0, 168.0]
    assert b2["kp2d"].shape == (5, 21, 2)
    with pytest.raises(ValueError, match="empty"):
        next(lift.target_batches({"kp2d": torch.zeros(0, 21, 2)}, 8, seed=0))
