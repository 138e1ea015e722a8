"""Drive a real JupyterLab in headless Chromium from pytest (helper module, not a test file).

Pieces, usable separately or together:

* :func:`browser_unavailable_reason` -- ``None`` when a real-browser test can run here, else a
  reason for ``pytest.skip``.  Needs Debian's ``/usr/bin/chromium`` (or ``$WEAKHAND_CHROMIUM``;
  install it with ``tools/install_browser.sh``) and the PyPI ``playwright`` package.  Never run
  ``playwright install``: it downloads its own browser, which fails on our machines.
* :func:`jupyterlab` -- context manager: a private JupyterLab server (temporary config, data,
  runtime and IPython dirs; fixed token; kernel ``python3`` = this interpreter) for one folder.
* :func:`chromium_page` -- context manager: a Playwright page in a fresh headless Chromium.
* :class:`LabPage` -- notebook-level actions on that page: open, wait for the kernel, run all
  cells, wait for them, collect errors, drive ipywidgets (sliders, text boxes, dropdowns,
  checkboxes, buttons), read widget text, and read / click a plotly ``FigureWidget`` (a real
  mouse click fires ``trace.on_click`` in the kernel, which no headless test can do).
* :func:`lab_session` -- all of the above in one ``with``; on failure it prints (to stderr) a
  screenshot path, the browser console, any open dialog and the server log tail.

Example::

    from jupyterlab_browser import browser_unavailable_reason, lab_session

    def test_editor(tmp_path):
        if (reason := browser_unavailable_reason()):
            pytest.skip(reason)
        ...  # write tmp_path / "demo.ipynb"
        with lab_session(tmp_path, env={"WEAKHAND_PROFILE": "smoke"},
                         artifacts_dir=tmp_path / "browser") as lab:
            lab.open_notebook("demo.ipynb")
            lab.run_all_cells()          # clears outputs, runs, waits, raises on cell errors
            lab.set_slider("gain", 0.75)
            lab.click_button("apply")
            lab.expect_widget_text("0.75", css_class="status")

Open a *copy* of a project notebook (e.g. in ``tmp_path``): the page executes it, and although
autosave is off here, a stray save would write outputs into the file.

Widgets are found by their ``description`` (the ``.widget-label`` ipywidgets renders) or, for
widgets without one (HTML, Output, plotly FigureWidget...), by a DOM class the notebook adds with
``widget.add_class("name")``.  When the same widget is displayed twice, the first view is used.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
TOKEN = "weakhand-browser-test"
SERVER_START_TIMEOUT = 120.0   # s; a cold JupyterLab on a loaded 2-core machine is slow
KERNEL_TIMEOUT = 120.0         # s; kernel start (imports torch, plotly...) on 2 cores
ACTION_TIMEOUT = 30.0          # s; one UI action (find a widget, see a value arrive)

# JupyterLab user settings for the private server ({"plugin-id": {key: value}}).
DEFAULT_LAB_SETTINGS: dict[str, dict[str, Any]] = {
    # no news toast, no update check: both would reach the network
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    # start python3 for notebooks without kernelspec metadata instead of a "Select Kernel"
    # dialog; attach every cell to the DOM (no virtualisation), so prompts and widgets of
    # off-screen cells are there to be read and clicked
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True,
                                               "windowingMode": "none"},
    # never write the executed notebook (outputs, widget state) back over the file under test
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
}


def chromium_path() -> str:
    return os.environ.get("WEAKHAND_CHROMIUM") or DEFAULT_CHROMIUM


def browser_unavailable_reason() -> str | None:
    """None when a real-browser test can run; otherwise why not (for ``pytest.skip``)."""
    exe = chromium_path()
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return (f"no Chromium at {exe} (install Debian's with `sudo tools/install_browser.sh`, "
                "or point WEAKHAND_CHROMIUM at one)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package does not import ({exc}); run `make env`"
    return None


# --------------------------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------------------------

@dataclass
class LabServer:
    """A running private JupyterLab; see :func:`jupyterlab`."""
    proc: subprocess.Popen
    url: str                      # base URL, ends with "/"
    token: str
    root_dir: Path
    log_path: Path
    runtime_dir: Path

    def lab_url(self, path: str = "") -> str:
        """URL of the lab page, opening ``path`` (relative to ``root_dir``) when given."""
        tail = f"lab/tree/{path.lstrip('/')}" if path else "lab"
        return f"{self.url}{tail}?token={self.token}"

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _pids_mentioning(text: str) -> list[int]:
    """PIDs of processes whose command line contains ``text`` (a unique private path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def _stop(proc: subprocess.Popen, runtime_dir: Path, grace: float = 15.0) -> None:
    """Stop the server by its PID (SIGTERM, then SIGKILL), then any kernel it left behind.

    Kernels run in their own sessions (jupyter_client), so they are found by the connection
    file path in our private runtime dir, which only processes of this server mention.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in _pids_mentioning(str(runtime_dir)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def jupyterlab(notebook_dir: str | os.PathLike, env: Mapping[str, str] | None = None,
               timeout: float = SERVER_START_TIMEOUT, extra_args: Sequence[str] = (),
               settings: Mapping[str, Mapping[str, Any]] | None = None) -> Iterator[LabServer]:
    """Start a private JupyterLab serving ``notebook_dir``; stop it (and its kernels) at exit.

    ``env`` entries are added to the server's (hence the kernels') environment, e.g.
    ``{"WEAKHAND_PROFILE": "smoke", "WEAKHAND_RUN_DIR": str(run_dir)}``.  The kernelspec
    ``python3`` is written into the private data dir and runs ``sys.executable``.
    ``settings`` ({"plugin-id": {key: value}}) are merged over :data:`DEFAULT_LAB_SETTINGS`;
    ``extra_args`` are appended to the ``jupyter lab`` command line.
    """
    root = Path(notebook_dir).resolve()
    home = Path(tempfile.mkdtemp(prefix="weakhand-lab-"))
    dirs = {name: home / name for name in ("config", "data", "runtime", "ipython")}
    for d in dirs.values():
        d.mkdir()
    # The kernel is this interpreter, whatever kernelspecs the machine or the user has.
    _write_json(dirs["data"] / "kernels" / "python3" / "kernel.json", {
        "argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
        "metadata": {"debugger": True}})
    # User settings live under JUPYTER_CONFIG_DIR/lab/user-settings.
    merged = {plugin: dict(values) for plugin, values in DEFAULT_LAB_SETTINGS.items()}
    for plugin, values in (settings or {}).items():
        merged.setdefault(plugin, {}).update(values)
    for plugin, values in merged.items():
        package, _, name = plugin.partition(":")
        _write_json(dirs["config"] / "lab" / "user-settings" / package
                    / f"{name}.jupyterlab-settings", values)
    log_path = home / "server.log"

    full_env = dict(os.environ)
    full_env.update({
        "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "IPYTHONDIR": str(dirs["ipython"]),
        "PYTHONUNBUFFERED": "1",
    })
    full_env.pop("JUPYTER_PATH", None)
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={_free_port()}", "--ServerApp.port_retries=10",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
           "--expose-app-in-browser",       # window.jupyterapp: commands and notebook model
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           *extra_args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    failed = False
    try:
        yield _wait_for_server(proc, dirs["runtime"], root, log_path, timeout)
    except BaseException as exc:
        failed = _is_failure(exc)
        _note(exc, f"JupyterLab server log ({log_path}, kept), last lines:\n{_tail(log_path)}")
        raise
    finally:
        _stop(proc, dirs["runtime"])
        if not failed:
            shutil.rmtree(home, ignore_errors=True)


def _wait_for_server(proc: subprocess.Popen, runtime_dir: Path, root: Path, log_path: Path,
                     timeout: float) -> LabServer:
    """Wait for the server's jpserver-<pid>.json (its real URL), then for /api/status."""
    deadline = time.monotonic() + timeout
    info_file = runtime_dir / f"jpserver-{proc.pid}.json"
    last_error = "no jpserver-*.json yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode} during start-up")
        if info_file.exists():
            try:
                info = json.loads(info_file.read_text())
                url = info["url"].rstrip("/") + "/"
                with urllib.request.urlopen(f"{url}api/status?token={TOKEN}", timeout=5) as r:
                    if r.status == 200:
                        return LabServer(proc, url, TOKEN, root, log_path, runtime_dir)
            except (ValueError, KeyError, OSError) as exc:   # half-written file, not up yet
                last_error = repr(exc)
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s ({last_error})")


