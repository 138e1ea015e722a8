"""Profiles, device resolution, run folders and environment info (no notebook execution)."""
from __future__ import annotations

import pytest

from weakhand.workbook import envinfo, profiles, runs
from weakhand.workbook.profiles import PROFILE_ENV, resolve, resolve_device
from weakhand.workbook.runs import RUN_DIR_ENV, MissingArtifactError, open_run


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)


# --- profiles -----------------------------------------------------------------------------
def test_profiles_define_the_same_knobs():
    knobs = set(profiles.KNOB_DOCS)
    assert set(profiles.PROFILES) == {"smoke", "cpu", "gpu"}
    for name, table in profiles.PROFILES.items():
        assert set(table) == knobs, name
    # sizes grow from smoke to cpu to gpu, so smoke really is the cheap path
    for knob in knobs:
        if knob.startswith("n_"):
            sizes = [profiles.PROFILES[p][knob] for p in ("smoke", "cpu", "gpu")]
            assert sizes[0] < sizes[1] <= sizes[2], knob


def test_resolve_fills_none_and_keeps_overrides():
    cfg = resolve("smoke", notebook="00_make_data", n_render_train=None, n_render_val=5,
                  seed=3, image_size=None)
    assert cfg.n_render_train == 64 and cfg["image_size"] == 64
    assert cfg.n_render_val == 5 and cfg.seed == 3 and cfg.profile == "smoke"
    assert cfg.sources["n_render_train"] == "profile"
    assert cfg.sources["n_render_val"] == "override"
    assert cfg.sources["seed"] == "given"
    assert cfg.overrides() == {"n_render_val": 5}
    assert "n_render_test" not in cfg  # only what the notebook declares
    assert dict(cfg) == cfg.to_dict() and len(cfg) == 5
    text = repr(cfg)
    assert "00_make_data" in text and "override (profile smoke: 16)" in text
    assert "<table>" in cfg._repr_html_() and "n_render_val" in cfg._repr_html_()
    with pytest.raises(AttributeError):
        cfg.seed = 4
    with pytest.raises(AttributeError, match="no parameter 'nope'"):
        cfg.nope


def test_resolve_auto_profile_from_env(monkeypatch):
    assert resolve("auto", n_preview=None).n_preview == profiles.PROFILES["cpu"]["n_preview"]
    monkeypatch.setenv(PROFILE_ENV, "smoke")
    cfg = resolve("auto", n_preview=None)
    assert cfg.profile == "smoke" and cfg.n_preview == 8 and cfg.sources["profile"] == "resolved"
    assert resolve("gpu", n_preview=None).profile == "gpu"  # explicit beats env


def test_unknown_profile_and_unknown_none_knob(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'huge'.*'smoke'.*'cpu'.*'gpu'"):
        resolve("huge")
    monkeypatch.setenv(PROFILE_ENV, "tiny")
    with pytest.raises(ValueError, match=r"\$WEAKHAND_PROFILE 'tiny'"):
        resolve("auto")
    with pytest.raises(ValueError, match="n_typo.*no profile defines it"):
        resolve("cpu", n_typo=None)


def test_resolve_run_dir_and_device_params(monkeypatch, tmp_path):
    cfg = resolve("smoke", run_dir="", device="cpu")
    assert cfg.run_dir == str(runs.runs_root() / "interactive") and cfg.device == "cpu"
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "r"))
    assert resolve("smoke", run_dir="").run_dir == str(tmp_path / "r")
    assert resolve("smoke", run_dir="named").run_dir == str(runs.runs_root() / "named")


def test_resolve_device(monkeypatch):
    torch = pytest.importorskip("torch")
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="'cuda' was requested but CUDA is not usable"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"


# --- runs ---------------------------------------------------------------------------------
def test_repo_root_and_default_run_dir():
    assert (runs.repo_root() / "lib" / "weakhand" / "workbook" / "runs.py").is_file()
    assert runs.resolve_run_dir("") == runs.repo_root() / "runs" / "interactive"


def test_run_folder_and_require_message(tmp_path):
    run = open_run(tmp_path / "myrun")
    assert run.path == (tmp_path / "myrun").resolve() and run.path.is_dir()
    assert run.dir("a", "b").is_dir()
    p = run.artifact("data/x.bin")
    assert p.parent.is_dir() and not p.exists()
    p.write_bytes(b"12345")
    assert run.require("data/x.bin") == p
    with pytest.raises(MissingArtifactError) as ei:
        run.require("limits/bmc.json", producer="10_fit_bmc_limits")
    msg = str(ei.value)
    assert "missing artifact 'limits/bmc.json'" in msg
    assert str(run.path) in msg and "10_fit_bmc_limits" in msg
    assert f"weakhand run --name myrun --runs-dir {tmp_path.resolve()} --only 10" in msg
    assert isinstance(ei.value, FileNotFoundError) and ei.value.producer == "10_fit_bmc_limits"


def test_require_command_for_run_under_repo_runs():
    cmd = runs.run_command(runs.runs_root() / "cpu", "00", "cpu")
    assert cmd == "weakhand run --name cpu --profile cpu --only 00"


def test_list_artifacts(tmp_path):
    run = open_run(tmp_path / "r")
    run.artifact("data/a.npy").write_bytes(b"x" * 2048)
    run.artifact("b.json").write_text("{}")
    (run.path / "00_x.ipynb").write_text("{}")
    (run.path / "run.json").write_text("{}")
    run.artifact("logs/00_x.kernel.log").write_text("w")
    run.artifact("data/c.npy.tmp-123").write_text("partial")
    arts = run.list_artifacts()
    assert [a.path for a in arts] == ["b.json", "data/a.npy"]
    assert arts.total_size == 2050
    assert "data/a.npy" in repr(arts) and "2.0 KB" in repr(arts) and "<table>" in arts._repr_html_()
    assert [a.path for a in run.list_artifacts("data")] == ["data/a.npy"]
    assert len(run.list_artifacts(since=arts[0].mtime + 100)) == 0


# --- envinfo ------------------------------------------------------------------------------
def test_environment_info():
    info = envinfo.environment_info()
    for key in ("python", "platform", "cpu_count", "torch", "cuda_available", "cuda_device",
                "numpy", "numba", "opencv", "plotly", "papermill", "git_commit", "timestamp"):
        assert key in info
    assert info["numpy"] and info["papermill"]
    assert envinfo.package_version("surely-not-installed-xyz") is None
