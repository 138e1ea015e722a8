"""A self-contained HTML report: headings, paragraphs, tables and plotly figures in one file
(plotly.js embedded once), written atomically. A report of a run of the smoke profile opens with
a banner saying its numbers are not meaningful."""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; } .meta { color: #777; font-size: 0.8em; }
.banner { background: #fff3cd; border: 2px solid #d9822b; color: #7a3d00; padding: 0.8em 1.1em;
          margin: 0 0 1.2em; border-radius: 4px; font-size: 1.05em; }
.banner strong { font-size: 1.15em; }
"""

# profile -> (headline, explanation) of the banner at the top of its reports
PROFILE_BANNERS: dict[str, tuple[str, str]] = {
    "smoke": ("smoke profile: numbers are not meaningful",
              "This run used the smoke profile (tiny datasets, a few training steps), which "
              "checks that every stage runs end to end. Its errors, gaps closed and verdicts say "
              "nothing about the methods: use the cpu or gpu profile for results."),
}


def run_profile(run_dir: str | os.PathLike) -> str | None:
    """The profile a run folder was made with: its run.json (the runner's record), else the
    `config.profile` of its newest metrics/*.json (notebooks record their config), else None.
    No arrays."""
    run_dir = Path(run_dir)
    try:
        prof = json.loads((run_dir / "run.json").read_text()).get("profile")
        if prof:
            return str(prof)
    except (OSError, ValueError, AttributeError):
        pass
    metrics = sorted((run_dir / "metrics").glob("*.json"), key=lambda p: p.stat().st_mtime,
                     reverse=True) if (run_dir / "metrics").is_dir() else []
    for m in metrics:
        try:
            prof = json.loads(m.read_text()).get("config", {}).get("profile")
        except (OSError, ValueError, AttributeError):
            continue
        if prof:
            return str(prof)
    return None


class Report:
    """Collects blocks in order; :meth:`write` renders them into one HTML file.

    >>> r = Report("Evaluation"); r.heading("Results"); r.text("..."); r.table(rows); r.figure(fig)

    No arrays: tables are rows of dicts already formatted (units in their column titles).
    """

    def __init__(self, title: str, subtitle: str = "", profile: str | None = None):
        """`profile`: the run's profile (a banner for the smoke profile); None: found by
        :meth:`write` from the run folder the report is written into (see :func:`run_profile`)."""
        self.title, self.subtitle, self.profile = title, subtitle, profile
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, text: str) -> "Report":
        """Add a section heading (no arrays); returns self."""
        self.blocks.append(("h2", text))
        return self

    def text(self, text: str, note: bool = False) -> "Report":
        """Add a paragraph (`note`: styled as a side note); no arrays; returns self."""
        self.blocks.append(("note" if note else "p", text))
        return self

    def table(self, rows: Sequence[Mapping[str, Any]], caption: str = "") -> "Report":
        """Add a table of dict rows (same keys; see :func:`table_html`); no arrays; returns self."""
        self.blocks.append(("table", (list(rows), caption)))
        return self

    def figure(self, fig) -> "Report":
        """Add a Plotly figure (plotly.js embedded once per report); no arrays; returns self."""
        self.blocks.append(("figure", fig))
        return self

    def render(self) -> str:
        """The whole report as one HTML string (banner, title, blocks, time stamp); no arrays."""
        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                 f"<style>{_CSS}</style></head><body>"]
        if self.profile in PROFILE_BANNERS:
            head, why = PROFILE_BANNERS[self.profile]
            parts.append(f"<div class='banner' role='alert'><strong>{html.escape(head)}</strong>"
                         f"<br>{html.escape(why)}</div>")
        parts.append(f"<h1>{html.escape(self.title)}</h1>")
        if self.subtitle:
            parts.append(f"<p class='meta'>{html.escape(self.subtitle)}</p>")
        js_done = False
        for kind, payload in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{html.escape(payload)}</h2>")
            elif kind in ("p", "note"):
                cls = " class='note'" if kind == "note" else ""
                parts.append(f"<p{cls}>{html.escape(payload)}</p>")
            elif kind == "table":
                rows, caption = payload
                parts.append(table_html(rows, caption))
            elif kind == "figure":
                parts.append(payload.to_html(full_html=False, include_plotlyjs=not js_done,
                                             config={"responsive": True}))
                js_done = True
        stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        parts.append(f"<p class='meta'>written {stamp} by weakhand</p></body></html>")
        return "\n".join(parts)

    def write(self, path: str | os.PathLike) -> Path:
        """Render and write atomically (no arrays); returns the path."""
        path = Path(path)
        if self.profile is None:
            self.profile = run_profile(path.parent)
        atomic_write_text(path, self.render())
        return path


def table_html(rows: Sequence[Mapping[str, Any]], caption: str = "") -> str:
    """Rows of dicts (same keys) -> an escaped HTML table (cells as str; no arrays)."""
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
