"""The ``fastrl`` command line. Each subcommand lives in its own module with
``add_parser(subparsers)`` registering it and setting ``func``."""
from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order `fastrl --help` lists them.
_COMMANDS = ["fastrl.cli.tsne", "fastrl.cli.embed", "fastrl.cli.knn"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastrl", description="Fast representation-learning tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in _COMMANDS:
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Run ``fastrl CMD ...``; bad input ends with ``fastrl CMD: error: ...`` and exit status 2.

    Each command checks its input file, labels, options and output paths
    before it starts computing. An ``OSError`` while writing the results
    (disk full, ...) is reported the same way, without a traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as exc:  # FileNotFoundError is an OSError
        print(f"fastrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
