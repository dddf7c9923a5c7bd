"""Which files are media, and finding them in a folder: the one list of extensions the pipeline uses."""

from __future__ import annotations

import hashlib
import os
import re
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


def safe_name(text: str) -> str:
    """``text`` as a file-name part: runs of anything but ``A-Za-z0-9._-`` become ``_``, no leading or trailing
    ``._-`` (so never ``..`` or a hidden file); a short hash when nothing is left."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return clean or hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def safe_remote_id(remote_id: str, *, max_length: int = 64) -> str:
    """A remote service's id as a file-name part: unchanged when already safe, else `safe_name` plus a hash of
    the original (``../../x`` and ``.._x`` stay distinct), so an id can never reach outside its folder."""
    text = str(remote_id)
    clean = safe_name(text)[:max_length]
    if clean == text:
        return clean
    return f"{clean}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def ids_from_paths(rel_paths: Sequence[Path], prefix: str = "") -> dict[Path, str]:
    """``{prefix}{safe stem}`` per file; stems that clash get a suffix from their relative path's hash
    (deterministic, independent of listing order), so equal names in different sub-folders coexist."""
    base = {rel: f"{prefix}{safe_name(rel.stem)}" for rel in rel_paths}
    counts: dict[str, int] = {}
    for clip_id in base.values():
        counts[clip_id] = counts.get(clip_id, 0) + 1
    return {rel: clip_id if counts[clip_id] == 1
            else f"{clip_id}-{hashlib.sha1(rel.as_posix().encode('utf-8')).hexdigest()[:8]}"
            for rel, clip_id in base.items()}
