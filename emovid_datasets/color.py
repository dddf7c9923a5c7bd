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


COLOUR_STEP = 20  # every 20th frame (0, 20, 40, ...) is measured


class ColourSums:
    """Running sums of the colour attributes over the frames added so far (one pass, any frame source)."""

    def __init__(self) -> None:
        self.sin = self.cos = self.saturation = self.value = 0.0
        self.pixels = self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 RGB frame."""
        h, s, v = rgb_to_hsv(rgb)
        rad = np.deg2rad(h, dtype=np.float64)
        self.sin += float(np.sin(rad).sum())
        self.cos += float(np.cos(rad).sum())
        self.saturation += float(s.sum(dtype=np.float64))
        self.value += float(v.sum(dtype=np.float64))
        self.pixels += h.size
        self.frames += 1

    def attributes(self, what: str) -> dict[str, Any]:
        """The attributes of the frames added (see `color_attributes`); MediaError naming ``what`` if none were."""
        if self.pixels == 0:
            raise MediaError(f"{what}: no frames to measure colour on")
        hue_raw = (math.degrees(math.atan2(self.sin, self.cos)) + 360.0) % 360.0
        colorfulness_raw, brightness_raw = self.saturation / self.pixels, self.value / self.pixels
        return {
            "colorfulness": round(colorfulness_raw, 1),
            "brightness": round(brightness_raw, 1),
            "hue": int(round(hue_raw)) % 360,
            "colorfulness_raw": colorfulness_raw,
            "brightness_raw": brightness_raw,
            "hue_raw": hue_raw,
            "frames_sampled": self.frames,
        }


def color_attributes(video: MediaSource, frame_step: int = COLOUR_STEP) -> dict[str, Any]:
    """Colour attributes of a clip given as a path or bytes.

    Returns ``colorfulness``, ``brightness`` (1 decimal), ``hue`` (int degrees) as the paper
    defines them, their unrounded ``*_raw`` values, and ``frames_sampled``.
    """
    sums = ColourSums()
    for frame in iter_frames(video, step=frame_step):
        sums.add(frame.array)
    return sums.attributes(describe(video))
