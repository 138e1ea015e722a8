"""Evaluation of every trained variant of a run folder (notebook ``70_evaluate_variants``).

    scores, tvs = evaluation.evaluate_run(run.path, "synth_sensor/test", limits=limits)
    table = evaluation.results_table(scores)          # rows + gap closure, mean ± std over seeds

``scores[family][variant][seed]`` is :func:`score`'s dict for one trained model.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..data import HandDataset, load_dataset
from ..io import atomic_write_text
from ..progress import progress
from ..train.checkpoint import checkpoint_info
from . import oracle
from .report import Report, table_html
from .scores import (GAP_METRICS, PAIRED_METRICS, PAPER_REFERENCE, TABLE_METRICS, WEAK_VARIANTS, aggregate,
                     display_gaps, display_rows, fmt, gap_closed, paper_reference_rows,
                     paired_versus, results_table, scalars, score, table_csv, target_checks, versus_2d,
                     violation_summary)
from .variants import (FAMILIES, FAMILY_LABELS, ROW_LABELS, ROW_ORDER, TrainedVariant, discover,
                       load_model, predict, train_size)

__all__ = ["evaluate_run", "test_sets", "any_score", "dataset_for", "parse_seed_list", "write_demo_crops", "Report", "table_html", "GAP_METRICS", "PAPER_REFERENCE",
           "TABLE_METRICS", "WEAK_VARIANTS", "aggregate", "display_gaps", "display_rows", "fmt",
           "gap_closed", "paper_reference_rows", "results_table", "scalars", "score", "table_csv", "target_checks",
           "versus_2d", "paired_versus", "PAIRED_METRICS", "violation_summary", "FAMILIES", "FAMILY_LABELS", "ROW_LABELS", "ROW_ORDER", "TrainedVariant",
           "discover", "load_model", "predict", "train_size"]


def test_sets(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Test splits to evaluate on: the synthetic target ``synth_sensor/test`` and the test split
    of every converted real dataset under ``<run>/data`` (recipes write their evaluation protocol
    into the manifest's ``extra.protocol``). {split path relative to data/: protocol dict};
    no arrays."""
    import json
    data = Path(run_dir) / "data"
    out: dict[str, dict[str, Any]] = {}
    if (data / "synth_sensor/test/manifest.json").is_file():
        out["synth_sensor/test"] = {"root": "wrist", "align": "GT root + scale; Procrustes",
                                    "notes": "the synthetic target domain (sensor look)"}
    for m in sorted(data.glob("*/*/manifest.json")):
        name = f"{m.parent.parent.name}/{m.parent.name}"
        if name.startswith("synth_"):
            continue
        try:
            extra = json.loads(m.read_text()).get("extra", {}) or {}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{m}: unreadable manifest: {exc}") from exc
        proto = extra.get("protocol")
        if proto and proto.get("eval_split", "test") == m.parent.name:
            out[name] = proto
    return out


def evaluate_run(run_dir: str | os.PathLike, split: str = "synth_sensor/test", *,
                 families: Iterable[str] = FAMILIES, seeds: Iterable[int] | None = None,
                 limits=None, device: str = "cpu", batch_size: int = 64,
                 show_progress: bool = True, constant_from: str | None = "synth_render/train",
                 ) -> tuple[dict, list[TrainedVariant]]:
    """Predict and score every trained variant of `run_dir` on ``data/<split>``.

    Returns (scores[family][variant][seed] = :func:`score` dict, the variants evaluated). With
    `constant_from` (a fully labelled source split under ``data/``, if present), every family
    also gets the row ``"constant"``: the constant pose fitted on that split
    (:mod:`weakhand.evaluation.baselines`), scored at the family's input size with the same protocol.
    Raises FileNotFoundError naming the run folder when it holds no trained variant. Scores hold
    errors in mm / px and arrays such as ``pred3d`` (N, 21, 3) mm (:mod:`.scores` key vocabulary).
    """
    import torch

    run = Path(run_dir)
    tvs = discover(run, families, seeds)
    if not tvs:
        raise FileNotFoundError(f"{run}: no trained variant found (run 20_train_stage1_pose, "
                                "50_train_stage3_weak or 60_train_pose25d first)")
    loaders: dict[int, Any] = {}
    scores: dict[str, dict[str, dict[int, dict]]] = {}
    labels: dict[str, tuple[dict, int]] = {}
    for tv in progress(tvs, desc=f"evaluating on {split}", disable=not show_progress):
        model, info = load_model(tv, device)
        size = train_size(info)
        if size not in loaders:
            ds = HandDataset(run / "data" / split, out_size=size, mirror_left=True)
            loaders[size] = torch.utils.data.DataLoader(ds, batch_size=batch_size)
        p = predict(tv, model, loaders[size], device)
        scores.setdefault(tv.family, {}).setdefault(tv.variant, {})[tv.seed] = score(p, limits)
        labels.setdefault(tv.family, (p, size))
    src = run / "data" / constant_from if constant_from else None
    if src is not None and (src / "manifest.json").exists():
        from .baselines import fit_constant_pose, score_constant_pose
        const = fit_constant_pose(src)
        for family, (p, size) in labels.items():
            scores[family]["constant"] = {0: score_constant_pose(const, p, (size, size), limits)}
    return scores, tvs


