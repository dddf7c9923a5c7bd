"""Stage `splits`: the `benchmark` and `train` splits (`emovid-build splits IN --out OUT`).

- benchmark: the paper's protocol, ``--per-cell`` (default 10) human-labelled clips per (source,
  emotion), 240 in all for 3 x 8 cells. A cell with fewer human-labelled clips gives what it has
  (capped by ``--max-cell-fraction`` so some can stay in train). Chosen by a seeded shuffle.
  Benchmark clips are never in train; ``OUT/benchmark.jsonl`` lists them with their evaluation
  prompt (caption + `The video is in the "<emotion>" emotion.`).
- train: every other clip. ``--paper-mix`` reproduces the paper's balanced training mix instead:
  animation : movie : sticker = 2,727 : 8,000 : 6,616, scaled by the largest factor (at most 1) that
  the available clips allow; within a source the clips kept are spread over the emotions as evenly
  as the data allows (rare emotions kept whole, frequent ones capped), human labels first. Clips
  left out of the mix go to the rejects with the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from builder_scripts.engine.manifest import reject, write_manifest, write_rejects
from builder_scripts.engine.runner import load_inputs
from emovid_datasets.atomic import atomic_write_text
from emovid_datasets.options import add_dataclass_arguments
from emovid_datasets.taxonomy import EMOTIONS, SOURCES, emotion_prompt

log = logging.getLogger("emovid.build")
STAGE = "splits"
PAPER_TRAIN_MIX: dict[str, int] = {"animation": 2727, "movie": 8000, "sticker": 6616}


@dataclass(frozen=True)
class SplitsOptions:
    """How the benchmark and train splits are drawn (the config's ``splits:`` keys and the command's options)."""

    per_cell: int = field(default=10, metadata={"help": "benchmark clips per (source, emotion)"})
    max_cell_fraction: float = field(default=1.0, metadata={
        "help": "at most this share of a cell's human-labelled clips goes to the benchmark"})
    paper_mix: bool = field(default=False, metadata={
        "help": "train on the paper's 2727:8000:6616 animation:movie:sticker mix, scaled to the data"})


def _shuffled(rows: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = sorted(rows, key=lambda r: str(r["clip_id"]))
    return [rows[i] for i in rng.permutation(len(rows))]


def select_benchmark(rows: Sequence[dict[str, Any]], *, per_cell: int = 10, max_cell_fraction: float = 1.0,
                     seed: int = 0) -> set[str]:
    """Clip ids of ``per_cell`` human-labelled clips per (source, emotion), fewer where a cell has fewer."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for source in SOURCES:
        for emotion in EMOTIONS:
            cell = [r for r in rows if r.get("source") == source and r.get("emotion") == emotion
                    and r.get("label_source") == "human"]
            take = min(per_cell, int(np.floor(max_cell_fraction * len(cell) + 1e-9)))
            chosen.update(str(r["clip_id"]) for r in _shuffled(cell, rng)[:take])
    return chosen


def mix_counts(available: dict[str, int], target: dict[str, int] = PAPER_TRAIN_MIX) -> dict[str, int]:
    """Per-source train counts in the proportions of ``target``, scaled by the largest factor <= 1 the data allows."""
    scale = min([1.0] + [available.get(s, 0) / n for s, n in target.items() if n > 0])
    return {s: int(np.floor(n * scale + 1e-9)) for s, n in target.items()}


