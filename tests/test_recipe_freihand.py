"""FreiHAND v2 recipe on a fixture tree written in the exact raw format.

Training: N_TRAIN annotations with realistic intrinsics (fx 200-1100, cx = cy = 112), four image
versions per idx (ids idx + 32560·k; k >= 1 are recoloured copies), JPEG masks for the gs ids
only, one-line JSON lists in metres. Evaluation: the first N_EVAL intrinsics of the real
official evaluation_K.json (shared/real_samples; a synthetic stand-in where it is absent, with
the real-file checks skipped) plus evaluation_xyz.json as in FreiHAND_pub_v2_eval.zip.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_recipes import freihand
from recipe_fixtures import render_hands
from weakhand import camera
from weakhand.data import HandDataset, load_dataset
from weakhand.recipes import RawDataError, RawLayoutError, convert_dataset, get_recipe

REAL_EVAL_K = (Path(__file__).resolve().parents[2] / "shared" / "real_samples" / "freihand"
               / "evaluation_K.json")
N_TRAIN, N_EVAL, SIZE = 4, 3, 64
TRAIN_FX = (215.0, 480.0, 760.0, 1090.0)
QUIET = dict(show_progress=False, log=lambda s: None)
needs_real_K = pytest.mark.skipif(not REAL_EVAL_K.is_file(),
                                  reason=f"real FreiHAND evaluation_K.json absent ({REAL_EVAL_K})")


def _train_K() -> np.ndarray:
    return np.stack([[[f, 0, 112.0], [0, f * 1.001, 112.0], [0, 0, 1]] for f in TRAIN_FX])


def _eval_K() -> np.ndarray:
    if REAL_EVAL_K.is_file():
        return np.asarray(json.loads(REAL_EVAL_K.read_text())[:N_EVAL], np.float64)
    return np.stack([[[f, 0, 112.0], [0, f, 112.0], [0, 0, 1]] for f in (530.0, 460.0, 580.0)])


def _jpg(path: Path, img: np.ndarray) -> None:
    """RGB (or grey) array → JPEG the way the dataset stores it (cv2 writes BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = img[..., ::-1]
    assert cv2.imwrite(str(path), np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, 95])


def _one_line(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, separators=(", ", ": ")))  # one line, like the real files


def write_freihand_tree(root: Path) -> dict:
    """FreiHAND_pub_v2 (+ eval package) layout; returns the exact ground truth per raw split."""
    truth = {}
    for raw, Ks in (("training", _train_K()), ("evaluation", _eval_K())):
        hands = {k: [] for k in ("rgb", "mask", "kp3d", "vis")}
        for i, K in enumerate(Ks):  # hand distance ∝ focal length: the hand fills the frame
            d = 1.15 * K[0, 0]
            h = render_hands(K, (224, 224), 1, seed=7 * i + len(raw), distance_mm=(d, d + 1.0))
            assert h["side"][0] == 1
            for k in hands:
                hands[k].append(h[k][0])
        hands = {k: np.stack(v) for k, v in hands.items()}
        for i in range(len(Ks)):
            _jpg(root / raw / "rgb" / f"{i:08d}.jpg", hands["rgb"][i])
            if raw == "training":
                im = hands["rgb"][i]  # hom / sample / auto: recoloured copies, same geometry
                for k, rec in ((1, np.roll(im, 1, -1)), (2, np.roll(im, 2, -1)), (3, 255 - im)):
                    _jpg(root / raw / "rgb" / f"{i + 32560 * k:08d}.jpg", rec)
                mask = np.repeat(hands["mask"][i][..., None] * 255, 3, -1).astype(np.uint8)
                _jpg(root / raw / "mask" / f"{i:08d}.jpg", mask)  # gs ids only
        xyz_m = hands["kp3d"].astype(np.float64) / 1000.0
        _one_line(root / f"{raw}_K.json", Ks.tolist())
        _one_line(root / f"{raw}_xyz.json", xyz_m.tolist())
        _one_line(root / f"{raw}_scale.json",
                  np.linalg.norm(xyz_m[:, 9] - xyz_m[:, 10], axis=-1).tolist())
        truth[raw] = {"K": Ks, **hands}
    return truth


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("fh") / "FreiHAND_pub_v2"
    return root, write_freihand_tree(root)


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("fh_out") / "freihand"
    rep = convert_dataset("freihand", raw[0], out, size=SIZE, workers=1, **QUIET)
    return out, rep


