"""`weakhand` command line: ``weakhand <subcommand> ...``.

Subcommands live in their own modules, listed in ``SUBCOMMANDS``. To add one (e.g. ``data``
or ``bench``), add a line ``"data": "weakhand.<module>"`` and give that module:

- ``CLI_HELP: str`` - one line for ``weakhand --help``;
- ``add_arguments(parser: argparse.ArgumentParser) -> None``;
- ``cli_main(args: argparse.Namespace, argv: list[str]) -> int`` - the exit status
  (`argv` is the subcommand's own argument list, e.g. for recording the command line).

Keep heavy imports (torch, papermill, plotly) inside functions so ``weakhand --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__  # noqa: F401  (re-exported)
from .envinfo import VersionAction

SUBCOMMANDS: dict[str, str] = {
    "run": "weakhand.runner",
    "data": "weakhand.data.cli",
    "bench": "weakhand.bench",
    "predict": "weakhand.predict",
    "ablate": "weakhand.ablate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakhand",
        description="Weakly-supervised 3D hand pose estimation research workbook.")
    parser.add_argument("--version", action=VersionAction)  # + git commit, dirty or clean
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        help_text = getattr(module, "CLI_HELP", "")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    sub_argv = argv[argv.index(args.command) + 1:] if args.command in argv else []
    return int(args._module.cli_main(args, sub_argv) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
