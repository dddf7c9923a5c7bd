"""Stage `build`: build manifest -> dataset folder (Parquet shards + generated card).

`emovid-build build MANIFEST --out DATASET_DIR` writes `data/<config>/<split>-*.parquet`
and `README.md`; the clips rejected for unreadable media go to `DATASET_DIR/_build/rejects.parquet`
(next to the build statistics), which `load_dataset` ignores and `push` does not upload.
A rebuild is written beside the old folder and replaces it in one step when complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from builder_scripts.engine.manifest import write_rejects
from builder_scripts.publish.card import card_statistics, write_card
from emovid_datasets.atomic import atomic_write_bytes, atomic_write_text, replaced_folder
from emovid_datasets.builder import read_table_file
from emovid_datasets.evaluation.evaluator import EVALUATOR_DIR, train_evaluator
from emovid_datasets.export import BUILD_DIR, DEFAULT_MAX_SHARD_SIZE, DEFAULT_MIN_SHARDS, ExportResult, write_shards
from emovid_datasets.labelling.labeller import LABELLER_DIR, VALIDATION_FILE
from emovid_datasets.options import add_dataclass_arguments, given_options
from emovid_datasets.schema import METADATA_CONFIG

log = logging.getLogger("emovid.build")

BUILD_OUTPUTS = ("README.md", "data", LABELLER_DIR, EVALUATOR_DIR, BUILD_DIR)  # what a build writes, all anew


@dataclass(frozen=True)
class BuildOptions:
    """How the shards and the card are written (the config's ``build:`` keys and the command's options)."""

    max_shard_size: str = field(default=DEFAULT_MAX_SHARD_SIZE, metadata={"help": "byte target per shard"})
    min_shards: int = field(default=DEFAULT_MIN_SHARDS, metadata={
        "help": "at least this many shards per split when there are enough clips"})
    pretty_name: str = field(default="EmoVid", metadata={"help": "the dataset's name in its card"})
    evaluator: bool = field(default=True, metadata={"help": "train the EA evaluator (DATASET_DIR/evaluator/)"})
    metadata_only: bool = field(default=False, metadata={
        "help": "publish only the metadata config, without media: users rebuild the clips with `rehydrate`"})


def build_dataset(
    manifest: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    max_shard_size: Union[int, str] = BuildOptions.max_shard_size,
    min_shards: int = BuildOptions.min_shards,
    pretty_name: str = BuildOptions.pretty_name,
    labeller: Optional[Union[str, Path]] = None,
    validation_report: Optional[Union[str, Path]] = None,
    evaluator: bool = BuildOptions.evaluator,
    metadata_only: bool = BuildOptions.metadata_only,
    seed: int = 0,
    progress: bool = True,
) -> ExportResult:
    """Write shards, card, rejects and statistics for ``manifest`` into ``out_dir``.

    ``labeller``: the label model of this build (a fine-tuned VLM folder or a saved feature classifier),
    copied to ``labeller/`` so that it travels with the shards, with ``validation_report`` (the 1 %
    validation set's ``agreement.json``) beside it. ``evaluator``: train the separate EA evaluator on the
    human-labelled train clips into ``evaluator/`` (see `emovid_datasets.evaluation.evaluator`).
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    # Everything is written into a folder beside ``out_dir`` that replaces it in one step when complete, so a
    # killed rebuild leaves the previous build as it was (and its staging folder for the next run to remove).
    with replaced_folder(out_dir, owned=BUILD_OUTPUTS) as staging:
        result = write_shards(manifest, staging, max_shard_size=max_shard_size, min_shards=min_shards,
                              metadata_only=metadata_only, progress=progress)
        if labeller is not None:
            copy_labeller(Path(labeller), staging / LABELLER_DIR)
        if validation_report is not None:
            atomic_write_bytes(staging / LABELLER_DIR / VALIDATION_FILE, Path(validation_report).read_bytes())
        if evaluator:
            train_evaluator([r for r in read_table_file(manifest) if r.get("clip_id") not in rejected(result)],
                            staging / EVALUATOR_DIR, seed=seed, progress=progress)
        write_card(result, staging, pretty_name=pretty_name)
        write_rejects(staging / BUILD_DIR, [dict(r, input_id=r.get("clip_id")) for r in result.rejects])
        atomic_write_text(staging / BUILD_DIR / "stats.json", json.dumps(card_statistics(result), indent=2))
    result.root = out_dir
    result.shards = {key: [out_dir / p.relative_to(staging) for p in paths] for key, paths in result.shards.items()}
    rows = sum(n for (config, _), n in result.num_rows.items() if config == METADATA_CONFIG)
    shards = sum(len(p) for p in result.shards.values())
    log.info("build: %d clips in %d shards under %s, %d rejected (see %s), %.1fs", rows, shards, out_dir,
             len(result.rejects), out_dir / BUILD_DIR / "rejects.parquet", time.monotonic() - started)
    return result


def rejected(result: ExportResult) -> set[str]:
    """The clip ids the export rejected (unreadable media): they are in no split."""
    return {str(r.get("clip_id")) for r in result.rejects}


def copy_labeller(src: Path, dst: Path) -> None:
    """Copy a saved labeller's files into ``dst``, keeping their relative layout."""
    from emovid_datasets.labelling.saved import saved_files

    files = saved_files(src)
    root = src if src.is_dir() else src.parent
    for f in files:
        atomic_write_bytes(dst / f.relative_to(root), f.read_bytes())


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("build", help="build Parquet shards and the dataset card from a build manifest")
    p.add_argument("manifest", help="build manifest (.parquet/.csv/.jsonl) or a stage folder holding manifest.parquet")
    p.add_argument("--out", required=True, help="dataset folder to write")
    add_dataclass_arguments(p, BuildOptions)
    p.add_argument("--labeller", help=f"the build's label model (a folder from `annotate finetune`, or labeller.skops "
                                      f"from `annotate predict`), copied to DATASET_DIR/{LABELLER_DIR}/")
    p.add_argument("--validation-report", help="agreement.json of the 1%% validation set (`annotate report`), shown "
                                               "in the card")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluator's held-out split")
    p.set_defaults(func=lambda a: build_dataset(a.manifest, a.out, **given_options(BuildOptions, a),
                                                labeller=a.labeller, validation_report=a.validation_report,
                                                seed=a.seed) and 0)
