"""Stage manifests: `OUT/manifest.parquet` (one row per produced item) and `OUT/rejects.parquet`.

Both are written atomically and keyed, so re-running a stage replaces rows instead of
duplicating them. Values that are local paths stay in manifests (the pipeline needs them)
but never reach the dataset's `origin` column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from emovid_datasets.atomic import atomic_path

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"
REJECT_COLUMNS = ("clip_id", "origin", "input_id", "stage", "reason")


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a Parquet file as dicts; [] when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return pq.read_table(path).to_pylist()


def write_rows(path: str | os.PathLike, rows: Iterable[dict[str, Any]], sort_key: str | None = None) -> Path:
    """Write rows as Parquet atomically (columns are the union of the rows' keys, in first-seen order)."""
    rows = list(rows)
    if sort_key:
        rows.sort(key=lambda r: str(r.get(sort_key) or ""))
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]) if rows else pa.table({})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_manifest(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``folder/manifest.parquet`` (a stage's output)."""
    return read_rows(Path(folder) / MANIFEST)


def read_rejects(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``folder/rejects.parquet``."""
    return read_rows(Path(folder) / REJECTS)


def write_manifest(folder: str | os.PathLike, rows: Iterable[dict[str, Any]], key: str = "clip_id") -> Path:
    """Write ``folder/manifest.parquet``, one row per ``key`` (later rows win), sorted by key."""
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row.get(key):
            raise ValueError(f"manifest row without {key!r}: {row}")
        unique[str(row[key])] = row
    return write_rows(Path(folder) / MANIFEST, unique.values(), sort_key=key)


def reject(stage: str, reason: str, *, clip_id: str | None = None, origin: str | None = None,
           input_id: str | None = None) -> dict[str, Any]:
    """A rejects row: what was rejected, by which stage, and why (one line a person can act on)."""
    if clip_id is None and origin is None and input_id is None:
        raise ValueError("a reject must name a clip_id, an origin or an input")
    return {"clip_id": clip_id, "origin": origin, "input_id": input_id, "stage": stage, "reason": str(reason)}


def write_rejects(folder: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``folder/rejects.parquet`` with the fixed reject columns, one row per (input, clip, stage, reason)."""
    unique = {tuple(r.get(c) for c in REJECT_COLUMNS): {c: r.get(c) for c in REJECT_COLUMNS} for r in rows}
    schema = pa.schema([(c, pa.string()) for c in REJECT_COLUMNS])
    table = pa.Table.from_pylist(list(unique.values()), schema=schema)
    with atomic_path(Path(folder) / REJECTS) as tmp:
        pq.write_table(table, tmp)
    return Path(folder) / REJECTS