def _is_failure(exc: BaseException) -> bool:
    """Worth diagnostics: not a skip or an interrupt (``pytest.skip`` raises BaseException)."""
    return not (isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))
                or type(exc).__name__ == "Skipped")


def _note(exc: BaseException, text: str) -> None:
    """Print diagnostics for a failure to stderr (pytest shows it under "Captured stderr")."""
    if _is_failure(exc):
        print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Browser
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def chromium_page(timeout: float = ACTION_TIMEOUT, viewport: tuple[int, int] = (1400, 1000)):
    """A Playwright (sync API) page in a fresh headless Chromium with a throw-away profile."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="weakhand-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": viewport[0], "height": viewport[1]})
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(timeout * 1000)
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class CellError(AssertionError):
    """One or more cells produced an error output."""


# JS run in the page.  The notebook panel is found by path among the main-area widgets.
_JS_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  const panels = Array.from(app.shell.widgets('main'));
  return panels.find(w => w.context && w.context.path === path) || null;
}
"""
_JS_STATE = """
(path) => {
  const panel = (%s)(path);
  if (!panel || !panel.content || !panel.content.model) return null;
  const session = panel.sessionContext;
  const kernel = session && session.session && session.session.kernel;
  const cells = [];
  panel.content.widgets.forEach((cell, i) => {
    const m = cell.model;
    if (m.type !== 'code') return;
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    const outputs = [];
    for (let j = 0; j < m.outputs.length; j++) outputs.push(m.outputs.get(j).toJSON());
    cells.push({index: i, source: m.sharedModel.getSource(), count: m.executionCount,
                prompt: prompt ? prompt.textContent.trim() : '', outputs: outputs});
  });
  return {ready: session ? session.isReady : false,
          kernel: kernel ? kernel.status : null,
          connection: kernel ? kernel.connectionStatus : null,
          display: session ? session.kernelDisplayStatus : null,
          cells: cells};
}
""" % _JS_PANEL.strip()


