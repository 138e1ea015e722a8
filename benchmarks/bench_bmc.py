"""Cost of the BMC loss next to one training step of the pose network (a script, not a test).

Usage: python benchmarks/bench_bmc.py [--batch 64] [--size 64] [--width 16] [--stages 3]
       [--repeats 20] [--device cpu|cuda] [--json out.json]

Times (median of repeats, after warm-up):
* the pose network (CaiPoseNet, the cpu profile's size by default) forward + loss + backward;
* the BMC loss (bone lengths, palm, 15 hull distances) forward + backward on (B, 21, 3) joints;
and prints the ratio (the issue's aim: < 10 %). The measurement is
:func:`suite.bmc_cost` (``benchmarks/suite.py``), which `weakhand bench` also runs (section "bmc").
"""
from __future__ import annotations

import argparse
import json
import platform

import torch

from suite import bmc_cost  # benchmarks/suite.py (this script's folder is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="network input size (px)")
    ap.add_argument("--width", type=int, default=16, help="pose network width")
    ap.add_argument("--stages", type=int, default=3, help="pose network CPM stages")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default="", help="also write the numbers to this JSON file")
    args = ap.parse_args()
    res = bmc_cost(batch=args.batch, size=args.size, width=args.width, n_stages=args.stages,
                   repeats=args.repeats, warmup=3, device=args.device, settle=5)
    res = {**res, "torch": torch.__version__, "python": platform.python_version()}
    print(f"{res['device']}, {res['threads']} threads, batch {args.batch}, {args.size}px, "
          f"width {args.width}")
    print(f"pose network forward+backward+step: {1e3 * res['net_fwd_bwd_s']:8.2f} ms "
          f"(median of {args.repeats})")
    print(f"BMC loss forward+backward:          {1e3 * res['bmc_fwd_bwd_s']:8.2f} ms")
    print(f"BMC / network step:                 {100 * res['bmc_fraction']:8.2f} %  (aim < 10 %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
