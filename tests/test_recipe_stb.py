"""Tests for data_recipes/stb.py: a raw STB fixture (SK colour + depth + handPara .mat) written in
the exact on-disk format from rendered hands with known ground truth, converted, and checked."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from data_recipes import stb
from recipe_fixtures import render_hands
from weakhand import camera
from weakhand import skeleton as sk
from weakhand.data.format import load_dataset
from weakhand.recipes import RawDataError, RawLayoutError, base, convert_dataset, get_recipe

SIZE = 96
#: frames per sequence in the fixture (every sequence must exist for the train split)
FRAMES = {seq: 1 for seq in stb.SEQUENCES}
FRAMES.update({"B1Counting": 3, "B2Random": 3})
SEED = 2  # a seed whose 16 frames all pass base.process_candidate's depth check (see stb.md)


# ------------------------------------------------------------------------------- fixture writer

def palm_from_rendered(kp: np.ndarray) -> np.ndarray:
    """A palm centre whose ring-MCP extrapolation (factor 2) gives back the rendered wrist."""
    ring = kp[..., sk.RING_MCP, :]
    return ring + (kp[..., 0, :] - ring) / 2.0


def depth_camera_image(depth_color: np.ndarray) -> np.ndarray:
    """The scene depth as the SK depth camera sees it (mm, uint16): every colour pixel's 3D point
    moved to the depth frame (X_d = R X_c + T), projected with the depth K, z-buffered."""
    H, W = depth_color.shape
    v, u = np.nonzero(depth_color > 0)
    Xc = camera.backproject(stb.K_COLOR, np.stack([u, v], 1).astype(np.float64),
                            depth_color[v, u].astype(np.float64))
    Xd = stb.color_to_depth(Xc)
    uv = camera.project(stb.K_DEPTH, Xd)
    ui, vi = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    ok = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H) & (Xd[:, 2] > 0)
    out = np.full(H * W, np.inf)
    np.minimum.at(out, vi[ok] * W + ui[ok], Xd[ok, 2])
    out[~np.isfinite(out)] = 0
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16).reshape(H, W)


def encode_stb_depth(d: np.ndarray) -> np.ndarray:
    """uint16 mm -> 3-channel PNG array in cv2's BGR order: R = d mod 256, G = d div 256, B = 0."""
    bgr = np.zeros(d.shape + (3,), np.uint8)
    bgr[..., 2] = d % 256
    bgr[..., 1] = d // 256
    return bgr


def write_raw_stb(root: Path, frames: dict, seed: int = SEED) -> dict:
    """Write an STB raw tree under root; even-numbered sequences use images/<SEQ>/, the others
    <SEQ>/ directly (both layouts in one tree). Returns the ground truth per sequence."""
    seqs = [s for s in stb.SEQUENCES if frames.get(s, 0) > 0]
    n = sum(frames[s] for s in seqs)
    r = render_hands(stb.K_COLOR, (640, 480), n, seed=seed, p_left=1.0)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    truth, k = {}, 0
    for j, seq in enumerate(seqs):
        m = frames[seq]
        sl = slice(k, k + m)
        k += m
        img_dir = root / ("images" if stb.SEQUENCES.index(seq) % 2 == 0 else "") / seq
        img_dir.mkdir(parents=True, exist_ok=True)
        kp = r["kp3d"][sl].astype(np.float64)           # canonical, colour frame, wrist root
        palm = palm_from_rendered(kp)
        lab = kp.copy()
        lab[:, 0] = palm
        lab_depth = stb.color_to_depth(sk.from_canonical(lab, "stb"))   # (m, 21, 3)
        savemat(str(root / "labels" / f"{seq}_SK.mat"),
                {"handPara": np.ascontiguousarray(lab_depth.transpose(2, 1, 0))})
        for i in range(m):
            cv2.imwrite(str(img_dir / f"SK_color_{i}.png"), r["rgb"][sl][i][..., ::-1])
            cv2.imwrite(str(img_dir / f"SK_depth_{i}.png"),
                        encode_stb_depth(depth_camera_image(r["depth"][sl][i])))
        truth[seq] = {"kp3d": kp, "palm": palm, "depth": r["depth"][sl], "mask": r["mask"][sl],
                      "vis": r["vis"][sl], "dir": img_dir}
    return truth


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("stb_raw")
    return root, write_raw_stb(root, FRAMES)


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    src, _ = raw
    out = tmp_path_factory.mktemp("stb_out") / "stb"
    report = convert_dataset("stb", src, out, size=SIZE, workers=1, show_progress=False,
                             log=lambda s: None)
    return out, report


