"""Tests for weakhand.models.hourglass (Wan et al. CVPR'18 dense 3D regression network)."""
import pytest
import torch

from weakhand.models.hourglass import (DenseDepthNet, coordinate_maps, dense_loss, downsample_depth,
                                       normalize_depth_crop, unit_vectors)

J = 21


def _input(b=2, s=64, seed=0, missing=0.2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, s, s, generator=g)
    x[torch.rand(b, 1, s, s, generator=g) < missing] = -1.0
    return x


def _targets(b, h, w, seed=1):
    g = torch.Generator().manual_seed(seed)
    h3 = (torch.rand(b, J, h, w, generator=g) - 0.5).clamp_min(0)  # ~half the cells > 0
    u = unit_vectors(torch.randn(b, J, 3, h, w, generator=g))
    return {"h2": torch.rand(b, J, h, w, generator=g), "h3": h3, "u": u}


def _perfect(targets, stacks=1):
    return [{k: v.clone() for k, v in targets.items()} for _ in range(stacks)]


# ------------------------------------------------------------------ inputs


def test_normalize_depth_crop_values():
    cz, win = 500.0, 300.0
    vals = torch.tensor([350.0, 650.0, 500.0, 425.0, 349.0, 651.0, 0.0, -5.0, float("nan")])
    want = torch.tensor([0.0, 1.0, 0.5, 0.25, -1, -1, -1, -1, -1])
    d = vals.view(1, 1, 3, 3)
    out = normalize_depth_crop(d, torch.tensor([cz]), window=win)
    assert out.shape == (1, 1, 3, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), want)
    # per-sample centre, scalar centre broadcast, integer (uint16-like) sensor maps
    two = torch.cat([d, d + 100], 0)
    out2 = normalize_depth_crop(two, torch.tensor([cz, cz + 100]), window=win)
    torch.testing.assert_close(out2[1].flatten()[:6], want[:6])
    torch.testing.assert_close(normalize_depth_crop(d, cz, win), out)
    ints = torch.tensor([[[[350, 650], [0, 800]]]], dtype=torch.int32)
    torch.testing.assert_close(normalize_depth_crop(ints, cz).flatten(), torch.tensor([0.0, 1.0, -1, -1]))
    # a window of 100 mm
    torch.testing.assert_close(normalize_depth_crop(torch.full((1, 1, 1, 1), 525.0), cz, 100.0).flatten(),
                               torch.tensor([0.75]))
    with pytest.raises(ValueError):
        normalize_depth_crop(d, torch.tensor([cz, cz]))
    with pytest.raises(ValueError):
        normalize_depth_crop(d, cz, window=0)
    with pytest.raises(ValueError):
        normalize_depth_crop(d[0], cz)


def test_downsample_depth_and_coordinate_maps():
    x = torch.full((1, 1, 8, 8), -1.0)
    x[0, 0, :4, :4] = 0.5
    x[0, 0, 0, 4] = 0.2             # one valid pixel in the top-right block
    x[0, 0, 4:, :4] = 0.4
    x[0, 0, 4, 0] = -1.0            # a missing pixel does not pull the mean
    d = downsample_depth(x, 4)
    torch.testing.assert_close(d[0, 0], torch.tensor([[0.5, 0.2], [0.4, -1.0]]))
    c = coordinate_maps(1, 2, 2, d)
    assert c.shape == (1, 3, 2, 2)
    torch.testing.assert_close(c[0, 0], torch.tensor([[-0.5, 0.5], [-0.5, 0.5]]))   # u along columns
    torch.testing.assert_close(c[0, 1], torch.tensor([[-0.5, -0.5], [0.5, 0.5]]))   # v along rows
    torch.testing.assert_close(c[0, 2], d[0, 0])
    c = coordinate_maps(3, 4, 8, torch.zeros(3, 1, 4, 8))
    assert c[:, :2].abs().max() < 1 and c[0, 0, 0, 0] == -1 + 1 / 8 and c[0, 1, -1, 0] == 1 - 1 / 4
    with pytest.raises(ValueError):
        coordinate_maps(2, 4, 4, torch.zeros(2, 1, 4, 5))


