"""RHD recipe (data_recipes/rhd.py) on a tiny RHD tree written in the exact raw format.

Each fixture image holds two rendered hands (tests/recipe_fixtures.render_hands, RHD-like K):
a near "main" hand and a smaller, farther hand of the other side, z-buffered into one frame.
So the 42-keypoint pickle, the colour/depth/mask PNGs and the expected conversion (side chosen
by mask area, canonical order, mm, crop K, depth) are all known exactly.
"""
from __future__ import annotations

import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from recipe_fixtures import render_hands
from weakhand import camera
from weakhand.data import load_dataset
from weakhand.recipes import RawDataError, RawLayoutError, base, convert_dataset, get_recipe
from weakhand.synth.anatomy import PART_ARM, PART_FINGER0, PART_PALM, PART_SLEEVE

import data_recipes.rhd as rhd

REAL_RGB = (Path(__file__).resolve().parents[2] / "shared" / "real_samples" / "rhd"
            / "RHD_published_v2" / "evaluation" / "color" / "00000.png")
W = H = 320
SIZE, MARGIN = 128, 1.5
# RHD per-hand order, written from the README independently of weakhand.skeleton:
# 0 wrist, then thumb, index, middle, ring, little, each finger tip -> MCP.
RHD_FROM_CANONICAL = np.array([0] + [1 + 4 * f + (3 - j) for f in range(5) for j in range(4)])
# (side of the near, bigger hand; use the real RHD image as background)
SAMPLES = {"training": [(0, False), (1, False), (0, False), (1, False)],
           "evaluation": [(1, True), (0, False), (1, False)]}
SPLIT_OF = {"training": "train", "evaluation": "eval"}
QUIET = {"workers": 1, "show_progress": False, "log": lambda s: None}


# ------------------------------------------------------------------------------- fixture writer

def _rhd_K(i: int) -> np.ndarray:
    f = 272.3 + 6.1 * i  # RHD focal lengths are ~282 px; cx = cy = 160
    return np.array([[f, 0.0, 160.0], [0.0, f, 160.0], [0.0, 0.0, 1.0]])


def _label_lut(side: int) -> np.ndarray:
    """Rendered part id -> RHD mask label for a hand of `side` (0 left: 2..17, 1 right: 18..33)."""
    lut = np.zeros(256, np.uint8)
    lut[[PART_ARM, PART_SLEEVE]] = 1  # person
    base_label = 2 if side == 0 else 18
    lut[PART_PALM] = base_label + 15  # 17 / 33 palm
    for f in range(5):
        for s in range(3):  # rendered segments run proximal -> distal, RHD's tip -> palm
            lut[PART_FINGER0 + 3 * f + s] = base_label + 3 * f + (2 - s)
    return lut


def encode_depth_rhd(depth_mm: np.ndarray) -> np.ndarray:
    """RHD depth PNG content in cv2's BGR order: v = round(d_m / 5 * 65535), R high, G low, B 0."""
    v = np.rint(np.asarray(depth_mm, np.float64) / 5000.0 * 65535.0).astype(np.int64)
    assert v.min() >= 0 and v.max() <= 65535
    bgr = np.zeros(v.shape + (3,), np.uint8)
    bgr[..., 2] = v >> 8
    bgr[..., 1] = v & 255
    return bgr


