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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emovid", description="Use the EmoVid dataset.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as exc:
        logging.getLogger("emovid").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
