"""The dense depth model as baseline and teacher: inputs, training step, inference with voting,
pseudo-label plumbing and the confidence-weighted depth term."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from weakhand.methods import cai
from weakhand.evaluation.scores import score_camera_frame
from weakhand.methods import wan_dense as dt
from weakhand.methods.base import joint_labels
from weakhand.data import DEFAULT_FIELDS, HandDataset, load_dataset
from weakhand.dense import dense_targets
from weakhand.losses import depth_loss
from weakhand.synth.dataset import make_dataset
from weakhand.synth.domains import RENDER


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("dense") / "render"
    make_dataset(path, RENDER, 12, seed=3, split="train", size=64)
    return load_dataset(path)


def _batch(data, n=6, size=32):
    ds = HandDataset(data, out_size=size, mirror_left=True)
    return next(iter(torch.utils.data.DataLoader(ds, batch_size=n)))


def test_hand_center_is_the_median_hand_depth(data):
    b = _batch(data)
    cz, c3 = dt.hand_center(b)
    for i in range(len(cz)):
        d = b["depth"][i, 0]
        sel = (b["mask"][i, 0] > 0.5) & (d > 0)
        assert cz[i] == pytest.approx(float(torch.median(d[sel])), abs=1e-3)
    assert torch.allclose(c3[:, 2], cz)
    # the centre lies near the hand: within a hand length of the true joints
    assert ((c3[:, None] - b["kp3d"]).norm(dim=-1).min(1).values < 120).all()


class _Oracle(torch.nn.Module):
    """Returns the exact target fields of the batch it was built for."""

    def __init__(self, fields):
        super().__init__()
        self.fields = fields

    def forward(self, x):
        return [self.fields]


def test_inference_recovers_joints_from_perfect_fields(data):
    b = _batch(data, size=64)
    cfg = dt.Config()
    geo = dt.inputs(b, cfg)
    tgt = dense_targets(geo["points"], geo["valid"], b["kp3d"].float(), b["kp2d"].float(), radius=cfg.radius)
    r = dt.infer(_Oracle(tgt), b, cfg)
    err = (r["kp3d"] - b["kp3d"]).norm(dim=-1)
    vis = b["vis"].bool()
    assert torch.median(err[vis]) < 1.0  # mm; voting is exact where the joint has surface within r
    assert (r["conf"] >= 0).all() and (r["conf"] <= 1).all()


def test_training_step_and_direct_head(data):
    b = _batch(data)
    for head in ("dense", "direct"):
        cfg = dt.Config(width=8, stacks=2, hg_depth=3, head=head)
        model = cfg.model()
        terms = dt.step(model, b, cfg)
        assert torch.isfinite(terms["loss"]) and terms["loss"] > 0
        terms["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert ("direct" in terms) == (head == "direct")
        p = dt.predict(model, [b], "cpu", cfg=cfg)
        assert p["pred3d"].shape == (6, 21, 3) and np.isfinite(p["pred3d"]).all()
        r = score_camera_frame(p)
        assert np.isfinite(r["epe_mm"]) and r["per_joint_epe"].shape == (21,)
    no_h2 = dt.step(dt.Config(width=8, use_h2=False).model(), b,
                          dt.Config(width=8, use_h2=False))
    assert float(no_h2["h2"]) == 0.0


def test_pseudo_labels_round_trip_through_the_dataset(data):
    ds = HandDataset(data, out_size=32, mirror_left=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    idx, mir, kp = [], [], []
    for b in loader:
        idx.append(b["index"]), mir.append(b["mirrored"]), kp.append(b["kp3d"])
    p = {"pred3d": torch.cat(kp).numpy(), "index": torch.cat(idx).numpy(),
         "mirrored": torch.cat(mir).numpy()}
    stored = dt.stored_frame(p)  # a perfect teacher gives back the stored labels exactly
    np.testing.assert_allclose(stored, np.asarray(data.arrays["kp3d"]), atol=1e-4)
    assert p["mirrored"].any()
    conf = np.linspace(0, 1, data.count * 21, dtype=np.float32).reshape(data.count, 21)
    pseudo = dt.with_labels(data, stored + 1.0, conf, name="pseudo")
    item = HandDataset(pseudo, out_size=32, mirror_left=True, fields=DEFAULT_FIELDS + (dt.CONF_FIELD,))[3]
    np.testing.assert_allclose(item[dt.CONF_FIELD].numpy(), conf[3])
    assert bool(item["has_3d"])
    with pytest.raises(ValueError, match=r"expected \(12, 21, 3\)"):
        dt.with_labels(data, stored[:5])


def test_confidence_weighted_depth_term():
    from test_cai import _batch as cai_batch
    batch, _ = cai_batch(b=4, s=32)
    out = {"zn": torch.randn(4, 21)}
    ones = dict(batch, kp3d_conf=torch.ones(4, 21))
    lab = joint_labels(batch)
    ref = depth_loss(out["zn"], lab["zn"], lab["has_3d"])
    assert torch.allclose(cai.confidence_depth_loss(ones, out), ref)
    zero_first = torch.ones(4, 21)
    zero_first[0] = 0.0  # sample 0's joints carry no weight: only sample 1 counts
    l = cai.confidence_depth_loss(dict(batch, kp3d_conf=zero_first), out)
    only1 = depth_loss(out["zn"][1:2], lab["zn"][1:2], lab["has_3d"][1:2])
    assert torch.allclose(l, only1)


def test_pseudo_label_quality_on_a_hand_computed_case():
    truth = np.zeros((2, 21, 3))
    kp3d = truth.copy()
    kp3d[0, :, 0] = 3.0   # sample 0: every joint 3 mm off
    kp3d[1, :, 2] = 9.0   # sample 1: every joint 9 mm off
    conf = np.stack([np.full(21, 0.9), np.full(21, 0.1)])  # the better sample is the confident one
    q = dt.pseudo_label_quality(kp3d, conf, truth)
    assert q["epe_mm"] == pytest.approx(6.0)
    assert q["epe_mm_confident_half"] == pytest.approx(3.0) and q["epe_mm_other_half"] == pytest.approx(9.0)
    assert q["conf_err_spearman"] < -0.5


def test_pseudo_labels_are_saved_atomically_and_reload(tmp_path):
    kp3d = np.random.default_rng(0).normal(size=(4, 21, 3)).astype(np.float32)
    conf = np.full((4, 21), 0.5, np.float32)
    path = dt.save_pseudo_labels(tmp_path / "teacher" / "pseudo.npz", kp3d, conf)
    back = np.load(path)
    np.testing.assert_array_equal(back["kp3d"], kp3d)
    np.testing.assert_array_equal(back["conf"], conf)
    assert [p.name for p in path.parent.iterdir()] == ["pseudo.npz"]