def _two_hand_frame(K: np.ndarray, main_side: int, seed: int) -> dict:
    near = render_hands(K, (W, H), 1, seed=seed, p_left=1.0 if main_side == 0 else 0.0)
    far = render_hands(K, (W, H), 1, seed=seed + 1, p_left=0.0 if main_side == 0 else 1.0,
                       distance_mm=(850.0, 1100.0))
    assert near["side"][0] == main_side and far["side"][0] == 1 - main_side
    pn, pf = near["parts"][0], far["parts"][0]
    dn, df = near["depth"][0], far["depth"][0]
    over = (pf > 0) & ((df < dn) | (dn == 0))  # z-buffer: the far render's body in front
    labels = np.where(over, _label_lut(1 - main_side)[pf], _label_lut(main_side)[pn])
    hands = {}
    for r, side, own in ((near, main_side, False), (far, 1 - main_side, True)):
        pix = np.clip(np.rint(r["kp2d"][0]).astype(int), 0, [W - 1, H - 1])
        hands[side] = {"kp3d": r["kp3d"][0].astype(np.float64), "kp2d": r["kp2d"][0],
                       "vis": r["vis"][0] & (over[pix[:, 1], pix[:, 0]] == own)}
    return {"rgb": np.where(over[..., None], far["rgb"][0], near["rgb"][0]),
            "depth": np.where(over, df, dn).astype(np.float32), "labels": labels, "hands": hands}


def write_rhd_tree(root: Path, seed: int = 7, samples: dict | None = None) -> dict:
    """Write RHD_published_v2/{training,evaluation} under `root`; returns the ground truth.
    samples: {"training": [(main side, real background), ...], "evaluation": [...]} (default SAMPLES)."""
    real = cv2.imread(str(REAL_RGB))[..., ::-1] if REAL_RGB.is_file() else None
    truth = {}
    for set_i, (s, specs) in enumerate((samples or SAMPLES).items()):
        d = root / s
        for sub in ("color", "depth", "mask"):
            (d / sub).mkdir(parents=True)
        anno = {}
        for sid, (main_side, real_bg) in enumerate(specs):
            K = _rhd_K(4 * set_i + sid)
            for attempt in range(8):  # a frame where the far hand shows more pixels is drawn again
                fr = _two_hand_frame(K, main_side, seed + 100 * set_i + 10 * sid + 100_003 * attempt)
                if real_bg and real is not None:
                    fr["rgb"] = np.where((fr["labels"] == 0)[..., None], real, fr["rgb"])
                # Z&B's rule, counted here independently: the near hand must be the bigger one
                left = int(((fr["labels"] >= 2) & (fr["labels"] <= 17)).sum())
                right = int(((fr["labels"] >= 18) & (fr["labels"] <= 33)).sum())
                if (0 if left > right else 1) == main_side:
                    break
            assert (0 if left > right else 1) == main_side, (s, sid, left, right)
            xyz = np.zeros((42, 3), np.float32)
            uv_vis = np.zeros((42, 3), np.float32)
            for side, h in fr["hands"].items():
                sl = slice(21 * side, 21 * side + 21)
                xyz[sl] = h["kp3d"][RHD_FROM_CANONICAL] / 1000.0  # metres
                uv_vis[sl, :2] = h["kp2d"][RHD_FROM_CANONICAL]
                uv_vis[sl, 2] = h["vis"][RHD_FROM_CANONICAL]
                h["uv_raw"] = uv_vis[sl, :2][RHD_FROM_CANONICAL].astype(np.float64)
            anno[sid] = {"xyz": xyz, "uv_vis": uv_vis, "K": K.astype(np.float32)}
            name = f"{sid:05d}.png"
            assert cv2.imwrite(str(d / "color" / name), np.ascontiguousarray(fr["rgb"][..., ::-1]))
            assert cv2.imwrite(str(d / "depth" / name), encode_depth_rhd(fr["depth"]))
            assert cv2.imwrite(str(d / "mask" / name), fr["labels"])
            truth[(SPLIT_OF[s], sid)] = {**fr, "side": main_side, "K": K.astype(np.float32)}
        with open(d / f"anno_{s}.pickle", "wb") as fh:
            pickle.dump(anno, fh)
    return truth


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    src = tmp_path_factory.mktemp("rhd") / "RHD_published_v2"
    truth = write_rhd_tree(src)
    return src, truth


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    src, truth = raw
    out = tmp_path_factory.mktemp("conv") / "rhd"
    report = convert_dataset("rhd", src, out, **QUIET)
    return out, report, truth


