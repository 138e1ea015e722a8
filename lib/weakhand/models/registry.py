"""Every network class a checkpoint can hold, by *kind* (its class name): how to describe an
instance (kind + constructor configuration as a plain dict, written by the Trainer into every
checkpoint as ``model_specs``) and how to rebuild it.

    model = build_model("runs/cpu/stage3_2d/last.pt")        # weights loaded, eval mode

:func:`build_model` is the one way a model is rebuilt from a checkpoint (``weakhand predict``,
notebook 70's evaluation, the regulariser of stage 3). What a checkpoint says it holds, including
the one fallback for checkpoints written before they described themselves, is
:func:`weakhand.train.checkpoint.model_specs`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from .cai_pose import CaiPoseNet, PoseNetConfig
from .depth_regularizer import DepthRegularizer
from .hourglass import DenseDepthNet
from .lifter import Lifter, LifterConfig
from .pose25d_net import Pose25DConfig, Pose25DNet

#: the RGB pose networks and their model family (the evaluation's and predict's "kind")
POSE_FAMILIES = {"CaiPoseNet": "cai", "Pose25DNet": "pose25d"}

__all__ = ["KINDS", "POSE_FAMILIES", "build", "build_model", "describe"]


class ConfigError(ValueError):
    """A configuration that the model class does not accept (unknown keys or bad values); no arrays."""


def _from_dataclass(model_cls: type[nn.Module], cfg_cls: type) -> Callable[[Mapping[str, Any]], nn.Module]:
    def build(config: Mapping[str, Any]) -> nn.Module:
        unknown = sorted(set(config) - {f.name for f in fields(cfg_cls)})
        if unknown:
            raise ConfigError(f"network configuration has keys {unknown} that {cfg_cls.__name__} "
                              "does not know (checkpoint from a newer weakhand?)")
        d = dict(config)
        if "blocks" in d:
            d["blocks"] = tuple(d["blocks"])
        return model_cls(cfg_cls(**d))
    return build


def _dropout(module: nn.Module) -> float:
    return float(next(m.p for m in module.modules() if isinstance(m, nn.Dropout)))


def _regularizer_config(m: DepthRegularizer) -> dict[str, Any]:
    convs = [layer for layer in m.net if isinstance(layer, nn.ConvTranspose2d)]
    return {"num_joints": m.num_joints, "out_size": m.out_size,
            "widths": [c.out_channels for c in convs[:-1]], "dropout": _dropout(m)}


def _dense_config(m: DenseDepthNet) -> dict[str, Any]:
    return {"num_joints": m.num_joints, "stacks": m.stacks, "width": m.width,
            "hg_depth": m.hg_depth, "head": m.head, "dropout": _dropout(m)}


@dataclass(frozen=True)
class Kind:
    """How one network class is described (``config(module) -> dict``, the constructor's
    arguments as plain data) and rebuilt (``build(config) -> module``, fresh weights); no arrays."""
    config: Callable[[nn.Module], dict[str, Any]]
    build: Callable[[Mapping[str, Any]], nn.Module]


KINDS: dict[str, Kind] = {
    "CaiPoseNet": Kind(lambda m: m.cfg.to_dict(), _from_dataclass(CaiPoseNet, PoseNetConfig)),
    "Pose25DNet": Kind(lambda m: m.cfg.to_dict(), _from_dataclass(Pose25DNet, Pose25DConfig)),
    "DepthRegularizer": Kind(_regularizer_config, lambda c: DepthRegularizer(**dict(c))),
    "DenseDepthNet": Kind(_dense_config, lambda c: DenseDepthNet(**dict(c))),
    "Lifter": Kind(lambda m: m.cfg.to_dict(), _from_dataclass(Lifter, LifterConfig)),
}


def describe(module: nn.Module) -> dict[str, Any]:
    """{"kind": class name, "config": constructor configuration (plain dict), or None for a
    class this registry does not know (such a model is stored, but cannot be rebuilt by
    :func:`build_model`)}; plain data, no arrays."""
    kind = type(module).__name__
    k = KINDS.get(kind)
    return {"kind": kind, "config": None if k is None else k.config(module)}


def build(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """A fresh (randomly initialised) model of `kind` from its configuration. ValueError
    (:class:`ConfigError`) for an unknown kind or a configuration the class refuses. No arrays:
    the model's input/output shapes and units are in its class docstring."""
    if kind not in KINDS:
        raise ConfigError(f"no model class {kind!r} (known: {', '.join(KINDS)})")
    try:
        return KINDS[kind].build(config)
    except TypeError as exc:
        raise ConfigError(f"bad {kind} configuration {dict(config)!r} ({exc})") from None


def build_model(checkpoint: str | os.PathLike | Mapping[str, Any], name: str | None = None, *,
                device: str = "cpu", path: str | os.PathLike | None = None) -> nn.Module:
    """The model stored in a checkpoint, rebuilt from the checkpoint's own description, with its
    weights loaded (strict), on `device`, in eval mode (no arrays in or out: the model's shapes and
    units are in its class docstring).

    `checkpoint`: a checkpoint file, or a dict already read with
    :func:`weakhand.train.checkpoint.read_checkpoint` (then `path` names its file, for messages
    and for the fallback of older checkpoints). `name`: which stored model (default: ``"model"``,
    else ``"pose"`` (a stage-3 run that also trained its regulariser), else the only one).
    Raises :class:`weakhand.train.checkpoint.CheckpointError` naming the file when it cannot be
    read (or holds pickled objects), does not say what it holds, or does not fit.
    """
    # local: importing weakhand.train runs its engine, which imports this module (describe)
    from ..train.checkpoint import CheckpointError, _load_models, model_specs, read_checkpoint

    if isinstance(checkpoint, Mapping):
        ckpt, where = checkpoint, Path(path if path is not None else "<checkpoint>")
    else:
        where = Path(checkpoint)
        ckpt = read_checkpoint(where)
    specs = model_specs(ckpt, where)
    if name is None:
        name = next((k for k in ("model", "pose") if k in specs), None)
        if name is None and len(specs) == 1:
            name = next(iter(specs))
    if name not in specs:
        raise CheckpointError(f"checkpoint {where} holds {', '.join(map(repr, specs)) or 'no model'}"
                              f"{'' if name is None else f', not {name!r}'}: name the model to build",
                              where)
    spec = specs[name]
    if spec["config"] is None:
        raise CheckpointError(spec.get("missing") or f"checkpoint {where} does not record the "
                              f"configuration of its model {name!r} ({spec['kind']})", where)
    try:
        model = build(spec["kind"], spec["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}", where) from None
    try:
        _load_models(ckpt, {name: model}, where, strict=True)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (configuration from the {spec['source']})", where) from exc
    return model.to(device).eval()
