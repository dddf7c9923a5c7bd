"""Stage `build`: build manifest -> dataset folder (Parquet shards + generated card).

`emovid-build build MANIFEST --out DATASET_DIR` writes `data/<config>/<split>-*.parquet`
and `README.md`; the clips rejected for unreadable media go to `DATASET_DIR/_build/rejects.parquet`
(next to the build statistics), which `load_dataset` ignores and `push` does not upload.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Optional, Union

from emovid_datasets.atomic import atomic_write_bytes, atomic_write_text
from emovid_datasets.export import DEFAULT_MAX_SHARD_SIZE, DEFAULT_MIN_SHARDS, ExportResult, write_shards
from emovid_datasets.labelling.labeller import DATASET_LABELLER, saved_labeller_files

from .card import card_statistics, write_card
from .manifest import write_rejects

log = logging.getLogger("emovid.build")
BUILD_DIR = "_build"


def build_dataset(
    manifest: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    max_shard_size: Union[int, str] = DEFAULT_MAX_SHARD_SIZE,
    min_shards: int = DEFAULT_MIN_SHARDS,
    pretty_name: str = "EmoVid",
    labeller: Optional[Union[str, Path]] = None,
) -> ExportResult:
    """Write shards, card, rejects and statistics for ``manifest`` into ``out_dir``.

    ``labeller``: the label model of this build (a saved `FeatureClassifier`), copied into the dataset
    folder so that it travels with the shards and serves as the default EA classifier of the benchmark.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    result = write_shards(manifest, out_dir, max_shard_size=max_shard_size, min_shards=min_shards)
    if labeller is not None:
        for src, dst in zip(saved_labeller_files(labeller), saved_labeller_files(out_dir / DATASET_LABELLER)):
            atomic_write_bytes(dst, Path(src).read_bytes())
    write_card(result, out_dir, pretty_name=pretty_name)
    write_rejects(out_dir / BUILD_DIR, [dict(r, input_id=r.get("clip_id")) for r in result.rejects])
    stats = card_statistics(result)
    atomic_write_text(out_dir / BUILD_DIR / "stats.json", json.dumps(stats, indent=2))
    rows = sum(n for (config, _), n in result.num_rows.items() if config == "default")
    shards = sum(len(p) for p in result.shards.values())
    log.info("build: %d clips in %d shards under %s, %d rejected (see %s), %.1fs", rows, shards, out_dir,
             len(result.rejects), out_dir / BUILD_DIR / "rejects.parquet", time.monotonic() - started)
    return result


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("build", help="build Parquet shards and the dataset card from a build manifest")
    p.add_argument("manifest", help="build manifest (.parquet/.csv/.jsonl) or a stage folder holding manifest.parquet")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help="byte target per shard (default 500MB)")
    p.add_argument("--min-shards", type=int, default=DEFAULT_MIN_SHARDS,
                   help="at least this many shards per split when there are enough clips (default 8)")
    p.add_argument("--labeller", help=f"the build's label model (labeller.skops from `annotate predict`), "
                                      f"copied to DATASET_DIR/{DATASET_LABELLER}")
    p.set_defaults(func=lambda a: build_dataset(a.manifest, a.out, max_shard_size=a.max_shard_size,
                                                min_shards=a.min_shards, labeller=a.labeller) and 0)
