"""`weakhand lift` and :mod:`weakhand.lift_cli`: hands with known 3D projected through K, a tiny
untrained lifter checkpoint; the output reprojects exactly onto the input 2D (right and left
hands), depth = root + zn·s, the assumptions recorded; every malformed keypoints file, a
non-lifter checkpoint and bad options give exit status 2 with one line naming the file, and
nothing written. Units: mm, px."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from weakhand import camera
from weakhand import lift_cli as L
from weakhand.methods.lift import save_lifter
from weakhand.models import CaiPoseNet, DepthRegularizer, PoseNetConfig
from weakhand.models.lifter import Lifter, LifterConfig, mirror_left
from weakhand.predict import DEFAULT_ROOT_DEPTH_MM, DEFAULT_SCALE_MM
from weakhand.workbook.cli import main as cli_main

WEAKHAND = Path(sys.executable).parent / "weakhand"
K1 = [[600.0, 0.0, 320.0], [0.0, 590.0, 240.0], [0.0, 0.0, 1.0]]
K2 = [[350.0, 0.0, 31.5], [0.0, 350.0, 31.5], [0.0, 0.0, 1.0]]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict:
    """A lifter trained for nothing (as a file and as a run folder) and two non-lifters."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ckpt")
    lifter = save_lifter(Lifter(LifterConfig(width=16, layers=2)), root / "lift" / "last.pt",
                         {"note": "test"})
    cai = save_lifter(CaiPoseNet(PoseNetConfig(width=8, n_stages=1, reg_width=8, reg_hidden=16)),
                      root / "stage1_pose" / "best.pt")
    reg = save_lifter(DepthRegularizer(out_size=16), root / "stage2_regularizer" / "best.pt")
    return {"lifter": lifter, "folder": lifter.parent, "cai": cai, "reg": reg}


def _hand3d(rng, z: float) -> np.ndarray:
    """A random 3D 'hand' (21, 3) mm in front of the camera, wrist at depth z."""
    root = np.array([rng.uniform(-60, 60), rng.uniform(-60, 60), z])
    return root + np.concatenate([np.zeros((1, 3)), rng.uniform(-90, 90, (20, 3))])


def _write(path: Path, doc) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _good_hands(rng) -> tuple[list, list]:
    """Four hands (3D truth, entries): own K, default K, left, int id without root depth."""
    X = [_hand3d(rng, z) for z in (520.0, 610.0, 450.0, 700.0)]
    Ks = [K1, K2, K1, K2]
    uv = [camera.project(np.array(K), x) for K, x in zip(Ks, X)]
    hands = [
        {"id": "a", "kp2d": uv[0].tolist(), "K": K1, "root_depth_mm": 520.0, "score": 0.9},
        {"id": "b", "kp2d": uv[1].tolist(), "side": "right", "root_depth_mm": 610.0},  # top K
        {"id": "c", "kp2d": uv[2].tolist(), "K": K1, "side": 0, "root_depth_mm": 450.0},
        {"id": 7, "kp2d": uv[3].tolist(), "side": "Right", "root_depth_mm": None},
    ]
    return X, hands


