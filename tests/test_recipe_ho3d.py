"""HO-3D recipe (data_recipes/ho3d.py) on a fixture tree written in the exact raw format.

Hands are rendered with HO-3D's common v2 camMat (fx = fy = 617.343, cx = 312.42, cy = 241.42,
640x480); labels are stored as HO-3D does (handJoints3D in MANO order, metres, OpenGL axes;
depth PNGs as (R + 256 G) x 0.00012498664727900177 m written in cv2's BGR order; meta pickles
with protocol 2, protocol 0 and one Python-2-style pickle that only loads with latin1). The
sample ids are real ones from the real v2 split lists (real sample files kept outside the repository).
"""
from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from weakhand import camera
from weakhand import skeleton as sk
from weakhand.data import load_dataset
from weakhand.recipes import RawDataError, RawLayoutError, convert, get_recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_fixtures import render_hands  # noqa: E402

ho3d = get_recipe("ho3d")

REAL = Path(__file__).resolve().parents[2] / "shared" / "real_samples" / "ho3d"
K_HO3D = np.array([[617.343, 0.0, 312.42], [0.0, 617.343, 241.42], [0.0, 0.0, 1.0]])
DEPTH_SCALE_M = 0.00012498664727900177
SIZE = 128

# real v2 ids (train: two sequences, list order shuffled as in the real train.txt; the MC1/0317
# frame is written with annotation None); eval: two sequences
TRAIN_IDS = ["SMu41/1583", "MC1/0517", "MC1/0317", "SMu41/0009", "MC1/0611"]
UNANNOTATED = "MC1/0317"
EVAL_IDS = ["SM1/0000", "SM1/0001", "AP10/0000"]
PICKLE_STYLE = {"SMu41/1583": "py2", "MC1/0517": 0, "SM1/0001": "py2"}  # others: protocol 2


# ------------------------------------------------------------------------------- raw writers

