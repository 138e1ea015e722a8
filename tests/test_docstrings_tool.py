"""tools/check_docstrings.py: lists public definitions whose docstring gives no shape or unit."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from project_tools import ROOT, load_tool

TOOL = ROOT / "tools" / "check_docstrings.py"

GOOD_AND_BAD = textwrap.dedent('''
    """A tiny module."""


    def good(kp):
        """(B, 21, 3) mm keypoints -> (B,) scale-bone length in mm."""


    def bad(kp):
        """Does something to the keypoints."""


    def _private(kp):
        pass
''')


@pytest.fixture(scope="module")
def tool():
    return load_tool("check_docstrings")


def test_one_good_one_bad(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(GOOD_AND_BAD)
    r = subprocess.run([sys.executable, str(TOOL), str(pkg)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    listed = [line for line in r.stdout.splitlines() if line.startswith(str(pkg))]
    assert listed == [f"{pkg / 'mod.py'}:9: bad"]
    assert "1 of 2 public definitions" in r.stdout


def test_clean_module_exits_zero(tmp_path):
    f = tmp_path / "ok.py"
    f.write_text('def f(x):\n    """x (N, ...) -> (N,) in px."""\n')
    r = subprocess.run([sys.executable, str(TOOL), str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 of 1 public definitions" in r.stdout


def test_missing_path_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2


@pytest.mark.parametrize("doc", [
    "(B, 21, 3) mm", "pose (..., 3)", "(B, width, H, W)", "(N, ...) array", "(21,) ids", "maps (B,K,h,w)", "a 3x3 matrix",
    "scale (...)", "angles in radians", "in pixels", "normalised depth", "unitless config",
    "True when valid (bool)", "writes a file; no arrays", "percent of poses", "rate in %",
])
def test_rule_accepts(tool, doc):
    assert tool.documents_shape_or_unit(doc)


@pytest.mark.parametrize("doc", [
    None, "", "Return the thing.", "Pick (thumb, index) fingers.", "see (a, b) above", "(Kabsch, Umeyama)",
    "the summary", "commands",  # 'mm'/'ms' only as whole words
])
def test_rule_rejects(tool, doc):
    assert not tool.documents_shape_or_unit(doc)


def test_methods_classes_and_exclusions(tool, tmp_path):
    src = textwrap.dedent('''
        class Net:
            """Takes (B, 3, H, W) images."""
            def forward(self, x):
                """Runs it."""
            def _hidden(self):
                pass
            def __call__(self, x):
                pass

        class _Private:
            def forward(self):
                pass
    ''')
    assert tool.missing_in_source(src) == [(4, "Net.forward")]
    (tmp_path / "a.py").write_text(src)
    (tmp_path / "b.py").write_text(src)
    (tmp_path / "_c.py").write_text(src)
    files = tool.iter_files([str(tmp_path)], exclude=["b.py"])
    assert [f.name for f in files] == ["a.py"]
