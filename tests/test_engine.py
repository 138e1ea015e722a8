"""Training engine: convergence, exact resume, NaN stops, logs, best model, atomic checkpoints."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

import weakhand.io
from weakhand.train import (BEST_FILE, LAST_FILE, LOG_FILE, CheckpointError,
                            CheckpointNotFoundError, NonFiniteLossError, Trainer, checkpoint_info,
                            load_checkpoint, loss_figure, read_history)

N_DATA, BATCH = 64, 8  # 8 batches per epoch


class DictDataset(Dataset):
    def __init__(self, n: int = N_DATA, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        w = torch.tensor([[1.5], [-2.0], [0.5], [1.0]])
        self.y = self.x @ w + 0.3 + 0.01 * torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class Net(nn.Module):
    def __init__(self, dropout: float = 0.3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))

    def forward(self, batch):
        return self.body(batch["x"])


def mse_loss(batch, out):
    mse = F.mse_loss(out, batch["y"])
    return {"loss": mse, "mse": mse, "abs": (out - batch["y"]).abs().mean()}


class EpochBatchSampler(Sampler):
    """Order depends only on (seed, epoch), like MixedBatchSampler; records set_epoch calls."""

    def __init__(self, n: int, batch_size: int, seed: int = 5):
        self.n, self.bs, self.seed, self.epoch, self.calls = n, batch_size, seed, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.calls.append(epoch)

    def __len__(self) -> int:
        return self.n // self.bs

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist()
        for i in range(len(self)):
            yield perm[i * self.bs:(i + 1) * self.bs]


def make_loader(kind: str = "shuffle", dataset: Dataset | None = None) -> DataLoader:
    ds = dataset or DictDataset()
    if kind == "epoch_sampler":
        return DataLoader(ds, batch_sampler=EpochBatchSampler(len(ds), BATCH))
    workers = 2 if kind == "shuffle_workers" else 0
    return DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                      generator=torch.Generator().manual_seed(123))


def make_trainer(tmp_path, model, max_steps, name="run", loss_fn=mse_loss, lr=1e-2, **kw):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    kw.setdefault("scheduler", torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5))
    kw.setdefault("show_progress", False)
    kw.setdefault("seed", 3)
    return Trainer(model, opt, loss_fn, run_dir=tmp_path, name=name, max_steps=max_steps, **kw)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def train_records(path: Path) -> list[dict]:
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in recs if r["kind"] == "train"]


class Killed(Exception):
    pass


def killing(loss_fn, at_call: int):
    calls = {"n": 0}

    def fn(batch, out):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Killed(f"simulated kill during step {at_call}")
        return loss_fn(batch, out)
    return fn


# ---------------------------------------------------------------------------------------------

def test_tiny_regression_converges(tmp_path):
    model = Net(dropout=0.0)
    tr = make_trainer(tmp_path, model, 150, log_every=10, scheduler=None, lr=2e-2)
    hist = tr.fit(make_loader())
    losses = hist["train"]["loss"]
    assert hist["train"]["step"] == list(range(10, 151, 10))
    assert losses[-1] < 0.02 * losses[0] and losses[-1] < 0.05
    assert tr.step == 150 and tr.epoch == 150 // (N_DATA // BATCH)
    assert hist["loss_terms"] == ["loss", "mse", "abs"]


@pytest.mark.parametrize("kind,ckpt_every,kill_at", [
    ("shuffle", 10, 13),            # checkpoint in the middle of epoch 1
    ("shuffle", 8, 11),             # checkpoint exactly at the end of epoch 0
    ("epoch_sampler", 10, 13),      # set_epoch-driven order (MixedBatchSampler style)
    ("shuffle_workers", 10, 13),    # worker processes: skipped batches are really iterated
])
def test_resume_reproduces_uninterrupted_run(tmp_path, kind, ckpt_every, kill_at):
    steps = 20
    # A: uninterrupted
    loader_a = make_loader(kind)
    model_a = Net(seed=0)
    tr_a = make_trainer(tmp_path, model_a, steps, name="a", ckpt_every=ckpt_every, log_every=3)
    tr_a.fit(loader_a)
    if kind == "epoch_sampler":
        assert loader_a.batch_sampler.calls == [0, 1, 2]

    # B: killed during step `kill_at`; last.pt holds the last multiple of ckpt_every
    model_b = Net(seed=0)
    tr_b = make_trainer(tmp_path, model_b, steps, name="b", ckpt_every=ckpt_every, log_every=3,
                        loss_fn=killing(mse_loss, kill_at))
    with pytest.raises(Killed):
        tr_b.fit(make_loader(kind))
    saved = (kill_at - 1) // ckpt_every * ckpt_every
    assert checkpoint_info(tmp_path / "b" / LAST_FILE)["step"] == saved

    # a NEW trainer, a differently initialised model and a new loader continue to the end
    model_c = Net(seed=99)
    loader_c = make_loader(kind)
    tr_c = make_trainer(tmp_path, model_c, steps, name="b", ckpt_every=ckpt_every, log_every=3)
    tr_c.fit(loader_c, resume=True)
    assert tr_c.step == steps and tr_c.epoch == tr_a.epoch
    assert max_diff(weights(model_a), weights(model_c)) <= 1e-6
    assert tr_c.optimizer.param_groups[0]["lr"] == tr_a.optimizer.param_groups[0]["lr"]
    if kind == "epoch_sampler":
        assert loader_c.batch_sampler.calls == [saved // 8, *range(saved // 8 + 1, 3)]

    # the log of the resumed run equals the uninterrupted one (stale lines after the
    # checkpoint are dropped, interval means survive the restart)
    ra, rb = train_records(tmp_path / "a" / LOG_FILE), train_records(tmp_path / "b" / LOG_FILE)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [3, 6, 9, 12, 15, 18, 20]
    for x, y in zip(ra, rb):
        for term in ("loss", "mse", "abs", "lr", "epoch"):
            assert x[term] == pytest.approx(y[term], rel=1e-6, abs=1e-9), (x["step"], term)


def test_resume_without_rng_restore_would_differ(tmp_path):
    """Guard for the resume test: dropout and shuffling really depend on the RNG states."""
    steps = 6
    model_a, model_b = Net(seed=0), Net(seed=0)
    make_trainer(tmp_path, model_a, steps, name="a").fit(make_loader())
    tr = make_trainer(tmp_path, model_b, steps, name="b", seed=4)  # other seed -> other draws
    tr.fit(make_loader())
    assert max_diff(weights(model_a), weights(model_b)) > 1e-4


def test_fresh_fit_is_reproducible_with_a_used_loader(tmp_path):
    """A fresh start re-seeds the global RNGs and the loader's generator from `seed`."""
    loader = make_loader()
    model_a, model_b = Net(seed=0), Net(seed=0)
    make_trainer(tmp_path, model_a, 11, name="a").fit(loader)
    torch.rand(3), np.random.rand(3)               # disturb the global RNGs as a notebook would
    make_trainer(tmp_path, model_b, 11, name="b").fit(loader)  # same loader, generator advanced
    assert max_diff(weights(model_a), weights(model_b)) == 0.0