class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 'str' opcodes, as Python 2 pickled numpy arrays: a plain
    Python 3 load fails (ASCII decode) and encoding='latin1' is needed (HO-3D's meta files)."""
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_str2(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str2


def write_meta(path: Path, meta: dict, style=2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if style == "py2":
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(meta)
        data = buf.getvalue()
        with pytest.raises(UnicodeDecodeError):  # really needs the latin1 fallback
            pickle.loads(data)
        path.write_bytes(data)
    else:
        with open(path, "wb") as fh:
            pickle.dump(meta, fh, protocol=style)


def encode_depth(depth_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HO-3D depth PNG pixels (BGR, as cv2 writes them) and the exactly representable mm."""
    units = np.rint(depth_mm / (DEPTH_SCALE_M * 1000.0)).astype(np.int64)
    assert units.max() < 65536
    bgr = np.zeros(depth_mm.shape + (3,), np.uint8)
    bgr[..., 2] = units & 0xFF          # R = low byte
    bgr[..., 1] = units >> 8            # G = high byte
    return bgr, units * (DEPTH_SCALE_M * 1000.0)


def to_ho3d_gl(kp_mm_canonical: np.ndarray) -> np.ndarray:
    """Canonical mm OpenCV -> HO-3D handJoints3D (MANO order, metres, OpenGL axes)."""
    return np.asarray(sk.from_canonical(kp_mm_canonical.astype(np.float64), "ho3d")) \
        / 1000.0 * np.array([1.0, -1.0, -1.0])


def obj_fields(r: np.random.Generator) -> dict:
    return {"objRot": r.normal(0, 1, (3, 1)).astype(np.float32), "objTrans": r.normal(0, 0.1, 3),
            "objName": "006_mustard_bottle", "objLabel": 2,
            "objCorners3DRest": r.normal(0, 0.05, (8, 3)), "objCorners3D": r.normal(0, 0.05, (8, 3))}


def build_tree(root: Path, rgb_ext: str = ".png") -> dict:
    """Write the fixture tree; return the ground truth per id."""
    n_tr, n_ev = len(TRAIN_IDS), len(EVAL_IDS)
    r = render_hands(K_HO3D, (640, 480), n_tr + n_ev, seed=11, distance_mm=(380.0, 560.0))
    rng = np.random.default_rng(0)
    truth = {}
    for i, fid in enumerate(TRAIN_IDS + EVAL_IDS):
        split = "train" if i < n_tr else "evaluation"
        seq, frame = fid.split("/")
        d = root / split / seq
        for sub in ("rgb", "depth", "meta"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / "rgb" / (frame + rgb_ext)), r["rgb"][i][..., ::-1])
        bgr, depth_exact = encode_depth(r["depth"][i])
        cv2.imwrite(str(d / "depth" / f"{frame}.png"), bgr)
        kp = r["kp3d"][i].astype(np.float64)
        ys, xs = np.nonzero(r["mask"][i])
        bbox = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
        truth[fid] = {"kp3d": kp, "kp2d": r["kp2d"][i].astype(np.float64), "vis": r["vis"][i],
                      "depth": depth_exact, "mask": r["mask"][i], "bbox": bbox}
        if fid == UNANNOTATED:
            meta = {"handJoints3D": None, "objRot": None, "objTrans": None, "handPose": None,
                    "handTrans": None, "handBeta": None, "camMat": K_HO3D.copy(),
                    "objName": "006_mustard_bottle"}
        elif split == "train":
            meta = {"handPose": rng.normal(0, 0.3, 48), "handTrans": rng.normal(0, 0.1, 3),
                    "handBeta": rng.normal(0, 1, 10), "handJoints3D": to_ho3d_gl(kp),
                    "camMat": K_HO3D.copy(), **obj_fields(rng)}
        else:
            meta = {"handJoints3D": to_ho3d_gl(kp)[0].copy(), "handBoundingBox": bbox,
                    "camMat": K_HO3D.copy(), **obj_fields(rng)}
        write_meta(d / "meta" / f"{frame}.pkl", meta, PICKLE_STYLE.get(fid, 2))
    (root / "train.txt").write_text("".join(f + "\n" for f in TRAIN_IDS))
    (root / "evaluation.txt").write_text("".join(f + "\n" for f in EVAL_IDS))
    return truth


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("ho3d_raw") / "HO3D_v2"
    truth = build_tree(root)
    return root, truth


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory):
    src, truth = raw
    out = tmp_path_factory.mktemp("ho3d_out") / "ho3d"
    logs = []
    report = convert(ho3d, src, out, size=SIZE, workers=1, show_progress=False, log=logs.append)
    return out, report, truth, logs


def _skin_fraction(kp2d, z, vis, depth, lo=-3.0, hi=16.0) -> float:
    """Fraction of visible in-crop joints with a depth pixel (3x3 window) lying between `lo`
    and `hi` mm in front of the joint centre (the skin: about a finger radius)."""
    pix = np.rint(kp2d).astype(int)
    n = depth.shape[0]
    ok = vis & (pix >= 1).all(1) & (pix < n - 1).all(1)
    hits = []
    for (u, v), zz in zip(pix[ok], z[ok]):
        gap = zz - depth[v - 1:v + 2, u - 1:u + 2]
        hits.append(bool(((gap > lo) & (gap < hi)).any()))
    assert len(hits) >= 5
    return float(np.mean(hits))


def _copy(raw, tmp_path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(raw[0], dst)
    return dst


def _fails(src, tmp_path, exc=RawDataError, match=None, **kw):
    out = tmp_path / "out"
    with pytest.raises(exc, match=match) as e:
        convert(ho3d, src, out, size=SIZE, workers=1, show_progress=False, log=lambda s: None, **kw)
    assert not out.exists() and not list(tmp_path.glob("out.tmp*")), "nothing may be written"
    return str(e.value)


# ------------------------------------------------------------------------------- real split lists

@pytest.mark.skipif(not (REAL / "train.txt").is_file(), reason="real HO-3D split lists absent")
def test_real_v2_split_lists():
    train = ho3d.read_split_list(REAL / "train.txt")
    ev = ho3d.read_split_list(REAL / "evaluation.txt")
    assert len(train) == ho3d.EXPECTED_COUNTS["v2"]["train"] == 66034
    assert len(ev) == ho3d.EXPECTED_COUNTS["v2"]["eval"] == 11524
    tr_seq, ev_seq = ho3d.sequences(train), ho3d.sequences(ev)
    assert len(tr_seq) == 55 and len(ev_seq) == 13
    assert set(ev_seq) == {f"AP1{i}" for i in range(5)} | {f"MPM1{i}" for i in range(5)} \
        | {"SB11", "SB13", "SM1"}
    assert not set(tr_seq) & set(ev_seq)
    assert all(len(i.split("/")[1]) == 4 for i in train + ev)
    # the fixture uses real ids
    assert set(TRAIN_IDS) <= set(train) and set(EVAL_IDS) <= set(ev)
    assert train[0] == "SMu41/1583"  # shuffled order, as shipped


def test_split_list_reader_rejects_bad_lines(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("SM1/0000\r\n\r\nSM1/0001\r\n")
    assert ho3d.read_split_list(p) == ["SM1/0000", "SM1/0001"]
    p.write_text("SM1/0000\nSM1 0001\n")
    with pytest.raises(RawDataError, match=r"train.txt, line 2"):
        ho3d.read_split_list(p)
    p.write_text("SM1/0000\nSM1/0000\n")
    with pytest.raises(RawDataError, match="duplicate"):
        ho3d.read_split_list(p)
    p.write_text("\n")
    with pytest.raises(RawDataError, match="empty"):
        ho3d.read_split_list(p)


# ------------------------------------------------------------------------------- conversion

def test_counts_report_and_manifest(converted):
    out, report, truth, logs = converted
    assert report["train"] == {"candidates": 4, "written": 4, "rejected": {}}
    assert report["eval"] == {"candidates": 3, "written": 3, "rejected": {}}
    st = ho3d.LAST_STATS["train"]
    assert st["listed"] == 5 and st["unannotated"] == 1 and st["unannotated_ids"] == [UNANNOTATED]
    man = json.loads((out / "train" / "manifest.json").read_text())
    assert man["root"] == "wrist" and man["extra"]["protocol"] == ho3d.protocol({"version": "v2"})
    assert man["source"]["options"] == {"version": "v2"}
    assert man["label_counts"] == {"has_2d": 4, "has_3d": 4, "has_depth": 4, "left": 0, "right": 4}
    man_ev = json.loads((out / "eval" / "manifest.json").read_text())
    assert man_ev["extra"]["groups"] == ["AP10", "SM1"]


def test_train_labels_exact(converted):
    out, _, truth, _ = converted
    d = load_dataset(out / "train")
    annotated = [f for f in TRAIN_IDS if f != UNANNOTATED]
    raw_index = np.asarray(d.arrays["raw_index"])
    assert [TRAIN_IDS[i] for i in raw_index] == annotated  # list order, None frame dropped
    groups = json.loads((out / "train" / "manifest.json").read_text())["extra"]["groups"]
    assert groups == ["MC1", "SMu41"]
    assert [groups[g] for g in d.arrays["group"]] == [f.split("/")[0] for f in annotated]
    for row, fid in enumerate(annotated):
        t, s = truth[fid], d[row]
        # canonical order, mm, OpenCV frame
        np.testing.assert_allclose(s["kp3d"], t["kp3d"], atol=1e-3)
        # kp2d = camMat projection, mapped into the crop; K = crop of camMat
        A = camera.crop_transform(s["crop_box"].astype(np.float64), SIZE)
        np.testing.assert_allclose(s["kp2d"], camera.apply_homography(A, t["kp2d"]), atol=2e-2)
        np.testing.assert_allclose(s["K"], A @ K_HO3D, rtol=1e-5, atol=1e-3)
        assert s["vis"].all() and s["side"] == 1
        assert s["has_2d"] and s["has_3d"] and s["has_depth"]
        # depth decoded exactly (R low byte, G high byte, BGR file order)
        exp = cv2.warpAffine(t["depth"].astype(np.float32), A[:2], (SIZE, SIZE),
                             flags=cv2.INTER_NEAREST)
        np.testing.assert_allclose(d.depth_mm(row), exp, atol=0.06)
        # depth at visible joints: the skin, at most a finger radius in front of the joint
        # (the nearest depth in a 3x3 window: thin fingers cover few pixels at 128 px)
        assert _skin_fraction(s["kp2d"], s["kp3d"][:, 2], t["vis"], d.depth_mm(row)) >= 0.9
        # heuristic mask: mostly hand pixels
        m_true = cv2.warpAffine(t["mask"], A[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST)
        m = s["mask"].astype(bool)
        assert m.sum() > 100 and (m & (m_true > 0)).sum() / m.sum() > 0.6


def test_eval_root_only(converted):
    out, _, truth, _ = converted
    d = load_dataset(out / "eval")
    assert [EVAL_IDS[i] for i in d.arrays["raw_index"]] == EVAL_IDS
    for row, fid in enumerate(EVAL_IDS):
        t, s = truth[fid], d[row]
        fin3 = np.isfinite(s["kp3d"]).all(1)
        assert fin3.tolist() == [True] + [False] * 20 and s["has_3d"]
        np.testing.assert_allclose(s["kp3d"][0], t["kp3d"][0], atol=1e-3)
        assert s["vis"].tolist() == [True] + [False] * 20
        assert np.isfinite(s["kp2d"]).all(1).tolist() == [True] + [False] * 20 and s["has_2d"]
        # crop: square around handBoundingBox, side 1.3 x its larger side
        box = s["crop_box"].astype(np.float64)
        np.testing.assert_allclose(box, ho3d.eval_box(t["bbox"]), atol=1e-3)
        b = t["bbox"]
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, (b[:2] + b[2:]) / 2 + 0.5, atol=1e-3)
        np.testing.assert_allclose(box[2] - box[0], 1.3 * (b[2:] - b[:2]).max(), atol=1e-3)
        A = camera.crop_transform(box, SIZE)
        np.testing.assert_allclose(s["kp2d"][0], camera.apply_homography(A, t["kp2d"][:1])[0],
                                   atol=2e-2)
        # the whole hand silhouette lies inside the crop
        m_true = cv2.warpAffine(t["mask"], A[:2], (SIZE, SIZE), flags=cv2.INTER_NEAREST)
        assert m_true.sum() == pytest.approx(t["mask"].sum() * (SIZE / (box[2] - box[0])) ** 2,
                                             rel=0.1)
        assert s["has_depth"] and not s["mask"].any() and s["side"] == 1


def test_loads_in_hand_dataset(converted):
    torch = pytest.importorskip("torch")
    from weakhand.data import HandDataset
    for split in ("train", "eval"):
        ds = HandDataset(converted[0] / split)
        item = ds[0]
        assert item["image"].shape == (3, SIZE, SIZE) and item["kp3d"].shape == (21, 3)
        assert item["has_3d"].item() and torch.isfinite(item["kp3d"][0]).all()


def test_candidates_v3_use_jpg(raw, tmp_path):
    src = _copy(raw, tmp_path)
    for p in src.glob("*/*/rgb/*.png"):
        img = cv2.imread(str(p))
        cv2.imwrite(str(p.with_suffix(".jpg")), img)
        p.unlink()
    c = ho3d.candidates(src, "train", {"version": "v3"})
    assert len(c) == 4 and all(x.rgb.endswith(".jpg") for x in c)
    assert ho3d.LAST_STATS["train"]["expected"] == 78297
    # the v2 default then finds no .png and says so, with the hint
    with pytest.raises(RawLayoutError, match=r"version='v3'") as e:
        ho3d.candidates(src, "train", {"version": "v2"})
    assert "15 file(s)" not in str(e.value) and "5 file(s)" in str(e.value)


# ------------------------------------------------------------------------------- bad inputs

def test_unknown_version_option(raw, tmp_path):
    msg = _fails(raw[0], tmp_path, ValueError, options={"version": "v4"})
    assert "'v4'" in msg and "'v2'" in msg and "'v3'" in msg
    with pytest.raises(ValueError):
        ho3d.protocol({"version": "v1"})


def test_missing_sequence_folders_all_listed(raw, tmp_path):
    src = _copy(raw, tmp_path)
    shutil.rmtree(src / "train" / "MC1")
    shutil.rmtree(src / "evaluation" / "SM1")
    shutil.rmtree(src / "train" / "SMu41" / "depth")
    msg = _fails(src, tmp_path, RawLayoutError)
    for p in ("train/MC1", "evaluation/SM1", "train/SMu41/depth"):
        assert str(src / p) in msg
    assert "evaluation/AP10" not in msg


def test_missing_lists_and_many_sequences_capped(raw, tmp_path):
    src = _copy(raw, tmp_path)
    (src / "evaluation.txt").unlink()
    msg = _fails(src, tmp_path, RawLayoutError)
    assert str(src / "evaluation.txt") in msg
    (src / "evaluation.txt").write_text("".join(f"XX{i}/0000\n" for i in range(30)))
    msg = _fails(src, tmp_path, RawLayoutError)
    assert "30 sequence folder(s)" in msg and "... and 10 more" in msg
    assert msg.count("evaluation/XX") == ho3d.LIST_CAP


def test_missing_frame_files_listed(raw, tmp_path):
    src = _copy(raw, tmp_path)
    (src / "train" / "MC1" / "rgb" / "0611.png").unlink()
    (src / "train" / "SMu41" / "meta" / "0009.pkl").unlink()
    (src / "evaluation" / "AP10" / "depth" / "0000.png").unlink()
    logs = []
    with pytest.raises(RawLayoutError) as e:  # found by the layout check, before any work
        convert(ho3d, src, tmp_path / "out", workers=1, show_progress=False, log=logs.append)
    msg = str(e.value)
    assert not logs and not (tmp_path / "out").exists()
    assert "3 frame file(s)" in msg
    for p in ("train/MC1/rgb/0611.png", "train/SMu41/meta/0009.pkl", "evaluation/AP10/depth/0000.png"):
        assert str(src / p) in msg


def test_truncated_pickle(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "train" / "SMu41" / "meta" / "0009.pkl"
    p.write_bytes(p.read_bytes()[:200])
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "unpickle" in msg


def test_hand_joints_wrong_shape(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "train" / "MC1" / "meta" / "0611.pkl"
    meta = pickle.loads(p.read_bytes())
    meta["handJoints3D"] = meta["handJoints3D"][:20]
    write_meta(p, meta)
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "handJoints3D" in msg and "(20, 3)" in msg
    # eval must hold the root only
    src2 = tmp_path / "raw2"
    shutil.copytree(raw[0], src2)
    p = src2 / "evaluation" / "AP10" / "meta" / "0000.pkl"
    meta = pickle.loads(p.read_bytes())
    meta["handJoints3D"] = np.zeros((21, 3))
    write_meta(p, meta)
    msg = _fails(src2, tmp_path)
    assert str(p) in msg and "root" in msg


def test_opengl_sign_guard(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "train" / "MC1" / "meta" / "0517.pkl"
    meta = pickle.loads(p.read_bytes())
    meta["handJoints3D"] = meta["handJoints3D"] * np.array([1.0, -1.0, -1.0])  # OpenCV already
    write_meta(p, meta)
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "OpenGL" in msg


def test_corrupt_depth_png(raw, tmp_path):
    src = _copy(raw, tmp_path)
    p = src / "evaluation" / "SM1" / "depth" / "0001.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "decode" in msg


def test_bounding_box_order_guard(raw, tmp_path):
    """handBoundingBox order is [U]: boxes far from the root in most eval frames stop the run."""
    src = _copy(raw, tmp_path)
    for p in (src / "evaluation").glob("*/meta/*.pkl"):
        meta = pickle.loads(p.read_bytes(), encoding="latin1")
        meta["handBoundingBox"] = np.asarray(meta["handBoundingBox"]) + [400.0, 0.0, 400.0, 0.0]
        write_meta(p, meta)
    msg = _fails(src, tmp_path, match="handBoundingBox")
    assert "3 of 3" in msg
    # and a box that is not [x1, y1, x2, y2] at all
    p = src / "evaluation" / "SM1" / "meta" / "0000.pkl"
    meta = pickle.loads(p.read_bytes())
    meta["handBoundingBox"] = np.array([300.0, 200.0, 120.0, 140.0])  # x, y, w, h
    write_meta(p, meta)
    msg = _fails(src, tmp_path)
    assert str(p) in msg and "x2 > x1" in msg