def balanced_pick(rows: list[dict[str, Any]], count: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``count`` rows spread over emotions as evenly as possible (water-filling), human labels first."""
    by_emotion = {e: [] for e in EMOTIONS}
    for row in _shuffled(rows, rng):
        by_emotion.setdefault(str(row.get("emotion")), []).append(row)
    for cell in by_emotion.values():
        cell.sort(key=lambda r: r.get("label_source") != "human")  # stable: shuffled order within each group
    quota = {e: 0 for e in by_emotion}
    remaining = min(count, len(rows))
    while remaining > 0:
        open_cells = [e for e in by_emotion if quota[e] < len(by_emotion[e])]
        share = max(1, remaining // len(open_cells))
        for e in open_cells:
            add = min(share, len(by_emotion[e]) - quota[e], remaining)
            quota[e] += add
            remaining -= add
            if remaining == 0:
                break
    return [r for e, cell in by_emotion.items() for r in cell[:quota[e]]]


def assign_splits(rows: Sequence[dict[str, Any]], *, per_cell: int = SplitsOptions.per_cell,
                  max_cell_fraction: float = SplitsOptions.max_cell_fraction,
                  paper_mix: bool = SplitsOptions.paper_mix, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows with their ``split`` column, and the rejects (clips left out of the paper mix)."""
    unlabelled = [r["clip_id"] for r in rows if r.get("emotion") not in EMOTIONS]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} clip(s) have no emotion (e.g. {unlabelled[0]}); run `annotate predict` first")
    benchmark = select_benchmark(rows, per_cell=per_cell, max_cell_fraction=max_cell_fraction, seed=seed)
    train = [r for r in rows if str(r["clip_id"]) not in benchmark]
    rejects: list[dict[str, Any]] = []
    if paper_mix:
        rng = np.random.default_rng(seed + 1)
        by_source = {s: [r for r in train if r.get("source") == s] for s in PAPER_TRAIN_MIX}
        counts = mix_counts({s: len(v) for s, v in by_source.items()})
        kept = []
        for source, pool in by_source.items():
            picked = balanced_pick(pool, counts[source], rng)
            kept += picked
            picked_ids = {r["clip_id"] for r in picked}
            rejects += [reject(STAGE, f"left out of the paper's training mix ({source}: {counts[source]} of "
                                      f"{len(pool)} kept, ratio 2727:8000:6616)", clip_id=r["clip_id"],
                               origin=r.get("origin")) for r in pool if r["clip_id"] not in picked_ids]
        log.info("splits: paper mix keeps %s", ", ".join(f"{counts[s]} {s}" for s in PAPER_TRAIN_MIX))
        train = kept
    out = [{**r, "split": "benchmark"} for r in rows if str(r["clip_id"]) in benchmark]
    out += [{**r, "split": "train"} for r in train]
    return out, rejects


def write_splits(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], **options: Any) -> dict[str, int]:
    """Assign splits, write the manifest, the rejects and ``benchmark.jsonl`` (with prompts); returns counts."""
    out, rejects = assign_splits(rows, **options)
    out_dir = Path(out_dir)
    write_manifest(out_dir, out)
    write_rejects(out_dir, [dict(r, input_id=r["clip_id"]) for r in rejects])
    bench = sorted((r for r in out if r["split"] == "benchmark"), key=lambda r: str(r["clip_id"]))
    atomic_write_text(out_dir / "benchmark.jsonl", "".join(json.dumps(
        {"clip_id": r["clip_id"], "source": r.get("source"), "emotion": r["emotion"],
         "prompt": emotion_prompt(r.get("caption") or "", r["emotion"])}) + "\n" for r in bench))
    counts = {"benchmark": len(bench), "train": len(out) - len(bench), "left_out": len(rejects)}
    cells = {(r.get("source"), r["emotion"]) for r in bench}
    log.info("splits: %d benchmark clips in %d (source, emotion) cells, %d train, %d left out",
             counts["benchmark"], len(cells), counts["train"], counts["left_out"])
    return counts


def _cmd_splits(args: argparse.Namespace) -> int:
    write_splits(load_inputs([args.input]), args.out, per_cell=args.per_cell, max_cell_fraction=args.max_cell_fraction,
                 paper_mix=args.paper_mix, seed=args.seed)
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="choose the benchmark (N per source x emotion) and the train split")
    p.add_argument("input", help="stage folder whose clips all have an emotion")
    p.add_argument("--out", required=True, help="output stage folder")
    add_dataclass_arguments(p, SplitsOptions)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_splits)
