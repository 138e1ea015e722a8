"""Time weakhand.metrics.evaluate_3d on random data (a script, not a test).

Usage: python benchmarks/bench_metrics.py [--n 100000] [--repeats 3] [--seed 0]
Prints, per alignment mode, the best-of-repeats wall time in seconds and samples/s.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from weakhand import metrics as M


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of samples (21 keypoints each)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per mode (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", default=["none", "procrustes"], choices=M.ALIGN_MODES)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    gt = rng.normal(scale=40.0, size=(args.n, 21, 3)) + np.array([0.0, 0.0, 500.0])  # mm
    pred = gt + rng.normal(scale=10.0, size=gt.shape)
    vis = rng.random((args.n, 21)) > 0.1

    print(f"numpy {np.__version__}, python {platform.python_version()}, N = {args.n} x 21 keypoints")
    for with_vis in (False, True):
        for mode in args.modes:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = M.evaluate_3d(pred, gt, vis=vis if with_vis else None, align=mode)
                times.append(time.perf_counter() - t0)
            best = min(times)
            print(
                f"align={mode:<20s} vis={'yes' if with_vis else 'no ':3s} best {best:7.3f} s "
                f"(median {np.median(times):.3f} s)  {args.n / best:12,.0f} samples/s  "
                f"EPE {res['epe_mean_mm']:.2f} mm  AUC0-50 {res['auc_0_50']:.3f}"
            )


if __name__ == "__main__":
    main()
