"""`emovid-build`: the maintainers' pipeline CLI. Each stage module contributes one subcommand."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from emovid_datasets.cli import run_cli

# Every module here defines `add_command(subparsers)`; keep one line per stage module.
COMMAND_MODULES: tuple[str, ...] = (
    "builder_scripts.sources.crawl_stickers",
    "builder_scripts.sources.fetch_movies",
    "builder_scripts.sources.import_animation",
    "builder_scripts.stages.segment",
    "builder_scripts.stages.attributes",
    "builder_scripts.stages.annotate",
    "builder_scripts.stages.captions",
    "builder_scripts.stages.splits",
    "builder_scripts.publish.build",
    "builder_scripts.publish.push",
    "builder_scripts.publish.rehydrate",
    "builder_scripts.engine.pipeline",
    "builder_scripts.demo.command",
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `emovid-build` command; returns its exit code."""
    return run_cli("emovid-build", "Regenerate EmoVid shards from raw sources.", COMMAND_MODULES, argv)


if __name__ == "__main__":
    sys.exit(main())
