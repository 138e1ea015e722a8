"""Torch views: geometry-consistent augmentation, mirroring, mixed batches (weakhand.data.torch_data)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weakhand import camera
from weakhand.data import (AugmentConfig, HandDataset, MixedBatchSampler, load_dataset,
                           make_mixed_loader, set_loader_epoch, write_dataset)

S = 96  # crop size
# Non-square pixels and an off-centre principal point: a warp that ignores K (e.g. a plain
# image rotation about the crop centre) puts the dots in the wrong place.
K0 = np.array([[140.0, 0.0, 46.3], [0.0, 152.0, 49.1], [0.0, 0.0, 1.0]])
SIGMA = 1.3


def _dot_sample(seed: int):
    """21 Gaussian dots at integer pixels on a grid; each joint's depth disk holds its z."""
    r = np.random.default_rng(seed)
    grid = [(u, v) for u in range(-2, 3) for v in range(-2, 3) if abs(u) + abs(v) < 4]  # 21 points
    uv = np.array(grid, float) * 11 + [48, 47]
    z = r.uniform(350.0, 650.0, 21)
    kp3d = np.asarray(camera.backproject(K0, uv, z))
    yy, xx = np.mgrid[0:S, 0:S]
    img = np.zeros((S, S), float)
    depth = np.zeros((S, S), float)
    for (u, v), zj in zip(uv, z):
        d2 = (xx - u) ** 2 + (yy - v) ** 2
        img += np.exp(-d2 / (2 * SIGMA ** 2))
        depth[d2 <= 9] = zj
    rgb = np.repeat(np.clip(img * 255, 0, 255).round().astype(np.uint8)[..., None], 3, -1)
    return rgb, depth, uv, kp3d


@pytest.fixture(scope="module")
def dot_paths(tmp_path_factory):
    """Three 2-sample datasets (index 0 right hand, 1 left): 3D labels, 2D only, 3D only."""
    root = tmp_path_factory.mktemp("dots")
    samples = [_dot_sample(s) for s in (0, 1)]
    arrays = {
        "rgb": np.stack([s[0] for s in samples]),
        "depth": np.stack([s[1] for s in samples]),
        "mask": np.stack([(s[1] > 0).astype(np.uint8) for s in samples]),
        "kp2d": np.stack([s[2] for s in samples]),
        "kp3d": np.stack([s[3] for s in samples]),
        "vis": np.ones((2, 21), bool),
        "K": np.stack([K0, K0]),
        "side": np.array([1, 0], np.uint8),
        "has_2d": np.ones(2, bool), "has_3d": np.ones(2, bool), "has_depth": np.ones(2, bool),
    }
    paths = {"full": root / "full", "2d": root / "2d", "3d": root / "3d"}
    write_dataset(paths["full"], arrays, name="dots", domain="synthetic", split="train")
    weak = dict(arrays, kp3d=np.full((2, 21, 3), np.nan), has_3d=np.zeros(2, bool))
    write_dataset(paths["2d"], weak, name="dots2d", domain="real", split="train")
    no2d = dict(arrays, kp2d=np.full((2, 21, 2), np.nan), has_2d=np.zeros(2, bool))
    write_dataset(paths["3d"], no2d, name="dots3d", domain="synthetic", split="train")
    return paths


def _centroid(img: np.ndarray, uv: np.ndarray, r: int = 4) -> np.ndarray:
    u0, v0 = int(round(uv[0])), int(round(uv[1]))
    win = img[v0 - r:v0 + r + 1, u0 - r:u0 + r + 1].astype(float)
    vv, uu = np.mgrid[v0 - r:v0 + r + 1, u0 - r:u0 + r + 1]
    return np.array([(win * uu).sum(), (win * vv).sum()]) / win.sum()


def _check_dots(item, margin: int = 6) -> int:
    """Dots in the returned image sit at the returned kp2d; returns how many joints were checked."""
    img = item["image"][0].numpy()
    kp2d = item["kp2d"].numpy()
    size = img.shape[0]
    radius = 4 if size == S else 2  # resized dots are closer together
    checked = 0
    for j in range(21):
        u, v = kp2d[j]
        if margin <= u <= size - 1 - margin and margin <= v <= size - 1 - margin:
            err = np.linalg.norm(_centroid(img, kp2d[j], radius) - kp2d[j])
            assert err < 0.3, f"joint {j}: dot {err:.2f} px from kp2d"  # measured max ~0.13
            checked += 1
    return checked


