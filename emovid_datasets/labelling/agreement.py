"""Agreement between label sources (annotators and the model): Cohen's and Fleiss' kappa, confusions.

EmoVid validates its model labels on a 1 % set labelled by three more people: pairwise Cohen's
kappa over every pair of the four sources, with human-human and human-model kappas compared.
Cohen's kappa comes from scikit-learn; Fleiss' kappa is computed here (Fleiss 1971).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from ..stats import mean_of_present
from ..taxonomy import VOTE_CHOICES

# Landis & Koch (1977) strength of agreement, upper bounds inclusive.
LANDIS_KOCH: tuple[tuple[float, str], ...] = (
    (0.0, "poor"), (0.20, "slight"), (0.40, "fair"), (0.60, "moderate"), (0.80, "substantial"),
    (math.inf, "almost perfect"),
)


def strength(kappa: float | None) -> str:
    """Landis-Koch wording for a kappa value ('undefined' for NaN/None)."""
    if kappa is None or math.isnan(kappa):
        return "undefined"
    return next(word for bound, word in LANDIS_KOCH if kappa <= bound)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Unweighted Cohen's kappa of two raters over the same items; NaN when chance agreement is 1."""
    if len(a) != len(b) or not a:
        raise ValueError(f"Cohen's kappa needs two equally long, non-empty rating lists ({len(a)} vs {len(b)})")
    if len(set(a) | set(b)) == 1:
        return float("nan")
    return float(cohen_kappa_score(list(a), list(b)))


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa from an (items x categories) table of counts; every item needs the same number of raters."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError("Fleiss' kappa needs a non-empty (items x categories) count table")
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError(f"Fleiss' kappa needs the same number (>= 2) of ratings per item, got {sorted(set(raters))}")
    n, items = raters[0], table.shape[0]
    p_item = ((table * (table - 1)).sum(axis=1)) / (n * (n - 1))
    p_bar = p_item.mean()
    p_cat = table.sum(axis=0) / (items * n)
    p_e = float((p_cat ** 2).sum())
    if p_e == 1.0:
        return float("nan")
    return float((p_bar - p_e) / (1 - p_e))


def count_table(ratings: Sequence[Sequence[str]], categories: Sequence[str]) -> np.ndarray:
    """Per-item rating lists -> the (items x categories) count table Fleiss' kappa takes."""
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(ratings), len(categories)), dtype=np.int64)
    for row, item in enumerate(ratings):
        for label in item:
            table[row, index[label]] += 1
    return table


def _categories(labels: set[str]) -> list[str]:
    known = [c for c in VOTE_CHOICES if c in labels]
    return known + sorted(labels - set(known))


def agreement_report(ratings: Mapping[str, Mapping[str, str]], *, model_sources: Sequence[str] = ()) -> dict[str, Any]:
    """Pairwise Cohen's kappa, Fleiss' kappa and confusion matrices for ``source -> {item: label}``.

    Pairs use the items both sources rated; Fleiss' kappa uses the items every source rated.
    Sources named in ``model_sources`` are machines; the rest are people.
    """
    sources = list(ratings)
    if len(sources) < 2:
        raise ValueError(f"agreement needs at least two sources, got {sources}")
    unknown = [m for m in model_sources if m not in ratings]
    if unknown:
        raise ValueError(f"model source(s) {unknown} have no ratings")
    categories = _categories({label for r in ratings.values() for label in r.values()})
    pairs = []
    for a, b in itertools.combinations(sources, 2):
        items = sorted(set(ratings[a]) & set(ratings[b]))
        ya, yb = [ratings[a][i] for i in items], [ratings[b][i] for i in items]
        kappa = cohen_kappa(ya, yb) if items else float("nan")
        kind = "human-model" if (a in model_sources) != (b in model_sources) else (
            "model-model" if a in model_sources else "human-human")
        pairs.append({
            "a": a, "b": b, "kind": kind, "items": len(items),
            "observed_agreement": float(np.mean([x == y for x, y in zip(ya, yb)])) if items else None,
            "kappa": _finite(kappa), "strength": strength(kappa),
            "confusion": {"labels": categories,
                          "matrix": confusion_matrix(ya, yb, labels=categories).tolist() if items else []},
        })
    common = sorted(set.intersection(*(set(r) for r in ratings.values())))
    fleiss = fleiss_kappa(count_table([[ratings[s][i] for s in sources] for i in common], categories)) \
        if common else float("nan")
    summary = {kind: mean_of_present([p["kappa"] for p in pairs if p["kind"] == kind])
               for kind in ("human-human", "human-model")}
    hh, hm = summary["human-human"], summary["human-model"]
    return {
        "sources": sources, "model_sources": list(model_sources), "categories": categories,
        "pairs": pairs,
        "fleiss": {"kappa": _finite(fleiss), "strength": strength(fleiss), "items": len(common),
                   "sources": sources},
        "mean_kappa": {**summary, "all_pairs_light": mean_of_present([p["kappa"] for p in pairs])},
        "human_model_gap": None if hh is None or hm is None else hh - hm,
        "human_model_gap_relative": None if not hh or hm is None else (hh - hm) / abs(hh),
    }


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_agreement_table(report: Mapping[str, Any], *, confusions: bool = True) -> str:
    """The agreement report as a plain-text table a person can read."""
    width = max(len(f"{p['a']} / {p['b']}") for p in report["pairs"])
    lines = [f"Agreement between {len(report['sources'])} sources: {', '.join(report['sources'])}"
             + (f" (model: {', '.join(report['model_sources'])})" if report["model_sources"] else ""), "",
             f"{'pair':<{width}}  {'kind':<11}  {'items':>5}  {'agree':>6}  {'kappa':>6}  strength"]
    for p in report["pairs"]:
        lines.append(f"{p['a'] + ' / ' + p['b']:<{width}}  {p['kind']:<11}  {p['items']:>5}  "
                     f"{_fmt(p['observed_agreement']):>6}  {_fmt(p['kappa']):>6}  {p['strength']}")
    f, m = report["fleiss"], report["mean_kappa"]
    lines += ["", f"Fleiss' kappa over {f['items']} items rated by all sources: {_fmt(f['kappa'])} ({f['strength']})",
              f"Mean pairwise kappa (Light's): {_fmt(m['all_pairs_light'])}; human-human {_fmt(m['human-human'])}, "
              f"human-model {_fmt(m['human-model'])}"]
    if report["human_model_gap_relative"] is not None:
        lines.append(f"Human-model gap: {_fmt(report['human_model_gap'])} "
                     f"({100 * report['human_model_gap_relative']:.1f} % of the human-human kappa)")
    if confusions:
        for p in report["pairs"]:
            labels = p["confusion"]["labels"]
            if not p["confusion"]["matrix"]:
                continue
            cell = max(4, *(len(x) for x in labels))
            lines += ["", f"Confusion {p['a']} (rows) x {p['b']} (columns)",
                      " " * cell + " " + " ".join(f"{x[:cell]:>{cell}}" for x in labels)]
            for label, row in zip(labels, p["confusion"]["matrix"]):
                lines.append(f"{label:<{cell}} " + " ".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines) + "\n"
