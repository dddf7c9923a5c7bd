"""Stage `segment`: cut long videos into shots and write each kept shot as an MP4 (resumable, parallel).

Detection lives in `shot_detection` (two PySceneDetect detectors that must agree), the writing in
`shot_cutting` (frame-accurate clips with their sound); this module is the stage: inputs, the
manifest, rejects and the `emovid-build segment` command. Each source is decoded once.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any, Sequence, Union

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.manifest import read_manifest
from builder_scripts.engine.runner import StageSummary, exit_status, run_stage
from builder_scripts.engine.stage import FunctionStage, Outcome
from builder_scripts.stages.shot_cutting import STAGE, SegmentOptions, split_shots
from emovid_datasets.media.files import VIDEO_SUFFIXES, ids_from_paths, safe_name, scan_media
from emovid_datasets.options import add_dataclass_arguments


def _segment_one(item: dict[str, Any], *, clips_dir: str, min_seconds: float, max_seconds: float) -> Outcome:
    outcome = split_shots(item["video_path"], clips_dir, str(item["clip_id"]), min_seconds=min_seconds,
                          max_seconds=max_seconds)
    carried = {k: v for k, v in item.items() if k not in ("clip_id", "video_path")}
    outcome.rows = [{**row, **carried} for row in outcome.rows]
    return outcome


def run_segment(videos: Sequence[dict[str, Any]], out_dir: Union[str, Path], *,
                min_seconds: float = SegmentOptions.min_seconds, max_seconds: float = SegmentOptions.max_seconds,
                workers: int = 1, progress: bool = True) -> StageSummary:
    """Cut every source video (dicts with ``clip_id``, ``video_path`` and metadata to carry) into shots.

    Writes ``out_dir/clips/<clip_id>-shotNNN.mp4`` and one manifest row per kept shot; resumable
    (the manifest is checkpointed after every source, so a killed run redoes at most the
    sources in flight, overwriting their clips).
    """
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
    clips_dir = Path(out_dir) / "clips"
    work = FunctionStage(STAGE, functools.partial(_segment_one, clips_dir=str(clips_dir), min_seconds=min_seconds,
                                                  max_seconds=max_seconds))
    return run_stage(work, list(videos), out_dir, workers=workers, checkpoint_every=1, progress=progress)


def collect_videos(paths: Sequence[Union[str, Path]]) -> list[dict[str, Any]]:
    """Inputs from the command line: video files, folders of videos (scanned recursively; ids from
    file stems), or stage folders whose ``manifest.parquet`` lists ``clip_id`` + ``video_path``."""
    items: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if path.is_dir() and (path / "manifest.parquet").exists():
            items.extend(read_manifest(path))
        elif path.is_dir():
            ids = ids_from_paths(scan_media(path, VIDEO_SUFFIXES))  # equal stems in sub-folders coexist
            items.extend({"clip_id": clip_id, "video_path": str(path / rel)} for rel, clip_id in ids.items())
        elif path.is_file():
            items.append({"clip_id": safe_name(path.stem), "video_path": str(path)})
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    seen: dict[str, str] = {}
    for item in items:
        clip_id = str(item["clip_id"])
        if clip_id in seen:
            raise ValueError(f"two inputs share the id {clip_id!r}: {seen[clip_id]} and {item['video_path']}")
        seen[clip_id] = str(item["video_path"])
    return items


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="cut long videos into shots (PySceneDetect) and write each as an MP4")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR",
                   help="video files, folders of videos, or stage folders with a manifest.parquet")
    p.add_argument("--out", required=True, help="output stage folder (clips/ + manifest.parquet + rejects.parquet)")
    add_dataclass_arguments(p, SegmentOptions)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (one source video each)")
    add_engine_arguments(p)
    p.set_defaults(func=with_engine(lambda a: exit_status(run_segment(
        collect_videos(a.inputs), a.out, min_seconds=a.min_seconds, max_seconds=a.max_seconds, workers=a.workers))))
