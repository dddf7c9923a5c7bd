"""Stage `annotate`: the human-machine labelling loop (`emovid-build annotate export|import|predict|report`).

- ``export IN --out TASKS``: labelling tasks for a sample stratified by source (default 20 %) as
  ``TASKS/tasks.csv`` and ``TASKS/tasks.jsonl`` (clip id, source, preview path, the nine choices).
- ``import IN VOTES... --out OUT``: annotators' answers (CSV/JSONL, columns ``clip_id``, ``annotator``,
  ``label``; extra columns ignored) -> the 2-of-3 rule -> ``emotion``, ``label_source=human``,
  ``human_votes``, ``label_confidence`` (share of agreeing votes). Clips whose votes disagree, tie
  or mostly say ``none`` leave the manifest and go to the rejects with the reason.
- ``finetune IN --out DIR --vlm MODEL``: fine-tunes a video-language model on the human-labelled clips
  (the paper's labeller; see `emovid_datasets.labelling.finetune`) into DIR.
- ``predict IN --out OUT [--labeller DIR]``: labels every clip without a human label with the fine-tuned
  labeller DIR (or a saved feature classifier); without one, trains the offline `FeatureClassifier` on
  the human-labelled clips (or prompts ``--vlm MODEL`` zero-shot), saving it as ``OUT/labeller.skops``.
  ``label_source=model``, ``label_confidence`` = the (calibrated) probability. Batched and resumable.
- ``export --clips low-confidence --below P``: review tasks for the model labels under P; their votes
  replace the model label on ``import``.
- ``report VOTES... --labels OUT --out REPORT``: agreement between validation annotators and the model
  (pairwise Cohen's kappa, Fleiss' kappa, confusion matrices) as JSON and a text table.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from builder_scripts.engine.executors import with_engine
from builder_scripts.engine.manifest import reject, write_manifest, write_rejects
from builder_scripts.engine.runner import StageSummary, exit_status, load_inputs, run_batched_stage
from builder_scripts.engine.stage import ModelStage, Outcome, Resources
from builder_scripts.stages.vlm_options import add_vlm_arguments, model_resources, vlm_settings
from emovid_datasets.atomic import atomic_write_text
from emovid_datasets.taxonomy import VOTE_CHOICES

log = logging.getLogger("emovid.build")
STAGE = "annotate"
LABELLER_FILE = "labeller.skops"
TASK_COLUMNS = ("clip_id", "source", "preview", "choices")
SAMPLE_FILTERS = ("unlabelled", "model", "human", "any", "low-confidence")
DEFAULT_FRACTION = 0.2


def _is_human(row: dict[str, Any]) -> bool:
    return row.get("label_source") == "human" and bool(row.get("emotion"))


def _matches(row: dict[str, Any], which: str, below: Optional[float]) -> bool:
    if which == "unlabelled":
        return not _is_human(row)
    if which == "model":
        return row.get("label_source") == "model"
    if which == "low-confidence":
        return row.get("label_source") == "model" and float(row.get("label_confidence") or 0.0) < below
    return which == "any" or _is_human(row)


def sample_tasks(rows: Sequence[dict[str, Any]], *, fraction: float = DEFAULT_FRACTION, seed: int = 0,
                 which: str = "unlabelled", below: Optional[float] = None) -> list[dict[str, Any]]:
    """A seeded sample of ``fraction`` of each source's clips (at least one per source), as labelling tasks.

    ``which="low-confidence"`` samples the model-labelled clips whose ``label_confidence`` is under ``below``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if which not in SAMPLE_FILTERS:
        raise ValueError(f"unknown sample filter {which!r}; expected one of {SAMPLE_FILTERS}")
    if (which == "low-confidence") != (below is not None):
        raise ValueError("--below P goes with --clips low-confidence (and low-confidence needs --below)")
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: str(r["clip_id"])):
        if _matches(row, which, below):
            by_source.setdefault(str(row.get("source")), []).append(row)
    rng = np.random.default_rng(seed)
    tasks = []
    for source in sorted(by_source):
        pool = by_source[source]
        take = max(1, int(round(fraction * len(pool))))
        for index in sorted(rng.choice(len(pool), size=take, replace=False)):
            row = pool[index]
            tasks.append({"clip_id": row["clip_id"], "source": source, "preview": str(row.get("video_path") or ""),
                          "choices": list(VOTE_CHOICES)})
    return tasks