def test_round_trip_reprojects_exactly_and_records_assumptions(ckpts, tmp_path, capsys):
    X, hands = _good_hands(np.random.default_rng(0))
    src = _write(tmp_path / "hands.json", {"K": K2, "hands": hands})
    kp = L.read_keypoints(src)
    assert kp.kp2d.shape == (4, 21, 2) and kp.K.shape == (4, 3, 3)
    assert kp.side.tolist() == [1, 1, 0, 1] and kp.ids == ["a", "b", "c", 7]
    assert kp.root_depth_mm[:3].tolist() == [520.0, 610.0, 450.0] and np.isnan(kp.root_depth_mm[3])
    np.testing.assert_array_equal(kp.K[1], K2)

    out = tmp_path / "res" / "hands3d.json"
    assert cli_main(["lift", str(ckpts["folder"]), str(src), "--out", str(out),
                     "--scale-mm", "48"]) == 0
    cap = capsys.readouterr()
    assert "lifted 4 hand(s) (1 left)" in cap.out and str(out) in cap.out
    assert "3 from the file" in cap.out and "nominal 624 mm" in cap.out
    doc = json.loads(out.read_text())
    assert doc["format"] == "weakhand.lift" and doc["n_hands"] == 4
    assert doc["checkpoint"]["kind"] == "Lifter" and doc["checkpoint"]["path"] == str(ckpts["lifter"])
    assert not list(out.parent.glob("*.tmp-*"))
    for h, x3, given_root in zip(doc["hands"], X, (520.0, 610.0, 450.0, DEFAULT_ROOT_DEPTH_MM)):
        K = np.array(h["K"])
        P, rel, zn = (np.array(h[k]) for k in ("kp3d_mm", "kp3d_root_rel_mm", "zn"))
        assert P.shape == (21, 3) and zn.shape == (21,) and zn[0] == 0
        np.testing.assert_allclose(camera.project(K, P), camera.project(K, x3), atol=1e-6)
        np.testing.assert_allclose(camera.project(K, P), np.array(h["kp2d"]), atol=1e-6)
        assert P[0, 2] == pytest.approx(given_root, abs=1e-9) == h["root_depth_mm"]
        np.testing.assert_allclose(P[:, 2], given_root + zn * 48.0, atol=1e-9)
        np.testing.assert_allclose(rel, P - P[0], atol=1e-9)
        a = h["assumptions"]
        assert a["scale_mm"] == 48.0 and "given" in a["scale_source"]
        assert a["root_depth_mm"] == pytest.approx(given_root)
    a = [h["assumptions"] for h in doc["hands"]]
    assert "keypoints file" in a[0]["root_depth_source"] and "nominal" in a[3]["root_depth_source"]
    assert a[0]["K_source"] == "the hand's own K" and "default K" in a[1]["K_source"]
    assert doc["hands"][2]["side"] == "left" and "mirrored" in a[2]["hand"]
    assert [h["id"] for h in doc["hands"]] == ["a", "b", "c", 7]

    # --root-depth-mm fills in for hands without their own; rerunning replaces the earlier output
    assert cli_main(["lift", str(ckpts["lifter"]), str(src), "--out", str(out),
                     "--root-depth-mm", "400"]) == 0
    doc = json.loads(out.read_text())
    h = doc["hands"][3]
    assert h["root_depth_mm"] == pytest.approx(400.0) and "--root-depth-mm" in h["assumptions"][
        "root_depth_source"]
    assert h["assumptions"]["scale_mm"] == DEFAULT_SCALE_MM
    assert doc["hands"][0]["root_depth_mm"] == pytest.approx(520.0)


def test_left_hand_is_the_mirrored_right_hand(ckpts, tmp_path):
    """A left hand whose 2D is mirror_left of a right hand's: same zn, 3D mirrored x → −x, and
    each reprojects onto its own input."""
    model = Lifter(LifterConfig(width=16, layers=2))
    torch.manual_seed(1)
    rng = np.random.default_rng(3)
    X = _hand3d(rng, 500.0)
    K = np.array(K1)
    uv = camera.project(K, X)
    uv_left = mirror_left(torch.tensor(uv[None]), torch.tensor(K[None]), torch.tensor([0]))[0].numpy()
    np.testing.assert_allclose(L._mirror_px(uv[None], K[None])[0], uv_left, atol=1e-9)
    hands = [{"kp2d": uv.tolist(), "K": K1}, {"kp2d": uv_left.tolist(), "K": K1, "side": "left"}]
    doc = L.lift_keypoints_file(model, _write(tmp_path / "h.json", hands), tmp_path / "o.json",
                                root_depth_mm=500.0)
    r, l_ = doc["hands"]
    np.testing.assert_allclose(l_["zn"], r["zn"], atol=1e-6)
    np.testing.assert_allclose(np.array(l_["kp3d_mm"]), np.array(r["kp3d_mm"]) * [-1, 1, 1],
                               atol=1e-3)
    for h in (r, l_):
        np.testing.assert_allclose(camera.project(K, np.array(h["kp3d_mm"])), h["kp2d"], atol=1e-6)
    # with skew, the mirror is still the projection of the 3D hand mirrored x -> -x
    Ks = K.copy()
    Ks[0, 1] = 7.0
    mirrored = L._mirror_px(camera.project(Ks, X)[None], Ks[None])[0]
    np.testing.assert_allclose(mirrored, camera.project(Ks, X * [-1, 1, 1]), atol=1e-9)


