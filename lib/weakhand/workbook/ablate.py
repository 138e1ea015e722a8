"""The whole weak-supervision study in one command (`weakhand ablate`).

    weakhand ablate --profile gpu --name study --seeds 0,1,2        # everything, three seeds
    weakhand ablate --name cpu --seeds 1,2 --skip-shared             # add seeds to an existing run
    weakhand ablate --name study --seeds 0,1 -p bmc_weight=0.1        # an override for every notebook

Steps, all into ``runs/<name>`` through :func:`weakhand.workbook.runner.run_notebooks`:

1. the shared stages, once: data, BMC limits, stage 1, stage 2, depth teacher
   (notebooks 00-40; ``--skip-shared`` skips them when their outputs exist);
2. for each seed: every stage-3 variant of both families (notebooks 50 and 60 with ``seed=k``;
   seed k > 0 writes ``stage3_<variant>_seed<k>``, so every seed starts from the same stages 1-2);
3. the lifting study (notebook 65, its seeds inside: ``lift_seeds`` = the seeds; with
   ``--skip-shared`` skipped when ``metrics/65_lifting.json`` exists);
4. the evaluation notebook (70) over those seeds (with ``--skip-shared``: over every seed the run
   folder holds, so ``--seeds 1,2`` on a finished main job gives the 3-seed table): the results
   table with mean ± std, paired intervals against "+ target 2D", and the report.

Each step's executed notebook is kept as ``logs/ablate/<notebook>_seed<k>.ipynb``; the study's
record (steps, seconds, status) is ``ablation.json``. Stops at the first failing notebook.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..io import atomic_write_json

CLI_HELP = "train every stage-3 variant over seeds (shared stages 1-2) and evaluate"
SHARED = ("00", "10", "20", "30", "40")
PER_SEED = ("50", "60")
#: the lifting study runs its seeds inside one notebook (``lift_seeds``), after stage 3's seed 0
LIFTING, LIFTING_OUTPUT = "65", "metrics/65_lifting.json"
EVALUATE = "70"
#: an output that shows a shared notebook has run (for --skip-shared)
SHARED_OUTPUTS = {"00": "data/synth_sensor/test/manifest.json", "10": "bmc/limits.json",
                  "20": "stage1_pose/best.pt", "30": "stage2_regularizer/best.pt",
                  "40": "teacher/pseudo_sensor_train.npz"}


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" or "0-2" -> [0, 1, 2] (sorted, unique, >= 0)."""
    seeds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            rng = range(int(lo), int(hi) + 1) if sep else [int(part)]
        except ValueError:
            raise ValueError(f"--seeds: {part!r} is not a seed or a range like 0-2") from None
        seeds.update(rng)
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds needs non-negative seeds, got {text!r}")
    return sorted(seeds)


def _declared(notebooks_dir: str | None) -> dict[str, set[str]]:
    from .runner import discover_notebooks, read_notebook
    return {p.stem[:2]: set(read_notebook(p).parameters) for p in discover_notebooks(notebooks_dir)}


def _for(selected: tuple[str, ...], overrides: dict[str, Any], declared: dict[str, set[str]]) -> dict:
    names = set().union(*(declared.get(s, set()) for s in selected))
    return {k: v for k, v in overrides.items() if k in names}