def parse_seed_list(seeds: Any) -> list[int] | None:
    """The notebook's `seeds` parameter: "" / None -> None (every seed found), "0,1" or [0, 1]
    or (0, 1) or 2 -> a list of ints."""
    if seeds is None or (isinstance(seeds, str) and not seeds.strip()):
        return None
    items = seeds.split(",") if isinstance(seeds, str) else (
        list(seeds) if isinstance(seeds, (list, tuple)) else [seeds])
    try:
        out = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        raise ValueError(f"seeds must be a list of integers or a comma string like '0,1', got {seeds!r}") from None
    return out or None


def any_score(scores: dict, family: str | None = None) -> dict:
    """One score dict of `scores` (of `family` if given; the smallest seed): its labels
    (``gt3d`` (N, 21, 3) mm, ``kp2d`` (N, 21, 2) px, ``index`` (N,)) are the same in every score
    of a split."""
    by_variant = scores[family] if family else next(iter(scores.values()))
    by_seed = next(iter(by_variant.values()))
    return by_seed[min(by_seed)]


def write_demo_crops(run_dir: str | os.PathLike, split: str, indices: Iterable[int],
                     out_dir: str | os.PathLike, broken: bool = True) -> tuple[Path, Path, bool]:
    """Write test crops of ``data/<split>`` as PNG files with their intrinsics (``K.json``:
    {file name: 3x3}) for a `weakhand predict` demo; with `broken`, also a corrupt PNG and a
    text file (predict reports them and goes on). Returns (images folder, K file, True if every
    written crop is a left hand)."""
    import json

    import cv2
    import numpy as np

    d = load_dataset(Path(run_dir) / "data" / split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    Ks, sides = {}, []
    for i in indices:
        name = f"{split.replace('/', '_')}_{int(i):05d}.png"
        rgb = np.asarray(d.arrays["rgb"][int(i)])
        if not cv2.imwrite(str(out / name), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"could not write {out / name}")
        Ks[name] = np.asarray(d.arrays["K"][int(i)], dtype=float).tolist()
        sides.append(int(d.arrays["side"][int(i)]))
    if broken:
        (out / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        (out / "notes.txt").write_text("not an image\n")
    k_path = out.parent / "K.json"
    atomic_write_text(k_path, json.dumps(Ks, indent=1))
    return out, k_path, all(s == 0 for s in sides)


def dataset_for(run_dir: str | os.PathLike, split: str, tv: TrainedVariant):
    """The HandDataset (at the variant's crop size in px, left hands mirrored) its scores index:
    items with ``image`` (3, S, S), ``kp2d`` (21, 2) px, ``kp3d`` (21, 3) mm."""
    return HandDataset(Path(run_dir) / "data" / split, out_size=train_size(load_info(tv)),
                       mirror_left=True)


def load_info(tv: TrainedVariant) -> dict:
    """The checkpoint info of `tv` (:func:`~weakhand.train.checkpoint.checkpoint_info`:
    ``config["train_size"]`` is the input crop side in px); no arrays."""
    return checkpoint_info(tv.checkpoint)
