"""Distributed training (2 CPU processes, gloo) with the real Trainer, and its single-process
performance options.

The multi-process test launches this very file under ``torchrun`` (``__main__`` below runs the
scenarios on every rank and saves what each rank saw), then compares the ranks with each other
and with a single process that sees the same global batches.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from weakhand.train import (LAST_FILE, LOG_FILE, NonFiniteLossError, Trainer, checkpoint_info,
                            load_checkpoint, read_checkpoint)
from weakhand.train.distributed import ShardedBatchSampler, StepTerms, TrainView, shard_loader

N, BATCH, WORLD = 32, 4, 2


class XY(Dataset):
    def __init__(self, n: int = N):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.5], [-2.0], [0.5], [1.0]]) + 0.3

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


class EpochBatches(Sampler):
    """Batches of `bs` from a (seed, epoch) permutation; `group` consecutive batches merged
    into one (group=2 on one process = what 2 ranks see together)."""

    def __init__(self, n: int, bs: int, group: int = 1, seed: int = 5):
        self.n, self.bs, self.group, self.seed, self.epoch = n, bs, group, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // (self.bs * self.group)

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist()
        k = self.bs * self.group
        for i in range(len(self)):
            yield perm[i * k:(i + 1) * k]


class Net(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, batch):
        return self.body(batch["x"])


def net() -> nn.Module:
    return Net()


def mse(batch, out):
    loss = F.mse_loss(out, batch["y"])
    return {"loss": loss, "mae": (out - batch["y"]).abs().mean()}


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lin = nn.Linear(4, 1)
        self.gain = 2.0  # a plain attribute the step function reads through the view

    def forward(self, x):
        return self.lin(x)


def pair_step(models, batch):
    # "frozen" has no trainable parameter: it stays unwrapped
    pred = models["enc"](batch["x"]) * models["enc"].gain + models["frozen"](batch["x"])
    loss = F.mse_loss(pred, batch["y"])
    return {"loss": loss}


def pair_models(frozen_seed: int = 2) -> dict:
    torch.manual_seed(frozen_seed)
    frozen = nn.Linear(4, 1)
    frozen.requires_grad_(False)
    return {"enc": Encoder(), "frozen": frozen}


def state(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def run_scenarios(out: Path, rank: int, world: int) -> None:
    """Every scenario on this rank; results go to out/rank<k>.pt (+ a val-call count)."""
    res: dict = {"world": world}
    val_calls = []

    # A: shuffle=False DataLoader -> DistributedSampler, SGD, sync every step (CPU default)
    m = net()
    res["A_init"] = state(m)
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), mse, run_dir=out, name="A",
                 max_steps=6, log_every=2, ckpt_every=3, val_every=3, best_metric="v",
                 val_fn=lambda: val_calls.append(rank) or {"v": float(len(val_calls))},
                 show_progress=False, device="cpu", seed=3)
    tr.fit(DataLoader(XY(), batch_size=BATCH, shuffle=False))
    res["A"] = state(m)
    res["A_device_world"] = (str(tr.device), tr.world_size, tr.rank)

    # A resumed: 3 steps, then a new trainer (other init) continues to 6 from last.pt
    m1 = net()
    Trainer(m1, torch.optim.SGD(m1.parameters(), lr=0.1), mse, run_dir=out, name="A2",
            max_steps=3, log_every=2, ckpt_every=3, show_progress=False, device="cpu",
            seed=3).fit(DataLoader(XY(), batch_size=BATCH, shuffle=False))
    m2 = Net(seed=7)
    Trainer(m2, torch.optim.SGD(m2.parameters(), lr=0.1), mse, run_dir=out, name="A2",
            max_steps=6, log_every=2, ckpt_every=3, show_progress=False, device="cpu",
            seed=3).fit(DataLoader(XY(), batch_size=BATCH, shuffle=False), resume=True)
    res["A2"] = state(m2)

    # B: custom batch sampler (every 2nd batch per rank), dict of models with a frozen one,
    # momentum SGD, loss terms read only at log/checkpoint steps
    models = pair_models(frozen_seed=2 + rank)  # the Trainer syncs it from rank 0
    opt = torch.optim.SGD(models["enc"].parameters(), lr=0.05, momentum=0.9)
    tr = Trainer(models, opt, step_fn=pair_step, run_dir=out, name="B", max_steps=7,
                 log_every=3, show_progress=False, device="cpu", sync_every_step=False)
    tr.fit(DataLoader(XY(), batch_sampler=EpochBatches(N, BATCH)))
    res["B"] = {k: state(v) for k, v in models.items()}
    res["B_view"] = type(tr._training_model()["enc"]).__name__
    res["B_frozen_wrapped"] = isinstance(tr._training_model()["frozen"], TrainView)

    # C: a NaN in one global batch that lands on rank 1 only: both ranks stop at that step
    ds = XY()
    batches = [{"x": ds.x[i:i + BATCH].clone(), "y": ds.y[i:i + BATCH].clone()}
               for i in range(0, N, BATCH)]
    batches[3]["x"][0, 0] = float("nan")  # global batch 3 -> rank 1's 2nd batch -> step 2
    m = net()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), mse, run_dir=out, name="C",
                 max_steps=4, ckpt_every=1, show_progress=False, device="cpu")
    try:
        tr.fit(batches)
        res["C"] = None
    except NonFiniteLossError as exc:
        res["C"] = (exc.step, sorted(exc.terms))

    # D: a parameter without gradient: a clear error before the update (on both ranks)
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(4, 1), nn.Linear(4, 1)

        def forward(self, batch):
            return self.used(batch["x"])

    m = Unused()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), mse, run_dir=out, name="D",
                 max_steps=2, show_progress=False, device="cpu")
    try:
        tr.fit(DataLoader(XY(), batch_size=BATCH))
        res["D"] = None
    except RuntimeError as exc:
        res["D"] = str(exc)
    m = Unused()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), mse, run_dir=out, name="D2",
                 max_steps=2, show_progress=False, device="cpu", find_unused_parameters=True)
    tr.fit(DataLoader(XY(), batch_size=BATCH))
    res["D2"] = state(m)

    res["val_calls"] = len(val_calls)
    torch.save(res, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", WEAKHAND_HEADLESS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", str(WORLD), __file__, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return out


def _results(out: Path) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=tol, rtol=tol) for k in a)


def test_ddp_ranks_agree_and_match_one_process_on_the_global_batch(ddp_run, tmp_path):
    r0, r1 = _results(ddp_run)
    assert r0["A_device_world"] == ("cpu", 2, 0) and r1["A_device_world"] == ("cpu", 2, 1)
    # both ranks end with identical weights, which moved away from the initial ones
    assert _equal(r0["A"], r1["A"]) and not _close(r0["A"], r0["A_init"], 1e-3)
    # one process, batch 2 x 4, the same samples per step: equal up to rounding (a missing
    # all-reduce would leave each rank on its own half of the batch)
    m = net()
    Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), mse, run_dir=tmp_path, name="A1",
            max_steps=6, show_progress=False, device="cpu",
            seed=3).fit(DataLoader(XY(), batch_size=WORLD * BATCH, shuffle=False))
    assert _close(state(m), r0["A"])
    # (and a rank that trained on its half alone would be far off)
    half = net()
    Trainer(half, torch.optim.SGD(half.parameters(), lr=0.1), mse, run_dir=tmp_path, name="H",
            max_steps=6, show_progress=False, device="cpu",
            seed=3).fit(DataLoader(torch.utils.data.Subset(XY(), range(0, N, 2)), batch_size=BATCH))
    assert not _close(state(half), r0["A"], 1e-3)

    # custom batch sampler, dict of models, deferred syncs: the same check
    assert _equal(r0["B"]["enc"], r1["B"]["enc"]) and _equal(r0["B"]["frozen"], r1["B"]["frozen"])
    assert r0["B_view"] == "TrainView" and r0["B_frozen_wrapped"] is False
    models = pair_models()
    opt = torch.optim.SGD(models["enc"].parameters(), lr=0.05, momentum=0.9)
    Trainer(models, opt, step_fn=pair_step, run_dir=tmp_path, name="B1", max_steps=7,
            show_progress=False, device="cpu").fit(
        DataLoader(XY(), batch_sampler=EpochBatches(N, BATCH, group=WORLD)))
    assert _close(state(models["enc"]), r0["B"]["enc"])
    assert _equal(state(models["frozen"]), r0["B"]["frozen"])  # untouched


def test_ddp_rank0_writes_logs_and_checkpoints_and_resume_is_exact(ddp_run):
    r0, r1 = _results(ddp_run)
    assert r0["val_calls"] == 2 and r1["val_calls"] == 0  # validation on rank 0 only
    recs = [json.loads(line) for line in (ddp_run / "A" / LOG_FILE).read_text().splitlines()]
    assert [r["kind"] for r in recs].count("start") == 1  # one writer
    assert [r["step"] for r in recs if r["kind"] == "train"] == [2, 4, 6]
    assert [r["step"] for r in recs if r["kind"] == "val"] == [3, 6]
    assert sorted(p.name for p in (ddp_run / "A").iterdir()) == ["best.pt", LAST_FILE, LOG_FILE]
    ck = read_checkpoint(ddp_run / "A" / LAST_FILE)
    assert ck["step"] == 6 and ck["trainer"]["world_size"] == 2
    assert list(ck["models"]["model"]) == ["body.0.weight", "body.0.bias",
                                             "body.2.weight", "body.2.bias"]  # no "module."
    assert len(ck["ranks"]) == 2  # each rank's RNG states, for resuming
    assert _equal(ck["models"]["model"], r0["A"])
    assert checkpoint_info(ddp_run / "B" / LAST_FILE)["models"] == {"enc": 5, "frozen": 5}
    # resumed on both ranks from last.pt: identical to the uninterrupted run
    assert _equal(r0["A2"], r0["A"]) and _equal(r1["A2"], r1["A"])
    kinds = [json.loads(line)["kind"] for line in (ddp_run / "A2" / LOG_FILE).read_text().splitlines()]
    assert kinds.count("resume") == 1


def test_ddp_nan_on_one_rank_and_missing_gradients_stop_every_rank(ddp_run):
    r0, r1 = _results(ddp_run)
    assert r0["C"] == r1["C"] == (2, ["loss", "mae"])
    err = [json.loads(line) for line in (ddp_run / "C" / LOG_FILE).read_text().splitlines()]
    assert [r["kind"] for r in err].count("error") == 1 and err[-1]["step"] == 2
    assert checkpoint_info(ddp_run / "C" / LAST_FILE)["step"] == 1
    for r in (r0, r1):
        assert r["D"] is not None and "find_unused_parameters=True" in r["D"] and "spare" in r["D"]
    assert _equal(r0["D2"], r1["D2"])
    assert not (ddp_run / "D" / LAST_FILE).exists()


# ---------------------------------------------------------------------------------------------
# single process: sharding helpers, deferred syncs, channels_last, compile

def test_shard_loader_splits_batches_and_samples():
    bs = EpochBatches(N, BATCH)
    parts = [list(ShardedBatchSampler(bs, 3, r)) for r in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]  # 8 batches // 3 ranks; the last 2 dropped
    full = list(bs)
    assert parts[1] == [full[1], full[4]]
    sharded = shard_loader(DataLoader(XY(), batch_sampler=bs), 2, 1)
    sharded.batch_sampler.set_epoch(4)
    assert bs.epoch == 4 and len(sharded) == 4
    loader = shard_loader(DataLoader(XY(), batch_size=3, shuffle=True), 2, 0, seed=9)
    other = shard_loader(DataLoader(XY(), batch_size=3, shuffle=True), 2, 1, seed=9)
    seen = [i for ld in (loader, other) for i in ld.sampler]
    assert sorted(seen) == list(range(N)) and len(loader) == len(other) == 6
    assert list(shard_loader([1, 2, 3, 4, 5], 2, 1)) == [2, 4]
    with pytest.raises(ValueError, match="fewer than"):
        ShardedBatchSampler(EpochBatches(8, 4), 3, 0)


def test_train_view_calls_the_wrapper_and_keeps_the_module_keys():
    enc = Encoder()
    calls = []
    wrapper = nn.Module()
    wrapper.forward = lambda x: calls.append(x) or enc(x)
    view = TrainView(enc, wrapper)
    out = view(torch.ones(2, 4))
    assert calls and torch.equal(out, enc(torch.ones(2, 4))) and view.calls == 1
    assert view.gain == 2.0 and view.lin is enc.lin  # attributes of the module itself
    both = nn.ModuleDict({"enc": view, "frozen": nn.Linear(4, 1)})
    assert list(both.state_dict()) == ["enc.lin.weight", "enc.lin.bias", "frozen.weight",
                                       "frozen.bias"]


def test_deferred_sync_reports_the_first_bad_step(tmp_path):
    ds = XY()
    batches = [{"x": ds.x[i:i + BATCH].clone(), "y": ds.y[i:i + BATCH].clone()}
               for i in range(0, N, BATCH)]
    batches[4]["x"][0, 0] = float("nan")  # step 5
    m = net()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), mse, run_dir=tmp_path, name="d",
                 max_steps=8, log_every=4, ckpt_every=2, show_progress=False,
                 sync_every_step=False)
    with pytest.raises(NonFiniteLossError) as exc:
        tr.fit(batches)
    assert exc.value.step == 5 and exc.value.terms == ["loss", "mae"]
    assert "Found at step 6" in str(exc.value)
    assert checkpoint_info(tr.last_path)["step"] == 4  # nothing written after the bad step
    # the log records of the good steps equal those of the per-step mode
    m2 = net()
    tr2 = Trainer(m2, torch.optim.SGD(m2.parameters(), lr=0.1), mse, run_dir=tmp_path,
                  name="e", max_steps=4, log_every=4, show_progress=False)
    tr2.fit(batches)
    a, b = tr.history()["train"], tr2.history()["train"]
    assert a["step"] == b["step"] == [4]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-12) and a["mae"] == pytest.approx(b["mae"])


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 1)

    def forward(self, batch):
        return self.head(self.conv(batch["image"]).mean((2, 3)))


def test_channels_last_and_compile_keep_results_and_checkpoint_keys(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = [{"image": torch.randn(4, 3, 8, 8, generator=g), "y": torch.randn(4, 1, generator=g)}
            for _ in range(3)]
    seen_formats = []

    def loss_fn(batch, out):
        seen_formats.append(batch["image"].is_contiguous(memory_format=torch.channels_last))
        return {"loss": F.mse_loss(out, batch["y"])}

    results = {}
    for name, kw in {"plain": {}, "cl": {"channels_last": True},
                     "compiled": {"compile": {"backend": "eager"}}}.items():
        m = ConvNet()
        tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), loss_fn, run_dir=tmp_path,
                     name=name, max_steps=3, show_progress=False, **kw)
        tr.fit(data)
        results[name] = state(m)
        fresh = ConvNet()
        load_checkpoint(tr.last_path, fresh)  # keys of the original module (no _orig_mod.)
        assert _equal(state(fresh), results[name])
    assert seen_formats == [False] * 3 + [True] * 3 + [False] * 3
    assert _close(results["cl"], results["plain"]) and _close(results["compiled"], results["plain"])
    info = checkpoint_info(tmp_path / "compiled" / LAST_FILE)
    assert info["trainer"]["compile"] == {"backend": "eager"} and math.isfinite(info["step"])


# ---------------------------------------------------------------------------------------------
# weakhand run --nproc

PARAMS = ('profile = "auto"  # profile\n' 'run_dir = ""  # run folder\n'
          'device = "auto"  # device\n')

TRAIN_NB = """import os, torch
from pathlib import Path
from torch import nn
from weakhand.train import Trainer
torch.manual_seed(0)
model = nn.Linear(4, 1)
x = torch.randn(32, 4)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)),
                                     batch_size=4, shuffle=True)
