"""Open any media input (path, bytes, or a datasets `{bytes, path}` dict) with PyAV."""

from __future__ import annotations

import io
import os
from fractions import Fraction
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


def video_stream(container: av.container.InputContainer, src: MediaSource, *,
                 threaded: bool = True) -> av.video.stream.VideoStream:
    """The first video stream of an open container (MediaError naming ``src`` when it has none).

    ``threaded`` lets FFmpeg pick slice or frame threads, which is what every full decode here wants.
    """
    if not container.streams.video:
        raise MediaError(f"{describe(src)}: no video stream")
    stream = container.streams.video[0]
    if threaded:
        stream.thread_type = "AUTO"
    return stream


def nominal_rate(stream: av.video.stream.VideoStream, src: MediaSource) -> Fraction:
    """The stream's nominal frame rate (average, else guessed); MediaError naming ``src`` when unknown."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise MediaError(f"{describe(src)}: unknown frame rate")
    return Fraction(rate.numerator, rate.denominator)


def frame_time(frame: av.frame.Frame, index: int, rate: Fraction) -> float:
    """Seconds at which a decoded frame is shown: its timestamp, else its index at the nominal ``rate``."""
    return float(frame.time) if frame.time is not None else index / float(rate)
