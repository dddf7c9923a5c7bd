"""Animated GIF thumbnails of clips (decoded with PyAV, encoded with Pillow) for the report gallery."""

from __future__ import annotations

from ..media import MediaSource, encode_gif, probe, sample_frames


def animated_thumbnail(video: MediaSource, width: int = 160, max_frames: int = 16) -> bytes:
    """A looping GIF of at most ``max_frames`` evenly spaced frames, ``width`` px wide, at the clip's pace."""
    info = probe(video)
    height = max(2, round(width * info.height / info.width / 2) * 2) if info.width else width
    frames = sample_frames(video, max_frames, width=width, height=height, total_frames=info.num_frames)
    step = max(1, (info.num_frames or len(frames)) / len(frames))  # source frames per thumbnail frame
    return encode_gif(frames, 1000 * step / (info.fps or 10))