def test_completed_run_is_not_retrained_and_resume_false_restarts(tmp_path):
    model = Net()
    tr = make_trainer(tmp_path, model, 6, val_fn=lambda: {"m": 1.0}, best_metric="m")
    h1 = tr.fit(make_loader())
    w = weights(model)
    tr2 = make_trainer(tmp_path, Net(seed=7), 6, val_fn=lambda: {"m": 1.0}, best_metric="m")
    h2 = tr2.fit(make_loader(), resume=True)
    assert tr2.step == 6 and max_diff(w, weights(tr2.model)) == 0.0
    assert h2["train"] == h1["train"]
    # resume=False starts over: old checkpoints/log removed, same seed -> same weights
    tr3 = make_trainer(tmp_path, Net(seed=0), 3)
    tr3.fit(make_loader(), resume=False)
    assert not (tr3.dir / BEST_FILE).exists()
    assert read_history(tr3.dir)["train"]["step"] == [3]


def nan_batches(k: int) -> list[dict]:
    ds = DictDataset()
    batches = [{"x": ds.x[i:i + BATCH].clone(), "y": ds.y[i:i + BATCH].clone()}
               for i in range(0, N_DATA, BATCH)]
    batches[k - 1]["x"][0, 0] = float("nan")
    return batches


def reg_loss(model):
    def fn(batch, out):
        mse = F.mse_loss(out, batch["y"])
        reg = 1e-3 * sum((p ** 2).sum() for p in model.parameters())
        return {"loss": mse + reg, "mse": mse, "reg": reg}
    return fn


