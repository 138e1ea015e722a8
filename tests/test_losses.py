"""Loss terms: label masks (weak supervision), empty batches, weights."""
import torch

from weakhand.losses import (CaiWeights, cai_loss, depth_loss, depth_map_loss, heatmap_loss,
                             masked_mean)


def test_masked_mean_ignores_masked_nan_and_empty_is_zero_with_finite_grad():
    v = torch.tensor([1.0, float("nan"), 3.0], requires_grad=True)
    m = torch.tensor([True, False, True])
    out = masked_mean(v, m)
    out.backward()
    assert out.item() == 2.0 and torch.isfinite(v.grad).all() and v.grad[1] == 0
    v2 = torch.tensor([float("nan"), 1.0], requires_grad=True)
    out2 = masked_mean(v2, torch.zeros(2, dtype=torch.bool))
    out2.backward()
    assert out2.item() == 0.0 and torch.isfinite(v2.grad).all()


def _zn(b=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 21, generator=g), torch.randn(b, 21, generator=g)


def test_depth_loss_uses_only_samples_with_3d():
    pred, gt = _zn()
    has3 = torch.tensor([True, True, False, False])
    gt[2:] = float("nan")                          # weak samples: no 3D on disk
    pred = pred.requires_grad_()
    loss = depth_loss(pred, gt, has3)
    loss.backward()
    assert torch.isfinite(loss) and (pred.grad[2:] == 0).all() and (pred.grad[:2] != 0).any()
    # changing an unlabelled sample's prediction does not change the loss
    p2 = pred.detach().clone()
    p2[3] += 100.0
    assert torch.equal(depth_loss(p2, gt, has3), loss.detach())
    # reference value on the labelled half
    ref = torch.nn.functional.smooth_l1_loss(pred[:2].detach(), gt[:2])
    torch.testing.assert_close(loss.detach(), ref)


def test_heatmap_loss_sums_stages_and_masks_joints():
    t = torch.rand(2, 21, 8, 8)
    p1, p2 = t + 0.1, t + 0.2
    valid = torch.ones(2, 21, dtype=torch.bool)
    torch.testing.assert_close(heatmap_loss([p1, p2], t, valid), torch.tensor(0.01 + 0.04))
    valid[1] = False                                # sample 1 has no 2D label
    p3 = p1.clone()
    p3[1] += 5.0
    torch.testing.assert_close(heatmap_loss([p3], t, valid), torch.tensor(0.01))


def test_depth_map_loss_respects_depth_labels_and_holes():
    gt = torch.rand(2, 1, 4, 4)
    pred = gt + 0.5
    has = torch.tensor([True, False])
    holes = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    holes[0, 0, 0, 0] = False
    pred[0, 0, 0, 0] += 10.0                        # error only in a sensor hole: ignored
    torch.testing.assert_close(depth_map_loss(pred, gt, has, holes), torch.tensor(0.5))


def test_cai_loss_weights_and_unknown_terms():
    terms = {"heatmap": torch.tensor(2.0), "depth": torch.tensor(10.0), "depth_map": torch.tensor(3.0)}
    out = cai_loss(terms)
    torch.testing.assert_close(out["loss"], torch.tensor(2.0 + 1.0 + 3.0))
    out = cai_loss({"heatmap": torch.tensor(2.0)}, CaiWeights(heatmap=0.5))
    assert out["loss"].item() == 1.0
    try:
        cai_loss({"bmc": torch.tensor(1.0)})
    except ValueError as e:
        assert "bmc" in str(e)
    else:
        raise AssertionError("unknown term accepted")


def test_coord_loss_is_zero_at_the_label_masks_joints_and_pulls_the_readout_to_the_label():
    from weakhand.losses import coord_loss
    gt = torch.tensor([[[10.0, 20.0], [30.0, 5.0]]])
    valid = torch.tensor([[True, False]])
    assert coord_loss(gt.clone(), gt, valid, cell_px=4.0).item() == 0.0
    # a NaN label on a masked joint changes nothing and leaves finite gradients
    gt_nan = gt.clone()
    gt_nan[0, 1] = float("nan")
    pred = (gt + torch.tensor([[[8.0, -4.0], [100.0, 100.0]]])).requires_grad_(True)
    loss = coord_loss(pred, gt_nan, valid, cell_px=4.0)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[0, 1] == 0).all()
    # the descent direction points from the prediction toward the label, per axis
    assert pred.grad[0, 0, 0] > 0 and pred.grad[0, 0, 1] < 0
    # units are heatmap cells: the same pixel error costs less on a coarser grid
    a = coord_loss(gt + 8.0, gt, valid, cell_px=4.0)
    b = coord_loss(gt + 8.0, gt, valid, cell_px=8.0)
    assert a > b > 0


def test_cai_losses_add_the_coordinate_term_only_when_weighted():
    from weakhand.methods import cai
    from weakhand.models import CaiPoseNet, PoseNetConfig
    torch.manual_seed(0)
    model = CaiPoseNet(PoseNetConfig(width=4, n_stages=1, reg_width=4, reg_hidden=8)).eval()
    b = 2
    kp2d = torch.rand(b, 21, 2) * 31
    kp3d = torch.cat([torch.rand(b, 21, 2) * 50, 400 + torch.rand(b, 21, 1) * 50], -1)
    batch = {"image": torch.rand(b, 3, 32, 32), "kp2d": kp2d, "kp3d": kp3d,
             "vis": torch.ones(b, 21, dtype=torch.bool), "has_2d": torch.ones(b, dtype=torch.bool),
             "has_3d": torch.ones(b, dtype=torch.bool)}
    out = model(batch)
    plain = cai.losses(batch, out, sigma=2.0, stride=model.stride)
    with_uv = cai.losses(batch, out, sigma=2.0, stride=model.stride, weights=CaiWeights(coord=0.5))
    assert "coord" not in plain and with_uv["coord"] > 0
    torch.testing.assert_close(with_uv["loss"], plain["loss"] + 0.5 * with_uv["coord"])
