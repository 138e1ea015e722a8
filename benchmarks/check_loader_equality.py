"""Prove that a changed weakhand.data.torch_data gives bit-identical samples (a script, not a test).

Usage: python benchmarks/check_loader_equality.py REFERENCE_torch_data.py [--data SPLIT ...] [--n 200]

Loads REFERENCE (e.g. the file from `git show HEAD:lib/weakhand/data/torch_data.py`) next to
the installed module and compares every field of many samples (augmented with colour jitter and
random flips, geometry only, none; mirror_left on/off; several output sizes and epochs) with
exact equality (NaN == NaN, same dtype and shape). Without --data, a render split (3D labels) and
a sensor split (3D withheld) are generated into a temporary folder.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from weakhand.data import torch_data as new
from weakhand.data import load_dataset


def load_reference(path: str):
    spec = importlib.util.spec_from_file_location("weakhand.data._reference_torch_data", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        a, b = a.numpy(), b.numpy()
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a.view(np.uint8), b.view(np.uint8)) or
                    np.array_equal(a, b, equal_nan=True) and
                    np.array_equal(np.signbit(a), np.signbit(b)))
    return bool(np.array_equal(a, b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("--data", nargs="*", default=None, help="dataset split folders")
    ap.add_argument("--n", type=int, default=200, help="samples per configuration")
    args = ap.parse_args()
    ref = load_reference(args.reference)
    tmp = None
    if args.data:
        splits = [Path(d) for d in args.data]
    else:
        from weakhand.synth.dataset import make_dataset
        tmp = tempfile.TemporaryDirectory()
        splits = []
        for style, split in (("render", "train"), ("sensor", "train")):
            path = Path(tmp.name) / style / split
            make_dataset(path, style, 300, seed=1, split=split, size=64, show_progress=False)
            splits.append(path)
    augs = {"none": None, "train": dict(rot_deg=30, scale=(0.9, 1.1), shift_px=4),
            "flip_jitter": dict(rot_deg=180, scale=(0.5, 2.0), shift_px=10, p_flip=0.5,
                                hue=0.2)}
    checked, bad = 0, []
    fields = new.DEFAULT_FIELDS + ("parts", "subject")
    for path in splits:
        data = load_dataset(path)
        h = data.image_size[0]
        for aug_name, aug in augs.items():
            for out_size in (None, h // 2, (h // 2 + 3, h + 5)):
                for mirror in (False, True):
                    kw = dict(out_size=out_size, mirror_left=mirror, seed=3, fields=fields)
                    a = ref.HandDataset(data, augment=ref.AugmentConfig(**aug) if aug else None, **kw)
                    b = new.HandDataset(data, augment=new.AugmentConfig(**aug) if aug else None, **kw)
                    for epoch in (0, 1):
                        a.set_epoch(epoch)
                        b.set_epoch(epoch)
                        for i in range(min(args.n, len(data))):
                            sa, sb = a[i], b[i]
                            ga, gb = a.geometry(i), b.geometry(i)
                            for k in sa:
                                if not same(sa[k], sb[k]):
                                    bad.append((str(path), aug_name, out_size, mirror, epoch, i, k))
                            for k in ("warp", "K", "kp3d", "kp2d", "in_crop"):
                                if not same(ga[k], gb[k]):
                                    bad.append((str(path), aug_name, out_size, mirror, epoch, i,
                                                "geometry." + k))
                            if set(sa) != set(sb):
                                bad.append((str(path), aug_name, out_size, mirror, epoch, i, "keys"))
                            checked += 1
    rng = np.random.default_rng(0)
    for _ in range(200):  # the public colour_jitter on its own
        img = rng.random((17, 23, 3), dtype=np.float32)
        f = (rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(-.2, .2))
        if not same(ref.colour_jitter(img, *f), new.colour_jitter(img, *f)):
            bad.append(("colour_jitter", f))
    print(f"compared {checked} samples x {len(fields)} fields + geometry, 200 colour_jitter calls: "
          f"{len(bad)} differences")
    for row in bad[:20]:
        print("  DIFF", row)
    if tmp is not None:
        tmp.cleanup()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
