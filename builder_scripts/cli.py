"""`emovid-build`: the maintainers' pipeline CLI. Each stage module contributes one subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# Every module here defines `add_command(subparsers)`; keep one line per stage module.
COMMAND_MODULES: tuple[str, ...] = (
    "builder_scripts.crawl_stickers",
    "builder_scripts.fetch_movies",
    "builder_scripts.import_animation",
    "builder_scripts.segment",
    "builder_scripts.attributes",
    "builder_scripts.annotate",
    "builder_scripts.captions",
    "builder_scripts.splits",
    "builder_scripts.build",
    "builder_scripts.push",
    "builder_scripts.pipeline",
    "builder_scripts.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emovid-build", description="Regenerate EmoVid shards from raw sources.")
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
        logging.getLogger("emovid.build").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
