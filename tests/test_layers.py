"""tools/check_layers.py: the import layering of lib/weakhand, and imports without side effects."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from project_tools import ROOT

TOOL = ROOT / "tools" / "check_layers.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=120)


def test_the_library_has_no_upward_import_and_no_cycle():
    res = _run()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 violation(s)" in res.stdout


def _package(root, files: dict[str, str]):
    pkg = root / "weakhand"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return pkg


def test_the_checker_finds_hidden_upward_imports_cycles_and_unplaced_modules(tmp_path):
    pkg = _package(tmp_path, {
        "skeleton.py": "X = 1\n",
        "models/__init__.py": "from ..skeleton import X\n",
        "models/net.py": "def f():\n    from ..train import engine  # hidden edge\n",
        "train/__init__.py": "from . import engine\n",
        "train/engine.py": "from ..models import net\n",
        "bmc/__init__.py": "from ..models import net\n",
        "mystery.py": "import weakhand.skeleton\n",
    })
    res = _run("--root", str(pkg))
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout
    assert "models/net.py:2 (function-local)" in out
    assert "weakhand.models.net (science) imports weakhand.train.engine (train)" in out
    assert "unit cycle: models <-> train" in out
    assert "unplaced:" in out and "mystery" in out
    assert "bmc" not in "".join(line for line in out.splitlines() if line.startswith("upward"))


def test_a_clean_package_passes(tmp_path):
    pkg = _package(tmp_path, {
        "skeleton.py": "X = 1\n",
        "models/__init__.py": "from ..skeleton import X\nfrom . import net\n",
        "models/net.py": "from .. import skeleton\n",
        "train/__init__.py": "from ..models import net\n",
    })
    res = _run("--root", str(pkg), "--graph")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "train -> models  (1)" in res.stdout


def _fresh(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def test_importing_the_bmc_loss_does_not_import_plotly():
    res = _fresh("""
        import sys
        import weakhand.bmc
        assert "plotly" not in sys.modules, sorted(m for m in sys.modules if "plotly" in m)
    """)
    assert res.returncode == 0, res.stderr


def test_importing_weakhand_train_selects_no_gpu():
    """Inside a torchrun process on a (pretended) CUDA machine, the import itself changes nothing;
    resolving the CUDA device selects this process's GPU."""
    res = _fresh("""
        import torch
        calls = []
        torch.cuda.is_available = lambda: True
        torch.cuda.device_count = lambda: 2
        torch.cuda.set_device = lambda i: calls.append(i)
        import weakhand.train
        assert calls == [], calls
        from weakhand.device import resolve_device
        assert resolve_device("auto") == "cuda"
        assert calls == [1], calls
    """, WORLD_SIZE="2", RANK="1", LOCAL_RANK="1")
    assert res.returncode == 0, res.stderr