def export_tasks(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], *, fraction: float = DEFAULT_FRACTION,
                 seed: int = 0, which: str = "unlabelled", below: Optional[float] = None) -> list[dict[str, Any]]:
    """Write ``tasks.csv`` (choices joined by '|') and ``tasks.jsonl`` for a stratified sample; returns the tasks."""
    from emovid_datasets.labelling.votes import csv_text

    tasks = sample_tasks(rows, fraction=fraction, seed=seed, which=which, below=below)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "tasks.csv", csv_text(tasks, TASK_COLUMNS))
    atomic_write_text(out_dir / "tasks.jsonl", "".join(json.dumps(t) + "\n" for t in tasks))
    counts = {s: sum(t["source"] == s for t in tasks) for s in sorted({t["source"] for t in tasks})}
    log.info("annotate export: %d tasks (%s) in %s; collect one row per annotator x clip with columns "
             "clip_id, annotator, label", len(tasks), ", ".join(f"{n} {s}" for s, n in counts.items()), out_dir)
    return tasks


def import_votes(rows: Sequence[dict[str, Any]], vote_files: Sequence[Union[str, Path]], out_dir: Union[str, Path],
                 *, min_agree: int = 2) -> dict[str, int]:
    """Apply the 2-of-3 rule to the votes and write the labelled manifest and the rejects; returns counts."""
    from emovid_datasets.labelling.votes import aggregate_votes, group_votes, read_vote_file

    votes = [v for path in vote_files for v in read_vote_file(path)]
    by_clip = group_votes(votes)
    known = {str(r["clip_id"]) for r in rows}
    rejects = [reject(STAGE, f"votes for a clip that is not in the input manifest ({len(v)} vote(s))",
                      clip_id=clip_id) for clip_id, v in sorted(by_clip.items()) if clip_id not in known]
    out, counts = [], {"labelled": 0, "dropped": 0, "unvoted": 0}
    for row in rows:
        clip_id = str(row["clip_id"])
        if clip_id not in by_clip:
            out.append(row)
            counts["unvoted"] += 1
            continue
        annotators = sorted(by_clip[clip_id])
        result = aggregate_votes([by_clip[clip_id][a] for a in annotators], min_agree=min_agree)
        if not result.kept:
            rejects.append(reject(STAGE, f"votes {list(result.votes)}: {result.reason}", clip_id=clip_id,
                                  origin=row.get("origin")))
            counts["dropped"] += 1
            continue
        # A reviewed model label is replaced: the clip becomes human-labelled.
        out.append({**row, "emotion": result.label, "label_source": "human", "human_votes": list(result.votes),
                    "human_annotators": annotators, "label_confidence": result.confidence, "labeller": None,
                    "label_entropy": None})
        counts["labelled"] += 1
    write_manifest(out_dir, out)
    write_rejects(out_dir, [dict(r, input_id=r["clip_id"]) for r in rejects])
    log.info("annotate import: %d votes from %d file(s): %d clips labelled, %d dropped (see %s), %d without votes",
             len(votes), len(vote_files), counts["labelled"], counts["dropped"], Path(out_dir) / "rejects.parquet",
             counts["unvoted"])
    return counts


def train_feature_labeller(rows: Sequence[dict[str, Any]], *, holdout: float = 0.25, seed: int = 0,
                           progress: bool = True) -> Any:
    """A `FeatureClassifier` trained on the human-labelled rows (clips that cannot be read are skipped)."""
    from emovid_datasets.labelling import FeatureClassifier
    from emovid_datasets.labelling.features import readable_features

    kept, features = readable_features([r for r in rows if _is_human(r)], what="labeller training",
                                       progress=progress)
    if not kept:
        raise ValueError("no readable human-labelled clips to train the labeller on; run `annotate import` first")
    labels = [r["emotion"] for r in kept]
    labeller = FeatureClassifier(seed=seed)
    metrics = labeller.fit_features(features, labels, holdout=holdout, rows=kept)
    if metrics["heldout_accuracy"] is None:
        log.warning("annotate predict: too few human labels per emotion for a held-out accuracy (%s)",
                    metrics["class_counts"])
    else:
        log.info("annotate predict: trained on %d human-labelled clips; held-out accuracy %.3f on %d clips "
                 "(chance %.3f, majority class)", len(labels), metrics["heldout_accuracy"], metrics["heldout_clips"],
                 metrics["chance_accuracy"])
    return labeller


