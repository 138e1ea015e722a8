"""`weakhand data ...`: make synthetic datasets, inspect and verify datasets on disk."""
from __future__ import annotations

import argparse
import ast
import json

CLI_HELP = "make synthetic datasets (synth), convert real ones (convert), verify (info)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``synth`` / ``convert`` / ``info`` actions to `parser` (no arrays; sizes in px)."""
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    s = sub.add_parser("synth", help="generate a synthetic dataset split",
                       description="Generate a synthetic dataset split in the workbook format.")
    s.add_argument("--domain", default="render", help="built-in domain style (render, sensor)")
    s.add_argument("--split", default="train")
    s.add_argument("-n", "--count", type=int, required=True, help="number of samples")
    s.add_argument("--size", type=int, default=128, help="square crop size, px")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="output dataset directory")
    s.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="change a DomainStyle knob, e.g. --set 'distance_mm=(600, 900)'")
    s.add_argument("--no-reuse", action="store_true", help="regenerate even if identical")
    c = sub.add_parser("convert", help="convert a real dataset (rhd, stb, freihand, ho3d, "
                       "dexter_object) into the workbook format",
                       description="Convert a raw benchmark dataset; see data_recipes/README.md.")
    c.add_argument("dataset", help="rhd | stb | freihand | ho3d | dexter_object")
    c.add_argument("--src", required=True, help="raw dataset root (see data_recipes/README.md)")
    c.add_argument("--out", required=True, help="output folder; splits go to OUT/<split>")
    c.add_argument("--splits", default="", help="comma list (default: all standard splits)")
    c.add_argument("--size", type=int, default=128, help="square crop size, px")
    c.add_argument("--margin", type=float, default=1.5, help="crop side / keypoint extent")
    c.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    c.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe option, e.g. --opt root=wrist (stb)")
    i = sub.add_parser("info", help="summarise and verify a dataset directory")
    i.add_argument("path")
    i.add_argument("--verify", choices=("none", "size", "once", "full"), default="full")


def _knob(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"weakhand data synth: --set expects KNOB=VALUE, got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def cli_main(args: argparse.Namespace, argv=None) -> int:
    """Run the parsed ``weakhand data`` action, printing its JSON report; returns the exit
    status (0 ok, 1 dataset/raw-data error, 2 bad ``--set``). No arrays."""
    from .format import DatasetError, dataset_summary, load_dataset

    if args.data_command == "convert":
        from ..recipes import RawDataError, convert_dataset
        try:
            rep = convert_dataset(args.dataset, args.src, args.out,
                                  splits=[s for s in args.splits.split(",") if s] or None,
                                  size=args.size, margin=args.margin,
                                  workers=args.workers or None,
                                  options=dict(_knob(o) for o in args.opt))
        except (RawDataError, ValueError) as e:
            print(f"weakhand data convert: {e}")
            return 1
        print(json.dumps(rep, indent=2))
        return 0
    if args.data_command == "synth":
        from ..synth.dataset import make_dataset
        from ..synth.domains import make_style
        try:
            style = make_style(args.domain, **dict(_knob(k) for k in args.set))
        except ValueError as e:
            print(f"weakhand data synth: {e}")
            return 2
        rep = make_dataset(args.out, style, args.count, seed=args.seed, split=args.split,
                           size=args.size, reuse=not args.no_reuse)
        print(json.dumps(rep, indent=2))
        return 0
    try:
        summary = dataset_summary(load_dataset(args.path, verify=args.verify))
    except DatasetError as e:
        print(f"weakhand data info: {e}")
        return 1
    summary.pop("source", None)
    print(json.dumps(summary, indent=2, default=str))
    return 0
