"""FreiHAND v2 recipe on a fixture tree written in the exact raw format."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_recipes import freihand
from recipe_fixtures import render_hands
from weakhand import camera
from weakhand.data import HandDataset, load_dataset
from weakhand.recipes import RawDataError, RawLayoutError, convert_dataset

REAL_EVAL_K = (Path(__file__).resolve().parents[2] / "shared" / "real_samples" / "freihand"
               / "evaluation_K.json")
N_TRAIN, N_EVAL, SIZE = 3, 2, 64


def _train_K(i: int) -> np.ndarray:
    f = 300.0 + 150.0 * i
    return np.array([[f, 0, 112.0], [0, f * 1.002, 112.0], [0, 0, 1]])


def _eval_K() -> np.ndarray:
    if REAL_EVAL_K.is_file():
        return np.asarray(json.loads(REAL_EVAL_K.read_text())[:N_EVAL])
    return np.stack([_train_K(i + 5) for i in range(N_EVAL)])


def _jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])


def write_freihand_tree(root: Path) -> dict:
    """FreiHAND_pub_v2 layout with N_TRAIN annotations (4 image versions) and N_EVAL eval."""
    truth = {}
    for raw, Ks in (("training", np.stack([_train_K(i) for i in range(N_TRAIN)])),
                    ("evaluation", _eval_K())):
        n = len(Ks)
        hands = {k: [] for k in ("rgb", "mask", "kp3d")}
        for i in range(n):  # one render per K (render_hands takes one K per call here)
            h = render_hands(Ks[i], (224, 224), 1, seed=11 * i + len(raw), distance_mm=(420, 600))
            for k in hands:
                hands[k].append(h[k][0])
        hands = {k: np.stack(v) for k, v in hands.items()}
        for i in range(n):
            _jpg(root / raw / "rgb" / f"{i:08d}.jpg", hands["rgb"][i])
            if raw == "training":
                for k in range(1, 4):  # the other versions: recoloured copies, same geometry
                    _jpg(root / raw / "rgb" / f"{i + 32560 * k:08d}.jpg",
                         np.roll(hands["rgb"][i], k, axis=-1))
                _jpg(root / "training" / "mask" / f"{i:08d}.jpg",
                     np.repeat(hands["mask"][i][..., None] * 255, 3, -1).astype(np.uint8))
        (root / f"{raw}_K.json").write_text(json.dumps(Ks.tolist()))
        (root / f"{raw}_xyz.json").write_text(json.dumps((hands["kp3d"] / 1000.0).tolist()))
        if raw == "training":
            scale = np.linalg.norm(hands["kp3d"][:, 9] - hands["kp3d"][:, 10], axis=-1) / 1000
            (root / "training_scale.json").write_text(json.dumps(scale.tolist()))
        truth[raw] = {"K": Ks, **hands}
    return truth


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("fh") / "FreiHAND_pub_v2"
    return root, write_freihand_tree(root)


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("fh_out") / "freihand"
    rep = convert_dataset("freihand", raw[0], out, size=SIZE, workers=1, show_progress=False,
                          log=lambda s: None)
    return out, rep


def test_counts_labels_and_geometry(converted, raw):
    out, rep = converted
    _, truth = raw
    assert rep["train"]["written"] == N_TRAIN and rep["eval"]["written"] == N_EVAL
    for split, rawname in (("train", "training"), ("eval", "evaluation")):
        d = load_dataset(out / split, verify="full")
        t = truth[rawname]
        kp3d = np.asarray(d.arrays["kp3d"], np.float64)
        np.testing.assert_allclose(kp3d, t["kp3d"], atol=1e-3)          # mm, identity order
        np.testing.assert_allclose(camera.project(np.asarray(d.arrays["K"], float), kp3d),
                                   d.arrays["kp2d"], atol=1e-3)
        box = np.asarray(d.arrays["crop_box"], float)
        for i in range(d.count):  # the crop K is the crop of the dataset's own K
            A = camera.crop_transform(box[i], SIZE)
            np.testing.assert_allclose(d.arrays["K"][i], A @ t["K"][i], rtol=1e-5, atol=1e-3)
        assert (np.asarray(d.arrays["side"]) == 1).all()
        assert not np.asarray(d.arrays["has_depth"]).any()
        assert d.manifest["extra"]["protocol"]["thresholds_mm"] == "linspace(0, 50, 100)"
    if REAL_EVAL_K.is_file():
        real = np.asarray(json.loads(REAL_EVAL_K.read_text())[:N_EVAL])
        np.testing.assert_allclose(truth["evaluation"]["K"], real)


def test_train_masks_cover_the_keypoints(converted):
    d = load_dataset(converted[0] / "train")
    kp, mask = np.asarray(d.arrays["kp2d"]), np.asarray(d.arrays["mask"])
    pix = np.rint(kp).astype(int).clip(0, SIZE - 1)
    on = mask[np.arange(d.count)[:, None], pix[..., 1], pix[..., 0]] == 1
    inner = np.ones(21, bool)
    inner[[0, 4, 8, 12, 16, 20]] = False
    assert on[:, inner].mean() > 0.9
    assert not np.asarray(load_dataset(converted[0] / "eval").arrays["mask"]).any()


def test_all_versions_share_annotations(raw, tmp_path):
    out = tmp_path / "fh"
    convert_dataset("freihand", raw[0], out, splits=["train"], size=SIZE, workers=1,
                    options={"versions": "all"}, show_progress=False, log=lambda s: None)
    d = load_dataset(out / "train")
    assert d.count == 4 * N_TRAIN
    ids = np.asarray(d.arrays["raw_index"])
    grp = np.asarray(d.arrays["group"])
    np.testing.assert_array_equal(ids, (np.arange(N_TRAIN)[None] + 32560 * np.arange(4)[:, None]).ravel())
    np.testing.assert_array_equal(grp, np.repeat(np.arange(4), N_TRAIN))
    kp = np.asarray(d.arrays["kp3d"]).reshape(4, N_TRAIN, 21, 3)
    assert (kp == kp[:1]).all()                                   # same annotation per idx
    rgb = np.asarray(d.arrays["rgb"]).reshape(4, N_TRAIN, SIZE, SIZE, 3)
    assert not np.array_equal(rgb[0], rgb[1])                     # but a different image
    assert d.manifest["extra"]["groups"] == ["gs", "hom", "sample", "auto"]
    assert len(HandDataset(d, out_size=32)[0]["image"].shape) == 3


def test_parse_versions():
    assert freihand.parse_versions("gs") == [0]
    assert freihand.parse_versions("all") == [0, 1, 2, 3]
    assert freihand.parse_versions("auto,gs") == [0, 3]
    with pytest.raises(ValueError, match="versions"):
        freihand.parse_versions("colour")


def _copy(raw, tmp_path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(raw[0], dst)
    return dst


def _fails(src, tmp_path, exc=RawDataError, **kw) -> str:
    out = tmp_path / "out"
    with pytest.raises(exc) as e:
        convert_dataset("freihand", src, out, size=SIZE, workers=1, show_progress=False,
                        log=lambda s: None, **kw)
    assert not out.exists()
    return str(e.value)


def test_missing_eval_ground_truth_is_listed_with_the_package_hint(raw, tmp_path):
    src = _copy(raw, tmp_path)
    (src / "evaluation_xyz.json").unlink()
    shutil.rmtree(src / "training" / "mask")
    msg = _fails(src, tmp_path, RawLayoutError)
    assert "evaluation_xyz.json" in msg and "FreiHAND_pub_v2_eval.zip" in msg
    assert "training/mask" in msg                                   # every missing item


def test_truncated_json(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "training_xyz.json"
    p.write_text(p.read_text()[:100])
    assert "training_xyz.json" in _fails(src, tmp_path)


def test_wrong_xyz_shape_and_length_mismatch(raw, tmp_path):
    src = _copy(raw, tmp_path)
    xyz = json.loads((src / "training_xyz.json").read_text())
    (src / "training_xyz.json").write_text(json.dumps([x[:20] for x in xyz]))
    assert "training_xyz.json" in _fails(src, tmp_path) and True
    (src / "training_xyz.json").write_text(json.dumps(xyz[:-1]))
    msg = _fails(src, tmp_path)
    assert "training_xyz.json" in msg and "training_K.json" in msg


def test_corrupt_jpeg(raw, tmp_path):
    src = _copy(raw, tmp_path)
    (src / "evaluation" / "rgb" / "00000001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert "00000001.jpg" in _fails(src, tmp_path)


def test_unknown_versions_option(raw, tmp_path):
    with pytest.raises(ValueError, match="versions"):
        convert_dataset("freihand", raw[0], tmp_path / "o", options={"versions": "rgb"},
                        workers=1, show_progress=False, log=lambda s: None)
    assert not (tmp_path / "o").exists()