def _bad_cases(tmp_path: Path) -> list[tuple[str, object, list[str]]]:
    rng = np.random.default_rng(5)
    uv = camera.project(np.array(K1), _hand3d(rng, 500.0)).tolist()

    def hand(**kw):
        return {"kp2d": uv, "K": K1, **kw}

    def with_joint(j, val):
        kp = [list(p) for p in uv]
        kp[j] = val
        return kp

    return [
        ("not_json", '{"hands": [\n  {"kp2d": [1, 2]\n', ["not valid JSON", "line 3 column 1"]),
        ("empty_file", "", ["empty file"]),
        ("scalar", "42", ["expected a list of hands"]),
        ("no_hands_key", {"keypoints": []}, ['without "hands"', "'keypoints'"]),
        ("hands_not_list", {"hands": {"a": 1}}, ['"hands" is object']),
        ("empty_list", [], ["no hands"]),
        ("empty_hands", {"hands": [], "K": K1}, ["no hands"]),
        ("hand_not_object", [hand(), [1, 2]], ["hand 1 is list"]),
        ("no_kp2d", [{"K": K1}], ["hand 0", 'no "kp2d"']),
        ("joints_20", [hand(), hand(id="b", kp2d=uv[:20])],
         ['hand 1 (id "b")', "20 joints", "expected 21"]),
        ("joints_22", [hand(id=3, kp2d=uv + [[1, 2]])], ["hand 0 (id 3)", "22 joints"]),
        ("null_joint", [hand(kp2d=with_joint(4, [None, 3.0]))], ["joint 4 (thumb_tip)", "u is null"]),
        ("string_coord", [hand(kp2d=with_joint(2, [1.0, "7"]))], ["joint 2", 'v is "7"', "not a number"]),
        ("nan_coord", '[{"K": %s, "kp2d": %s}]' % (json.dumps(K1), json.dumps(with_joint(9, [1.0, 2.0]))
                                                    .replace("[1.0, 2.0]", "[NaN, 2.0]")),
         ["joint 9 (middle_mcp)", "NaN", "not a finite"]),
        ("inf_coord", '[{"K": %s, "kp2d": %s}]' % (json.dumps(K1), json.dumps(with_joint(0, [1.0, 2.0]))
                                                    .replace("[1.0, 2.0]", "[1.0, 1e999]")),
         ["joint 0 (wrist)", "Infinity"]),
        ("three_coords", [hand(kp2d=with_joint(1, [1.0, 2.0, 0.9]))], ["joint 1", "expected [u, v]"]),
        ("kp2d_flat", [hand(kp2d=[1.0] * 42)], ["42 joints"]),
        ("no_K", [hand(), {"id": "x", "kp2d": uv}], ['hand 1 (id "x")', 'no "K"', "top-level"]),
        ("K_2x2", [hand(K=[[1, 0], [0, 1]])], ["hand 0: K", "not a 3×3"]),
        ("K_rows", [hand(K=[[600, 0, 320], [0, 590], [0, 0, 1]])], ["row 1 has 2 entries"]),
        ("K_singular", [hand(K=[[0, 0, 320], [0, 590, 240], [0, 0, 1]])], ["singular", "fx = 0"]),
        ("K_nonfinite", '[{"kp2d": %s, "K": [[600, 0, 320], [0, NaN, 240], [0, 0, 1]]}]'
         % json.dumps(uv), ["K[1][1]", "NaN"]),
        ("K_not_pinhole", [hand(K=[[600, 0, 320], [0, 590, 240], [0, 1, 1]])], ["pinhole"]),
        ("top_K_bad", {"K": [1, 2, 3], "hands": [{"kp2d": uv}]}, ["top-level", "not a 3×3"]),
        ("side_word", [hand(side="up")], ["hand 0", 'side is "up"', '"left"']),
        ("side_int", [hand(), hand(side=2)], ["hand 1", "side is 2"]),
        ("side_bool", [hand(side=True)], ["side is true"]),
        ("id_list", [hand(id=[1])], ["id is [1]", "string or an integer"]),
        ("root_negative", [hand(root_depth_mm=-5)], ["root_depth_mm is -5", "positive"]),
        ("root_string", [hand(root_depth_mm="far")], ["root_depth_mm is \"far\""]),
    ]


