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
import dataclasses
import functools
import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from builder_scripts.engine.executors import EngineSettings, add_engine_arguments, use_engine
from builder_scripts.engine.manifest import read_manifest
from emovid_datasets.options import given_options, options_from
from emovid_datasets.taxonomy import SOURCES

log = logging.getLogger("emovid.build")


# Top-level keys of a pipeline config (each section's own keys are checked where it is read).
CONFIG_KEYS = ("sources", "work_dir", "dataset_dir", "workers", "seed", "engine", "ray_address", "annotate",
               "captions", "splits", "build", "push")


class WaitingForVotes(RuntimeError):
    """The chain stopped because human votes are needed; the message says where the tasks are."""


@dataclass(frozen=True)
class VoteRequest:
    """What a vote source is asked for: votes on ``tasks`` (``name`` is ``tasks`` or ``validation``)."""

    name: str
    spec: dict[str, Any]
    tasks: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    seed: int
    pipeline: "Pipeline"


# A vote source returns the vote files for a request, or None to fall back to the config's `votes` files.
VoteSource = Callable[[VoteRequest], Optional[list[Path]]]


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


def check_source(source: str, spec: dict[str, Any]) -> None:
    """Check a ``sources.<name>`` section's keys (one of import, crawl, fetch; optional segment)."""
    from builder_scripts.stages.segment import SegmentOptions

    where = f"sources.{source}"
    unknown = sorted(set(spec) - {"import", "crawl", "fetch", "segment"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected one of import, crawl or fetch, and segment")
    if "segment" in spec:
        options_from(SegmentOptions, spec["segment"], f"{where}.segment")
    if "import" in spec:
        from builder_scripts.sources.import_animation import ImportOptions

        options_from(ImportOptions, spec["import"], f"{where}.import")
    elif "fetch" in spec:
        from builder_scripts.sources.fetch_movies import FetchOptions

        options_from(FetchOptions, spec["fetch"], f"{where}.fetch")
    elif "crawl" in spec:
        from builder_scripts.sources.crawl_stickers import check_crawl_options

        check_crawl_options(spec["crawl"], f"{where}.crawl")


class Pipeline:
    """Runs the configured stages; each ``run_*`` method reads and writes stage folders."""

    def __init__(self, config: dict[str, Any], base_dir: Union[str, Path], *, progress: bool = True,
                 vote_source: Optional[VoteSource] = None) -> None:
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"pipeline config: unknown key(s) {unknown}; expected some of {', '.join(CONFIG_KEYS)}")
        self.config, self.base = config, Path(base_dir)
        self.engine = EngineSettings(engine=config.get("engine", "local"), ray_address=config.get("ray_address"))
        self.vote_source = vote_source
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
        where = f"sources.{source}"
        if "import" in spec:
            from builder_scripts.sources.import_animation import ImportOptions, run_import

            opts = options_from(ImportOptions, spec["import"], f"{where}.import")
            run_import(self.path(opts.src), out, source=source, workers=self.workers, progress=self.progress,
                       metadata=self.path(opts.metadata) if opts.metadata else None, max_side=opts.max_side)
        elif "crawl" in spec:
            from builder_scripts.sources.crawl_stickers import check_crawl_options, crawl_from_env

            crawl_from_env(out, workers=self.workers, progress=self.progress,
                           **check_crawl_options(spec["crawl"], f"{where}.crawl"))
        elif "fetch" in spec:
            from builder_scripts.sources.fetch_movies import FetchOptions, run_fetch_movies

            opts = options_from(FetchOptions, spec["fetch"], f"{where}.fetch")
            run_fetch_movies(self.path(opts.metadata), out, workers=self.workers, progress=self.progress,
                             from_dir=self.path(opts.from_dir) if opts.from_dir else None, limit=opts.limit,
                             max_side=opts.max_side)
        else:
            raise ValueError(f"{where}: give one of import, crawl or fetch")
        rows = read_manifest(out)
        if "segment" in spec:
            from builder_scripts.stages.segment import SegmentOptions, run_segment

            seg = self.work / "segment" / source
            opts = options_from(SegmentOptions, spec["segment"], f"{where}.segment")
            run_segment(rows, seg, **dataclasses.asdict(opts), workers=self.workers, progress=self.progress)
            rows = story_order(read_manifest(seg))
        return [dict(r, source=source) for r in rows]

    # -- labels ----------------------------------------------------------------------------------
    def _votes(self, spec: dict[str, Any], tasks: list[dict[str, Any]], rows: list[dict[str, Any]], name: str,
               seed_offset: int) -> list[Path]:
        """Vote files for ``tasks``: from the pipeline's vote source, else the files the config lists."""
        if self.vote_source is not None:
            files = self.vote_source(VoteRequest(name, spec, tasks, rows, self.seed + seed_offset, self))
            if files is not None:
                return files
        unknown = sorted(set(spec) - {"votes", "fraction", "sample", "validation", "labeller"})
        if unknown:
            raise ValueError(f"annotate{'.validation' if name == 'validation' else ''}: unknown key(s) {unknown} "
                             f"(`simulate` is the demo's: run `emovid-build demo`)")
        files = self.files(spec.get("votes", []))
        if not files:
            raise WaitingForVotes(f"labelling tasks are in {self.work / 'annotate' / name}; collect one row per "
                                  f"annotator x clip (clip_id, annotator, label), list the files under "
                                  f"annotate.{'validation.' if name == 'validation' else ''}votes and run again")
        return files

    def run_annotate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Human votes on a sample (2-of-3 rule), the label model on the rest, kappas on a validation sample.

        ``annotate.labeller: {vlm: MODEL, ...}`` fine-tunes a video-language model on the human labels (the
        paper's labeller; the other keys are `FinetuneSettings`); without it a feature classifier labels.
        """
        from builder_scripts.stages.annotate import (
            agreement_from_files,
            export_tasks,
            finetune,
            import_votes,
            predict_labels,
            write_report,
        )

        spec = self.config.get("annotate", {})
        base = self.work / "annotate"
        tasks = export_tasks(rows, base / "tasks", fraction=float(spec.get("fraction", 0.2)), seed=self.seed,
                             which=spec.get("sample", "unlabelled"))
        import_votes(rows, self._votes(spec, tasks, rows, "tasks", 1), base / "human")
        labeller = self.labeller_folder()
        load = None
        if labeller is not None:
            from emovid_datasets.labelling.finetune import METADATA_FILE, settings_from
            from emovid_datasets.labelling.saved import load_labeller

            options = dict(spec["labeller"])
            vlm = options.pop("vlm")
            settings = settings_from({"seed": self.seed, **options})
            if not (labeller / METADATA_FILE).is_file():  # fine-tuned once; labeller.json is written last
                finetune(read_manifest(base / "human"), labeller, vlm, settings, progress=self.progress)
            load = functools.partial(load_labeller, labeller, device=settings.device)
        predict_labels(read_manifest(base / "human"), base / "labels", load=load, seed=self.seed,
                       progress=self.progress)
        labels = read_manifest(base / "labels")
        validation = spec.get("validation")
        if validation:
            val_tasks = export_tasks(labels, base / "validation", fraction=float(validation.get("fraction", 0.01)),
                                     seed=self.seed + 2, which="model")
            files = self._votes(validation, val_tasks, labels, "validation", 2)
            report = agreement_from_files(files, labels)
            log.info("annotate: validation agreement written to %s", write_report(report, base / "validation"))
        return labels

    def labeller_folder(self) -> Optional[Path]:
        """Where the fine-tuned labeller lives (None when the config uses the feature classifier)."""
        spec = self.config.get("annotate", {}).get("labeller")
        if not spec:
            return None
        if "vlm" not in spec:
            raise ValueError("annotate.labeller needs `vlm: MODEL` (a transformers video chat model, or tiny)")
        return self.work / "annotate" / "labeller"

    # -- the chain -------------------------------------------------------------------------------
    def run(self) -> Optional[Path]:
        """Run every stage on the config's engine; returns the dataset folder (None when waiting for votes)."""
        with use_engine(self.engine):
            return self._run()

    def _run(self) -> Optional[Path]:
        from builder_scripts.publish.build import BuildOptions, build_dataset
        from builder_scripts.publish.push import PushOptions
        from builder_scripts.stages.annotate import LABELLER_FILE
        from builder_scripts.stages.attributes import run_attributes
        from builder_scripts.stages.captions import CaptionOptions, run_captions
        from builder_scripts.stages.splits import SplitsOptions, write_splits

        # Every section is checked before the first stage runs, so a typo fails now, not hours later.
        for source, spec in self.config["sources"].items():
            check_source(source, spec)
        captions = options_from(CaptionOptions, self.config.get("captions"), "captions")
        splits = options_from(SplitsOptions, self.config.get("splits"), "splits")
        build = options_from(BuildOptions, self.config.get("build"), "build")
        push = options_from(PushOptions, self.config.get("push"), "push")

        clips: list[dict[str, Any]] = []
        for source, spec in self.config["sources"].items():
            clips.extend(self.run_source(source, spec))
        run_attributes(clips, self.work / "attributes", workers=self.workers, progress=self.progress)
        try:
            labels = self.run_annotate(read_manifest(self.work / "attributes"))
        except WaitingForVotes as wait:
            log.warning("run: stopped before labelling: %s", wait)
            return None
        run_captions(labels, self.work / "captions", batch_size=captions.batch_size, progress=self.progress)
        write_splits(read_manifest(self.work / "captions"), self.work / "splits", seed=self.seed,
                     **dataclasses.asdict(splits))
        dataset = self.path(self.config.get("dataset_dir", "dataset"))
        labeller = self.labeller_folder() or self.work / "annotate" / "labels" / LABELLER_FILE
        agreement = self.work / "annotate" / "validation" / "agreement.json"
        build_dataset(self.work / "splits", dataset, **dataclasses.asdict(build),
                      labeller=labeller if labeller.exists() else None,
                      validation_report=agreement if agreement.is_file() else None, seed=self.seed,
                      progress=self.progress)
        if push.repo_id:
            from builder_scripts.publish.push import push_dataset

            push_dataset(dataset, push.repo_id, private=push.private, revision=push.revision)
        return dataset


def run_pipeline(config_path: Union[str, Path], *, base_dir: Optional[Union[str, Path]] = None,
                 progress: bool = True, overrides: Optional[dict[str, Any]] = None) -> Optional[Path]:
    """Run the chain described by ``config_path`` (top-level keys in ``overrides`` win); returns the dataset."""
    config = {**load_config(config_path), **(overrides or {})}
    return Pipeline(config, base_dir or Path(config_path).resolve().parent, progress=progress).run()


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("run", help="run the whole chain from a config (see builder_scripts/configs/)")
    p.add_argument("--config", required=True, help="pipeline config YAML")
    p.add_argument("--base-dir", help="folder that relative paths in the config are relative to "
                                      "(default: the config file's folder)")
    add_engine_arguments(p, fallback="the config's")
    p.set_defaults(func=lambda a: 0 if run_pipeline(a.config, base_dir=a.base_dir,
                                                    overrides=given_options(EngineSettings, a)) else 3)