def small_copy(raw, dst: Path, seqs=("B1Counting", "B1Random")) -> Path:
    """Copy of the fixture with only `seqs` (enough for splits=("test",))."""
    src, truth = raw
    (dst / "labels").mkdir(parents=True)
    for seq in seqs:
        rel = truth[seq]["dir"].relative_to(src)
        shutil.copytree(truth[seq]["dir"], dst / rel)
        shutil.copy(src / "labels" / f"{seq}_SK.mat", dst / "labels")
    return dst


def run_test_split(src, out, **kw):
    return convert_dataset("stb", src, out, splits=("test",), size=SIZE, workers=1,
                           show_progress=False, log=lambda s: None, **kw)


def render_rgb(raw, seq, i):
    """The fixture's colour image (RGB) of frame i of seq, as written."""
    _, truth = raw
    return cv2.imread(str(truth[seq]["dir"] / f"SK_color_{i}.png"))[..., ::-1]


def assert_nothing_at(out: Path):
    assert not out.exists()
    assert not list(out.parent.glob(out.name + "*"))


# ------------------------------------------------------------------------------- constants

def test_module_and_constants():
    assert get_recipe("stb") is stb
    assert stb.NAME == "stb" and stb.SPLITS == ("train", "test")
    assert stb.OPTIONS == {"root": "palm"}
    assert stb.SPLIT_SEQUENCES["test"] == ("B1Counting", "B1Random")
    assert stb.SPLIT_SEQUENCES["train"] == tuple(f"B{b}{k}" for b in range(2, 7)
                                                 for k in ("Counting", "Random"))
    assert stb.groups() == list(stb.SEQUENCES) and len(stb.groups()) == 12
    assert stb.EXPECTED_COUNTS == {"train": 15000, "test": 3000}


def test_rodrigues_matches_opencv():
    R_cv, _ = cv2.Rodrigues(stb.R_VEC.reshape(3, 1))
    np.testing.assert_allclose(stb.R_DEPTH, R_cv, atol=1e-12)
    np.testing.assert_allclose(stb.R_DEPTH @ stb.R_DEPTH.T, np.eye(3), atol=1e-12)
    X = np.array([[10.0, -20.0, 400.0], [0.0, 0.0, 500.0]])
    np.testing.assert_allclose(stb.color_to_depth(stb.depth_to_color(X)), X, atol=1e-9)
    # X_color = Rᵀ (X_depth − T), written out
    np.testing.assert_allclose(stb.depth_to_color(X)[0], stb.R_DEPTH.T @ (X[0] - stb.T_DEPTH))


def test_register_depth_uses_stb_extrinsic_convention():
    """base.register_depth must implement X_color = Rᵀ (X_depth − T) (i.e. X_d = R X_c + T)."""
    u, v, d = 300, 200, 450.0
    depth = np.zeros((480, 640), np.float32)
    depth[v, u] = d
    Xd = d * np.linalg.inv(stb.K_DEPTH) @ np.array([u, v, 1.0])
    Xc = stb.R_DEPTH.T @ (Xd - stb.T_DEPTH)
    uv = camera.project(stb.K_COLOR, Xc[None])[0]
    reg = base.register_depth(depth, stb.K_DEPTH, stb.K_COLOR, stb.R_DEPTH, stb.T_DEPTH, (480, 640))
    ys, xs = np.nonzero(reg)
    r, c = round(uv[1]), round(uv[0])
    assert reg[r, c] == pytest.approx(Xc[2], abs=1e-3)
    # splat-hole filling spreads a lone point to its 3x3 neighbourhood, never further
    assert np.abs(ys - r).max() <= 1 and np.abs(xs - c).max() <= 1
    # the opposite convention (X_c = R X_d + T) would land ~70 px away: the test discriminates
    wrong = camera.project(stb.K_COLOR, (stb.R_DEPTH @ Xd + stb.T_DEPTH)[None])[0]
    assert np.linalg.norm(wrong - uv) > 20