@dataclass
class LabPage:
    """Notebook-level actions on a JupyterLab page (Playwright sync API)."""
    page: Any                          # playwright.sync_api.Page
    server: LabServer
    artifacts_dir: Path | None = None  # where screenshots go; a temp dir when None
    path: str | None = None            # the notebook opened last (relative to the root)
    console: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))

    # ---- waiting ---------------------------------------------------------------------------
    def wait_until(self, predicate: Callable[[], Any], timeout: float = ACTION_TIMEOUT,
                   what: str | Callable[[], str] = "condition", interval: float = 0.1) -> Any:
        """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what``
        (a string, or a callable evaluated at timeout to describe the state then)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                what = what() if callable(what) else what
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.page.wait_for_timeout(interval * 1000)   # lets Playwright dispatch events

    def state(self) -> dict | None:
        """Kernel status and every code cell (source, execution count, prompt, outputs)."""
        return self.page.evaluate(_JS_STATE, self.path)

    # ---- notebook --------------------------------------------------------------------------
    def open_notebook(self, path: str, timeout: float = KERNEL_TIMEOUT) -> None:
        """Open ``path`` (relative to the server root) and wait until its kernel is idle."""
        self.path = Path(path).as_posix()
        self.page.goto(self.server.lab_url(self.path), wait_until="domcontentloaded",
                       timeout=timeout * 1000)
        self.page.locator(".jp-NotebookPanel").first.wait_for(state="visible",
                                                               timeout=timeout * 1000)
        self.wait_until(self.state, timeout, f"the notebook model of {self.path}")
        self.dismiss_news()
        self.wait_kernel_idle(timeout)

    def wait_kernel_idle(self, timeout: float = KERNEL_TIMEOUT) -> None:
        """Wait for the status bar's "Python 3 (ipykernel) | Idle" and a connected kernel.

        (The toolbar's circle says idle before the kernel is even connected; the status bar
        and the session's own kernel status do not.)
        """
        status = self.page.locator(".jp-StatusBar-TextItem").filter(
            has_text=re.compile(r"\|\s*Idle\s*$"))

        def idle():
            self._accept_kernel_dialog()
            st = self.state()
            return (st and st["kernel"] == "idle" and st["connection"] == "connected"
                    and status.count() > 0)
        self.wait_until(idle, timeout,
                        lambda: f"an idle kernel (status bar: {self._status_text()!r})")

    def _accept_kernel_dialog(self) -> None:
        """Answer a "Select Kernel" dialog with its default (python3), if one is open."""
        dialog = self.page.locator(".jp-Dialog").filter(has_text="Select Kernel")
        if dialog.count():
            dialog.first.locator(".jp-Dialog-button.jp-mod-accept").click()

    def _dialogs_text(self) -> str:
        try:
            return " / ".join(" ".join(t.split()) for t in
                              self.page.locator(".jp-Dialog").all_inner_texts())
        except Exception as exc:  # diagnostics only
            return f"unreadable: {exc}"

    def _status_text(self) -> str:
        try:
            return " / ".join(t.strip() for t in
                              self.page.locator(".jp-StatusBar-Widget").all_inner_texts() if t.strip())
        except Exception as exc:  # diagnostics only
            return f"unreadable: {exc}"

    def dismiss_news(self) -> bool:
        """Close the "receive official Jupyter news?" toast if it is showing (answer "No")."""
        toast = self.page.locator(".Toastify__toast").filter(has_text="news")
        if toast.count() == 0:
            return False
        toast.first.get_by_role("button", name="No").click()
        return True

    def command(self, command_id: str, args: dict | None = None) -> Any:
        """Execute a JupyterLab command by id (the same thing the menus and palette do)."""
        return self.page.evaluate(
            "([id, args]) => window.jupyterapp.commands.execute(id, args)", [command_id, args or {}])

    def run_all_cells(self, timeout: float = KERNEL_TIMEOUT, via: str = "menu",
                      raise_on_error: bool = True) -> dict:
        """Clear all outputs, Run → Run All Cells, wait for them to finish; return the state.

        ``via="menu"`` clicks Run → Run All Cells; ``via="command"`` executes
        ``notebook:run-all-cells`` directly.  Raises :class:`CellError` with the tracebacks when
        a cell failed (a failing cell stops the rest, as in JupyterLab).
        """
        self.wait_kernel_idle(timeout)
        self.focus_notebook()
        # Clearing first makes "done" unambiguous: execution counts only come back when run.
        self.command("notebook:clear-all-cell-outputs")
        self.wait_until(lambda: all(c["count"] is None for c in self.state()["cells"]),
                        what="cleared outputs")
        if via == "menu":
            self.page.locator(".lm-MenuBar-item").filter(has_text=re.compile(r"^Run$")).click()
            self.page.locator(".lm-Menu-item:not(.lm-mod-hidden)").filter(
                has_text=re.compile(r"^Run All Cells")).click()
        else:
            self.command("notebook:run-all-cells")
        state = self.wait_all_executed(timeout)
        if raise_on_error:
            self.raise_on_errors(state)
        return state

    def focus_notebook(self) -> None:
        """Make the notebook the current widget (menus act on the current one)."""
        self.page.evaluate("""(path) => {
            const app = window.jupyterapp;
            const w = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
            if (w) app.shell.activateById(w.id);
        }""", self.path)

    def wait_all_executed(self, timeout: float = KERNEL_TIMEOUT) -> dict:
        """Wait until no cell shows ``[*]``, the kernel is idle, and every non-empty code cell
        has an execution count -- or some cell has an error output (the rest were aborted)."""
        def done():
            st = self.state()
            if not st or st["kernel"] != "idle":
                return None
            cells = st["cells"]
            if any("*" in c["prompt"] for c in cells):
                return None
            errored = any(o.get("output_type") == "error" for c in cells for o in c["outputs"])
            ran = all(c["count"] is not None for c in cells if c["source"].strip())
            return st if (ran or errored) else None
        return self.wait_until(done, timeout, "all cells to finish executing", interval=0.25)

    def cell_errors(self, state: dict | None = None) -> list[str]:
        """One text per error output: cell index, source head, and the traceback."""
        state = state or self.state()
        found = []
        for c in state["cells"]:
            for o in c["outputs"]:
                if o.get("output_type") == "error":
                    tb = "\n".join(o.get("traceback") or [f"{o.get('ename')}: {o.get('evalue')}"])
                    tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)      # ANSI colours
                    head = c["source"].strip().splitlines()[:3]
                    found.append(f"cell {c['index']} ({' / '.join(head)}):\n{tb}")
        return found

    def raise_on_errors(self, state: dict | None = None) -> None:
        errors = self.cell_errors(state)
        if errors:
            raise CellError(f"{len(errors)} cell(s) failed in {self.path}:\n\n" + "\n\n".join(errors))

    # ---- widgets ---------------------------------------------------------------------------
    def widget(self, description: str | None = None, css_class: str | None = None):
        """Locator of the first view of an ipywidgets widget, by description or by DOM class.

        ``description`` matches the widget's label (whitespace-normalised, exact), the text
        next to a Checkbox, or a button's text (Button, ToggleButton, ToggleButtons options).
        ``css_class`` matches a class added with ``add_class``; use it for widgets that render
        no description (``Label`` ignores it; ``HTML``, ``Output``, ``FigureWidget`` usually
        have none).
        """
        if (description is None) == (css_class is None):
            raise ValueError("give exactly one of description= or css_class=")
        if css_class is not None:
            return self.page.locator(f".jp-OutputArea-output .{css_class}").first
        lit = _xpath_literal(" ".join(description.split()))
        xp = ("//*[contains(concat(' ', normalize-space(@class), ' '), ' jupyter-widgets ')]"
              "[./label[(contains(concat(' ', normalize-space(@class), ' '), ' widget-label ')"
              " or contains(concat(' ', normalize-space(@class), ' '), ' widget-label-basic '))"
              f" and normalize-space(.)={lit}]]"
              " | //button[contains(concat(' ', normalize-space(@class), ' '), ' jupyter-button ')]"
              f"[normalize-space(.)={lit}]")
        return self.page.locator(f"xpath={xp}").first

    def _find(self, description: str | None, css_class: str | None, timeout: float):
        loc = self.widget(description, css_class)
        try:
            loc.wait_for(state="visible", timeout=timeout * 1000)
        except Exception as exc:
            what = f"description {description!r}" if description is not None else f"class {css_class!r}"
            labels = self.page.locator(".jupyter-widgets > .widget-label, .jupyter-button").all_inner_texts()
            raise LookupError(f"no visible widget with {what} within {timeout:.0f} s; "
                              f"widget labels/buttons on the page: {[t for t in labels if t.strip()]}") from exc
        loc.scroll_into_view_if_needed()
        return loc

    def set_slider(self, description: str | None, value: float, css_class: str | None = None,
                   timeout: float = ACTION_TIMEOUT, tol: float | None = None) -> None:
        """Set an ipywidgets 8 slider by typing into its readout; wait until the readout shows it.

        The readout shows the value rounded by ``readout_format``; ``tol`` defaults to half a
        unit of the readout's last digit.
        """
        readout = self._find(description, css_class, timeout).locator(".widget-readout").first
        if not readout.is_visible():
            raise ValueError(f"slider {description or css_class!r} shows no readout "
                             "(readout=False?): cannot type a value into it")
        readout.click()
        readout.press("ControlOrMeta+a")
        readout.press_sequentially(_fmt(value))
        readout.press("Enter")

        def shown():
            text = readout.inner_text().strip()
            try:
                got = float(text.replace(",", ""))
            except ValueError:
                return False
            digits = len(text.split(".")[1]) if "." in text else 0
            return abs(got - value) <= (tol if tol is not None else 0.5 * 10 ** -digits + 1e-12)
        self.wait_until(shown, timeout, lambda: f"slider {description or css_class!r} to show "
                                                f"{value} (readout: {readout.inner_text()!r})")

    def set_text(self, description: str | None, value: Any, css_class: str | None = None,
                 timeout: float = ACTION_TIMEOUT) -> None:
        """Fill a Text/Textarea/IntText/FloatText/BoundedFloatText box and press Enter."""
        box = self._find(description, css_class, timeout).locator("input, textarea").first
        box.fill(_fmt(value) if isinstance(value, float) else str(value))
        box.press("Enter")
        box.blur()   # continuous_update=False widgets sync on Enter or blur

    def set_dropdown(self, description: str | None, label: str, css_class: str | None = None,
                     timeout: float = ACTION_TIMEOUT) -> None:
        """Choose an option of a Dropdown/Select by its label."""
        self._find(description, css_class, timeout).locator("select").first.select_option(label=label)

    def set_checkbox(self, description: str | None, checked: bool, css_class: str | None = None,
                     timeout: float = ACTION_TIMEOUT) -> None:
        box = self._find(description, css_class, timeout).locator("input[type=checkbox]").first
        box.set_checked(checked)

    def click_button(self, description: str, timeout: float = ACTION_TIMEOUT) -> None:
        """Click a Button/ToggleButton whose text is ``description``."""
        self._find(description, None, timeout).click()

    def widget_text(self, description: str | None = None, css_class: str | None = None,
                    timeout: float = ACTION_TIMEOUT) -> str:
        """Displayed text of a widget (HTML, Label, Valid...), without its description label."""
        loc = self._find(description, css_class, timeout)
        return loc.evaluate("""(el) => {
            const c = el.cloneNode(true);
            c.querySelectorAll(':scope > .widget-label').forEach(l => l.remove());
            return c.innerText !== undefined && c.innerText !== '' ? c.innerText : c.textContent;
        }""").strip()

    def expect_widget_text(self, pattern: str | re.Pattern, description: str | None = None,
                           css_class: str | None = None, timeout: float = ACTION_TIMEOUT) -> str:
        """Wait until :meth:`widget_text` contains ``pattern`` (a substring or a regex)."""
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        wanted = f"/{rx.pattern}/" if isinstance(pattern, re.Pattern) else repr(pattern)
        last = [""]

        def ok():
            last[0] = self.widget_text(description, css_class, timeout)
            return rx.search(last[0]) is not None
        try:
            self.wait_until(ok, timeout, f"widget text matching {wanted}")
        except TimeoutError as exc:
            raise AssertionError(f"widget {description or css_class!r} shows {last[0]!r}, "
                                 f"expected {wanted} within {timeout:.0f} s") from exc
        return last[0]

    # ---- plotly FigureWidget -----------------------------------------------------------------
    # A FigureWidget's DOM classes (``fig.add_class("name")``) land on its ``.js-plotly-plot``
    # element, which carries plotly.js's live state (``el.data``, ``el.layout``).
    def plotly_state(self, css_class: str, timeout: float = ACTION_TIMEOUT) -> dict:
        """``{"data": [...], "layout": {...}}`` as plotly.js in the page has them now."""
        plot = self._plot(css_class, timeout)
        # typed arrays (numpy data arrives as Float64Array etc.) become plain lists
        return plot.evaluate("el => JSON.parse(JSON.stringify({data: el.data, layout: el.layout},"
                             " (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v))")

    def click_plot_point(self, css_class: str, trace: int, index: int,
                         timeout: float = ACTION_TIMEOUT) -> tuple[float, float]:
        """Click point ``index`` of trace ``trace`` with the mouse (fires plotly_click, hence
        ``trace.on_click`` callbacks in the kernel).  Returns the page coordinates clicked."""
        plot = self._plot(css_class, timeout)
        plot.scroll_into_view_if_needed()
        xy = plot.evaluate("""(el, [t, i]) => {
            const tr = el._fullData[t], fl = el._fullLayout;
            const xa = fl[tr.xaxis.replace('x', 'xaxis')], ya = fl[tr.yaxis.replace('y', 'yaxis')];
            const box = el.getBoundingClientRect();
            return [box.left + xa._offset + xa.d2p(tr.x[i]), box.top + ya._offset + ya.d2p(tr.y[i])];
        }""", [trace, index])
        self.page.mouse.move(xy[0], xy[1])
        self.page.mouse.click(xy[0], xy[1])
        return xy[0], xy[1]

    def click_plot_xy(self, css_class: str, x: float, y: float, trace: int = 0,
                      timeout: float = ACTION_TIMEOUT) -> tuple[float, float]:
        """Click the data coordinates (x, y) of the axes of trace ``trace`` with the mouse --
        anywhere, not only on a point (plotly reports a click only when a point of some trace
        is within its hover distance).  Returns the page coordinates clicked."""
        plot = self._plot(css_class, timeout)
        plot.scroll_into_view_if_needed()
        xy = plot.evaluate("""(el, [t, x, y]) => {
            const tr = el._fullData[t], fl = el._fullLayout;
            const xa = fl[tr.xaxis.replace('x', 'xaxis')], ya = fl[tr.yaxis.replace('y', 'yaxis')];
            const box = el.getBoundingClientRect();
            return [box.left + xa._offset + xa.d2p(x), box.top + ya._offset + ya.d2p(y)];
        }""", [trace, x, y])
        self.page.mouse.move(xy[0], xy[1])
        self.page.mouse.click(xy[0], xy[1])
        return xy[0], xy[1]

    def plot_boxes(self, css_class: str, selectors: Sequence[str],
                   timeout: float = ACTION_TIMEOUT) -> dict[str, list[dict]]:
        """Page bounding boxes ({x, y, width, height}) of the elements matching each CSS
        selector inside a plot (e.g. ``.gtitle``, ``.modebar``), visible ones only."""
        plot = self._plot(css_class, timeout)
        return plot.evaluate("""(el, sels) => Object.fromEntries(sels.map(s => [s,
            Array.from(el.querySelectorAll(s)).map(e => e.getBoundingClientRect())
                 .filter(r => r.width > 0 && r.height > 0)
                 .map(r => ({x: r.x, y: r.y, width: r.width, height: r.height}))]))""",
                             list(selectors))

    def _plot(self, css_class: str, timeout: float):
        plot = self._find(None, css_class, timeout)
        if "js-plotly-plot" not in (plot.get_attribute("class") or ""):
            plot = plot.locator(".js-plotly-plot").first
        plot.locator(".main-svg").first.wait_for(state="visible", timeout=timeout * 1000)
        return plot

    # ---- diagnostics -----------------------------------------------------------------------
    def screenshot(self, path: str | os.PathLike | None = None, full_page: bool = True) -> Path:
        """Save a PNG of the page (default: ``artifacts_dir``/screenshot-<time>.png)."""
        if path is None:
            folder = self.artifacts_dir or Path(tempfile.mkdtemp(prefix="weakhand-shot-"))
            stamp = time.strftime("%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
            path = Path(folder) / f"screenshot-{stamp}.png"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def diagnostics(self) -> str:
        parts = []
        try:
            parts.append(f"screenshot: {self.screenshot()}")
        except Exception as exc:
            parts.append(f"screenshot failed: {exc}")
        parts.append(f"page URL: {self.page.url}; status bar: {self._status_text()!r}")
        if dialogs := self._dialogs_text():
            parts.append(f"open dialog(s): {dialogs!r}")
        if self.console:
            parts.append("browser console (last 30):\n" + "\n".join(self.console[-30:]))
        return "\n".join(parts)


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _xpath_literal(s: str) -> str:
    if "'" not in s:
        return f"'{s}'"
    if '"' not in s:
        return f'"{s}"'
    return "concat(" + ", \"'\", ".join(f"'{p}'" for p in s.split("'")) + ")"


@contextlib.contextmanager
def lab_session(notebook_dir: str | os.PathLike, env: Mapping[str, str] | None = None,
                artifacts_dir: str | os.PathLike | None = None,
                server_timeout: float = SERVER_START_TIMEOUT,
                action_timeout: float = ACTION_TIMEOUT,
                settings: Mapping[str, Mapping[str, Any]] | None = None) -> Iterator[LabPage]:
    """JupyterLab on ``notebook_dir`` + headless Chromium; yields a :class:`LabPage`.

    ``env`` and ``settings`` go to :func:`jupyterlab`.
    On any failure inside the block a screenshot is saved (in ``artifacts_dir``, else a temp
    dir) and its path, the browser console and the server log tail are printed to stderr.
    """
    artifacts = Path(artifacts_dir) if artifacts_dir else None
    with jupyterlab(notebook_dir, env=env, timeout=server_timeout, settings=settings) as server:
        with chromium_page(timeout=action_timeout) as page:
            lab = LabPage(page, server, artifacts)
            try:
                yield lab
            except BaseException as exc:
                if _is_failure(exc):
                    _note(exc, "browser diagnostics:\n" + lab.diagnostics())
                raise
