"""The metrics log of a trainer: ``<run_dir>/<name>/metrics.jsonl``, one JSON object per line.

``kind`` is "train" (every `log_every` steps: loss-term means over those steps, ``lr``,
``grad_norm``, ``images_per_s``), "val" (one per validation: the metrics of ``val_fn``),
"start" / "resume" / "error" (events). :func:`read_history` turns the file into aligned lists,
:func:`loss_figure` draws them.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOG_FILE = "metrics.jsonl"

#: keys of log records that are not loss terms / validation metrics
RECORD_KEYS = frozenset({"kind", "step", "epoch", "time", "elapsed_s", "images_per_s", "lr",
                         "grad_norm", "val_s", "steps", "resumed_from", "terms", "message"})

__all__ = ["LOG_FILE", "RECORD_KEYS", "append_record", "read_records", "read_history",
           "loss_figure", "jsonable"]


def jsonable(obj: Any) -> Any:
    """A JSON-safe deep copy (NumPy scalars -> numbers, arrays/tensors of any shape (...) ->
    nested lists, Paths and unknown objects -> str)."""
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, torch.Tensor):
            return o.tolist()
        if isinstance(o, Mapping):
            return dict(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o, key=str)
        return str(o)
    return json.loads(json.dumps(obj, default=default))


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def append_record(path: Path, rec: Mapping[str, Any]) -> None:
    """Append `rec` to the log as one JSON line (NumPy/torch values made JSON-safe, NaN/inf
    written as null); no arrays in the file (arrays become nested lists)."""
    line = json.dumps({k: _finite_or_none(v) for k, v in jsonable(dict(rec)).items()})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl`` as a dict (``elapsed_s`` in seconds), in file order;
    [] when the file is missing, a cut last line skipped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:  # the last line may be cut by a kill; anything else is odd
                warnings.warn(f"{path}:{i + 1}: unparseable log line skipped", stacklevel=3)
    return out


def read_history(path: str | Path) -> dict[str, Any]:
    """Metrics of a run as lists: `path` is a trainer folder or its ``metrics.jsonl``.

    Returns ``{"train": {"step": [...], "epoch": [...], "elapsed_s": [...],
    "images_per_s": [...], "lr": [...], "grad_norm": [...], <term>: [...]},
    "val": {"step": [...], "epoch": [...], <metric>: [...]}, "loss_terms": [...],
    "val_metrics": [...]}``; lists within "train" (and within "val") are aligned, a value missing
    from a record is None. ``elapsed_s`` / ``val_s`` are seconds, ``lr`` the first param
    group's learning rate, loss terms and metrics scalars in their own units.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    records = read_records(path)
    out: dict[str, Any] = {"train": {}, "val": {}, "loss_terms": [], "val_metrics": []}
    base = {"train": ["step", "epoch", "elapsed_s", "images_per_s", "lr", "grad_norm"],
            "val": ["step", "epoch", "elapsed_s", "val_s"]}
    for kind, names_key in (("train", "loss_terms"), ("val", "val_metrics")):
        recs = [r for r in records if r.get("kind") == kind]
        names: list[str] = []
        for r in recs:
            names += [k for k in r if k not in RECORD_KEYS and k not in names]
        out[names_key] = names
        cols = [c for c in base[kind] if any(c in r for r in recs)] or ["step", "epoch"]
        out[kind] = {c: [r.get(c) for r in recs] for c in cols + names}
    return out


def loss_figure(history: Mapping[str, Any] | str | Path, title: str | None = None,
                log_y: bool = False):
    """Plotly figure of the training loss terms (left axis) and validation metrics (right axis).

    `history` is :meth:`Trainer.history`'s / :func:`read_history`'s dict, or a trainer folder /
    metrics file. One trace per loss term (solid) and per validation metric (dashed, named
    ``val/<metric>``). x: optimizer step; height 380 px.
    """
    import plotly.graph_objects as go  # local: the training loop itself never needs plotly

    if not isinstance(history, Mapping):
        history = read_history(history)
    train, val = history.get("train", {}), history.get("val", {})
    fig = go.Figure()
    for term in history.get("loss_terms", []):
        fig.add_trace(go.Scatter(x=train["step"], y=train[term], name=term, mode="lines",
                                 legendgroup="train", yaxis="y"))
    metrics = history.get("val_metrics", [])
    for m in metrics:
        fig.add_trace(go.Scatter(x=val["step"], y=val[m], name=f"val/{m}", mode="lines+markers",
                                 line=dict(dash="dash"), legendgroup="val", yaxis="y2"))
    layout: dict[str, Any] = dict(
        title=title, xaxis=dict(title="step"),
        yaxis=dict(title="training loss", type="log" if log_y else "linear"),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), height=380,
        margin=dict(l=60, r=60, t=70 if title else 40, b=40))
    if metrics:
        layout["yaxis2"] = dict(title="validation", overlaying="y", side="right", showgrid=False)
    fig.update_layout(**layout)
    return fig
