"""weakhand.train.checkpoint: resuming with a changed training length (issue 16, item 4);
self-describing checkpoints and :func:`weakhand.models.registry.build_model` (issue 15)."""
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


# ---------------------------------------------------------------------------- build_model

def _tiny_models() -> dict[str, nn.Module]:
    from weakhand.models import CaiPoseNet, DenseDepthNet, DepthRegularizer, PoseNetConfig
    from weakhand.models.pose25d_net import Pose25DConfig, Pose25DNet
    torch.manual_seed(0)
    return {"CaiPoseNet": CaiPoseNet(PoseNetConfig(width=8, n_stages=1, reg_width=8, reg_hidden=16)),
            "Pose25DNet": Pose25DNet(Pose25DConfig(width=8, blocks=(1, 2, 1), refiner_hidden=16)),
            "DepthRegularizer": DepthRegularizer(out_size=16, widths=(32, 16, 8, 8, 4), dropout=0.3),
            "DenseDepthNet": DenseDepthNet(stacks=1, width=8, hg_depth=1, head="direct", dropout=0.2)}


def _write(models, path, config: dict):
    """A checkpoint as the Trainer writes it, for `models` ({name: module} or one module)."""
    from weakhand.train.checkpoint import write_checkpoint
    mods = models if isinstance(models, dict) else {"model": models}
    params = [p for m in mods.values() for p in m.parameters()]
    tr = Trainer(models, torch.optim.SGD(params, lr=0.1), step_fn=lambda m, b: {"loss": torch.zeros(())},
                 run_dir=path.parent.parent, name=path.parent.name, max_steps=0, config=config,
                 show_progress=False, device="cpu")
    ckpt = tr.state_dict()
    write_checkpoint(ckpt, path)
    return ckpt


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["CaiPoseNet", "Pose25DNet", "DepthRegularizer", "DenseDepthNet"])
def test_checkpoints_describe_their_models_and_build_model_rebuilds_them(tmp_path, kind):
    from weakhand.models.registry import build_model
    from weakhand.train.checkpoint import model_specs, read_checkpoint

    model = _tiny_models()[kind]
    path = tmp_path / "run" / "some_stage" / "last.pt"
    _write(model, path, {"train_size": 32})  # no config["net"]: the checkpoint describes itself
    ckpt = read_checkpoint(path)
    assert ckpt["model_specs"]["model"]["kind"] == kind
    spec = model_specs(ckpt, path)["model"]
    assert spec["source"] == "checkpoint" and spec["input_size"] == 32
    model.train()
    built = build_model(path)
    assert type(built) is type(model) and not built.training
    _same_weights(built, model)
    if kind == "DepthRegularizer":
        assert spec["config"] == {"num_joints": 21, "out_size": 16, "widths": [32, 16, 8, 8, 4],
                                  "dropout": 0.3}
    if kind == "DenseDepthNet":
        assert spec["config"]["head"] == "direct" and spec["config"]["dropout"] == 0.2


def test_build_model_picks_the_pose_network_and_names_the_others(tmp_path):
    from weakhand.models.registry import build_model
    from weakhand.train.checkpoint import CheckpointError

    m = _tiny_models()
    path = tmp_path / "run" / "stage3_2d_depth" / "last.pt"
    _write({"pose": m["CaiPoseNet"], "reg": m["DepthRegularizer"]}, path, {"train_size": 32})
    _same_weights(build_model(path), m["CaiPoseNet"])
    _same_weights(build_model(path, "reg"), m["DepthRegularizer"])
    with pytest.raises(CheckpointError, match="'pose', 'reg', not 'teacher'"):
        build_model(path, "teacher")


def test_older_checkpoints_go_through_the_one_fallback(tmp_path):
    """Checkpoints written before model_specs: kind from the trainer settings (else the state
    dict), config from config["net"] / reg_size, or the run's stage-1 checkpoint."""
    from weakhand.models.registry import build_model
    from weakhand.train.checkpoint import CheckpointError, model_specs, write_checkpoint

    m = _tiny_models()
    run = tmp_path / "run"

    def legacy(model, folder, config, drop_class=False):
        path = run / folder / "best.pt"
        ckpt = _write(model, path, config)
        del ckpt["model_specs"]
        if drop_class:
            del ckpt["trainer"]["models"]
        write_checkpoint(ckpt, path)
        return path, ckpt

    s1, _ = legacy(m["Pose25DNet"], "pose25d_stage1", {"train_size": 32, "net": m["Pose25DNet"].cfg.to_dict()})
    _same_weights(build_model(s1), m["Pose25DNet"])
    from weakhand.models import DepthRegularizer
    old_reg = DepthRegularizer(out_size=16, dropout=0.3)  # the notebooks' default widths
    reg, _ = legacy(old_reg, "stage2_regularizer", {"reg_size": 16, "reg_dropout": 0.3})
    _same_weights(build_model(reg), old_reg)
    s3, ckpt = legacy(m["Pose25DNet"], "pose25d_2d", {"train_size": 32}, drop_class=True)
    spec = model_specs(ckpt, s3)["model"]
    assert spec["kind"] == "Pose25DNet" and spec["source"] == f"stage-1 checkpoint {s1.resolve()}"
    _same_weights(build_model(s3), m["Pose25DNet"])
    s1.unlink()
    with pytest.raises(CheckpointError, match=r"config\['net'\].*pose25d_stage1"):
        build_model(s3)
