#!/usr/bin/env python3
"""Check the import layering of the ``weakhand`` library (lib/weakhand).

Every module belongs to one layer; a module may import from its own layer and the layers below
it, never from a layer above. Layers, lowest first (a module takes the layer of the longest
entry of ``LAYERS`` that names it or one of its packages)::

    core        weakhand (the version), io, progress, skeleton, camera, device
    data        data, train.checkpoint      file formats (datasets, checkpoints), torch Dataset
    science     models, losses, bmc, metrics, dense
    sources     synth, recipes              dataset producers: the science never depends on one
    methods     methods                     Cai, Spurr (BMC), Wan: models + losses + recipes
    train       train                       the training loop
    evaluation  evaluation                   one scoring path for every trained variant
    viz         viz, bmc.editor, bmc.figures, dense.figures, evaluation.figures
    workbook    workbook, predict, data.cli the commands, runs and profiles

Every import statement counts, also one inside a function (it hides an edge, but it is one).
Besides upward imports the check reports import cycles between units (the entries of
``LAYERS``: ``bmc`` <-> ``models`` would be one) and between modules, and modules that no entry
places. Exit status 0 when clean, 1 on a violation, 2 on a usage error.

    python tools/check_layers.py            # violations only (and a one-line summary)
    python tools/check_layers.py --graph    # also every edge between units, with its count
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "weakhand"
ROOT = Path(__file__).resolve().parents[1] / "lib" / PACKAGE

#: (layer, unit prefixes) lowest first; a unit is a module or package below ``weakhand``
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("", "io", "naming", "progress", "skeleton", "camera", "device")),
    ("data", ("data", "train.checkpoint")),
    ("science", ("models", "losses", "bmc", "metrics", "dense")),
    ("sources", ("synth", "recipes")),
    ("methods", ("methods",)),
    ("train", ("train",)),
    ("evaluation", ("evaluation",)),
    ("viz", ("viz", "bmc.editor", "bmc.figures", "dense.figures", "evaluation.figures")),
    ("workbook", ("workbook", "predict", "data.cli", "lift_cli")),
]


@dataclass(frozen=True)
class Edge:
    src: str        # importing module (dotted, e.g. "weakhand.bmc.loss")
    dst: str        # imported module
    file: str       # the importing file, for messages
    line: int
    local: bool     # inside a function / class body

    def where(self) -> str:
        return f"{self.file}:{self.line}" + (" (function-local)" if self.local else "")


def _shown(path: Path, root: Path) -> str:
    """`path` relative to the folder above lib/ (the repository) when it lies there."""
    try:
        return str(path.relative_to(root.parents[1]))
    except ValueError:
        return str(path)


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file for every .py file of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve_from(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, modules: set[str], root: Path = ROOT) -> list[Edge]:
    """Every import of a ``weakhand`` module in `path` (top-level or inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    top = {id(n) for n in tree.body}
    # `if TYPE_CHECKING:` / `try:` blocks at module level are top-level too
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n) if isinstance(c, (ast.Import, ast.ImportFrom))}
    edges = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(module, is_pkg, node)
            # `from pkg import sub` imports the submodule pkg.sub
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        for t in dict.fromkeys(targets):
            if t == PACKAGE or t.startswith(PACKAGE + "."):
                edges.append(Edge(module, t, _shown(path, root), node.lineno, id(node) not in top))
    return edges


def unit_of(module: str) -> str | None:
    """The longest ``LAYERS`` entry naming `module` or one of its packages ("" = weakhand)."""
    rel = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    best = None
    for _, units in LAYERS:
        for u in units:
            if rel == u or (u == "" and rel == "") or (u and rel.startswith(u + ".")):
                if best is None or len(u) > len(best):
                    best = u
    return best


LAYER_OF = {u: i for i, (_, units) in enumerate(LAYERS) for u in units}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    nodes = sorted(set(graph) | {d for ds in graph.values() for d in ds})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def check(root: Path = ROOT) -> tuple[list[str], dict[tuple[str, str], int], int, int]:
    """``(violations, unit edge counts, number of imports, function-local ones)``."""
    found = discover(root)
    names = set(found)
    edges = [e for m, p in found.items() for e in imports(m, p, names, root)]
    problems: list[str] = []
    units = [u for _, us in LAYERS for u in us]
    problems += [f"LAYERS names {u or PACKAGE!r} twice" for u in sorted(set(units))
                 if units.count(u) > 1]
    for m in sorted(found):
        if unit_of(m) is None:
            problems.append(f"unplaced: {_shown(found[m], root)} is in no layer (add it to LAYERS in "
                            "tools/check_layers.py)")
    unit_edges: dict[tuple[str, str], int] = defaultdict(int)
    unit_graph: dict[str, set[str]] = defaultdict(set)
    module_graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        su, du = unit_of(e.src), unit_of(e.dst)
        if e.dst in names and e.dst != e.src:
            module_graph[e.src].add(e.dst)
        if su is None or du is None or su == du:
            continue
        unit_edges[(su, du)] += 1
        unit_graph[su].add(du)
        ls, ld = LAYER_OF[su], LAYER_OF[du]
        if ld > ls:
            problems.append(f"upward: {e.where()}: {e.src} ({LAYERS[ls][0]}) imports {e.dst} "
                            f"({LAYERS[ld][0]})")
    for comp in _cycles(unit_graph):
        shown = [u or PACKAGE for u in comp]
        problems.append("unit cycle: " + " <-> ".join(shown) + "  (" + "; ".join(
            e.where() + f" -> {e.dst}" for e in edges
            if unit_of(e.src) in comp and unit_of(e.dst) in comp
            and unit_of(e.src) != unit_of(e.dst)) + ")")
    for comp in _cycles(module_graph):
        problems.append("module cycle: " + " <-> ".join(comp) + "  (" + "; ".join(
            e.where() + f" -> {e.dst}" for e in edges if e.src in comp and e.dst in comp) + ")")
    n_local = sum(e.local for e in edges)
    return problems, dict(unit_edges), len(edges), n_local


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", action="store_true", help="print every edge between units")
    ap.add_argument("--root", type=Path, default=ROOT, help="package folder (default: %(default)s)")
    args = ap.parse_args(argv)
    if not (args.root / "__init__.py").is_file():
        print(f"check_layers: {args.root} is not a package", file=sys.stderr)
        return 2
    problems, unit_edges, n, n_local = check(args.root)
    if args.graph:
        for i, (layer, units) in enumerate(LAYERS):
            print(f"{i} {layer}: {', '.join(u or PACKAGE for u in units)}")
        for (a, b), k in sorted(unit_edges.items(), key=lambda kv: (LAYER_OF[kv[0][0]], kv[0])):
            print(f"  {a or PACKAGE} -> {b or PACKAGE}  ({k})")
    for p in problems:
        print(p)
    print(f"check_layers: {n} imports of {PACKAGE} modules ({n_local} function-local), "
          f"{len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
