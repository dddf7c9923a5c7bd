"""Probe a clip: duration, frame rate, frame count, displayed size and sound track."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Union

import av

from .container import Display, MediaError, MediaSource, describe, open_input, video_stream

# The `MediaInfo` values that become dataset columns.
PROBE_COLUMNS = ("duration", "fps", "num_frames", "width", "height", "has_audio")


@dataclass(frozen=True)
class MediaInfo:
    """What the schema records about a clip's media (see `emovid_datasets.schema`)."""

    duration: float
    fps: float
    num_frames: int
    width: int  # as displayed: square pixels, turned upright (`container.Display`)
    height: int
    has_audio: bool
    video_codec: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for manifest rows)."""
        return asdict(self)


def _count_video_packets(container: av.container.InputContainer, stream: av.video.VideoStream) -> tuple[int, float]:
    """Frame count and end time by demuxing (no decoding) when the header does not say."""
    count, end = 0, 0.0
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue
        count += 1
        stop = (packet.pts + (packet.duration or 0)) * packet.time_base
        end = max(end, float(stop))
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return count, max(end - start, 0.0)


def probe(src: MediaSource, *, decode_check: bool = True) -> MediaInfo:
    """Read stream metadata and decode the first frame for the size a player shows (square pixels, upright);
    with ``decode_check`` a first frame that does not decode is an error, without it the coded size stands in."""
    with open_input(src) as container:
        stream = video_stream(container, src, threaded=False)
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = stream.average_rate or stream.guessed_rate
        num_frames = int(stream.frames or 0)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        if num_frames <= 0 or duration <= 0:
            num_frames, duration = _count_video_packets(container, stream)
            container.seek(0)
        if num_frames <= 0:
            raise MediaError(f"{describe(src)}: video stream has no frames")
        if duration <= 0:
            duration = num_frames / float(rate or 25)
        # Frames over duration is right for variable-rate clips (GIF delays) where the header rate is not.
        fps = num_frames / duration
        try:
            first = next(container.decode(stream))
        except (StopIteration, av.FFmpegError) as exc:
            if decode_check:
                raise MediaError(f"{describe(src)}: video does not decode ({exc or 'no frame'})") from exc
            first = None
        display = Display.of(stream, first)
        return MediaInfo(
            duration=duration,
            fps=fps,
            num_frames=num_frames,
            width=display.width,
            height=display.height,
            has_audio=audio is not None,
            video_codec=stream.codec_context.name,
        )


def require_moving(path: Union[str, os.PathLike], *, what: str, info: Optional[MediaInfo] = None) -> MediaInfo:
    """Probe a converted clip (unless its ``info`` is given); one frame is a still image, not a video, so the file
    is removed and MediaError says ``what`` is static. Import and the sticker crawl apply the same rule."""
    info = info or probe(path)
    if info.num_frames < 2:
        Path(path).unlink(missing_ok=True)
        raise MediaError(f"{what} is static (a single frame): a still image, not a video")
    return info
