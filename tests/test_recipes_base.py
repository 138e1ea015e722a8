"""Shared conversion machinery: layout checks, codecs, depth registration, atomic convert."""
from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

from weakhand import camera
from weakhand.recipes import base
from weakhand.recipes.base import Candidate, RawDataError, RawLayoutError, Requirement


def test_check_layout_lists_everything_missing(tmp_path):
    (tmp_path / "a").mkdir()
    reqs = [Requirement("a", "folder a"), Requirement("b/c.json", "labels"),
            Requirement("d", "folder d"), Requirement("a/*.png", "images", min_count=2)]
    with pytest.raises(RawLayoutError) as e:
        base.check_layout(tmp_path, reqs, "toy")
    msg = str(e.value)
    assert "b/c.json" in msg and "labels" in msg and str(tmp_path / "d") in msg
    assert "found 0, need at least 2" in msg and "folder a)" not in msg
    with pytest.raises(RawLayoutError, match="does not exist"):
        base.check_layout(tmp_path / "nope", reqs, "toy")


def test_depth_codecs_widen_before_combining():
    bgr = np.zeros((1, 2, 3), np.uint8)
    bgr[0, 0] = (0, 255, 255)    # B, G, R
    bgr[0, 1] = (7, 1, 2)
    np.testing.assert_allclose(base.decode_depth_rhd(bgr)[0], [5000.0, (2 * 256 + 1) / 65535 * 5000],
                               rtol=1e-6)
    np.testing.assert_allclose(base.decode_depth_stb(bgr)[0], [255 + 256 * 255, 2 + 256])
    np.testing.assert_allclose(base.decode_depth_ho3d(bgr)[0],
                               np.array([255 + 256 * 255, 2 + 256]) * 0.00012498664727900177e3,
                               rtol=1e-6)


def test_register_depth_uses_x_depth_equals_R_x_color_plus_T():
    """A fronto-parallel plane seen by a depth camera re-projects into the colour camera at
    z_color = R^T (X_d - T) (STB's convention)."""
    Kd = np.array([[200.0, 0, 32], [0, 200.0, 24], [0, 0, 1]])
    Kc = np.array([[250.0, 0, 40], [0, 250.0, 30], [0, 0, 1]])
    ang = 0.05
    R = np.array([[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]])
    T = np.array([-24.0, -0.5, -1.2])
    depth = np.full((48, 64), 500.0, np.float32)
    out = base.register_depth(depth, Kd, Kc, R, T, (60, 80))
    v, u = np.nonzero(out > 0)
    assert len(v) > 0.4 * out.size   # splatting leaves holes when magnifying, not more
    Xc = camera.backproject(Kc, np.stack([u, v], 1).astype(float), out[v, u].astype(float))
    Xd = Xc @ R.T + T
    # every registered pixel lies on the depth camera's z = 500 plane (to splat rounding)
    assert np.abs(Xd[:, 2] - 500.0).max() < 3.0
    # the inverse convention (X_c = R X_d + T) would put it ~2 mm x 0.05 rad x 500 mm off
    Xd_wrong = (Xc - T) @ R
    assert np.abs(Xd_wrong[:, 2] - 500.0).max() > 5.0


def _toy_recipe(cands_by_split):
    return types.SimpleNamespace(
        NAME="toy", SPLITS=tuple(cands_by_split), OPTIONS={},
        layout=lambda src, opts: [],
        candidates=lambda src, split, opts: cands_by_split[split],
        protocol=lambda opts: {"root": "wrist"})


def _toy_sample(tmp_path, name, K):
    kp3d = np.zeros((21, 3))
    kp3d[1:] = np.random.default_rng(0).normal(0, 25, (20, 3))
    kp3d[:, 2] += 400
    # keep bones plausible: a straight chain per finger
    for f in range(5):
        for s in range(4):
            kp3d[1 + 4 * f + s] = [(f - 2) * 18.0, -60.0 - 25.0 * s, 400.0]
    img = np.full((120, 160, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / name), img)
    return Candidate(key=name, rgb=str(tmp_path / name), K=K, side=1, kp3d=kp3d)


def test_convert_is_atomic_and_names_the_bad_file(tmp_path):
    K = np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    good = _toy_sample(tmp_path, "a.png", K)
    bad = _toy_sample(tmp_path, "b.png", K)
    (tmp_path / "b.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    with pytest.raises(RawDataError, match="b.png"):
        base.convert(_toy_recipe({"train": [good], "test": [bad]}), tmp_path, out,
                     workers=1, show_progress=False, log=lambda s: None)
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))
    rep = base.convert(_toy_recipe({"train": [good, good]}), tmp_path, out, size=32,
                       workers=1, show_progress=False, log=lambda s: None)
    assert rep["train"]["written"] == 2


def test_samples_failing_validation_are_rejected_with_a_reason(tmp_path):
    K = np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    ok = _toy_sample(tmp_path, "a.png", K)
    off = _toy_sample(tmp_path, "b.png", K)
    off.kp2d = camera.project(K, off.kp3d) + 3.0        # labels disagree by 3 px
    long = _toy_sample(tmp_path, "c.png", K)
    long.kp3d = long.kp3d.copy()
    long.kp3d[12] += [0, -200.0, 0]                     # a 200+ mm fingertip bone
    rep = base.convert(_toy_recipe({"train": [ok, off, long]}), tmp_path, tmp_path / "o",
                       size=32, workers=1, show_progress=False, log=lambda s: None)
    assert rep["train"]["written"] == 1
    assert rep["train"]["rejected"] == {
        "kp3d projected with K misses kp2d by more than 1 px": 1, "implausible bone lengths": 1}


def test_parallel_conversion_matches_serial(tmp_path):
    """The multi-process path (spawned workers, >= 64 samples) writes the same dataset."""
    K = np.array([[150.0, 0, 80], [0, 150.0, 60], [0, 0, 1]])
    cands = []
    for i in range(70):
        c = _toy_sample(tmp_path, f"s{i}.png", K)
        c.kp3d = c.kp3d + [i * 0.5, 0, 0]
        cands.append(c)
    serial = base.convert(_toy_recipe({"train": cands}), tmp_path, tmp_path / "a", size=32,
                          workers=1, show_progress=False, log=lambda s: None)
    par = base.convert(_toy_recipe({"train": cands}), tmp_path, tmp_path / "b", size=32,
                       workers=2, show_progress=False, log=lambda s: None)
    assert serial["train"]["written"] == par["train"]["written"] == 70
    from weakhand.data import load_dataset
    a, b = load_dataset(tmp_path / "a" / "train"), load_dataset(tmp_path / "b" / "train")
    for k in ("rgb", "kp3d", "kp2d", "K"):
        np.testing.assert_array_equal(np.asarray(a.arrays[k]), np.asarray(b.arrays[k]))
