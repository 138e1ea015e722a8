"""`weakhand` command line: ``weakhand <subcommand> ...``.

Subcommands live in their own modules, listed in ``SUBCOMMANDS``. To add one (e.g. ``data``),
add a line ``"data": "weakhand.<module>"`` and give that module:

- ``CLI_HELP: str`` - one line for ``weakhand --help``;
- ``add_arguments(parser: argparse.ArgumentParser) -> None``;
- ``cli_main(args: argparse.Namespace, argv: list[str]) -> int`` - the exit status
  (`argv` is the subcommand's own argument list, e.g. for recording the command line).

``weakhand bench`` is the benchmark suite ``benchmarks/suite.py`` of the repository, which is
not part of the package: :func:`load_bench_suite` imports it from the checkout this package is
installed from (``pip install -e .``); without one, ``weakhand bench`` says so and exits 2.

Keep heavy imports (torch, papermill, plotly) inside functions so ``weakhand --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

from .envinfo import VersionAction

#: the module name ``benchmarks/suite.py`` is imported under (see :func:`load_bench_suite`)
BENCH_MODULE = "weakhand_benchmarks"

SUBCOMMANDS: dict[str, str] = {
    "run": "weakhand.workbook.runner",
    "data": "weakhand.data.cli",
    "bench": BENCH_MODULE,
    "predict": "weakhand.predict",
    "lift": "weakhand.lift_cli",
    "ablate": "weakhand.workbook.ablate",
}


def bench_suite_path() -> Path:
    """``<repo>/benchmarks/suite.py``: the suite behind ``weakhand bench``."""
    from .runs import repo_root

    return repo_root() / "benchmarks" / "suite.py"


def load_bench_suite() -> ModuleType:
    """The benchmark suite module (``benchmarks/suite.py`` of the repository checkout), imported
    once as :data:`BENCH_MODULE`. FileNotFoundError naming the path when the checkout has none
    (the package was installed without the repository: the suite is not part of it)."""
    module = sys.modules.get(BENCH_MODULE)
    if module is not None:
        return module
    path = bench_suite_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the benchmark suite {path} is missing: `weakhand bench` runs benchmarks/suite.py "
            f"of the repository, so it needs the checkout installed in editable mode "
            f"(`pip install -e .` in the repository folder)")
    spec = importlib.util.spec_from_file_location(BENCH_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[BENCH_MODULE] = module  # before running it: dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[BENCH_MODULE]
        raise
    return module


def _unavailable(name: str, reason: str) -> SimpleNamespace:
    """A subcommand that cannot run here: listed in ``--help``, and exit status 2 with the
    reason when called (whatever its arguments: :func:`main` lets it take any)."""
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.set_defaults(_any_arguments=True)

    def cli_main(args: argparse.Namespace, argv: list[str]) -> int:
        print(f"weakhand {name}: error: {reason}", file=sys.stderr, flush=True)
        return 2

    return SimpleNamespace(CLI_HELP=f"unavailable: {reason.split(':')[0]}",
                           add_arguments=add_arguments, cli_main=cli_main)


def _subcommand_module(name: str, module_name: str):
    if module_name != BENCH_MODULE:
        return importlib.import_module(module_name)
    try:
        return load_bench_suite()
    except FileNotFoundError as exc:
        return _unavailable(name, str(exc))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakhand",
        description="Weakly-supervised 3D hand pose estimation research workbook.")
    parser.add_argument("--version", action=VersionAction)  # + git commit, dirty or clean
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = _subcommand_module(name, module_name)
        help_text = getattr(module, "CLI_HELP", "")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # as parse_args does
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    sub_argv = argv[argv.index(args.command) + 1:] if args.command in argv else []
    return int(args._module.cli_main(args, sub_argv) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