def _rows(out: Path):
    """(split, row, sample dict, truth key) for every written sample."""
    for split in rhd.SPLITS:
        data = load_dataset(out / split)
        for i in range(len(data)):
            s = data[i]
            yield split, i, s, (split, int(s["raw_index"]))


def _crop_A(h: dict) -> np.ndarray:
    return np.asarray(camera.crop_transform(base.square_box(h["uv_raw"], MARGIN), SIZE))


# ------------------------------------------------------------------------------- conversion

def test_recipe_is_registered_and_protocol_is_json():
    assert get_recipe("rhd") is rhd
    assert rhd.NAME == "rhd" and rhd.SPLITS == ("train", "eval") and rhd.OPTIONS == {"hand": "area"}
    p = rhd.protocol(rhd.OPTIONS)
    assert json.loads(json.dumps(p)) == p
    assert p["root"] == "wrist" and p["scale_bone"] == [9, 10] and p["eval_split"] == "eval"
    for key in ("thresholds_mm", "align", "notes"):
        assert isinstance(p[key], str) and p[key]


def test_counts_splits_and_provenance(converted, raw):
    out, report, truth = converted
    src = raw[0]
    assert report["train"] == {"candidates": 4, "written": 4, "rejected": {}}
    assert report["eval"] == {"candidates": 3, "written": 3, "rejected": {}}
    assert sorted(p.name for p in out.iterdir()) == ["eval", "train"]
    for split, n in (("train", 4), ("eval", 3)):
        data = load_dataset(out / split)
        m = data.manifest
        assert len(data) == n and m["split"] == split and m["name"] == "rhd"
        assert m["root"] == "wrist" and m["units"]["kp3d"] == "mm"
        assert m["source"]["dataset"] == "rhd" and m["source"]["recipe"] == "data_recipes.rhd"
        assert m["source"]["src"] == str(src.resolve()) and m["source"]["split"] == split
        assert m["source"]["options"] == {"hand": "area"}
        assert m["extra"]["protocol"] == json.loads(json.dumps(rhd.protocol(rhd.OPTIONS)))
        assert data.arrays["raw_index"].tolist() == list(range(n))  # sample id = %05d name
        sides = [truth[(split, i)]["side"] for i in range(n)]
        assert m["label_counts"]["left"] == sides.count(0)
        assert m["label_counts"]["right"] == sides.count(1)
        assert data.arrays["has_3d"].all() and data.arrays["has_depth"].all()


