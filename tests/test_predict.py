"""`weakhand.predict` and `weakhand predict`: tiny checkpoints written the way the Trainer writes
them, a folder of crops (good, grey, RGBA, non-square, corrupt, not an image), the JSON contents,
the geometry (K adjusted for the resize and the mirror), checkpoint kinds, exit codes, atomicity."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from weakhand import camera
from weakhand import predict as P
from weakhand.workbook.cli import main as cli_main
from weakhand.models import CaiPoseNet, DepthRegularizer, PoseNetConfig
from weakhand.models.pose25d_net import Pose25DConfig, Pose25DNet
from weakhand.train import Trainer
from weakhand.train.checkpoint import write_checkpoint

SIZE = 32  # network input of the tiny models
CAI_CFG = PoseNetConfig(width=8, n_stages=1, reg_width=8, reg_hidden=16)
P25_CFG = Pose25DConfig(width=8, blocks=(1, 1, 1), refiner_hidden=16)


def _save(model, path: Path, name: str, config: dict, legacy: bool = False) -> Path:
    """A checkpoint exactly as Trainer writes it (Trainer.state_dict + write_checkpoint); with
    `legacy`, as older Trainers wrote it (no ``model_specs``: the models do not describe
    themselves)."""
    models = model if isinstance(model, dict) else {"model": model}
    params = [p for m in models.values() for p in m.parameters()]
    kw = ({"loss_fn": lambda b, o: o} if not isinstance(model, dict)
          else {"step_fn": lambda m, b: {"loss": torch.zeros(())}})
    tr = Trainer(model, torch.optim.Adam(params), run_dir=path.parent.parent, name=name,
                 max_steps=0, config=config, show_progress=False, device="cpu", **kw)
    ckpt = tr.state_dict()
    if legacy:
        del ckpt["model_specs"]
    write_checkpoint(ckpt, path)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A fake run folder with a Cai stage-1 (with "net"), an older Cai stage-3 (without "net" nor
    model_specs), a 2.5D
    checkpoint, a stage-2 regulariser and a low-lr stage-3 holding {"pose", "reg"}."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("run")
    base = {"train_size": SIZE, "run_dir": str(root), "seed": 0}
    cai = CaiPoseNet(CAI_CFG)
    s1 = _save(cai, root / "stage1_pose" / "best.pt", "stage1_pose", {**base, "net": CAI_CFG.to_dict()})
    cai3 = CaiPoseNet(CAI_CFG)
    s3 = _save(cai3, root / "stage3_2d" / "last.pt", "stage3_2d", {**base, "variant": "2d"}, legacy=True)
    p25 = Pose25DNet(P25_CFG)
    with torch.no_grad():  # a refiner that moves the root away from the closed form
        p25.refiner.mlp[-1].bias.fill_(0.5)
    p = _save(p25, root / "pose25d_2d" / "last.pt", "pose25d_2d", {**base, "net": P25_CFG.to_dict()})
    reg = _save(DepthRegularizer(out_size=16), root / "stage2_regularizer" / "best.pt",
                "stage2_regularizer", {**base, "reg_size": 16})
    low = _save({"pose": CaiPoseNet(CAI_CFG), "reg": DepthRegularizer(out_size=16)},
                root / "stage3_2d_depth" / "last.pt", "stage3_2d_depth",
                {**base, "variant": "2d_depth", "net": CAI_CFG.to_dict()})
    return {"root": root, "stage1": s1, "stage3": s3, "pose25d": p, "reg": reg, "lowlr": low,
            "cai3_state": cai3.state_dict()}


def _img(rng, h, w, c=3) -> np.ndarray:
    img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 0)  # some structure for the heatmaps


@pytest.fixture()
def images(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    d = tmp_path / "crops"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), _img(rng, 48, 48))
    cv2.imwrite(str(d / "b_wide.png"), _img(rng, 40, 50))           # non-square
    cv2.imwrite(str(d / "c_grey.png"), _img(rng, 40, 40, 1).reshape(40, 40))  # greyscale
    cv2.imwrite(str(d / "d_rgba.png"), _img(rng, 64, 64, 4))          # alpha channel
    good = (d / "a.png").read_bytes()
    (d / "bad.png").write_bytes(good[: len(good) // 3])               # truncated PNG
    (d / "notes.txt").write_text("not an image")
    return d


def _K(w: int, h: int, f: float) -> list:
    return [[f, 0.0, (w - 1) / 2 + 1.5], [0.0, f * 1.02, (h - 1) / 2 - 2.0], [0.0, 0.0, 1.0]]


def _kfile(tmp_path: Path, entries: dict) -> Path:
    p = tmp_path / "K.json"
    p.write_text(json.dumps(entries))
    return p


def _check_record(r: dict, K_expected=None) -> None:
    uv, X, rel = (np.asarray(r[k], float) for k in ("uv", "kp3d_mm", "kp3d_root_rel_mm"))
    assert uv.shape == (21, 2) and X.shape == (21, 3) and rel.shape == (21, 3)
    assert np.isfinite(uv).all() and np.isfinite(X).all()
    np.testing.assert_allclose(rel, X - X[0], atol=1e-5)
    assert r["root_depth_mm"] == pytest.approx(X[0, 2], abs=1e-5)
    w, h = r["image_size"]
    side = max(w, h)  # non-square images are padded to a centred square
    lo = np.array([(w - side) / 2, (h - side) / 2]) - 0.5
    assert (uv >= lo - 1e-6).all() and (uv <= lo + side + 1e-6).all()
    K = np.asarray(r["K"], float)
    if K_expected is not None:
        np.testing.assert_allclose(K, K_expected)
    # the reported 3D projects onto the reported 2D with the K of the image as given
    np.testing.assert_allclose(camera.project(K, X), uv, atol=1e-3)


def test_folder_cai_outputs_and_bad_inputs(run, images, tmp_path):
    Ks = {"a.png": _K(48, 48, 170.0), "default": _K(64, 64, 200.0)}
    out = tmp_path / "out"
    s = P.predict_folder(run["stage1"], images, out, K=_kfile(tmp_path, Ks), device="cpu",
                         show_progress=False)
    assert (s["n_images"], s["n_ok"], s["n_failed"], s["n_skipped"]) == (5, 4, 1, 1), s["failed"]
    assert s["failed"][0]["image"] == "bad.png" and "not a readable image" in s["failed"][0]["error"]
    assert s["skipped"][0]["file"].endswith("notes.txt") and "not an image" in s["skipped"][0]["reason"]

    doc = json.loads((out / "predictions.json").read_text())
    assert doc["format"] == P.FORMAT and doc["checkpoint"]["kind"] == "cai"
    assert doc["checkpoint"]["net_config_source"] == "checkpoint"  # its own model_specs
    recs = {r["image"]: r for r in doc["images"]}
    assert list(recs) == ["a.png", "b_wide.png", "bad.png", "c_grey.png", "d_rgba.png"]
    assert recs["bad.png"]["ok"] is False and "error" in recs["bad.png"]
    for name, r in recs.items():
        if name == "bad.png":
            continue
        assert r["ok"] and r["kind"] == "cai" and r["hand"] == "right"
        _check_record(r, Ks.get(name, Ks["default"]))
        a = r["assumptions"]
        assert a["root_depth_mm"] == P.DEFAULT_ROOT_DEPTH_MM and "nominal" in a["root_depth_source"]
        assert a["scale_mm"] == P.DEFAULT_SCALE_MM
        assert r["kp3d_mm"][0][2] == pytest.approx(P.DEFAULT_ROOT_DEPTH_MM)
        # zn is in scale-bone units: Z_k = Z_root + zn_k * s
        np.testing.assert_allclose(np.asarray(r["kp3d_mm"])[:, 2],
                                   P.DEFAULT_ROOT_DEPTH_MM + np.asarray(r["zn"]) * P.DEFAULT_SCALE_MM,
                                   atol=1e-4)
        assert (out / r["overlay"]).is_file()
    assert "entry 'default'" in recs["c_grey.png"]["assumptions"]["K_source"]
    assert any("greyscale" in w for w in recs["c_grey.png"]["warnings"])
    assert any("alpha" in w for w in recs["d_rgba.png"]["warnings"])
    assert any("not square" in w for w in recs["b_wide.png"]["warnings"])
    ov = cv2.imread(str(out / recs["a.png"]["overlay"]))
    assert ov.shape[:2] == (288, 288)  # 48 px upscaled ×6 to >= 256
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [
        "a.png", "b_wide.png", "c_grey.png", "d_rgba.png"]
    html = (out / "view3d.html").read_text()
    assert "Plotly.newPlot" in html and not re.search(r"<script[^>]*\bsrc=", html)  # self-contained
    assert not list(tmp_path.glob("out.tmp-*"))


def test_default_K_root_and_scale_options(run, images, tmp_path):
    pred = P.load_predictor(run["stage1"], device="cpu")
    s = P.predict_folder(pred, [images / "a.png", images / "b_wide.png"], tmp_path / "o",
                         root_depth_mm=400, scale_mm=45.0, show_progress=False)
    assert s["n_ok"] == 2 and s["n_skipped"] == 0
    doc = json.loads((tmp_path / "o" / "predictions.json").read_text())
    for r in doc["images"]:
        w, h = r["image_size"]
        _check_record(r, P.default_K(w, h))
        assert r["kp3d_mm"][0][2] == pytest.approx(400.0)
        assert r["assumptions"]["root_depth_source"] == "given"
        assert r["assumptions"]["scale_mm"] == 45.0
    assert doc["images"][1]["K"][0][0] == pytest.approx(P.DEFAULT_FOCAL_PER_SIDE * 50)
    s = P.predict_folder(pred, images / "a.png", tmp_path / "o", root_depth_mm="closed-form",
                         show_progress=False)
    r = json.loads((tmp_path / "o" / "predictions.json").read_text())["images"][0]
    assert "closed form" in r["assumptions"]["root_depth_source"]
    for bad in (dict(root_depth_mm=-5), dict(root_depth_mm="far"), dict(scale_mm=0)):
        with pytest.raises(P.PredictError):
            P.predict_folder(pred, images, tmp_path / "o2", show_progress=False, **bad)
    assert not (tmp_path / "o2").exists()


def test_K_follows_resize_and_mirror_pose25d(run, tmp_path):
    """The same crop at 32 px, ×2 and ×3 (nearest: the network input is identical after the
    area resize) with correspondingly scaled K gives the same 3D; the mirrored image with
    --left gives the mirrored 3D. A K not adjusted for the resize or the flip breaks both."""
    rng = np.random.default_rng(3)
    small = _img(rng, SIZE, SIZE)
    d = tmp_path / "imgs"
    d.mkdir()
    K0 = np.array(_K(SIZE, SIZE, 110.0))
    Ks = {}
    for k in (1, 2, 3):
        big = cv2.resize(small, (SIZE * k, SIZE * k), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(d / f"x{k}.png"), big[..., ::-1])
        Ks[f"x{k}.png"] = (np.asarray(camera.crop_transform([0, 0, SIZE, SIZE], SIZE * k)) @ K0).tolist()
    s = P.predict_folder(run["pose25d"], d, tmp_path / "o", K=Ks, device="cpu", show_progress=False)
    assert s["n_ok"] == 3 and s["kind"] == "pose25d"
    recs = json.loads((tmp_path / "o" / "predictions.json").read_text())["images"]
    for r in recs:
        _check_record(r, Ks[r["image"]])
        assert "recovered by the 2.5D network" in r["assumptions"]["root_depth_source"]
    X = [np.asarray(r["kp3d_mm"]) for r in recs]
    assert X[0][0, 2] > 0
    np.testing.assert_allclose(X[1], X[0], atol=1e-3)
    np.testing.assert_allclose(X[2], X[0], atol=1e-3)
    np.testing.assert_allclose(np.asarray(recs[1]["uv"]), 2 * np.asarray(recs[0]["uv"]) + 0.5, atol=1e-4)

    # mirrored image, declared left: the network sees the original again
    dl = tmp_path / "left"
    dl.mkdir()
    cv2.imwrite(str(dl / "x1.png"), small[:, ::-1, ::-1])
    Kl = np.asarray(camera.mirror_K(K0, SIZE))
    P.predict_folder(run["pose25d"], dl, tmp_path / "ol", K=Kl.tolist(), left=True, device="cpu",
                     show_progress=False)
    rl = json.loads((tmp_path / "ol" / "predictions.json").read_text())["images"][0]
    _check_record(rl, Kl)
    assert rl["hand"] == "left"
    np.testing.assert_allclose(np.asarray(rl["kp3d_mm"]), X[0] * [-1, 1, 1], atol=1e-3)
    uv0 = np.asarray(recs[0]["uv"])
    np.testing.assert_allclose(np.asarray(rl["uv"]), np.c_[SIZE - 1 - uv0[:, 0], uv0[:, 1]], atol=1e-4)


def test_batched_network_calls(run, images, tmp_path):
    pred = P.load_predictor(run["pose25d"], device="cpu")
    calls = []
    pred.model.register_forward_hook(lambda m, i, o: calls.append(o["uv"].shape[0]))
    P.predict_folder(pred, images, tmp_path / "o", show_progress=False)
    assert calls == [4]  # one call for the four readable images
    calls.clear()
    P.predict_folder(pred, images, tmp_path / "o", batch_size=2, show_progress=False)
    assert sum(calls) == 4 and max(calls) <= 2


def test_checkpoint_kinds(run, tmp_path):
    with pytest.raises(P.PredictError, match="DepthRegularizer.*CaiPoseNet.*Pose25DNet"):
        P.load_predictor(run["reg"], device="cpu")
    pred = P.load_predictor(run["lowlr"], device="cpu")   # {"pose", "reg"}: the pose network
    assert pred.kind == "cai" and pred.name == "stage3_2d_depth"
    # an older stage 3 without config["net"]: from the run's stage-1 checkpoint, with its own weights
    pred = P.load_predictor(run["stage3"].parent, device="cpu")  # folder -> last.pt
    assert str(run["stage1"]) in pred.net_config_source and pred.train_size == SIZE
    for k, v in pred.model.state_dict().items():
        torch.testing.assert_close(v, run["cai3_state"][k])
    lone = tmp_path / "elsewhere" / "stage3_2d" / "last.pt"
    lone.parent.mkdir(parents=True)
    ck = torch.load(run["stage3"], weights_only=True)
    ck["config"]["run_dir"] = str(tmp_path / "gone")
    write_checkpoint(ck, lone)
    with pytest.raises(P.PredictError, match=r"config\['net'\].*stage1_pose"):
        P.load_predictor(lone, device="cpu")
    # a checkpoint that describes itself needs neither config["net"] nor its run folder
    alone = tmp_path / "alone" / "stage3_2d" / "last.pt"
    _save(CaiPoseNet(CAI_CFG), alone, "stage3_2d", {"train_size": SIZE})
    assert P.load_predictor(alone, device="cpu").net_config_source == "checkpoint"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(P.PredictError, match="corrupt"):
        P.load_predictor(junk, device="cpu")


def test_cli_exit_codes(run, images, tmp_path, capsys):
    kf = _kfile(tmp_path, {"K": _K(48, 48, 170.0)})
    out = tmp_path / "out"
    args = ["predict", str(run["pose25d"]), str(images), "--out", str(out), "--K", str(kf),
            "--device", "cpu", "--quiet"]
    assert cli_main(args) == 1                      # bad.png failed, the others written
    cap = capsys.readouterr()
    assert "4/5 image(s)" in cap.out and "FAILED bad.png" in cap.err and "notes.txt" in cap.err
    assert len(list((out / "overlays").iterdir())) == 4
    (images / "bad.png").unlink()
    assert cli_main(args + ["--left", "--root-depth-mm", "500"]) == 0  # replaces the earlier output
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["n_failed"] == 0 and all(r["hand"] == "left" for r in doc["images"])
    assert all(r["kp3d_mm"][0][2] == pytest.approx(500.0) for r in doc["images"])
    capsys.readouterr()

    assert cli_main(["predict", str(run["reg"]), str(images), "--out", str(tmp_path / "x")]) == 2
    assert "DepthRegularizer" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    assert cli_main(["predict", str(run["stage1"]), str(empty), "--out", str(tmp_path / "x")]) == 2
    assert "no image files" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert cli_main(["predict", str(run["stage1"]), str(images), "--out", str(other)]) == 2
    assert "not empty" in capsys.readouterr().err and (other / "keep.txt").exists()
    bad_k = tmp_path / "badK.json"
    bad_k.write_text("[[1, 2], [3, 4]]")
    assert cli_main(["predict", str(run["stage1"]), str(images), "--out", str(tmp_path / "x"),
                     "--K", str(bad_k)]) == 2
    assert "3×3" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_failure_leaves_previous_output(run, images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    P.predict_folder(run["stage1"], images, out, device="cpu", show_progress=False)
    before = (out / "predictions.json").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(P, "figure_3d", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        P.predict_folder(run["stage1"], images, out, root_depth_mm=300, device="cpu",
                         show_progress=False)
    assert (out / "predictions.json").read_bytes() == before
    assert not list(tmp_path.glob("out.tmp-*"))


# -------------------------------------------------------------------------------------------
# issue 16: the output folder keeps what predict did not write; huge inputs

def test_rerun_replaces_only_its_own_files(run, images, tmp_path, capsys):
    out = tmp_path / "out"
    P.predict_folder(run["stage1"], images, out, device="cpu", show_progress=False)
    assert len(list((out / "overlays").iterdir())) == 4
    (out / "notes.txt").write_text("my notes")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.csv").write_text("1,2")
    (out / "overlays" / "mine.txt").write_text("keep")
    P.predict_folder(run["stage1"], [images / "a.png"], out, device="cpu", show_progress=False)
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "analysis" / "plot.csv").read_text() == "1,2"
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "mine.txt"]
    assert json.loads((out / "predictions.json").read_text())["n_images"] == 1
    man = json.loads((out / P.OUTPUT_MANIFEST).read_text())
    assert man["files"] == sorted([P.OUTPUT_MANIFEST, "overlays/a.png", "predictions.json",
                                   "view3d.html"])
    # an output of an earlier version (no manifest) is recognised by its predictions.json
    (out / P.OUTPUT_MANIFEST).unlink()
    assert cli_main(["predict", str(run["stage1"]), str(images / "a.png"), "--out", str(out),
                     "--device", "cpu", "--quiet"]) == 0
    assert (out / "notes.txt").exists() and (out / "analysis" / "plot.csv").exists()
    # a file of the user's where an output goes is not replaced silently
    (out / "overlays" / "a.png").unlink()
    (out / "overlays" / "a.png").write_text("my own a.png")
    man = json.loads((out / P.OUTPUT_MANIFEST).read_text())
    (out / P.OUTPUT_MANIFEST).write_text(json.dumps({**man, "files": ["predictions.json"]}))
    (out / "predictions.json").write_text(json.dumps({"format": P.FORMAT, "images": []}))
    capsys.readouterr()
    assert cli_main(["predict", str(run["stage1"]), str(images / "a.png"), "--out", str(out),
                     "--device", "cpu", "--quiet"]) == 2
    assert "overlays/a.png" in capsys.readouterr().err
    assert (out / "overlays" / "a.png").read_text() == "my own a.png"
    # a non-empty folder that is not a predict output: refused, or --overwrite (keeps the rest)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    args = ["predict", str(run["stage1"]), str(images / "a.png"), "--out", str(other),
            "--device", "cpu", "--quiet"]
    assert cli_main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    assert cli_main(args + ["--overwrite"]) == 0
    assert (other / "keep.txt").read_text() == "mine" and (other / "predictions.json").exists()
    assert not list(tmp_path.glob("*.tmp-*"))


def _huge_png(path: Path, w: int, h: int) -> None:
    """A valid w×h RGB PNG of zeros, compressed row by row (a few hundred KB on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, row, parts = zlib.compressobj(9), b"\x00" * (1 + 3 * w), []
    for _ in range(h):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0,
                                                                      0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_header_sizes_without_decoding(tmp_path):
    img = np.zeros((37, 53, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".ppm", ".webp"):
        ok, buf = cv2.imencode(ext, img)
        assert ok and P.image_header_size(buf.tobytes()[:65536]) == (53, 37), ext
    assert P.image_header_size(b"hello") is None


def test_huge_image_refused_before_decoding(tmp_path):
    """A 10000×10000 PNG is refused from its header: the process never holds the 300 MB
    decoded image (peak RSS measured in a fresh interpreter)."""
    huge = tmp_path / "huge.png"
    _huge_png(huge, 10000, 10000)
    # VmHWM (peak RSS of this process image; ru_maxrss would include the forking pytest's)
    code = ("import sys\nfrom weakhand.predict import load_image\n"
            "try:\n    load_image(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(int(hwm.split()[1]) // 1024)\n")
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", code, str(huge)], capture_output=True, text=True,
                       timeout=300)
    msg, peak_mb = r.stdout.strip().splitlines()
    assert "image too large: 10000×10000 px = 100 Mpx" in msg and "downsize" in msg
    assert int(peak_mb) < 250, f"peak RSS {peak_mb} MB"


def test_large_image_downsized_before_batching(run, tmp_path):
    d = tmp_path / "big"
    d.mkdir()
    rng = np.random.default_rng(3)
    big = cv2.resize(_img(rng, 64, 48), (1600, 2133), interpolation=cv2.INTER_LINEAR)  # W×H
    cv2.imwrite(str(d / "tall.png"), big)
    cv2.imwrite(str(d / "small.png"), _img(rng, 48, 48))
    _huge_png(d / "huge.png", 10000, 10000)
    out = tmp_path / "out"
    pred = P.load_predictor(run["stage1"], device="cpu")
    s = P.predict_folder(pred, d, out, show_progress=False)
    assert s["n_ok"] == 2 and s["failed"][0]["image"] == "huge.png"
    assert "image too large" in s["failed"][0]["error"]
    rec = next(r for r in json.loads((out / "predictions.json").read_text())["images"]
               if r["image"] == "tall.png")
    assert rec["image_size"] == [1600, 2133] and any("downsized" in w for w in rec["warnings"])
    K = P.default_K(1600, 2133)
    np.testing.assert_allclose(rec["K"], K)
    _check_record(rec, K)  # uv in the pixels of the image as given, consistent with kp3d
    rgb = cv2.cvtColor(big, cv2.COLOR_BGR2RGB)
    small, A = P._downsize(rgb, P.MAX_WORK_SIDE)
    assert max(small.shape) == P.MAX_WORK_SIDE
    ref = P.predict_images(pred, [small], ["tall.png"], K=A @ K)[0]
    np.testing.assert_allclose(rec["kp3d_mm"], ref["kp3d_mm"], atol=1e-4)
    np.testing.assert_allclose(rec["uv"], P._apply(np.linalg.inv(A), ref["uv"]), atol=1e-4)
    ov = cv2.imread(str(out / rec["overlay"]))
    assert max(ov.shape[:2]) <= P.MAX_WORK_SIDE
