"""Run one pipeline stage over its inputs: resumable, parallel, with progress and a summary.

A stage (`engine.stage.Stage`) turns each input item into an `Outcome`; an executor
(`engine.executors`) runs it here or on Ray. The runner skips inputs whose results are already
in ``OUT/manifest.parquet`` or ``OUT/rejects.parquet``, checkpoints both files atomically as
results arrive (so a killed run loses at most the items in flight), turns an exception into a
reject with its reason, and never duplicates rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from tqdm.auto import tqdm

from builder_scripts.engine.executors import Executor, current_executor
from builder_scripts.engine.manifest import read_manifest, read_rejects, write_manifest, write_rejects
from builder_scripts.engine.stage import BatchStage, Outcome, Stage
from emovid_datasets.atomic import atomic_write_text, remove_leftovers

log = logging.getLogger("emovid.build")


@dataclass
class StageSummary:
    """What one run of a stage did: inputs seen, done now, skipped as done before, rejected, rows, time."""
    stage: str
    inputs: int
    done: int
    skipped: int
    rejected: int
    rows: int
    seconds: float

    def line(self) -> str:
        """One log line with the counts."""
        return (f"{self.stage}: {self.done} done, {self.skipped} skipped (already done), "
                f"{self.rejected} rejected, {self.rows} rows in manifest, {self.seconds:.1f}s")


def run_stage(
    stage: Stage,
    inputs: Sequence[dict[str, Any]],
    out_dir: Union[str, Path],
    *,
    input_key: Union[str, Callable[[dict], str]] = "clip_id",
    workers: int = 1,
    checkpoint_every: int = 16,
    retry_rejects: bool = False,
    progress: bool = True,
    executor: Optional[Executor] = None,
) -> StageSummary:
    """Run ``stage`` on every input not yet done and maintain ``out_dir``'s manifest and rejects.

    ``executor`` defaults to the engine `use_engine` chose (the local one: ``workers`` processes).
    """
    executor = executor or current_executor()
    name = stage.name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if remove_leftovers(out_dir):
        log.info("%s: removed unfinished files a killed run left in %s", name, out_dir)
    key_of = (lambda item: str(item[input_key])) if isinstance(input_key, str) else input_key
    rows = {r["clip_id"]: r for r in read_manifest(out_dir)}
    produced = {r.get("input_id") for r in rows.values()}
    rejects = read_rejects(out_dir)
    if retry_rejects:  # forget inputs that produced nothing, so they run again
        rejects = [r for r in rejects if r.get("input_id") in produced]
    done_ids = produced | {r.get("input_id") for r in rejects}
    ids = [key_of(item) for item in inputs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: duplicate input ids")
    todo = [(i, item) for i, item in zip(ids, inputs) if i not in done_ids]
    started, rejected, finished = time.monotonic(), 0, 0

    def absorb(outcome: Outcome) -> None:
        nonlocal rejected
        for row in outcome.rows:
            rows[row["clip_id"]] = row
        for bad in outcome.rejects:
            what = bad.get("clip_id") or bad.get("origin") or bad.get("input_id")
            log.warning("%s: rejected %s: %s", name, what, bad["reason"])
        rejected += sum(1 for r in outcome.rejects if r.get("clip_id") is None or r["clip_id"] not in rows)
        rejects.extend(outcome.rejects)

    def checkpoint() -> None:
        write_manifest(out_dir, rows.values())
        write_rejects(out_dir, rejects)

    bar = tqdm(total=len(todo), desc=name, unit="item", disable=not progress)
    try:
        for _, outcome in executor.map(stage, todo, workers=workers):
            absorb(outcome)
            finished += 1
            bar.update()
            if finished % checkpoint_every == 0:
                checkpoint()
    finally:
        bar.close()
        checkpoint()
    summary = StageSummary(name, len(inputs), finished, len(inputs) - len(todo), rejected, len(rows),
                           time.monotonic() - started)
    atomic_write_text(out_dir / "stage.json", json.dumps(asdict(summary), indent=2))
    log.info(summary.line())
    return summary


def exit_status(summary: StageSummary) -> int:
    """A stage command's exit code: 1 when it had inputs and none produced a row (so scripts and CI notice),
    else 0 (a resumed run with everything already done included)."""
    if summary.inputs and not summary.rows:
        log.error("%s: none of the %d input(s) produced a row; the rejects say why", summary.stage, summary.inputs)
        return 1
    return 0


def load_inputs(paths: Iterable[Union[str, Path]]) -> list[dict[str, Any]]:
    """Concatenate the manifests of previous stages' folders (one stage usually reads one folder)."""
    items: list[dict[str, Any]] = []
    for path in paths:
        if not (Path(path) / "manifest.parquet").exists():
            raise FileNotFoundError(f"{path}: no manifest.parquet (is it a stage folder?)")
        items.extend(read_manifest(path))
    return items


def run_batched_stage(stage: BatchStage, rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], *,
                      batch_size: int = 8, workers: int = 1, progress: bool = True) -> StageSummary:
    """`run_stage` over batches of clips: clips already in ``OUT``'s manifest or rejects are not batched again."""
    done = {r.get("clip_id") for r in read_manifest(out_dir)} | {r.get("clip_id") for r in read_rejects(out_dir)}
    todo = [r for r in rows if r["clip_id"] not in done]
    batches = []
    for start in range(0, len(todo), max(1, batch_size)):
        clips = todo[start:start + batch_size]
        digest = hashlib.sha1("\n".join(str(c["clip_id"]) for c in clips).encode()).hexdigest()[:12]
        batches.append({"batch_id": f"batch-{digest}", "clips": clips})
    log.info("%s: %d of %d clips to do in %d batch(es) of up to %d (%d already done in %s)", stage.name, len(todo),
             len(rows), len(batches), batch_size, len(rows) - len(todo), out_dir)
    summary = run_stage(stage, batches, out_dir, input_key="batch_id", workers=workers, checkpoint_every=1,
                        progress=progress)
    # Report clips, not batches: a resumed run says how many clips were already done.
    summary = replace(summary, inputs=len(rows), done=len(todo), skipped=len(rows) - len(todo))
    atomic_write_text(Path(out_dir) / "stage.json", json.dumps(asdict(summary), indent=2))
    return summary