def finetune(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], vlm: str,
             settings: Optional[Any] = None, *, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``vlm`` on the human-labelled ``rows`` into ``out_dir`` (see `labelling.finetune`)."""
    from emovid_datasets.labelling.finetune import FinetuneSettings, finetune_labeller

    return finetune_labeller(rows, out_dir, vlm, settings or FinetuneSettings(), progress=progress)


class LabelStage(ModelStage):
    """`annotate predict` on a batch of clips: human-labelled rows pass through, the model (the labeller) labels
    the rest."""

    name = f"{STAGE} predict"

    def _label(self, clips: list[dict[str, Any]]) -> list[tuple[Any, Optional[float]]]:
        from emovid_datasets.labelling import FeatureClassifier, VLMLabeller
        from emovid_datasets.labelling.features import stored_features
        from emovid_datasets.labelling.labeller import argmax_predictions
        from emovid_datasets.labelling.quality import entropy

        paths = [r["video_path"] for r in clips]
        if isinstance(self.model, VLMLabeller):  # a generative answer: no distribution, so no entropy
            return [(pred, None) for pred in self.model.label(paths)]
        stored = [stored_features(r) for r in clips]
        if isinstance(self.model, FeatureClassifier) and all(f is not None for f in stored):
            proba = self.model.proba_from_features(np.stack(stored))  # measured by `attributes`: no decoding
        else:
            proba = self.model.predict_proba(paths)
        return list(zip(argmax_predictions(proba), (entropy(p) for p in proba)))

    def process_batch(self, clips: list[dict[str, Any]]) -> Outcome:
        from emovid_datasets.media import MediaError

        outcome = Outcome(rows=[dict(r) for r in clips if _is_human(r)])
        todo = [r for r in clips if not _is_human(r)]
        try:
            labelled = [(row, *result) for row, result in zip(todo, self._label(todo))] if todo else []
        except (MediaError, OSError, ValueError) as exc:
            if len(todo) == 1:
                outcome.rejects.append(reject(self.name, f"{type(exc).__name__}: {exc}", clip_id=todo[0]["clip_id"],
                                              origin=todo[0].get("origin")))
                return outcome
            # One unreadable clip must not reject its whole batch: label the clips one by one.
            for row in todo:
                single = self.process_batch([row])
                outcome.rows.extend(single.rows)
                outcome.rejects.extend(single.rejects)
            return outcome
        for row, pred, spread in labelled:
            if pred.emotion is None:
                answer = f" (answer {pred.raw!r})" if pred.raw is not None else ""
                outcome.rejects.append(reject(self.name, f"labeller gave no emotion: {pred.reason}{answer}",
                                              clip_id=row["clip_id"], origin=row.get("origin")))
                continue
            outcome.rows.append({**row, "emotion": pred.emotion, "label_source": "model", "human_votes": [],
                                 "human_annotators": [], "label_confidence": pred.confidence,
                                 "labeller": self.model.name, "label_entropy": spread})
        return outcome


def predict_labels(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], *, labeller: Any = None,
                   load: Optional[Callable[[], Any]] = None, resources: Resources = Resources(),
                   holdout: float = 0.25, seed: int = 0, batch_size: int = 8, progress: bool = True) -> StageSummary:
    """Label every clip without a human label, ``batch_size`` clips a call (resumable); human-labelled rows
    pass through unchanged.

    The labeller is ``labeller`` (loaded), or ``load()`` run once per worker (what the Ray engine wants:
    a GPU actor pool with ``resources``). With neither, loads ``OUT/labeller.skops`` from an earlier run
    or trains and saves a new one.
    """
    out_dir = Path(out_dir)
    if labeller is None and load is None:
        from emovid_datasets.labelling import FeatureClassifier

        saved = out_dir / LABELLER_FILE
        if saved.exists():
            log.info("annotate predict: resuming with the labeller saved in %s", saved)
        else:
            trained = train_feature_labeller(rows, holdout=holdout, seed=seed, progress=progress)
            out_dir.mkdir(parents=True, exist_ok=True)
            trained.save(saved)
        load = functools.partial(FeatureClassifier.load, saved)
    stage = LabelStage(model=labeller, load=load, resources=resources)
    return run_batched_stage(stage, rows, out_dir, batch_size=batch_size, progress=progress)


def agreement_from_files(vote_files: Sequence[Union[str, Path]], labels: Sequence[dict[str, Any]], *,
                         labeller: Any = None, model_name: str = "model") -> dict[str, Any]:
    """Agreement of the validation annotators and the model on the clips they voted on.

    The model's label is the manifest's where ``label_source == model``; with ``labeller`` the other
    voted clips are labelled by it too.
    """
    from emovid_datasets.labelling import aggregate_votes, agreement_report, group_votes, read_vote_file

    by_clip = group_votes(v for path in vote_files for v in read_vote_file(path))
    ratings: dict[str, dict[str, str]] = {}
    for clip_id, votes in by_clip.items():
        for annotator, label in votes.items():
            ratings.setdefault(annotator, {})[clip_id] = label
    rows = {str(r["clip_id"]): r for r in labels}
    model = {c: rows[c]["emotion"] for c in by_clip if c in rows and rows[c].get("label_source") == "model"}
    extra = sorted(c for c in by_clip if c in rows and c not in model)
    if labeller is not None and extra:
        for clip_id, pred in zip(extra, labeller.label([rows[c]["video_path"] for c in extra])):
            if pred.emotion:
                model[clip_id] = pred.emotion
    if not model:
        raise ValueError("none of the voted clips has a model label; pass the predict stage's folder as --labels "
                         "or a saved labeller with --labeller")
    ratings[model_name] = model
    report = agreement_report(ratings, model_sources=[model_name])
    majority = {c: aggregate_votes(list(v.values())) for c, v in by_clip.items()}
    scored = [c for c, m in majority.items() if m.kept and c in model]
    report["model_vs_majority"] = {"items": len(scored), "accuracy": float(np.mean(
        [model[c] == majority[c].label for c in scored])) if scored else None}
    return report


def write_report(report: dict[str, Any], out_dir: Union[str, Path]) -> Path:
    """``agreement.json`` and ``agreement.txt`` in ``out_dir``; returns the text file's path."""
    from emovid_datasets.labelling import format_agreement_table

    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "agreement.json", json.dumps(report, indent=2))
    text = format_agreement_table(report)
    mv = report.get("model_vs_majority") or {}
    if mv.get("accuracy") is not None:
        text += f"\nModel vs the annotators' 2-of-3 label: accuracy {mv['accuracy']:.3f} on {mv['items']} clips\n"
    atomic_write_text(out_dir / "agreement.txt", text)
    return out_dir / "agreement.txt"


