"""Label-only sampling of the synthetic source: poses and cameras, no images.

Same distribution as the rendered source of the same style, because it runs the generator's
own pre-render sampling (:func:`generator.sample_scene`) with the same subject pool and
per-block RNG scheme: ``sample_labels(style, n, seed, split=s, size=S)`` returns exactly the
kp3d / kp2d / K / side / family of ``generate(style, n, seed, split=s, size=S)`` (kp3d also for
splits whose 3D labels ``generate`` withholds). Only the capsule scene (pure geometry, no RNG
draws) is skipped, so the RNG stream is unchanged.

Units: mm for 3D (camera frame), px for 2D (crop of `size`×`size` px).
"""
from __future__ import annotations

import numpy as np

from . import generator
from .domains import DomainStyle, make_style

LABEL_KEYS = ("kp3d", "kp2d", "K", "side", "family")


def _style(style: str | DomainStyle) -> DomainStyle:
    return make_style(style) if isinstance(style, str) else style


def _labels_block(style: DomainStyle, rng: np.random.Generator, n: int, size: int,
                  pool) -> dict:
    """Labels of one block: kp3d (n,21,3) float32 mm, kp2d (n,21,2) float32 crop px,
    K (n,3,3) float32 crop px, side (n,) uint8, family (n,) int16."""
    s = generator.sample_scene(style, rng, n, size, pool, geometry=False)
    return {"kp3d": s["kp_cam"].astype(np.float32), "kp2d": s["kp2d"].astype(np.float32),
            "K": s["K"].astype(np.float32), "side": s["side"], "family": s["family"]}


def sample_labels(style: str | DomainStyle, n: int, seed: int, size: int = 64,
                  block: int = generator.BLOCK, split: str = "train") -> dict:
    """Labels of `n` synthetic hands of `style` (a style or built-in name), no images.

    With the default `block` (= generator.BLOCK) these are exactly the labels of
    ``generate(style, n, seed, split, size)``; another `block` gives a different,
    equally distributed and equally deterministic set (larger blocks, e.g. 4096, are about
    1.5x faster: less per-block overhead).

    Returns numpy arrays: kp3d (n,21,3) float32 mm camera frame, kp2d (n,21,2) float32 px in
    the `size`×`size` crop, K (n,3,3) float32 crop intrinsics px, side (n,) uint8 (0 left,
    1 right), family (n,) int16 (index into poses.FAMILIES).
    """
    style = _style(style)
    pool = generator.subject_pool(style, seed)
    out = {"kp3d": np.empty((n, 21, 3), np.float32), "kp2d": np.empty((n, 21, 2), np.float32),
           "K": np.empty((n, 3, 3), np.float32), "side": np.empty(n, np.uint8),
           "family": np.empty(n, np.int16)}
    for b in range(-(-n // block)):
        m = min(block, n - b * block)
        lab = _labels_block(style, generator.block_rng(seed, style, split, b), m, size, pool)
        for k in LABEL_KEYS:
            out[k][b * block: b * block + m] = lab[k]
    return out


class LabelStream:
    """Endless, deterministic batches of fresh synthetic labels for training (torch tensors).

    Batch i is one block of `batch` hands drawn from ``block_rng(seed, style, split,
    start + i)`` with the style's subject pool for `seed`, so every batch is new hands, the
    sequence is the same for the same arguments, and the distribution is the rendered
    source's. The default split "stream" keeps these apart from ``generate``'s "train"/"val"
    blocks. Several streams with different `start` (e.g. 0, 10**9, ...) give disjoint hands.

    Yields dicts of torch float32 CPU tensors: kp2d (B,21,2) crop px for a `size`×`size`
    crop, kp3d (B,21,3) mm camera frame, K (B,3,3) crop px, side (B,) (0 left, 1 right).
    ``next_block`` is the block index of the next batch (pass it as `start` to resume).
    """

    def __init__(self, style: str | DomainStyle, seed: int, batch: int, size: int = 64,
                 split: str = "stream", start: int = 0):
        if batch < 1:
            raise ValueError(f"LabelStream: batch must be >= 1, got {batch}")
        self.style, self.seed, self.batch, self.size, self.split = \
            _style(style), seed, batch, size, split
        self.pool = generator.subject_pool(self.style, seed)
        self.next_block = start

    def _make(self, b: int) -> dict:
        import torch
        lab = _labels_block(self.style, generator.block_rng(self.seed, self.style, self.split, b),
                            self.batch, self.size, self.pool)
        return {k: torch.from_numpy(lab[k].astype(np.float32, copy=False))
                for k in ("kp2d", "kp3d", "K", "side")}

    def __iter__(self) -> "LabelStream":
        return self

    def __next__(self) -> dict:
        out = self._make(self.next_block)
        self.next_block += 1
        return out
