"""The one on-disk dataset format used by every dataset (synthetic renders and converted real sets).

A dataset split is a directory holding ``manifest.json`` plus one ``.npy`` file per array::

    <split>/manifest.json
    <split>/rgb.npy      (N,H,W,3) uint8, RGB order
    <split>/depth.npy    (N,H,W)   uint16, mm = value * manifest["depth_scale_mm"], 0 = missing
    <split>/mask.npy     (N,H,W)   uint8 {0,1}
    <split>/parts.npy    (N,H,W)   uint8 part labels (optional)
    <split>/kp2d.npy     (N,21,2)  float32 crop pixels (NaN where absent)
    <split>/kp3d.npy     (N,21,3)  float32 mm, OpenCV camera frame (NaN where withheld)
    <split>/vis.npy      (N,21)    bool
    <split>/K.npy        (N,3,3)   float32 crop intrinsics
    <split>/side.npy     (N,)      uint8, 0 left / 1 right
    <split>/has_2d.npy, has_3d.npy, has_depth.npy   (N,) bool
    <split>/<extra>.npy  any declared extra, first axis N

Every file is a plain ``.npy`` (``allow_pickle=False``) and can be memory-mapped.
The directory is built under a temporary sibling name and moved into place only when complete
(:func:`weakhand.io.atomic_directory`), and ``manifest.json`` is written last, so a dataset
directory with a manifest is always complete.

Integrity on open (:func:`load_dataset`, default ``verify="once"``): sizes, dtypes and shapes
against the manifest every time; the sha256 of every file against the manifest the first time
a dataset is opened, recorded in ``<split>/.verified.json`` (the manifest's hash and each
file's size, mtime and inode) so that later opens cost nothing until a file or the manifest
changes (the writer records it for the files it has just hashed); and the labels, where the
format rules them out: no ±inf in ``kp2d``/``kp3d``/``K``, no NaN in ``K``, no coordinate beyond
``LABEL_LIMIT`` (1e5 px or mm), ``has_3d``/``has_2d`` consistent with the finite joints.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .. import __version__ as _WEAKHAND_VERSION
from .. import io as _io
from ..skeleton import JOINT_NAMES, NUM_JOINTS

SCHEMA = "weakhand-dataset"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_DEPTH_SCALE_MM = 0.1
DEFAULT_HINT = "run notebook 00_make_data or `weakhand data ...` first"

#: dtype and per-sample shape of the schema arrays; "H"/"W" stand for the crop size.
ARRAY_SPECS: dict[str, tuple[np.dtype, tuple]] = {
    "rgb": (np.dtype(np.uint8), ("H", "W", 3)),
    "depth": (np.dtype(np.uint16), ("H", "W")),
    "mask": (np.dtype(np.uint8), ("H", "W")),
    "parts": (np.dtype(np.uint8), ("H", "W")),
    "kp2d": (np.dtype(np.float32), (NUM_JOINTS, 2)),
    "kp3d": (np.dtype(np.float32), (NUM_JOINTS, 3)),
    "vis": (np.dtype(np.bool_), (NUM_JOINTS,)),
    "K": (np.dtype(np.float32), (3, 3)),
    "side": (np.dtype(np.uint8), ()),
    "has_2d": (np.dtype(np.bool_), ()),
    "has_3d": (np.dtype(np.bool_), ()),
    "has_depth": (np.dtype(np.bool_), ()),
}
REQUIRED_ARRAYS: tuple[str, ...] = ("rgb", "depth", "mask", "kp2d", "kp3d", "vis", "K", "side",
                                    "has_2d", "has_3d", "has_depth")
OPTIONAL_ARRAYS: tuple[str, ...] = ("parts",)
IMAGE_ARRAYS: tuple[str, ...] = ("rgb", "depth", "mask", "parts")

VERIFIED = ".verified.json"
VERIFY_MODES = ("none", "size", "once", "full")
#: |coordinate| above this (px for kp2d, mm for kp3d) is not a label but corruption
LABEL_LIMIT = 1e5
_VERIFIED_IN_PROCESS: set[tuple] = set()

_MANIFEST_KEYS = ("schema", "schema_version", "name", "domain", "split", "count", "image_size",
                  "depth_scale_mm", "arrays")
_HASH_CHUNK = 1 << 22


class DatasetError(Exception):
    """A dataset directory is missing, incomplete, corrupt or inconsistent with its manifest
    (no arrays: the message names the file, the problem and the fix)."""


# ----------------------------------------------------------------------------- helpers
def _resolve_shape(spec: tuple, image_size: tuple[int, int]) -> tuple[int, ...]:
    h, w = image_size
    return tuple(h if d == "H" else w if d == "W" else int(d) for d in spec)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_HASH_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def _file_stats(path: Path, names: Iterable[str]) -> dict[str, list[int]]:
    out = {}
    for n in names:
        st = (path / n).stat()
        out[n] = [int(st.st_size), int(st.st_mtime_ns), int(st.st_ino)]
    return out


def _manifest_digest(path: Path) -> str:
    return hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()


def _write_verified(path: Path, files: Iterable[str], seconds: float, by: str) -> bool:
    """Record that the files of `path` matched the manifest's checksums (False: not writable)."""
    files = sorted(files)
    record = {"format": "weakhand-dataset-verified", "manifest_sha256": _manifest_digest(path),
              "files": _file_stats(path, files), "seconds": round(float(seconds), 3),
              "verified_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "by": by}
    try:
        _io.atomic_write_json(path / VERIFIED, record)
    except OSError:
        return False
    return True


def _is_verified(path: Path, files: Iterable[str]) -> bool:
    files = sorted(files)
    try:
        digest = _manifest_digest(path)
        stats = _file_stats(path, files)
    except OSError:
        return False
    key = (str(path.resolve()), digest, json.dumps(stats, sort_keys=True))
    if key in _VERIFIED_IN_PROCESS:
        return True
    try:
        rec = json.loads((path / VERIFIED).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    ok = (isinstance(rec, dict) and rec.get("manifest_sha256") == digest
          and rec.get("files") == stats)
    if ok:
        _VERIFIED_IN_PROCESS.add(key)
    return ok


def fix_hint(path: str | os.PathLike, manifest: Mapping[str, Any] | None = None) -> str:
    """How to get a good copy of the dataset at `path` back (for error messages): a
    sentence chosen by ``manifest["source"]["kind"]``; no arrays."""
    path = Path(path)
    src = (manifest or {}).get("source") or {}
    if not isinstance(src, Mapping):
        src = {}
    if src.get("kind") == "synthetic":
        return (f"re-create it: re-run notebook 00_make_data with -p reuse=False (e.g. "
                f"`weakhand run --only 00 -p reuse=False`), or delete {path}")
    if src.get("kind") == "converted":
        return (f"re-convert it (`weakhand data convert {src.get('dataset', '<name>')} --src ... "
                f"--out ...`, or notebook 00_make_data with -p reuse=False), or delete {path}")
    return f"re-create it (notebook 00_make_data: -p reuse=False) or delete {path}"


def _stale_temporaries(path: Path) -> list[Path]:
    if not path.parent.exists():
        return []
    return sorted(path.parent.glob(f"{path.name}{_io.TMP_MARK}*"))


def _check_json(obj: Any, what: str) -> None:
    try:
        json.dumps(obj, default=_io._json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


def _as_image_size(image_size: Iterable[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (H, W), got {image_size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {(h, w)}")
    return h, w


# ----------------------------------------------------------------------------- writer
class DatasetWriter:
    """Write a dataset split chunk by chunk, atomically.

    >>> with DatasetWriter(path, count=N, image_size=(H, W), name="synth", domain="synthetic",
    ...                    split="train", source={"generator": "render_v1", "seed": 0}) as w:
    ...     for start in range(0, N, B):
    ...         w.write(start, {"rgb": ..., "depth": depth_mm_float, ...})

    The arrays are ``np.lib.format.open_memmap`` files in a temporary sibling directory. Batches may
    carry any subset of the arrays; on a clean exit every row of every array must have been written
    (else ``ValueError`` and nothing is left at `path`). ``manifest.json`` (with size and sha256 of
    each file) is written last and the directory is moved into place. On any exception nothing is
    left at `path`, and an existing dataset there is untouched (it is replaced only with
    ``overwrite=True`` and only on success).

    Value conversions in :meth:`write`: float arrays are cast to float32; ``depth`` is taken as
    uint16 units directly, or as float millimetres which are quantised
    ``round(mm / depth_scale_mm)`` and clipped to [0, 65535] (NaN and negatives become 0 =
    missing); integer image/label arrays are range-checked and cast (``mask`` must be in {0,1},
    ``side`` in {0,1}); bool arrays accept bool or 0/1 integers.

    Consistency enforced at the end: a sample with ``has_3d`` (``has_2d``) must have at least one
    finite joint in ``kp3d`` (``kp2d``), and a sample without ``has_3d`` must have an all-NaN
    ``kp3d`` (so withheld 3D labels cannot leak into a weakly-labelled split).
    """

    def __init__(self, path: str | os.PathLike, count: int, image_size: Iterable[int], name: str,
                 domain: str, split: str, source: Mapping[str, Any] | None = None,
                 depth_scale_mm: float = DEFAULT_DEPTH_SCALE_MM,
                 extras: Mapping[str, tuple[Any, Iterable[int]]] | None = None,
                 overwrite: bool = False, with_parts: bool = False,
                 extra: Mapping[str, Any] | None = None, root: str = "wrist",
                 allow_fewer: bool = False):
        self.path = Path(path)
        self.root = str(root)
        self.allow_fewer = bool(allow_fewer)
        self.count = int(count)
        if self.count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        self.image_size = _as_image_size(image_size)
        self.name, self.domain, self.split = str(name), str(domain), str(split)
        self.depth_scale_mm = float(depth_scale_mm)
        if not np.isfinite(self.depth_scale_mm) or self.depth_scale_mm <= 0:
            raise ValueError(f"depth_scale_mm must be positive, got {depth_scale_mm}")
        self.source = dict(source or {})
        self.source.setdefault("weakhand_version", _WEAKHAND_VERSION)
        _check_json(self.source, "source")
        self.extra = dict(extra or {})
        _check_json(self.extra, "extra")
        self.overwrite = bool(overwrite)

        self.specs: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        for key in REQUIRED_ARRAYS + (("parts",) if with_parts else ()):
            dt, shp = ARRAY_SPECS[key]
            self.specs[key] = (dt, _resolve_shape(shp, self.image_size))
        for key, spec in (extras or {}).items():
            if key in ARRAY_SPECS:
                raise ValueError(f"extra array {key!r} clashes with a schema array"
                                 + (" (use with_parts=True for parts)" if key == "parts" else ""))
            if not key.isidentifier():
                raise ValueError(f"extra array name {key!r} must be an identifier (it names a file)")
            try:
                dt, shp = spec
                dt = np.dtype(dt)
                shp = tuple(int(s) for s in shp)
            except (TypeError, ValueError):
                raise ValueError(f"extra array {key!r}: spec must be (dtype, trailing shape), "
                                 f"got {spec!r}") from None
            if dt.hasobject or dt.kind not in "biuf":
                raise ValueError(f"extra array {key!r}: dtype {dt} not supported "
                                 "(bool, integer or float only)")
            self.specs[key] = (dt, shp)

        self._cm = None
        self._tmp: Path | None = None
        self._maps: dict[str, np.memmap] = {}
        self._written: dict[str, np.ndarray] = {}
        self._cursor = 0

    # -- context management
    def __enter__(self) -> "DatasetWriter":
        if self._cm is not None:
            raise RuntimeError("DatasetWriter is not re-entrant")
        if self.overwrite and self.path.exists():
            if not self.path.is_dir():
                raise ValueError(f"refusing to overwrite {self.path}: it is a file, not a dataset")
            if any(self.path.iterdir()) and not (self.path / MANIFEST).is_file():
                raise ValueError(f"refusing to overwrite {self.path}: it is a non-empty directory "
                                 f"without {MANIFEST}, so probably not a dataset. If it is the "
                                 "leftover of an interrupted or broken dataset write, delete it "
                                 f"(rm -r {self.path}) and run again")
        self._cm = _io.atomic_directory(self.path, overwrite=self.overwrite)
        self._tmp = self._cm.__enter__()
        try:
            for key, (dt, shp) in self.specs.items():
                self._maps[key] = np.lib.format.open_memmap(
                    self._tmp / f"{key}.npy", mode="w+", dtype=dt, shape=(self.count,) + shp)
                self._written[key] = np.zeros(self.count, dtype=bool)
        except BaseException as exc:
            self._abort(exc)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._abort(exc)
            return False
        try:
            self._finish()
        except BaseException as err:
            self._abort(err)
            raise
        self._maps.clear()
        cm, self._cm = self._cm, None
        cm.__exit__(None, None, None)  # moves the directory into place
        return False

    def _abort(self, exc: BaseException | None) -> None:
        self._maps.clear()
        cm, self._cm = self._cm, None
        if cm is not None:
            try:
                cm.__exit__(type(exc) if exc is not None else RuntimeError,
                            exc if exc is not None else RuntimeError("aborted"), None)
            except BaseException:  # the context manager re-raises `exc`; the caller raises it
                pass

    # -- writing
    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None:
        """Fill rows ``[start, start + len)`` of the arrays named in `batch`: each (n, ...) with
        the declared dtype and per-sample shape (e.g. ``rgb`` (n, H, W, 3) uint8, ``kp3d``
        (n, 21, 3) mm); a single sample without the leading axis counts as n = 1."""
        if self._cm is None:
            raise RuntimeError("use DatasetWriter as a context manager (`with DatasetWriter(...) as w`)")
        if not batch:
            raise ValueError("empty batch")
        unknown = sorted(set(batch) - set(self.specs))
        if unknown:
            hint = " (declare optional/extra arrays: with_parts=True or extras={...})"
            raise ValueError(f"unknown array(s) {unknown}; expected a subset of {sorted(self.specs)}{hint}")
        start = int(start)
        converted = {k: self._convert(k, v) for k, v in batch.items()}
        lengths = {k: v.shape[0] for k, v in converted.items()}
        n = next(iter(lengths.values()))
        if len(set(lengths.values())) != 1:
            raise ValueError(f"batch arrays have different lengths: {lengths}")
        if start < 0 or start + n > self.count:
            raise ValueError(f"rows [{start}, {start + n}) out of range for count={self.count}")
        for k, v in converted.items():
            self._maps[k][start:start + n] = v
            self._written[k][start:start + n] = True
        self._cursor = max(self._cursor, start + n)

    @property
    def rows_written(self) -> int:
        """One past the highest row written so far (the count kept by allow_fewer); unitless."""
        return self._cursor

    def append(self, batch: Mapping[str, np.ndarray]) -> int:
        """Write `batch` (arrays (n, ...) as in :meth:`write`) after the last row written so far;
        returns the start row used."""
        start = self._cursor
        self.write(start, batch)
        return start

    def _convert(self, key: str, value: Any) -> np.ndarray:
        dt, shp = self.specs[key]
        arr = np.asarray(value)
        if arr.ndim == len(shp):  # a single sample is accepted as a batch of one
            arr = arr[None]
        if arr.shape[1:] != shp:
            raise ValueError(f"array {key!r}: per-sample shape {arr.shape[1:]} does not match the "
                             f"expected {shp} (batch shape {arr.shape}, image_size={self.image_size})")
        if arr.dtype.hasobject or arr.dtype.kind not in "biuf":
            raise ValueError(f"array {key!r}: dtype {arr.dtype} is not numeric")
        if key == "depth":
            return self._convert_depth(arr)
        if dt.kind == "f":
            return arr.astype(dt, copy=False)
        if dt.kind == "b":
            if arr.dtype.kind == "b":
                return arr
            if arr.dtype.kind == "f" or (arr.size and not np.isin(arr, (0, 1)).all()):
                raise ValueError(f"array {key!r}: expected bool (or 0/1 integers), got {arr.dtype}"
                                 + ("" if arr.dtype.kind == "f" else " with values outside {0,1}"))
            return arr.astype(bool)
        # integer target
        if arr.dtype.kind == "f":
            if key == "rgb":
                raise ValueError(f"array 'rgb': expected uint8 0-255, got {arr.dtype} "
                                 "(convert with (img * 255).round().astype(np.uint8) if it is in [0, 1])")
            if arr.size and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
                raise ValueError(f"array {key!r}: expected {dt} integers, got non-integral {arr.dtype} values")
        if arr.size:
            info = np.iinfo(dt)
            lo, hi = (0, 1) if key in ("mask", "side") else (info.min, info.max)
            amin, amax = arr.min(), arr.max()
            if amin < lo or amax > hi:
                what = {"mask": " (hand mask must be 0/1, not 0/255)", "side": " (0 left, 1 right)"}
                raise ValueError(f"array {key!r}: values in [{amin}, {amax}] outside [{lo}, {hi}] "
                                 f"for {dt}{what.get(key, '')}")
        return arr.astype(dt, copy=False)

    def _convert_depth(self, arr: np.ndarray) -> np.ndarray:
        if arr.dtype == np.uint16:
            return arr
        if arr.dtype.kind != "f":
            raise ValueError(f"array 'depth': give float millimetres or uint16 units of "
                             f"{self.depth_scale_mm} mm, got {arr.dtype}")
        units = np.rint(np.asarray(arr, np.float64) / self.depth_scale_mm)
        units = np.nan_to_num(units, nan=0.0, posinf=65535.0, neginf=0.0)
        return np.clip(units, 0, 65535).astype(np.uint16)

    # -- finishing
    def _shrink_to_cursor(self) -> None:
        """allow_fewer: keep rows [0, cursor) (all written), shrink every .npy file in place."""
        k = self._cursor
        if k == 0:
            raise ValueError(f"dataset {self.path}: no sample was written; nothing was saved")
        for key, done in self._written.items():
            if not done[:k].all():
                raise ValueError(f"dataset {self.path}: array {key!r} has unwritten rows below "
                                 f"row {k}; nothing was saved")
        if k == self.count:
            return
        for m in self._maps.values():
            m.flush()
        self._maps.clear()
        for key, (dt, shp) in self.specs.items():
            _truncate_npy(self._tmp / f"{key}.npy", k)
            self._maps[key] = np.load(self._tmp / f"{key}.npy", mmap_mode="r+")
            self._written[key] = self._written[key][:k]
        self.count = k

    def _finish(self) -> None:
        if self.allow_fewer:
            self._shrink_to_cursor()
        for key, done in self._written.items():
            if not done.all():
                missing = np.flatnonzero(~done)
                raise ValueError(
                    f"dataset {self.path}: array {key!r} has {missing.size} of {self.count} rows never "
                    f"written (first missing row {missing[0]}); nothing was saved")
        has3, has2 = np.asarray(self._maps["has_3d"]), np.asarray(self._maps["has_2d"])
        fin3 = np.isfinite(np.asarray(self._maps["kp3d"])).reshape(self.count, -1)
        fin2 = np.isfinite(np.asarray(self._maps["kp2d"])).reshape(self.count, -1)
        checks = [
            (has3 & ~fin3.any(1), "has_3d is True but kp3d is all NaN"),
            (~has3 & fin3.any(1), "has_3d is False but kp3d has finite values (withheld 3D labels must be NaN)"),
            (has2 & ~fin2.any(1), "has_2d is True but kp2d is all NaN"),
        ]
        for bad, msg in checks:
            if bad.any():
                rows = np.flatnonzero(bad)
                raise ValueError(f"dataset {self.path}: {msg} for {rows.size} sample(s), "
                                 f"first {rows[:5].tolist()}")
        try:  # what a reader would reject (inf, NaN intrinsics, absurd coordinates)
            _check_labels(self.path, self._maps, "invalid labels; nothing was saved")
        except DatasetError as exc:
            raise ValueError(str(exc)) from None
        label_counts = _label_counts(self._maps)
        for m in self._maps.values():
            m.flush()
        arrays = {}
        for key in self._maps:
            dt, shp = self.specs[key]
            f = self._tmp / f"{key}.npy"
            arrays[key] = {"file": f.name, "dtype": dt.name, "shape": [self.count, *shp],
                           "nbytes": f.stat().st_size, "sha256": _file_sha256(f)}
        self._maps.clear()
        manifest = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "domain": self.domain,
            "split": self.split,
            "count": self.count,
            "image_size": list(self.image_size),
            "units": {"kp3d": "mm", "depth": "mm", "kp2d": "px"},
            "depth_scale_mm": self.depth_scale_mm,
            "joint_order": list(JOINT_NAMES),
            "root": self.root,
            "camera": "opencv",
            "source": self.source,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "arrays": arrays,
            "label_counts": label_counts,
            "extra": self.extra,
        }
        _io.atomic_write_json(self._tmp / MANIFEST, manifest)
        # the sha256 just computed are the verification of these very files
        _write_verified(self._tmp, [a["file"] for a in arrays.values()], 0.0, "DatasetWriter")


def _truncate_npy(path: Path, rows: int) -> None:
    """Shrink a C-ordered .npy file to its first `rows` rows in place: the header is rewritten
    with the new shape, padded with spaces to its old length (allowed by the format), and the
    file is truncated after the last kept row."""
    with open(path, "r+b") as fh:
        version = np.lib.format.read_magic(fh)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(fh)
        data_offset = fh.tell()
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays cannot be truncated by rows")
        new_shape = (rows,) + tuple(shape[1:])
        text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
            np.lib.format.dtype_to_descr(dtype), new_shape)
        len_bytes = 2 if version == (1, 0) else 4
        room = data_offset - 6 - 2 - len_bytes
        if len(text) + 1 > room:
            raise ValueError(f"{path}: new .npy header does not fit")  # cannot happen: shorter
        fh.seek(6 + 2 + len_bytes)
        fh.write((text + " " * (room - len(text) - 1) + "\n").encode("latin1"))
        fh.truncate(data_offset + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


def write_dataset(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, name: str,
                  domain: str, split: str, source: Mapping[str, Any] | None = None,
                  depth_scale_mm: float = DEFAULT_DEPTH_SCALE_MM, overwrite: bool = False,
                  extra: Mapping[str, Any] | None = None, root: str = "wrist") -> Path:
    """Write a small in-memory dataset in one go; returns the dataset path.

    `arrays` holds the required arrays, optionally ``parts``, and any extras (their dtype and
    trailing shape are taken from the given arrays), each (N, ...) as in the module doc (``rgb``
    (N, H, W, 3) uint8, ``kp3d`` (N, 21, 3) mm, ...). Count and image size come from ``rgb``.
    depth_scale_mm: mm per stored ``depth`` unit; root: what joint 0 is ("wrist", or e.g. STB's "palm").
    """
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"write_dataset: missing required array(s) {missing}")
    rgb = np.asarray(arrays["rgb"])
    if rgb.ndim != 4:
        raise ValueError(f"array 'rgb': expected (N,H,W,3), got shape {rgb.shape}")
    extras = {}
    for k, v in arrays.items():
        if k not in ARRAY_SPECS:
            v = np.asarray(v)
            extras[k] = (v.dtype, v.shape[1:])
    with DatasetWriter(path, count=rgb.shape[0], image_size=rgb.shape[1:3], name=name,
                       domain=domain, split=split, source=source, depth_scale_mm=depth_scale_mm,
                       extras=extras, overwrite=overwrite, with_parts="parts" in arrays,
                       extra=extra, root=root) as w:
        w.write(0, arrays)
    return Path(path)


# ----------------------------------------------------------------------------- reader
class HandData:
    """A loaded dataset split: raw (memory-mapped) arrays plus the manifest.

    ``data[i]`` returns a dict of per-sample NumPy arrays (copies, not memmaps) with ``depth``
    converted to float32 millimetres (0 stays 0 = missing); ``data.arrays`` holds the raw arrays
    ((N, H, W) uint16 ``depth``, ``depth_scale_mm`` mm per unit; other shapes in the module doc).
    """

    def __init__(self, path: Path, manifest: dict, arrays: dict[str, np.ndarray], mmap: bool):
        self.path = Path(path)
        self.manifest = manifest
        self.arrays = arrays
        self.mmap = mmap

    @property
    def count(self) -> int:
        """Number of samples N (unitless)."""
        return int(self.manifest["count"])

    @property
    def image_size(self) -> tuple[int, int]:
        """Crop size (H, W) in px."""
        h, w = self.manifest["image_size"]
        return int(h), int(w)

    @property
    def depth_scale_mm(self) -> float:
        """Millimetres per stored ``depth`` unit (mm)."""
        return float(self.manifest.get("depth_scale_mm", DEFAULT_DEPTH_SCALE_MM))

    @property
    def name(self) -> str:
        """The manifest's dataset name (the folder name if absent); no arrays."""
        return str(self.manifest.get("name", self.path.name))

    @property
    def label_counts(self) -> dict:
        """The manifest's ``label_counts`` (a copy; empty if absent): sample counts, unitless."""
        return dict(self.manifest.get("label_counts", {}))

    def __len__(self) -> int:
        return self.count

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def depth_mm(self, idx) -> np.ndarray:
        """Depth of sample(s) `idx` as float32 mm, (H, W) for one index or (n, H, W) for
        several (0 = missing)."""
        raw = np.asarray(self.arrays["depth"][idx])
        return (raw * self.depth_scale_mm).astype(np.float32)

    def __getitem__(self, idx) -> dict[str, np.ndarray]:
        if isinstance(idx, (int, np.integer)):
            i = int(idx)
            if i < -self.count or i >= self.count:
                raise IndexError(f"index {idx} out of range for dataset of {self.count} samples")
            idx = i % self.count
        out = {}
        for key, arr in self.arrays.items():
            out[key] = self.depth_mm(idx) if key == "depth" else np.array(arr[idx])
        return out

    def __iter__(self):
        for i in range(self.count):
            yield self[i]

    def __repr__(self) -> str:
        m = self.manifest
        return (f"HandData({m.get('name')!r}, domain={m.get('domain')!r}, split={m.get('split')!r}, "
                f"count={self.count}, image_size={self.image_size}, path='{self.path}')")

    # memmaps would pickle as full copies (e.g. DataLoader workers under spawn): reopen instead
    def __getstate__(self):
        if not self.mmap:
            return self.__dict__
        return {"path": str(self.path), "manifest": self.manifest, "mmap": True, "arrays": None}

    def __setstate__(self, state):
        if state.get("arrays") is None:
            fresh = load_dataset(state["path"], verify="none", mmap=True)
            state = dict(fresh.__dict__)
        self.__dict__.update(state)


def _fail(msg: str) -> "DatasetError":
    return DatasetError(msg)


def _read_manifest(path: Path, hint: str) -> dict:
    if not path.exists():
        stale = _stale_temporaries(path)
        extra = (f" (found {len(stale)} leftover temporary dir(s) such as '{stale[0].name}': an "
                 "interrupted write; re-run it)") if stale else ""
        raise _fail(f"no dataset at {path}; {hint}{extra}")
    if not path.is_dir():
        raise _fail(f"{path} is not a dataset directory (it is a file)")
    mpath = path / MANIFEST
    if not mpath.is_file():
        stale = _stale_temporaries(path)
        found = (f"; found leftover '{stale[0].name}'" if stale else "")
        raise _fail(f"{mpath}: missing {MANIFEST}, so {path} is not a complete dataset. "
                    f"A leftover '{path.name}{_io.TMP_MARK}*' directory next to it means an "
                    f"interrupted write{found}; delete {path} (a folder without {MANIFEST} is "
                    f"never overwritten) and re-create the dataset ({hint})")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(f"{mpath}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise _fail(f"{mpath}: cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        got = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise _fail(f"{mpath}: schema is {got!r}, expected {SCHEMA!r}: not a weakhand dataset")
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise _fail(f"{mpath}: schema_version is {version!r}, expected an integer")
    if version > SCHEMA_VERSION:
        raise _fail(f"{mpath}: schema_version {version} is newer than this weakhand supports "
                    f"({SCHEMA_VERSION}); update the weakhand package")
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise _fail(f"{mpath}: missing key(s) {missing}")
    if not isinstance(manifest["arrays"], dict):
        raise _fail(f"{mpath}: 'arrays' must be an object")
    absent = [k for k in REQUIRED_ARRAYS if k not in manifest["arrays"]]
    if absent:
        raise _fail(f"{mpath}: required array(s) {absent} not listed under 'arrays'")
    try:
        count = int(manifest["count"])
        h, w = (int(v) for v in manifest["image_size"])
    except (TypeError, ValueError):
        raise _fail(f"{mpath}: bad 'count' {manifest['count']!r} or 'image_size' "
                    f"{manifest['image_size']!r}") from None
    manifest["count"], manifest["image_size"] = count, [h, w]
    return manifest


def load_dataset(path: str | os.PathLike, verify: str = "once", mmap: bool = True,
                 hint: str = DEFAULT_HINT) -> HandData:
    """Open a dataset split written by :class:`DatasetWriter`.

    verify: ``"none"`` (headers only), ``"size"`` (file sizes against the manifest, and the
    labels, see the module doc), ``"once"`` (the default: "size", plus every sha256 against the
    manifest the first time, recorded in ``.verified.json`` so that later opens skip it until a
    file or the manifest changes; the time it took is printed) or ``"full"`` (recompute every
    sha256 every time). Every problem raises :class:`DatasetError` naming the file, what is
    wrong and how to get a good copy back. `hint` is appended when there is no dataset at `path`.
    Returns a :class:`HandData`: arrays (N, ...) as in the module doc, e.g. ``rgb`` (N, H, W, 3)
    uint8, ``kp2d`` (N, 21, 2) crop px, ``kp3d`` (N, 21, 3) mm.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {', '.join(map(repr, VERIFY_MODES))}, got "
                         f"{verify!r}")
    path = Path(path)
    manifest = _read_manifest(path, hint)
    try:
        return _load_checked(path, manifest, verify, mmap)
    except DatasetError as exc:
        if verify == "none" or "; fix: " in str(exc):
            raise
        raise DatasetError(f"{exc}; fix: {fix_hint(path, manifest)}") from None


def _check_labels(path: Path, arrays: Mapping[str, np.ndarray], why: str = "corrupt labels"
                  ) -> None:
    """The label rules of the format (module doc); DatasetError naming the file and samples."""
    def bad(fname: str, mask: np.ndarray, what: str) -> None:
        rows = np.flatnonzero(mask)
        if rows.size:
            raise _fail(f"{path / fname}: {what} in {rows.size} sample(s), first "
                        f"{rows[:5].tolist()} ({why})")

    n = len(arrays["kp2d"])
    with np.errstate(invalid="ignore", over="ignore"):
        for key in ("kp2d", "kp3d", "K"):
            a = np.asarray(arrays[key]).reshape(n, -1)
            if key == "K":
                bad("K.npy", ~np.isfinite(a).all(1), "non-finite intrinsics (NaN or inf)")
            else:
                bad(f"{key}.npy", np.isinf(a).any(1), "infinite coordinates")
            bad(f"{key}.npy", (np.abs(np.nan_to_num(a)) > LABEL_LIMIT).any(1),
                f"coordinates beyond {LABEL_LIMIT:g}")
        fin3 = np.isfinite(np.asarray(arrays["kp3d"]).reshape(n, -1)).any(1)
        fin2 = np.isfinite(np.asarray(arrays["kp2d"]).reshape(n, -1)).any(1)
    has3, has2 = np.asarray(arrays["has_3d"]), np.asarray(arrays["has_2d"])
    bad("kp3d.npy", has3 & ~fin3, "has_3d is True but kp3d is all NaN")
    bad("kp3d.npy", ~has3 & fin3, "has_3d is False but kp3d has finite values")
    bad("kp2d.npy", has2 & ~fin2, "has_2d is True but kp2d is all NaN")


def _verify_checksums(path: Path, manifest: dict, files: dict[str, str]) -> tuple[float, int]:
    """sha256 of every array file against the manifest (DatasetError on a mismatch)."""
    import time as _time

    t0 = _time.perf_counter()
    total = 0
    for key, fname in files.items():
        meta = manifest["arrays"][key]
        fpath = path / fname
        if "sha256" not in meta:
            raise _fail(f"{fpath}: manifest has no sha256 to verify against")
        digest = _file_sha256(fpath)
        total += fpath.stat().st_size
        if digest != meta["sha256"]:
            raise _fail(f"{fpath}: checksum mismatch (sha256 {digest[:16]}..., manifest "
                        f"{str(meta['sha256'])[:16]}...): the file is corrupt or was modified")
    return _time.perf_counter() - t0, total


def _load_checked(path: Path, manifest: dict, verify: str, mmap: bool) -> HandData:
    count = manifest["count"]
    image_size = tuple(manifest["image_size"])
    arrays: dict[str, np.ndarray] = {}
    for key, meta in manifest["arrays"].items():
        if not isinstance(meta, dict) or not {"file", "dtype", "shape"} <= set(meta):
            raise _fail(f"{path / MANIFEST}: entry for array {key!r} needs 'file', 'dtype', 'shape'")
        try:
            want_shape = tuple(int(s) for s in meta["shape"])
            expected = meta.get("nbytes")
            expected = None if expected is None else int(expected)
        except (TypeError, ValueError, OverflowError):
            raise _fail(f"{path / MANIFEST}: array {key!r} has a bad shape {meta['shape']!r} or "
                        f"nbytes {meta.get('nbytes')!r}") from None
        fname = str(meta["file"])
        fpath = path / fname
        if Path(fname).name != fname:
            raise _fail(f"{path / MANIFEST}: array {key!r} file {fname!r} must be a plain file name")
        if not fpath.is_file():
            raise _fail(f"{fpath}: array file missing (listed for {key!r} in {MANIFEST})")
        actual = fpath.stat().st_size
        if verify != "none" and expected is not None and actual != int(expected):
            raise _fail(f"{fpath}: size {actual} bytes, manifest says {expected} bytes "
                        f"({'truncated' if actual < int(expected) else 'larger than written'})")
        try:
            arr = np.load(fpath, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:  # a damaged .npy header: ValueError, TokenError, TypeError...
            exp = f"{expected} bytes expected" if expected is not None else "size not in manifest"
            raise _fail(f"{fpath}: cannot be read as .npy ({exc}); file has {actual} bytes, {exp} "
                        "(truncated or corrupt)") from None
        try:
            want_dtype = np.dtype(meta["dtype"])
        except (TypeError, ValueError, SyntaxError):
            raise _fail(f"{path / MANIFEST}: array {key!r} has unknown dtype {meta['dtype']!r}") from None
        if arr.dtype != want_dtype:
            raise _fail(f"{fpath}: dtype {arr.dtype} does not match manifest dtype {want_dtype}")
        if arr.shape != want_shape:
            raise _fail(f"{fpath}: shape {arr.shape} does not match manifest shape {want_shape}")
        if key in ARRAY_SPECS:
            sdt, sshp = ARRAY_SPECS[key]
            sshp = _resolve_shape(sshp, image_size)
            if arr.dtype != sdt or arr.shape[1:] != sshp:
                raise _fail(f"{fpath}: array {key!r} is {arr.dtype} {arr.shape}, the schema needs "
                            f"{sdt} (N,{','.join(map(str, sshp))}) with image_size={list(image_size)}")
        if arr.ndim == 0 or arr.shape[0] != count:
            raise _fail(f"{fpath}: count mismatch: {arr.shape[0] if arr.ndim else 'scalar'} rows, "
                        f"manifest count is {count}")
        arrays[key] = arr
    if verify == "none":
        return HandData(path, manifest, arrays, mmap)
    files = {k: str(m["file"]) for k, m in manifest["arrays"].items()}
    if verify == "full" or (verify == "once" and not _is_verified(path, files.values())):
        seconds, nbytes = _verify_checksums(path, manifest, files)
        if verify == "once":
            saved = _write_verified(path, files.values(), seconds, "load_dataset")
            print(f"verified the checksums of {path} ({len(files)} files, {nbytes / 1e6:.1f} MB) "
                  f"in {seconds:.2f} s" + (f"; recorded in {VERIFIED}: later opens skip this "
                                           "until a file changes" if saved else
                                           " (folder not writable: not recorded)"), flush=True)
    _check_labels(path, arrays)
    return HandData(path, manifest, arrays, mmap)


def dataset_summary(data: HandData | str | os.PathLike) -> dict:
    """Plain-dict summary for notebooks: counts, label counts, arrays and bytes on disk."""
    if not isinstance(data, HandData):
        data = load_dataset(data, verify="none")
    m = data.manifest
    disk = sum(f.stat().st_size for f in data.path.iterdir() if f.is_file())
    return {
        "name": m.get("name"), "domain": m.get("domain"), "split": m.get("split"),
        "path": str(data.path),
        "count": data.count,
        "image_size": list(data.image_size),
        "label_counts": dict(m.get("label_counts", {})),
        "depth_scale_mm": data.depth_scale_mm,
        "arrays": {k: {"dtype": str(a.dtype), "shape": list(a.shape)} for k, a in data.arrays.items()},
        "disk_bytes": int(disk),
        "created": m.get("created"),
        "source": m.get("source", {}),
    }


def _label_counts(arrays: Mapping[str, np.ndarray]) -> dict:
    """The manifest's ``label_counts`` of arrays (N, ...): samples with 2D / 3D / depth, left / right."""
    side = np.asarray(arrays["side"])
    return {"has_2d": int(np.count_nonzero(arrays["has_2d"])), "has_3d": int(np.count_nonzero(arrays["has_3d"])),
            "has_depth": int(np.count_nonzero(arrays["has_depth"])),
            "left": int(np.count_nonzero(side == 0)), "right": int(np.count_nonzero(side == 1))}


def data_view(data: HandData, rows: slice | None = None, *, hide_3d: bool = False,
              name: str | None = None) -> HandData:
    """An in-memory view of a split: the samples `rows` (a slice; None: all) and, with
    `hide_3d`, no 3D labels (``kp3d`` (n, 21, 3) all NaN, ``has_3d`` (n,) False) — what a weakly
    labelled sample carries. Images stay memory-mapped (a slice of a memmap is a view); the
    manifest's ``count`` and ``label_counts`` describe the view, and ``view`` records what was
    cut ({"rows": [start, stop], "hide_3d"}), so a view is never mistaken for the stored split."""
    start, stop, step = (rows or slice(None)).indices(data.count)
    if step != 1:
        raise ValueError(f"data_view: rows must be a contiguous slice, got {rows}")
    arrays = {k: a[start:stop] for k, a in data.arrays.items()}
    n = stop - start
    if hide_3d:
        arrays["kp3d"] = np.full((n, NUM_JOINTS, 3), np.nan, np.float32)
        arrays["has_3d"] = np.zeros(n, bool)
    manifest = dict(data.manifest, count=n, label_counts=_label_counts(arrays),
                    view={"rows": [start, stop], "hide_3d": bool(hide_3d)})
    if name:
        manifest["name"] = name
    return HandData(data.path, manifest, arrays, mmap=False)
