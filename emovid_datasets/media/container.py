"""Open any media input (path, bytes, or a datasets `{bytes, path}` dict) with PyAV."""

from __future__ import annotations

import io
import os
from typing import Any, Union

import av

MediaSource = Union[str, os.PathLike, bytes, bytearray, memoryview, dict]


class MediaError(ValueError):
    """A media file could not be read; the message names the file and the reason."""


def describe(src: MediaSource) -> str:
    """A short name for ``src`` to put in error messages."""
    if isinstance(src, dict):
        return str(src.get("path") or f"<{len(src.get('bytes') or b'')} bytes>")
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return os.fspath(src)


def media_payload(src: MediaSource) -> Union[bytes, str]:
    """The bytes or the path a decoder should read: a ``{bytes, path}`` entry's bytes when it has them
    (datasets embeds them), else its path; raise MediaError when it has neither."""
    if isinstance(src, dict):
        data = src.get("bytes")
        src = data if data is not None else src.get("path")
        if src is None:
            raise MediaError("media entry has neither bytes nor path")
    return bytes(src) if isinstance(src, (bytes, bytearray, memoryview)) else os.fspath(src)


def open_input(src: MediaSource, **kwargs: Any) -> av.container.InputContainer:
    """Open ``src`` for reading; raise MediaError naming the input (its path where it has one) when PyAV cannot."""
    payload = media_payload(src)
    try:
        return av.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload, mode="r", **kwargs)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"{describe(src)}: cannot open media ({exc})") from exc
