"""Dataset statistics used by the dataset card and the analysis report (paper Table 2 and Fig. 3)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .taxonomy import EMOTIONS, SOURCES


def decoded_rows(ds: Any) -> Iterable[Mapping[str, Any]]:
    """Rows with class names decoded (accepts a datasets.Dataset or a list of dicts)."""
    features = getattr(ds, "features", None)
    for row in ds:
        row = dict(row)
        if features is not None:
            for column in ("source", "emotion", "label_source"):
                if column in features and isinstance(row.get(column), int):
                    row[column] = features[column].int2str(row[column])
        yield row


def composition(ds: Any) -> dict[str, Any]:
    """Per-source clip counts, duration mean/SD/total, modalities present, and emotion counts.

    Works on any split (a `datasets.Dataset` without media columns is enough) or a list of rows.
    """
    durations: dict[str, list[float]] = {s: [] for s in SOURCES}
    audio: Counter = Counter()
    captions: Counter = Counter()
    emotions: dict[str, Counter] = {s: Counter() for s in SOURCES}
    labels: Counter = Counter()
    for row in decoded_rows(ds):
        source = row["source"]
        durations[source].append(float(row["duration"]))
        audio[source] += bool(row.get("has_audio"))
        captions[source] += bool(row.get("caption"))
        emotions[source][row["emotion"]] += 1
        labels[row.get("label_source") or "human"] += 1

    def block(values: list[float], n_audio: int, n_caption: int) -> dict[str, Any]:
        arr = np.asarray(values, dtype=np.float64)
        return {
            "clips": int(arr.size),
            "duration_mean": float(arr.mean()) if arr.size else 0.0,
            "duration_sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "duration_total": float(arr.sum()),
            "with_audio": int(n_audio),
            "with_caption": int(n_caption),
        }

    per_source = {s: block(durations[s], audio[s], captions[s]) for s in SOURCES}
    every = [d for s in SOURCES for d in durations[s]]
    return {
        "per_source": per_source,
        "total": block(every, sum(audio.values()), sum(captions.values())),
        "emotions": {s: {e: int(emotions[s][e]) for e in EMOTIONS} for s in SOURCES},
        "label_sources": dict(labels),
    }


def mean_of_present(values: Iterable[Optional[float]]) -> Optional[float]:
    """The mean of the values that are not None; None when there are none (a statistic nobody measured)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
