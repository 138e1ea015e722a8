"""`weakhand bench`: where the time goes, on this machine and device.

The suite lives in the repository (``benchmarks/suite.py``), not in the package: the ``weakhand``
command imports it from the checkout (:func:`weakhand.workbook.cli.load_bench_suite`).

One command measures, and prints as tables and saves as JSON (schema ``weakhand-bench``):

* ``machine``: CPU model, cores, memory, torch/numpy/numba/OpenCV versions and threads, device;
* ``peak_flops``: a large square ``torch.mm`` timed (float32; on CUDA also TF32, bfloat16,
  float16): the matmul peak the training rows are compared with;
* ``synth``: the synthetic renderer (:func:`weakhand.synth.generator.generate_block`, what
  notebook 00 writes), images/s in memory per domain;
* ``loader``: :class:`weakhand.data.HandDataset` with the training augmentation of notebooks
  20/40/50/60 (``AugmentConfig(rot_deg=30, scale=(0.9, 1.1), shift_px=4)``, ``mirror_left``)
  through a ``DataLoader`` for each ``num_workers``, images/s (and ``__getitem__`` alone);
* ``train``: one optimizer step (host->device copy, forward, loss, backward, Adam) of each model
  family - ``cai_pose`` (CaiPoseNet + cai.losses), ``regularizer``
  (DepthRegularizer + cai.regularizer_step), ``pose25d`` (Pose25DNet + spurr_bmc.step),
  ``dense`` (DenseDepthNet + wan_dense.step) - at the sizes of each profile
  (:data:`weakhand.workbook.profiles.PROFILES`), per option set (``channels_last``, ``amp`` / ``amp_bf16``
  on CUDA, ``compile``): images/s, peak memory, FLOPs per image (forward + loss, and
  forward + loss + backward, counted by ``torch.utils.flop_counter.FlopCounterMode``: matmul and
  convolution FLOPs, elementwise work not counted), achieved FLOP/s and its fraction of the
  measured matmul peak;
* ``bmc``: the BMC loss forward + backward as a fraction of one pose-network step
  (the logic of ``benchmarks/bench_bmc.py``, which now calls :func:`bmc_cost`);
* ``inference``: frames/s of each model in eval mode at batch 1 and 64 (the depth model
  end to end: forward + voting + mean-shift, as notebook 40 reports it);
* ``evaluation``: :func:`weakhand.metrics.evaluate_3d` and the :func:`weakhand.evaluation.scores.score_predictions`
  path on 100,000 samples;
* ``summary``: the loader / trainer throughput ratio of the main training step (``cai_pose``
  with the Trainer's options: AMP on CUDA) per profile and ``num_workers`` (the aim: >= 3).

benchmarks/README.md documents every JSON field.

Every time is the median over repeats after warm-up; CUDA is synchronised around each timed
call. ``--quick`` runs everything at tiny sizes (the ``smoke`` profile) in seconds, for tests.

    weakhand bench [--device auto] [--profiles cpu,gpu] [--options base,channels_last,amp]
                   [--run-dir runs/cpu] [--out benchmarks/results/NAME.json] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import math
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

CLI_HELP = "measure renderer, data loader, training, inference and evaluation speed (JSON + tables)"

SCHEMA = "weakhand-bench"
SCHEMA_VERSION = 1
SECTIONS = ("machine", "peak_flops", "synth", "loader", "train", "bmc", "inference", "evaluation",
            "summary")
MEASURED = ("peak_flops", "synth", "loader", "train", "bmc", "inference", "evaluation")
MODELS = ("cai_pose", "regularizer", "pose25d", "dense")
OPTION_NAMES = ("base", "channels_last", "amp", "amp_bf16", "compile")
MACHINE_KIND_ENV = "WEAKHAND_MACHINE_KIND"
#: the training augmentation of notebooks 20/40/50/60
AUGMENT = dict(rot_deg=30, scale=(0.9, 1.1), shift_px=4)
#: the loader / trainer throughput ratio the data pipeline should reach (issue 9)
TARGET_RATIO = 3.0


# ----------------------------------------------------------------------------- settings

class Settings:
    """Sizes and repeat counts of one benchmark run (full or ``quick``)."""

    def __init__(self, quick: bool = False, device: str = "cpu", **over: Any):
        cpu = device == "cpu"
        self.quick = quick
        self.device = device
        self.profiles = ("smoke",) if quick else ("cpu", "gpu")
        self.options = ("base",) if quick or cpu else ("base", "amp", "channels_last+amp")
        self.repeats = 2 if quick else 10
        self.warmup = 1 if quick else 3
        # rows at the gpu profile's sizes on a CPU: fewer repeats (each step takes seconds)
        self.big_repeats = 2 if quick else 3
        self.big_warmup = 1
        # extra warm-up calls (at most) until two consecutive calls agree within 25 %
        self.settle = 1 if quick else 10
        self.big_settle = 1
        self.synth_size = 32 if quick else 128
        self.synth_n = 16 if quick else 512
        self.synth_repeats = 2 if quick else 3
        n_cores = _cores()
        self.workers = (0, 1) if quick else tuple(sorted({0, 1, 2} | {2**k for k in range(2, 8)
                                                                       if 2**k <= n_cores}))
        self.loader_repeats = 2 if quick else 3
        self.loader_batches = 2 if quick else 10       # timed batches (at least 4 per worker)
        self.getitem_n = 32 if quick else 500
        self.data_n = 48 if quick else 1024           # generated dataset (no --run-dir)
        self.data_size = 64 if quick else 128
        self.infer_batches = (1, 8) if quick else (1, 64)
        self.eval_n = 2000 if quick else 100_000
        self.eval_repeats = 2 if quick else 3
        self.matmul_n = 128 if quick else (2048 if cpu else 8192)
        self.matmul_repeats = 3 if quick else (5 if cpu else 20)
        self.bmc_poses = 300 if quick else 3000
        for k, v in over.items():
            if v is None:
                continue
            if not hasattr(self, k):
                raise ValueError(f"unknown benchmark setting {k!r}")
            setattr(self, k, v)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- timing helpers

def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], repeats: int, warmup: int, device: str = "cpu",
              settle: int = 0) -> dict:
    """Median wall time of ``fn()`` over `repeats` calls after `warmup` calls (CUDA
    synchronised before and after each call). With `settle` > 0, up to that many extra warm-up
    calls are made until two consecutive ones agree within 25 % (first calls pay for kernel
    selection, JIT and allocator growth, sometimes over several calls).
    Returns {"median_s", "min_s", "times_s", "warmup_calls"}."""
    def timed() -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0

    warm = [timed() for _ in range(warmup)]
    for _ in range(settle):
        if len(warm) >= 2 and max(warm[-2:]) <= 1.25 * min(warm[-2:]):
            break
        warm.append(timed())
    times = [timed() for _ in range(max(1, repeats))]
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "warmup_calls": len(warm)}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` as counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
    convolutions incl. their backward, attention; 1 multiply-add = 2 FLOPs; elementwise ops
    not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def conv2d_flops(batch: int, cin: int, cout: int, kernel: tuple[int, int],
                 out_hw: tuple[int, int], groups: int = 1) -> int:
    """Hand formula of a Conv2d forward: 2 · B · Cout · Hout · Wout · (Cin / groups) · kh · kw
    (bias not counted, as FlopCounterMode)."""
    return 2 * batch * cout * out_hw[0] * out_hw[1] * (cin // groups) * kernel[0] * kernel[1]


@contextlib.contextmanager
def keep_torch_threads():
    """Restore torch's intra-op thread count after the block: numba's OpenMP threading layer
    (the synthetic renderer) shares the OpenMP runtime with torch and leaves torch at numba's
    thread count after a parallel region."""
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS baselines are not inflated by
    earlier rows."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass


class PeakMemory:
    """Peak memory used inside a ``with`` block, in bytes, above the level at its start.

    CUDA: ``torch.cuda.max_memory_allocated`` (after ``reset_peak_memory_stats``) minus the
    allocated memory at the start. CPU: the resident set size sampled every ~1 ms by a thread
    (psutil) minus the RSS at the start; without psutil, the growth of ``ru_maxrss`` (the
    process's high-water mark: 0 when an earlier phase already peaked higher). `method` names
    which was used.
    """

    def __init__(self, device: str):
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")
        self.peak_bytes: int | None = None
        self.method = ""

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated - allocated at start"
            return self
        _malloc_trim()
        try:
            import psutil
        except ImportError:
            psutil = None
        if psutil is not None:
            proc = psutil.Process()
            self._base = proc.memory_info().rss
            self._peak = self._base
            self._stop = threading.Event()

            def sample():
                while not self._stop.is_set():
                    self._peak = max(self._peak, proc.memory_info().rss)
                    self._stop.wait(0.001)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
            self.method = "psutil RSS sampled every 1 ms: peak - RSS at start"
        else:
            import resource
            self._thread = None
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "resource.ru_maxrss growth (process high-water mark; 0 if already higher)"
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            self.peak_bytes = int(torch.cuda.max_memory_allocated() - self._base)
        elif self._thread is not None:
            import psutil
            self._peak = max(self._peak, psutil.Process().memory_info().rss)
            self._stop.set()
            self._thread.join()
            self.peak_bytes = int(max(0, self._peak - self._base))
        else:
            import resource
            self.peak_bytes = int(max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                                      - self._base))


# ----------------------------------------------------------------------------- machine / peak

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_kind() -> str:
    """$WEAKHAND_MACHINE_KIND, else the host name (the default result file's prefix)."""
    return os.environ.get(MACHINE_KIND_ENV, "").strip() or socket.gethostname() or "machine"


def machine_info(device: str) -> dict:
    import numpy as np
    import torch

    from weakhand.workbook import envinfo

    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "machine_kind": machine_kind(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_affinity": _cores(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "numpy": np.__version__,
        "numba": envinfo.package_version("numba"),
        "opencv": envinfo.package_version(*envinfo.PACKAGES["opencv"]),
        "device": device,
        "device_name": _cpu_model(),
        "git_commit": envinfo.git_commit(),
    }
    try:
        import psutil
        info["cpu_count_physical"] = psutil.cpu_count(logical=False)
        info["memory_bytes"] = int(psutil.virtual_memory().total)
        info["load_average"] = list(os.getloadavg())
    except Exception:
        pass
    try:
        import numba
        info["numba_threads"] = numba.get_num_threads()
    except Exception:
        pass
    try:
        import cv2
        info["cv2_threads"] = cv2.getNumThreads()
    except Exception:
        pass
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        info.update({"device_name": torch.cuda.get_device_name(torch.device(device)),
                     "cuda_version": torch.version.cuda,
                     "cudnn_version": torch.backends.cudnn.version(),
                     "gpu_memory_bytes": int(p.total_memory),
                     "gpu_capability": f"{p.major}.{p.minor}",
                     "gpu_multiprocessors": p.multi_processor_count,
                     "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                     "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32)})
    return info


def peak_matmul(device: str, n: int, repeats: int) -> dict:
    """FLOP/s of an (n, n) @ (n, n) ``torch.mm`` per dtype (float32 as configured; on CUDA also
    TF32, bfloat16 and float16)."""
    import torch

    cuda = device.startswith("cuda")
    kinds = [("float32", torch.float32, None)]
    if cuda:
        kinds += [("tf32", torch.float32, True), ("bfloat16", torch.bfloat16, None),
                  ("float16", torch.float16, None)]
    out: dict[str, Any] = {"n": n, "repeats": repeats}
    g = torch.Generator(device=device).manual_seed(0)
    for name, dtype, tf32 in kinds:
        a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
        c = torch.empty(n, n, device=device, dtype=dtype)
        old = torch.backends.cuda.matmul.allow_tf32 if cuda else None
        try:
            if tf32 is not None:
                torch.backends.cuda.matmul.allow_tf32 = tf32
            t = time_call(lambda: torch.mm(a, b, out=c), repeats, 2, device)
        finally:
            if cuda:
                torch.backends.cuda.matmul.allow_tf32 = old
        out[name] = 2.0 * n**3 / t["median_s"]
    return out


# ----------------------------------------------------------------------------- synth

def bench_synth(size: int, n: int, repeats: int, domains: Sequence[str] = ("render", "sensor")
                ) -> list[dict]:
    """Images/s of the synthetic generator in memory (RGB + depth + mask + parts + labels)."""
    import numba

    from weakhand.synth import domains as dom
    from weakhand.synth import generator

    rows = []
    for name in domains:
        style = dom.make_style(name)
        pool = generator.subject_pool(style, 0)
        generator.generate_block(style, generator.block_rng(0, style, "warm", 0), 8, size, pool)

        def run():
            done, b = 0, 0
            while done < n:
                m = min(generator.BLOCK, n - done)
                generator.generate_block(style, generator.block_rng(0, style, "bench", b), m,
                                         size, pool)
                done, b = done + m, b + 1

        t = time_call(run, repeats, 0)
        rows.append({"domain": name, "size": size, "n": n, "numba_threads": numba.get_num_threads(),
                     "seconds": t["median_s"], "images_per_s": n / t["median_s"]})
    return rows


# ----------------------------------------------------------------------------- data

def find_train_split(run_dir: str | os.PathLike) -> Path:
    """The render training split of a run folder (``<run>/data/synth_render/train``), or
    `run_dir` itself when it is a dataset split (holds ``manifest.json``)."""
    p = Path(run_dir)
    for cand in (p, p / "data" / "synth_render" / "train", p / "synth_render" / "train"):
        if (cand / "manifest.json").is_file():
            return cand
    raise FileNotFoundError(f"{run_dir}: no dataset split (manifest.json) there nor under "
                            "data/synth_render/train; run notebook 00_make_data for that run first")


def make_bench_dataset(root: str | os.PathLike, n: int, size: int) -> Path:
    """A small render-domain training split written with the project's own writer."""
    from weakhand.synth.dataset import make_dataset

    path = Path(root) / "synth_render" / "train"
    make_dataset(path, "render", n, seed=0, split="train", size=size, reuse=True,
                 show_progress=False)
    return path


def _dataset(path: Path, out_size: int, augment: bool = True):
    from weakhand.data import AugmentConfig, HandDataset

    return HandDataset(path, out_size=out_size, augment=AugmentConfig(**AUGMENT) if augment else None,
                       mirror_left=True, seed=0)


def bench_loader(path: Path, out_size: int, batch_size: int, workers: Sequence[int],
                 batches: int, repeats: int, getitem_n: int, pin_memory: bool = False) -> dict:
    """Images/s of ``HandDataset.__getitem__`` alone and of a ``DataLoader`` (shuffled,
    augmented, default collate) per ``num_workers``. Each repeat starts fresh workers; the first
    wave of batches (worker start-up and the prefetch queue) is not timed."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    ds = _dataset(path, out_size)
    n = len(ds)
    idx = np.random.default_rng(0).permutation(max(getitem_n, 1)) % n
    ds[int(idx[0])]
    t = time_call(lambda: [ds[int(i)] for i in idx], repeats, 0)
    getitem = len(idx) / t["median_s"]
    rows = []
    for w in workers:
        skip = max(1, 2 * w)                       # prefetch_factor 2 per worker
        timed = max(batches, 4 * w)
        rates, startups = [], []
        for r in range(repeats):
            ds.set_epoch(r)
            g = torch.Generator().manual_seed(r)
            sampler = RandomSampler(ds, num_samples=(skip + timed) * batch_size, generator=g)
            dl = DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=True,
                            num_workers=w, pin_memory=pin_memory, persistent_workers=False,
                            timeout=300 if w else 0)
            t0 = time.perf_counter()
            it = iter(dl)
            for _ in range(skip):
                next(it)
            t1 = time.perf_counter()
            for _ in range(timed):
                next(it)
            t2 = time.perf_counter()
            del it, dl
            rates.append(timed * batch_size / (t2 - t1))
            startups.append(t1 - t0)
        rows.append({"num_workers": w, "images_per_s": statistics.median(rates),
                     "first_batches_s": statistics.median(startups), "timed_batches": timed})
    return {"dataset": str(path), "samples": n, "stored_size": list(ds.data.image_size),
            "out_size": out_size, "batch_size": batch_size, "augment": dict(AUGMENT),
            "mirror_left": True, "pin_memory": pin_memory,
            "getitem_images_per_s": getitem, "rows": rows}


def sample_batch(path: Path, out_size: int, batch_size: int, augment: bool = True) -> dict:
    """One collated training batch (CPU tensors) of `batch_size` samples (cycling if the split
    is smaller)."""
    from torch.utils.data import DataLoader, RandomSampler
    import torch

    ds = _dataset(path, out_size, augment)
    sampler = RandomSampler(ds, num_samples=batch_size, generator=torch.Generator().manual_seed(0))
    return next(iter(DataLoader(ds, batch_size=batch_size, sampler=sampler)))


# ----------------------------------------------------------------------------- models

def profile_sizes(profile: str) -> dict:
    from weakhand.workbook.profiles import PROFILES

    p = PROFILES[profile]
    return {k: p[k] for k in ("image_size", "train_size", "batch_size", "pose_width", "pose_stages",
                              "reg_size", "dense_width", "pose25d_width")}


class ModelCase:
    """A model family at a profile's sizes: the module, its training loss on a batch
    (``loss(model, batch)``) and its inference call (``infer(model, batch)``)."""

    def __init__(self, name: str, sizes: dict):
        from weakhand.methods import cai, spurr_bmc, wan_dense
        from weakhand.models import CaiPoseNet, DepthRegularizer, PoseNetConfig
        from weakhand.models.pose25d_net import Pose25DConfig, Pose25DNet

        self.name = name
        self.sizes = sizes
        self.what = ""
        if name == "cai_pose":
            cfg = PoseNetConfig(width=sizes["pose_width"], n_stages=sizes["pose_stages"])
            self.build = lambda: CaiPoseNet(cfg)
            self.loss = lambda m, b: cai.losses(b, m(b), sigma=cfg.sigma, stride=m.stride)["loss"]
            self.infer = lambda m, b: m({"image": b["image"]})
            self.config = {"width": cfg.width, "n_stages": cfg.n_stages}
            self.what = "CaiPoseNet + cai.losses (heatmaps of every stage + depth)"
        elif name == "regularizer":
            size = sizes["reg_size"]
            self.build = lambda: DepthRegularizer(out_size=size, dropout=0.2)
            self.loss = lambda m, b: cai.regularizer_step(m, b, size)["loss"]

            def infer(m, b):
                return m(b["_reg_input"])
            self.infer = infer
            self.config = {"out_size": size}
            self.what = "DepthRegularizer + cai.regularizer_step; inference: joints -> map"
        elif name == "pose25d":
            cfg = Pose25DConfig(width=sizes["pose25d_width"], blocks=(2, 2, 2))
            self.build = lambda: Pose25DNet(cfg)
            self.loss = lambda m, b: spurr_bmc.step(m, b)["loss"]
            self.infer = lambda m, b: m({"image": b["image"], "K": b["K"]})
            self.config = {"width": cfg.width, "blocks": list(cfg.blocks)}
            self.what = "Pose25DNet + spurr_bmc.step (stage 1 losses, root refiner)"
        elif name == "dense":
            dcfg = wan_dense.Config(width=sizes["dense_width"])
            self.build = dcfg.model
            self.loss = lambda m, b: wan_dense.step(m, b, dcfg)["loss"]
            self.infer = lambda m, b: wan_dense.infer(m, b, dcfg)
            self.config = {"width": dcfg.width, "stacks": dcfg.stacks, "hg_depth": dcfg.hg_depth}
            self.what = ("DenseDepthNet + wan_dense.step; inference: forward + voting "
                         "+ mean-shift (wan_dense.infer)")
        else:
            raise ValueError(f"unknown model {name!r}; known: {MODELS}")


def _parse_options(spec: str) -> dict:
    parts = [p.strip() for p in spec.split("+") if p.strip()]
    bad = [p for p in parts if p not in OPTION_NAMES]
    if bad or not parts:
        raise ValueError(f"unknown option(s) {bad or spec!r} in {spec!r}; use {OPTION_NAMES} "
                         "joined with '+', e.g. channels_last+amp")
    return {"channels_last": "channels_last" in parts, "compile": "compile" in parts,
            "amp": ("bfloat16" if "amp_bf16" in parts else "float16" if "amp" in parts else None)}


def _to_device(batch: dict, device: str, channels_last: bool) -> dict:
    import torch

    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=device.startswith("cuda"))
            if channels_last and v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _prepare_model(case: ModelCase, opts: dict, device: str):
    import torch

    model = case.build().to(device)
    if opts["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if opts["compile"] else model
    return model, run


def _autocast(device: str, amp: str | None):
    import torch

    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.float16 if amp == "float16" else torch.bfloat16)


def _peak_key(opts: dict, device: str = "cpu") -> str:
    """The matmul peak a row is compared with: its AMP dtype; on CUDA without AMP "tf32" when
    cuDNN may use TF32 for convolutions (torch's default), else "float32"."""
    if opts["amp"]:
        return opts["amp"]
    if device.startswith("cuda"):
        import torch
        if torch.backends.cudnn.allow_tf32:
            return "tf32"
    return "float32"


def bench_train_row(case: ModelCase, batch_cpu: dict, device: str, opts: dict, repeats: int,
                    warmup: int, flops: dict | None, settle: int = 0) -> dict:
    """Time one training step (host->device copy, zero_grad, forward + loss under autocast,
    backward, Adam step) of `case`; peak memory over the warm-up steps (model, optimizer state,
    batch and activations); FLOPs (``FlopCounterMode``, forward + loss and backward separately)
    counted in the first warm-up step when `flops` is given empty (filled in place; not with
    torch.compile)."""
    import torch

    B = int(batch_cpu["image"].shape[0])
    with PeakMemory(device) as mem:
        model, run = _prepare_model(case, opts, device)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda") if opts["amp"] == "float16" else None

        def step(counting: bool = False):
            from torch.utils.flop_counter import FlopCounterMode

            counter = ((lambda: FlopCounterMode(display=False)) if counting else
                       contextlib.nullcontext)
            batch = _to_device(batch_cpu, device, opts["channels_last"])
            opt.zero_grad(set_to_none=True)
            with counter() as f1, _autocast(device, opts["amp"]):
                loss = case.loss(run, batch)
            with counter() as f2:
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
            if counting:
                flops["forward"], flops["backward"] = f1.get_total_flops(), f2.get_total_flops()
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            return loss

        t_first = None
        for i in range(max(1, warmup)):
            _sync(device)
            t0 = time.perf_counter()
            step(counting=(i == 0 and flops is not None and not flops and not opts["compile"]))
            _sync(device)
            if i == 0:
                t_first = time.perf_counter() - t0
    t = time_call(step, repeats, 0, device, settle=settle)
    step_s = t["median_s"]
    row = {"images_per_s": B / step_s, "step_s": step_s, "first_step_s": t_first,
           "warmup_steps": max(1, warmup) + t["warmup_calls"], "repeats": len(t["times_s"]),
           "peak_mem_bytes": mem.peak_bytes, "mem_method": mem.method}
    return row


def bench_infer_row(case: ModelCase, batch_cpu: dict, device: str, opts: dict, batch_size: int,
                    repeats: int, warmup: int, settle: int = 0) -> dict:
    import torch

    model, run = _prepare_model(case, opts, device)
    model.eval()
    b = _take(batch_cpu, batch_size)
    if case.name == "regularizer":
        from weakhand.models import depth_map_targets, regularizer_input_from_3d
        with torch.no_grad():
            tgt = depth_map_targets(b, case.sizes["reg_size"])
            kp3d = torch.nan_to_num(b["kp3d"].float(), nan=0.0)
            b["_reg_input"] = regularizer_input_from_3d(
                torch.nan_to_num(b["kp2d"].float()), kp3d[..., 2], tgt["d_max"], tgt["d_range"],
                b["image"].shape[-2:])
    b = _to_device(b, device, opts["channels_last"])
    flops_img = None

    def call():
        with torch.no_grad(), _autocast(device, opts["amp"]):
            case.infer(run, b)

    if not opts["compile"]:
        with torch.no_grad():
            flops_img = count_flops(lambda: case.infer(model, b)) / batch_size
    t = time_call(call, repeats, warmup, device, settle=settle)
    return {"batch": batch_size, "frames_per_s": batch_size / t["median_s"],
            "latency_s": t["median_s"], "flops_per_image": flops_img}


def _take(batch: dict, n: int) -> dict:
    """The first n samples of a batch (repeated when the batch is smaller)."""
    import torch

    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            reps = -(-n // v.shape[0])
            v = v.repeat(reps, *([1] * (v.dim() - 1)))[:n].clone() if reps > 1 else v[:n].clone()
        out[k] = v
    return out


# ----------------------------------------------------------------------------- BMC

def bmc_cost(batch: int = 64, size: int = 64, width: int = 16, n_stages: int = 3,
             repeats: int = 20, warmup: int = 3, device: str = "cpu", n_poses: int = 3000,
             settle: int = 0) -> dict:
    """Cost of the BMC loss next to one training step of the pose network
    (``benchmarks/bench_bmc.py``): CaiPoseNet forward + loss + backward + Adam step on a random
    batch, and the BMC loss (bone lengths, palm, 15 hull distances) forward + backward on
    (B, 21, 3) joints; medians, and their ratio ``bmc_fraction`` (the aim: < 10 %)."""
    import numpy as np
    import torch

    from weakhand import bmc
    from weakhand.models import CaiPoseNet, PoseNetConfig
    from weakhand.synth.domains import RENDER
    from weakhand.synth.generator import sample_hand_poses

    torch.manual_seed(0)
    with keep_torch_threads():  # the pose sampler may run numba code
        kp, side = sample_hand_poses(RENDER, n_poses, seed=0)
        limits = bmc.fit_limits(kp, side == 0, dataset="synth_render(poses)", split="train")
    net = CaiPoseNet(PoseNetConfig(width=width, n_stages=n_stages)).to(device)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    img = torch.rand(batch, 3, size, size, device=device)

    def net_step():
        out = net(img)
        loss = sum(h.square().mean() for h in out["heatmaps"]) + out["zn"].square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    pred = torch.tensor(np.resize(kp, (batch, *kp.shape[1:])), dtype=torch.float32, device=device)
    pred = pred + 5.0 * torch.randn_like(pred)  # some poses outside the limits
    left = torch.tensor(np.resize(side == 0, batch), device=device)

    def bmc_step():
        x = pred.clone().requires_grad_(True)
        bmc.bmc_loss(x, limits, left)["bmc"].backward()

    t_net = time_call(net_step, repeats, warmup, device, settle)["median_s"]
    t_bmc = time_call(bmc_step, repeats, warmup, device, settle)["median_s"]
    return {"device": device, "threads": torch.get_num_threads(), "batch": batch, "input_px": size,
            "pose_width": width, "pose_stages": n_stages, "net_fwd_bwd_s": t_net,
            "bmc_fwd_bwd_s": t_bmc, "bmc_fraction": t_bmc / t_net,
            "hull_vertices_max": int(max(len(h) for h in limits.hulls)), "n_poses": n_poses}


# ----------------------------------------------------------------------------- evaluation

def bench_eval(n: int, repeats: int, seed: int = 0) -> dict:
    """Seconds for :func:`weakhand.metrics.evaluate_3d` on (n, 21, 3) (no alignment and
    Procrustes, with visibility) and for :func:`weakhand.evaluation.scores.score_predictions` (3D
    reconstruction from (u, v, zn), 3D/2D/depth metrics) on n predictions."""
    import numpy as np

    from weakhand import metrics
    from weakhand import skeleton as sk
    from weakhand.camera import project
    from weakhand.evaluation import scores

    rng = np.random.default_rng(seed)
    gt = rng.normal(scale=40.0, size=(n, 21, 3)) + np.array([0.0, 0.0, 500.0])
    pred = gt + rng.normal(scale=10.0, size=gt.shape)
    vis = rng.random((n, 21)) > 0.1
    K = np.tile(np.array([[200.0, 0, 63.5], [0, 200.0, 63.5], [0, 0, 1]], np.float32), (n, 1, 1))
    kp2d = project(K.astype(np.float64), gt).astype(np.float32)
    s = sk.scale_length(gt)
    p = {"uv": (kp2d + rng.normal(scale=2.0, size=kp2d.shape)).astype(np.float32),
         "zn": ((pred[..., 2] - pred[:, :1, 2]) / s[:, None]).astype(np.float32),
         "kp2d": kp2d, "kp3d": gt.astype(np.float32), "vis": vis, "K": K,
         "has_3d": np.ones(n, bool)}
    out: dict[str, Any] = {"n": n, "repeats": repeats}
    for name, fn in (("evaluate_3d_none", lambda: metrics.evaluate_3d(pred, gt, vis, align="none")),
                     ("evaluate_3d_procrustes",
                      lambda: metrics.evaluate_3d(pred, gt, vis, align="procrustes")),
                     ("score_predictions", lambda: scores.score_predictions(p))):
        t = time_call(fn, repeats, 1 if n <= 10_000 else 0)
        out[f"{name}_s"] = t["median_s"]
        out[f"{name}_samples_per_s"] = n / t["median_s"]
    return out


# ----------------------------------------------------------------------------- the run

def default_output(device: str) -> Path:
    """``benchmarks/results/<machine>-<device type>.json`` (next to this file)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", machine_kind())
    return Path(__file__).resolve().parent / "results" / f"{name}-{device.split(':')[0]}.json"


def run_benchmark(device: str = "auto", quick: bool = False, run_dir: str | None = None,
                  profiles: Sequence[str] | None = None, options: Sequence[str] | None = None,
                  models: Sequence[str] = MODELS, sections: Sequence[str] = MEASURED,
                  workers: Sequence[int] | None = None, repeats: int | None = None,
                  warmup: int | None = None, threads: int | None = None,
                  log: Callable[[str], Any] | None = print, **settings: Any) -> dict:
    """Run the benchmark and return the result dict (see the module docstring and
    :func:`print_report`). Sections not in `sections` are left empty. `threads`: torch intra-op
    threads for the run (restored afterwards; default: leave torch's setting)."""
    import torch

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _run(device, quick, run_dir, profiles, options, models, sections, workers, repeats,
                    warmup, log, settings)
    finally:
        torch.set_num_threads(old_threads)


def _run(device, quick, run_dir, profiles, options, models, sections, workers, repeats, warmup,
         log, settings) -> dict:
    from weakhand.device import resolve_device
    from weakhand.workbook.profiles import PROFILES

    device = resolve_device(device)
    st = Settings(quick, device, profiles=tuple(profiles) if profiles else None,
                  options=tuple(options) if options else None,
                  workers=tuple(workers) if workers is not None else None,
                  repeats=repeats, warmup=warmup, **settings)
    for p in st.profiles:
        if p not in PROFILES:
            raise ValueError(f"unknown profile {p!r}; known: {sorted(PROFILES)}")
    opt_sets = {o: _parse_options(o) for o in st.options}
    if not device.startswith("cuda"):
        bad = [o for o, d in opt_sets.items() if d["amp"]]
        if bad:
            raise ValueError(f"options {bad}: AMP is only used on CUDA (device is {device})")
    bad = [s for s in sections if s not in MEASURED]
    if bad:
        raise ValueError(f"unknown section(s) {bad}; known: {MEASURED}")
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise ValueError(f"unknown model(s) {bad}; known: {MODELS}")
    t_start = time.perf_counter()
    say = ((lambda msg: log(f"{msg}  [{time.perf_counter() - t_start:.1f} s]")) if log
           else (lambda *_: None))
    res: dict[str, Any] = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "quick": quick, "device": device, "settings": st.to_dict(),
        "machine": {}, "peak_flops": {}, "synth": [], "loader": [], "train": [],
        "bmc": [], "inference": [], "evaluation": {}, "summary": {}, "errors": [],
    }
    with keep_torch_threads():  # numba.get_num_threads() starts numba's OpenMP pool
        res["machine"] = machine_info(device)
    cuda = device.startswith("cuda")

    def guarded(what: str, fn: Callable[[], Any]) -> Any:
        try:
            with keep_torch_threads():
                return fn()
        except Exception as e:  # one failing row must not lose the others
            msg = f"{what}: {type(e).__name__}: {e}"
            res["errors"].append(msg)
            say(f"  ERROR {msg}")
            return None

    if "peak_flops" in sections:
        say(f"[bench] matmul peak ({st.matmul_n}x{st.matmul_n})")
        res["peak_flops"] = guarded("peak_flops", lambda: peak_matmul(
            device, st.matmul_n, st.matmul_repeats)) or {}
    if "synth" in sections:
        say(f"[bench] synthetic renderer ({st.synth_n} images of {st.synth_size} px per domain)")
        res["synth"] = guarded("synth", lambda: bench_synth(
            st.synth_size, st.synth_n, st.synth_repeats)) or []

    need_data = any(s in sections for s in ("loader", "train", "inference"))
    tmp = None
    data_path = None
    if need_data:
        if run_dir:
            data_path = find_train_split(run_dir)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="weakhand-bench-")
            say(f"[bench] writing a {st.data_n}-sample render split ({st.data_size} px) to {tmp.name}")
            with keep_torch_threads():
                data_path = make_bench_dataset(tmp.name, st.data_n, st.data_size)
        res["dataset"] = str(data_path)
    try:
        for prof in st.profiles:
            sz = profile_sizes(prof)
            big = prof == "gpu" and not cuda and not quick
            reps = min(st.big_repeats, st.repeats) if big else st.repeats
            warm = min(st.big_warmup, st.warmup) if big else st.warmup
            settle = min(st.big_settle, st.settle) if big else st.settle
            if "loader" in sections:
                say(f"[bench] loader, profile {prof}: {sz['train_size']} px, batch {sz['batch_size']}, "
                    f"workers {list(st.workers)}")
                row = guarded(f"loader {prof}", lambda: bench_loader(
                    data_path, sz["train_size"], sz["batch_size"], st.workers, st.loader_batches,
                    st.loader_repeats, st.getitem_n, pin_memory=cuda))
                if row:
                    res["loader"].append({"profile": prof, **row})
            if "train" in sections or "inference" in sections:
                batch = sample_batch(data_path, sz["train_size"], sz["batch_size"])
                for name in models:
                    case = ModelCase(name, sz)
                    flops: dict = {}         # training FLOPs, counted once per model and size
                    infer_flops: dict = {}   # inference FLOPs per image, per batch size
                    for oname, opts in opt_sets.items():
                        common = {"profile": prof, "model": name, "options": oname,
                                  "input_px": sz["train_size"], "config": case.config}
                        if "train" in sections:
                            say(f"[bench] train {name} ({prof}, {oname})")
                            r = guarded(f"train {name} {prof} {oname}", lambda: bench_train_row(
                                case, batch, device, opts, reps, warm, flops, settle))
                            if r:
                                r = {**common, "batch": int(batch["image"].shape[0]), **r}
                                if flops:
                                    B = r["batch"]
                                    r["flops_fwd_per_image"] = flops["forward"] / B
                                    r["flops_train_per_image"] = (flops["forward"] + flops["backward"]) / B
                                    r["achieved_flops"] = r["flops_train_per_image"] * r["images_per_s"]
                                    r["peak_key"] = _peak_key(opts, device)
                                    pk = res["peak_flops"].get(r["peak_key"])
                                    r["fraction_of_peak"] = r["achieved_flops"] / pk if pk else None
                                r["what"] = case.what
                                res["train"].append(r)
                        if "inference" in sections:
                            for bs in st.infer_batches:
                                say(f"[bench] inference {name} ({prof}, {oname}, batch {bs})")
                                r = guarded(f"inference {name} {prof} {oname} b{bs}",
                                            lambda: bench_infer_row(case, batch, device, opts, bs,
                                                                    reps, warm, settle))
                                if r:
                                    if r["flops_per_image"] is None:  # compiled: not counted
                                        r["flops_per_image"] = infer_flops.get(bs)
                                    if r["flops_per_image"] is not None:
                                        infer_flops.setdefault(bs, r["flops_per_image"])
                                    if r["flops_per_image"]:
                                        r["achieved_flops"] = r["flops_per_image"] * r["frames_per_s"]
                                    res["inference"].append({**common, **r})
            if "bmc" in sections:
                say(f"[bench] BMC loss vs pose-net step ({prof})")
                r = guarded(f"bmc {prof}", lambda: bmc_cost(
                    sz["batch_size"], sz["train_size"], sz["pose_width"], sz["pose_stages"],
                    reps, warm, device, st.bmc_poses, settle))
                if r:
                    res["bmc"].append({"profile": prof, **r})
    finally:
        if tmp is not None:
            tmp.cleanup()
    if "evaluation" in sections:
        say(f"[bench] evaluation ({st.eval_n} samples)")
        res["evaluation"] = guarded("evaluation", lambda: bench_eval(st.eval_n, st.eval_repeats)) or {}
    res["summary"] = summarise(res)
    res["seconds"] = time.perf_counter() - t_start
    return res


def summarise(res: dict) -> dict:
    """Loader / trainer throughput ratios of the main training step (cai_pose) per profile and
    worker count; the training row is the one with the Trainer's default options ("amp" on
    CUDA, "base" on CPU) when measured, else the first. ``main_profile`` is "cpu" (the README
    main job's sizes) when present, else the first."""
    out: dict[str, Any] = {"target_ratio": TARGET_RATIO, "ratios": []}
    default = "amp" if str(res.get("device", "")).startswith("cuda") else "base"
    for ld in res.get("loader", []):
        tr = [r for r in res.get("train", []) if r["model"] == "cai_pose"
              and r["profile"] == ld["profile"]]
        if not tr:
            continue
        t = next((r for r in tr if r["options"] == default), tr[0])
        for row in ld["rows"]:
            ratio = row["images_per_s"] / t["images_per_s"]
            out["ratios"].append({"profile": ld["profile"], "num_workers": row["num_workers"],
                                  "loader_images_per_s": row["images_per_s"],
                                  "train_images_per_s": t["images_per_s"],
                                  "train_options": t["options"], "ratio": ratio,
                                  "meets_target": ratio >= TARGET_RATIO})
    profs = [r["profile"] for r in out["ratios"]]
    main = "cpu" if "cpu" in profs else (profs[0] if profs else None)
    out["main_profile"] = main
    main_rows = [r for r in out["ratios"] if r["profile"] == main]
    if main_rows:
        best = max(main_rows, key=lambda r: r["ratio"])
        out["best_ratio"] = best["ratio"]
        out["best_num_workers"] = best["num_workers"]
        out["meets_target"] = bool(best["meets_target"])
    return out


# ----------------------------------------------------------------------------- report

def _si(x: Any, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    x = float(x)
    for div, pre in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {pre}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def _bytes(x: Any) -> str:
    if x is None:
        return "-"
    x = float(x)
    for div, pre in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= div:
            return f"{x / div:.3g} {pre}"
    return f"{x:.0f} B"


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str], title: str = "") -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(cells[0], widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
              for r in cells[1:]]
    return "\n".join(lines)


def print_report(res: dict, out=None) -> str:
    """The result as text tables (also printed to `out`, default stdout)."""
    m = res["machine"]
    parts = [f"weakhand bench on {m['machine_kind']} ({res['device']}: {m['device_name']}); "
             f"{m['cpu_model']}, {m['cpu_affinity']} cores, torch {m['torch']} "
             f"({m['torch_threads']} threads){' [quick]' if res['quick'] else ''}"]
    pf = res.get("peak_flops") or {}
    if pf:
        parts.append(format_table([[k, _si(v, "FLOP/s")] for k, v in pf.items()
                                   if k not in ("n", "repeats")], ["dtype", "matmul peak"],
                                  f"\nmatmul peak ({pf['n']} x {pf['n']} torch.mm)"))
    if res.get("synth"):
        parts.append(format_table([[r["domain"], r["size"], f"{r['images_per_s']:.0f}"]
                                   for r in res["synth"]], ["domain", "px", "images/s"],
                                  "\nsynthetic renderer (in memory)"))
    for ld in res.get("loader", []):
        rows = [["__getitem__", "-", f"{ld['getitem_images_per_s']:.0f}", "-"]]
        rows += [["DataLoader", r["num_workers"], f"{r['images_per_s']:.0f}",
                  f"{r['first_batches_s']:.2f}"] for r in ld["rows"]]
        parts.append(format_table(rows, ["loader", "workers", "images/s", "first batches s"],
                                  f"\ndata loader, profile {ld['profile']}: {ld['stored_size'][0]} -> "
                                  f"{ld['out_size']} px, batch {ld['batch_size']}, augmented"))
    if res.get("train"):
        rows = [[r["model"], r["profile"], r["options"], r["batch"], r["input_px"],
                 f"{r['images_per_s']:.1f}", f"{1e3 * r['step_s']:.1f}", _bytes(r["peak_mem_bytes"]),
                 _si(r.get("flops_fwd_per_image"), "FLOP"), _si(r.get("flops_train_per_image"), "FLOP"),
                 _si(r.get("achieved_flops"), "FLOP/s"),
                 "-" if r.get("fraction_of_peak") is None else f"{100 * r['fraction_of_peak']:.1f} %"]
                for r in res["train"]]
        mem = res["train"][0]["mem_method"]
        parts.append(format_table(rows, ["model", "profile", "options", "batch", "px", "images/s",
                                         "ms/step", "peak mem", "fwd/img", "train/img",
                                         "achieved", "of peak"],
                                  f"\ntraining step (peak memory: {mem})"))
    if res.get("bmc"):
        parts.append(format_table([[r["profile"], r["batch"], f"{1e3 * r['net_fwd_bwd_s']:.2f}",
                                    f"{1e3 * r['bmc_fwd_bwd_s']:.2f}", f"{100 * r['bmc_fraction']:.2f} %"]
                                   for r in res["bmc"]],
                                  ["profile", "batch", "net step ms", "BMC ms", "BMC / step"],
                                  "\nBMC loss forward+backward vs pose-net step (aim < 10 %)"))
    if res.get("inference"):
        rows = [[r["model"], r["profile"], r["options"], r["batch"], f"{r['frames_per_s']:.1f}",
                 f"{1e3 * r['latency_s']:.2f}", _si(r.get("achieved_flops"), "FLOP/s")]
                for r in res["inference"]]
        parts.append(format_table(rows, ["model", "profile", "options", "batch", "frames/s",
                                         "ms/call", "achieved"], "\ninference (eval mode, no grad)"))
    ev = res.get("evaluation") or {}
    if ev:
        rows = [[k[:-2], f"{ev[k]:.3f}", f"{ev[k[:-2] + '_samples_per_s']:.0f}"]
                for k in ev if k.endswith("_s") and not k.endswith("per_s")]
        parts.append(format_table(rows, ["evaluation", "seconds", "samples/s"],
                                  f"\nevaluation of {ev['n']} samples"))
    sm = res.get("summary") or {}
    if sm.get("ratios"):
        rows = [[r["profile"], r["num_workers"], f"{r['loader_images_per_s']:.0f}",
                 f"{r['train_images_per_s']:.1f}", f"{r['ratio']:.1f}",
                 "yes" if r["meets_target"] else "NO"] for r in sm["ratios"]]
        parts.append(format_table(rows, ["profile", "workers", "loader img/s", "train img/s",
                                         "ratio", f">= {sm['target_ratio']:g}"],
                                  "\nloader / trainer throughput (cai_pose training step)"))
    if res.get("errors"):
        parts.append("\nerrors:\n" + "\n".join(f"  {e}" for e in res["errors"]))
    text = "\n".join(parts)
    print(text, file=out or sys.stdout)
    return text


def save(res: dict, path: str | os.PathLike) -> Path:
    from weakhand.io import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, res)


