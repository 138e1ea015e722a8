"""Opening and running notebooks never leaves anything for git (issue 17).

Two mechanisms, each tested in a throw-away git repository built from this checkout's files:

* `make lab` (tools/lab.py) works on git-ignored copies under runs/interactive/notebooks/, so a
  run + save there, edited parameters included, leaves `git status` clean;
* a notebook run and saved in place under notebooks/ (outputs, execution counts, the kernel's
  language_info, widget state) is stripped for git by the nbstripout filter that the bootstrap
  registers (.gitattributes): `git diff` shows nothing and nothing can be staged. (`git status`
  lists such a file until the index is refreshed, e.g. by `git add`: a known limit of clean
  filters, since git reports a size change without running the filter; hence `make lab` copies.)
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from project_tools import load_tool

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "00_make_data.ipynb"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture()
def repo(tmp_path):
    """A git repository holding this checkout's .gitattributes/.gitignore, tools/lab.py and one
    notebook, committed, with the nbstripout filter registered as `make env` does."""
    r = tmp_path / "repo"
    for rel in (".gitattributes", ".gitignore", "tools/lab.py", f"notebooks/{NOTEBOOK}"):
        (r / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, r / rel)
    git(r, "init", "-q")
    git(r, "config", "user.email", "test@example.invalid")
    git(r, "config", "user.name", "test")
    bootstrap = load_tool("bootstrap")
    assert bootstrap.install_git_filter(sys.executable, repo=r)
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "init")
    assert git(r, "status", "--porcelain") == ""
    return r


def run_and_save_like_lab(path: Path, run_dir: Path, edit_parameters: bool = False) -> None:
    """Execute every cell in a kernel and save in place, as JupyterLab's Run All + Save does
    (outputs, execution counts, the kernel's full language_info, widget state)."""
    nb = nbformat.read(path, as_version=4)
    if edit_parameters:
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        cell.source = cell.source.replace("seed = 0", "seed = 3")
        assert "seed = 3" in cell.source
    NotebookClient(nb, kernel_name="python3", timeout=600,
                   resources={"metadata": {"path": str(path.parent)}}).execute(
        env={"WEAKHAND_PROFILE": "smoke", "WEAKHAND_RUN_DIR": str(run_dir)})
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {}, "version_major": 2, "version_minor": 0}}
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert len(nb.metadata["language_info"]) > 1          # the kernel filled it in
    nbformat.write(nb, path)


@pytest.mark.slow
def test_lab_style_run_and_save_leaves_git_clean(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("WEAKHAND_PROFILE", "smoke")
    # 1. `make lab`: copies under runs/interactive/notebooks, run with an edited parameter, saved
    out = subprocess.run([sys.executable, str(repo / "tools/lab.py"), "--prepare-only"],
                         capture_output=True, text=True, check=True).stdout
    copy = repo / "runs/interactive/notebooks" / NOTEBOOK
    assert copy.exists() and "COPIES" in out and "git-ignored" in out
    run_and_save_like_lab(copy, tmp_path / "run", edit_parameters=True)
    assert git(repo, "status", "--porcelain") == ""
    again = subprocess.run([sys.executable, str(repo / "tools/lab.py"), "--prepare-only"],
                           capture_output=True, text=True, check=True).stdout
    assert "seed = 3" in copy.read_text()                 # the edited copy is not overwritten

    # 2. the tracked notebook run and saved in place: the nbstripout filter hides the outputs
    tracked = repo / "notebooks" / NOTEBOOK
    run_and_save_like_lab(tracked, tmp_path / "run")
    committed = git(repo, "rev-parse", f"HEAD:notebooks/{NOTEBOOK}").strip()
    on_disk = git(repo, "hash-object", "--no-filters", f"notebooks/{NOTEBOOK}").strip()
    assert on_disk != committed                           # the file does hold outputs now ...
    assert git(repo, "diff", "--stat") == ""              # ... git shows no change in it ...
    # (`git status` lists it as modified until the index is refreshed: the size differs and git
    # then reports a change without running the filter; `git add` finds nothing to stage)
    git(repo, "add", "--all")
    assert git(repo, "diff", "--cached", "--stat") == ""  # ... nothing of it can be committed ...
    assert git(repo, "status", "--porcelain") == ""       # ... and the tree is clean
    assert git(repo, "hash-object", "--no-filters", f"notebooks/{NOTEBOOK}").strip() == on_disk
    # what git would store: the committed blob with the filter, the outputs without it
    assert git(repo, "hash-object", f"notebooks/{NOTEBOOK}").strip() == committed
    assert git(repo, "-c", "filter.nbstripout.clean=cat", "hash-object",
               f"notebooks/{NOTEBOOK}").strip() == on_disk
    assert "kept your edited copy" not in again           # the tracked source had not changed


def test_lab_copies_are_refreshed_unless_edited(tmp_path):
    lab = load_tool("lab")
    src, dest = tmp_path / "nb", tmp_path / "copies"
    src.mkdir()
    (src / "00_a.ipynb").write_text("v1")
    said: list[str] = []
    lab.prepare(src, dest, say=said.append)
    assert (dest / "00_a.ipynb").read_text() == "v1" and "copied" in said[-1]
    (src / "00_a.ipynb").write_text("v2")                 # upstream change, copy untouched
    lab.prepare(src, dest, say=said.append)
    assert (dest / "00_a.ipynb").read_text() == "v2" and "refreshed" in said[-1]
    (dest / "00_a.ipynb").write_text("my edits")          # the user ran/edited the copy
    (src / "00_a.ipynb").write_text("v3")
    lab.prepare(src, dest, say=said.append)
    assert (dest / "00_a.ipynb").read_text() == "my edits" and "kept your edited copy" in said[-1]


def test_default_lab_folder_is_git_ignored_and_notebooks_are_filtered():
    lab = load_tool("lab")
    rel = (lab.DEST / NOTEBOOK).relative_to(ROOT).as_posix()
    assert subprocess.run(["git", "check-ignore", "-q", rel], cwd=ROOT).returncode == 0
    attrs = git(ROOT, "check-attr", "filter", "diff", "--", f"notebooks/{NOTEBOOK}")
    assert "filter: nbstripout" in attrs and "diff: ipynb" in attrs


def test_committed_notebooks_are_fixed_points_of_the_filter():
    """The filter leaves every committed notebook byte-identical, so registering it never makes
    an untouched notebook look modified."""
    bootstrap = load_tool("bootstrap")
    import shlex
    cmd = [sys.executable, "-m", "nbstripout", *shlex.split(bootstrap.NBSTRIPOUT_ARGS), "-t"]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out = subprocess.run([*cmd, str(nb)], capture_output=True, check=True).stdout
        assert out == nb.read_bytes(), nb.name
