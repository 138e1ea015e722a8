#!/usr/bin/env python3
"""List public definitions whose docstring gives no shape and no unit.

Usage::

    python tools/check_docstrings.py lib/weakhand/models lib/weakhand/skeleton.py ...
    python tools/check_docstrings.py --exclude 'models/pose25d.py' lib/weakhand/models

Arguments are Python files or directories (searched recursively for ``*.py``). The files are
parsed, never imported, so the tool needs nothing but the standard library. Exit status 1 when
any definition is listed, 0 when none is, 2 on a usage error.

What is checked ("public definitions"):

* module-level functions and classes whose name does not start with ``_``;
* methods (and properties) of those classes whose name does not start with ``_``
  (constructor arguments belong in the class docstring; ``__call__``/``__init__`` and other
  dunders are not checked).

Nested functions, private names and definitions in files named ``_*.py`` (other than
``__init__.py``) are skipped.

The rule. A docstring passes when it contains at least one of:

1. **A shape**: a parenthesised tuple of dimensions, each an integer, ``...``, a name
   (``B``, ``K``, ``h``, ``2K``, ``width``, ``M_max``) or simple arithmetic of those (``H/4``,
   ``3*K``), with at least one element that is a number, ``...`` or a short upper-case symbol
   (``B``, ``N``, ``2K``): ``(B, 21, 3)``, ``(N, ...)``, ``(..., 3)``, ``(21,)``,
   ``(B,K,h,w)``, ``(B, width, H, W)``; prose such as ``(thumb, index)`` does not count. ``(...)`` alone (leading batch dims) counts, and
   so do ``3x3`` / ``128×128`` and the word ``scalar``.
2. **A unit word**: ``mm``, ``cm``, ``px``, ``pixel(s)``, ``rad``, ``radian(s)``, ``deg``,
   ``degree(s)``, ``°``, ``metre(s)``/``meter(s)``, ``second(s)``, ``ms``, ``bytes``,
   ``normalised``/``normalized``, ``unitless``, ``dimensionless``, ``fraction``, ``percent``/``%``.
3. **A non-array declaration** for definitions that take and return no arrays (a config, a
   file writer, a widget): the word ``unitless``, ``bool`` or ``flag`` (a predicate), or the
   phrase ``no arrays``.

A definition without any docstring is always listed. The rule is a heuristic: it proves the
docstring *mentions* a shape or unit, not that the statement is right; review still matters.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import re
import sys
from pathlib import Path

_DIM = r"(?:\.\.\.|\d+|\d*[A-Za-z]\w*)"
_DIM_EXPR = rf"{_DIM}(?:\s*[*/+\-]\s*{_DIM})*"
_SHAPE = re.compile(rf"\(\s*(?:\.\.\.|{_DIM_EXPR}\s*,(?:\s*{_DIM_EXPR}\s*,)*\s*(?:{_DIM_EXPR})?)\s*\)")
_GRID = re.compile(r"\b\d+\s*[x×]\s*\d+\b")
_UNIT = re.compile(
    r"(?<![A-Za-z_])(?:mm|cm|px|pixels?|rad|radians?|deg|degrees?|metres?|meters?|seconds?|ms|"
    r"bytes|normali[sz]ed|unitless|dimensionless|fraction|percent|scalar|bool|flag|no arrays)"
    r"(?![A-Za-z_])|°|%",
    re.IGNORECASE,
)

RULE = ("a shape like (B, 21, 3) / (N, ...) / (..., 3), or a unit word (mm, px, rad, degrees, "
        "normalised, unitless, ...), or 'unitless' / 'bool' / 'no arrays' for non-array definitions")


def _shape_ok(text: str) -> bool:
    for m in _SHAPE.finditer(text):
        body = m.group(0)[1:-1]
        if body.strip() == "...":
            return True
        # at least one element that is a number, '...' or a short upper-case symbol (B, N, 2K)
        if re.search(r"\.\.\.|(?<![A-Za-z_])(?:\d+|\d*[A-Z][A-Za-z0-9]?)(?![A-Za-z0-9_])", body):
            return True
    return bool(_GRID.search(text))


def documents_shape_or_unit(doc: str | None) -> bool:
    """True when doc (a docstring or None) mentions a shape or a unit under the rule above (bool)."""
    if not doc:
        return False
    return _shape_ok(doc) or bool(_UNIT.search(doc))


def _public(name: str) -> bool:
    return not name.startswith("_")


def public_definitions(source: str, filename: str = "<string>") -> list[tuple[int, str, str | None]]:
    """(line, qualified name, docstring or None) of each public definition in source, in file
    order; plain tuples, no arrays."""
    tree = ast.parse(source, filename=filename)
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    out: list[tuple[int, str, str | None]] = []
    for node in tree.body:
        if isinstance(node, funcs) and _public(node.name):
            out.append((node.lineno, node.name, ast.get_docstring(node)))
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            out.append((node.lineno, node.name, ast.get_docstring(node)))
            out.extend((item.lineno, f"{node.name}.{item.name}", ast.get_docstring(item))
                       for item in node.body if isinstance(item, funcs) and _public(item.name))
    return out


def missing_in_source(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """(line, qualified name) of each public definition in source whose docstring fails the rule;
    a list of int/str pairs, no arrays."""
    return [(line, name) for line, name, doc in public_definitions(source, filename)
            if not documents_shape_or_unit(doc)]


def iter_files(paths: list[str], exclude: list[str]) -> list[Path]:
    """The .py files under paths (files or directories), sorted, minus exclude globs (no arrays)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.py")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(p)
    keep = []
    for f in files:
        if f.name.startswith("_") and f.name != "__init__.py":
            continue
        if any(fnmatch.fnmatch(f.as_posix(), f"*{pat}") for pat in exclude):
            continue
        keep.append(f)
    return sorted(set(keep))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 none listed, 1 some, 2 usage), unitless."""
    ap = argparse.ArgumentParser(description="List public definitions whose docstring gives no shape or unit.")
    ap.add_argument("paths", nargs="+", help="package directories or .py files")
    ap.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="skip files whose path ends with GLOB (repeatable), e.g. models/pose25d.py")
    ap.add_argument("--quiet", action="store_true", help="print only the summary line")
    args = ap.parse_args(argv)
    try:
        files = iter_files(args.paths, args.exclude)
    except FileNotFoundError as e:
        print(f"check_docstrings: no such file or directory: {e}", file=sys.stderr)
        return 2
    n_missing = 0
    n_checked = 0
    for f in files:
        defs = public_definitions(f.read_text(encoding="utf-8"), str(f))
        n_checked += len(defs)
        for line, name, doc in defs:
            if not documents_shape_or_unit(doc):
                n_missing += 1
                if not args.quiet:
                    print(f"{f}:{line}: {name}")
    print(f"{n_missing} of {n_checked} public definitions in {len(files)} files give no shape or unit"
          + (f" (rule: {RULE})" if n_missing else ""))
    return 1 if n_missing else 0


if __name__ == "__main__":
    sys.exit(main())
