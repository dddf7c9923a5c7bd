"""`emovid-build run --config CONFIG.yaml`: the whole chain, stage after stage, resumable.

sources (import / crawl / fetch) -> segment (films) -> attributes -> annotate (tasks, votes,
2-of-3 rule, label model, validation kappas) -> captions -> splits -> build -> push.

Every stage writes its own folder under ``work_dir`` and skips what it already did, so running
the same config again after a kill (or after the annotators delivered their votes) continues
where it stopped. Relative paths in the config are relative to the config file's folder, or to
``base_dir`` when given. See `builder_scripts/configs/` for the demo and the real EmoVid build.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from emovid_datasets.taxonomy import SOURCES

from .manifest import read_manifest

log = logging.getLogger("emovid.build")


class WaitingForVotes(RuntimeError):
    """The chain stopped because human votes are needed; the message says where the tasks are."""


def load_config(path: Union[str, Path]) -> dict[str, Any]:
    """Read a pipeline config (YAML)."""
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict) or "sources" not in config:
        raise ValueError(f"{path}: a pipeline config needs a `sources` mapping")
    unknown = set(config["sources"]) - set(SOURCES)
    if unknown:
        raise ValueError(f"{path}: unknown sources {sorted(unknown)}; expected some of {', '.join(SOURCES)}")
    return config


def story_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Number segmented film clips in story order: ``sequence_index`` = rank within ``sequence_id``.

    The order is (the parent clip's position in the film, the segment's start time). Consecutive
    indices are the "consecutive movie clips" of the paper's transition analysis; shots dropped for
    length leave no gap (they never were clips). Rows without a ``sequence_id`` keep a null index.
    """
    films: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("sequence_id"):
            films.setdefault(str(row["sequence_id"]), []).append(row)
    ordered = {}
    for clips in films.values():
        clips.sort(key=lambda r: (r.get("sequence_index") or 0, float(r.get("start_time") or 0.0)))
        ordered.update({r["clip_id"]: i for i, r in enumerate(clips)})
    return [dict(r, sequence_index=ordered.get(r["clip_id"])) for r in rows]


