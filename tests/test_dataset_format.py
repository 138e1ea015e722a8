"""On-disk dataset format: round trip, atomic writes, corruption detection (weakhand.data.format)."""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from weakhand.data import (SCHEMA, SCHEMA_VERSION, DatasetError, DatasetWriter, HandData,
                           dataset_summary, load_dataset, write_dataset)
from weakhand.skeleton import JOINT_NAMES

N, H, W = 7, 12, 10


def make_arrays(n: int = N, h: int = H, w: int = W, seed: int = 0) -> dict:
    r = np.random.default_rng(seed)
    depth = r.uniform(0.0, 6000.0, (n, h, w))
    depth[:, :2] = 0.0  # missing depth stays 0
    kp3d = r.normal(0, 50, (n, 21, 3)) + [0, 0, 500]
    has_3d = np.arange(n) % 3 != 0
    kp3d[~has_3d] = np.nan  # withheld 3D labels (weakly-labelled samples)
    kp2d = r.uniform(0, w - 1, (n, 21, 2))
    kp2d[0, 5] = np.nan  # an absent joint
    return {
        "rgb": r.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
        "depth": depth,  # float mm, quantised by the writer
        "mask": r.integers(0, 2, (n, h, w), dtype=np.uint8),
        "parts": r.integers(0, 34, (n, h, w), dtype=np.uint8),
        "kp2d": kp2d,  # float64, cast to float32
        "kp3d": kp3d,
        "vis": r.random((n, 21)) > 0.3,
        "K": np.tile(np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]]), (n, 1, 1)),
        "side": (np.arange(n) % 2).astype(np.uint8),
        "has_2d": np.ones(n, bool),
        "has_3d": has_3d,
        "has_depth": np.arange(n) % 2 == 0,
        "subject": np.arange(n, dtype=np.int32) * 3,
    }


def writer(path, n=N, **kw) -> DatasetWriter:
    args = dict(count=n, image_size=(H, W), name="unit", domain="synthetic", split="train",
                source={"generator": "test", "seed": 0}, extras={"subject": (np.int32, ())},
                with_parts=True)
    args.update(kw)
    return DatasetWriter(path, **args)


def chunk(arrays: dict, sl: slice) -> dict:
    return {k: v[sl] for k, v in arrays.items()}


def no_temporaries(path: Path) -> bool:
    return not list(path.parent.glob(f"{path.name}.tmp-*"))


@pytest.fixture()
def dataset(tmp_path) -> tuple[Path, dict]:
    arrays = make_arrays()
    path = tmp_path / "ds"
    with writer(path) as w:
        w.write(0, chunk(arrays, slice(0, 3)))
        w.write(3, chunk(arrays, slice(3, None)))
    return path, arrays


# ----------------------------------------------------------------------------- round trip
def test_round_trip_two_chunks(dataset):
    path, a = dataset
    data = load_dataset(path, verify="full")
    assert isinstance(data, HandData) and len(data) == N and data.count == N
    assert data.image_size == (H, W)
    raw = data.arrays
    assert isinstance(raw["rgb"], np.memmap)  # memory-mapped, not loaded
    for key in ("rgb", "mask", "parts", "vis", "side", "has_2d", "has_3d", "has_depth", "subject"):
        np.testing.assert_array_equal(raw[key], a[key], err_msg=key)
    for key in ("kp2d", "kp3d", "K"):
        assert raw[key].dtype == np.float32
        np.testing.assert_array_equal(raw[key], a[key].astype(np.float32), err_msg=key)
    assert raw["depth"].dtype == np.uint16
    depth_mm = data.depth_mm(slice(None))
    assert depth_mm.dtype == np.float32
    assert np.abs(depth_mm - a["depth"]).max() <= 0.05 + 1e-3
    assert (depth_mm[:, :2] == 0).all()

    item = data[4]
    assert item["depth"].dtype == np.float32 and item["depth"].shape == (H, W)
    assert np.abs(item["depth"] - a["depth"][4]).max() <= 0.05 + 1e-3
    assert not isinstance(item["rgb"], np.memmap)
    np.testing.assert_array_equal(item["rgb"], a["rgb"][4])
    np.testing.assert_array_equal(data[-1]["subject"], a["subject"][-1])
    with pytest.raises(IndexError):
        data[N]

    assert not isinstance(load_dataset(path, mmap=False).arrays["rgb"], np.memmap)


