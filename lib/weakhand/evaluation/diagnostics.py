"""Why a weak signal helps or not: can the depth regulariser tell good joints from bad ones?

The depth term of stage 3 can only pull predictions towards the truth if the frozen regulariser
renders a map closer to the sensor's from the true joints than from wrong ones. This measures the
masked L1 (the stage-3 loss) on the test split for maps rendered from the true joints, from each
variant's predicted joints, and from the true joints with their relative depths flattened or
mirrored (what the depth term must rule out).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import skeleton as sk
from ..losses import depth_map_loss
from ..models import depth_map_targets, regularizer_input_from_3d


@torch.no_grad()
def regularizer_l1(regularizer: torch.nn.Module, dataset, uv: np.ndarray, z_mm: np.ndarray,
                   index: np.ndarray, out_size: int, batch_size: int = 128) -> float:
    """Mean masked L1 (normalised depth units) between the regulariser's maps rendered from joints
    (uv (N,21,2) input px, z_mm (N,21) camera depth) and the sensor depth maps of
    ``dataset[index]`` (sensor holes excluded, as in training)."""
    regularizer.eval()
    tot, n = 0.0, 0
    for s in range(0, len(index), batch_size):
        idx = index[s:s + batch_size]
        items = [dataset[int(i)] for i in idx]
        batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "depth", "mask")}
        tgt = depth_map_targets(batch, out_size)
        inp = regularizer_input_from_3d(torch.as_tensor(uv[s:s + batch_size], dtype=torch.float32),
                                        torch.as_tensor(z_mm[s:s + batch_size], dtype=torch.float32),
                                        tgt["d_max"], tgt["d_range"], batch["image"].shape[-2:])
        has = torch.ones(len(idx), dtype=torch.bool)
        tot += float(depth_map_loss(regularizer(inp), tgt["map"], has, tgt["pixel_valid"])) * len(idx)
        n += len(idx)
    return tot / max(n, 1)


def regularizer_discrimination(regularizer: torch.nn.Module, dataset,
                               by_variant: Mapping[str, Mapping[str, Any]], out_size: int) -> list[dict]:
    """Rows {"joints", "L1", "mean |dz| mm (all joints)"} for: the true joints, the true joints with root-relative
    depth set to 0 (flat hand) and mirrored in depth (z_k -> 2 z_root - z_k: the sign ambiguity),
    and each variant's predicted joints (`by_variant`: variant -> :func:`score` dict of one seed)."""
    ref = next(iter(by_variant.values()))
    gt, uv_true, index = ref["gt3d"], ref["kp2d"], ref["index"]
    z, zr = gt[..., 2], gt[:, sk.ROOT:sk.ROOT + 1, 2]
    rows = []
    for name, uv, zz in (("true joints", uv_true, z), ("true 2D, flat depth", uv_true, np.repeat(zr, 21, 1)),
                         ("true 2D, depth mirrored", uv_true, 2 * zr - z)):
        rows.append({"joints": name, "L1": regularizer_l1(regularizer, dataset, uv, zz, index, out_size),
                     "mean |dz| mm (all joints)": float(np.abs(zz - z).mean())})
    for v, s in by_variant.items():
        rows.append({"joints": f"predicted: {v}",
                     "L1": regularizer_l1(regularizer, dataset, s["uv"], s["pred3d"][..., 2], index, out_size),
                     "mean |dz| mm (all joints)": float(np.abs(s["pred3d"][..., 2] - z).mean())})
    return rows
