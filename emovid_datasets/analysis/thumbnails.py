"""Animated GIF thumbnails of clips (decoded with PyAV, encoded with Pillow) for the report gallery."""

from __future__ import annotations

import io

from PIL import Image

from ..media import probe, iter_frames
from ..media.container import MediaError, MediaSource, describe


def animated_thumbnail(video: MediaSource, width: int = 160, max_frames: int = 16) -> bytes:
    """A looping GIF of at most ``max_frames`` evenly spaced frames, ``width`` px wide, at the clip's pace."""
    info = probe(video)
    height = max(2, round(width * info.height / info.width / 2) * 2) if info.width else width
    total = info.num_frames or max_frames
    step = max(1, total // max_frames)
    frames = [Image.fromarray(f.array) for f in iter_frames(video, step=step, width=width, height=height)][:max_frames]
    if not frames:
        raise MediaError(f"{describe(video)}: no frames for a thumbnail")
    delay = int(1000 * step / (info.fps or 10))
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=max(delay, 20), loop=0)
    return out.getvalue()
