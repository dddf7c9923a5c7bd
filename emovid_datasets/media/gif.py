"""Animated GIFs (stickers, report thumbnails) from uint8 RGB frames, encoded with Pillow; whether a GIF is whole."""

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


def gif_is_complete(data: bytes) -> bool:
    """Whether a GIF's blocks run on to its trailer byte: a cut-off download stops short of it, and FFmpeg's GIF
    demuxer then reports the shorter animation as if it were all there."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        return False
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # screen descriptor, global colour table
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            return True
        if block == 0x21:  # extension: label, then data sub-blocks
            pos += 2
        elif block == 0x2C and pos + 10 <= len(data):  # image: descriptor, local colour table, LZW code size
            packed = data[pos + 9]
            pos += 11 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
        else:
            return False
        while pos < len(data) and data[pos]:  # sub-blocks up to the empty one
            pos += data[pos] + 1
        pos += 1
    return False
