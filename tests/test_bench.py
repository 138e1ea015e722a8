"""`weakhand bench`: the quick run fills every section with finite positive numbers, the FLOP
counts match hand formulas, and derived figures are consistent (no timing assertions)."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from weakhand.workbook import cli
from weakhand.workbook.cli import main as cli_main

bench = cli.load_bench_suite()  # benchmarks/suite.py of this checkout


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    # one torch thread: on a shared 2-core machine two spinning OpenMP threads make small
    # models many times slower (and this test slow), the numbers are not asserted anyway
    rc = cli_main(["bench", "--quick", "--threads", "1", "--out", str(out)])
    return rc, json.loads(out.read_text())


def _positive(x, where):
    assert isinstance(x, (int, float)) and not isinstance(x, bool), (where, x)
    assert math.isfinite(x) and x > 0, (where, x)


def test_quick_run_fills_every_section(quick_result):
    rc, res = quick_result
    assert rc == 0 and res["errors"] == []
    assert res["schema"] == bench.SCHEMA and res["schema_version"] == bench.SCHEMA_VERSION
    assert res["quick"] is True and res["device"] == "cpu"
    for key in bench.SECTIONS:
        assert res[key], f"section {key} is empty"
    m = res["machine"]
    for k in ("cpu_model", "torch", "device_name", "hostname"):
        assert isinstance(m[k], str) and m[k]
    for k in ("cpu_count_logical", "cpu_affinity", "torch_threads"):
        _positive(m[k], f"machine.{k}")
    assert m["torch_threads"] == 1  # --threads reached torch (numba must not reset it)
    _positive(res["peak_flops"]["float32"], "peak_flops.float32")

    assert {r["domain"] for r in res["synth"]} == {"render", "sensor"}
    for r in res["synth"]:
        _positive(r["images_per_s"], f"synth {r['domain']}")

    (ld,) = res["loader"]
    _positive(ld["getitem_images_per_s"], "loader getitem")
    assert [r["num_workers"] for r in ld["rows"]] == [0, 1]
    for r in ld["rows"]:
        _positive(r["images_per_s"], f"loader w{r['num_workers']}")

    assert {(r["model"], r["options"]) for r in res["train"]} == {(m, "base") for m in bench.MODELS}
    for r in res["train"]:
        for k in ("images_per_s", "step_s", "peak_mem_bytes", "flops_fwd_per_image",
                  "flops_train_per_image", "achieved_flops", "fraction_of_peak"):
            _positive(r[k], f"train {r['model']}.{k}")
        assert r["mem_method"].startswith(("psutil", "resource"))

    for r in res["bmc"]:
        for k in ("net_fwd_bwd_s", "bmc_fwd_bwd_s", "bmc_fraction"):
            _positive(r[k], f"bmc.{k}")

    assert {(r["model"], r["batch"]) for r in res["inference"]} == {
        (m, b) for m in bench.MODELS for b in (1, 8)}
    for r in res["inference"]:
        for k in ("frames_per_s", "latency_s", "flops_per_image", "achieved_flops"):
            _positive(r[k], f"inference {r['model']} b{r['batch']}.{k}")

    ev = res["evaluation"]
    assert ev["n"] == 2000
    for k in ("evaluate_3d_none_s", "evaluate_3d_procrustes_s", "score_predictions_s"):
        _positive(ev[k], f"evaluation.{k}")

    sm = res["summary"]
    assert sm["main_profile"] == "smoke" and len(sm["ratios"]) == 2
    for r in sm["ratios"]:
        _positive(r["ratio"], "summary ratio")


def test_derived_figures_are_consistent(quick_result):
    """Units: images/s = batch / step time, achieved = FLOPs per image x images/s, fraction =
    achieved / measured peak, train FLOPs between 2x and 3x the forward ones, loader ratio =
    loader / training images/s."""
    _, res = quick_result
    peak = res["peak_flops"]["float32"]
    for r in res["train"]:
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["step_s"])
        assert r["achieved_flops"] == pytest.approx(r["flops_train_per_image"] * r["images_per_s"])
        assert r["fraction_of_peak"] == pytest.approx(r["achieved_flops"] / peak)
        assert 2.0 <= r["flops_train_per_image"] / r["flops_fwd_per_image"] <= 3.0 + 1e-9, r["model"]
    for r in res["inference"]:
        assert r["frames_per_s"] == pytest.approx(r["batch"] / r["latency_s"])
    by_model = {(r["model"], r["batch"]): r for r in res["inference"]}
    # forward FLOPs per image do not depend on the batch size (convolutional models)
    for m in ("cai_pose", "pose25d", "regularizer"):
        assert by_model[(m, 1)]["flops_per_image"] == pytest.approx(by_model[(m, 8)]["flops_per_image"])
    cai_train = next(r for r in res["train"] if r["model"] == "cai_pose")
    (ld,) = res["loader"]
    for row, ratio in zip(ld["rows"], res["summary"]["ratios"]):
        assert ratio["ratio"] == pytest.approx(row["images_per_s"] / cai_train["images_per_s"])
    # the cai_pose forward FLOPs counted during training are those of inference plus whatever
    # matmuls the loss adds (none today)
    fwd = by_model[("cai_pose", 1)]["flops_per_image"]
    assert fwd <= cai_train["flops_fwd_per_image"] <= 1.05 * fwd


def test_conv_and_linear_flops_match_hand_formulas():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.rand(2, 3, 16, 16)
    expected = bench.conv2d_flops(2, 3, 8, (3, 3), (16, 16))
    assert expected == 2 * 2 * 8 * 16 * 16 * 3 * 3 * 3 == 221184
    assert bench.count_flops(lambda: conv(x)) == expected
    strided = nn.Conv2d(4, 6, 5, stride=2, padding=2, groups=2)
    y = torch.rand(1, 4, 20, 20)
    assert bench.count_flops(lambda: strided(y)) == bench.conv2d_flops(1, 4, 6, (5, 5), (10, 10), 2)
    lin = nn.Linear(10, 7)
    z = torch.rand(5, 10)
    assert bench.count_flops(lambda: lin(z)) == 2 * 5 * 10 * 7


def test_training_step_flops_of_a_tiny_conv_net():
    """Forward = both convs; backward = the weight gradients of both and the input gradient of
    the second only (the image needs no gradient): F1 + 2 F2."""
    B, S = 4, 12
    f1 = bench.conv2d_flops(1, 3, 5, (3, 3), (S, S))
    f2 = bench.conv2d_flops(1, 5, 2, (3, 3), (S, S))
    case = SimpleNamespace(
        name="tiny", what="",
        build=lambda: nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.ReLU(),
                                    nn.Conv2d(5, 2, 3, padding=1, bias=False)),
        loss=lambda m, b: m(b["image"]).square().mean())
    flops: dict = {}
    row = bench.bench_train_row(case, {"image": torch.rand(B, 3, S, S)}, "cpu",
                                bench._parse_options("base"), repeats=1, warmup=1, flops=flops)
    assert flops == {"forward": B * (f1 + f2), "backward": B * (f1 + 2 * f2)}
    _positive(row["images_per_s"], "tiny images/s")
    assert row["images_per_s"] == pytest.approx(B / row["step_s"])


def test_options_and_settings_are_validated():
    assert bench._parse_options("channels_last+amp") == {"channels_last": True, "compile": False,
                                                          "amp": "float16"}
    assert bench._parse_options("amp_bf16")["amp"] == "bfloat16"
    with pytest.raises(ValueError, match="unknown option"):
        bench._parse_options("fast")
    with pytest.raises(ValueError, match="AMP is only used on CUDA"):
        bench.run_benchmark(device="cpu", quick=True, options=["amp"], sections=["evaluation"],
                            log=None)
    with pytest.raises(ValueError, match="unknown section"):
        bench.run_benchmark(device="cpu", quick=True, sections=["everything"], log=None)
    with pytest.raises(ValueError, match="unknown benchmark setting"):
        bench.Settings(quick=True, nonsense=1)


def test_report_and_default_path(quick_result, capsys, monkeypatch):
    _, res = quick_result
    text = bench.print_report(res)
    for title in ("matmul peak", "synthetic renderer", "data loader", "training step",
                  "BMC loss", "inference", "evaluation of 2000 samples", "loader / trainer"):
        assert title in text
    monkeypatch.setenv(bench.MACHINE_KIND_ENV, "h100 x1")
    path = bench.default_output("cuda:0")
    assert path.name == "h100_x1-cuda.json" and path.parent.name == "results"


def test_bench_without_the_repository_says_so(tmp_path, monkeypatch, capsys):
    """Installed without the checkout (no benchmarks/suite.py): `weakhand --help` still lists
    `bench`, and `weakhand bench` exits 2 naming the missing file."""
    missing = tmp_path / "benchmarks" / "suite.py"
    monkeypatch.setattr(cli, "bench_suite_path", lambda: missing)
    monkeypatch.delitem(cli.sys.modules, cli.BENCH_MODULE)
    with pytest.raises(FileNotFoundError, match="editable"):
        cli.load_bench_suite()
    assert "bench" in cli.build_parser().format_help()
    assert cli_main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "weakhand bench: error:" in err and str(missing) in err


# ----------------------------------------------------------------------------- the loader's fast path

def _reference_geometry(ds, index):
    """HandDataset.geometry as it was written with the camera/skeleton helpers (before it was
    inlined for speed)."""
    import numpy as np

    from weakhand import camera, skeleton
    from weakhand.data.torch_data import _IDENTITY, _flip_matrix

    arr = ds.data.arrays
    h, w = ds.data.image_size
    oh, ow = ds.out_size
    p = ds.sample_params(index)
    K = np.asarray(arr["K"][index], np.float64)
    X = np.asarray(arr["kp3d"][index], np.float64)
    uv = np.asarray(arr["kp2d"][index], np.float64)
    side = int(arr["side"][index])
    flip = p["flip"]
    if ds.mirror_left and (side ^ int(flip)) == 0:
        flip = not flip
    P = _IDENTITY
    if flip:
        K, X = np.asarray(camera.mirror_K(K, w)), np.asarray(skeleton.mirror(X))
        uv = uv.copy()
        uv[:, 0] = (w - 1) - uv[:, 0]
        P = _flip_matrix(w)
    K1 = ds._resize @ K
    A = _IDENTITY
    if ds.augment is not None:  # a pixel similarity about the output centre; kp3d unchanged
        A = camera.similarity_about_center(p["scale"], p["theta"], ((ow - 1) / 2.0, (oh - 1) / 2.0),
                                           p["shift"])
        K1 = A @ K1
    label_map = A @ ds._resize
    uv_lab = np.asarray(camera.apply_homography(label_map, uv))
    uv_3d = np.asarray(camera.project(K1, X))
    kp2d = np.where(np.isfinite(uv_3d), uv_3d, uv_lab)
    return {"warp": label_map @ P, "K": K1, "kp3d": X, "kp2d": kp2d}


def test_loader_fast_path_is_bit_identical(tmp_path):
    """The inlined geometry equals the camera-module composition bit for bit, and the in-place
    colour jitter equals its textbook form (benchmarks/check_loader_equality.py compares whole
    samples against a reference copy of the module)."""
    import numpy as np

    from weakhand.data import AugmentConfig, HandDataset
    from weakhand.data.torch_data import _LUMA, colour_jitter
    from weakhand.synth.dataset import make_dataset

    for style in ("render", "sensor"):  # 3D labels; 3D withheld (kp2d from the 2D labels)
        path = tmp_path / style
        make_dataset(path, style, 24, seed=2, split="train", size=32, show_progress=False)
        for aug in (None, AugmentConfig(rot_deg=180, scale=(0.5, 2.0), shift_px=6, p_flip=0.5)):
            for out_size, mirror in ((None, False), (24, True), ((20, 28), True)):
                ds = HandDataset(path, out_size=out_size, augment=aug, mirror_left=mirror, seed=5)
                for i in range(len(ds)):
                    got, ref = ds.geometry(i), _reference_geometry(ds, i)
                    for k, v in ref.items():
                        assert got[k].dtype == v.dtype and np.array_equal(
                            got[k].view(np.uint64), v.view(np.uint64)), (style, aug, out_size, i, k)
    rng = np.random.default_rng(0)
    for _ in range(20):
        img = rng.random((9, 11, 3), dtype=np.float32)
        b, c, s, hue = rng.uniform(0.5, 1.5, 3).tolist() + [0.0]
        ref = img * np.float32(b)
        mean = float((ref @ _LUMA).mean())
        ref = (ref - mean) * np.float32(c) + np.float32(mean)
        gray = (ref @ _LUMA)[..., None]
        ref = np.clip(gray + (ref - gray) * np.float32(s), 0.0, 1.0)
        assert np.array_equal(colour_jitter(img, b, c, s, hue).view(np.uint32), ref.view(np.uint32))