# ----------------------------------------------------------------------------- CLI

def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    p.add_argument("--out", default=None,
                   help="JSON result path (default benchmarks/results/<machine>-<device>.json, "
                        f"<machine> = ${MACHINE_KIND_ENV} or the host name); '-' = do not save")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (smoke profile) and repeats: seconds, for tests")
    p.add_argument("--run-dir", default=None,
                   help="use this run folder's data/synth_render/train (or a dataset split) for "
                        "the loader and training batches instead of generating a temporary one")
    p.add_argument("--profiles", default=None,
                   help="comma list of size profiles (default cpu,gpu; quick: smoke)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {','.join(MODELS)} (default all)")
    p.add_argument("--options", default=None,
                   help="comma list of option sets, each options joined with '+' from "
                        f"{', '.join(OPTION_NAMES)} (default: base on CPU; base,amp,channels_last+amp on "
                        "CUDA), e.g. base,channels_last,compile")
    p.add_argument("--sections", default=",".join(MEASURED), help=f"comma list of {','.join(MEASURED)} (default all)")
    p.add_argument("--workers", default=None,
                   help="comma list of DataLoader num_workers (default 0,1,2,4,... up to the cores)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per figure")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per figure")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for the run (default: torch's choice)")


def cli_main(args: argparse.Namespace, argv: list[str]) -> int:
    res = run_benchmark(
        device=args.device, quick=args.quick, run_dir=args.run_dir,
        profiles=_csv(args.profiles) if args.profiles else None,
        options=_csv(args.options) if args.options else None,
        models=_csv(args.models), sections=_csv(args.sections),
        workers=[int(w) for w in _csv(args.workers)] if args.workers else None,
        repeats=args.repeats, warmup=args.warmup, threads=args.threads,
        log=lambda s: print(s, file=sys.stderr, flush=True))
    res["command"] = ["weakhand", "bench", *argv]
    print_report(res)
    if args.out != "-":
        path = save(res, args.out or default_output(res["device"]))
        print(f"\nsaved {path}")
    return 1 if res["errors"] else 0
