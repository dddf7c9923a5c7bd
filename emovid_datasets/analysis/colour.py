"""Colour versus emotion (paper §5, Fig. 5): group means, one-way ANOVA with eta squared, positive ratio per bin.

Colourfulness and brightness are the paper's rounded per-clip values (mean HSV S and V, one decimal);
hue is the circular mean in degrees, so its group means are circular means and its ANOVA (on degrees)
is indicative only.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ..taxonomy import AROUSAL_GROUPS, EMOTIONS, VALENCES, arousal_of, valence_of

ATTRIBUTES: tuple[str, ...] = ("colorfulness", "brightness", "hue")
# The paper's 11 levels of a one-decimal value in [0, 1].
BINS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def one_way_anova(groups: Sequence[Sequence[float]]) -> dict[str, Any]:
    """F, p, eta squared (SS_between / SS_total) and degrees of freedom over the non-empty groups.

    F and p are null when fewer than two groups have data, or when there is no within-group spread.
    """
    arrays = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    values = np.concatenate(arrays) if arrays else np.zeros(0)
    k, n = len(arrays), values.size
    result: dict[str, Any] = {"groups": k, "n": int(n), "df_between": k - 1, "df_within": n - k,
                              "F": None, "p": None, "eta_squared": None}
    if k < 2 or n <= k:
        return result
    grand = values.mean()
    ss_between = float(sum(a.size * (a.mean() - grand) ** 2 for a in arrays))
    ss_within = float(sum(((a - a.mean()) ** 2).sum() for a in arrays))
    ss_total = ss_between + ss_within
    if ss_total > 0:
        result["eta_squared"] = ss_between / ss_total
    if ss_within > 0:
        f = (ss_between / (k - 1)) / (ss_within / (n - k))
        result["F"] = f
        result["p"] = float(sps.f.sf(f, k - 1, n - k))
    return result


def circular_mean_deg(degrees: Sequence[float]) -> float | None:
    """Unweighted circular mean of angles in degrees, in [0, 360); null for no data."""
    if not len(degrees):
        return None
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return (math.degrees(math.atan2(np.sin(rad).sum(), np.cos(rad).sum())) + 360.0) % 360.0


def _group_keys(emotion: str) -> dict[str, str]:
    return {"emotion": emotion, "valence": valence_of(emotion), "arousal": arousal_of(emotion)}


def _groups(grouping: str) -> tuple[str, ...]:
    return {"emotion": EMOTIONS, "valence": VALENCES, "arousal": AROUSAL_GROUPS}[grouping]


def colour_by_group(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per grouping (emotion, valence, arousal): n and mean of each attribute per group, and an ANOVA per attribute."""
    out: dict[str, Any] = {}
    for grouping in ("emotion", "valence", "arousal"):
        values = {g: {a: [] for a in ATTRIBUTES} for g in _groups(grouping)}
        for row in rows:
            group = _group_keys(row["emotion"])[grouping]
            for a in ATTRIBUTES:
                if row.get(a) is not None:
                    values[group][a].append(float(row[a]))
        means = {}
        for g, attrs in values.items():
            means[g] = {"n": len(attrs["colorfulness"])}
            for a, vals in attrs.items():
                means[g][a] = circular_mean_deg(vals) if a == "hue" else (float(np.mean(vals)) if vals else None)
        anova = {a: one_way_anova([values[g][a] for g in values]) for a in ATTRIBUTES}
        out[grouping] = {"means": means, "anova": anova}
    return out


def positive_ratio_by_bin(values: Sequence[float], valences: Sequence[str]) -> list[dict[str, Any]]:
    """For each of the 11 one-decimal bins: clips, positive clips and positive / total (null when empty)."""
    totals = {b: 0 for b in BINS}
    positives = {b: 0 for b in BINS}
    for value, valence in zip(values, valences):
        b = round(min(max(float(value), 0.0), 1.0), 1)
        totals[b] += 1
        positives[b] += valence == "positive"
    return [{"bin": b, "clips": totals[b], "positive": positives[b],
             "ratio": positives[b] / totals[b] if totals[b] else None} for b in BINS]


def colour_analysis(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Everything colour-related the report shows: group means + ANOVA, and Fig. 5 ratios per bin."""
    valences = [valence_of(r["emotion"]) for r in rows]
    return {
        "groups": colour_by_group(rows),
        "positive_ratio": {a: positive_ratio_by_bin([r[a] for r in rows], valences)
                           for a in ("colorfulness", "brightness")},
    }