def test_keypoints_order_units_side_and_crop_K(converted):
    out, _, truth = converted
    for split, _, s, key in _rows(out):
        t = truth[key]
        h = t["hands"][t["side"]]
        assert int(s["side"]) == t["side"]  # the bigger mask wins, left hands not mirrored
        # canonical order and millimetres: equal to the rendered hand
        np.testing.assert_allclose(s["kp3d"], h["kp3d"], atol=1e-3)
        assert 300 < s["kp3d"][:, 2].mean() < 700
        np.testing.assert_array_equal(s["vis"], h["vis"])
        A = _crop_A(h)
        np.testing.assert_allclose(s["crop_box"], base.square_box(h["uv_raw"], MARGIN), atol=1e-3)
        np.testing.assert_allclose(s["K"], A @ t["K"], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(s["kp2d"], camera.apply_homography(A, h["kp2d"]), atol=1e-3)
        # the crop's K maps kp3d onto the written kp2d
        proj = camera.project(s["K"].astype(np.float64), s["kp3d"].astype(np.float64))
        assert np.abs(proj - s["kp2d"]).max() < 1e-3


def test_left_hand_selected_when_its_mask_is_bigger(converted):
    out, _, truth = converted
    lefts = [(key, s) for _, _, s, key in _rows(out) if truth[key]["side"] == 0]
    assert len(lefts) == 3
    for key, s in lefts:
        left = truth[key]["hands"][0]["kp3d"]
        right = truth[key]["hands"][1]["kp3d"]
        assert int(s["side"]) == 0
        np.testing.assert_allclose(s["kp3d"], left, atol=1e-3)
        assert np.abs(s["kp3d"] - right).max() > 100  # not the other hand


def test_depth_in_mm_matches_the_render(converted):
    out, _, truth = converted
    for _, _, s, key in _rows(out):
        t = truth[key]
        h = t["hands"][t["side"]]
        A = _crop_A(h)
        want = cv2.warpAffine(t["depth"], A[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST)
        got = s["depth"]
        np.testing.assert_array_equal(got > 0, want > 0)
        # RHD's 16-bit steps (76 um) + the workbook's 0.1 mm storage
        assert np.abs(got - want).max() < 0.2
        pix = np.rint(s["kp2d"]).astype(int)
        ok = s["vis"] & (pix >= 0).all(1) & (pix < SIZE).all(1)
        assert ok.sum() >= 3
        d = got[pix[ok, 1], pix[ok, 0]]
        np.testing.assert_allclose(d, want[pix[ok, 1], pix[ok, 0]], atol=0.2)
        gap = s["kp3d"][ok, 2] - d  # joint centres lie just behind the visible surface
        assert np.median(gap) > 0 and np.median(gap) < 20


def test_mask_is_the_selected_hand(converted):
    out, _, truth = converted
    for _, _, s, key in _rows(out):
        t = truth[key]
        h = t["hands"][t["side"]]
        lo, hi = (2, 17) if t["side"] == 0 else (18, 33)
        hand = ((t["labels"] >= lo) & (t["labels"] <= hi)).astype(np.uint8)
        want = cv2.warpAffine(hand, _crop_A(h)[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(s["mask"], want)
        # visible finger joints other than the tips fall on hand pixels (the wrist and the tips
        # sit on the hand's border: the wrist often on the arm, labelled 1 = body)
        pix = np.rint(s["kp2d"]).astype(int)
        inner = s["vis"].copy()
        inner[[0, 4, 8, 12, 16, 20]] = False
        inner &= (pix >= 0).all(1) & (pix < SIZE).all(1)
        assert inner.sum() >= 2
        assert s["mask"][pix[inner, 1], pix[inner, 0]].all()


def test_rgb_is_rgb_order(converted):
    out, _, truth = converted
    for _, _, s, key in _rows(out):
        t = truth[key]
        A = _crop_A(t["hands"][t["side"]])
        want = cv2.warpAffine(t["rgb"], A[:2], (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(float)
        err = np.abs(s["rgb"] - want).mean()
        swapped = np.abs(s["rgb"] - want[..., ::-1]).mean()
        assert err < 3.0 and swapped > 3 * err + 2, (key, err, swapped)


def test_loads_in_torch_dataset(converted):
    import torch
    from weakhand.data import HandDataset

    out, _, truth = converted
    data = load_dataset(out / "eval")
    ds = HandDataset(data)
    item = ds[1]
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["depth"].shape == (1, SIZE, SIZE) and item["mask"].shape == (1, SIZE, SIZE)
    np.testing.assert_allclose(item["kp3d"].numpy(), data[1]["kp3d"], atol=1e-4)
    proj = camera.project(item["K"].double(), item["kp3d"].double())
    assert float((proj - item["kp2d"].double()).abs().max()) < 1e-3
    assert int(item["side"]) == truth[("eval", 1)]["side"] == 0 and not bool(item["mirrored"])
    np.testing.assert_allclose(item["depth"][0].numpy(), data.depth_mm(1), atol=1e-4)
    # the left hand is flagged, and mirrored only on request
    m = HandDataset(data, mirror_left=True)[1]
    assert int(m["side"]) == 1 and bool(m["mirrored"])
    np.testing.assert_allclose(m["kp3d"][:, 0].numpy(), -data[1]["kp3d"][:, 0], atol=1e-4)
    np.testing.assert_allclose(m["image"].numpy(), item["image"].numpy()[..., ::-1], atol=1e-6)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["kp3d"].shape == (3, 21, 3) and batch["side"].tolist() == [1, 0, 1]


def test_hand_option_both(raw, tmp_path):
    src, truth = raw
    rep = convert_dataset("rhd", src, tmp_path / "both", options={"hand": "both"}, **QUIET)
    want = {(split, sid, side) for (split, sid), t in truth.items()
            for side, h in t["hands"].items() if h["vis"].any()}
    assert sum(rep[sp]["written"] for sp in rhd.SPLITS) == len(want) > 7
    got = set()
    for split, _, s, (_, sid) in _rows(tmp_path / "both"):
        side = int(s["side"])
        got.add((split, sid, side))
        np.testing.assert_allclose(s["kp3d"], truth[(split, sid)]["hands"][side]["kp3d"],
                                   atol=1e-3)
    assert got == want
    m = load_dataset(tmp_path / "both" / "eval").manifest
    assert m["extra"]["protocol"]["hand_selection"] == "both"


def test_unknown_hand_rule_is_refused(raw, tmp_path):
    with pytest.raises(ValueError, match="hand="):
        convert_dataset("rhd", raw[0], tmp_path / "o", options={"hand": "largest"}, **QUIET)
    assert not (tmp_path / "o").exists()


def test_only_requested_splits_need_to_exist(raw, tmp_path):
    src = tmp_path / "RHD_published_v2"
    shutil.copytree(raw[0] / "training", src / "training")
    rep = convert_dataset("rhd", src, tmp_path / "o", splits=["train"], **QUIET)
    assert rep["train"]["written"] == 4 and sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "train"]


# ------------------------------------------------------------------------------- hand rule, codecs

def test_area_rule_counts_rhd_hand_labels():
    m = np.zeros((8, 8), np.uint8)
    m[0, :4] = 1          # body: neither hand
    m[1, :3] = 2          # left thumb tip
    m[2, :2] = 17         # left palm
    m[3, :4] = 18         # right thumb tip
    m[4, :1] = 33         # right palm
    m[5, :3] = 34         # not a hand label
    assert rhd.hand_areas(m) == (5, 5)
    assert rhd.choose_side(5, 5) == 1  # a tie goes right (hand3d: left only if left > right)
    assert rhd.choose_side(6, 5) == 0 and rhd.choose_side(0, 0) == 1


def test_decode_depth_rhd_does_not_overflow_uint8():
    bgr = np.zeros((1, 3, 3), np.uint8)
    bgr[0, 0] = (0, 255, 255)   # B, G, R
    bgr[0, 1] = (0, 0, 1)       # R = 1: the high byte
    bgr[0, 2] = (255, 1, 0)     # G = 1: the low byte; B ignored
    np.testing.assert_allclose(base.decode_depth_rhd(bgr)[0],
                               [5000.0, 256 / 65535 * 5000, 1 / 65535 * 5000], rtol=1e-6)


def test_depth_png_round_trip(tmp_path):
    d = np.random.default_rng(0).uniform(0, 4999, (16, 16)).astype(np.float32)
    assert cv2.imwrite(str(tmp_path / "d.png"), encode_depth_rhd(d))
    raw = base.read_image(tmp_path / "d.png", cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.shape == (16, 16, 3)
    assert np.abs(base.decode_depth_rhd(raw) - d).max() < 0.5 * 5000 / 65535 + 1e-3


def _decode_png_rgb(path: Path) -> np.ndarray:
    """Minimal independent PNG reader (8-bit RGB, not interlaced) to check channel order."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    assert (depth, ctype, interlace) == (8, 2, 0)
    raw, stride = zlib.decompress(idat), 3 * w
    out = np.zeros((h, stride), np.uint8)
    prev = [0] * stride
    for y in range(h):
        f, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        cur = [0] * stride
        for i in range(stride):
            a = cur[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + p) & 255
        out[y] = cur
        prev = cur
    return out.reshape(h, w, 3)


@pytest.mark.skipif(not REAL_RGB.is_file(), reason="shared real RHD sample not present")
def test_real_rhd_colour_image_reads_as_rgb():
    img = base.read_image(REAL_RGB, shape=rhd.IMAGE_SHAPE)
    assert img.shape == (320, 320, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, _decode_png_rgb(REAL_RGB))


# ------------------------------------------------------------------------------- bad input

def _copy(raw, tmp_path) -> Path:
    src = tmp_path / "RHD_published_v2"
    shutil.copytree(raw[0], src)
    return src


def _fails(src: Path, tmp_path: Path, exc=RawDataError, **kw) -> str:
    out = tmp_path / "out"
    with pytest.raises(exc) as e:
        convert_dataset("rhd", src, out, **QUIET, **kw)
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))  # nothing written
    return str(e.value)


def test_missing_folders_are_all_listed(raw, tmp_path):
    src = _copy(raw, tmp_path)
    shutil.rmtree(src / "training" / "depth")
    shutil.rmtree(src / "evaluation" / "mask")
    (src / "evaluation" / "anno_evaluation.pickle").unlink()
    msg = _fails(src, tmp_path, RawLayoutError)
    for p in ("training/depth", "evaluation/mask", "evaluation/anno_evaluation.pickle"):
        assert str(src / p) in msg
    assert "training/color" not in msg
    assert "does not exist" in _fails(tmp_path / "nowhere", tmp_path, RawLayoutError)


def test_truncated_pickle(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "training" / "anno_training.pickle"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "unpickle" in msg


@pytest.mark.parametrize("edit, words", [
    (lambda a: a[2].update(xyz=a[2]["xyz"][:21]), ["sample 2", "'xyz'", "(21, 3)", "(42, 3)"]),
    (lambda a: a[1].update(uv_vis=a[1]["uv_vis"][:, :2]), ["sample 1", "'uv_vis'"]),
    (lambda a: a[0].pop("K"), ["sample 0", "missing key", "'K'"]),
    (lambda a: a.update({"3": a.pop(3)}), ["key '3'"]),
])
def test_wrong_pickle_content(raw, tmp_path, edit, words):
    src = _copy(raw, tmp_path)
    p = src / "training" / "anno_training.pickle"
    anno = pickle.loads(p.read_bytes())
    edit(anno)
    p.write_bytes(pickle.dumps(anno))
    msg = _fails(src, tmp_path)
    assert str(p) in msg
    for w in words:
        assert w in msg, msg


def test_pickle_that_is_not_a_dict(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "evaluation" / "anno_evaluation.pickle"
    p.write_bytes(pickle.dumps([1, 2, 3]))
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "dict keyed by integer sample id" in msg


@pytest.mark.parametrize("folder, how", [("color", "garbage"), ("color", "truncated"),
                                         ("depth", "garbage"), ("mask", "garbage"),
                                         ("color", "missing")])
def test_corrupt_or_missing_png(raw, tmp_path, folder, how):
    src = _copy(raw, tmp_path)
    p = src / "evaluation" / folder / "00002.png"
    if how == "garbage":
        p.write_bytes(b"\x00not a png\xff" * 50)
    elif how == "truncated":
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    else:
        p.unlink()
    msg = _fails(src, tmp_path)
    assert str(p) in msg


def test_missing_images_are_all_listed_before_decoding(raw, tmp_path):
    src = _copy(raw, tmp_path)
    gone = [src / "training" / "depth" / "00001.png", src / "training" / "color" / "00003.png"]
    for p in gone:
        p.unlink()
    msg = _fails(src, tmp_path, RawLayoutError)
    assert "2 image file(s)" in msg and all(str(p) in msg for p in gone)


def test_mask_of_wrong_kind(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "training" / "mask" / "00001.png"
    assert cv2.imwrite(str(p), np.zeros((160, 160), np.uint8))
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "(160, 160)" in msg
