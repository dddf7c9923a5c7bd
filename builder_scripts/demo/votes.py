"""Simulated annotators for the demo: votes drawn around each clip's generated ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from builder_scripts.engine.manifest import read_rows
from builder_scripts.engine.pipeline import VoteRequest
from emovid_datasets.labelling import simulate_votes, write_vote_file


def truth_for_rows(rows: list[dict[str, Any]], truth_path: Union[str, Path]) -> dict[str, str]:
    """The true emotion of each demo clip, what the simulated annotators perceive.

    Clips map to ``truth.parquet`` by their origin (``demo:<kind>/<name>``); a film segment takes the
    emotion of the generated shot it overlaps most (segment boundaries come from cut detection).
    """
    by_key: dict[str, list[dict[str, Any]]] = {}
    for t in read_rows(truth_path):
        by_key.setdefault(t["key"], []).append(t)
    truth = {}
    for row in rows:
        candidates = by_key.get(str(row.get("origin") or "").removeprefix("demo:"), [])
        if len(candidates) == 1 and candidates[0].get("film_id") is None:
            truth[row["clip_id"]] = candidates[0]["emotion"]
        elif candidates:
            start, end = row["start_frame"], row["end_frame"]
            best = max(candidates, key=lambda t: min(end, t["end_frame"]) - max(start, t["start_frame"]))
            truth[row["clip_id"]] = best["emotion"]
    missing = [r["clip_id"] for r in rows if r["clip_id"] not in truth]
    if missing:
        raise ValueError(f"{truth_path}: no ground truth for {len(missing)} demo clip(s), e.g. {missing[0]}")
    return truth


def simulated_votes(request: VoteRequest) -> Optional[list[Path]]:
    """The pipeline's vote source for a config with ``simulate: {truth, error_rate, none_rate}``."""
    if "simulate" not in request.spec:
        return None
    sim = dict(request.spec["simulate"])
    wanted = {t["clip_id"] for t in request.tasks}
    truth = truth_for_rows([r for r in request.rows if r["clip_id"] in wanted], request.pipeline.path(sim.pop("truth")))
    votes = simulate_votes(truth, seed=request.seed, prefix=request.name, **sim)
    return [write_vote_file(request.pipeline.work / "annotate" / f"{request.name}-votes.csv", votes)]
