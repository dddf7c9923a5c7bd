"""The paper's colour attributes (EmoVid Eq. 1-3): hue, colourfulness and brightness of a clip.

Pixels of every ``frame_step``-th frame (0, 20, 40, ...) are pooled and converted to HSV
(h in degrees, s and v in [0, 1]). Hue is the unweighted circular mean, rounded to an
integer degree in [0, 360); colourfulness and brightness are the means of S and V rounded
to one decimal. "Colourfulness" is mean HSV saturation, not Hasler-Suesstrunk.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .media.container import MediaError, MediaSource, describe
from .media.frames import iter_frames


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB (..., 3) to (hue degrees [0, 360), saturation [0, 1], value [0, 1]) as float32.

    Same convention as `colorsys`: V = max, S = (max - min) / max (0 when max = 0), H = 0 when grey.
    """
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    vmax = x.max(axis=-1)
    delta = vmax - x.min(axis=-1)
    s = np.where(vmax > 0, delta / np.where(vmax > 0, vmax, 1), 0).astype(np.float32)
    safe = np.where(delta > 0, delta, 1)
    h = np.where(
        vmax == r, ((g - b) / safe) % 6, np.where(vmax == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    h = np.where(delta > 0, h * 60.0, 0.0).astype(np.float32)
    return h, s, vmax


def color_attributes(video: MediaSource, frame_step: int = 20) -> dict[str, Any]:
    """Colour attributes of a clip given as a path or bytes.

    Returns ``colorfulness``, ``brightness`` (1 decimal), ``hue`` (int degrees) as the paper
    defines them, their unrounded ``*_raw`` values, and ``frames_sampled``.
    """
    sin_sum = cos_sum = s_sum = v_sum = 0.0
    pixels = frames = 0
    for frame in iter_frames(video, step=frame_step):
        h, s, v = rgb_to_hsv(frame.array)
        rad = np.deg2rad(h, dtype=np.float64)
        sin_sum += float(np.sin(rad).sum())
        cos_sum += float(np.cos(rad).sum())
        s_sum += float(s.sum(dtype=np.float64))
        v_sum += float(v.sum(dtype=np.float64))
        pixels += h.size
        frames += 1
    if pixels == 0:
        raise MediaError(f"{describe(video)}: no frames to measure colour on")
    phi = math.degrees(math.atan2(sin_sum, cos_sum))
    hue_raw = (phi + 360.0) % 360.0
    colorfulness_raw, brightness_raw = s_sum / pixels, v_sum / pixels
    return {
        "colorfulness": round(colorfulness_raw, 1),
        "brightness": round(brightness_raw, 1),
        "hue": int(round(hue_raw)) % 360,
        "colorfulness_raw": colorfulness_raw,
        "brightness_raw": brightness_raw,
        "hue_raw": hue_raw,
        "frames_sampled": frames,
    }
