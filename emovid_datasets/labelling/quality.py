"""What a careful labeller needs around its model: soft targets from the votes, a stratified held-out
split, class-balancing weights, temperature calibration, and the metrics that say how good it is.

Both label models (the feature classifier and the fine-tuned VLM) use these, so their
`metrics` mean the same thing and the card can put them next to each other.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..taxonomy import EMOTIONS, VOTE_CHOICES
from .agreement import cohen_kappa

ECE_BINS = 15


def vote_target(row: Mapping[str, Any]) -> np.ndarray:
    """The clip's soft target over EMOTIONS: the share of its emotion votes (``none`` votes left out).

    Two votes for fear and one for sadness give 2/3 and 1/3. A clip without votes gets a one-hot
    target on its ``emotion``.
    """
    target = np.zeros(len(EMOTIONS), dtype=np.float64)
    for vote in row.get("human_votes") or []:
        if vote in EMOTIONS:
            target[EMOTIONS.index(vote)] += 1
    if target.sum() == 0:
        target[EMOTIONS.index(row["emotion"])] = 1.0
    return target / target.sum()


def stratified_holdout(rows: Sequence[Mapping[str, Any]], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train clip ids, held-out clip ids): ``fraction`` of each (source, emotion) cell held out, seeded.

    A cell of one clip stays in training; a cell of two or more gives at least one held-out clip.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    cells: dict[tuple[str, str], list[str]] = {}
    for row in sorted(rows, key=lambda r: str(r["clip_id"])):
        cells.setdefault((str(row.get("source")), str(row["emotion"])), []).append(str(row["clip_id"]))
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for key in sorted(cells):
        ids = cells[key]
        take = 0 if fraction == 0 or len(ids) < 2 else min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
        held.update(ids[i] for i in rng.permutation(len(ids))[:take])
    ordered = [str(r["clip_id"]) for r in sorted(rows, key=lambda r: str(r["clip_id"]))]
    return [c for c in ordered if c not in held], [c for c in ordered if c in held]


def balanced_weights(labels: Sequence[str]) -> np.ndarray:
    """Per-example weights n / (k * count(label)), scikit-learn's "balanced" rule: every class weighs the same."""
    counts = {e: labels.count(e) for e in set(labels)}
    return np.array([len(labels) / (len(counts) * counts[y]) for y in labels], dtype=np.float64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def entropy(p: np.ndarray) -> float:
    """Shannon entropy of one probability row, in nats (0: certain; log 8: uniform over the emotions)."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T > 0 that minimises the cross-entropy of softmax(logits / T) against ``targets``.

    ``targets`` are (N, 8) distributions (soft or one-hot). One scalar, so the ranking, and with it the
    accuracy, is unchanged (Guo et al. 2017). Searched over log T in [-4, 4].
    """
    from scipy.optimize import minimize_scalar

    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if len(logits) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return float(-(targets * np.log(softmax(logits, math.exp(log_t)) + 1e-12)).sum(axis=1).mean())

    return float(math.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))


def expected_calibration_error(proba: np.ndarray, labels: Sequence[str], bins: int = ECE_BINS) -> Optional[float]:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by their size."""
    proba = np.asarray(proba, dtype=np.float64)
    if len(proba) == 0:
        return None
    confidence = proba.max(axis=1)
    correct = np.array([EMOTIONS[int(i)] == y for i, y in zip(proba.argmax(axis=1), labels)], dtype=np.float64)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum(abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).sum()
                     for b in range(bins) if (which == b).any()) / len(proba))


def _kappa(a: Sequence[str], b: Sequence[str]) -> Optional[float]:
    if not a:
        return None
    value = cohen_kappa(a, b)
    return None if math.isnan(value) else value


def labeller_metrics(rows: Sequence[Mapping[str, Any]], proba: np.ndarray, *, train_labels: Sequence[str],
                     raw_proba: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Held-out quality of a label model: accuracy and chance, macro-F1, accuracy per source, Cohen's kappa
    against each annotator and against the human majority, and ECE (before calibration from ``raw_proba``).

    ``rows`` are the held-out clips (``emotion`` = the human majority, ``human_votes`` with
    ``human_annotators``), ``proba`` the model's (calibrated) probabilities for them.
    """
    from sklearn.metrics import f1_score

    proba = np.asarray(proba, dtype=np.float64)
    truth = [str(r["emotion"]) for r in rows]
    predicted = [EMOTIONS[int(i)] for i in proba.argmax(axis=1)] if len(rows) else []
    majority = max(set(train_labels), key=lambda e: (list(train_labels).count(e), e)) if train_labels else None
    per_source: dict[str, dict[str, Any]] = {}
    for row, p, y in zip(rows, predicted, truth):
        cell = per_source.setdefault(str(row.get("source")), {"clips": 0, "correct": 0})
        cell["clips"] += 1
        cell["correct"] += int(p == y)
    annotators: dict[str, tuple[list[str], list[str]]] = {}
    for row, p in zip(rows, predicted):
        for name, vote in zip(row.get("human_annotators") or [], row.get("human_votes") or []):
            if vote in VOTE_CHOICES:
                pair = annotators.setdefault(str(name), ([], []))
                pair[0].append(vote)
                pair[1].append(p)
    n = len(rows)
    return {
        "heldout_clips": n,
        "heldout_accuracy": float(np.mean([p == y for p, y in zip(predicted, truth)])) if n else None,
        "chance_accuracy": float(np.mean([y == majority for y in truth])) if n else None,
        "uniform_chance": 1.0 / len(EMOTIONS),
        "macro_f1": float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0))
        if n else None,
        "accuracy_per_source": {s: c["correct"] / c["clips"] for s, c in sorted(per_source.items())},
        "kappa_vs_majority": _kappa(truth, predicted),
        "kappa_vs_annotators": {a: _kappa(v, p) for a, (v, p) in sorted(annotators.items())},
        "ece_before_calibration": expected_calibration_error(raw_proba if raw_proba is not None else proba, truth),
        "ece_after_calibration": expected_calibration_error(proba, truth),
    }
