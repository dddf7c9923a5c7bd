"""Atomic file writes: write to a temporary sibling, then rename into place.

A reader never sees a half-written shard, manifest or clip. A job killed outright leaves hidden
``.NAME.tmp-*`` files; `remove_leftovers` deletes them when the next run of that stage or build starts.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

TMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}{TMP_MARK}{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_leftovers(folder: str | os.PathLike) -> int:
    """Delete the temporaries `atomic_path` left anywhere under ``folder`` when a job was killed; return how many.

    Call it only when no other job is writing into ``folder``.
    """
    leftovers = [p for p in Path(folder).rglob(f".*{TMP_MARK}*") if p.is_file()]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)