def test_manifest_fields(dataset):
    path, a = dataset
    m = json.loads((path / "manifest.json").read_text())
    assert m["schema"] == SCHEMA == "weakhand-dataset" and m["schema_version"] == SCHEMA_VERSION == 1
    assert (m["name"], m["domain"], m["split"], m["count"]) == ("unit", "synthetic", "train", N)
    assert m["image_size"] == [H, W]
    assert m["units"] == {"kp3d": "mm", "depth": "mm", "kp2d": "px"}
    assert m["depth_scale_mm"] == 0.1
    assert m["joint_order"] == list(JOINT_NAMES) and m["root"] == "wrist" and m["camera"] == "opencv"
    assert m["source"]["generator"] == "test" and "weakhand_version" in m["source"]
    assert m["created"] and m["extra"] == {}
    assert m["label_counts"] == {"has_2d": N, "has_3d": int(a["has_3d"].sum()),
                                 "has_depth": int(a["has_depth"].sum()),
                                 "left": int((a["side"] == 0).sum()), "right": int((a["side"] == 1).sum())}
    assert set(m["arrays"]) == {"rgb", "depth", "mask", "parts", "kp2d", "kp3d", "vis", "K", "side",
                                "has_2d", "has_3d", "has_depth", "subject"}
    for key, meta in m["arrays"].items():
        f = path / meta["file"]
        assert meta["nbytes"] == f.stat().st_size
        assert meta["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
        arr = np.load(f, mmap_mode="r", allow_pickle=False)
        assert meta["dtype"] == arr.dtype.name and meta["shape"] == list(arr.shape)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["manifest.json", ".verified.json"] + [meta["file"] for meta in m["arrays"].values()])


def test_depth_quantisation_and_direct_uint16(tmp_path):
    a = make_arrays(n=2)
    a.pop("parts"), a.pop("subject")
    a["depth"][0, 0, :4] = [np.nan, -5.0, 7000.0, 0.04]
    write_dataset(tmp_path / "f", a, name="d", domain="synthetic", split="test")
    d = load_dataset(tmp_path / "f").arrays["depth"]
    assert d[0, 0, :4].tolist() == [0, 0, 65535, 0]  # missing, clipped, clipped, rounded down
    assert d[0, 1, 0] == np.rint(a["depth"][0, 1, 0] / 0.1)

    units = np.random.default_rng(1).integers(0, 65536, (2, H, W), dtype=np.uint16)
    a["depth"] = units
    write_dataset(tmp_path / "u", a, name="d", domain="synthetic", split="test", depth_scale_mm=0.5)
    data = load_dataset(tmp_path / "u")
    np.testing.assert_array_equal(data.arrays["depth"], units)
    np.testing.assert_allclose(data[1]["depth"], units[1] * 0.5, rtol=1e-6)


def test_pickle_reopens_memmaps(dataset):
    path, _ = dataset
    data = load_dataset(path)
    blob = pickle.dumps(data)
    assert len(blob) < 5000  # the arrays are not copied into the pickle
    back = pickle.loads(blob)
    assert isinstance(back.arrays["rgb"], np.memmap)
    np.testing.assert_array_equal(back.arrays["rgb"], data.arrays["rgb"])


def test_dataset_summary(dataset):
    path, a = dataset
    s = dataset_summary(load_dataset(path))
    assert s["count"] == N and s["image_size"] == [H, W]
    assert s["label_counts"]["has_3d"] == int(a["has_3d"].sum())
    assert s["disk_bytes"] == sum(f.stat().st_size for f in path.iterdir())
    assert s["arrays"]["kp3d"] == {"dtype": "float32", "shape": [N, 21, 3]}
    assert dataset_summary(path)["count"] == N


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("key, value, words", [
    ("kp2d", np.zeros((3, 20, 2)), ["kp2d", "(21, 2)"]),
    ("rgb", np.zeros((3, H, W, 3), np.float32), ["rgb", "uint8"]),
    ("mask", np.full((3, H, W), 255, np.uint8), ["mask", "0/1"]),
    ("depth", np.zeros((3, H, W), np.int32), ["depth", "uint16"]),
    ("rgb", np.zeros((3, H + 1, W, 3), np.uint8), ["rgb", "image_size"]),
    ("bogus", np.zeros(3), ["bogus", "unknown"]),
])
def test_write_rejects_bad_batches(tmp_path, key, value, words):
    path = tmp_path / "bad"
    with pytest.raises(ValueError) as err:
        with writer(path) as w:
            w.write(0, {key: value})
    for word in words:
        assert word in str(err.value)
    assert not path.exists() and no_temporaries(path)