@pytest.fixture(scope="module")
def converted_all(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("fh_all") / "freihand"
    convert_dataset("freihand", raw[0], out, splits=["train"], size=SIZE, workers=1,
                    options={"versions": "all"}, **QUIET)
    return load_dataset(out / "train", verify="full")


# ------------------------------------------------------------------------------ good input

def test_recipe_registered_and_protocol():
    assert get_recipe("freihand") is freihand
    assert freihand.SPLITS == ("train", "eval") and freihand.OPTIONS == {"versions": "gs"}
    assert freihand.groups() == ["gs", "hom", "sample", "auto"]
    p = freihand.protocol({"versions": "gs"})
    assert {k: p[k] for k in ("root", "scale_bone", "thresholds_mm", "eval_split")} == {
        "root": "wrist", "scale_bone": [9, 10], "thresholds_mm": "linspace(0, 50, 100)",
        "eval_split": "eval"}
    assert "det(R)=+1" in p["align"] and "parity" in p["align"] and "unaligned" in p["align"]
    assert isinstance(p["notes"], str) and p["notes"]


def test_counts_labels_and_geometry(converted, raw):
    out, rep = converted
    _, truth = raw
    assert rep["train"] == {"candidates": N_TRAIN, "written": N_TRAIN, "rejected": {}}
    assert rep["eval"] == {"candidates": N_EVAL, "written": N_EVAL, "rejected": {}}
    for split, rawname in (("train", "training"), ("eval", "evaluation")):
        d = load_dataset(out / split, verify="full")
        t = truth[rawname]
        kp3d = np.asarray(d.arrays["kp3d"], np.float64)
        np.testing.assert_allclose(kp3d, t["kp3d"], atol=1e-3)      # mm, identity joint order
        np.testing.assert_allclose(camera.project(np.asarray(d.arrays["K"], np.float64), kp3d),
                                   d.arrays["kp2d"], atol=2e-3)      # crop K maps kp3d → kp2d
        box = np.asarray(d.arrays["crop_box"], np.float64)
        for i in range(d.count):  # the crop K is the crop of the dataset's own K, and the
            A = camera.crop_transform(box[i], SIZE)  # kp2d the crop of its projection
            np.testing.assert_allclose(d.arrays["K"][i], A @ t["K"][i], rtol=1e-5, atol=1e-3)
            full2d = camera.project(t["K"][i], t["kp3d"][i].astype(np.float64))
            np.testing.assert_allclose(d.arrays["kp2d"][i], camera.apply_homography(A, full2d),
                                       atol=2e-3)
        assert np.asarray(d.arrays["vis"]).all()                     # no visibility in FreiHAND
        assert (np.asarray(d.arrays["side"]) == 1).all()             # right hands only
        assert np.asarray(d.arrays["has_3d"]).all() and np.asarray(d.arrays["has_2d"]).all()
        assert not np.asarray(d.arrays["has_depth"]).any()
        assert not np.asarray(d.arrays["depth"]).any()
        np.testing.assert_array_equal(d.arrays["raw_index"], np.arange(d.count))
        assert not np.asarray(d.arrays["group"]).any()               # gs = version 0
        assert d.manifest["extra"]["protocol"] == freihand.protocol({"versions": "gs"})
        assert d.manifest["extra"]["groups"] == ["gs", "hom", "sample", "auto"]


def test_rgb_is_the_crop_of_the_image_in_rgb_order(converted, raw):
    d = load_dataset(converted[0] / "train")
    t = raw[1]["training"]
    for i in range(d.count):
        A = camera.crop_transform(np.asarray(d.arrays["crop_box"][i], np.float64), SIZE)
        ref = cv2.warpAffine(t["rgb"][i], A[:2], (SIZE, SIZE), flags=cv2.INTER_AREA
                             if d.arrays["crop_box"][i][2] - d.arrays["crop_box"][i][0] > SIZE
                             else cv2.INTER_LINEAR).astype(np.float64)
        got = np.asarray(d.arrays["rgb"][i], np.float64)
        err = np.abs(got - ref).mean()
        assert err < 8.0, err                                        # JPEG + resampling only
        assert err < np.abs(got - ref[..., ::-1]).mean()             # not BGR


def test_train_masks_cover_visible_joints(converted, raw):
    d = load_dataset(converted[0] / "train")
    vis = raw[1]["training"]["vis"]
    kp, mask = np.asarray(d.arrays["kp2d"]), np.asarray(d.arrays["mask"])
    assert set(np.unique(mask)) <= {0, 1} and mask.mean() > 0.02
    pix = np.rint(kp).astype(int)
    inside = ((pix >= 0) & (pix < SIZE)).all(-1)
    pix = pix.clip(0, SIZE - 1)
    on = mask[np.arange(d.count)[:, None], pix[..., 1], pix[..., 0]] == 1
    sel = vis & inside
    sel[:, [4, 8, 12, 16, 20]] = False                                # tips sit on the edge
    assert sel.sum() >= 20 and on[sel].mean() > 0.9
    assert not np.asarray(load_dataset(converted[0] / "eval").arrays["mask"]).any()


@needs_real_K
def test_eval_K_taken_from_the_real_file(converted):
    real = freihand._read_list(REAL_EVAL_K, (3, 3), "K")             # the recipe's validator
    assert real.shape == (3960, 3, 3) and (real[:, :2, 2] == 112.0).all()
    freihand._check_K(real, REAL_EVAL_K)
    d = load_dataset(converted[0] / "eval")
    for i in range(N_EVAL):
        A = camera.crop_transform(np.asarray(d.arrays["crop_box"][i], np.float64), SIZE)
        np.testing.assert_allclose(d.arrays["K"][i], A @ real[i], rtol=1e-5, atol=1e-3)


def test_all_versions_share_annotations_and_masks(converted_all):
    d = converted_all
    assert d.count == 4 * N_TRAIN
    ids = np.asarray(d.arrays["raw_index"])
    np.testing.assert_array_equal(
        ids, (np.arange(N_TRAIN)[None] + 32560 * np.arange(4)[:, None]).ravel())
    np.testing.assert_array_equal(d.arrays["group"], np.repeat(np.arange(4), N_TRAIN))
    kp = np.asarray(d.arrays["kp3d"]).reshape(4, N_TRAIN, 21, 3)
    assert (kp == kp[:1]).all()                                       # same annotation per idx
    mask = np.asarray(d.arrays["mask"]).reshape(4, N_TRAIN, SIZE, SIZE)
    assert (mask == mask[:1]).all() and mask.any()                    # the gs mask for all
    rgb = np.asarray(d.arrays["rgb"]).reshape(4, N_TRAIN, SIZE, SIZE, 3)
    assert all(not np.array_equal(rgb[0], rgb[k]) for k in (1, 2, 3))  # different images
    ds = HandDataset(d, out_size=32)
    item = ds[N_TRAIN]
    assert tuple(item["image"].shape) == (3, 32, 32) and int(item["side"]) == 1


def test_versions_option_subset(raw):
    c = freihand.candidates(raw[0], "train", {"versions": "auto, gs"})
    assert [x.group for x in c] == [0] * N_TRAIN + [3] * N_TRAIN
    assert [x.raw_index for x in c][N_TRAIN:] == [3 * 32560 + i for i in range(N_TRAIN)]
    assert all(x.mask.endswith(f"mask/{x.raw_index % 32560:08d}.jpg") for x in c)
    ev = freihand.candidates(raw[0], "eval", {"versions": "all"})
    assert len(ev) == N_EVAL and all(x.mask is None and x.group == 0 for x in ev)


def test_parse_versions():
    assert freihand.parse_versions("gs") == [0]
    assert freihand.parse_versions("all") == [0, 1, 2, 3]
    assert freihand.parse_versions("auto,gs") == [0, 3]
    assert freihand.parse_versions(["hom", "sample"]) == [1, 2]
    for bad in ("colour", "", "gs,gs", "all,gs", 3):
        with pytest.raises(ValueError, match="versions"):
            freihand.parse_versions(bad)


def test_eval_split_alone_needs_no_training_files(raw, tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    shutil.copytree(raw[0] / "evaluation", src / "evaluation")
    for f in ("evaluation_K.json", "evaluation_xyz.json"):
        shutil.copy(raw[0] / f, src / f)
    rep = convert_dataset("freihand", src, tmp_path / "out", splits=["eval"], size=SIZE,
                          workers=1, **QUIET)
    assert rep["eval"]["written"] == N_EVAL and "train" not in rep


def test_scale_file_cross_check_warns(raw, tmp_path):
    src = _copy(raw, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # consistent file: silent
        freihand.candidates(src, "train", {"versions": "gs"})
    s = json.loads((src / "training_scale.json").read_text())
    _one_line(src / "training_scale.json", [x * 1000 for x in s])    # mm instead of metres
    with pytest.warns(UserWarning, match="training_scale.json"):
        assert len(freihand.candidates(src, "train", {"versions": "gs"})) == N_TRAIN


# ------------------------------------------------------------------------------ bad input

def _copy(raw, tmp_path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(raw[0], dst)
    return dst


def _fails(src, tmp_path, exc=RawDataError, **kw) -> str:
    out = tmp_path / "out"
    with pytest.raises(exc) as e:
        convert_dataset("freihand", src, out, size=SIZE, workers=1, **QUIET, **kw)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out")] == []
    return str(e.value)


def test_missing_eval_ground_truth_is_listed_with_the_package_hint(raw, tmp_path):
    src = _copy(raw, tmp_path)
    (src / "evaluation_xyz.json").unlink()
    shutil.rmtree(src / "training" / "mask")
    (src / "training_K.json").unlink()
    msg = _fails(src, tmp_path, RawLayoutError)
    assert "evaluation_xyz.json" in msg and "FreiHAND_pub_v2_eval.zip" in msg
    assert "training/mask" in msg and "training_K.json" in msg        # every missing item
    assert "training_scale.json" not in msg                           # optional


def test_missing_version_images_are_listed(raw, tmp_path):
    src = _copy(raw, tmp_path)
    for i in range(N_TRAIN):
        (src / "training" / "rgb" / f"{i + 2 * 32560:08d}.jpg").unlink()
    msg = _fails(src, tmp_path, RawLayoutError, options={"versions": "all"})
    assert f"{2 * 32560:08d}.jpg" in msg and "'sample'" in msg
    assert f"{32560:08d}.jpg" not in msg


def test_truncated_json(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "training_xyz.json"
    p.write_text(p.read_text()[:100])
    msg = _fails(src, tmp_path)
    assert "training_xyz.json" in msg and "truncated" in msg


def test_wrong_xyz_shape_names_file_and_index(raw, tmp_path):
    src = _copy(raw, tmp_path)
    xyz = json.loads((src / "training_xyz.json").read_text())
    _one_line(src / "training_xyz.json", [x[:20] for x in xyz])      # 20 joints everywhere
    msg = _fails(src, tmp_path)
    assert "training_xyz.json[0]" in msg and "(20, 3)" in msg
    _one_line(src / "training_xyz.json", xyz[:2] + [xyz[2][:20]] + xyz[3:])  # one ragged entry
    assert "training_xyz.json[2]" in _fails(src, tmp_path)
    _one_line(src / "training_xyz.json", (np.asarray(xyz) * 1000).tolist())  # millimetres
    assert "millimetres" in _fails(src, tmp_path)


def test_K_xyz_length_mismatch(raw, tmp_path):
    src = _copy(raw, tmp_path)
    xyz = json.loads((src / "evaluation_xyz.json").read_text())
    _one_line(src / "evaluation_xyz.json", xyz[:-1])
    msg = _fails(src, tmp_path)
    assert "evaluation_xyz.json" in msg and "evaluation_K.json" in msg
    assert f"{N_EVAL} entries" in msg and f"has {N_EVAL - 1}" in msg


def test_bad_K_names_file_and_index(raw, tmp_path):
    src = _copy(raw, tmp_path)
    K = json.loads((src / "training_K.json").read_text())
    K[1][2] = [0.0, 0.0, 0.0]
    _one_line(src / "training_K.json", K)
    assert "training_K.json[1]" in _fails(src, tmp_path)


def test_corrupt_jpeg(raw, tmp_path):
    src = _copy(raw, tmp_path)
    (src / "evaluation" / "rgb" / "00000001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert "00000001.jpg" in _fails(src, tmp_path)
    src2 = tmp_path / "raw2"
    shutil.copytree(raw[0], src2)
    (src2 / "training" / "mask" / "00000002.jpg").write_bytes(b"")   # truncated mask
    assert "mask/00000002.jpg" in _fails(src2, tmp_path)


def test_unknown_versions_option(raw, tmp_path):
    with pytest.raises(ValueError, match="versions"):
        convert_dataset("freihand", raw[0], tmp_path / "o", options={"versions": "rgb"},
                        workers=1, **QUIET)
    with pytest.raises(ValueError, match="unknown options"):
        convert_dataset("freihand", raw[0], tmp_path / "o", options={"version": "all"},
                        workers=1, **QUIET)
    assert not (tmp_path / "o").exists()