def _project(item) -> np.ndarray:
    return np.asarray(camera.project(item["K"].double().numpy(), item["kp3d"].double().numpy()))


GEOM = AugmentConfig.geometry_only(rot_deg=45.0, scale=(0.75, 1.25), shift_px=6.0)


@pytest.mark.parametrize("out_size", [None, 64])
def test_augmented_dots_follow_labels(dot_paths, out_size):
    ds = HandDataset(dot_paths["full"], out_size=out_size, augment=GEOM, seed=3)
    data = load_dataset(dot_paths["full"])
    moved = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            size = out_size or S
            assert item["image"].shape == (3, size, size) and item["depth"].shape == (1, size, size)
            # kp2d is the projection of the transformed 3D labels with the transformed K
            np.testing.assert_allclose(item["kp2d"].numpy(), _project(item), atol=1e-3)
            assert _check_dots(item) >= 15
            # the augmentation is a pixel-space similarity about the crop centre: kp3d unchanged
            X = data.arrays["kp3d"][i].astype(float)
            np.testing.assert_allclose(item["kp3d"].numpy(), X, atol=1e-3)
            moved += np.abs(item["kp2d"].numpy() - data.arrays["kp2d"][i] * size / S).max() > 3
    assert moved >= 5  # the augmentation really moved the hands


def test_depth_values_unchanged_by_rotation_and_zoom(dot_paths):
    ds = HandDataset(dot_paths["full"], augment=GEOM, seed=5)
    data = load_dataset(dot_paths["full"])
    for epoch in range(2):
        ds.set_epoch(epoch)
        for i in range(2):
            item = ds[i]
            z = data.arrays["kp3d"][i][:, 2]
            np.testing.assert_allclose(item["kp3d"][:, 2].numpy(), z, atol=1e-3)
            depth, mask = item["depth"][0].numpy(), item["mask"][0].numpy()
            for j in np.flatnonzero(item["in_crop"].numpy()):
                u, v = np.round(item["kp2d"][j].numpy()).astype(int)
                assert abs(depth[v, u] - z[j]) < 0.06, f"joint {j}: depth {depth[v, u]} vs z {z[j]}"
                assert mask[v, u] == 1.0
            # nearest-neighbour warp: no new depth values are invented at disk edges
            stored = np.unique(data.depth_mm(i))
            assert np.isin(np.unique(depth), stored).all()


def test_2d_only_and_3d_only_samples_get_the_same_geometry(dot_paths):
    full, weak, no2d = (HandDataset(dot_paths[k], augment=GEOM, seed=9) for k in ("full", "2d", "3d"))
    for i in range(2):
        a, b, c = full[i], weak[i], no2d[i]
        assert not b["has_3d"] and torch.isnan(b["kp3d"]).all()
        np.testing.assert_allclose(b["kp2d"].numpy(), a["kp2d"].numpy(), atol=1e-3)  # via the pixel map
        np.testing.assert_allclose(c["kp2d"].numpy(), a["kp2d"].numpy(), atol=1e-3)  # via projection
        torch.testing.assert_close(b["K"], a["K"])
        _check_dots(b)


def test_resize_without_augmentation(dot_paths):
    ds = HandDataset(dot_paths["full"], out_size=64)
    data = load_dataset(dot_paths["full"])
    item = ds[0]
    A = np.asarray(camera.crop_transform(np.array([0, 0, S, S]), 64))
    np.testing.assert_allclose(item["K"].numpy(), A @ K0, rtol=1e-6)
    np.testing.assert_allclose(item["kp2d"].numpy(), (data.arrays["kp2d"][0] + 0.5) * 64 / S - 0.5,
                               atol=1e-4)
    np.testing.assert_allclose(item["kp3d"].numpy(), data.arrays["kp3d"][0])
    assert _check_dots(item) == 21 and item["in_crop"].all()


