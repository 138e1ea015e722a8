"""Cost of the BMC loss next to one training step of the pose network (a script, not a test).

Usage: python benchmarks/bench_bmc.py [--batch 64] [--size 64] [--width 16] [--repeats 20]
       [--device cpu|cuda] [--json out.json]

Times (median of repeats, after warm-up):
* the pose network (CaiPoseNet, the cpu profile's size by default) forward + loss + backward;
* the BMC loss (bone lengths, palm, 15 hull distances) forward + backward on (B, 21, 3) joints;
and prints the ratio (the issue's aim: < 10 %).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from weakhand import bmc
from weakhand.cai import CaiPoseNet, PoseNetConfig
from weakhand.synth.domains import RENDER
from weakhand.synth.generator import sample_hand_poses


def _median_time(fn, repeats: int, device: str) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="network input size (px)")
    ap.add_argument("--width", type=int, default=16, help="pose network width")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default="", help="also write the numbers to this JSON file")
    args = ap.parse_args()
    dev = args.device
    torch.manual_seed(0)

    kp, side = sample_hand_poses(RENDER, 3000, seed=0)
    limits = bmc.fit_limits(kp, side == 0, dataset="synth_render(poses)", split="train")

    net = CaiPoseNet(PoseNetConfig(width=args.width)).to(dev)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    img = torch.rand(args.batch, 3, args.size, args.size, device=dev)

    def net_step():
        out = net(img)
        loss = sum(h.square().mean() for h in out["heatmaps"]) + out["zn"].square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    pred = torch.tensor(kp[:args.batch], dtype=torch.float32, device=dev)
    pred = pred + 5.0 * torch.randn_like(pred)  # some poses outside the limits
    left = torch.tensor(side[:args.batch] == 0, device=dev)

    def bmc_step():
        x = pred.clone().requires_grad_(True)
        bmc.bmc_loss(x, limits, left)["bmc"].backward()

    t_net = _median_time(net_step, args.repeats, dev)
    t_bmc = _median_time(bmc_step, args.repeats, dev)
    res = {"device": dev, "torch": torch.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "batch": args.batch, "input_px": args.size,
           "pose_width": args.width, "net_fwd_bwd_s": t_net, "bmc_fwd_bwd_s": t_bmc,
           "bmc_fraction": t_bmc / t_net,
           "hull_vertices_max": int(max(len(h) for h in limits.hulls))}
    print(f"{dev}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size}px, "
          f"width {args.width}")
    print(f"pose network forward+backward+step: {1e3 * t_net:8.2f} ms (median of {args.repeats})")
    print(f"BMC loss forward+backward:          {1e3 * t_bmc:8.2f} ms")
    print(f"BMC / network step:                 {100 * t_bmc / t_net:8.2f} %  (aim < 10 %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
