"""Decode only the frames a window needs: PyAV from embedded bytes, or a torchcodec decoder from `datasets`.

Each output time takes the frame on screen at that time (the last frame whose timestamp is
<= the time), so a 24 fps clip read at 16 fps gives source frames 0, 1, 3, 4, 6, ...
PyAV decoding stops once the frame after the last needed time is reached, and only the
selected frames are converted to RGB (scaled by the resize plan in the same swscale call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import av
import numpy as np

from emovid_datasets.media import MediaError, MediaSource, open_input
from emovid_datasets.media.container import describe, frame_time, media_payload, video_stream

from .resize import ResizePlan
from .sampling import TIME_EPS

PlanFor = Callable[[int, int], ResizePlan]  # (source height, source width) -> plan

TORCHCODEC_HELP = (
    "decode='torchcodec' needs the torchcodec package and the FFmpeg shared libraries it loads "
    "(libavcodec/libavformat/libavutil from FFmpeg 4-7, installed system-wide, e.g. `apt install ffmpeg` "
    "or `conda install ffmpeg`) plus `pip install torchcodec` matching your torch version. "
    "The default decode='pyav' needs neither"
)


@dataclass
class Window:
    """Frames chosen for the output times: uint8 (H, W, 3) arrays, their source times (s), frames decoded."""

    frames: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    decoded: int = 0


def _frame_duration(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> float:
    if frame.duration:
        return float(frame.duration * stream.time_base)
    return 1.0 / float(stream.average_rate) if stream.average_rate else 0.0


def decode_window(src: MediaSource, times: Sequence[float], plan_for: PlanFor, *, seek: bool = False,
                  threads: int = 1) -> Window:
    """The frames on screen at ``times`` (seconds from the first frame), resized by ``plan_for``'s plan.

    Times past the clip's end get no frame (the caller applies its short-clip policy).
    ``seek=True`` jumps to the key frame before ``times[0]`` instead of decoding from the start.
    ``threads`` is per decoder and per RGB conversion: 1 (the default) suits DataLoader workers, which
    supply the parallelism; PyAV's automatic threading (0) pays thread start-up for every clip and frame.
    """
    window = Window()
    with open_input(src) as container:
        stream = video_stream(container, src, threaded=threads != 1)
        if threads != 1:
            stream.thread_count = threads
        plan = plan_for(stream.codec_context.height, stream.codec_context.width)
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else None
        if seek and times and times[0] > 0 and origin is not None:
            container.seek(int((origin + times[0]) / stream.time_base), stream=stream, backward=True)

        prev: Any = None
        prev_time = 0.0
        prev_array = None

        def take_prev() -> None:
            nonlocal prev_array
            if prev_array is None:
                prev_array = plan.apply(prev.to_ndarray(format="rgb24", width=plan.scaled_width,
                                                        height=plan.scaled_height, threads=threads))
            window.frames.append(prev_array)
            window.times.append(prev_time)

        try:
            for frame in container.decode(stream):
                window.decoded += 1
                time = frame_time(frame, window.decoded - 1, stream.average_rate or Fraction(25))
                if origin is None:
                    origin = time
                time -= origin
                if prev is not None:
                    while len(window.frames) < len(times) and times[len(window.frames)] < time - TIME_EPS:
                        take_prev()
                    if len(window.frames) == len(times):
                        return window
                prev, prev_time, prev_array = frame, time, None
            if prev is None:
                raise MediaError(f"{describe(src)}: no video frames decoded")
            end = prev_time + _frame_duration(prev, stream)
            while len(window.frames) < len(times) and times[len(window.frames)] < end - TIME_EPS:
                take_prev()
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(src)}: decoding failed ({exc})") from exc
    return window


def require_torchcodec() -> None:
    """Raise ImportError explaining the torchcodec + system FFmpeg requirement when it cannot be loaded."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError) as exc:
        raise ImportError(f"{TORCHCODEC_HELP} ({type(exc).__name__}: {exc})") from exc


def torchcodec_decoder(src: Any) -> Any:
    """``src`` itself when it is already a decoder (what `datasets`' Video feature returns), else a torchcodec
    `VideoDecoder` over a raw media source (a ``{bytes, path}`` row value, bytes or a path)."""
    if hasattr(src, "get_frames_played_at"):
        return src
    from torchcodec.decoders import VideoDecoder

    try:
        return VideoDecoder(media_payload(src))
    except (RuntimeError, ValueError) as exc:
        raise MediaError(f"{describe(src)}: torchcodec cannot open it ({exc})") from exc


def torchcodec_window(src: Any, times: Sequence[float], plan_for: PlanFor) -> Window:
    """Like `decode_window`, with torchcodec: for the decoder `datasets`' Video feature returns or raw media."""
    from torchvision.transforms.v2 import functional as F

    decoder = torchcodec_decoder(src)
    meta = decoder.metadata
    begin = float(meta.begin_stream_seconds or 0.0)
    end = float(meta.end_stream_seconds) if meta.end_stream_seconds is not None else float("inf")
    wanted = [begin + t for t in times if begin + t < end - TIME_EPS]
    if not wanted:
        raise MediaError("torchcodec: no video frames in the requested window")
    batch = decoder.get_frames_played_at(seconds=wanted)
    plan = plan_for(int(batch.data.shape[-2]), int(batch.data.shape[-1]))
    scaled = F.resize(batch.data, [plan.scaled_height, plan.scaled_width], antialias=True)
    frames = [plan.apply(image) for image in scaled.permute(0, 2, 3, 1).numpy()]
    return Window(frames, [float(t) - begin for t in batch.pts_seconds], decoded=len(wanted))
