"""The stage contract every executor runs: per-item work, declared resources, a once-per-worker setup.

A stage turns one input item (a manifest row, or a batch of rows) into an `Outcome`: manifest rows
plus rejects with reasons; files it writes go atomically into its stage folder. ``setup`` runs once
in each worker before its first item (load a model there, not in ``process``), so an executor can
keep a pool of workers that each pay the setup once. Executors (`engine.executors`) decide where
items run; the runner (`engine.runner`) owns resume, checkpoints and rejects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from builder_scripts.engine.manifest import reject


@dataclass
class Outcome:
    """What one input produced: manifest rows and rejects (e.g. shots dropped for length)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage reserves: CPUs, GPUs (a fraction shares one), memory, custom resources.

    ``custom`` maps a cluster resource name to an amount (e.g. ``{"a100": 1}``); tests use it to check
    scheduling without a GPU. The local executor runs every stage on CPU processes and ignores them.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory_bytes: Optional[int] = None
    custom: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.gpus < 0 or any(v < 0 for v in self.custom.values()):
            raise ValueError(f"resources must not be negative: {self}")


class Stage:
    """One step of the build. Subclasses set ``name`` (and ``resources``) and define ``process``.

    A stage object travels to its workers (pickled), so it holds settings and paths; what ``setup``
    builds (a model) lives only in the worker.
    """

    name: str = "stage"
    resources: Resources = Resources()

    def setup(self) -> None:
        """Prepare a worker before its first item (default: nothing to prepare)."""

    def process(self, item: dict[str, Any]) -> Union[Outcome, list, dict]:
        """The work for one item: an `Outcome`, a list of rows, or one row."""
        raise NotImplementedError

    @property
    def has_setup(self) -> bool:
        """Whether a worker must be kept alive between items (its setup is worth reusing)."""
        return type(self).setup is not Stage.setup


class FunctionStage(Stage):
    """A stage whose per-item work is a picklable function and that needs no setup."""

    def __init__(self, name: str, work: Callable[[dict[str, Any]], Union[Outcome, list, dict]], *,
                 resources: Resources = Resources()) -> None:
        self.name, self.work, self.resources = name, work, resources

    def process(self, item: dict[str, Any]) -> Union[Outcome, list, dict]:
        return self.work(item)


class BatchStage(Stage):
    """A stage whose work is a batch of clips (one model call); `runner.run_batched_stage` forms the batches."""

    def process(self, item: dict[str, Any]) -> Outcome:
        return self.process_batch(item["clips"])

    def process_batch(self, clips: list[dict[str, Any]]) -> Outcome:
        """The work for one batch of manifest rows."""
        raise NotImplementedError


class ModelStage(BatchStage):
    """A batch stage around a model: ``model`` already loaded (this process), or ``load()`` run once per worker
    by `setup`, so a Ray actor loads the model once and only the loader travels to the workers."""

    def __init__(self, *, model: Any = None, load: Optional[Callable[[], Any]] = None,
                 resources: Resources = Resources()) -> None:
        if (model is None) == (load is None):
            raise ValueError(f"{self.name}: give a model or a function that loads one, not both")
        self.model, self.load, self.resources = model, load, resources

    def __getstate__(self) -> dict[str, Any]:  # a worker loads its own model
        return {**self.__dict__, "model": None} if self.load is not None else self.__dict__

    def setup(self) -> None:
        if self.model is None:
            self.model = self.load()


def process_item(stage: Stage, item_id: str, item: dict[str, Any]) -> tuple[str, Outcome]:
    """Run ``stage`` on one item; an exception becomes a reject with its reason, rows get ``input_id``."""
    try:
        result = stage.process(item)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded reject
        reason = f"{type(exc).__name__}: {exc}"
        return item_id, Outcome(rejects=[reject(stage.name, reason, input_id=item_id, clip_id=item.get("clip_id"),
                                                origin=item.get("origin"))])
    if isinstance(result, dict):
        result = Outcome(rows=[result])
    elif isinstance(result, list):
        result = Outcome(rows=result)
    for row in result.rows:
        row["input_id"] = item_id
    for row in result.rejects:
        row["input_id"] = row.get("input_id") or item_id
        row["stage"] = row.get("stage") or stage.name
    return item_id, result
