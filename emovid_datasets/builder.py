"""The EmoVid `datasets` builder: a build manifest in, Arrow tables with embedded media out.

The build manifest is a Parquet/CSV/JSONL file with one row per clip: ``clip_id``,
``source``, ``emotion``, ``split``, ``video_path`` (a local MP4) and optionally ``audio_path`` (a sound file to store instead of
the MP4's own track, which is otherwise remuxed as it is) and any schema column. Missing probe
and colour values are measured here. A clip whose media cannot be read is recorded in ``builder.rejects`` and skipped.

`load_dataset` no longer runs scripts, so this builder is run by the build step
(`emovid_datasets.export.write_shards`) and the published artefact is Parquet + card.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import datasets
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from datasets.builder import Key

from .color import color_attributes
from .media import MediaError, extract_audio, probe
from .media.probe import PROBE_COLUMNS
from .schema import FEATURES, MEDIA_CONFIGS, SPLITS
from .taxonomy import SOURCES, check_emotion, valence_of

log = logging.getLogger("emovid")

COLOR_COLUMNS = ("colorfulness", "brightness", "hue", "colorfulness_raw", "brightness_raw", "hue_raw")
_DESCRIPTION = "EmoVid: a multimodal emotion video dataset of animation, film clips and animated stickers."
_HOMEPAGE = "https://zane-zyqiu.github.io/EmoVid"
_CITATION = """@inproceedings{qiu2026emovid,
  title={EmoVid: A Multimodal Emotion Video Dataset for Emotion-Centric Video Understanding and Generation},
  author={Qiu and Wang and Chen and He and Wang},
  booktitle={AAAI},
  year={2026}
}"""


def read_table_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a Parquet, CSV or JSON-lines file (a folder: its manifest.parquet); ValueError naming the file
    when its content cannot be parsed."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.parquet"
    readers = {".parquet": pq.read_table, ".csv": pacsv.read_csv, ".jsonl": pajson.read_json,
               ".json": pajson.read_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported manifest format (use .parquet, .csv or .jsonl)")
    try:
        return reader(path).to_pylist()
    except pa.ArrowInvalid as exc:  # pyarrow's parse errors do not name the file
        raise ValueError(f"{path}: cannot read it as a {path.suffix.lstrip('.')} manifest ({exc})") from exc


def is_local_path(value: str) -> bool:
    """Whether an `origin` value looks like a local file path (origins must be URLs or source ids)."""
    return value.startswith(("/", "./", "../", "~")) or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")


def is_missing(value: Any) -> bool:
    """Whether a manifest value is absent (None, or NaN as CSV/pandas write empty numbers)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def clip_row(entry: dict[str, Any]) -> dict[str, Any]:
    """Turn one build-manifest entry into a complete schema row (media bytes embedded).

    Raises MediaError/ValueError naming the clip and the reason when the entry is unusable.
    """
    clip_id = str(entry.get("clip_id") or "").strip()
    if not clip_id:
        raise ValueError("manifest entry has no clip_id")
    video_path = entry.get("video_path")
    if not video_path or not Path(video_path).is_file():
        raise MediaError(f"{clip_id}: video file not found: {video_path}")
    video_bytes = Path(video_path).read_bytes()
    try:
        info = probe(video_bytes)
    except MediaError as exc:
        raise MediaError(f"{clip_id} ({video_path}): {str(exc).split(': ', 1)[-1]}") from exc
    if entry.get("source") not in SOURCES:
        raise ValueError(f"{clip_id}: unknown source {entry.get('source')!r}; expected one of {SOURCES}")
    emotion = check_emotion(entry.get("emotion") or "")
    origin = entry.get("origin")
    if origin and is_local_path(str(origin)):
        raise ValueError(f"{clip_id}: origin {origin!r} is a local path; use a URL or a source id")

    audio: Optional[tuple[bytes, str]] = None
    if entry.get("audio_path"):
        audio = Path(entry["audio_path"]).read_bytes(), Path(entry["audio_path"]).suffix.lstrip(".")
    elif info.has_audio:
        audio = extract_audio(video_bytes)

    row: dict[str, Any] = {name: entry.get(name) for name in FEATURES}
    row.update(
        clip_id=clip_id,
        video={"bytes": video_bytes, "path": f"{clip_id}.mp4"},
        audio={"bytes": audio[0], "path": f"{clip_id}.{audio[1]}"} if audio else None,
        emotion=emotion,
        valence=valence_of(emotion),
        label_source=entry.get("label_source") or "human",
        human_votes=list(entry.get("human_votes") or []),
        caption=entry.get("caption") or "",
    )
    measured = info.as_dict()
    for name in PROBE_COLUMNS:
        if is_missing(row.get(name)):
            row[name] = measured[name]
    row["has_audio"] = audio is not None
    if any(is_missing(row.get(name)) for name in COLOR_COLUMNS):
        row.update({k: v for k, v in color_attributes(video_bytes).items() if k in COLOR_COLUMNS})
    if is_missing(row.get("label_confidence")):
        row["label_confidence"] = 1.0
    if is_missing(row.get("start_time")):
        row["start_time"] = 0.0
    if is_missing(row.get("end_time")):
        row["end_time"] = float(row["start_time"]) + float(row["duration"])
    for name in ("sequence_id", "sequence_index", "origin"):
        if is_missing(row.get(name)):
            row[name] = None
    return row


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Arrow table in the schema's storage types (ClassLabels as ints, media as {bytes, path} structs).

    Built directly rather than through `Features.encode_example`, which needs torchcodec for Audio.
    """
    columns: dict[str, list] = {name: [] for name in FEATURES}
    for row in rows:
        for name, feature in FEATURES.items():
            value = row.get(name)
            if isinstance(feature, datasets.ClassLabel) and value is not None:
                value = feature.str2int(value) if isinstance(value, str) else int(value)
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=FEATURES.arrow_schema)


@dataclass
class EmoVidConfig(datasets.BuilderConfig):
    """``name`` is one of MEDIA_CONFIGS (`default` = all sources); ``manifest`` is the build manifest file."""

    manifest: Optional[str] = None


class EmoVidBuilder(datasets.ArrowBasedBuilder):
    """Builds EmoVid Arrow tables from a build manifest; rejected clips are kept in ``self.rejects``."""

    BUILDER_CONFIG_CLASS = EmoVidConfig
    BUILDER_CONFIGS = [EmoVidConfig(name=name, description=f"EmoVid, {name} clips") for name in MEDIA_CONFIGS]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("dataset_name", "emovid")
        super().__init__(*args, **kwargs)
        self.rejects: list[dict[str, Any]] = []

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=_DESCRIPTION, features=FEATURES, homepage=_HOMEPAGE,
                                    citation=_CITATION)

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        if not self.config.manifest:
            raise ValueError("EmoVidBuilder needs manifest=<path to the build manifest>")
        entries = read_table_file(self.config.manifest)
        if self.config.name != "default":
            entries = [e for e in entries if e.get("source") == self.config.name]
        by_split: dict[str, list[dict[str, Any]]] = {}
        for entry in sorted(entries, key=lambda e: str(e.get("clip_id"))):
            split = entry.get("split") or "train"
            if split not in SPLITS:
                raise ValueError(f"{entry.get('clip_id')}: unknown split {split!r}; expected one of {SPLITS}")
            by_split.setdefault(split, []).append(entry)
        return [datasets.SplitGenerator(name=s, gen_kwargs={"entries": by_split[s]}) for s in SPLITS if s in by_split]

    def _generate_tables(self, entries: list[dict[str, Any]]) -> Iterator[tuple[Key, pa.Table]]:
        for index, entry in enumerate(entries):
            try:
                row = clip_row(entry)
            except (MediaError, ValueError, OSError) as exc:
                log.warning("build: rejected %s: %s", entry.get("clip_id"), exc)
                self.rejects.append({"clip_id": entry.get("clip_id"), "origin": entry.get("origin"),
                                     "stage": "build", "reason": str(exc)})
                continue
            yield Key(0, index), rows_to_table([row])
