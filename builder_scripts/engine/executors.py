"""Where a stage's items run: `LocalExecutor` (this machine's processes) or `RayExecutor` (Ray Data).

Both take a `Stage` and the items still to do, and yield ``(item_id, Outcome)`` as items finish,
so the runner checkpoints the manifest while the stage runs and a killed driver resumes without
duplicates. The engine is chosen once per command (``--engine local|ray``, ``--ray-address``) or
per pipeline config (``engine:``, ``ray_address:``); `use_engine` makes it the one `run_stage` uses.

The Ray engine runs a stage without setup as Ray Data tasks, and a stage with a setup or GPUs as an
actor pool whose actors each run the setup once (load the model once). Each stage's `Resources`
become the workers' ``num_cpus``/``num_gpus``/``memory``/custom resources. Items and outcomes travel
pickled, so any manifest value does; media never travel, since stages read and write files in stage
folders, which must therefore be on storage every Ray node mounts at the same path.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import numpy as np

from builder_scripts.engine.stage import Outcome, Stage, process_item
from emovid_datasets.options import add_dataclass_arguments, dataclass_from_args

log = logging.getLogger("emovid.build")
ENGINES = ("local", "ray")
Todo = Sequence[tuple[str, dict[str, Any]]]


class Executor(Protocol):
    """Runs a stage's items somewhere and yields each result as it finishes (any order)."""

    def map(self, stage: Stage, todo: Todo, *, workers: int = 1) -> Iterator[tuple[str, Outcome]]: ...

    def close(self) -> None: ...


# -- local processes ------------------------------------------------------------------------------
_worker_stage: Optional[Stage] = None


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so a killed run leaves no orphan worker."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux: workers still exit when the pool's pipe closes
        return
    parent = os.getppid()
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _start_worker(stage: Stage) -> None:
    global _worker_stage
    die_with_parent()
    stage.setup()
    _worker_stage = stage


def _process_in_worker(item_id: str, item: dict[str, Any]) -> tuple[str, Outcome]:
    assert _worker_stage is not None, "worker started without a stage"
    return process_item(_worker_stage, item_id, item)


class LocalExecutor:
    """Items in this process (``workers`` 1), or in a pool of ``workers`` spawned processes.

    Each worker runs the stage's setup once; workers die with the process that started them.
    """

    def map(self, stage: Stage, todo: Todo, *, workers: int = 1) -> Iterator[tuple[str, Outcome]]:
        if workers <= 1 or len(todo) <= 1:
            stage.setup()
            for item_id, item in todo:
                yield process_item(stage, item_id, item)
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_start_worker,
                                 initargs=(stage,)) as pool:
            pending = {pool.submit(_process_in_worker, item_id, item) for item_id, item in todo}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        yield future.result()
            finally:
                for future in pending:
                    future.cancel()

    def close(self) -> None:
        """Nothing to release: pools live only while a stage runs."""


# -- Ray Data -------------------------------------------------------------------------------------
def _ray_batch(stage: Stage, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One Ray Data batch of pickled items -> their pickled outcomes."""
    results = [process_item(stage, str(i), pickle.loads(p)) for i, p in zip(batch["item_id"], batch["payload"])]
    return {"item_id": np.array([i for i, _ in results], dtype=object),
            "outcome": np.array([pickle.dumps(o) for _, o in results], dtype=object)}


class _RayTask:
    """A stateless stage as a Ray Data function (one task per batch)."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _ray_batch(self.stage, batch)


class _RayActor(_RayTask):
    """A stage with a setup as a Ray Data actor: the setup runs once, in the constructor."""

    def __init__(self, stage: Stage) -> None:
        stage.setup()
        super().__init__(stage)


class RayExecutor:
    """Runs stages on Ray Data: on the cluster at ``address`` (or ``RAY_ADDRESS``), else a local instance.

    Connects on the first stage; `close` shuts down only a Ray instance this executor started.
    """

    def __init__(self, address: Optional[str] = None, **init_options: Any) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.init_options = init_options
        self._started = False

    def _connect(self) -> None:
        import ray
        import ray.data

        if not ray.is_initialized():
            where = self.address or "a new local instance"
            log.info("engine ray: connecting to %s", where)
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING,
                     **self.init_options)
            self._started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the runner shows one bar per stage
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def map(self, stage: Stage, todo: Todo, *, workers: int = 1) -> Iterator[tuple[str, Outcome]]:
        if not todo:
            return
        import ray.data

        self._connect()
        items = [{"item_id": item_id, "payload": pickle.dumps(item)} for item_id, item in todo]
        # One item per block, so each item is scheduled on its own and comes back as soon as it is done.
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        res = stage.resources
        options: dict[str, Any] = {"batch_size": 1, "batch_format": "numpy", "num_cpus": res.cpus}
        if res.gpus:
            options["num_gpus"] = res.gpus
        if res.memory_bytes:
            options["memory"] = res.memory_bytes
        if res.custom:
            options["resources"] = dict(res.custom)
        if stage.has_setup or res.gpus:
            options["compute"] = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, len(items)))
            fn: Any = _RayActor
            options["fn_constructor_args"] = (stage,)
        else:
            fn = _RayTask(stage)
        for batch in dataset.map_batches(fn, **options).iter_batches(batch_size=1, batch_format="numpy",
                                                                      prefetch_batches=0):
            for item_id, outcome in zip(batch["item_id"], batch["outcome"]):
                yield str(item_id), pickle.loads(outcome)

    def close(self) -> None:
        """Shut down the local Ray instance this executor started (a cluster it joined stays up)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


# -- choosing the engine --------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineSettings:
    """Which executor runs the stages."""

    engine: str = field(default="local", metadata={
        "help": "local: this machine's processes (--workers); ray: Ray Data on --ray-address", "choices": ENGINES})
    ray_address: Optional[str] = field(default=None, metadata={
        "help": "Ray cluster to join, e.g. auto after `ray start --head` (default: $RAY_ADDRESS, else a local "
                "instance); stage folders must be on storage every node mounts"})

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    def executor(self) -> Executor:
        """A new executor for these settings."""
        return RayExecutor(self.ray_address) if self.engine == "ray" else LocalExecutor()


_current: list[Executor] = []


def current_executor() -> Executor:
    """The executor `use_engine` installed, else the local one."""
    return _current[-1] if _current else LocalExecutor()


@contextlib.contextmanager
def use_engine(settings: EngineSettings | Executor) -> Iterator[Executor]:
    """Run the stages inside the block on ``settings``' engine (closed at the end when created here)."""
    executor = settings.executor() if isinstance(settings, EngineSettings) else settings
    _current.append(executor)
    try:
        yield executor
    finally:
        _current.pop()
        if isinstance(settings, EngineSettings):
            executor.close()


def add_engine_arguments(parser: Any, *, fallback: Optional[str] = None) -> None:
    """``--engine`` and ``--ray-address`` on a stage's subcommand (``fallback``: see `add_dataclass_arguments`)."""
    add_dataclass_arguments(parser, EngineSettings, fallback=fallback)


def with_engine(command: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a subcommand so that it runs on the engine its ``--engine``/``--ray-address`` options chose."""
    def run(args: Any) -> Any:
        with use_engine(dataclass_from_args(EngineSettings, args)):
            return command(args)

    return run
