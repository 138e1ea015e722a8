"""Write synthetic datasets in the workbook's on-disk format (or reuse an identical one)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..data.format import MANIFEST, DatasetWriter, load_dataset
from ..progress import progress
from . import generator
from .domains import DomainStyle, make_style

GENERATOR_VERSION = 3  # bump when the generator's output changes for a given seed


def _source(style: DomainStyle, n: int, seed: int, split: str, size: int, with_3d: bool) -> dict:
    return {"kind": "synthetic", "generator": "weakhand.synth", "generator_version":
            GENERATOR_VERSION, "block": generator.BLOCK, "seed": seed, "split": split, "n": n,
            "image_size": size, "with_3d": with_3d, "style": style.to_dict()}


def _same_source(path: Path, source: dict) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    old = dict(manifest.get("source", {}))
    old.pop("weakhand_version", None)
    return json.loads(json.dumps(source)) == old


def make_dataset(path: str | os.PathLike, style: DomainStyle | str, n: int, seed: int = 0,
                 split: str = "train", size: int = 128, with_3d: bool | None = None,
                 reuse: bool = True, show_progress: bool = True) -> dict:
    """Generate `n` samples of `style` into the dataset directory `path`.

    With `reuse=True` an existing dataset made from exactly the same recipe (style, seed, split,
    size, generator version) is kept. The write is atomic. Returns a small report:
    {"path", "count", "reused", "seconds", "images_per_s"}.
    """
    style = make_style(style) if isinstance(style, str) else style
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if with_3d is None:
        with_3d = split not in style.withhold_3d_splits
    path = Path(path)
    source = _source(style, n, seed, split, size, with_3d)
    if reuse and _same_source(path, source):
        load_dataset(path, verify="size")  # still intact?
        return {"path": str(path), "count": n, "reused": True, "seconds": 0.0,
                "images_per_s": None}
    t0 = time.perf_counter()
    extras = {"subject": (np.int32, ()), "family": (np.int16, ()), "crop_box": (np.float32, (4,))}
    with DatasetWriter(path, n, (size, size), name=f"synth_{style.name}", domain=style.name,
                       split=split, source=source, with_parts=True, extras=extras,
                       overwrite=True) as writer:
        bar = progress(total=n, desc=f"{style.name}/{split}", unit="img",
                       disable=not show_progress)
        for start, block in generator.generate(style, n, seed, split, size, with_3d):
            writer.write(start, block)
            bar.update(len(block["rgb"]))
        bar.close()
    dt = time.perf_counter() - t0
    return {"path": str(path), "count": n, "reused": False, "seconds": dt,
            "images_per_s": n / dt}


#: (dataset name, style, split, profile knob with its sample count) of the default data.
DEFAULT_SPLITS = (
    ("synth_render", "render", "train", "n_render_train"),
    ("synth_render", "render", "val", "n_render_val"),
    ("synth_render", "render", "test", "n_render_test"),
    ("synth_sensor", "sensor", "train", "n_sensor_train"),
    ("synth_sensor", "sensor", "test", "n_sensor_test"),
)


def make_default_datasets(data_dir: str | os.PathLike, counts: dict, seed: int = 0,
                          size: int = 128, reuse: bool = True,
                          styles: dict | None = None) -> list[dict]:
    """Make (or reuse) the workbook's default datasets under `data_dir/<name>/<split>`.

    counts: {profile knob: n}, e.g. {"n_render_train": 8000, ...}; styles optionally replaces
    the built-in DomainStyle per style name; size: crop side in px. Returns one report row per
    split (count, reused, seconds, images_per_s, path; no arrays).
    """
    rows = []
    for name, style_name, split, knob in DEFAULT_SPLITS:
        style = (styles or {}).get(style_name) or make_style(style_name)
        rep = make_dataset(Path(data_dir) / name / split, style, int(counts[knob]), seed=seed,
                           split=split, size=size, reuse=reuse)
        rows.append({"dataset": name, "split": split, "count": rep["count"],
                     "3d_labels": split not in style.withhold_3d_splits,
                     "reused": rep["reused"], "seconds": round(rep["seconds"], 2),
                     "images_per_s": (round(rep["images_per_s"]) if rep["images_per_s"]
                                      else None),
                     "path": rep["path"]})
    return rows


def make_labelled_twin(src: str | os.PathLike, out: str | os.PathLike,
                       show_progress: bool = True) -> dict:
    """Re-generate a synthetic split whose 3D labels were withheld, with 3D kept: the same recipe
    (style, seed, split, size) gives byte-identical images, so this is the fully labelled twin
    used for upper-bound experiments. Reused when it already exists. Returns the report of
    :func:`make_dataset` ({"path", "count", "reused", "seconds", "images_per_s"}; no arrays)."""
    manifest = json.loads((Path(src) / MANIFEST).read_text())
    s = manifest["source"]
    if s.get("kind") != "synthetic":
        raise ValueError(f"{src}: not a synthetic dataset (source kind {s.get('kind')!r})")
    style = DomainStyle(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in s["style"].items()})
    return make_dataset(out, style, s["n"], seed=s["seed"], split=s["split"],
                        size=s["image_size"], with_3d=True, show_progress=show_progress)
