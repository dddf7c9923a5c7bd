"""Decode video frames with PyAV, converting only the frames a caller asks for."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Optional

import av
import numpy as np

from .container import MediaError, MediaSource, describe, frame_time, open_input, video_stream
from .probe import probe


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its decode-order index, presentation time in seconds, and pixels (H, W, 3) uint8."""

    index: int
    time: float
    array: np.ndarray


def iter_frames(
    src: MediaSource,
    *,
    step: int = 1,
    format: str = "rgb24",
    width: Optional[int] = None,
    height: Optional[int] = None,
) -> Iterator[Frame]:
    """Yield every ``step``-th frame (0, step, 2*step, ...) as uint8 arrays, optionally rescaled.

    Frames that are skipped are decoded (codecs need them) but never converted to RGB.
    """
    if step < 1:
        raise ValueError("step must be >= 1")
    with open_input(src) as container:
        stream = video_stream(container, src)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)  # only for frames without timestamps
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % step:
                    continue
                yield Frame(index, frame_time(frame, index, rate),
                            frame.to_ndarray(format=format, width=width, height=height))
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(src)}: decoding failed ({exc})") from exc


def read_frames(src: MediaSource, **kwargs: Any) -> np.ndarray:
    """All frames selected by `iter_frames` stacked as a (T, H, W, 3) uint8 array."""
    frames = [f.array for f in iter_frames(src, **kwargs)]
    if not frames:
        raise MediaError(f"{describe(src)}: no frames decoded")
    return np.stack(frames)


def sample_frames(video: MediaSource, num_frames: int = 8, *, width: Optional[int] = None,
                  height: Optional[int] = None, total_frames: Optional[int] = None) -> np.ndarray:
    """``num_frames`` evenly spaced frames (fewer for a shorter clip) as (T, H, W, 3) uint8, decoded with PyAV."""
    step = sample_step(total_frames or probe(video, decode_check=False).num_frames, num_frames)
    frames = [f.array for f in iter_frames(video, step=step, width=width, height=height)]
    if not frames:
        raise MediaError(f"{describe(video)}: no frames decoded")
    return pick_evenly(frames, num_frames)


def sample_step(total_frames: int, num_frames: int) -> int:
    """Decode every this-many frames to sample ``num_frames`` from a clip of ``total_frames``."""
    return max(1, max(1, total_frames) // max(1, num_frames))


def pick_evenly(frames: list[np.ndarray], num_frames: int) -> np.ndarray:
    """``num_frames`` evenly spaced frames of ``frames`` (all of them when fewer), stacked."""
    keep = np.unique(np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int))
    return np.stack([frames[i] for i in keep])
