"""Learning curves of candidate pose networks: PA-EPE vs images seen, with the 2D / depth split.

Trains one architecture with full 3D labels on the rendered (source) training split of a run
folder and, every ``--eval-every`` images, scores the render and sensor test splits with the
project's protocol (GT root and scale, visible joints). Besides the usual numbers it prints the
*decomposition* of the aligned error: PA-EPE with the predicted 2D and the true depth
(``pa_2d_only``) and with the true 2D and the predicted depth (``pa_z_only``), which says which
half of the 2.5D prediction limits the 3D error, and the constant-pose baseline of the same
split. Prints one JSON line per evaluation (and writes them with ``--out``).

    python benchmarks/learning_curves.py runs/exp --arch cai --images 60000
    python benchmarks/learning_curves.py runs/exp --arch pose25d --images 60000 --out lc.jsonl
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from weakhand import metrics
from weakhand.evaluation import baselines
from weakhand import skeleton as sk
from weakhand.data import AugmentConfig, HandDataset


class _Arch:
    def __init__(self, build, loss, predict):
        self.build, self.loss, self.predict = build, loss, predict


def _cai_build(width):
    from weakhand.models import CaiPoseNet, PoseNetConfig
    return CaiPoseNet(PoseNetConfig(width=width or 16, n_stages=3))


COORD = 0.0  # weight of the soft-argmax coordinate term of the cai loss (--coord)


def _cai_loss(model, batch):
    from weakhand.losses import CaiWeights
    from weakhand.methods import cai
    return cai.losses(batch, model(batch), sigma=model.cfg.sigma, stride=model.stride,
                      weights=CaiWeights(coord=COORD))["loss"]


def _cai_predict(model, loader):
    from weakhand.methods import cai
    return cai.predict(model, loader, "cpu")


BLOCKS = (1, 1, 1)  # residual blocks per stage of the 2.5D net (--blocks)


def _p25_build(width):
    from weakhand.models.pose25d_net import Pose25DConfig, Pose25DNet
    return Pose25DNet(Pose25DConfig(width=width or 24, refiner_hidden=0, blocks=BLOCKS))


def _p25_loss(model, batch):
    from weakhand.methods import spurr_bmc
    return spurr_bmc.losses(batch, model(batch))["loss"]


def _p25hm_loss(model, batch):
    from weakhand.methods import spurr_bmc
    out = model(batch)
    return spurr_bmc.losses(batch, out)["loss"] + spurr_bmc.heatmap_ce(batch, out, model)


def _p25_predict(model, loader):
    model.eval()
    with torch.no_grad():
        acc = {k: [] for k in ("uv", "zn", "kp2d", "kp3d", "vis", "K", "has_3d")}
        for b in loader:
            out = model({"image": b["image"]})
            acc["uv"].append(out["uv"]); acc["zn"].append(out["zn"])
            for k in ("kp2d", "kp3d", "vis", "K", "has_3d"):
                acc[k].append(b[k])
    return {k: torch.cat(v).numpy() for k, v in acc.items()}


ARCHS = {"cai": _Arch(_cai_build, _cai_loss, _cai_predict),
         "pose25d": _Arch(_p25_build, _p25_loss, _p25_predict),
         "pose25d_hm": _Arch(_p25_build, _p25hm_loss, _p25_predict)}


def _decomposed(p: dict) -> dict:
    """PA-EPE of (pred 2D, true z) and (true 2D, pred z), mm."""
    sel = p["has_3d"].astype(bool)
    kp3d, K, vis = p["kp3d"][sel].astype(np.float64), p["K"][sel].astype(np.float64), p["vis"][sel]
    from weakhand.models import reconstruct_3d, root_relative_depth

    root, s = kp3d[:, sk.ROOT, 2], sk.scale_length(kp3d)
    zn_true = root_relative_depth(kp3d)
    out = {}
    for name, uv, zn in (("pa_2d_only", p["uv"][sel], zn_true), ("pa_z_only", p["kp2d"][sel], p["zn"][sel])):
        rec = reconstruct_3d(uv.astype(np.float64), zn.astype(np.float64), K, root, s)
        out[name] = metrics.evaluate_3d(rec, kp3d, vis, align="procrustes")["epe_mean_mm"]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--arch", default="cai", choices=sorted(ARCHS))
    ap.add_argument("--images", type=int, default=60000, help="training images seen in total")
    ap.add_argument("--eval-every", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--blocks", default="1,1,1", help="2.5D net: residual blocks per stage")
    ap.add_argument("--coord", type=float, default=0.0,
                    help="cai: weight of the soft-argmax coordinate term (0 = Cai's heatmap loss only)")
    a = ap.parse_args(argv)
    global BLOCKS, COORD
    COORD = a.coord
    BLOCKS = tuple(int(x) for x in a.blocks.split(","))
    torch.manual_seed(a.seed)
    run = Path(a.run_dir)
    aug = AugmentConfig(rot_deg=30, scale=(0.9, 1.1), shift_px=4)
    train = HandDataset(run / "data/synth_render/train", out_size=a.size, augment=aug, mirror_left=True,
                        seed=a.seed)
    tests = {name: torch.utils.data.DataLoader(torch.utils.data.Subset(
        HandDataset(run / f"data/{d}/test", out_size=a.size, mirror_left=True), range(a.n_test)), batch_size=64)
        for name, d in (("render", "synth_render"), ("sensor", "synth_sensor"))}
    mean_hand = baselines.fit_constant_pose(run / "data/synth_render/train")
    arch = ARCHS[a.arch]
    model = arch.build(a.width)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    steps = a.images // a.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.15)
    loader = torch.utils.data.DataLoader(train, batch_size=a.batch, shuffle=True, drop_last=True,
                                         num_workers=0,
                                         generator=torch.Generator().manual_seed(a.seed))
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"arch": a.arch, "params": n_params, "steps": steps}), flush=True)
    lines, seen, step, t0, epoch = [], 0, 0, time.time(), 0
    const = {}
    for name, ld in tests.items():
        p = arch.predict(model, ld)
        const[name] = baselines.score_constant_pose(mean_hand, p, (a.size, a.size))["pa_epe_mm"]
    next_eval = a.eval_every
    while step < steps:
        train.set_epoch(epoch)
        epoch += 1
        for batch in loader:
            model.train()
            loss = arch.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += a.batch
            if seen >= next_eval or step == steps:
                next_eval += a.eval_every
                row = {"arch": a.arch, "images": seen, "s": round(time.time() - t0, 1),
                       "loss": round(float(loss), 4), "lr": a.lr, "batch": a.batch,
                       "schedule_images": a.images, **({"coord": a.coord} if a.coord else {})}
                for name, ld in tests.items():
                    p = arch.predict(model, ld)
                    from weakhand.evaluation.scores import score
                    s = score(p, keep_arrays=False)
                    row[name] = {"px": round(s["px_2d_mean"], 2), "z": round(s["z_err_mm"], 1),
                                 "epe": round(s["epe_mm"], 1), "pa": round(s["pa_epe_mm"], 1),
                                 **{k: round(v, 1) for k, v in _decomposed(p).items()},
                                 "const_pa": round(const[name], 1)}
                print(json.dumps(row), flush=True)
                lines.append(row)
            if step >= steps:
                break
    if a.out:
        Path(a.out).write_text("".join(json.dumps(r) + "\n" for r in lines))


if __name__ == "__main__":
    main()
