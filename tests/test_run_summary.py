"""runs.summarize_run_dir: the last cell of every notebook (counts/sizes per folder, files written)."""
import os
import time

import nbformat

from weakhand.workbook import runs
from weakhand.workbook.runs import open_run


def test_summarize_run_dir_groups_by_folder_and_lists_new_files(tmp_path):
    run = open_run(tmp_path / "r")
    for i in range(30):
        run.artifact(f"data/synth/train/a{i:02d}.npy").write_bytes(b"x" * 1024)
    run.artifact("metrics/m.json").write_text("{}")
    (run.path / "00_x.ipynb").write_text("{}")              # runner's own files: left out
    run.artifact("logs/00_x.kernel.log").write_text("w")
    old = time.time() - 3600
    for p in (run.path / "data").rglob("*.npy"):
        os.utime(p, (old, old))                              # written "before this notebook"
    since = time.time() - 60
    run.artifact("figures/f.html").write_text("<html>" * 100)

    s = runs.summarize_run_dir(run, since=since)
    assert [(f.folder, f.files) for f in s.folders] == [
        ("data/synth/train", 30), ("figures", 1), ("metrics", 1)]
    assert s.total_files == 32
    assert [a.path for a in s.written] == ["figures/f.html", "metrics/m.json"]
    text = repr(s)
    assert "data/synth/train/" in text and "30" in text and "30.0 KB" in text
    assert "a00.npy" not in text                             # no per-file listing of old data
    assert "written by this notebook: 2 file(s)" in text
    assert "<table>" in s._repr_html_() and "figures/f.html" in s._repr_html_()


def test_summarize_caps_the_file_list_and_works_without_since(tmp_path):
    run = open_run(tmp_path / "r")
    for i in range(25):
        run.artifact(f"ck{i:02d}/w.pt").write_bytes(b"y" * 10)
    run.artifact("many/a.npy").write_bytes(b"z")
    for i in range(10):
        run.artifact(f"many/b{i}.npy").write_bytes(b"z" * 10)
    s = runs.summarize_run_dir(run.path, since=0, max_files=5)
    text = repr(s)
    assert "ck04/w.pt" in text and "ck05/w.pt" not in text
    assert "... and 21 more, 301 B" in text and "and 21 more" in s._repr_html_()
    many = repr(runs.summarize_run_dir(run.path, since=0, max_files=50))
    assert "many/  11 files: a.npy, b0.npy, b1.npy, ..." in many and "many/b5.npy" not in many
    plain = runs.summarize_run_dir(run.path)
    assert plain.written is None and "written by" not in repr(plain)
    missing = runs.summarize_run_dir(tmp_path / "nope", since=0)
    assert missing.total_files == 0 and not (tmp_path / "nope").exists()


def test_every_notebook_ends_with_the_run_summary():
    for p in sorted(runs.notebooks_root().glob("*.ipynb")):
        last = nbformat.read(p, as_version=4).cells[-1]
        assert last.cell_type == "code", p
        assert "runs.summarize_run_dir(run, since=run.opened_at)" in last.source, p


def test_brief_counts_per_kind_and_names_the_main_files(tmp_path):
    run = open_run(tmp_path / "r")
    since = time.time() - 60
    for name in ("best.pt", "last.pt", "metrics.jsonl"):
        run.artifact(f"stage1/{name}").write_bytes(b"w" * 100)
    run.artifact("stage3/last.pt").write_bytes(b"w")
    run.artifact("metrics/20_x.json").write_text("{}")
    for i in range(5):
        run.artifact(f"figures/f{i}.html").write_text("<html>")
        run.artifact(f"data/split/a{i}.npy").write_bytes(b"z")
    b = runs.summarize_run_dir(run, since=since).brief()
    assert b.kinds == {"checkpoints": [3, 201], "training logs": [1, 100], "metrics": [1, 2],
                       "figures": [5, 30], "datasets": [5, 5]}
    assert set(b.main) == {"stage1/best.pt", "stage3/last.pt", "metrics/20_x.json", "data/split/"}
    text = repr(b)
    assert "figures" in text and "f0.html" not in text and len(text.splitlines()) == 7
    assert runs.summarize_run_dir(run, since=since).brief(max_main=1).n_more == 3
