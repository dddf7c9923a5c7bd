"""`emovid`: the users' CLI (inspect, train, generate, analyze, evaluate). One module per command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# Every module here defines `add_command(subparsers)`; heavy imports happen inside the command.
COMMAND_MODULES: tuple[str, ...] = (
    "emovid_datasets.inspect",
    "emovid_datasets.analysis.cli",
    "emovid_datasets.evaluation.cli",
    "emovid_datasets.training.cli",
)


def run_cli(prog: str, description: str, modules: Sequence[str], argv: Optional[Sequence[str]] = None) -> int:
    """Build a parser from ``modules`` (each defines `add_command(subparsers)`), run the chosen command.

    Usage errors a person can fix (a missing file, a bad value) end with one log line and exit code 2.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).add_command(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as exc:
        logging.getLogger(prog).error("%s", exc)
        return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `emovid` command; returns its exit code."""
    return run_cli("emovid", "Use the EmoVid dataset.", COMMAND_MODULES, argv)


if __name__ == "__main__":
    sys.exit(main())