def test_write_rejects_mismatched_batch_lengths_and_overflow(tmp_path):
    a = make_arrays()
    with pytest.raises(ValueError, match="different lengths"):
        with writer(tmp_path / "x") as w:
            w.write(0, {"rgb": a["rgb"][:3], "mask": a["mask"][:2]})
    with pytest.raises(ValueError, match="out of range"):
        with writer(tmp_path / "y") as w:
            w.write(5, chunk(a, slice(0, 3)))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_withheld_3d_labels_must_be_nan(tmp_path):
    a = make_arrays()
    a["has_3d"][:] = False  # but kp3d still holds values for most rows: a label leak
    with pytest.raises(ValueError, match="has_3d is False but kp3d has finite values"):
        write_dataset(tmp_path / "leak", a, name="x", domain="real", split="train")
    assert not (tmp_path / "leak").exists()


# ----------------------------------------------------------------------------- atomicity
def test_exception_inside_writer_leaves_nothing(tmp_path):
    a = make_arrays()
    path = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="boom"):
        with writer(path) as w:
            w.write(0, chunk(a, slice(0, 3)))
            raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_incomplete_writer_raises_and_leaves_nothing(tmp_path):
    a = make_arrays()
    path = tmp_path / "ds"
    with pytest.raises(ValueError) as err:
        with writer(path) as w:
            w.write(0, chunk(a, slice(0, 3)))
            w.write(4, chunk(a, slice(4, None)))  # row 3 never written
    assert "rows never written" in str(err.value) and "first missing row 3" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    # one array missing for a row range is caught as well
    with pytest.raises(ValueError, match="'subject'"):
        with writer(path) as w:
            w.write(0, {k: v for k, v in a.items() if k != "subject"})
            w.write(0, {"subject": a["subject"][:-1]})
    assert list(tmp_path.iterdir()) == []


def test_overwrite_only_on_success(dataset):
    path, a = dataset
    b = make_arrays(seed=1)
    with pytest.raises(FileExistsError):
        with writer(path) as w:
            w.write(0, b)
    with pytest.raises(RuntimeError):
        with writer(path, overwrite=True) as w:
            w.write(0, b)
            raise RuntimeError("interrupted")
    np.testing.assert_array_equal(load_dataset(path, verify="full").arrays["rgb"], a["rgb"])
    with writer(path, overwrite=True) as w:
        w.write(0, b)
    np.testing.assert_array_equal(load_dataset(path, verify="full").arrays["rgb"], b["rgb"])
    assert no_temporaries(path)


