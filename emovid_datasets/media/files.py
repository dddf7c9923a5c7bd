"""Which files are media, and finding them in a folder: the one list of extensions the pipeline uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

# Video containers, in order of preference when one id has several files (fetch-movies' --from-dir).
VIDEO_SUFFIXES: tuple[str, ...] = (".mkv", ".mp4", ".webm", ".mov", ".m4v", ".avi", ".flv", ".mpg", ".mpeg", ".ts",
                                   ".wmv", ".3gp", ".ogv")
ANIMATED_IMAGE_SUFFIXES: tuple[str, ...] = (".gif", ".webp")  # stickers and animated images
MEDIA_SUFFIXES: tuple[str, ...] = VIDEO_SUFFIXES + ANIMATED_IMAGE_SUFFIXES


def scan_media(folder: Union[str, os.PathLike], suffixes: Sequence[str] = MEDIA_SUFFIXES, *,
               exclude: Optional[Union[str, os.PathLike]] = None) -> list[Path]:
    """Files under ``folder`` (recursive) with one of ``suffixes``, as sorted paths relative to it.

    Hidden files and folders (a leading dot: partial downloads, OS metadata) and anything under
    ``exclude`` are skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    wanted = {s.lower() for s in suffixes}
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (path.suffix.lower() not in wanted or not path.is_file() or any(p.startswith(".") for p in rel.parts)
                or (skip is not None and path.resolve().is_relative_to(skip))):
            continue
        found.append(rel)
    return found
