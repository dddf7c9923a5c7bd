"""`emovid-build`: the maintainers' pipeline CLI. Each stage module contributes one subcommand."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from emovid_datasets.cli import run_cli

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `emovid-build` command; returns its exit code."""
    return run_cli("emovid-build", "Regenerate EmoVid shards from raw sources.", COMMAND_MODULES, argv)


if __name__ == "__main__":
    sys.exit(main())
