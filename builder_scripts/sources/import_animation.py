"""Stage `import-animation`: import a local folder of clips (MagicAnime faces, or any collection) as MP4s.

MagicAnime's distribution format is not public, so this accepts what any collection has: a
folder (searched recursively) of videos/GIFs plus an optional CSV/JSON/JSONL metadata file keyed
by file name or stem. Columns named like the schema (caption, emotion, origin, ...) are carried
into the manifest; other columns are ignored.
"""

from __future__ import annotations

import argparse
import ast
import csv
import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Sequence, Union

import datasets

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.runner import StageSummary, exit_status, run_stage
from builder_scripts.engine.stage import FunctionStage
from emovid_datasets.builder import COLOR_COLUMNS, PROBE_COLUMNS, is_local_path
from emovid_datasets.media import convert
from emovid_datasets.media import files as media_files
from emovid_datasets.media.probe import require_moving
from emovid_datasets.records import read_json_file, read_json_lines
from emovid_datasets.schema import FEATURES, SPLITS
from emovid_datasets.taxonomy import SOURCES

log = logging.getLogger("emovid.build")

STAGE = "import-animation"


@dataclass(frozen=True)
class ImportOptions:
    """A pipeline source's ``import:`` keys: the folder, its optional metadata file, the size cap."""

    src: str
    metadata: Optional[str] = None
    max_side: Optional[int] = None
# Metadata columns that name the file, tried in this order.
KEY_COLUMNS = ("file_name", "filename", "file", "path", "video", "video_path", "name", "stem", "clip", "id")
# Schema columns a metadata file may supply; media, measurements and derived columns come from the stages.
CARRIED_COLUMNS = tuple(
    name for name in FEATURES
    if name not in {"clip_id", "source", "video", "audio", "valence", "origin", *PROBE_COLUMNS, *COLOR_COLUMNS}
) + ("split",)  # origin (or url) is read separately: it must never be a local path


def scan_media(src_dir: Union[str, os.PathLike], exclude: Optional[Path] = None) -> list[Path]:
    """Media files under ``src_dir`` (recursive, sorted) as paths relative to it; hidden files and ``exclude`` skipped."""
    if not Path(src_dir).is_dir():
        raise FileNotFoundError(f"{src_dir}: --src is not a folder")
    return media_files.scan_media(src_dir, media_files.MEDIA_SUFFIXES, exclude=exclude)


def assign_clip_ids(rel_paths: Sequence[Path], source: str) -> dict[Path, str]:
    """``{source}-{stem}`` per file (see `media.files.ids_from_paths`)."""
    return media_files.ids_from_paths(rel_paths, f"{source}-")