class Pipeline:
    """Runs the configured stages; each ``run_*`` method reads and writes stage folders."""

    def __init__(self, config: dict[str, Any], base_dir: Union[str, Path], *, progress: bool = True) -> None:
        self.config, self.base = config, Path(base_dir)
        self.work = self.path(config.get("work_dir", "work"))
        self.workers = int(config.get("workers", 1))
        self.seed = int(config.get("seed", 0))
        self.progress = progress

    def path(self, value: Union[str, Path]) -> Path:
        """A config path resolved against the config's base folder (environment variables expanded)."""
        p = Path(os.path.expandvars(str(value))).expanduser()
        return p if p.is_absolute() else self.base / p

    def files(self, patterns: Union[str, list[str]]) -> list[Path]:
        """Config file patterns (globs allowed) resolved to existing files, sorted."""
        patterns = [patterns] if isinstance(patterns, str) else patterns
        return sorted(Path(f) for p in patterns for f in glob.glob(str(self.path(p))))

    # -- sources ---------------------------------------------------------------------------------
    def run_source(self, source: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """Import, crawl or fetch one source; films then go through `segment`."""
        out = self.work / "sources" / source
        if "import" in spec:
            from .import_animation import run_import

            opts = spec["import"]
            run_import(self.path(opts["src"]), out, source=source, workers=self.workers, progress=self.progress,
                       metadata=self.path(opts["metadata"]) if opts.get("metadata") else None,
                       max_side=opts.get("max_side"))
        elif "crawl" in spec:
            from .crawl_stickers import crawl_from_env

            crawl_from_env(out, workers=self.workers, progress=self.progress, **spec["crawl"])
        elif "fetch" in spec:
            from .fetch_movies import run_fetch_movies

            opts = spec["fetch"]
            run_fetch_movies(self.path(opts["metadata"]), out, workers=self.workers, progress=self.progress,
                             from_dir=self.path(opts["from_dir"]) if opts.get("from_dir") else None,
                             limit=opts.get("limit"), max_side=opts.get("max_side"))
        else:
            raise ValueError(f"source {source}: give one of import, crawl or fetch")
        rows = read_manifest(out)
        if "segment" in spec:
            from .segment import run_segment

            seg = self.work / "segment" / source
            opts = spec["segment"] or {}
            run_segment(rows, seg, min_seconds=float(opts.get("min_seconds", 4.0)),
                        max_seconds=float(opts.get("max_seconds", 30.0)), workers=self.workers,
                        progress=self.progress)
            rows = story_order(read_manifest(seg))
        return [dict(r, source=source) for r in rows]

    # -- labels ----------------------------------------------------------------------------------
    def _votes(self, spec: dict[str, Any], tasks: list[dict[str, Any]], rows: list[dict[str, Any]], name: str,
               seed_offset: int) -> list[Path]:
        """Vote files for ``tasks``: the annotators' files, or simulated annotators (demo)."""
        if "simulate" in spec:
            from emovid_datasets.labelling import simulate_votes, write_vote_file

            from .demo import truth_for_rows

            sim = dict(spec["simulate"])
            truth = truth_for_rows([r for r in rows if r["clip_id"] in {t["clip_id"] for t in tasks}],
                                   self.path(sim.pop("truth")))
            votes = simulate_votes(truth, seed=self.seed + seed_offset, prefix=name, **sim)
            return [write_vote_file(self.work / "annotate" / f"{name}-votes.csv", votes)]
        files = self.files(spec.get("votes", []))
        if not files:
            raise WaitingForVotes(f"labelling tasks are in {self.work / 'annotate' / name}; collect one row per "
                                  f"annotator x clip (clip_id, annotator, label), list the files under "
                                  f"annotate.{'validation.' if name == 'validation' else ''}votes and run again")
        return files

    def run_annotate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Human votes on a sample (2-of-3 rule), the label model on the rest, kappas on a validation sample."""
        from .annotate import export_tasks, import_votes, predict_labels, agreement_from_files, write_report

        spec = self.config.get("annotate", {})
        base = self.work / "annotate"
        tasks = export_tasks(rows, base / "tasks", fraction=float(spec.get("fraction", 0.2)), seed=self.seed,
                             which=spec.get("sample", "unlabelled"))
        import_votes(rows, self._votes(spec, tasks, rows, "tasks", 1), base / "human")
        predict_labels(read_manifest(base / "human"), base / "labels", seed=self.seed, progress=self.progress)
        labels = read_manifest(base / "labels")
        validation = spec.get("validation")
        if validation:
            val_tasks = export_tasks(labels, base / "validation", fraction=float(validation.get("fraction", 0.01)),
                                     seed=self.seed + 2, which="model")
            files = self._votes(validation, val_tasks, labels, "validation", 2)
            report = agreement_from_files(files, labels)
            log.info("annotate: validation agreement written to %s", write_report(report, base / "validation"))
        return labels

    # -- the chain -------------------------------------------------------------------------------
    def run(self) -> Optional[Path]:
        """Run every stage; returns the dataset folder (None when waiting for human votes)."""
        from .annotate import LABELLER_FILE
        from .attributes import run_attributes
        from .build import build_dataset
        from .captions import run_captions
        from .splits import write_splits

        clips: list[dict[str, Any]] = []
        for source, spec in self.config["sources"].items():
            clips.extend(self.run_source(source, spec))
        run_attributes(clips, self.work / "attributes", workers=self.workers, progress=self.progress)
        try:
            labels = self.run_annotate(read_manifest(self.work / "attributes"))
        except WaitingForVotes as wait:
            log.warning("run: stopped before labelling: %s", wait)
            return None
        captions = self.config.get("captions", {})
        run_captions(labels, self.work / "captions", batch_size=int(captions.get("batch_size", 8)),
                     progress=self.progress)
        splits = self.config.get("splits", {})
        write_splits(read_manifest(self.work / "captions"), self.work / "splits", seed=self.seed,
                     per_cell=int(splits.get("per_cell", 10)), paper_mix=bool(splits.get("paper_mix", False)),
                     max_cell_fraction=float(splits.get("max_cell_fraction", 1.0)))
        build = self.config.get("build", {})
        dataset = self.path(self.config.get("dataset_dir", "dataset"))
        labeller = self.work / "annotate" / "labels" / LABELLER_FILE
        build_dataset(self.work / "splits", dataset, max_shard_size=build.get("max_shard_size", "500MB"),
                      min_shards=int(build.get("min_shards", 8)), pretty_name=build.get("pretty_name", "EmoVid"),
                      labeller=labeller if labeller.exists() else None)
        push = self.config.get("push") or {}
        if push.get("repo_id"):
            from .push import push_dataset

            push_dataset(dataset, push["repo_id"], private=bool(push.get("private", False)),
                         revision=push.get("revision"))
        return dataset


def run_pipeline(config_path: Union[str, Path], *, base_dir: Optional[Union[str, Path]] = None,
                 progress: bool = True) -> Optional[Path]:
    """Run the chain described by ``config_path``; returns the dataset folder."""
    config = load_config(config_path)
    return Pipeline(config, base_dir or Path(config_path).resolve().parent, progress=progress).run()


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("run", help="run the whole chain from a config (see builder_scripts/configs/)")
    p.add_argument("--config", required=True, help="pipeline config YAML")
    p.add_argument("--base-dir", help="folder that relative paths in the config are relative to "
                                      "(default: the config file's folder)")
    p.set_defaults(func=lambda a: 0 if run_pipeline(a.config, base_dir=a.base_dir) else 3)
