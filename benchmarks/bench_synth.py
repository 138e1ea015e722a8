"""Benchmark the synthetic hand generator (prints numbers; asserts nothing).

Measures images/s at 128x128 with RGB + depth + mask + part labels + keypoints + visibility,
for both built-in domains, end to end in memory (generator.generate_block) and with writing to
disk (synth.dataset.make_dataset), plus the share of time per stage.

    python benchmarks/bench_synth.py [--n 2048] [--size 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numba

from weakhand.synth import dataset, domains, effects, generator, raycast


def timed_stages():
    """Wrap the compiled stages to accumulate their wall time."""
    acc = {}

    def wrap(mod, name):
        fn = getattr(mod, name)

        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[name] = acc.get(name, 0.0) + time.perf_counter() - t
        setattr(mod, name, inner)
        return lambda: setattr(mod, name, fn)

    undo = [wrap(raycast, "cast_capsules"), wrap(raycast, "shade"),
            wrap(effects, "rgb_sensor"), wrap(effects, "depth_sensor")]
    return acc, undo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    print(f"cores={os.cpu_count()} numba threads={numba.get_num_threads()} size={args.size} "
          f"n={args.n} block={generator.BLOCK}")
    for name in ("render", "sensor"):
        style = domains.make_style(name)
        pool = generator.subject_pool(style, 0)
        generator.generate_block(style, generator.block_rng(0, style, "warm", 0), 8, args.size,
                                 pool)  # JIT warm-up (compiled code is cached on disk)
        acc, undo = timed_stages()
        t = time.perf_counter()
        done, b = 0, 0
        while done < args.n:
            m = min(generator.BLOCK, args.n - done)
            generator.generate_block(style, generator.block_rng(0, style, "bench", b), m,
                                     args.size, pool)
            done, b = done + m, b + 1
        dt = time.perf_counter() - t
        for u in undo:
            u()
        stages = ", ".join(f"{k} {100 * v / dt:.0f}%" for k, v in acc.items())
        print(f"{name:7s} in memory: {args.n / dt:8.0f} images/s  ({stages}, rest: sampling, "
              f"kinematics, visibility)")
        tmp = tempfile.mkdtemp()
        try:
            rep = dataset.make_dataset(f"{tmp}/d", style, args.n, seed=0, split="bench",
                                       size=args.size, reuse=False, show_progress=False)
            nbytes = sum(os.path.getsize(os.path.join(f"{tmp}/d", f))
                         for f in os.listdir(f"{tmp}/d"))
        finally:
            shutil.rmtree(tmp)
        print(f"{name:7s} to disk:   {rep['images_per_s']:8.0f} images/s  "
              f"({nbytes / args.n / 1024:.1f} KiB per sample on disk)")


if __name__ == "__main__":
    main()