def test_unit_vectors_zero_safe():
    v = torch.tensor([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]], requires_grad=True)
    u = unit_vectors(v, dim=1)
    torch.testing.assert_close(u.detach(), torch.tensor([[0.6, 0.0, 0.8], [0.0, 0.0, 0.0]]))
    u.sum().backward()
    assert torch.isfinite(v.grad).all()


# ------------------------------------------------------------------ network


@pytest.mark.parametrize("stacks,s", [(1, 64), (2, 64), (1, 128), (2, 128)])
def test_output_shapes(stacks, s):
    torch.manual_seed(0)
    m = DenseDepthNet(num_joints=J, stacks=stacks, width=16).eval()
    with torch.no_grad():
        out = m(_input(2, s))
    h = s // 4
    assert m.output_size(s) == h and isinstance(out, list) and len(out) == stacks
    for d in out:
        assert set(d) == {"h2", "h3", "u"}
        assert d["h2"].shape == d["h3"].shape == (2, J, h, h)
        assert d["u"].shape == (2, J, 3, h, h)
        assert all(torch.isfinite(t).all() for t in d.values())
        n = d["u"].norm(dim=2)
        torch.testing.assert_close(n[n > 0], torch.ones_like(n[n > 0]), atol=1e-5, rtol=0)
        assert (n > 0).float().mean() > 0.99


def test_small_hourglass_depth_and_non_square():
    m = DenseDepthNet(num_joints=5, stacks=1, width=8, hg_depth=1).eval()   # multiple of 8
    with torch.no_grad():
        out = m(torch.rand(1, 1, 16, 32))
    assert out[0]["u"].shape == (1, 5, 3, 4, 8)


def test_bad_inputs_raise():
    m = DenseDepthNet(stacks=1, width=8, hg_depth=3)
    for shape in [(1, 1, 48, 48), (1, 1, 64, 80), (1, 1, 16, 16), (1, 3, 64, 64), (1, 64, 64)]:
        with pytest.raises(ValueError, match="multiple of|expects"):
            m(torch.zeros(shape))
    with pytest.raises(ValueError, match="multiple of 4 \\* 2\\*\\*hg_depth = 32"):
        m(torch.zeros(1, 1, 48, 48))
    for kw in [dict(head="voting"), dict(stacks=0), dict(hg_depth=0), dict(dropout=1.0)]:
        with pytest.raises(ValueError):
            DenseDepthNet(**kw)


def test_gradients_finite():
    torch.manual_seed(0)
    m = DenseDepthNet(num_joints=J, stacks=2, width=8).train()
    x = _input(2, 64)
    out = m(x)
    t = _targets(2, 16, 16)
    valid = downsample_depth(x)[:, 0] >= 0
    losses = dense_loss(out, t, valid)
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    losses["loss"].backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_direct_head():
    torch.manual_seed(0)
    m = DenseDepthNet(num_joints=J, stacks=2, width=8, head="direct").train()
    out = m(_input(3, 64))
    assert "joints" not in out[0] and out[-1]["joints"].shape == (3, J, 3)
    assert out[-1]["u"].shape == (3, J, 3, 16, 16)          # dense heads still present
    out[-1]["joints"].pow(2).mean().backward()
    assert m.direct[-1].weight.grad is not None and torch.isfinite(m.direct[-1].weight.grad).all()
    assert DenseDepthNet(stacks=1, width=8).direct is None