def test_depth_codec_bgr():
    d = np.array([[0, 1, 255, 256, 1234, 65535]], np.uint16)
    np.testing.assert_array_equal(base.decode_depth_stb(encode_stb_depth(d)), d.astype(np.float32))


# ------------------------------------------------------------------------------- candidates

def test_candidates_labels_exact(raw):
    src, truth = raw
    for split in stb.SPLITS:
        cands = stb.candidates(src, split, {"root": "palm"})
        assert len(cands) == sum(FRAMES[s] for s in stb.SPLIT_SEQUENCES[split])
        for c in cands:
            seq = stb.SEQUENCES[c.group]
            assert stb.split_of(seq) == split
            t = truth[seq]
            assert c.key == f"{seq}/SK_{c.raw_index}"
            assert c.kp2d is None and c.side == 0 and c.vis.all() and c.vis.shape == (21,)
            assert Path(c.rgb) == t["dir"] / f"SK_color_{c.raw_index}.png"
            assert Path(c.depth) == t["dir"] / f"SK_depth_{c.raw_index}.png"
            assert c.depth_codec == "stb" and c.mask is None and c.mask_from_depth
            assert c.image_shape == (480, 640)
            np.testing.assert_allclose(c.K, stb.K_COLOR)
            np.testing.assert_allclose(c.depth_camera["K"], stb.K_DEPTH)
            np.testing.assert_allclose(c.depth_camera["R"], stb.R_DEPTH)
            np.testing.assert_allclose(c.depth_camera["T"], stb.T_DEPTH)
            want = t["kp3d"][c.raw_index].copy()
            want[0] = t["palm"][c.raw_index]
            np.testing.assert_allclose(c.kp3d, want, atol=1e-9)
        # candidates travel to spawn workers: they must pickle
        assert pickle.loads(pickle.dumps(cands[0])).key == cands[0].key


def test_candidates_wrist_root(raw):
    src, truth = raw
    for c in stb.candidates(src, "test", {"root": "wrist"}):
        t = truth[stb.SEQUENCES[c.group]]["kp3d"][c.raw_index]
        scale = float(sk.scale_length(t))
        assert np.abs(c.kp3d[0] - t[0]).max() <= 1e-6 * scale
        np.testing.assert_allclose(c.kp3d[1:], t[1:], atol=1e-9)


# ------------------------------------------------------------------------------- conversion

def test_conversion_counts_and_splits(converted):
    out, report = converted
    for split in stb.SPLITS:
        n = sum(FRAMES[s] for s in stb.SPLIT_SEQUENCES[split])
        assert report[split] == {"candidates": n, "written": n, "rejected": {}}
        data = load_dataset(out / split, verify="full")
        assert len(data) == n
        names = [stb.SEQUENCES[g] for g in data.arrays["group"]]
        assert {stb.split_of(s) for s in names} == {split}
        assert set(names) == set(stb.SPLIT_SEQUENCES[split])
        # provenance: (group, raw_index) pairs are the fixture's frames, each once
        pairs = sorted(zip(names, data.arrays["raw_index"].tolist()))
        assert pairs == sorted((s, i) for s in stb.SPLIT_SEQUENCES[split] for i in range(FRAMES[s]))
        m = data.manifest
        assert m["root"] == "palm" and m["name"] == "stb" and m["split"] == split
        assert m["extra"]["groups"] == list(stb.SEQUENCES)
        assert m["extra"]["protocol"] == json.loads(json.dumps(stb.protocol({"root": "palm"})))
        assert m["source"]["options"] == {"root": "palm"}
        assert m["label_counts"]["left"] == n and m["label_counts"]["has_depth"] == n
        assert data.arrays["side"].tolist() == [0] * n
        assert data.arrays["vis"].all() and data.arrays["has_3d"].all()


