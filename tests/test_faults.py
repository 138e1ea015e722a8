"""Fault injection (issue 16): crafted checkpoints and pickles through every loader, processes
killed in the middle of a dataset / checkpoint / limits write, two writers on one run folder,
corrupted dataset bytes (with hypothesis property tests of the reader)."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weakhand.workbook.cli import main as cli_main
from weakhand.data import DatasetError, HandDataset, load_dataset, write_dataset
from weakhand.data import format as fmt
from weakhand.workbook.runlock import LOCK_ENV, LOCK_FILE, RunLockedError, lock_holder, run_lock
from weakhand.train import Trainer
from weakhand.train.checkpoint import (CheckpointError, UnsafeCheckpointError, checkpoint_info,
                                       load_checkpoint, read_checkpoint, write_checkpoint)

from test_dataset_format import make_arrays

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


# ============================================================================================
# crafted checkpoints and pickles: no code runs, a clear error names the file

class _Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    """A file that looks like a weakhand checkpoint and runs a command when fully unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "weakhand.checkpoint", "version": 1, "name": "stage1_pose", "step": 1,
                "models": {"model": {}}, "config": {"net": {}, "train_size": 32},
                "scheduler": _Payload(marker)}, path)
    return path


def _assert_refused(exc: BaseException, path: Path, marker: Path) -> None:
    msg = str(exc)
    assert str(path) in msg and "refusing to load" in msg and "could run arbitrary code" in msg
    assert not marker.exists(), "the checkpoint's payload ran"


@pytest.fixture()
def evil(tmp_path) -> dict:
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    ck = _evil_checkpoint(run / "stage3_2d" / "last.pt", marker)
    return {"marker": marker, "run": run, "ckpt": ck}


def test_crafted_checkpoint_refused_by_the_checkpoint_api(evil):
    for fn in (read_checkpoint, checkpoint_info, lambda p: load_checkpoint(p, torch.nn.Linear(2, 2))):
        with pytest.raises(UnsafeCheckpointError) as exc:
            fn(evil["ckpt"])
        _assert_refused(exc.value, evil["ckpt"], evil["marker"])


def test_crafted_checkpoint_refused_by_weakhand_predict(evil, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    import cv2
    cv2.imwrite(str(imgs / "a.png"), np.zeros((40, 40, 3), np.uint8))
    out = tmp_path / "pred"
    assert cli_main(["predict", str(evil["ckpt"]), str(imgs), "--out", str(out), "--device",
                     "cpu", "--quiet"]) == 2
    _assert_refused(Exception(capsys.readouterr().err), evil["ckpt"], evil["marker"])
    assert not out.exists()


def test_crafted_checkpoint_refused_by_evaluation_and_notebook_loaders(evil):
    from weakhand.evaluation.variants import TrainedVariant, load_model
    from weakhand.methods.spurr_bmc import build
    from weakhand.models.pose25d_net import Pose25DConfig

    with pytest.raises(UnsafeCheckpointError) as exc:  # notebook 70 / weakhand.evaluation
        load_model(TrainedVariant("cai", "2d", 0, evil["ckpt"]))
    _assert_refused(exc.value, evil["ckpt"], evil["marker"])
    with pytest.raises(UnsafeCheckpointError) as exc:  # notebook 60's stage-3 loader
        build("2d", Pose25DConfig(width=8, blocks=(1, 1, 1), refiner_hidden=16), evil["ckpt"])
    _assert_refused(exc.value, evil["ckpt"], evil["marker"])


def test_crafted_checkpoint_refused_on_trainer_resume(evil):
    model = torch.nn.Linear(2, 1)
    tr = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                 lambda b, o: {"loss": o.sum()}, run_dir=evil["run"], name="stage3_2d",
                 max_steps=3, show_progress=False, device="cpu")
    assert tr.last_path == evil["ckpt"]
    with pytest.raises(UnsafeCheckpointError) as exc:
        tr.fit([torch.zeros(1, 2)], resume=True)
    _assert_refused(exc.value, evil["ckpt"], evil["marker"])