def run_ablation(name: str | None = None, *, profile: str = "auto", device: str = "auto",
                 seeds: list[int] = (0,), overrides: dict[str, Any] | None = None,
                 skip_shared: bool = False, notebooks_dir: str | None = None,
                 runs_dir: str | None = None, nproc: int = 1, out=None) -> int:
    """Run the study (see the module doc); returns the exit status (0 = every step ok)."""
    from . import profiles
    from .runner import RunnerError, run_notebooks
    from .runs import runs_root

    out = out or sys.stdout
    overrides = dict(overrides or {})
    for reserved in ("seed", "seeds"):
        if reserved in overrides:
            raise RunnerError(f"-p {reserved}=... is set by ablate itself: use --seeds")
    declared = _declared(notebooks_dir)
    unknown = [k for k in overrides if not any(k in d for d in declared.values())]
    if unknown:
        raise RunnerError(f"unknown parameter(s) {', '.join(unknown)}: no notebook declares them")
    from .runner import check_override_types, discover_notebooks, read_notebook
    check_override_types([read_notebook(p) for p in discover_notebooks(notebooks_dir)], overrides)
    profile = profiles.profile_name(profile)
    name = name or f"{profile}_ablation"
    run_dir = (Path(runs_dir) if runs_dir else runs_root()) / name
    record: dict[str, Any] = {"name": name, "profile": profile, "seeds": list(seeds), "overrides": overrides,
                              "nproc": nproc, "steps": [], "status": "running"}
    kw = dict(profile=profile, device=device, notebooks_dir=notebooks_dir, runs_dir=runs_dir)
    if nproc > 1:
        kw["nproc"] = nproc

    def step(label: str, only: tuple[str, ...], extra: dict[str, Any], seed: int | None) -> bool:
        t0 = time.perf_counter()
        print(f"\n=== ablate: {label} ===", file=out, flush=True)
        res = run_notebooks(name, only=list(only), overrides={**_for(only, overrides, declared), **extra},
                            out=out, **kw)
        secs = time.perf_counter() - t0
        record["steps"].append({"step": label, "notebooks": list(only), "seed": seed,
                                "seconds": round(secs, 1), "ok": res.ok, "failed": res.failed})
        if seed is not None:  # keep each seed's executed notebooks (the runner overwrites them)
            keep = res.run_dir / "logs" / "ablate"
            keep.mkdir(parents=True, exist_ok=True)
            for nb in res.run_dir.glob("[0-9][0-9]_*.ipynb"):
                if nb.name[:2] in only:
                    shutil.copy2(nb, keep / f"{nb.stem}_seed{seed}.ipynb")
        atomic_write_json(res.run_dir / "ablation.json", record)
        return res.ok

    def study() -> int:
        t_all = time.perf_counter()
        shared = [s for s in SHARED
                  if not (skip_shared and (run_dir / SHARED_OUTPUTS[s]).exists())]
        ok = True
        if shared:
            ok = step("shared stages " + ",".join(shared), tuple(shared), {}, None)
        elif skip_shared:
            print("=== ablate: shared stages found, skipped ===", file=out, flush=True)
        for s in seeds:
            if not ok:
                break
            ok = step(f"stage 3, seed {s}", PER_SEED, {"seed": s}, s)
        if ok and not (skip_shared and (run_dir / LIFTING_OUTPUT).exists()):
            ok = step("lifting study", (LIFTING,), {"lift_seeds": ",".join(map(str, seeds))}, None)
        if ok:  # adding seeds to a run (--skip-shared) evaluates them with every seed already there
            ok = step("evaluation", (EVALUATE,), {"seeds": "" if skip_shared else ",".join(map(str, seeds))},
                      None)
        record["status"] = "ok" if ok else "failed"
        record["seconds"] = round(time.perf_counter() - t_all, 1)
        if run_dir.exists():
            atomic_write_json(run_dir / "ablation.json", record)
        print(f"\nablate: {record['status']} in {record['seconds']:.0f} s; table: {run_dir / 'metrics/70_results.csv'}, "
              f"report: {run_dir / 'report.html'}", file=out, flush=True)
        return 0 if ok else 1

    from .runlock import RunLockedError, run_lock
    with contextlib.ExitStack() as stack:
        try:  # one study per run folder; the runner steps inside re-enter this lock
            stack.enter_context(run_lock(run_dir, f"weakhand ablate --name {name}",
                                         say=lambda m: print(m, file=sys.stderr, flush=True)))
        except RunLockedError as exc:
            raise RunnerError(str(exc)) from None
        return study()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="run name: folder runs/<name> (default: <profile>_ablation)")
    parser.add_argument("--profile", default="auto", help="smoke, cpu, gpu or auto (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--seeds", default="0,1,2", help="stage-3 seeds: comma list or range, e.g. 0,1,2 or 0-4 (default: 0,1,2, the fewest that give a seed spread worth comparing against)")
    parser.add_argument("--skip-shared", action="store_true",
                        help="skip notebooks 00-40 whose outputs already exist in the run folder")
    parser.add_argument("--nproc", type=int, default=1, help="processes per training (torchrun; default 1)")
    parser.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter in every notebook that declares it (repeatable)")
    parser.add_argument("--notebooks", metavar="DIR", help="notebooks folder (default: <repo>/notebooks)")
    parser.add_argument("--runs-dir", metavar="DIR", help="parent of run folders (default: <repo>/runs)")


def cli_main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from .runner import EXIT_USAGE, RunnerError, parse_overrides
    try:
        seeds = parse_seeds(args.seeds)
        if args.nproc < 1:
            raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
        return run_ablation(args.name, profile=args.profile, device=args.device, seeds=seeds,
                            overrides=parse_overrides(args.params), skip_shared=args.skip_shared,
                            notebooks_dir=args.notebooks, runs_dir=args.runs_dir, nproc=args.nproc)
    except (RunnerError, ValueError) as exc:
        print(f"weakhand ablate: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