step = lambda m, b: {"loss": ((m(b[0]) - b[1]) ** 2).mean()}
tr = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), step_fn=step, run_dir=run_dir,
             name="lin", max_steps=5, device=device)
tr.fit(loader)
tr.load_weights("last")
torch.save({"w": model.state_dict(), "world": tr.world_size},
           Path(run_dir, f"w_rank{os.environ.get('RANK')}.pt"))
"""


def write_nb(folder: Path, name: str, body: str, metadata: dict | None = None) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.update(metadata or {})
    cell = nbformat.v4.new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")
    return folder / f"{name}.ipynb"


def test_run_nproc_trains_on_every_rank_and_reports_a_failing_rank(tmp_path):
    from weakhand.workbook import runner

    nb = tmp_path / "notebooks"
    write_nb(nb, "00_data", "import json, os\nfrom pathlib import Path\n"
             "Path(run_dir, 'data.json').write_text(json.dumps({k: os.environ.get(k) for k in "
             "('RANK', 'WORLD_SIZE')}))\n")
    write_nb(nb, "10_train", TRAIN_NB)
    write_nb(nb, "20_fail", "import os, time\n"
             "if os.environ['RANK'] == '1':\n    raise RuntimeError('boom on rank 1')\n"
             "time.sleep(300)  # rank 0 waits until torchrun stops it\n",
             metadata={"weakhand": {"ranks": "all"}})
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        res = runner.run_notebooks("t", profile="smoke", device="cpu", notebooks_dir=nb,
                                   runs_dir=tmp_path / "runs", nproc=2, out=fh, err=fh)
    text = out.read_text()
    run = tmp_path / "runs" / "t"
    assert not res.ok and res.failed == "20_fail", text
    assert "failed on rank 1" in res.message and "boom on rank 1" in text
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "failed" and rec["nproc"] == 2 and "--nproc 2" in rec["command"]
    nbs = rec["notebooks"]
    assert nbs["00_data"]["status"] == "ok" and nbs["00_data"]["ranks"] == "rank0"
    assert nbs["10_train"]["status"] == "ok" and nbs["10_train"]["ranks"] == "all"
    f = nbs["20_fail"]
    assert f["status"] == "failed" and f["failed_rank"] == 1 and f["error"]["evalue"] == "boom on rank 1"
    assert f["rank_output"] == str(run / "logs" / "rank1" / "20_fail.ipynb")
    # rank-0 notebook: once, as a plain single process
    assert json.loads((run / "data.json").read_text()) == {"RANK": None, "WORLD_SIZE": None}
    # the training notebook ran on both ranks, distributed; outputs of rank 1 under logs/rank1
    w0, w1 = (torch.load(run / f"w_rank{r}.pt") for r in (0, 1))
    assert w0["world"] == w1["world"] == 2 and _equal(w0["w"], w1["w"])
    assert (run / "10_train.ipynb").is_file() and (run / "logs" / "rank1" / "10_train.ipynb").is_file()
    assert not (run / "logs" / "rank1" / "00_data.ipynb").exists()
    rec1 = json.loads((run / "logs" / "rank1" / "run.json").read_text())
    assert rec1["rank"] == 1 and rec1["notebooks"]["00_data"]["status"] == "rank0-only"
    recs = [json.loads(line) for line in (run / "lin" / LOG_FILE).read_text().splitlines()]
    assert [r["kind"] for r in recs] == ["start", "train"]


def test_nproc_checks_before_launching(tmp_path, monkeypatch, capsys):
    from weakhand.workbook import cli, runner

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(runner.RunnerError, match="--nproc 4 with device cuda needs 4 GPUs .* sees 1"):
        runner.check_nproc_device(4, "cuda")
    runner.check_nproc_device(4, "cpu")
    nb = tmp_path / "nb"
    write_nb(nb, "00_x", "pass\n")
    assert cli.main(["run", "--notebooks", str(nb), "--runs-dir", str(tmp_path), "--nproc", "0"]) == 2
    assert "--nproc must be a positive integer" in capsys.readouterr().err
    assert runner.read_notebook(nb / "00_x.ipynb").ranks == "rank0"
    write_nb(nb, "10_t", "from weakhand.train import Trainer\nt = Trainer(\n")
    assert runner.read_notebook(nb / "10_t.ipynb").ranks == "all"
    write_nb(nb, "20_m", "pass\n", metadata={"weakhand": {"ranks": "every"}})
    with pytest.raises(runner.RunnerError, match="must be 'all' or 'rank0'"):
        runner.read_notebook(nb / "20_m.ipynb")


if __name__ == "__main__":  # one rank of the torchrun job launched by the ddp_run fixture
    run_scenarios(Path(sys.argv[1]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))


def test_deferred_loss_terms_read_the_same_values_as_immediate_reads():
    """StepTerms (the Trainer's host sync): rows deferred and flushed together give each step
    the values an immediate read gives, oldest first, with the step's own position."""
    terms_of = StepTerms()
    now = []
    for i in range(3):
        terms = {"loss": torch.tensor(1.5 * i, requires_grad=True) * 1, "a": torch.tensor(float(i))}
        grad_norm = None if i == 1 else torch.tensor(0.25 * i, dtype=torch.float64)
        names, has_gn, row = StepTerms.row(terms, grad_norm, torch.device("cpu"))
        now.append(terms_of.read(names, has_gn, row, step=i + 1))
        terms_of.defer(names, has_gn, row, i + 1, 0, i + 1)
    later = terms_of.flush(step=3)
    assert [values for values, *_ in later] == now
    assert [(has_gn, step, batch) for _, has_gn, step, _, batch in later] == [
        (True, 1, 1), (False, 2, 2), (True, 3, 3)]
    assert "grad_norm" not in now[1] and now[2]["grad_norm"] == 0.5
    assert terms_of.pending == [] and terms_of.flush(step=4) == []
