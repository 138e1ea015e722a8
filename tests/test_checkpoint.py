"""weakhand.train.checkpoint: resuming with a changed training length (issue 16, item 4)."""
from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn

from weakhand.train import Trainer
from weakhand.train.checkpoint import restore_scheduler

LR, ETA = 0.1, 0.001


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, batch):
        return self.lin(batch["x"])


def _batches():
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(4, 2, generator=g), "y": torch.randn(4, 1, generator=g)}
            for _ in range(5)]


def _trainer(run_dir, steps):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=ETA)
    return Trainer(model, opt, lambda b, o: {"loss": ((o - b["y"]) ** 2).mean()},
                   run_dir=run_dir, name="stage1_pose", max_steps=steps, scheduler=sched,
                   log_every=1, show_progress=False, device="cpu")


def _cosine(step, total):
    return ETA + (LR - ETA) * (1 + math.cos(math.pi * step / total)) / 2


def _lrs(tr):
    return {r["step"]: r["lr"] for r in map(json.loads, tr.log_path.read_text().splitlines())
            if r.get("kind") == "train"}


def test_extending_a_finished_run_follows_the_new_schedule(tmp_path):
    """6 steps, then resumed with 40: the LR after step 6 is the 40-step cosine (monotone down
    to eta_min at step 40), not the 6-step schedule restarting every 12 steps."""
    _trainer(tmp_path, 6).fit(_batches())
    tr = _trainer(tmp_path, 40)
    with pytest.warns(UserWarning, match=r"T_max=6 -> T_max=40.*rebuilt.*step 6"):
        tr.fit(_batches())
    lrs = _lrs(tr)
    assert sorted(lrs) == list(range(1, 41))
    for s in range(7, 41):
        assert lrs[s] == pytest.approx(_cosine(s, 40), rel=1e-6, abs=1e-9), s
    ext = [lrs[s] for s in range(7, 41)]
    assert all(a >= b for a, b in zip(ext, ext[1:]))  # no cycling
    assert lrs[40] == pytest.approx(ETA)


def test_same_length_resume_restores_the_scheduler_state(tmp_path):
    _trainer(tmp_path, 6).fit(_batches())
    tr = _trainer(tmp_path, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing rebuilt, nothing said
        tr.fit(_batches())
    assert tr.scheduler.last_epoch == 6


def test_restore_scheduler_semantics():
    p = nn.Parameter(torch.zeros(1))
    old_opt = torch.optim.SGD([p], lr=LR)
    old = torch.optim.lr_scheduler.StepLR(old_opt, step_size=2, gamma=0.5)
    for _ in range(3):
        old_opt.step()
        old.step()
    opt = torch.optim.SGD([p], lr=LR)
    opt.load_state_dict(old_opt.state_dict())
    new = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    msg = restore_scheduler(new, old.state_dict(), 3)
    assert "step_size=2 -> step_size=10" in msg
    assert new.last_epoch == 3 and opt.param_groups[0]["lr"] == pytest.approx(LR)
    same = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([p], lr=LR), step_size=2, gamma=0.5)
    assert restore_scheduler(same, old.state_dict(), 3) is None and same.last_epoch == 3
