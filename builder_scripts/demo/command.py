"""`emovid-build demo OUT_DIR`: build a small EmoVid-format dataset offline, through the real stages.

Generates raw material (`demo_media`): animation face clips with sound, long films with
hard cuts, a fade from black and fast pans, and GIF stickers; then runs the same pipeline
as the real build (`builder_scripts/configs/demo.yaml`): import and segment, attributes,
simulated annotators + the label model, captions, splits, build. Deterministic given --seed.
"""

from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from tqdm.auto import tqdm

from builder_scripts.demo import media as demo_media
from builder_scripts.engine.executors import EngineSettings, add_engine_arguments
from builder_scripts.engine.manifest import write_rows
from emovid_datasets.atomic import atomic_path
from emovid_datasets.options import given_options
from emovid_datasets.taxonomy import EMOTIONS, STICKER_QUERIES

log = logging.getLogger("emovid.build")

SOURCE_INDEX = {"animation": 0, "sticker": 1, "film": 2}


@dataclass(frozen=True)
class DemoSize:
    """How much raw material the demo generates (the defaults finish in a few minutes on 2 cores)."""

    animation_per_emotion: int = 8
    stickers_per_emotion: int = 8
    films: int = 8
    shots_per_film: int = 12


def _render(job: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng([job["seed"], SOURCE_INDEX[job["kind"]], job["index"]])
    path = Path(job["path"])
    if path.exists():  # generated earlier (deterministic): resume instead of redoing
        return job
    if job["kind"] == "animation":
        demo_media.write_animation_clip(path, job["emotion"], float(rng.uniform(3.0, 6.0)), rng)
    elif job["kind"] == "sticker":
        demo_media.write_sticker(path, job["emotion"], float(rng.uniform(1.0, 3.0)), rng)
    else:
        demo_media.write_film(path, [demo_media.Shot(**s) for s in job["shots"]], rng, fps=job["fps"])
    return job


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def generate_raw(raw_dir: Union[str, Path], *, seed: int = 0, size: DemoSize = DemoSize(), workers: int = 2,
                 progress: bool = True) -> Path:
    """Write the demo's raw sources under ``raw_dir`` and the ground truth the simulated annotators see.

    Layout: ``animation/*.mp4`` + ``animation/metadata.csv``, ``stickers/*.gif`` + ``stickers/metadata.csv``
    (title, tags, the search query and its emotion, as a crawl would record), ``films/*.mp4`` +
    ``films/films.csv``, and ``truth.parquet`` (one row per clip or film shot with its emotion).
    """
    raw = Path(raw_dir)
    jobs: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    anim_meta, sticker_meta, film_meta = [], [], []
    for e, emotion in enumerate(EMOTIONS):
        for k in range(size.animation_per_emotion):
            name = f"face-{e}{k:02d}"
            jobs.append({"kind": "animation", "index": e * 100 + k, "emotion": emotion, "seed": seed,
                         "path": str(raw / "animation" / f"{name}.mp4")})
            anim_meta.append({"file": f"{name}.mp4", "origin": f"demo:animation/{name}"})
            truth.append({"key": f"animation/{name}", "emotion": emotion})
        for k in range(size.stickers_per_emotion):
            name = f"sticker-{e}{k:02d}"
            query = STICKER_QUERIES[emotion][k % len(STICKER_QUERIES[emotion])]
            jobs.append({"kind": "sticker", "index": e * 100 + k, "emotion": emotion, "seed": seed,
                         "path": str(raw / "stickers" / f"{name}.gif")})
            sticker_meta.append({"file": f"{name}.gif", "origin": f"demo:sticker/{name}", "title": f"{query} face",
                                 "tags": f"{query};face;demo", "query": query, "emotion": emotion})
            truth.append({"key": f"sticker/{name}", "emotion": emotion})
    fps = 24
    for f in range(size.films):
        rng = np.random.default_rng([seed, SOURCE_INDEX["film"], 10_000 + f])
        shots = demo_media.film_script(rng, num_shots=size.shots_per_film, fps=fps)
        film_id = f"film-{f:02d}"
        jobs.append({"kind": "film", "index": f, "seed": seed, "fps": fps, "path": str(raw / "films" / f"{film_id}.mp4"),
                     "shots": [s.__dict__ for s in shots]})
        film_meta.append({"file": f"{film_id}.mp4", "sequence_id": film_id, "title": f"Demo film {f}",
                          "origin": f"demo:film/{film_id}"})
        truth.extend({"key": f"film/{film_id}", **t} for t in demo_media.iter_truth(shots, film_id, fps))
    for folder, rows in (("animation", anim_meta), ("stickers", sticker_meta)):
        _write_csv(raw / folder / "metadata.csv", rows)
    _write_csv(raw / "films" / "films.csv", film_meta)
    write_rows(raw / "truth.parquet", truth)
    # Films first: they are the longest jobs, so both workers stay busy.
    jobs.sort(key=lambda j: j["kind"] != "film")
    # spawn, not fork: forking a process that runs a Ray driver (the demo on --engine ray) crashes the child.
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in tqdm(pool.map(_render, jobs), total=len(jobs), desc="demo media", unit="file", disable=not progress):
            pass
    log.info("demo: generated %d raw files under %s", len(jobs), raw)
    return raw


def demo_config() -> Path:
    """The packaged pipeline config of the demo (paths relative to the demo folder)."""
    return Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def run_demo(out_dir: Union[str, Path], *, seed: int = 0, workers: int = 2, size: DemoSize = DemoSize(),
             progress: bool = True, overrides: Optional[dict[str, Any]] = None) -> Path:
    """Generate the raw material into OUT/raw and run the demo pipeline; returns OUT/dataset.

    ``overrides`` update the demo config: a mapping updates its section (``{"splits": {"per_cell": 1}}`` for
    a smaller demo), any other value replaces the key (``{"engine": "ray"}``).
    """
    from builder_scripts.engine.pipeline import Pipeline, load_config

    from .votes import simulated_votes

    out = Path(out_dir)
    generate_raw(out / "raw", seed=seed, size=size, workers=workers, progress=progress)
    config = load_config(demo_config())
    config.update(seed=seed, workers=workers)
    for key, value in (overrides or {}).items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    dataset = Pipeline(config, out, progress=progress, vote_source=simulated_votes).run()
    assert dataset is not None  # the demo's annotators are simulated, so it never waits for votes
    log.info("demo: dataset ready in %s; load it with emovid_datasets.load_emovid(%r)", dataset, str(dataset))
    return dataset


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("demo", help="build the offline demo dataset through the real pipeline stages")
    p.add_argument("out_dir", help="demo folder: raw material in raw/, stage folders in work/, the dataset in dataset/")
    p.add_argument("--seed", type=int, default=0, help="the demo is deterministic given the seed")
    p.add_argument("--workers", type=int, default=2, help="parallel processes")
    add_engine_arguments(p)
    p.set_defaults(func=lambda a: run_demo(a.out_dir, seed=a.seed, workers=a.workers,
                                           overrides=given_options(EngineSettings, a)) and 0)
