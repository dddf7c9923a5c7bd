"""Animated GIFs (stickers, report thumbnails) from uint8 RGB frames, encoded with Pillow."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

from ..atomic import atomic_write_bytes


def encode_gif(frames: Sequence[np.ndarray], frame_ms: float) -> bytes:
    """An endlessly looping GIF of (H, W, 3) uint8 frames shown ``frame_ms`` each (GIFs count in 10 ms steps,
    and viewers slow anything under 20 ms, so shorter delays become 20)."""
    if not len(frames):
        raise ValueError("a GIF needs at least one frame")
    images = [Image.fromarray(np.asarray(f)) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=max(20, round(frame_ms)),
                   loop=0)
    return out.getvalue()


def write_gif(path: Union[str, os.PathLike], frames: Sequence[np.ndarray], fps: float) -> Path:
    """`encode_gif` at ``fps`` written atomically to ``path``."""
    return atomic_write_bytes(path, encode_gif(frames, 1000 / fps))
