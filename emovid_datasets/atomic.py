"""Atomic writes: a file or a whole folder is written beside its final place, then renamed into place.

A reader never sees a half-written shard, manifest, clip or dataset folder. A job killed outright leaves
hidden ``.NAME.tmp-*`` files or a ``.NAME.building`` folder, which the next run of that stage or build
deletes when it starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import uuid
from pathlib import Path
from typing import Collection, Iterator

TMP_MARK = ".tmp-"
BUILDING_MARK = ".building"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


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


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


@contextlib.contextmanager
def replaced_folder(path: str | os.PathLike, owned: Collection[str]) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; when the block succeeds it takes ``path``'s place in one step.

    A reader sees the old folder or the new one, never a mix. Entries of the old folder outside ``owned``
    (the names the block writes, e.g. a `.git` or the Hub upload cache) move into the new one. A killed run
    leaves the hidden staging folder, which the next call removes; a failed block removes it at once.
    """
    final = Path(path)
    staging, old = (final.with_name(f".{final.name}{mark}") for mark in (BUILDING_MARK, ".replaced"))
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not final.exists():
        os.rename(staging, final)
        return
    if not _exchange(staging, final):  # not Linux: two renames, with a moment in which no folder is there
        os.rename(final, old)
        os.rename(staging, final)
        staging = old
    for entry in staging.iterdir():  # ``staging`` now holds the old folder
        if entry.name not in owned and not (final / entry.name).exists():
            os.rename(entry, final / entry.name)
    shutil.rmtree(staging)