def test_nan_in_batch_stops_at_that_step_and_keeps_last_good_checkpoint(tmp_path):
    k = 5
    model = Net()
    tr = make_trainer(tmp_path, model, 10, loss_fn=reg_loss(model), ckpt_every=2, log_every=1)
    with pytest.raises(NonFiniteLossError) as exc:
        tr.fit(nan_batches(k))   # a plain list of batches works as a loader too
    err = exc.value
    assert err.step == k and f"step {k}" in str(err)
    assert set(err.terms) == {"loss", "mse"} and "mse=nan" in str(err)
    assert "reg" not in err.terms and math.isfinite(err.values["reg"])
    assert str(tr.last_path) in str(err) and err.checkpoint == tr.last_path

    # last.pt is the step-4 checkpoint, finite, and equal to the weights in memory (the NaN
    # step made no update)
    info = checkpoint_info(tr.last_path)
    assert info["step"] == k - 1
    fresh = Net(seed=42)
    load_checkpoint(tr.last_path, fresh)
    assert all(torch.isfinite(v).all() for v in fresh.state_dict().values())
    assert max_diff(weights(fresh), weights(model)) == 0.0
    recs = [json.loads(line) for line in tr.log_path.read_text().splitlines()]
    assert recs[-1]["kind"] == "error" and recs[-1]["step"] == k and "mse" in recs[-1]["terms"]