def _cmd_export(args: argparse.Namespace) -> int:
    # Low-confidence review sends every such clip back to people unless a fraction is asked for.
    fraction = args.fraction if args.fraction is not None else (1.0 if args.clips == "low-confidence"
                                                                 else DEFAULT_FRACTION)
    export_tasks(load_inputs([args.input]), args.out, fraction=fraction, seed=args.seed, which=args.clips,
                 below=args.below)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    import_votes(load_inputs([args.input]), args.votes, args.out, min_agree=args.min_agree)
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from emovid_datasets.labelling.finetune import FinetuneSettings
    from emovid_datasets.options import dataclass_from_args

    finetune(load_inputs([args.input]), args.out, args.vlm, dataclass_from_args(FinetuneSettings, args))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.labeller and args.vlm:
        raise ValueError("give --labeller DIR (a trained labeller) or --vlm MODEL (zero-shot), not both")
    load = None
    if args.labeller:
        from emovid_datasets.labelling.saved import load_labeller

        load = functools.partial(load_labeller, args.labeller, device=args.device, batch_size=args.batch_size)
    elif args.vlm:
        from emovid_datasets.labelling import VLMLabeller

        load = functools.partial(VLMLabeller, args.vlm, **vlm_settings(args))
    summary = predict_labels(load_inputs([args.input]), args.out, load=load, resources=model_resources(args),
                             holdout=args.holdout, seed=args.seed, batch_size=args.batch_size)
    return exit_status(summary)


