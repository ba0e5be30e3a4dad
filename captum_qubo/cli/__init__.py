"""Command line: ``captum-qubo explain`` (any model, many images), ``explain-dataset`` and ``captum-qubo demo``.

Subcommands are pluggable: each is a function ``add_<name>_parser(subparsers)`` that adds its parser and sets
``run=<function(args) -> exit status>`` as a default. Adding one is two lines in :func:`build_parser` (import the
function, add it to ``SUBCOMMANDS``). Nothing heavy is imported before parsing, so ``--help`` and ``--version``
answer at once; torch comes in when a command runs.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from captum_qubo import __version__
from captum_qubo.cli.errors import CliError
from captum_qubo.analyses.command import add_analyze_parser
from captum_qubo.cli.explain import add_demo_parser, add_explain_parser
from captum_qubo.cli.explain_dataset import add_explain_dataset_parser

SUBCOMMANDS = (add_explain_parser, add_explain_dataset_parser, add_demo_parser, add_analyze_parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-qubo`` parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="captum-qubo",
        description="Explain CNN predictions by the feature maps a QUBO selects (solved by annealers).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``captum-qubo`` console script; returns the exit status (2: bad arguments)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as error:
        print(f"captum-qubo {args.command}: error: {error}", file=sys.stderr)
        return 2


__all__ = ["CliError", "build_parser", "main"]
