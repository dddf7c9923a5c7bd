"""Open any media input (path, bytes, or a datasets `{bytes, path}` dict) with PyAV, and read its frames' timing
and geometry as a player shows them."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Optional, Union

import av
import numpy as np

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


def frame_duration(frame: av.frame.Frame, rate: Fraction) -> float:
    """Seconds a decoded frame stays on screen: its own duration (a GIF delay, a VFR gap), else one frame at ``rate``."""
    if frame.duration and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    return 1 / float(rate)


def even(n: int) -> int:
    """Round a dimension down to an even number (yuv420p needs it), never below 2."""
    return max(2, int(n) // 2 * 2)


@dataclass(frozen=True)
class Display:
    """How a player shows a video stream: its size in square pixels and the quarter turns (counter-clockwise)
    its display matrix asks for, so an anamorphic DVD is not squashed and a phone video is not sideways."""

    width: int
    height: int
    turns: int = 0

    @classmethod
    def of(cls, stream: av.video.stream.VideoStream, frame: Optional[av.VideoFrame]) -> "Display":
        """The display of ``stream`` read from its first decoded ``frame`` (PyAV reads the display matrix from frames
        only); without a frame, the coded size at the stream's sample aspect ratio.

        Non-square samples are stretched, never shrunk (FFmpeg's ``scale=iw*sar:ih`` when the SAR is above 1),
        so no resolution is thrown away: 704x576 at 16:11 shows as 1024x576.
        """
        width, height = (frame.width, frame.height) if frame is not None else (stream.codec_context.width,
                                                                                stream.codec_context.height)
        sar = stream.sample_aspect_ratio
        if sar and sar > 1:
            width = round(width * sar)
        elif sar and sar < 1:
            height = round(height / sar)
        turns = round(frame.rotation / 90) % 4 if frame is not None else 0
        return cls(height, width, turns) if turns % 2 else cls(width, height, turns)

    def fit(self, max_side: Optional[int] = None) -> "Display":
        """This display scaled down so its longer side is at most ``max_side``, with even sides for the encoder."""
        scale = max_side / max(self.width, self.height) if max_side and max(self.width, self.height) > max_side else 1
        return Display(even(round(self.width * scale)), even(round(self.height * scale)), self.turns)

    def render(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` as a viewer sees it: resampled to this (even) size in square pixels, turned upright, yuv420p."""
        if self.width % 2 or self.height % 2:
            raise ValueError(f"render needs even sides, got {self.width}x{self.height} (use Display.fit)")
        width, height = (self.height, self.width) if self.turns % 2 else (self.width, self.height)
        out = frame.reformat(width=width, height=height, format="yuv420p")
        if not self.turns:
            return out
        packed = out.to_ndarray()  # (height * 3/2, width): the Y plane, then U and V at half size
        luma, chroma = packed[:height], packed[height:].reshape(2, height // 2, width // 2)
        turned = [np.rot90(luma, self.turns).ravel(), np.rot90(chroma, self.turns, axes=(1, 2)).ravel()]
        upright = av.VideoFrame.from_ndarray(np.concatenate(turned).reshape(self.height * 3 // 2, self.width),
                                             format="yuv420p")
        upright.colorspace, upright.color_range = out.colorspace, out.color_range
        return upright