def test_non_finite_gradient_with_finite_loss_is_caught(tmp_path):
    calls = {"n": 0}

    def loss_fn(batch, out):
        calls["n"] += 1
        mse = F.mse_loss(out, batch["y"])
        if calls["n"] == 3:  # sqrt'(0) = inf: finite loss, NaN gradient
            mse = mse + torch.sqrt(((out - out.detach()) ** 2).sum())
        return {"loss": mse, "mse": mse}

    model = Net()
    tr = make_trainer(tmp_path, model, 10, loss_fn=loss_fn, ckpt_every=1)
    with pytest.raises(NonFiniteLossError) as exc:
        tr.fit(make_loader())
    assert exc.value.step == 3 and exc.value.terms == ["grad_norm"]
    assert "gradient norm at step 3" in str(exc.value)
    assert checkpoint_info(tr.last_path)["step"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_jsonl_log_lines_parse_and_hold_the_terms(tmp_path):
    tr = make_trainer(tmp_path, Net(), 10, log_every=3, val_every=5,
                      val_fn=lambda: {"val_mse": 0.5, "pck": torch.tensor(0.25)})
    hist = tr.fit(make_loader())
    lines = tr.log_path.read_text().splitlines()
    recs = [json.loads(line) for line in lines]          # every line is valid JSON
    train = [r for r in recs if r["kind"] == "train"]
    val = [r for r in recs if r["kind"] == "val"]
    assert [r["step"] for r in train] == [3, 6, 9, 10]
    assert [r["step"] for r in val] == [5, 10]
    for r in train:
        for key in ("loss", "mse", "abs", "lr", "epoch", "elapsed_s", "images_per_s", "time"):
            assert key in r and isinstance(r[key], (int, float)), key
        assert r["images_per_s"] > 0 and math.isfinite(r["loss"])
    assert train[1]["lr"] == pytest.approx(1e-2) and train[-1]["lr"] == pytest.approx(5e-3)
    assert val[0]["pck"] == 0.25 and val[0]["val_mse"] == 0.5
    assert hist["val_metrics"] == ["val_mse", "pck"] and hist["val"]["step"] == [5, 10]
    assert len(hist["train"]["loss"]) == len(hist["train"]["step"]) == 4
    # the checkpoint describes itself
    info = checkpoint_info(tr.last_path)
    assert info["metrics"]["train"]["step"] == 10 and info["metrics"]["val"]["pck"] == 0.25


@pytest.mark.parametrize("mode,best_step,best_value", [("min", 8, 0.5), ("max", 10, 4.0)])
def test_best_checkpoint_tracks_best_validation_metric(tmp_path, mode, best_step, best_value):
    script = iter([3.0, 1.0, 2.0, 0.5, 4.0])
    snapshots = {}
    model = Net()

    def val_fn():
        assert not model.training            # evaluated in eval mode...
        snapshots[tr.step] = weights(model)
        return {"score": next(script)}

    tr = make_trainer(tmp_path, model, 10, val_every=2, ckpt_every=3, val_fn=val_fn,
                      best_metric="score", best_mode=mode, config={"lr": 1e-2, "where": tmp_path})
    tr.fit(make_loader())
    assert model.training                     # ...and put back to training mode
    info = checkpoint_info(tr.best_path)
    assert info["step"] == best_step
    assert info["best"] == {"metric": "score", "mode": mode, "value": best_value, "step": best_step}
    assert info["config"] == {"lr": 1e-2, "where": str(tmp_path)}
    assert checkpoint_info(tr.last_path)["best"]["step"] == best_step
    fresh = Net(seed=5)
    load_checkpoint(tr.best_path, fresh)
    assert max_diff(weights(fresh), snapshots[best_step]) == 0.0
    tr.load_weights("best")
    assert max_diff(weights(model), snapshots[best_step]) == 0.0


def test_device_and_amp_selection(tmp_path):
    tr = make_trainer(tmp_path, Net(), 1, device="cpu")
    assert tr.amp is False and tr.scaler is None and tr.device.type == "cpu"
    if not torch.cuda.is_available():
        assert make_trainer(tmp_path, Net(), 1).amp is False       # amp=None, auto -> CPU
        with pytest.raises(ValueError, match="amp=True needs a CUDA device"):
            make_trainer(tmp_path, Net(), 1, device="cpu", amp=True)
        with pytest.raises(RuntimeError, match="'cuda' was requested but CUDA is not usable"):
            make_trainer(tmp_path, Net(), 1, device="cuda")
    else:  # pragma: no cover - GPU machines
        assert make_trainer(tmp_path, Net(), 1, device="cuda").amp is True


def test_loss_figure_has_one_trace_per_term(tmp_path):
    tr = make_trainer(tmp_path, Net(), 6, log_every=2, val_every=3,
                      val_fn=lambda: {"val_mse": 1.0, "pck": 0.5})
    tr.fit(make_loader())
    fig = loss_figure(tr.history())
    names = [t.name for t in fig.data]
    assert names == ["loss", "mse", "abs", "val/val_mse", "val/pck"]
    assert [t.yaxis for t in fig.data] == ["y", "y", "y", "y2", "y2"]
    assert list(fig.data[0].x) == [2, 4, 6] and list(fig.data[3].x) == [3, 6]
    assert fig.layout.yaxis2.overlaying == "y"
    no_val = loss_figure({"train": {"step": [1, 2], "loss": [2.0, 1.0]}, "val": {},
                          "loss_terms": ["loss"], "val_metrics": []})
    assert len(no_val.data) == 1
    assert len(tr.loss_figure().data) == 5 and len(loss_figure(tr.dir).data) == 5


@pytest.mark.parametrize("failure", ["torch.save", "fsync"])
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch, failure):
    tr = make_trainer(tmp_path, Net(), 2, ckpt_every=2)
    tr.fit(make_loader())
    before = tr.last_path.read_bytes()

    if failure == "torch.save":
        real_save = torch.save

        def broken_save(obj, f, *a, **kw):  # writes half a checkpoint, then dies
            real_save(obj, f, *a, **kw)
            f.seek(0)
            f.truncate(len(before) // 2)
            raise OSError("simulated crash in torch.save")
        monkeypatch.setattr(torch, "save", broken_save)
    else:
        def broken_fsync(fd):
            raise OSError("simulated disk failure")
        monkeypatch.setattr(weakhand.io.os, "fsync", broken_fsync)

    tr2 = make_trainer(tmp_path, Net(), 4, ckpt_every=2)
    with pytest.raises(OSError, match="simulated"):
        tr2.fit(make_loader())
    monkeypatch.undo()
    assert tr.last_path.read_bytes() == before
    assert checkpoint_info(tr.last_path)["step"] == 2
    assert sorted(p.name for p in tr.dir.iterdir()) == [LAST_FILE, LOG_FILE]  # no temporaries


def test_missing_and_corrupt_checkpoints_raise_clear_errors(tmp_path):
    missing = tmp_path / "nope" / "last.pt"
    with pytest.raises(CheckpointNotFoundError, match="checkpoint not found: .*nope/last.pt"):
        checkpoint_info(missing)
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)

    tr = make_trainer(tmp_path, Net(), 2, ckpt_every=2)
    tr.fit(make_loader())
    data = tr.last_path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    for bad, pattern in ((cut, "corrupt or truncated"), (junk, "corrupt or truncated"),
                         (other, "not a weakhand training checkpoint")):
        with pytest.raises(CheckpointError, match=pattern) as exc:
            load_checkpoint(bad, Net())
        assert str(bad) in str(exc.value)
        with pytest.raises(CheckpointError, match=pattern):
            checkpoint_info(bad)
    with pytest.raises(CheckpointError, match="cut.pt"):
        make_trainer(tmp_path, Net(), 4).fit(make_loader(), resume=cut)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tr.last_path, nn.Linear(4, 1))