def read_metadata_file(path: Union[str, os.PathLike]) -> list[dict[str, Any]]:
    """Rows of a CSV, JSONL, or JSON file (a list of objects, or an object mapping file name -> fields)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return [dict(row) for row in csv.DictReader(path.read_text(encoding="utf-8").splitlines())]
    if suffix == ".jsonl":
        rows = [row for _, row in read_json_lines(path)]
    elif suffix == ".json":
        data = read_json_file(path)
        rows = data if isinstance(data, list) else [
            {"file": key, **value} for key, value in data.items() if isinstance(value, dict)]
    else:
        raise ValueError(f"{path}: unsupported metadata format (use .csv, .json or .jsonl)")
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path}: metadata must be objects (one per clip)")
    return rows


def match_metadata(rows: Sequence[dict[str, Any]], rel_paths: Sequence[Path],
                   source_name: str = "metadata") -> dict[Path, dict[str, Any]]:
    """Pair metadata rows with files by relative path, then file name, then stem (for keys without extension)."""
    if not rows:
        return {}
    key = next((c for c in KEY_COLUMNS if any(c in row for row in rows)), None)
    if key is None:
        raise ValueError(f"{source_name}: no column naming the file; expected one of {', '.join(KEY_COLUMNS)}")
    by_path: dict[str, dict] = {}
    by_name: dict[str, dict] = {}
    by_stem: dict[str, dict] = {}
    for row in rows:
        value = str(row.get(key) or "").strip().replace("\\", "/").removeprefix("./")
        if not value:
            continue
        pure = PurePosixPath(value)
        by_path[value] = by_name[pure.name] = row
        if pure.suffix.lower() not in media_files.MEDIA_SUFFIXES:
            by_stem[pure.name] = row
    matched: dict[Path, dict[str, Any]] = {}
    for rel in rel_paths:
        row = by_path.get(rel.as_posix()) or by_name.get(rel.name) or by_stem.get(rel.stem)
        if row is not None:
            matched[rel] = row
    unused = len(rows) - len({id(r) for r in matched.values()})
    if unused:
        log.warning("%s: %d of %d metadata rows in %s match no media file", STAGE, unused, len(rows), source_name)
    return matched


def _coerce(name: str, value: Any) -> Any:
    """A metadata value as the schema types it (None when empty); ValueError naming the column otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if name == "split":
        if str(value).strip() not in SPLITS:
            raise ValueError(f"split {value!r} is not one of {', '.join(SPLITS)}")
        return str(value).strip()
    feature = FEATURES[name]
    if isinstance(feature, datasets.ClassLabel):
        label = str(value).strip().lower()
        if label not in feature.names:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(feature.names)}")
        return label
    if isinstance(feature, datasets.List):
        if isinstance(value, str):
            text = value.strip()
            try:
                value = ast.literal_eval(text) if text.startswith("[") else re.split(r"\s*[,;|]\s*", text)
            except (ValueError, SyntaxError) as exc:
                raise ValueError(f"{name} {value!r} is not a list") from exc
        return [str(v).strip() for v in value]
    dtype = feature.dtype
    try:
        if dtype.startswith("float"):
            return float(value)
        if dtype.startswith("int"):
            return int(float(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} {value!r} is not a number") from exc
    if dtype == "bool":
        return str(value).strip().lower() in ("1", "true", "yes")
    return str(value).strip()


def import_clip(item: dict[str, Any], *, out_dir: str, max_side: Optional[int] = None) -> dict[str, Any]:
    """Convert one file to MP4 (keeping its sound) and return its manifest row with the carried metadata and
    whether the file was cut off (`Conversion.manifest_fields`: only what decodes is kept)."""
    carried = {}
    for name in CARRIED_COLUMNS:
        try:
            value = _coerce(name, (item["metadata"] or {}).get(name))
        except ValueError as exc:
            raise ValueError(f"{item['source_file']}: metadata {exc}") from exc
        if value is not None:
            carried[name] = value
    done = convert(item["path"], Path(out_dir) / "clips" / f"{item['clip_id']}.mp4", max_side=max_side)
    what = item["source_file"] + (f" ({done.cut_off})" if done.truncated else "")
    require_moving(done.path, what=what)  # the crawl's rule: a 1-frame GIF or a still is no video
    if done.truncated:
        log.warning("%s: %s is %s; kept what decodes", STAGE, item["source_file"], done.cut_off)
    return {**carried, "clip_id": item["clip_id"], "video_path": str(done.path), "source": item["source"],
            "origin": item["origin"], "source_file": item["source_file"], **done.manifest_fields()}


def _origin(metadata: dict[str, Any], source: str, rel: Path) -> str:
    """The metadata's origin/url when it is one (never a local path), else the source id ``{source}:{rel}``."""
    for column in ("origin", "url"):
        value = str(metadata.get(column) or "").strip()
        if value and not is_local_path(value):
            return value
        if value:
            log.warning("%s: %s %s %r is a local path; origin falls back to the source id", STAGE, rel, column, value)
    return f"{source}:{rel.as_posix()}"


def run_import(src_dir: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
               metadata: Optional[Union[str, os.PathLike]] = None, source: str = "animation", workers: int = 1,
               max_side: Optional[int] = None, retry_rejects: bool = False, progress: bool = True) -> StageSummary:
    """Import every media file under ``src_dir`` not yet in ``out_dir``'s manifest or rejects."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    rel_paths = scan_media(src_dir, exclude=Path(out_dir))
    meta = match_metadata(read_metadata_file(metadata), rel_paths, str(metadata)) if metadata else {}
    ids = assign_clip_ids(rel_paths, source)
    log.info("%s: %d media files under %s, %d with metadata", STAGE, len(rel_paths), src_dir, len(meta))
    inputs = [{"clip_id": ids[rel], "source": source, "origin": _origin(meta.get(rel, {}), source, rel),
               "path": str(Path(src_dir) / rel), "source_file": rel.as_posix(), "metadata": meta.get(rel)}
              for rel in rel_paths]
    work = FunctionStage(STAGE, functools.partial(import_clip, out_dir=str(out_dir), max_side=max_side))
    return run_stage(work, inputs, out_dir, workers=workers, retry_rejects=retry_rejects, progress=progress)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="import a local folder of clips (MagicAnime faces or any collection)")
    p.add_argument("--src", required=True, help="folder of videos/GIFs (searched recursively)")
    p.add_argument("--out", required=True, help="output stage folder")
    p.add_argument("--metadata", help="CSV/JSON/JSONL keyed by file name or stem (caption, emotion, origin, ...)")
    p.add_argument("--source", default="animation", choices=SOURCES, help="the clips' source (default animation)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--max-side", type=int, help="downscale so the longer side is at most this many pixels")
    p.add_argument("--retry-rejects", action="store_true", help="try again the files rejected by an earlier run")
    add_engine_arguments(p)
    p.set_defaults(func=with_engine(lambda a: exit_status(run_import(
        a.src, a.out, metadata=a.metadata, source=a.source, workers=a.workers, max_side=a.max_side,
        retry_rejects=a.retry_rejects))))
