"""Stage `annotate`: the human-machine labelling loop (`emovid-build annotate export|import|predict|report`).

- ``export IN --out TASKS``: labelling tasks for a sample stratified by source (default 20 %) as
  ``TASKS/tasks.csv`` and ``TASKS/tasks.jsonl`` (clip id, source, preview path, the nine choices).
- ``import IN VOTES... --out OUT``: annotators' answers (CSV/JSONL, columns ``clip_id``, ``annotator``,
  ``label``; extra columns ignored) -> the 2-of-3 rule -> ``emotion``, ``label_source=human``,
  ``human_votes``, ``label_confidence`` (share of agreeing votes). Clips whose votes disagree, tie
  or mostly say ``none`` leave the manifest and go to the rejects with the reason.
- ``predict IN --out OUT``: trains the offline `FeatureClassifier` on the human-labelled clips (or uses
  ``--vlm MODEL``), saves it as ``OUT/labeller.skops`` (+ ``.json`` with held-out accuracy) and labels
  every other clip (``label_source=model``, ``label_confidence`` = probability). Resumable.
- ``report VOTES... --labels OUT --out REPORT``: agreement between validation annotators and the model
  (pairwise Cohen's kappa, Fleiss' kappa, confusion matrices) as JSON and a text table.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from emovid_datasets.atomic import atomic_write_text
from emovid_datasets.taxonomy import VOTE_CHOICES

from .manifest import reject, write_manifest, write_rejects
from .runner import Outcome, StageSummary, load_inputs, run_stage
from .vlm_options import add_vlm_arguments, vlm_settings

log = logging.getLogger("emovid.build")
STAGE = "annotate"
LABELLER_FILE = "labeller.skops"
TASK_COLUMNS = ("clip_id", "source", "preview", "choices")
SAMPLE_FILTERS = ("unlabelled", "model", "human", "any")


def _is_human(row: dict[str, Any]) -> bool:
    return row.get("label_source") == "human" and bool(row.get("emotion"))


def _matches(row: dict[str, Any], which: str) -> bool:
    if which == "unlabelled":
        return not _is_human(row)
    if which == "model":
        return row.get("label_source") == "model"
    return which == "any" or _is_human(row)


def sample_tasks(rows: Sequence[dict[str, Any]], *, fraction: float = 0.2, seed: int = 0,
                 which: str = "unlabelled") -> list[dict[str, Any]]:
    """A seeded sample of ``fraction`` of each source's clips (at least one per source), as labelling tasks."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if which not in SAMPLE_FILTERS:
        raise ValueError(f"unknown sample filter {which!r}; expected one of {SAMPLE_FILTERS}")
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: str(r["clip_id"])):
        if _matches(row, which):
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


def export_tasks(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], *, fraction: float = 0.2,
                 seed: int = 0, which: str = "unlabelled") -> list[dict[str, Any]]:
    """Write ``tasks.csv`` (choices joined by '|') and ``tasks.jsonl`` for a stratified sample; returns the tasks."""
    from emovid_datasets.labelling.votes import csv_text

    tasks = sample_tasks(rows, fraction=fraction, seed=seed, which=which)
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
        out.append({**row, "emotion": result.label, "label_source": "human", "human_votes": list(result.votes),
                    "label_confidence": result.confidence})
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
    from emovid_datasets.labelling import FeatureClassifier, clip_features
    from emovid_datasets.media import MediaError

    features, labels = [], []
    human = [r for r in rows if _is_human(r)]
    for row in tqdm(human, desc="labeller features", unit="clip", disable=not progress):
        try:
            features.append(clip_features(row["video_path"]))
        except (MediaError, OSError) as exc:
            log.warning("annotate predict: %s left out of training: %s", row["clip_id"], exc)
            continue
        labels.append(row["emotion"])
    if not labels:
        raise ValueError("no readable human-labelled clips to train the labeller on; run `annotate import` first")
    labeller = FeatureClassifier(seed=seed)
    metrics = labeller.fit_features(np.stack(features), labels, holdout=holdout)
    if metrics["heldout_accuracy"] is None:
        log.warning("annotate predict: too few human labels per emotion for a held-out accuracy (%s)",
                    metrics["class_counts"])
    else:
        log.info("annotate predict: trained on %d human-labelled clips; held-out accuracy %.3f on %d clips "
                 "(chance %.3f, majority class)", len(labels), metrics["heldout_accuracy"], metrics["heldout_clips"],
                 metrics["chance_accuracy"])
    return labeller


