"""Progress bars that behave in JupyterLab (widget bar) and under papermill/CI (plain text)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")

HEADLESS_ENV = "WEAKHAND_HEADLESS"


def _in_notebook_frontend() -> bool:
    if os.environ.get(HEADLESS_ENV) or os.environ.get("CI"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool = False, **kw):
    """Return a tqdm bar: the widget flavour in an interactive notebook, plain text otherwise.

    Headless runs (the runner sets WEAKHAND_HEADLESS=1 for papermill kernels, CI sets CI) get a
    plain bar on stderr that updates at most every 2 s, so executed notebooks stay small.
    """
    if _in_notebook_frontend():
        try:
            from tqdm.notebook import tqdm as bar
            return bar(iterable, total=total, desc=desc, unit=unit, disable=disable, **kw)
        except ImportError:  # ipywidgets missing: fall back to text
            pass
    from tqdm import tqdm as bar
    kw.setdefault("mininterval", 2.0)
    kw.setdefault("file", sys.stderr)
    kw.setdefault("dynamic_ncols", True)
    return bar(iterable, total=total, desc=desc, unit=unit, disable=disable, **kw)