def test_eval_deterministic_and_channels_last():
    torch.manual_seed(0)
    m = DenseDepthNet(num_joints=J, stacks=2, width=8).eval()
    x = _input(2, 64)
    with torch.no_grad():
        a = m(x)
        b = m(x)
        m_cl = m.to(memory_format=torch.channels_last)
        c = m_cl(x.contiguous(memory_format=torch.channels_last))
    for da, db, dc in zip(a, b, c):
        for k in da:
            torch.testing.assert_close(da[k], db[k])
            torch.testing.assert_close(da[k], dc[k], atol=1e-4, rtol=1e-4)


def test_autocast_bf16_cpu():
    torch.manual_seed(0)
    m = DenseDepthNet(num_joints=J, stacks=2, width=8).eval()
    x = _input(1, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    n = out[-1]["u"].float().norm(dim=2)
    assert torch.isfinite(n).all() and (n - 1).abs().max() < 2e-2
    losses = dense_loss(out, _targets(1, 16, 16), torch.ones(1, 16, 16, dtype=torch.bool))
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])


# ------------------------------------------------------------------ loss


def test_dense_loss_zero_positive_and_sums_over_stacks():
    t = _targets(2, 8, 8)
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    for stacks in (1, 2):
        r = dense_loss(_perfect(t, stacks), t, valid)
        assert set(r) == {"loss", "h2", "h3", "u"}
        assert all(float(v) == 0.0 for v in r.values())
    p = _perfect(t)
    p[0]["h2"] += 0.1
    p[0]["h3"] -= 0.2
    p[0]["u"] = -p[0]["u"]
    r1 = dense_loss(p, t, valid)
    torch.testing.assert_close(r1["h2"], torch.tensor(0.01))
    torch.testing.assert_close(r1["h3"], torch.tensor(0.04))
    torch.testing.assert_close(r1["u"], torch.tensor(4.0 / 3.0))   # |2u|^2 / 3 components
    torch.testing.assert_close(r1["loss"], r1["h2"] + r1["h3"] + r1["u"])
    r2 = dense_loss(p + p, t, valid)
    torch.testing.assert_close(r2["loss"], 2 * r1["loss"])
    r3 = dense_loss(p, t, valid, use_h2=False)
    assert float(r3["h2"]) == 0.0
    torch.testing.assert_close(r3["loss"], r1["h3"] + r1["u"])


def test_dense_loss_masking():
    t = _targets(2, 8, 8)
    valid = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.5
    g = torch.Generator().manual_seed(4)
    p = [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in t.items()}]
    base = dense_loss(p, t, valid)
    q = [{k: v.clone() for k, v in p[0].items()}]
    inv = ~valid                                            # (B, h, w)
    q[0]["h3"][inv[:, None].expand_as(q[0]["h3"])] = 7.0    # invalid cells: h3 and u ignored
    q[0]["u"][inv[:, None, None].expand_as(q[0]["u"])] = -3.0
    far = (t["h3"] <= 0)[:, :, None].expand_as(q[0]["u"])   # u ignored where target h3 == 0
    q[0]["u"][far] = 5.0
    r = dense_loss(q, t, valid)
    for k in ("h3", "u", "loss"):
        torch.testing.assert_close(r[k], base[k])
    q[0]["h2"][inv[:, None].expand_as(q[0]["h2"])] = 7.0    # h2 counts on all cells
    assert dense_loss(q, t, valid)["h2"] > base["h2"]
    # nothing valid -> the masked terms are 0, not NaN
    r0 = dense_loss(p, t, torch.zeros_like(valid))
    assert float(r0["h3"]) == 0.0 and float(r0["u"]) == 0.0 and torch.isfinite(r0["loss"])


def test_dense_loss_shape_checks():
    t = _targets(1, 8, 8)
    with pytest.raises(ValueError):
        dense_loss(_perfect(t), t, torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError):
        dense_loss([], t, torch.ones(1, 8, 8, dtype=torch.bool))
    bad = _perfect(t)
    bad[0]["u"] = bad[0]["u"][..., :4]
    with pytest.raises(ValueError):
        dense_loss(bad, t, torch.ones(1, 8, 8, dtype=torch.bool))