def predict_labels(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], *, labeller: Any = None,
                   holdout: float = 0.25, seed: int = 0, progress: bool = True) -> StageSummary:
    """Label every clip without a human label (resumable); human-labelled rows pass through unchanged.

    Without ``labeller``, loads ``OUT/labeller.skops`` from an earlier run or trains and saves a new one.
    """
    out_dir = Path(out_dir)
    if labeller is None:
        from emovid_datasets.labelling import FeatureClassifier

        saved = out_dir / LABELLER_FILE
        if saved.exists():
            labeller = FeatureClassifier.load(saved)
            log.info("annotate predict: resuming with the labeller saved in %s", saved)
        else:
            labeller = train_feature_labeller(rows, holdout=holdout, seed=seed, progress=progress)
            out_dir.mkdir(parents=True, exist_ok=True)
            labeller.save(saved)

    def work(row: dict[str, Any]) -> Outcome:
        if _is_human(row):
            return Outcome(rows=[dict(row)])
        pred = labeller.label([row["video_path"]])[0]
        if pred.emotion is None:
            answer = f" (answer {pred.raw!r})" if pred.raw is not None else ""
            return Outcome(rejects=[reject(STAGE, f"labeller gave no emotion: {pred.reason}{answer}",
                                           clip_id=row["clip_id"], origin=row.get("origin"))])
        return Outcome(rows=[{**row, "emotion": pred.emotion, "label_source": "model", "human_votes": [],
                              "label_confidence": pred.confidence, "labeller": labeller.name}])

    return run_stage(f"{STAGE} predict", rows, work, out_dir, progress=progress)


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


def _make_vlm_labeller(args: argparse.Namespace) -> Any:
    from emovid_datasets.labelling import VLMLabeller

    return VLMLabeller(args.vlm, **vlm_settings(args))


def _cmd_export(args: argparse.Namespace) -> int:
    export_tasks(load_inputs([args.input]), args.out, fraction=args.fraction, seed=args.seed, which=args.clips)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    import_votes(load_inputs([args.input]), args.votes, args.out, min_agree=args.min_agree)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    labeller = _make_vlm_labeller(args) if args.vlm else None
    predict_labels(load_inputs([args.input]), args.out, labeller=labeller, holdout=args.holdout, seed=args.seed)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    labeller = None
    if args.labeller:
        from emovid_datasets.labelling import FeatureClassifier

        labeller = FeatureClassifier.load(args.labeller)
    report = agreement_from_files(args.votes, load_inputs([args.labels]), labeller=labeller)
    path = write_report(report, args.out)
    print(path.read_text(), end="")
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="human votes, the 2-of-3 rule, model labels and agreement statistics")
    sub = p.add_subparsers(dest="annotate_command", required=True, metavar="ACTION")

    e = sub.add_parser("export", help="write labelling tasks (CSV + JSONL) for a stratified sample")
    e.add_argument("input", help="stage folder whose manifest lists the clips")
    e.add_argument("--out", required=True, help="folder for tasks.csv and tasks.jsonl")
    e.add_argument("--fraction", type=float, default=0.2, help="share of each source's clips (default 0.2)")
    e.add_argument("--clips", choices=SAMPLE_FILTERS, default="unlabelled",
                   help="which clips to sample: unlabelled (default), model-labelled (validation set), human, any")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_cmd_export)

    i = sub.add_parser("import", help="apply the 2-of-3 rule to annotators' votes")
    i.add_argument("input", help="stage folder whose manifest lists the clips")
    i.add_argument("votes", nargs="+", help="vote files (.csv/.jsonl): clip_id, annotator, label per row")
    i.add_argument("--out", required=True, help="output stage folder")
    i.add_argument("--min-agree", type=int, default=2, help="votes that must agree (default 2)")
    i.set_defaults(func=_cmd_import)

    r = sub.add_parser("predict", help="label every clip without a human label with a model")
    r.add_argument("input", help="stage folder written by `annotate import`")
    r.add_argument("--out", required=True, help="output stage folder (the labeller is saved here)")
    add_vlm_arguments(r, "label")
    r.add_argument("--holdout", type=float, default=0.25, help="share of human labels held out for accuracy")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_cmd_predict)

    t = sub.add_parser("report", help="agreement (Cohen's/Fleiss' kappa) of validation annotators and the model")
    t.add_argument("votes", nargs="+", help="the validation annotators' vote files")
    t.add_argument("--labels", required=True, help="stage folder with the model labels (from `annotate predict`)")
    t.add_argument("--labeller", help="saved labeller to label voted clips that have no model label")
    t.add_argument("--out", required=True, help="folder for agreement.json and agreement.txt")
    t.set_defaults(func=_cmd_report)