def test_overwrite_refuses_non_dataset_directory(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        with writer(tmp_path / "results", overwrite=True) as w:
            w.write(0, make_arrays())
    assert (tmp_path / "results" / "precious.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------- corruption
def _edit_manifest(path: Path, fn) -> None:
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def test_missing_directory_has_hint(tmp_path):
    with pytest.raises(DatasetError, match="no dataset at .*nowhere.*00_make_data"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="run stage 2 first"):
        load_dataset(tmp_path / "nowhere", hint="run stage 2 first")


@pytest.mark.parametrize("verify", ["none", "size"])
def test_truncated_npy(dataset, verify):
    path, _ = dataset
    f = path / "rgb.npy"
    size = f.stat().st_size
    with open(f, "r+b") as fh:
        fh.truncate(size - 50)
    with pytest.raises(DatasetError) as err:
        load_dataset(path, verify=verify)
    msg = str(err.value)
    assert "rgb.npy" in msg and str(size - 50) in msg and str(size) in msg


def test_truncated_header(dataset):
    path, _ = dataset
    with open(path / "kp2d.npy", "r+b") as fh:
        fh.truncate(20)
    with pytest.raises(DatasetError, match="kp2d.npy"):
        load_dataset(path, verify="none")


def test_missing_manifest_mentions_interrupted_write(dataset):
    path, _ = dataset
    (path / "manifest.json").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert "manifest.json" in str(err.value) and ".tmp-" in str(err.value)
    assert "interrupted" in str(err.value)


@pytest.mark.parametrize("text, words", [
    ("{not json", ["manifest.json", "JSON"]),
    (json.dumps({"schema": "something-else"}), ["manifest.json", "schema"]),
    (json.dumps({"schema": SCHEMA, "schema_version": SCHEMA_VERSION + 1}), ["manifest.json", "newer"]),
])
def test_bad_manifest(dataset, text, words):
    path, _ = dataset
    (path / "manifest.json").write_text(text)
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    for word in words:
        assert word in str(err.value)


def test_missing_array_file(dataset):
    path, _ = dataset
    (path / "vis.npy").unlink()
    with pytest.raises(DatasetError, match="vis.npy.*missing"):
        load_dataset(path, verify="none")


def test_flipped_byte_caught_by_full_verify(dataset):
    path, _ = dataset
    f = path / "kp3d.npy"
    with open(f, "r+b") as fh:
        fh.seek(-3, 2)
        byte = fh.read(1)
        fh.seek(-3, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    load_dataset(path, verify="size")  # same size: the cheap check cannot see it
    with pytest.raises(DatasetError) as err:
        load_dataset(path, verify="full")
    assert "kp3d.npy" in str(err.value) and "checksum" in str(err.value)


def test_dtype_changed_in_manifest(dataset):
    path, _ = dataset
    _edit_manifest(path, lambda m: m["arrays"]["kp2d"].update(dtype="float64"))
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert "kp2d.npy" in str(err.value) and "dtype" in str(err.value)


def test_schema_dtype_enforced_even_if_manifest_agrees(dataset):
    path, a = dataset
    np.save(path / "kp2d.npy", a["kp2d"])  # float64 on disk
    info = np.load(path / "kp2d.npy", mmap_mode="r")

    def fix(m):
        m["arrays"]["kp2d"].update(dtype="float64", shape=list(info.shape),
                                   nbytes=(path / "kp2d.npy").stat().st_size)
    _edit_manifest(path, fix)
    with pytest.raises(DatasetError, match="kp2d.npy.*schema needs float32"):
        load_dataset(path)


def test_count_mismatch_between_arrays(dataset):
    path, a = dataset
    np.save(path / "side.npy", a["side"][:-1])  # one row short, manifest updated to match the file

    def fix(m):
        m["arrays"]["side"].update(shape=[N - 1], nbytes=(path / "side.npy").stat().st_size)
    _edit_manifest(path, fix)
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert "side.npy" in str(err.value) and "count mismatch" in str(err.value)


def test_replaced_file_without_manifest_update(dataset):
    path, a = dataset
    np.save(path / "side.npy", a["side"][:-1])
    with pytest.raises(DatasetError, match="side.npy"):
        load_dataset(path)  # size differs
    with pytest.raises(DatasetError, match="side.npy.*shape"):
        load_dataset(path, verify="none")  # shape differs from the manifest


def test_allow_fewer_keeps_the_written_prefix_and_shrinks_files(tmp_path):
    """Converters reject samples on the fly: declare an upper bound, append, keep what came."""
    arrays = make_arrays(n=6)
    with DatasetWriter(tmp_path / "d", count=100, image_size=(H, W), name="x", domain="real",
                       split="train", allow_fewer=True, root="palm", with_parts=True,
                       extras={"subject": (np.int32, ())}) as w:
        w.append({k: v[:2] for k, v in arrays.items()})
        w.append({k: v[2:5] for k, v in arrays.items()})
    d = load_dataset(tmp_path / "d", verify="full")
    assert d.count == 5 and d.manifest["root"] == "palm"
    for k in ("rgb", "mask", "parts", "vis", "side", "has_3d", "subject"):
        np.testing.assert_array_equal(np.asarray(d.arrays[k]), arrays[k][:5])
    np.testing.assert_array_equal(np.asarray(d.arrays["kp3d"]), arrays["kp3d"][:5].astype(np.float32))
    np.testing.assert_allclose(d.depth_mm(slice(0, 5)), np.round(arrays["depth"][:5] / 0.1) * 0.1,
                               atol=1e-3)
    # nothing written at all: an error, and nothing left behind
    with pytest.raises(ValueError, match="no sample was written"):
        with DatasetWriter(tmp_path / "e", count=10, image_size=(H, W), name="x", domain="real",
                           split="train", allow_fewer=True):
            pass
    assert not (tmp_path / "e").exists()
