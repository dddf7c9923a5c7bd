"""The EA evaluator: an emotion classifier kept apart from the labeller, so EA cannot flatter itself.

The build's label model learns from every human label, benchmark clips included, so it must not
score generated benchmark videos. `train_evaluator` fits a separate feature classifier on the
human-labelled clips of the train split only, and stores it under ``DATASET/evaluator/`` with
``evaluator.json``: its sha256, the clip ids it learned from, and its EA-8/EA-2 on the real
benchmark clips, the ceiling that real video reaches with this evaluator.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..atomic import atomic_write_text
from ..labelling.features import readable_features
from ..records import read_json_file
from .metrics import argmax_emotions, ea_scores

log = logging.getLogger("emovid")
EVALUATOR_DIR = "evaluator"
EVALUATOR_MODEL = "evaluator.skops"
EVALUATOR_RECORD = "evaluator.json"
REFERENCE_NAME = "real benchmark videos (evaluator ceiling)"


class LeakingClassifierError(ValueError):
    """An EA classifier that learned from benchmark clips: its EA would be inflated."""


def train_evaluator(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, *, seed: int = 0,
                    progress: bool = True) -> Optional[dict[str, Any]]:
    """Fit the evaluator on the human-labelled train clips of ``rows`` (with ``split``), score the benchmark
    clips, write ``out_dir/evaluator.skops`` and ``evaluator.json``; returns the record (None when there is
    nothing to train on)."""
    from ..labelling.labeller import FeatureClassifier
    from ..labelling.saved import labeller_sha256

    out_dir = Path(out_dir)
    if out_dir.is_dir():  # an evaluator of an earlier build would not match this build's splits
        shutil.rmtree(out_dir)
    train = [r for r in rows if r.get("split") == "train" and r.get("label_source") == "human" and r.get("emotion")]
    bench = [r for r in rows if r.get("split") == "benchmark"]
    if len({r["emotion"] for r in train}) < 2:
        log.warning("evaluator: fewer than two emotions among the human-labelled train clips; no EA evaluator built")
        return None
    train, x_train = readable_features(train, what="evaluator training", progress=progress)
    leaked = {str(r["clip_id"]) for r in train} & {str(r["clip_id"]) for r in bench}
    if leaked:  # splits guarantee this never happens; a broken manifest must not produce a leaking evaluator
        raise LeakingClassifierError(f"evaluator: {len(leaked)} clip(s) are in both splits, e.g. {min(leaked)}")
    model = FeatureClassifier(seed=seed)
    model.fit_features(x_train, [r["emotion"] for r in train], rows=train)
    model.save(out_dir / EVALUATOR_MODEL)
    bench, x_bench = readable_features(bench, what="evaluator benchmark scores", progress=progress)
    reference = None
    if bench:
        predicted = argmax_emotions(model.proba_from_features(x_bench))
        reference = {"n": len(bench), **ea_scores(predicted, [r["emotion"] for r in bench])}
    record = {"classifier": model.name, "sha256": labeller_sha256(out_dir / EVALUATOR_MODEL),
              "trained_on": "human-labelled clips of the train split", "train_clip_ids": sorted(
                  str(r["clip_id"]) for r in train), "benchmark_clips": len(bench), "real_benchmark": reference,
              "heldout_accuracy": model.metrics.get("heldout_accuracy")}
    atomic_write_text(out_dir / EVALUATOR_RECORD, json.dumps(record, indent=2))
    if reference:
        log.info("evaluator: trained on %d human-labelled train clips; EA-8 %.1f%%, EA-2 %.1f%% on the %d real "
                 "benchmark clips (the ceiling for generated video); sha256 %s", len(train),
                 reference["ea8"]["value"], reference["ea2"]["value"], len(bench), record["sha256"][:12])
    return record


def evaluator_record(dataset_dir: str | os.PathLike) -> Optional[dict[str, Any]]:
    """``DATASET/evaluator/evaluator.json`` of a local dataset folder, or None when it has none."""
    path = Path(dataset_dir) / EVALUATOR_DIR / EVALUATOR_RECORD
    return read_json_file(path) if path.is_file() else None


def check_not_leaking(classifier: Any, spec: str, benchmark_ids: Sequence[str]) -> Optional[int]:
    """Refuse (LeakingClassifierError) a classifier whose metadata says it learned from benchmark clips.

    Returns how many clips it declares it learned from, or None when it declares nothing (it cannot be checked).
    """
    from ..labelling.saved import training_clip_ids

    seen = training_clip_ids(classifier)
    if seen is None:
        log.warning("EA classifier %s does not list the clips it was trained on; it cannot be checked for "
                    "benchmark leakage", spec)
        return None
    leaked = sorted(seen & {str(c) for c in benchmark_ids})
    if leaked:
        raise LeakingClassifierError(
            f"EA classifier {spec} was trained on {len(leaked)} benchmark clip(s) (e.g. {leaked[0]}), so its EA-2/EA-8 "
            f"would be inflated; use the dataset's evaluator ({EVALUATOR_DIR}/) or one trained without them")
    return len(seen)