def _cmd_report(args: argparse.Namespace) -> int:
    labeller = None
    if args.labeller:
        from emovid_datasets.labelling.saved import load_labeller

        labeller = load_labeller(args.labeller)
    report = agreement_from_files(args.votes, load_inputs([args.labels]), labeller=labeller)
    path = write_report(report, args.out)
    print(path.read_text(), end="")
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    from emovid_datasets.labelling.finetune import FinetuneSettings
    from emovid_datasets.options import add_dataclass_arguments

    p = subparsers.add_parser(STAGE, help="human votes, the 2-of-3 rule, model labels and agreement statistics")
    sub = p.add_subparsers(dest="annotate_command", required=True, metavar="ACTION")

    e = sub.add_parser("export", help="write labelling tasks (CSV + JSONL) for a stratified sample")
    e.add_argument("input", help="stage folder whose manifest lists the clips")
    e.add_argument("--out", required=True, help="folder for tasks.csv and tasks.jsonl")
    e.add_argument("--fraction", type=float, help=f"share of each source's clips (default {DEFAULT_FRACTION}; "
                                                  f"1 with --clips low-confidence)")
    e.add_argument("--clips", choices=SAMPLE_FILTERS, default="unlabelled",
                   help="which clips to sample: unlabelled (default), model-labelled (validation set), human, any, "
                        "or low-confidence (model labels under --below, for review)")
    e.add_argument("--below", type=float, help="with --clips low-confidence: the label_confidence threshold")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_cmd_export)

    i = sub.add_parser("import", help="apply the 2-of-3 rule to annotators' votes")
    i.add_argument("input", help="stage folder whose manifest lists the clips")
    i.add_argument("votes", nargs="+", help="vote files (.csv/.jsonl): clip_id, annotator, label per row")
    i.add_argument("--out", required=True, help="output stage folder")
    i.add_argument("--min-agree", type=int, default=2, help="votes that must agree (default 2)")
    i.set_defaults(func=_cmd_import)

    f = sub.add_parser("finetune", help="fine-tune a video-language model on the human labels (the paper's labeller)")
    f.add_argument("input", help="stage folder written by `annotate import`")
    f.add_argument("--out", required=True, help="folder for the adapter, the head and labeller.json")
    f.add_argument("--vlm", required=True, metavar="MODEL",
                   help="transformers chat video model (local path or hub id), or 'tiny' for an offline random one")
    add_dataclass_arguments(f, FinetuneSettings)
    f.set_defaults(func=_cmd_finetune)

    r = sub.add_parser("predict", help="label every clip without a human label with a model")
    r.add_argument("input", help="stage folder written by `annotate import`")
    r.add_argument("--out", required=True, help="output stage folder (a trained feature classifier is saved here)")
    r.add_argument("--labeller", help="a trained labeller: a folder from `annotate finetune` or a labeller.skops")
    r.add_argument("--batch-size", type=int, default=8, help="clips per labeller call (default 8)")
    r.add_argument("--device", help="torch device for --labeller (default: cuda when available)")
    add_vlm_arguments(r, "label zero-shot")
    r.add_argument("--holdout", type=float, default=0.25, help="share of human labels held out for accuracy")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=with_engine(_cmd_predict))

    t = sub.add_parser("report", help="agreement (Cohen's/Fleiss' kappa) of validation annotators and the model")
    t.add_argument("votes", nargs="+", help="the validation annotators' vote files")
    t.add_argument("--labels", required=True, help="stage folder with the model labels (from `annotate predict`)")
    t.add_argument("--labeller", help="saved labeller to label voted clips that have no model label")
    t.add_argument("--out", required=True, help="folder for agreement.json and agreement.txt")
    t.set_defaults(func=_cmd_report)
