"""A self-contained HTML report: headings, paragraphs, tables and plotly figures in one file
(plotly.js embedded once), written atomically."""
from __future__ import annotations

import datetime as _dt
import html
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
"""


class Report:
    """Collects blocks in order; :meth:`write` renders them into one HTML file.

    >>> r = Report("Evaluation"); r.heading("Results"); r.text("..."); r.table(rows); r.figure(fig)
    """

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, text: str) -> "Report":
        self.blocks.append(("h2", text))
        return self

    def text(self, text: str, note: bool = False) -> "Report":
        self.blocks.append(("note" if note else "p", text))
        return self

    def table(self, rows: Sequence[Mapping[str, Any]], caption: str = "") -> "Report":
        self.blocks.append(("table", (list(rows), caption)))
        return self

    def figure(self, fig) -> "Report":
        self.blocks.append(("figure", fig))
        return self

    def render(self) -> str:
        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                 f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"]
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
        """Render and write atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, self.render())
        return path


def table_html(rows: Sequence[Mapping[str, Any]], caption: str = "") -> str:
    """Rows of dicts (same keys) -> an escaped HTML table."""
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
