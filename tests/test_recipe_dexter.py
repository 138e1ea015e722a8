"""Dexter+Object recipe (data_recipes/dexter_object.py) on a tiny fixture in the raw text format.

Left hands are rendered with the D+O colour K (640x480); their fingertips are moved into the
ToF depth camera with the inverse of the recipe's extrinsic and stored with MHP's x/y sign
(the [U] convention the recipe implements), with matching depth-pixel 2D labels. Grasp1 has 3
frames: all tips, one tip missing (z = 32001) and only one valid tip (skipped); the other five
sequences have one frame each.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from weakhand import camera
from weakhand.data import load_dataset
from weakhand.recipes import RawDataError, RawLayoutError, convert, get_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_fixtures import render_hands  # noqa: E402

do = get_recipe("dexter_object")
SIZE = 96
TIPS = [4, 8, 12, 16, 20]
# per sequence: per frame, the valid tips (thumb..little)
FRAMES = {"Grasp1": [[1, 1, 1, 1, 1], [1, 1, 0, 1, 1], [0, 0, 1, 0, 0]]}
FRAMES.update({s: [[1, 1, 1, 1, 1]] for s in do.SEQUENCES if s != "Grasp1"})


def _fmt(vals) -> str:
    return ", ".join(f"{v:.6f}" for v in vals)


def build_tree(root: Path) -> dict:
    n = sum(len(f) for f in FRAMES.values())
    r = render_hands(do.K_COLOR, (640, 480), n, seed=5, p_left=1.0, distance_mm=(380.0, 560.0))
    assert (r["side"] == 0).all()
    truth, k = {}, 0
    for seq in do.SEQUENCES:
        d = root / "data" / seq
        for sub in ("color", "depth", "annotations"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        lines3, lines2 = [], []
        for i, valid in enumerate(FRAMES[seq]):
            name = f"image_{i:05d}.png"
            cv2.imwrite(str(d / "color" / name), r["rgb"][k][..., ::-1])
            cv2.imwrite(str(d / "depth" / name), np.zeros((240, 320), np.uint16))
            tips_c = r["kp3d"][k][TIPS].astype(np.float64)          # colour frame, mm
            x_depth = np.linalg.solve(do.R_D2C, (tips_c - do.T_D2C).T).T  # OpenCV depth camera
            stored = x_depth * do.XY_SIGN                           # MHP's sign convention
            uv_d = camera.project(do.K_DEPTH, x_depth)
            f3, f2 = [], []
            for t in range(5):
                ok = bool(valid[t])
                f3.append(_fmt(stored[t]) if ok else "32001, 32001, 32001")
                f2.append(_fmt(uv_d[t]) if ok else "32001, 32001")
            lines3.append("; ".join(f3) + ";")  # a trailing ';' (extra empty column)
            lines2.append("; ".join(f2))
            truth[f"{seq}/{name}"] = {"tips": tips_c, "valid": np.array(valid, bool),
                                      "kp2d": r["kp2d"][k][TIPS].astype(np.float64)}
            k += 1
        (d / "annotations" / f"{seq}3D.txt").write_text("\n".join(lines3) + "\n")
        (d / "annotations" / f"{seq}2D.txt").write_text("\n".join(lines2) + "\n")
    return truth


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("do_raw") / "dexter+object"
    return root, build_tree(root)


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("do_out") / "do"
    report = convert(do, raw[0], out, size=SIZE, workers=1, show_progress=False,
                     log=lambda s: None)
    return out, report


def test_conversion_tips_in_colour_frame(raw, converted):
    src, truth = raw
    out, report = converted
    assert report["test"] == {"candidates": 7, "written": 7, "rejected": {}}
    st = do.LAST_STATS["test"]
    assert st["frames"] == 8 and st["fewer_than_2_tips"] == 1
    assert st["skipped_ids"] == ["Grasp1/image_00002.png"]
    # the stored 3D agrees with the depth-pixel 2D labels only with MHP's x/y negation
    assert st["depth_2d_check"]["xy_negated_px"] < 1e-3 < 5.0 < st["depth_2d_check"]["as_stored_px"]
    d = load_dataset(out / "test")
    man = json.loads((out / "test" / "manifest.json").read_text())
    assert man["extra"]["protocol"] == do.protocol({}) and man["extra"]["groups"] == list(do.SEQUENCES)
    keys = [k for k, t in truth.items() if t["valid"].sum() >= 2]
    assert len(d) == len(keys) == 7
    for row, key in enumerate(keys):
        t, s = truth[key], d[row]
        seq = key.split("/")[0]
        assert do.SEQUENCES[int(s["group"])] == seq
        valid = t["valid"]
        np.testing.assert_allclose(s["kp3d"][TIPS][valid], t["tips"][valid], atol=1e-3)
        others = np.setdiff1d(np.arange(21), np.array(TIPS)[valid])
        assert np.isnan(s["kp3d"][others]).all() and np.isnan(s["kp2d"][others]).all()
        assert s["vis"].tolist() == [j in np.array(TIPS)[valid] for j in range(21)]
        box = s["crop_box"].astype(np.float64)
        A = camera.crop_transform(box, SIZE)
        np.testing.assert_allclose(s["kp2d"][TIPS][valid],
                                   camera.apply_homography(A, t["kp2d"][valid]), atol=2e-2)
        np.testing.assert_allclose(s["K"], A @ do.K_COLOR, rtol=1e-5, atol=1e-3)
        # generous square box: tips well inside, at least 240 mm wide at the tips' depth
        assert (s["kp2d"][TIPS][valid] > SIZE * 0.15).all() and (s["kp2d"][TIPS][valid] < SIZE * 0.85).all()
        z = t["tips"][valid, 2].mean()
        assert box[2] - box[0] >= do.K_COLOR[0, 0] * 240.0 / z * (1 - 1e-5)
        assert box[2] - box[0] == pytest.approx(box[3] - box[1])
        assert s["side"] == 0 and s["has_3d"] and s["has_2d"] and not s["has_depth"]
        assert not s["mask"].any() and not s["depth"].any()
    # the frame with one missing tip (middle) kept the other four
    row = keys.index("Grasp1/image_00001.png")
    assert np.isfinite(d[row]["kp3d"]).all(1).sum() == 4 and np.isnan(d[row]["kp3d"][12]).all()


def test_annotation_reader(tmp_path):
    p = tmp_path / "X3D.txt"
    p.write_text("1, 2, 3; 4, 5, 6; 7,8,9; 32001, 32001, 32001; 1.5, -2, 300; 9, 9, 9\n\n")
    a = do.read_annotations(p, 3)
    assert a.shape == (1, 5, 3) and np.isnan(a[0, 3]).all() and a[0, 4].tolist() == [1.5, -2, 300]
    p.write_text("1, 2, 3; 4, 5, 6; 7, 8, 9; 1, 2, 3\n")
    with pytest.raises(RawDataError, match=r"X3D.txt, line 1: expected 5"):
        do.read_annotations(p, 3)
    p.write_text("1, 2, 3; 4, 5, 6; 7, 8; 1, 2, 3; 1, 2, 3\n")
    with pytest.raises(RawDataError, match=r"line 1: field '7, 8'"):
        do.read_annotations(p, 3)
    assert [f.name for f in do.color_files(_imgs(tmp_path, ["10.png", "9.png", "a.txt"]))] \
        == ["9.png", "10.png"]


def _imgs(tmp_path, names):
    d = tmp_path / "imgs"
    d.mkdir()
    for n in names:
        (d / n).write_bytes(b"")
    return d


def test_layout_missing_listed(raw, tmp_path):
    src = tmp_path / "raw"
    shutil.copytree(raw[0], src)
    shutil.rmtree(src / "data" / "Pinch")
    (src / "data" / "Rigid" / "annotations" / "Rigid3D.txt").unlink()
    out = tmp_path / "out"
    with pytest.raises(RawLayoutError) as e:
        convert(do, src, out, workers=1, show_progress=False, log=lambda s: None)
    msg = str(e.value)
    for p in ("data/Pinch/color", "data/Pinch/depth", "data/Pinch/annotations/Pinch3D.txt",
              "data/Pinch/annotations/Pinch2D.txt", "data/Rigid/annotations/Rigid3D.txt"):
        assert str(src / p) in msg
    assert "Rigid2D" not in msg and not out.exists()


def test_image_count_mismatch(raw, tmp_path):
    src = tmp_path / "raw"
    shutil.copytree(raw[0], src)
    shutil.copy(src / "data/Rotate/color/image_00000.png", src / "data/Rotate/color/image_00001.png")
    out = tmp_path / "out"
    with pytest.raises(RawDataError, match=r"Rotate3D.txt: 1 annotation lines but 2 colour images"):
        convert(do, src, out, workers=1, show_progress=False, log=lambda s: None)
    assert not out.exists()
