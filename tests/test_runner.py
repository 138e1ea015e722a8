"""The notebook runner (`weakhand run`) on tiny notebooks written into tmp_path.

Papermill executions are the expensive part (~1 s each): 4 in this file.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from weakhand.workbook import cli, runner
from weakhand.workbook.runner import RunnerError

STANDARD = (
    'profile = "auto"  # smoke | cpu | gpu; auto: $WEAKHAND_PROFILE, else cpu\n'
    'run_dir = ""  # run folder; empty: $WEAKHAND_RUN_DIR, else runs/interactive\n'
    'device = "auto"  # auto | cpu | cuda\n'
    "seed = 0  # random seed\n"
    "n_preview = None  # preview samples (None: from the profile)\n"
)

# writes what the kernel saw into the run folder
RECORD = (
    "import json, os\n"
    "from weakhand.workbook import profiles, runs\n"
    "cfg = profiles.resolve(profile, notebook=NAME, run_dir=run_dir, device=device, seed=seed,"
    " n_preview=n_preview)\n"
    "run = runs.open_run(cfg.run_dir)\n"
    "seen = dict(cfg, cwd=os.getcwd(), headless=os.environ.get('WEAKHAND_HEADLESS'))\n"
)


def write_nb(folder: Path, name: str, body: str, extra_params: str = "", params: str | None = None,
             n_param_cells: int = 1) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_markdown_cell(f"# {name}")]
    for _ in range(n_param_cells):
        c = nbformat.v4.new_code_cell(STANDARD + extra_params if params is None else params)
        c.metadata["tags"] = ["parameters"]
        cells.append(c)
    cells.append(nbformat.v4.new_code_cell(RECORD.replace("NAME", repr(name))))
    cells.append(nbformat.v4.new_code_cell(body))
    nb.cells = cells
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    d = tmp_path / "notebooks"
    write_nb(d, "00_make_a",
             "seen['lr'] = None\n"
             "run.artifact('a/seen.json').write_text(json.dumps(seen))\n")
    write_nb(d, "10_use_a",
             "a = json.loads(run.require('a/seen.json', producer='00_make_a').read_text())\n"
             "seen['lr'] = lr\n"
             "run.artifact('b/seen.json').write_text(json.dumps(seen))\n",
             extra_params="lr = 0.1  # learning rate\n")
    write_nb(d, "20_never", "raise AssertionError('20_never must not run in these tests')\n")
    return d


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["run", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------------------------------
# execution (papermill)
# ------------------------------------------------------------------------------------------
def test_runs_notebooks_in_order_then_only_reruns_selection(nbdir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    rc, out, err = run_cli(capsys, "--notebooks", str(nbdir), "--runs-dir", str(runs_dir),
                           "--name", "t1", "--profile", "smoke", "--device", "cpu",
                           "--to", "10", "-p", "seed=7", "-p", "lr=0.5")
    assert rc == 0, out + err
    run_dir = runs_dir / "t1"
    # progress lines and summary
    assert "[1/2] 00_make_a ... done in" in out
    assert "[2/2] 10_use_a ... done in" in out
    assert "total" in out and str(run_dir / "run.json") in out
    # executed notebooks and artifacts
    for n in ("00_make_a", "10_use_a"):
        assert (run_dir / f"{n}.ipynb").is_file()
    assert not (run_dir / "20_never.ipynb").exists()
    a = json.loads((run_dir / "a" / "seen.json").read_text())
    b = json.loads((run_dir / "b" / "seen.json").read_text())
    # injected parameters, profile fill-in, env and cwd as the kernels saw them
    assert a["profile"] == "smoke" and a["device"] == "cpu" and a["run_dir"] == str(run_dir)
    assert a["seed"] == 7 and b["seed"] == 7
    assert a["n_preview"] == 8  # None -> smoke profile
    assert b["lr"] == 0.5  # -p override into the notebook that declares it
    assert a["headless"] == "1"
    assert a["cwd"] == str(nbdir.resolve())
    # run.json
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "ok" and rec["profile"] == "smoke" and rec["device"] == "cpu"
    assert rec["overrides"] == {"seed": 7, "lr": 0.5}
    assert rec["command"].startswith("weakhand run --notebooks")
    assert list(rec["notebooks"]) == ["00_make_a", "10_use_a"]
    for n, e in rec["notebooks"].items():
        assert e["status"] == "ok" and e["seconds"] > 0
        assert e["output"] == str(run_dir / f"{n}.ipynb")
    assert "lr" not in rec["notebooks"]["00_make_a"]["parameters"]
    assert rec["notebooks"]["10_use_a"]["parameters"]["lr"] == 0.5
    assert {"python", "torch", "numpy", "papermill", "git_commit"} <= set(rec["environment"])

    # second invocation: --only re-runs just 10 and keeps 00's record
    first_00 = rec["notebooks"]["00_make_a"]
    rc, out, err = run_cli(capsys, "--notebooks", str(nbdir), "--runs-dir", str(runs_dir),
                           "--name", "t1", "--profile", "smoke", "--device", "cpu", "--only", "10_use_a")
    assert rc == 0, out + err
    assert "[1/1] 10_use_a ... done in" in out and "00_make_a ..." not in out
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["selected"] == ["10_use_a"]
    assert rec["notebooks"]["00_make_a"] == first_00
    assert "seed" not in rec["notebooks"]["10_use_a"]["parameters"]  # no -p this time
    assert json.loads((run_dir / "b" / "seen.json").read_text())["lr"] == 0.1


def test_failing_notebook_stops_the_run(nbdir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    # fresh run folder: 10_use_a's require() of 00's artifact fails inside the kernel
    rc, out, err = run_cli(capsys, "--notebooks", str(nbdir), "--runs-dir", str(runs_dir),
                           "--name", "bad", "--profile", "smoke", "--device", "cpu", "--from", "10")
    assert rc == 1
    run_dir = runs_dir / "bad"
    assert "[1/2] 10_use_a ... FAILED" in out
    assert "notebook 10_use_a failed" in err
    assert "cell 3 (In [4]) of 10_use_a.ipynb: a = json.loads(run.require(" in err
    assert "MissingArtifactError" in err and "a/seen.json" in err
    assert "weakhand run --name bad --runs-dir" in err and "--only 00" in err  # require()'s hint
    assert str(run_dir / "10_use_a.ipynb") in err and "not executed: 20_never" in err
    partial = nbformat.read(run_dir / "10_use_a.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in partial.cells for o in c.get("outputs", []))
    assert not (run_dir / "20_never.ipynb").exists()
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "failed"
    e = rec["notebooks"]["10_use_a"]
    assert e["status"] == "failed" and e["error"]["ename"] == "MissingArtifactError"
    assert e["error"]["cell_index"] == 3
    assert rec["notebooks"]["20_never"]["status"] == "skipped"
    assert "00_make_a" not in rec["notebooks"]


def test_run_notebooks_api_failure_in_first_notebook(tmp_path):
    d = tmp_path / "nbs"
    write_nb(d, "00_boom", "x = 1\nraise ValueError('boom')\n")
    write_nb(d, "10_after", "pass\n")
    import io
    out, err = io.StringIO(), io.StringIO()
    res = runner.run_notebooks("r", profile="smoke", device="cpu", notebooks_dir=d,
                               runs_dir=tmp_path / "runs", out=out, err=err)
    assert not res.ok and res.exit_code == 1 and res.failed == "00_boom"
    assert "cell 3 (In [4]) of 00_boom.ipynb: x = 1" in res.message
    assert "ValueError: boom" in res.message
    assert not (tmp_path / "runs" / "r" / "10_after.ipynb").exists()
    assert (tmp_path / "runs" / "r" / "00_boom.ipynb").exists()
    assert res.record["notebooks"]["10_after"]["status"] == "skipped"


# ------------------------------------------------------------------------------------------
# checks done before anything runs (no papermill execution)
# ------------------------------------------------------------------------------------------
def test_unknown_parameter_refused_before_running(nbdir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    rc, out, err = run_cli(capsys, "--notebooks", str(nbdir), "--runs-dir", str(runs_dir),
                           "--profile", "smoke", "--device", "cpu", "-p", "seed=1", "-p", "lrr=3")
    assert rc == 2
    assert "unknown parameter 'lrr'" in err and "did you mean lr" in err
    assert "10_use_a: profile, run_dir, device, seed, n_preview, lr" in err
    assert not runs_dir.exists() and "[1/" not in out
    # lr is declared only by 10: refused when 10 is not selected
    rc, _, err = run_cli(capsys, "--notebooks", str(nbdir), "--runs-dir", str(runs_dir),
                         "--device", "cpu", "--only", "00", "-p", "lr=3")
    assert rc == 2 and "unknown parameter 'lr'" in err and not runs_dir.exists()


def test_override_values_checked_against_profile_table_and_defaults(nbdir, tmp_path, capsys):
    """-p n_preview=abc / =2.5 (an int knob), seed=1.5 (int default), lr=fast (float default)
    are refused before anything runs, naming the parameter and the expected type."""
    runs_dir = tmp_path / "runs"
    base = ["--notebooks", str(nbdir), "--runs-dir", str(runs_dir), "--profile", "smoke",
            "--device", "cpu", "--to", "10"]
    for item, words in (("n_preview=abc", ["n_preview='abc' (str)", "must be an integer",
                                            "profiles smoke/cpu/gpu: 8/16/16"]),
                        ("n_preview=2.5", ["n_preview=2.5 (float)", "must be an integer"]),
                        ("n_preview=True", ["n_preview=True (bool)", "must be an integer"]),
                        ("n_preview=-1", ["n_preview=-1", "must be >= 0"]),
                        ("seed=1.5", ["seed=1.5 (float)", "must be an integer"]),
                        ("lr=fast", ["lr='fast' (str)", "must be a number (default 0.1)"])):
        rc, out, err = run_cli(capsys, *base, "-p", item)
        assert rc == 2 and "nothing was run" in err, (item, err)
        for w in words:
            assert w in err, (item, w, err)
        assert not runs_dir.exists() and "[1/" not in out
    from weakhand.workbook import profiles
    assert profiles.check_parameter_value("lr", 1, 0.1) is None  # an int where a float goes
    assert profiles.check_knob_value("n_preview", None) is None  # None: from the profile
    with pytest.raises(ValueError, match="n_preview=2.5"):
        profiles.resolve("smoke", n_preview=2.5)


def test_reserved_and_malformed_overrides(nbdir, capsys):
    rc, _, err = run_cli(capsys, "--notebooks", str(nbdir), "--device", "cpu", "-p", "profile=gpu")
    assert rc == 2 and "--profile" in err
    with pytest.raises(RunnerError, match="key=value"):
        runner.parse_override("novalue")
    with pytest.raises(RunnerError, match="as a list"):
        runner.parse_override("size=(64, 64)")


def test_parse_override_literals():
    assert runner.parse_overrides(["a=3", "b=0.5", "c=None", "d=[1, 2]", "e=hello", "f='x'",
                                   "g=True", "h=a=b"]) == {
        "a": 3, "b": 0.5, "c": None, "d": [1, 2], "e": "hello", "f": "x", "g": True, "h": "a=b"}


def test_selection():
    names = ["00_make_data", "10_fit_limits", "20_train", "90_evaluate"]
    sel = runner.select_notebooks
    assert sel(names) == names
    assert sel(names, only="00") == ["00_make_data"]
    assert sel(names, only="90_evaluate,00") == ["00_make_data", "90_evaluate"]
    assert sel(names, only="10_fit_limits.ipynb") == ["10_fit_limits"]
    assert sel(names, start="10") == names[1:]
    assert sel(names, stop="20_train") == names[:3]
    assert sel(names, start="10", stop="20") == names[1:3]
    for kw, msg in ((dict(only="30"), "no notebook matches '30'"),
                    (dict(start="20", stop="10"), "nothing selected"),
                    (dict(only="00", start="10"), "cannot be combined")):
        with pytest.raises(RunnerError, match=msg):
            sel(names, **kw)


def test_notebook_convention_checks(tmp_path):
    d = tmp_path / "nbs"
    two = write_nb(d, "00_two", "pass", n_param_cells=2)
    with pytest.raises(RunnerError, match="exactly one cell tagged 'parameters', found 2"):
        runner.read_notebook(two)
    eq = write_nb(d, "10_eq", "pass", params='profile = "auto"  # auto = env\nrun_dir = ""\ndevice = "auto"\n')
    with pytest.raises(RunnerError, match="papermill cannot parse parameter.*profile"):
        runner.read_notebook(eq)
    expr = write_nb(d, "20_expr", "pass", extra_params="n = 2 ** 10  # size\n")
    with pytest.raises(RunnerError, match="'n' .* must be a plain literal"):
        runner.read_notebook(expr)
    nodev = write_nb(d, "30_nodev", "pass", params='profile = "auto"\nrun_dir = ""\n')
    with pytest.raises(RunnerError, match="missing: device"):
        runner.check_injected([runner.read_notebook(nodev)])
    spec = runner.read_notebook(write_nb(d, "40_ok", "pass", extra_params='tag = "a#b"  # has a hash\n'))
    assert spec.parameters["tag"].default == "a#b" and spec.parameters["tag"].help == "has a hash"
    assert spec.parameters["n_preview"].default is None
    assert spec.parameters_cell == 1


def test_list_and_help_params(nbdir, capsys):
    rc, out, _ = run_cli(capsys, "--notebooks", str(nbdir), "--list")
    assert rc == 0
    assert "00_make_a  (5 parameters)" in out and "10_use_a  (6 parameters)" in out
    assert "lr        = 0.1" in out and "# learning rate" in out
    rc, out, _ = run_cli(capsys, "--notebooks", str(nbdir), "--help-params", "--only", "00",
                         "--profile", "cpu")
    assert rc == 0 and "10_use_a" not in out
    assert "[cpu: 16]" in out and "n_render_train" in out