def test_crafted_checkpoint_in_a_weakhand_run_subprocess(evil):
    """The whole CLI in a fresh interpreter (no monkeypatching anywhere): exit 2, no marker."""
    imgs = evil["run"] / "imgs"
    imgs.mkdir()
    (imgs / "a.png").write_bytes(b"")
    r = subprocess.run([PY, "-m", "weakhand.workbook.cli", "predict", str(evil["ckpt"]), str(imgs),
                        "--out", str(evil["run"] / "o")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr
    _assert_refused(Exception(r.stderr), evil["ckpt"], evil["marker"])


def test_text_file_as_checkpoint_is_a_clear_usage_error(tmp_path, capsys):
    txt = tmp_path / "notes.pt"
    txt.write_text("eeeee these are my notes\n")  # 'e' = 101: was `KeyError: 101`
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    assert cli_main(["predict", str(txt), str(imgs), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(txt) in err and "not a PyTorch checkpoint" in err and "KeyError" not in err


def test_writer_stores_only_plain_data(tmp_path):
    """What the writer accepts loads with weights_only=True; anything else is refused, naming
    the entry, and nothing is written."""
    good = {"format": "weakhand.checkpoint", "version": 1, "step": np.int64(3),
            "x": np.arange(3.0), "versions": {"torch": torch.__version__}}
    path = write_checkpoint(good, tmp_path / "good.pt")[0]
    back = torch.load(path, weights_only=True)
    assert back["step"] == 3 and type(back["versions"]["torch"]) is str
    with pytest.raises(CheckpointError, match=r"checkpoint\['config'\]\['fn'\].*function"):
        write_checkpoint({**good, "config": {"fn": lambda: 0}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="_Payload"):
        write_checkpoint({**good, "x": _Payload(tmp_path / "m")}, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "m").exists()


def test_legacy_checkpoint_with_torch_version_object_still_loads(tmp_path):
    """Checkpoints written before the writer was strict hold torch.__version__ (TorchVersion):
    allowed as a safe global, so existing runs keep loading without weights_only=False."""
    p = tmp_path / "old.pt"
    torch.save({"format": "weakhand.checkpoint", "version": 1, "models": {},
                "versions": {"torch": torch.__version__}}, p)
    assert read_checkpoint(p)["versions"]["torch"] == str(torch.__version__)


def test_crafted_annotation_pickle_refused(tmp_path):
    from weakhand.recipes.base import RawDataError, read_pickle

    marker = tmp_path / "PWNED"
    p = tmp_path / "anno_training.pickle"
    p.write_bytes(pickle.dumps({0: {"xyz": _Payload(marker)}}))
    with pytest.raises(RawDataError, match="anno_training.pickle.*refusing to load global"):
        read_pickle(p)
    assert not marker.exists()
    ok = tmp_path / "ok.pickle"
    ok.write_bytes(pickle.dumps({0: {"xyz": np.ones((42, 3)), "K": np.eye(3)}}, protocol=2))
    assert read_pickle(ok)[0]["xyz"].shape == (42, 3)


# ============================================================================================
# killed in the middle of a write: nothing half-written loads

def _run_until_killed(code: str, cwd: Path) -> None:
    r = subprocess.run([PY, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])


def test_kill_during_dataset_write(tmp_path):
    """SIGKILL after half the rows: no dataset at the path (a clear error), the previous dataset
    (if any) intact, the leftover temporary named in the message and cleaned by the next write."""
    arrays = make_arrays(8)
    write_dataset(tmp_path / "old", arrays, name="t", domain="synthetic", split="train")
    np.savez(tmp_path / "arrays.npz", **arrays)
    code = """
        import os, signal, numpy as np
        from weakhand.data import DatasetWriter
        a = dict(np.load("arrays.npz"))
        w = DatasetWriter("new", count=8, image_size=a["rgb"].shape[1:3], name="t",
                          domain="synthetic", split="train", extras={"subject": ("int32", ())},
                          with_parts=True)
        w.__enter__()
        w.write(0, {k: v[:4] for k, v in a.items()})
        os.kill(os.getpid(), signal.SIGKILL)
    """
    _run_until_killed(code, tmp_path)
    with pytest.raises(DatasetError, match="no dataset at .*new.*interrupted write"):
        load_dataset(tmp_path / "new")
    code_over = code.replace('DatasetWriter("new"', 'DatasetWriter("old", overwrite=True')
    _run_until_killed(code_over, tmp_path)
    d = load_dataset(tmp_path / "old", verify="full")  # the previous dataset, untouched
    np.testing.assert_array_equal(d.arrays["rgb"], arrays["rgb"])
    write_dataset(tmp_path / "new", arrays, name="t", domain="synthetic", split="train")
    assert not list(tmp_path.glob("new.tmp-*"))  # the dead writer's temporary is gone


def test_kill_during_checkpoint_write(tmp_path):
    """SIGKILL after the bytes are written, before the rename: last.pt is the previous one."""
    write_checkpoint({"format": "weakhand.checkpoint", "version": 1, "step": 1},
                     tmp_path / "last.pt")
    _run_until_killed("""
        import os, signal
        from weakhand.train.checkpoint import write_checkpoint
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync = die   # the file is complete on disk, the rename has not happened
        write_checkpoint({"format": "weakhand.checkpoint", "version": 1, "step": 2}, "last.pt")
    """, tmp_path)
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 1
    stale = list(tmp_path.glob("last.pt.tmp-*"))
    assert stale and all(read_checkpoint(s)["step"] == 2 for s in stale)  # never at last.pt


def test_kill_during_limits_save(tmp_path):
    from weakhand.bmc.limits import fit_limits, load_limits, save_limits
    from weakhand.synth.domains import make_style
    from weakhand.synth.generator import sample_hand_poses

    kp, side = sample_hand_poses(make_style("render"), 300, seed=1)
    lim = fit_limits(kp, side == 0)
    save_limits(lim, tmp_path / "limits.json")
    before = (tmp_path / "limits.json").read_bytes()
    _run_until_killed("""
        import os, signal, json
        from weakhand.bmc.limits import load_limits, save_limits
        lim = load_limits("limits.json")
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync = die
        save_limits(lim, "limits.json")
    """, tmp_path)
    assert (tmp_path / "limits.json").read_bytes() == before
    load_limits(tmp_path / "limits.json")


# ============================================================================================
# two writers on one run folder

def _hold_lock(run: Path, command: str) -> subprocess.Popen:
    """Another process holding the lock of `run` (for 60 s) once this returns."""
    holder = subprocess.Popen([PY, "-c", textwrap.dedent(f"""
        import time
        from weakhand.workbook.runlock import run_lock
        with run_lock({str(run)!r}, {command!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_run_lock_second_writer_refused_stale_taken_over_reentrant(tmp_path):
    run = tmp_path / "run"
    holder = _hold_lock(run, "weakhand run --name demo")
    try:
        with pytest.raises(RunLockedError) as exc:
            with run_lock(run, "second"):
                pass
        msg = str(exc.value)
        assert f"pid {holder.pid}" in msg and "weakhand run --name demo" in msg
        assert lock_holder(run)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # killed with SIGKILL: the file still names it, the flock is gone -> stale, taken over
    assert lock_holder(run)["pid"] == holder.pid
    said = []
    with run_lock(run, "third", say=said.append) as me:
        assert me["pid"] == os.getpid() and os.environ[LOCK_ENV]
        assert said and f"stale lock of pid {holder.pid}" in said[0] and "no longer running" in said[0]
        # re-entrant for children that inherit the token (ablate -> run, launcher -> ranks) ...
        child = subprocess.run([PY, "-c", f"from weakhand.workbook.runlock import run_lock\n"
                                f"with run_lock({str(run)!r}): print('in')"],
                               capture_output=True, text=True, timeout=120)
        assert child.returncode == 0 and "in" in child.stdout
        # ... but not for an unrelated process
        env = {k: v for k, v in os.environ.items() if k != LOCK_ENV}
        other = subprocess.run([PY, "-c", f"from weakhand.workbook.runlock import run_lock\n"
                                f"with run_lock({str(run)!r}): print('in')"],
                               capture_output=True, text=True, timeout=120, env=env)
        assert other.returncode != 0 and "RunLockedError" in other.stderr
    assert not (run / LOCK_FILE).exists() and LOCK_ENV not in os.environ


def test_two_weakhand_runs_into_one_folder(tmp_path):
    """Two real `weakhand run` processes: the second is refused (exit 2, naming the holder)
    before it executes anything; the first finishes normally and releases the lock."""
    from test_runner import write_nb

    nbs = tmp_path / "notebooks"
    write_nb(nbs, "00_slow", "import time\ntime.sleep(6)\n"
             "run.artifact('done.txt').write_text('ok')\n")
    args = ["run", "--profile", "smoke", "--name", "shared", "--notebooks", str(nbs),
            "--runs-dir", str(tmp_path / "runs")]
    first = subprocess.Popen([PY, "-m", "weakhand.workbook.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "shared"
    deadline = time.time() + 120
    while not lock_holder(run).get("pid") and time.time() < deadline:
        time.sleep(0.1)
    second = subprocess.run([PY, "-m", "weakhand.workbook.cli", *args], capture_output=True, text=True,
                            timeout=300)
    out1, err1 = first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr
    assert f"in use by another weakhand process: pid {first.pid}" in second.stderr
    assert "weakhand run" in second.stderr
    assert first.returncode == 0, err1
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "ok" and (run / "done.txt").read_text() == "ok"
    assert not (run / LOCK_FILE).exists()


def test_ablate_refused_while_locked_and_its_runner_steps_reenter(tmp_path, capsys):
    import io

    from test_runner import write_nb
    from weakhand.workbook import runner

    nbs = tmp_path / "notebooks"
    write_nb(nbs, "00_a", "run.artifact('x.txt').write_text('1')\n")
    runs = tmp_path / "runs"
    run = runs / "study"
    holder = _hold_lock(run, "weakhand run --name study")
    try:
        assert cli_main(["ablate", "--name", "study", "--runs-dir", str(runs), "--notebooks",
                         str(nbs), "--profile", "smoke", "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "weakhand ablate: error" in err
        with pytest.raises(runner.RunnerError, match=f"pid {holder.pid}"):
            runner.run_notebooks("study", profile="smoke", device="cpu", notebooks_dir=nbs,
                                 runs_dir=runs, out=io.StringIO())
        assert not (run / "run.json").exists()
    finally:
        holder.kill()
        holder.wait()
    with run_lock(run, "weakhand ablate --name study", say=lambda m: None):  # as ablate does
        res = runner.run_notebooks("study", profile="smoke", device="cpu", notebooks_dir=nbs,
                                   runs_dir=runs, out=io.StringIO())
        assert res.ok and (run / "x.txt").read_text() == "1"
    assert not (run / LOCK_FILE).exists()


# ============================================================================================
# corrupted bytes in a dataset

def _make(path: Path, n: int = 6) -> dict:
    arrays = make_arrays(n)
    write_dataset(path, arrays, name="t", domain="synthetic", split="train",
                  source={"kind": "synthetic"})
    return arrays


def _poke(path: Path, offset: int, value: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(value)


@pytest.mark.parametrize("value", [np.float32(np.nan), np.float32(3.4e38)])
def test_flipped_label_bytes_are_caught_on_first_open(tmp_path, value):
    path = tmp_path / "ds"
    _make(path)
    f = path / "kp2d.npy"
    _poke(f, f.stat().st_size - 8, value.tobytes())  # same size, different label
    for open_ in (load_dataset, HandDataset):
        with pytest.raises(DatasetError) as exc:
            open_(path)
        msg = str(exc.value)
        assert "kp2d.npy" in msg and "checksum mismatch" in msg and "reuse=False" in msg


def test_checksum_verification_costs_once_and_is_reported(tmp_path, monkeypatch, capsys):
    path = tmp_path / "ds"
    _make(path)
    calls = []
    real = fmt._file_sha256
    monkeypatch.setattr(fmt, "_file_sha256", lambda p: calls.append(p) or real(p))
    fmt._VERIFIED_IN_PROCESS.clear()
    load_dataset(path)                 # the writer recorded its own verification: no hashing
    assert calls == []
    (path / fmt.VERIFIED).unlink()     # e.g. a dataset copied from elsewhere
    fmt._VERIFIED_IN_PROCESS.clear()
    load_dataset(path)
    n = len(calls)
    assert n == len(json.loads((path / "manifest.json").read_text())["arrays"])
    assert "verified the checksums of" in capsys.readouterr().out
    fmt._VERIFIED_IN_PROCESS.clear()
    load_dataset(path)                 # recorded: not again
    assert len(calls) == n
    _poke(path / "side.npy", (path / "side.npy").stat().st_size - 1, b"\x01")
    fmt._VERIFIED_IN_PROCESS.clear()
    load_dataset(path)                 # a file changed (mtime): verified again (still valid)
    assert len(calls) == 2 * n


def test_non_finite_labels_rejected_where_the_format_forbids_them(tmp_path):
    arrays = make_arrays(6)
    arrays["kp3d"][1, 3, 0] = np.inf
    with pytest.raises(ValueError, match="kp3d.npy: infinite coordinates in 1 sample"):
        write_dataset(tmp_path / "w", arrays, name="t", domain="synthetic", split="train")
    assert not (tmp_path / "w").exists()
    # a dataset whose manifest agrees with corrupt labels (e.g. made by another tool)
    path = tmp_path / "ds"
    good = _make(path)
    kp = good["kp2d"].astype(np.float32)
    kp[2, 0, 0] = np.inf
    np.save(path / "kp2d.npy", kp)
    m = json.loads((path / "manifest.json").read_text())
    m["arrays"]["kp2d"]["sha256"] = fmt._file_sha256(path / "kp2d.npy")
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match=r"kp2d.npy: infinite coordinates in 1 sample\(s\), "
                                           r"first \[2\]"):
        load_dataset(path)
    K = np.load(path / "K.npy")
    K[4, 0, 0] = np.nan
    np.save(path / "kp2d.npy", good["kp2d"].astype(np.float32))
    np.save(path / "K.npy", K)
    for key in ("kp2d", "K"):
        m["arrays"][key]["sha256"] = fmt._file_sha256(path / f"{key}.npy")
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="K.npy: non-finite intrinsics"):
        load_dataset(path)


def test_stuck_messages_name_the_fix(tmp_path):
    path = tmp_path / "ds"
    _make(path)
    with open(path / "rgb.npy", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(DatasetError, match="rgb.npy: size 100 bytes.*truncated.*-p reuse=False"):
        load_dataset(path)
    (path / "manifest.json").unlink()
    from weakhand.data import DatasetWriter
    with pytest.raises(ValueError, match=r"without manifest.json.*delete it \(rm -r"):
        with DatasetWriter(path, count=1, image_size=(4, 4), name="t", domain="d", split="s",
                           overwrite=True):
            pass
    with pytest.raises(DatasetError, match=f"delete {path}"):
        load_dataset(path)


# --- property tests: random truncations and byte flips ------------------------------------------

_BASE: dict = {}


def _base() -> tuple[Path, dict]:
    if not _BASE:
        d = Path(tempfile.mkdtemp(prefix="weakhand-faults-"))
        arrays = _make(d / "ds", n=4)
        _BASE.update(path=d / "ds", arrays=arrays,
                     raw={k: np.array(v) for k, v in load_dataset(d / "ds").arrays.items()},
                     files=sorted(p.name for p in (d / "ds").iterdir()))
    return _BASE["path"], _BASE


def _open_and_read(path: Path, raw: dict, verify: str) -> None:
    """Either a DatasetError, or data identical to what was written."""
    try:
        d = load_dataset(path, verify=verify)
        samples = [d[i] for i in range(len(d))]
    except DatasetError:
        return
    assert len(samples) == len(raw["rgb"])
    for k, v in raw.items():
        np.testing.assert_array_equal(np.asarray(d.arrays[k]), v)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_on_random_byte_flips(data):
    base, info = _base()
    name = data.draw(st.sampled_from(info["files"]), label="file")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ds"
        shutil.copytree(base, path)
        f = path / name
        size = f.stat().st_size
        n = data.draw(st.integers(1, 4), label="flips")
        for _ in range(n):
            off = data.draw(st.integers(0, size - 1), label="offset")
            bit = data.draw(st.integers(0, 7), label="bit")
            b = f.read_bytes()[off]
            _poke(f, off, bytes([b ^ (1 << bit)]))
        fmt._VERIFIED_IN_PROCESS.clear()
        _open_and_read(path, info["raw"], "once")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_on_random_truncations(data):
    base, info = _base()
    name = data.draw(st.sampled_from(info["files"]), label="file")
    verify = data.draw(st.sampled_from(["none", "size", "once", "full"]), label="verify")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ds"
        shutil.copytree(base, path)
        f = path / name
        keep = data.draw(st.integers(0, max(0, f.stat().st_size - 1)), label="keep")
        with open(f, "r+b") as fh:
            fh.truncate(keep)
        fmt._VERIFIED_IN_PROCESS.clear()
        if verify == "none" and name.endswith(".npy"):
            # headers only: a shorter file still fails to map (never silently short data)
            try:
                load_dataset(path, verify="none")
            except DatasetError:
                return
            raise AssertionError(f"truncated {name} to {keep} bytes opened with verify='none'")
        _open_and_read(path, info["raw"], verify)