def test_conversion_exact_geometry(converted, raw):
    out, _ = converted
    _, truth = raw
    for split in stb.SPLITS:
        data = load_dataset(out / split)
        for j in range(len(data)):
            s = data[j]
            seq, i = stb.SEQUENCES[int(s["group"])], int(s["raw_index"])
            t = truth[seq]
            want = t["kp3d"][i].copy()
            want[0] = t["palm"][i]
            # canonical order, colour frame, mm, palm root
            np.testing.assert_allclose(s["kp3d"], want, atol=1e-3)
            # crop box and kp2d = colour projection then crop; crop K consistent
            full2d = camera.project(stb.K_COLOR, want)
            box = base.square_box(full2d, 1.5)
            np.testing.assert_allclose(s["crop_box"], box, atol=1e-3)
            A = camera.crop_transform(box, SIZE)
            np.testing.assert_allclose(s["kp2d"], camera.apply_homography(A, full2d), atol=1e-3)
            np.testing.assert_allclose(s["K"], A @ stb.K_COLOR, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(camera.project(s["K"].astype(np.float64), s["kp3d"]),
                                       s["kp2d"], atol=2e-3)
            # the crop shows the rendered colour image (base area-filters when downscaling, so
            # compare with a plain bilinear warp at a tolerance that still catches a misplaced
            # or mirrored crop, which differs by tens of grey levels)
            rgb_ref = cv2.warpAffine(np.ascontiguousarray(render_rgb(raw, seq, i)), A[:2],
                                     (SIZE, SIZE), flags=cv2.INTER_LINEAR)
            assert np.abs(s["rgb"].astype(int) - rgb_ref.astype(int)).mean() < 5.0


def test_registered_depth_in_colour_frame(converted, raw):
    out, _ = converted
    _, truth = raw
    for split in stb.SPLITS:
        data = load_dataset(out / split)
        for j in range(len(data)):
            s = data[j]
            seq, i = stb.SEQUENCES[int(s["group"])], int(s["raw_index"])
            t = truth[seq]
            A = camera.crop_transform(s["crop_box"].astype(np.float64), SIZE)
            d = s["depth"]
            # registered depth equals the rendered colour-camera depth, in mm, where both exist
            ref = cv2.warpAffine(t["depth"][i], A[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST)
            hand = cv2.warpAffine(t["mask"][i], A[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST) > 0
            both = (d > 0) & (ref > 0) & hand
            assert both.sum() > 0.3 * hand.sum()
            assert np.median(np.abs(d[both] - ref[both])) < 2.0
            # at visible joints the surface lies within a finger radius of the joint centre
            vis = t["vis"][i]
            pix = np.rint(s["kp2d"]).astype(int)
            zs, ds = [], []
            for k in np.flatnonzero(vis):
                u, v = pix[k]
                win = d[max(v - 1, 0):v + 2, max(u - 1, 0):u + 2]
                if (win > 0).any():
                    zs.append(s["kp3d"][k, 2])
                    ds.append(np.median(win[win > 0]))
            if len(zs) >= 3:
                assert abs(np.median(np.array(zs) - np.array(ds))) < 20.0


def test_depth_heuristic_mask(converted, raw):
    """No masks in STB: the depth heuristic gives a mask that is mostly inside the true hand."""
    out, _ = converted
    _, truth = raw
    data = load_dataset(out / "test")
    for j in range(len(data)):
        s = data[j]
        t = truth[stb.SEQUENCES[int(s["group"])]]
        A = camera.crop_transform(s["crop_box"].astype(np.float64), SIZE)
        gt = cv2.warpAffine(t["mask"][int(s["raw_index"])], A[:2], (SIZE, SIZE),
                            flags=cv2.INTER_NEAREST) > 0
        m = s["mask"] > 0
        assert m.sum() > 0.3 * gt.sum()
        assert (m & gt).sum() > 0.8 * m.sum()   # precision; recall is limited by splat holes


def test_wrist_root_conversion(raw, tmp_path):
    src, truth = raw
    out = tmp_path / "stb_wrist"
    report = run_test_split(src, out, options={"root": "wrist"})
    assert report["test"]["written"] == report["test"]["candidates"] == 4
    data = load_dataset(out / "test")
    assert data.manifest["root"] == "wrist"
    assert data.manifest["extra"]["protocol"]["root"] == "wrist"
    assert data.manifest["source"]["options"] == {"root": "wrist"}
    assert not (out / "train").exists()
    for j in range(len(data)):
        s = data[j]
        t = truth[stb.SEQUENCES[int(s["group"])]]["kp3d"][int(s["raw_index"])]
        np.testing.assert_allclose(s["kp3d"], t, atol=1e-3)   # the rendered wrist comes back
        full2d = camera.project(stb.K_COLOR, t)
        A = camera.crop_transform(s["crop_box"].astype(np.float64), SIZE)
        np.testing.assert_allclose(s["kp2d"], camera.apply_homography(A, full2d), atol=2e-3)


def test_loads_in_hand_dataset(converted):
    torch = pytest.importorskip("torch")
    from weakhand.data import HandDataset

    out, _ = converted
    ds = HandDataset(out / "train", fields=("image", "depth", "mask", "kp2d", "kp3d", "vis", "K",
                                            "side", "has_3d", "group", "raw_index"))
    assert len(ds) == 12
    item = ds[0]
    assert item["image"].shape == (3, SIZE, SIZE) and item["depth"].shape == (1, SIZE, SIZE)
    assert item["kp3d"].shape == (21, 3) and torch.isfinite(item["kp3d"]).all()
    assert int(item["side"]) == 0 and bool(item["has_3d"])
    assert 2 <= int(item["group"]) <= 11
    d = item["depth"][item["depth"] > 0]
    assert 150 < float(d.median()) < 1500     # millimetres


# ------------------------------------------------------------------------------- layout

def test_layout_accepts_both_variants(raw):
    src, truth = raw
    assert (src / "images" / "B1Counting").is_dir() and (src / "B1Random").is_dir()
    reqs = stb.layout(src, {"root": "palm", "splits": ("train", "test")})
    paths = {r.path for r in reqs}
    assert "images/B1Counting" in paths and "B1Random" in paths
    assert {f"labels/{s}_SK.mat" for s in stb.SEQUENCES} <= paths
    assert len(reqs) == 24
    base.check_layout(src, reqs, "stb")
    assert len(stb.layout(src, {"splits": ("test",)})) == 4


def test_layout_lists_everything_missing(tmp_path, raw):
    src = small_copy(raw, tmp_path / "src", seqs=("B1Counting",))
    out = tmp_path / "out"
    with pytest.raises(RawLayoutError) as e:
        convert_dataset("stb", src, out, workers=1, show_progress=False, log=lambda s: None)
    msg = str(e.value)
    for seq in stb.SEQUENCES[1:]:
        assert str(src / "images" / seq) in msg and f"or {seq}/ directly" in msg
        assert str(src / "labels" / f"{seq}_SK.mat") in msg
    assert "B1Counting_SK" not in msg and str(src / "images" / "B1Counting") not in msg
    assert_nothing_at(out)
    # restricted to the test split, only B1Random is reported
    with pytest.raises(RawLayoutError) as e:
        run_test_split(src, out)
    msg = str(e.value)
    assert "B1Random_SK.mat" in msg and "B2" not in msg
    assert_nothing_at(out)


def test_missing_frame_files_listed(tmp_path, raw):
    src = small_copy(raw, tmp_path / "src")
    d = src / "images" / "B1Counting"
    (d / "SK_depth_1.png").unlink()
    (d / "SK_color_2.png").unlink()
    out = tmp_path / "out"
    with pytest.raises(RawLayoutError) as e:
        run_test_split(src, out)
    assert str(d / "SK_depth_1.png") in str(e.value) and str(d / "SK_color_2.png") in str(e.value)
    assert_nothing_at(out)


# ------------------------------------------------------------------------------- bad input

def test_truncated_mat(tmp_path, raw):
    src = small_copy(raw, tmp_path / "src")
    mat = src / "labels" / "B1Random_SK.mat"
    mat.write_bytes(mat.read_bytes()[: mat.stat().st_size // 2])
    out = tmp_path / "out"
    with pytest.raises(RawDataError, match="B1Random_SK.mat") as e:
        run_test_split(src, out)
    assert "truncated or corrupt" in str(e.value)
    assert_nothing_at(out)


@pytest.mark.parametrize("arr", [np.zeros((21, 3, 2)), np.zeros((3, 20, 2)), np.zeros((3, 21))],
                         ids=["transposed", "20-joints", "2d"])
def test_handpara_wrong_shape(tmp_path, raw, arr):
    src = small_copy(raw, tmp_path / "src")
    savemat(str(src / "labels" / "B1Counting_SK.mat"), {"handPara": arr})
    out = tmp_path / "out"
    with pytest.raises(RawDataError, match=r"B1Counting_SK\.mat: handPara has shape") as e:
        run_test_split(src, out)
    assert "(3, 21, N)" in str(e.value)
    assert_nothing_at(out)


def test_mat_without_handpara(tmp_path, raw):
    src = small_copy(raw, tmp_path / "src")
    savemat(str(src / "labels" / "B1Counting_SK.mat"), {"somethingElse": np.zeros((3, 21, 3))})
    out = tmp_path / "out"
    with pytest.raises(RawDataError, match=r"B1Counting_SK\.mat: variable 'handPara' not found"):
        run_test_split(src, out)
    assert_nothing_at(out)


def test_corrupt_color_png(tmp_path, raw):
    src = small_copy(raw, tmp_path / "src")
    png = src / "B1Random" / "SK_color_0.png"      # the last frame of the test split
    png.write_bytes(png.read_bytes()[:200])
    out = tmp_path / "out"
    with pytest.raises(RawDataError, match="SK_color_0.png: cannot decode image"):
        run_test_split(src, out)
    assert_nothing_at(out)


def test_unknown_root_option(tmp_path, raw):
    src = small_copy(raw, tmp_path / "src")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown value 'middle' for option 'root'"):
        run_test_split(src, out, options={"root": "middle"})
    assert_nothing_at(out)
    for fn in (stb.protocol, lambda o: stb.candidates(src, "test", o),
               lambda o: stb.layout(src, o)):
        with pytest.raises(ValueError, match="'palm'.*'wrist'"):
            fn({"root": "wrist_ring2x"})
    with pytest.raises(ValueError, match="unknown options"):
        run_test_split(src, out, options={"wrist": True})
    assert_nothing_at(out)


def test_protocol():
    p = stb.protocol({"root": "palm"})
    assert p == {**p, "root": "palm", "scale_bone": [9, 10], "eval_split": "test",
                 "align": "root + scale (GT root and scale known), no rotation"}
    assert set(p) == {"root", "scale_bone", "thresholds_mm", "align", "eval_split", "notes"}
    assert "linspace(0,50,20)" in p["thresholds_mm"] and "[8:]" in p["thresholds_mm"]
    assert stb.protocol({"root": "wrist"})["root"] == "wrist"
    assert stb.protocol({})["root"] == "palm"
    assert tuple(p["scale_bone"]) == sk.SCALE_BONE


def test_cli_convert(raw, tmp_path, capsys):
    from weakhand.workbook import cli

    src, _ = raw
    out = tmp_path / "cli_out"
    rc = cli.main(["data", "convert", "stb", "--src", str(src), "--out", str(out),
                   "--splits", "test", "--size", "64", "--workers", "1", "--opt", "root=wrist"])
    assert rc == 0
    capsys.readouterr()
    data = load_dataset(out / "test")
    assert data.manifest["root"] == "wrist" and len(data) == 4
    rc = cli.main(["data", "convert", "stb", "--src", str(src), "--out", str(tmp_path / "x"),
                   "--splits", "test", "--opt", "root=knuckle"])
    assert rc == 1 and "unknown value 'knuckle'" in capsys.readouterr().out
    assert_nothing_at(tmp_path / "x")