def test_identity_returns_stored_sample(dot_paths):
    ds = HandDataset(dot_paths["full"])
    data = load_dataset(dot_paths["full"])
    item = ds[1]
    np.testing.assert_array_equal((item["image"].numpy() * 255).round().astype(np.uint8),
                                  data.arrays["rgb"][1].transpose(2, 0, 1))
    np.testing.assert_array_equal(item["depth"][0].numpy(), data.depth_mm(1))
    np.testing.assert_allclose(item["kp2d"].numpy(), data.arrays["kp2d"][1], atol=1e-4)
    assert item["side"] == 0 and not item["mirrored"] and item["index"] == 1


def test_mirror_left(dot_paths):
    data = load_dataset(dot_paths["full"])
    ds = HandDataset(dot_paths["full"], mirror_left=True)
    left, right = ds[1], ds[0]
    assert left["mirrored"] and left["side"] == 1
    assert not right["mirrored"] and right["side"] == 1
    np.testing.assert_array_equal((left["image"].numpy() * 255).round().astype(np.uint8),
                                  data.arrays["rgb"][1][:, ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(left["depth"][0].numpy(), data.depth_mm(1)[:, ::-1])
    kp2d = data.arrays["kp2d"][1]
    np.testing.assert_allclose(left["kp2d"][:, 0].numpy(), S - 1 - kp2d[:, 0], atol=1e-3)
    np.testing.assert_allclose(left["kp2d"][:, 1].numpy(), kp2d[:, 1], atol=1e-3)
    np.testing.assert_allclose(left["kp3d"].numpy(), data.arrays["kp3d"][1] * [-1, 1, 1])
    np.testing.assert_allclose(left["kp2d"].numpy(), _project(left), atol=1e-3)
    assert left["K"][0, 0] > 0  # a proper camera, not a negative focal length
    _check_dots(left)
    # mirroring composes with augmentation; 2D-only labels are flipped the same way
    aug = HandDataset(dot_paths["full"], mirror_left=True, augment=GEOM, seed=1)
    weak = HandDataset(dot_paths["2d"], mirror_left=True, augment=GEOM, seed=1)
    for epoch in range(3):
        aug.set_epoch(epoch)
        weak.set_epoch(epoch)
        item, item2d = aug[1], weak[1]
        assert item["mirrored"] and item["side"] == 1 and item2d["mirrored"]
        np.testing.assert_allclose(item["kp2d"].numpy(), _project(item), atol=1e-3)
        np.testing.assert_allclose(item2d["kp2d"].numpy(), item["kp2d"].numpy(), atol=1e-3)
        _check_dots(item)
        _check_dots(item2d)


def test_random_flip_changes_side(dot_paths):
    ds = HandDataset(dot_paths["full"], augment=AugmentConfig.geometry_only(p_flip=1.0, rot_deg=10))
    item = ds[0]  # a right hand flipped becomes a left one
    assert item["mirrored"] and item["side"] == 0
    np.testing.assert_allclose(item["kp2d"].numpy(), _project(item), atol=1e-3)
    _check_dots(item)


def test_joints_leaving_the_crop_keep_labels(dot_paths):
    ds = HandDataset(dot_paths["full"], augment=AugmentConfig.geometry_only(rot_deg=0, scale=(2.5, 2.5),
                                                                            shift_px=0))
    item = ds[0]
    kp2d, in_crop = item["kp2d"].numpy(), item["in_crop"].numpy()
    assert np.isfinite(kp2d).all() and item["vis"].all()
    inside = ((kp2d >= -0.5) & (kp2d < S - 0.5)).all(1)
    np.testing.assert_array_equal(in_crop, inside)
    assert 0 < in_crop.sum() < 21


def test_determinism_and_epochs(dot_paths):
    cfg = AugmentConfig()
    a = HandDataset(dot_paths["full"], augment=cfg, seed=4)
    b = HandDataset(dot_paths["full"], augment=cfg, seed=4)
    for key in ("image", "kp2d", "depth"):
        torch.testing.assert_close(a[1][key], b[1][key])
    first = a[1]["kp2d"].clone()
    a.set_epoch(1)
    assert not torch.allclose(a[1]["kp2d"], first)
    a.set_epoch(0)
    torch.testing.assert_close(a[1]["kp2d"], first)
    c = HandDataset(dot_paths["full"], augment=cfg, seed=5)
    assert not torch.allclose(c[1]["kp2d"], first)


def test_colour_jitter_leaves_geometry_and_border(dot_paths):
    geom = HandDataset(dot_paths["full"], augment=GEOM, seed=2)
    jit = HandDataset(dot_paths["full"], augment=AugmentConfig(rot_deg=45.0, scale=(0.75, 1.25),
                                                               shift_px=6.0, brightness=0.4,
                                                               contrast=0.4, saturation=0.4, hue=0.1),
                      seed=2)
    a, b = geom[0], jit[0]
    torch.testing.assert_close(a["kp2d"], b["kp2d"])
    torch.testing.assert_close(a["depth"], b["depth"])
    assert not torch.allclose(a["image"], b["image"])
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
    # pixels that map from outside the stored crop stay black (jitter happens before the warp)
    warp = jit.geometry(0)["warp"]
    vv, uu = np.mgrid[0:S, 0:S]
    src = np.asarray(camera.apply_homography(np.linalg.inv(warp), np.stack([uu, vv], -1).reshape(-1, 2)))
    outside = ((src < -1.5) | (src > S + 0.5)).any(1).reshape(S, S)
    assert outside.sum() > 100
    assert (b["image"][:, torch.from_numpy(outside)] == 0).all()
    assert (b["image"][:, torch.from_numpy(~outside)] > 0).float().mean() > 0.5  # contrast lifted black


def test_fields_and_validation(dot_paths):
    ds = HandDataset(dot_paths["full"], fields=("image", "kp2d", "index"))
    assert set(ds[0]) == {"image", "kp2d", "index"}
    with pytest.raises(ValueError, match="unknown field"):
        HandDataset(dot_paths["full"], fields=("image", "subject"))
    with pytest.raises(ValueError, match="parts"):
        HandDataset(dot_paths["full"], fields=("parts",))
    with pytest.raises(IndexError):
        ds[2]


# ----------------------------------------------------------------------------- mixed batches
def test_mixed_batch_composition_and_coverage():
    ns, nt, bs = 13, 40, 8
    sampler = MixedBatchSampler(ns, nt, bs, seed=7)
    assert (sampler.n_source, sampler.n_target) == (4, 4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == max(math.ceil(13 / 4), math.ceil(40 / 4)) == 10
    for b in batches:
        assert len(b) == bs
        assert all(0 <= i < ns for i in b[:4]) and all(ns <= i < ns + nt for i in b[4:])
    src = [i for b in batches for i in b[:4]]
    tgt = [i - ns for b in batches for i in b[4:]]
    for k in range(0, len(src) - ns + 1, ns):  # every source index once per source epoch
        assert sorted(src[k:k + ns]) == list(range(ns))
    assert sorted(tgt) == list(range(nt))  # the longer stream is seen exactly once
    assert src[:ns] != src[ns:2 * ns]  # reshuffled when exhausted


def test_mixed_batch_determinism_epochs_fraction():
    a, b = MixedBatchSampler(20, 30, 6, seed=1), MixedBatchSampler(20, 30, 6, seed=1)
    assert list(a) == list(b)
    assert list(a) != list(MixedBatchSampler(20, 30, 6, seed=2))
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    c = MixedBatchSampler(20, 30, 8, source_fraction=0.25, num_batches=3)
    batches = list(c)
    assert len(c) == len(batches) == 3
    assert all(sum(i < 20 for i in batch) == 2 for batch in batches)
    assert MixedBatchSampler(5, 5, 5).n_source == 3  # round half up
    only_target = MixedBatchSampler(0, 10, 4, source_fraction=0.0)
    assert len(only_target) == 3 and all(min(b) >= 0 for b in only_target)


def test_mixed_loader_batches(dot_paths):
    source = HandDataset(dot_paths["full"], out_size=32, augment=AugmentConfig())
    target = HandDataset(dot_paths["2d"], out_size=32, augment=AugmentConfig())
    loader = make_mixed_loader(source, target, batch_size=4, num_batches=3, seed=0)
    set_loader_epoch(loader, 2)
    assert source.epoch == target.epoch == loader.batch_sampler.epoch == 2
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        assert batch["image"].shape == (4, 3, 32, 32) and batch["kp3d"].shape == (4, 21, 3)
        assert batch["has_3d"].tolist() == [True, True, False, False]  # half source, half target
        assert torch.isnan(batch["kp3d"][2:]).all() and torch.isfinite(batch["kp3d"][:2]).all()


def test_rotation_turns_the_crop_about_its_centre(dot_paths):
    """The augmentation turns the image about the crop centre, wherever the principal point is
    (the old rotation about the optical axis swung crops cut from a frame corner, whose principal
    point lies far outside them, partly out of the image)."""
    from weakhand.data import AugmentConfig

    data = load_dataset(dot_paths["full"])
    aug = AugmentConfig.geometry_only(rot_deg=30, scale=(1.0, 1.0), shift_px=0.0)
    ds = HandDataset(dot_paths["full"], augment=aug, seed=11)
    c = (S - 1) / 2.0
    for i in range(len(ds)):
        p = ds.sample_params(i)
        g = ds.geometry(i)
        r0 = data.arrays["kp2d"][i].astype(float) - c
        r1 = g["kp2d"] - c
        # distances to the crop centre are kept, angles turn by theta
        np.testing.assert_allclose(np.linalg.norm(r1, axis=-1), np.linalg.norm(r0, axis=-1), atol=1e-4)
        ang = np.angle((r1[:, 0] + 1j * r1[:, 1]) / (r0[:, 0] + 1j * r0[:, 1]))
        np.testing.assert_allclose(ang[np.linalg.norm(r0, axis=-1) > 1], p["theta"], atol=1e-4)
        assert np.allclose(camera.project(g["K"], g["kp3d"]), g["kp2d"], atol=1e-4)   # K' = A K


def test_loaders_match_the_hand_built_notebook_loaders(dot_paths):
    """data.loaders gives the batches the notebooks built by hand (same datasets, seeds, order,
    batch sizes): so switching a notebook to it changes no number."""
    from weakhand.data import EVAL_BATCH_SIZE, TRAIN_AUGMENT, eval_loader, loaders, split_dataset

    root = dot_paths["full"].parent
    dl = loaders(root, 32, train="full", val="2d", test={"b": "3d", "a": "full"}, batch_size=1,
                 seed=3, n_val=1)
    ref_train = torch.utils.data.DataLoader(
        HandDataset(dot_paths["full"], out_size=32, augment=TRAIN_AUGMENT, mirror_left=True, seed=3),
        batch_size=1, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(3))
    ref_val = torch.utils.data.DataLoader(
        torch.utils.data.Subset(HandDataset(dot_paths["2d"], out_size=32, mirror_left=True), range(1)),
        batch_size=EVAL_BATCH_SIZE)
    ref_test = torch.utils.data.DataLoader(HandDataset(dot_paths["3d"], out_size=32, mirror_left=True),
                                           batch_size=EVAL_BATCH_SIZE)
    for ours, ref in ((dl.train, ref_train), (dl.val, ref_val), (dl.test["b"], ref_test)):
        got, want = list(ours), list(ref)
        assert len(got) == len(want) > 0
        for g, w in zip(got, want):
            assert g.keys() == w.keys()
            for k in g:
                torch.testing.assert_close(g[k], w[k], rtol=0, atol=0, equal_nan=True)
    assert list(dl.test) == ["b", "a"] and len(dl.val.dataset) == 1
    assert dl.train.dataset.mirror_left and dl.train.dataset.augment == TRAIN_AUGMENT
    # no train / val split: None; test as a list of names; no augmentation when asked
    only = loaders(root, 32, test=["2d"], augment=None)
    assert only.train is None and only.val is None and list(only.test) == ["2d"]
    plain = loaders(root, 32, train="full", batch_size=2, augment=None)
    assert plain.train.dataset.augment is None and len(plain.train) == 1
    # a dataset held in memory, and the evaluation loader of one split
    mem = split_dataset(root, load_dataset(dot_paths["full"]), 32, augment=TRAIN_AUGMENT, seed=3)
    torch.testing.assert_close(mem[1]["image"], ref_train.dataset[1]["image"], rtol=0, atol=0)
    assert eval_loader(root, "3d", 32).batch_size == EVAL_BATCH_SIZE