def test_dict_of_models_with_step_fn(tmp_path):
    enc, head = nn.Linear(4, 8), nn.Linear(8, 1)

    def step_fn(models, batch):
        pred = models["head"](torch.relu(models["enc"](batch["x"])))
        mse = F.mse_loss(pred, batch["y"])
        return {"loss": mse}

    params = list(enc.parameters()) + list(head.parameters())
    tr = Trainer({"enc": enc, "head": head}, torch.optim.SGD(params, lr=0.05), step_fn=step_fn,
                 run_dir=tmp_path, name="two", max_steps=30, show_progress=False)
    hist = tr.fit(make_loader())
    assert hist["train"]["loss"][-1] < hist["train"]["loss"][0]
    info = checkpoint_info(tr.last_path)
    assert info["models"] == {"enc": 40, "head": 9}
    enc2 = nn.Linear(4, 8)
    load_checkpoint(tr.last_path, {"enc": enc2})
    assert torch.equal(enc2.weight, enc.weight)
    with pytest.raises(CheckpointError, match="several models"):
        load_checkpoint(tr.last_path, nn.Linear(4, 8))
    with pytest.raises(ValueError, match="step_fn"):
        Trainer({"enc": enc}, torch.optim.SGD(enc.parameters(), lr=0.1), mse_loss,
                run_dir=tmp_path, max_steps=1)