def test_malformed_files_exit_2_with_one_line_naming_file_and_problem(ckpts, tmp_path, capsys):
    out = tmp_path / "out.json"
    cases = _bad_cases(tmp_path)
    for name, doc, needles in cases:
        src = _write(tmp_path / f"{name}.json", doc)
        rc = cli_main(["lift", str(ckpts["lifter"]), str(src), "--out", str(out)])
        cap = capsys.readouterr()
        err = cap.err.strip()
        assert rc == 2, (name, cap)
        assert "\n" not in err and "Traceback" not in err, (name, err)
        assert err.startswith(f"weakhand lift: {src}"), (name, err)
        for n in needles:
            assert n in err, (name, n, err)
        assert not out.exists() and not list(tmp_path.glob("out.json*")), name
        with pytest.raises(L.KeypointFileError):
            L.read_keypoints(src)
    # missing file, a folder, and not UTF-8
    for path, needle in ((tmp_path / "nope.json", "no such keypoints file"),
                         (tmp_path, "is a folder"),
                         (_write(tmp_path / "bin.json", "x") , None)):
        if needle is None:
            path.write_bytes(b"\xff\xfe\x00garbage")
            needle = "not UTF-8"
        assert cli_main(["lift", str(ckpts["lifter"]), str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"weakhand lift: {path}") and needle in err and "\n" not in err
    assert not out.exists()


def test_checkpoints_options_and_out_refused(ckpts, tmp_path, capsys):
    _, hands = _good_hands(np.random.default_rng(1))
    src = _write(tmp_path / "h.json", {"K": K2, "hands": hands})
    out = tmp_path / "o.json"

    def fails(*args, needles=()):
        assert cli_main(["lift", *map(str, args)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err, err
        for n in needles:
            assert n in err, (n, err)
        return err

    fails(ckpts["cai"], src, "--out", out,
          needles=[str(ckpts["cai"]), "CaiPoseNet", "not a 2D→3D lifter", "weakhand predict"])
    fails(ckpts["reg"], src, "--out", out, needles=[str(ckpts["reg"]), "DepthRegularizer",
                                                    "not a 2D→3D lifter"])
    fails(tmp_path / "missing.pt", src, "--out", out, needles=["missing.pt", "not found"])
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    fails(junk, src, "--out", out, needles=["junk.pt", "not a PyTorch checkpoint"])
    fails(ckpts["lifter"], src, "--out", out, "--root-depth-mm", "-3", needles=["root depth"])
    fails(ckpts["lifter"], src, "--out", out, "--scale-mm", "nan", needles=["scale"])
    assert not out.exists()
    with pytest.raises(L.LiftError, match="not a 2D→3D lifter"):
        L.load_lifter(ckpts["cai"])
    # --out: a folder, the input itself, a file that is not a lift output (kept unless --overwrite)
    fails(ckpts["lifter"], src, "--out", tmp_path, needles=["is a folder"])
    fails(ckpts["lifter"], src, "--out", src, needles=["keypoints file itself"])
    mine = _write(tmp_path / "mine.json", {"notes": 1})
    fails(ckpts["lifter"], src, "--out", mine, needles=["--overwrite"])
    assert json.loads(mine.read_text()) == {"notes": 1}
    assert cli_main(["lift", str(ckpts["lifter"]), str(src), "--out", str(mine),
                     "--overwrite"]) == 0
    assert json.loads(mine.read_text())["format"] == "weakhand.lift"


def test_entry_point_refuses_bad_file(ckpts, tmp_path):
    """The installed `weakhand lift` (one subprocess): a wrong joint count, exit 2, one line."""
    rng = np.random.default_rng(2)
    uv = camera.project(np.array(K1), _hand3d(rng, 500.0)).tolist()
    src = _write(tmp_path / "h.json", {"K": K1, "hands": [{"kp2d": uv}, {"id": "z", "kp2d": uv[:5]}]})
    out = tmp_path / "o.json"
    r = subprocess.run([str(WEAKHAND), "lift", str(ckpts["lifter"]), str(src), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r
    assert r.stderr.strip() == (f'weakhand lift: {src}: hand 1 (id "z"): kp2d has 5 joints, '
                                "expected 21 (wrist 0, thumb 1-4, index 5-8, middle 9-12, ring "
                                "13-16, little 17-20)")
    assert r.stdout == "" and not out.exists()
